from unittest.mock import patch

from lxml import etree

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import file_open

from odoo.addons.account.tests.test_account_move_send import TestAccountMoveSendCommon
from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import FA3_NS, KsefSendCommon


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefSend(KsefSendCommon, TestAccountMoveSendCommon):

    def test_send_accepted_with_number_upo_xml_log_and_chatter(self):
        invoice = self.ksef_invoice(amounts=(100.0, 50.0))
        self.assertTrue(invoice.ksef_can_send)
        invoice.action_ksef_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        self.assertTrue(ksef_numbers.is_valid_ksef_number(invoice.ksef_number))
        self.assertTrue(invoice.ksef_number.startswith(self.ksef_nip))
        self.assertEqual(invoice.ksef_invoicing_mode, 'online')
        self.assertTrue(invoice.ksef_acquisition_date and invoice.ksef_invoicing_date)
        self.assertTrue(invoice.ksef_session_id and invoice.ksef_session_id.kind == 'online')
        # UPO stored and about this invoice
        self.assertTrue(invoice.ksef_upo_id)
        upo = etree.fromstring(invoice.ksef_upo_id.raw)
        self.assertIn(invoice.ksef_number, [n.text for n in upo.iter() if n.tag.endswith('NumerKSeFDokumentu')])
        # KSeF holds exactly these bytes
        stored = self.ksef_sandbox_by_hash(invoice.ksef_xml_hash)
        self.assertEqual([s['ksefNumber'] for s in stored], [invoice.ksef_number])
        # history newest first: accepted, verifying, queued
        self.assertEqual(invoice.ksef_transmission_ids.mapped('state')[:3], ['accepted', 'sending', 'to_send'])
        accepted_row = invoice.ksef_transmission_ids[0]
        self.assertEqual(accepted_row.ksef_number, invoice.ksef_number)
        self.assertEqual(accepted_row.attachment_id, invoice.ksef_upo_id)
        self.assertEqual(accepted_row.xml_attachment_id, invoice.ksef_xml_id)
        # chatter: the acceptance message carries the XML and the UPO
        message = invoice.message_ids.filtered(lambda m: 'KSeF: Accepted' in (m.body or ''))[:1]
        self.assertTrue(message)
        self.assertEqual(set(message.attachment_ids.ids), {invoice.ksef_xml_id.id, invoice.ksef_upo_id.id})
        # and nothing else to do
        self.assertFalse(invoice.ksef_can_send)
        self.assertFalse(invoice.ksef_banner_level)

    def test_xml_content(self):
        invoice = self.ksef_invoice(amounts=(200.0,), taxes=self.tax_8, post=False)
        invoice.invoice_line_ids.discount = 10.0
        invoice.action_post()
        xml, problems = invoice._ksef_generate_xml()
        self.assertFalse(problems)
        tree = etree.fromstring(xml)

        def get(path):
            return [n.text for n in tree.xpath(path, namespaces=FA3_NS)]
        self.assertEqual(get('//fa:Podmiot1/fa:DaneIdentyfikacyjne/fa:NIP'), [self.ksef_nip])
        self.assertEqual(get('//fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:NIP'), [self.ksef_buyer_nip])
        self.assertEqual(get('//fa:Fa/fa:P_2'), [invoice.name])
        self.assertEqual(get('//fa:FaWiersz/fa:P_12'), ['8'])
        self.assertEqual(get('//fa:FaWiersz/fa:P_9A'), ['200.00'])
        self.assertEqual(get('//fa:FaWiersz/fa:P_10'), ['20.00'])
        self.assertEqual(get('//fa:FaWiersz/fa:P_11'), ['180.00'])
        self.assertEqual(get('//fa:Fa/fa:P_13_2'), ['180.00'])
        self.assertEqual(get('//fa:Fa/fa:P_14_2'), ['14.40'])
        self.assertEqual(get('//fa:Fa/fa:P_15'), ['194.40'])
        self.assertEqual(get('//fa:Platnosc/fa:RachunekBankowy/fa:NrRB'), ['PL61109010140000071219812874'])
        self.assertEqual(get('//fa:Platnosc/fa:TerminPlatnosci/fa:Termin'), [str(invoice.invoice_date_due)])
        self.assertEqual(get('//fa:RodzajFaktury'), ['VAT'])

    def test_invisible_control_characters_are_dropped_not_reported(self):
        self.ksef_buyer.name = "Nabywca\x02 Sp. z o.o.\x7f"
        invoice = self.ksef_invoice(amounts=(100.0,), post=False)
        invoice.invoice_line_ids.name = "Usługa\x0b serwisowa"
        invoice.action_post()
        xml, problems = invoice._ksef_generate_xml()
        self.assertFalse(problems)
        tree = etree.fromstring(xml)
        self.assertEqual(tree.xpath('//fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:Nazwa/text()', namespaces=FA3_NS),
                         ["Nabywca Sp. z o.o."])
        self.assertEqual(tree.xpath('//fa:FaWiersz/fa:P_7/text()', namespaces=FA3_NS), ["Usługa serwisowa"])

    def test_golden_xml(self):
        """One representative FA(3) export against a golden file (volatile values ignored)."""
        self.ksef_company.write({'vat': 'PL5260250274', 'company_registry': '0000012345', 'phone': '+48 22 123 45 67',
                                 'email': 'biuro@example.pl'})
        self.ksef_buyer.write({'vat': 'PL7740001454', 'ref': 'K-001'})
        invoice = self.ksef_invoice(amounts=(250.5,), post=False, invoice_date=fields.Date.to_date('2026-03-02'))
        invoice.invoice_line_ids.tax_ids = self.tax_8
        invoice.write({'invoice_line_ids': [fields.Command.create({
            'product_id': self.ksef_product.id, 'quantity': 3, 'price_unit': 400.0, 'discount': 5.0,
            'tax_ids': [fields.Command.set(self.tax_23.ids)]})]})
        invoice.delivery_date = fields.Date.to_date('2026-03-01')
        invoice.name = 'FV/2026/03/0001'
        invoice.action_post()
        xml, problems = invoice._ksef_generate_xml()
        self.assertFalse(problems)
        with file_open('l10n_pl_ksef/tests/export_xmls/invoice_basic.xml', 'rb') as f:
            expected = f.read()
        self.assertXmlTreeEqual(self.get_xml_tree_from_string(xml), self.get_xml_tree_from_string(expected))

    def test_validation_errors_are_per_field_and_nothing_is_sent(self):
        before = len(self.ksef_sandbox.invoices(seller_nip=self.ksef_nip))
        no_nip = self.ksef_partner(name="Firma Bez NIP Sp. z o.o.")
        bad_nip = self.ksef_partner(name="Foo sp. z o.o.", vat='PL123')
        unmapped = self.tax_23.copy({'name': "VAT 23% custom", 'ksef_rate_code': False})
        unmapped.ksef_rate_code = False
        for partner, taxes, expected in (
                (no_nip, None, "is a company without a NIP"),
                (bad_nip, None, "has no valid NIP (PL123)"),
                (self.ksef_buyer, unmapped, "has no KSeF rate code")):
            invoice = self.ksef_invoice(partner=partner, taxes=taxes)
            with self.assertRaises(UserError) as ctx:
                invoice.action_ksef_send()
            self.assertIn(invoice.name, ctx.exception.args[0])
            self.assertIn(expected, ctx.exception.args[0])
            self.assertFalse(invoice.ksef_state)
        self.ksef_run_send()
        self.assertEqual(len(self.ksef_sandbox.invoices(seller_nip=self.ksef_nip)), before)

    def test_background_queue_reports_problems_on_the_invoice(self):
        bad = self.ksef_partner(name="Zła Firma", vat='PL1234567890')
        invoice = self.ksef_invoice(partner=bad)
        invoice.action_ksef_send_background()
        self.assertEqual(invoice.ksef_state, 'to_send')
        self.assertFalse(invoice.ksef_xml_hash)
        self.ksef_run_send()
        self.assertFalse(invoice.ksef_state)
        self.assertEqual(invoice.ksef_banner_level, 'danger')
        self.assertIn("has no valid NIP (PL1234567890)", invoice.ksef_message)
        self.assertEqual(invoice.ksef_transmission_ids[0].state, 'error')

    def test_send_and_print_wizard(self):
        invoice = self.ksef_invoice()
        wizard = self.create_send_and_print(invoice)
        self.assertIn('ksef', wizard.extra_edi_checkboxes)
        self.assertTrue(wizard.extra_edi_checkboxes['ksef']['checked'])
        with patch.object(type(self.env['account.move']), '_ksef_send_now', lambda self: None):
            wizard.action_send_and_print()
        self.assertEqual(invoice.ksef_state, 'to_send')
        self.assertTrue(invoice.ksef_xml_id)
        self.assertIn(invoice.ksef_xml_id, self.env['account.move.send']._get_invoice_extra_attachments(invoice))

    def test_send_and_print_wizard_blocks_invalid_invoice(self):
        partner = self.ksef_partner(name="Bez NIP S.A.", email='a@b.pl')
        invoice = self.ksef_invoice(partner=partner)
        wizard = self.create_send_and_print(invoice)
        alerts = wizard.alerts or {}
        self.assertIn('l10n_pl_ksef_invalid', alerts)
        self.assertEqual(alerts['l10n_pl_ksef_invalid']['level'], 'danger')
        self.assertIn("is a company without a NIP", alerts['l10n_pl_ksef_invalid']['message'])
        with self.assertRaises(UserError):
            wizard.action_send_and_print()
        self.assertFalse(invoice.ksef_state)

    def test_rejection_mapping(self):
        Move = self.env['account.move']
        cases = {
            410: ('rejected', "InvoiceWrite"),
            415: ('rejected', "attachments"),
            430: ('rejected', "FA(3) structure"),
            450: ('rejected', "semantic"),
            440: ('duplicate', "already holds this invoice"),
            435: ('retry', "sent again automatically"),
            500: ('retry', "sent again automatically"),
            550: ('retry', "sent again automatically"),
            200: ('accepted', "Success"),
        }
        for code, (state, text) in cases.items():
            outcome = Move._ksef_status_outcome(code, "desc", ["detail %s" % code], {'originalKsefNumber': 'X'})
            self.assertEqual(outcome['state'], state, code)
            self.assertIn(text, outcome['message'], code)
        # after the retry limit a retryable status becomes a rejection with a next step
        outcome = Move._ksef_status_outcome(550, "desc", [], {}, attempts=10)
        self.assertEqual(outcome['state'], 'rejected')
        self.assertIn("Retry", outcome['message'])

    def test_rejected_by_ksef_xsd_then_fixed_and_resent(self):
        invoice = self.ksef_invoice()
        invoice.with_context(ksef_no_send_now=True).action_ksef_send()
        # the frozen file gets corrupted (e.g. edited by hand): KSeF refuses it with 430
        broken = invoice.ksef_xml_id.raw.replace(b'<P_2>', b'<P_2_BROKEN>').replace(b'</P_2>', b'</P_2_BROKEN>')
        invoice._ksef_freeze_xml(broken)
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertEqual(invoice.ksef_state, 'rejected')
        self.assertIn("does not match the FA(3) structure (status 430)", invoice.ksef_message)
        self.assertEqual(invoice.ksef_transmission_ids[0].status_code, 430)
        self.assertEqual(invoice.ksef_banner_level, 'danger')
        self.assertTrue(invoice.show_reset_to_draft_button)
        # Retry rebuilds the XML from the invoice and sends it
        with patch.object(type(self.env['account.move']), '_ksef_send_now', lambda self: None):
            invoice.action_ksef_retry()
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)

    def test_rejected_410_without_permission_for_seller(self):
        invoice = self.ksef_invoice(post=False)
        other_nip = '5260250274'
        # the seller NIP on the invoice is not the NIP of the KSeF context Odoo logs in to
        self.ksef_company.write({'vat': 'PL%s' % other_nip, 'ksef_context_nip': self.ksef_nip})
        invoice.action_post()
        self.ksef_send(invoice)
        self.assertEqual(invoice.ksef_state, 'rejected')
        self.assertIn("no permission to issue invoices for this seller (status 410)", invoice.ksef_message)

    def test_duplicate_440_same_bytes_uses_original_number(self):
        invoice = self.ksef_send(self.ksef_invoice())
        self.assertKsefAccepted(invoice)
        number, xml_hash = invoice.ksef_number, invoice.ksef_xml_hash
        # Odoo "forgets" it sent the invoice (e.g. restored backup): state back to the queue, same file
        invoice.with_context(ksef_skip_guard=True).write({'ksef_state': 'to_send', 'ksef_number': False,
                                                          'ksef_reference': False, 'ksef_session_id': False,
                                                          'ksef_session_reference': False})
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        self.assertEqual(invoice.ksef_number, number)
        self.assertEqual(invoice.ksef_xml_hash, xml_hash)
        self.assertIn("duplicate", invoice.ksef_transmission_ids[0].message)
        self.assertEqual(len(self.ksef_sandbox.invoices(invoice_number=invoice.name, seller_nip=self.ksef_nip)), 1)

    def test_duplicate_440_rebuilt_bytes_keeps_the_copy_held_by_ksef(self):
        invoice = self.ksef_send(self.ksef_invoice())
        number, xml_hash = invoice.ksef_number, invoice.ksef_xml_hash
        invoice.with_context(ksef_skip_guard=True).write({'ksef_state': 'to_send', 'ksef_number': False,
                                                          'ksef_reference': False, 'ksef_session_id': False,
                                                          'ksef_session_reference': False})
        rebuilt, _problems = invoice._ksef_generate_xml()
        rebuilt = rebuilt.replace(b'<SystemInfo>', b'<SystemInfo>rebuilt ')
        invoice._ksef_freeze_xml(rebuilt)
        self.assertNotEqual(invoice.ksef_xml_hash, xml_hash)
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        self.assertEqual(invoice.ksef_number, number)
        self.assertEqual(invoice.ksef_xml_hash, xml_hash, "Odoo keeps the bytes KSeF holds (QR matches)")

    def test_reset_to_draft_and_edit_guards(self):
        invoice = self.ksef_send(self.ksef_invoice())
        self.assertKsefAccepted(invoice)
        self.assertFalse(invoice.show_reset_to_draft_button)
        with self.assertRaisesRegex(UserError, "cannot be reset to draft"):
            invoice.button_draft()
        with self.assertRaisesRegex(UserError, "cannot be cancelled"):
            invoice.button_cancel()
        with self.assertRaisesRegex(UserError, "cannot be changed"):
            invoice.partner_id = self.partner_b
        with self.assertRaisesRegex(UserError, "cannot be changed"):
            invoice.invoice_line_ids[0].name = "Changed label"
        # harmless writes still work
        invoice.narration = "Thank you"
        invoice.ref = "PO-1"

    def test_rejected_invoice_can_be_reset_fixed_and_resent(self):
        invoice = self.ksef_invoice()
        invoice._ksef_set_state('rejected', "KSeF rejected it", status_code=450)
        self.assertTrue(invoice.show_reset_to_draft_button)
        invoice.button_draft()
        self.assertEqual(invoice.state, 'draft')
        self.assertFalse(invoice.ksef_state)
        self.assertFalse(invoice.ksef_xml_hash)
        invoice.invoice_line_ids[0].name = "Fixed label"
        invoice.action_post()
        self.ksef_send(invoice)
        self.assertKsefAccepted(invoice)
        self.assertEqual(self.ksef_xpath(invoice, '//fa:FaWiersz/fa:P_7'), ["Fixed label"])

    def test_list_action_queues_many(self):
        invoices = self.ksef_invoice() | self.ksef_invoice() | self.ksef_invoice()
        action = invoices.action_ksef_send_background()
        self.assertEqual(action['tag'], 'display_notification')
        self.assertEqual(set(invoices.mapped('ksef_state')), {'to_send'})
        self.ksef_run_send()
        self.ksef_run_status(invoices)
        for invoice in invoices:
            self.assertKsefAccepted(invoice)
        self.assertEqual(len(invoices.ksef_session_id), 1, "one online session reused for all invoices")

    def test_batch_above_threshold(self):
        self.ksef_company.ksef_batch_threshold = 2
        invoices = self.ksef_invoice() | self.ksef_invoice() | self.ksef_invoice() | self.ksef_invoice()
        invoices.with_context(ksef_no_send_now=True)._ksef_enqueue()
        self.ksef_run_send()
        self.assertEqual(set(invoices.mapped('ksef_state')), {'sending'})
        session = invoices.ksef_session_id
        self.assertEqual(len(session), 1)
        self.assertEqual((session.kind, session.state, session.invoice_count), ('batch', 'closed', 4))
        self.ksef_run_status(invoices)
        for invoice in invoices:
            self.assertKsefAccepted(invoice)
            self.assertTrue(invoice.ksef_upo_id)
        self.assertEqual(len({i['ksefNumber'] for i in self.ksef_sandbox.invoices(
            session_reference_number=session.name)}), 4)

    def test_foreign_currency_and_eu_buyer(self):
        eur = self.env.ref('base.EUR')
        eur.active = True
        self.env['res.currency.rate'].create({'name': self.today, 'rate': 1 / 4.2684, 'currency_id': eur.id,
                                              'company_id': self.ksef_company.id})
        buyer = self.ksef_partner(name="Kunde GmbH", vat='DE123456788', country_id=self.env.ref('base.de').id,
                                  street="Hauptstr. 1", zip="10115", city="Berlin")
        invoice = self.ksef_invoice(partner=buyer, currency=eur, amounts=(100.0,))
        xml, problems = invoice._ksef_generate_xml()
        self.assertFalse(problems)
        tree = etree.fromstring(xml)

        def get(path):
            return [n.text for n in tree.xpath(path, namespaces=FA3_NS)]
        self.assertEqual(get('//fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:KodUE'), ['DE'])
        self.assertEqual(get('//fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:NrVatUE'), ['123456788'])
        self.assertEqual(get('//fa:KodWaluty'), ['EUR'])
        self.assertEqual(get('//fa:FaWiersz/fa:KursWaluty'), ['4.2684'])
        self.assertEqual(get('//fa:P_14_1'), ['23.00'])
        self.assertEqual(get('//fa:P_14_1W'), ['98.17'])

    def test_consumer_and_exempt_line(self):
        consumer = self.ksef_partner(name="Jan Kowalski", is_company=False)
        invoice = self.ksef_invoice(partner=consumer, taxes=self.tax_zw, post=False)
        invoice.ksef_exemption_basis = "art. 43 ust. 1 pkt 37 ustawy o VAT"
        invoice.action_post()
        self.ksef_send(invoice)
        self.assertKsefAccepted(invoice)
        self.assertEqual(self.ksef_xpath(invoice, '//fa:Podmiot2/fa:DaneIdentyfikacyjne/fa:BrakID'), ['1'])
        self.assertEqual(self.ksef_xpath(invoice, '//fa:Zwolnienie/fa:P_19A'), ["art. 43 ust. 1 pkt 37 ustawy o VAT"])
        self.assertEqual(self.ksef_xpath(invoice, '//fa:P_13_7'), ['100.00'])

    def test_remote_failure_never_raises_and_keeps_the_invoice_queued(self):
        invoice = self.ksef_invoice()
        invoice.with_context(ksef_no_send_now=True).action_ksef_send()
        self.ksef_sandbox.set_faults(type='error', status=503, path='/sessions/online$', method='POST')
        try:
            self.ksef_run_send()
        finally:
            self.ksef_sandbox.clear_faults()
        self.assertEqual(invoice.ksef_state, 'to_send')
        self.assertTrue(invoice.ksef_next_attempt)
        self.assertIn("Next attempt at", invoice.ksef_message)
        self.assertEqual(invoice.ksef_banner_level, 'warning')
        # the next run (forced now) sends it
        invoice.action_ksef_retry()
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)

    def test_invoice_views_show_ksef(self):
        Move = self.env['account.move']
        form = Move.get_view(self.env.ref('account.view_move_form').id, 'form')['arch']
        for needle in ('action_ksef_send', 'action_ksef_send_offline', 'id="ksef_tab"', 'ksef_banner',
                       'ksef_transmission_ids', 'action_ksef_retry'):
            self.assertIn(needle, form)
        listing = Move.get_view(self.env.ref('account.view_out_invoice_tree').id, 'list')['arch']
        self.assertIn('ksef_state', listing)
        search = Move.get_view(self.env.ref('account.view_account_invoice_filter').id, 'search')['arch']
        self.assertIn('ksef_rejected', search)

    def test_print_menu_items(self):
        invoice = self.ksef_send(self.ksef_invoice())
        keys = [item['key'] for item in invoice.get_extra_print_items()]
        self.assertIn('ksef_xml', keys)
        self.assertIn('ksef_upo', keys)
        self.assertIn(str(invoice.ksef_upo_id.id), invoice.action_ksef_download_upo()['url'])
