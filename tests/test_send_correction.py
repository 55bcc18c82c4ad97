from unittest.mock import patch

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import KsefSendCommon


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefCorrection(KsefSendCommon):

    def test_correction_of_invoice_in_ksef(self):
        invoice = self.ksef_send(self.ksef_invoice(amounts=(1000.0,)))
        self.assertKsefAccepted(invoice)
        refund = self.ksef_credit_note(invoice, reason="Obniżka ceny z uwagi na uszkodzenie")
        self.assertEqual(refund.ksef_correction_reason, "Obniżka ceny z uwagi na uszkodzenie")
        self.ksef_send(refund)
        self.assertKsefAccepted(refund)

        def get(path):
            return self.ksef_xpath(refund, path)
        self.assertEqual(get('//fa:RodzajFaktury'), ['KOR'])
        self.assertEqual(get('//fa:PrzyczynaKorekty'), ["Obniżka ceny z uwagi na uszkodzenie"])
        self.assertEqual(get('//fa:TypKorekty'), ['2'])
        self.assertEqual(get('//fa:DaneFaKorygowanej/fa:DataWystFaKorygowanej'), [str(invoice.invoice_date)])
        self.assertEqual(get('//fa:DaneFaKorygowanej/fa:NrFaKorygowanej'), [invoice.name])
        self.assertEqual(get('//fa:DaneFaKorygowanej/fa:NrKSeF'), ['1'])
        self.assertEqual(get('//fa:DaneFaKorygowanej/fa:NrKSeFFaKorygowanej'), [invoice.ksef_number])
        self.assertFalse(get('//fa:DaneFaKorygowanej/fa:NrKSeFN'))
        # difference amounts: negative
        self.assertEqual(get('//fa:FaWiersz/fa:P_11'), ['-1000.00'])
        self.assertEqual(get('//fa:FaWiersz/fa:P_9A'), ['-1000.00'])
        self.assertEqual(get('//fa:P_13_1'), ['-1000.00'])
        self.assertEqual(get('//fa:P_14_1'), ['-230.00'])
        self.assertEqual(get('//fa:P_15'), ['-1230.00'])

    def test_correction_of_invoice_issued_outside_ksef(self):
        invoice = self.ksef_invoice(amounts=(200.0,))
        self.assertFalse(invoice.ksef_state)
        refund = self.ksef_credit_note(invoice, reason="Zwrot")
        refund.ksef_correction_type = '1'
        self.ksef_send(refund)
        self.assertKsefAccepted(refund)
        self.assertEqual(self.ksef_xpath(refund, '//fa:DaneFaKorygowanej/fa:NrKSeFN'), ['1'])
        self.assertFalse(self.ksef_xpath(refund, '//fa:DaneFaKorygowanej/fa:NrKSeF'))
        self.assertEqual(self.ksef_xpath(refund, '//fa:TypKorekty'), ['1'])

    def test_correction_of_invoice_not_in_odoo(self):
        refund = self.ksef_invoice(move_type='out_refund', amounts=(50.0,), post=False)
        refund.write({'ksef_corrected_invoice_number': 'FV/2025/12/77',
                      'ksef_corrected_invoice_date': fields.Date.to_date('2025-12-15'),
                      'ksef_correction_reason': "Rabat"})
        refund.action_post()
        xml, problems = refund._ksef_generate_xml()
        self.assertFalse(problems)
        refund._ksef_freeze_xml(xml)
        self.assertEqual(self.ksef_xpath(refund, '//fa:NrFaKorygowanej'), ['FV/2025/12/77'])
        self.assertEqual(self.ksef_xpath(refund, '//fa:NrKSeFN'), ['1'])

    def test_credit_note_without_reference_is_refused(self):
        refund = self.ksef_invoice(move_type='out_refund', amounts=(50.0,))
        with self.assertRaisesRegex(UserError, "does not say which invoice it corrects"):
            refund.action_ksef_send()
        self.assertFalse(refund.ksef_state)

    def test_correction_refused_while_original_waits_for_its_number(self):
        invoice = self.ksef_invoice(amounts=(300.0,))
        with patch.object(type(self.env['account.move']), '_ksef_send_now', lambda self: None):
            invoice.action_ksef_send()
        self.assertEqual(invoice.ksef_state, 'to_send')
        refund = self.ksef_credit_note(invoice)
        with self.assertRaisesRegex(UserError, "still waiting for its KSeF number"):
            refund.action_ksef_send()
        self.assertFalse(refund.ksef_state)
        # the Send & Print checkbox is offered but the wizard blocks it with the same explanation
        problems, _warnings = refund._ksef_collect_send_problems()
        self.assertIn("still waiting for its KSeF number", problems[refund][0])
        # once the original is accepted the correction goes through, referencing its KSeF number
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        self.ksef_send(refund)
        self.assertKsefAccepted(refund)
        self.assertEqual(self.ksef_xpath(refund, '//fa:NrKSeFFaKorygowanej'), [invoice.ksef_number])
