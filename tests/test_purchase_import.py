"""Importing KSeF purchase invoices as vendor bills: every step and branch of the import wizard, the VAT
white-list checks against a local fake of wl-api.mf.gov.pl, correction linking, and the official samples."""
import base64
import datetime
import time
from decimal import Decimal

from odoo import Command, fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from odoo.addons.l10n_pl_ksef.ksef import fa3
from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers
from odoo.addons.l10n_pl_ksef.ksef.client import ExportedInvoice
from odoo.addons.l10n_pl_ksef.ksef.tests.whitelist_fake import FakeWhiteList
from odoo.addons.l10n_pl_ksef.tests.common import random_nip
from odoo.addons.l10n_pl_ksef.tests.test_receive import KsefReceiveCommon

NRB_A = "61109010140000071219812874"
NRB_B = "27114020040000300201355387"
NRB_C = "10105000997603123456789123"


def _nrb(bank8, tail16):
    account = bank8 + tail16
    return "%02d%s" % (98 - int(account + "252100") % 97, account)


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestPurchaseImport(KsefReceiveCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.whitelist = FakeWhiteList().start()
        cls.addClassCleanup(cls.whitelist.stop)
        cls.env['ir.config_parameter'].sudo().set_param('l10n_pl_ksef.whitelist_url', cls.whitelist.url)
        today = datetime.date.today()
        cls.nip_a, cls.nip_b, cls.nip_c = random_nip(), random_nip(), random_nip()
        cls.nrb_c = _nrb("10205011", "%016d" % int(cls.nip_c))
        # A: new vendor, 2 lines 23 % and 8 %, paid to NRB_A (registered in the white list)
        inv_a = fa3.example_invoice(seller_nip=cls.nip_a, number="FA/A/1", lines=2)
        inv_a.fa.fa_wiersz[1].p_12 = '8'
        inv_a.podmiot1.dane_identyfikacyjne.nazwa = "Papirus (z faktury)"
        fa3.apply_summary(inv_a)
        # B: existing vendor with a formatted tax id, EUR at 4.25, paid to NRB_B (not known in Odoo)
        inv_b = fa3.example_invoice(seller_nip=cls.nip_b, number="FA/B/1", lines=3, currency='EUR')
        inv_b.fa.platnosc.rachunek_bankowy[0].nr_rb = NRB_B
        # C: known vendor and bank account, a product bought under the vendor's code SKU-00001
        inv_c = fa3.example_invoice(seller_nip=cls.nip_c, number="FA/C/1", lines=2)
        inv_c.fa.platnosc.rachunek_bankowy[0].nr_rb = cls.nrb_c
        numbers = cls.ksef_sandbox.seed(cls.ksef_nip, count=0, xml=[
            base64.b64encode(fa3.build(i)).decode() for i in (inv_a, inv_b, inv_c)])
        cls.number_a, cls.number_b, cls.number_c = numbers
        # D: correction of C (by its KSeF number): -10 % on both lines
        inv_d = fa3.example_invoice(seller_nip=cls.nip_c, number="FK/C/1", lines=2)
        inv_d.fa.rodzaj_faktury = 'KOR'
        inv_d.fa.p_6 = None
        inv_d.fa.przyczyna_korekty = "Rabat 10%"
        inv_d.fa.typ_korekty = 2
        inv_d.fa.dane_fa_korygowanej = [fa3.DaneFaKorygowanej(
            data_wyst_fa_korygowanej=today, nr_fa_korygowanej="FA/C/1", nr_ksef=1,
            nr_ksef_fa_korygowanej=cls.number_c)]
        for line in inv_d.fa.fa_wiersz:
            line.p_9a = -(line.p_9a / 10).quantize(Decimal('0.01'))
            line.p_11 = (line.p_9a * line.p_8b).quantize(Decimal('0.01'))
        inv_d.fa.platnosc.rachunek_bankowy[0].nr_rb = cls.nrb_c
        fa3.apply_summary(inv_d)
        cls.number_d = cls.ksef_sandbox.seed(cls.ksef_nip, count=0,
                                             xml=[base64.b64encode(fa3.build(inv_d)).decode()])[0]
        time.sleep(0.2)
        cls.ksef_download()
        cls.partner_b = cls.env['res.partner'].create({
            'name': "Drukarnia Kolor S.A.", 'vat': 'PL %s-%s-%s-%s' % (cls.nip_b[:3], cls.nip_b[3:6], cls.nip_b[6:8],
                                                                     cls.nip_b[8:]),
            'is_company': True, 'country_id': cls.env.ref('base.pl').id})
        cls.partner_c = cls.env['res.partner'].create({
            'name': "Biuro Saldo", 'vat': 'PL%s' % cls.nip_c, 'is_company': True,
            'country_id': cls.env.ref('base.pl').id,
            'bank_ids': [Command.create({'acc_number': 'PL' + cls.nrb_c})]})
        cls.product_c = cls.env['product.product'].create({'name': "Papier A4 (nasz)", 'type': 'consu'})
        cls.env['product.supplierinfo'].create({'partner_id': cls.partner_c.id, 'product_code': 'SKU-00001',
                                                'product_tmpl_id': cls.product_c.product_tmpl_id.id})

    def setUp(self):
        super().setUp()
        self.whitelist.reset()
        self.whitelist.add_subject(self.nip_a, "PAPIRUS Sp. z o.o.", regon="123456785", krs="0000123456",
                                   accounts=[NRB_A], working_address="ul. Składowa 12, 61-897 Poznań")
        self.whitelist.add_subject(self.nip_b, "Drukarnia Kolor S.A.", accounts=[NRB_B])
        self.whitelist.add_subject(self.nip_c, "Biuro Saldo", accounts=[])

    def wizard(self, number):
        record = self.inbox(ksef_number=number)
        self.assertTrue(record, number)
        action = record.action_ksef_import()
        self.assertEqual(action['res_model'], 'l10n_pl_ksef.purchase_import')
        self.assertEqual(action['target'], 'new')
        return self.env['l10n_pl_ksef.purchase_import'].browse(action['res_id'])

    def checks(self, wizard):
        return wizard.checks_html

    # ------------------------------------------------------------------ the four steps
    def test_new_vendor_from_white_list_then_bill(self):
        wizard = self.wizard(self.number_a)
        self.assertEqual(wizard.step, 'checks')
        self.assertFalse(wizard.blocking)
        self.assertTrue(wizard.needs_vendor)
        self.assertIn('not in Odoo yet', wizard.checks_html)
        self.assertIn('is the buyer', wizard.checks_html)
        # step 2: the vendor, pre-filled from the invoice
        wizard.action_next()
        self.assertEqual(wizard.step, 'vendor')
        self.assertEqual(wizard.vendor_name, "Papirus (z faktury)")
        self.assertEqual(wizard.vendor_vat, 'PL%s' % self.nip_a)
        self.assertEqual((wizard.vendor_street, wizard.vendor_zip, wizard.vendor_city),
                         ("ul. Kwiatowa 1 m. 2", "00-001", "Warszawa"))
        self.assertEqual(wizard.vendor_country_id.code, 'PL')
        self.assertEqual(wizard.vendor_email, "biuro@example.com")
        # ... completed from the VAT white list (official name, address, REGON, KRS, status, accounts)
        wizard.action_vendor_whitelist()
        self.assertEqual(self.whitelist.requests[-1][0], '/api/search/nip/%s' % self.nip_a)
        self.assertEqual(wizard.vendor_name, "PAPIRUS Sp. z o.o.")
        self.assertEqual((wizard.vendor_street, wizard.vendor_zip, wizard.vendor_city),
                         ("ul. Składowa 12", "61-897", "Poznań"))
        self.assertEqual((wizard.vendor_regon, wizard.vendor_company_registry, wizard.vendor_vat_status),
                         ("123456785", "0000123456", 'active'))
        self.assertEqual(wizard.vendor_whitelist_accounts, NRB_A)
        self.assertTrue(wizard.vendor_whitelist_request_id)
        wizard.action_create_vendor()
        partner = wizard.partner_id
        self.assertEqual((partner.name, partner.vat, partner.ksef_regon, partner.ksef_vat_status),
                         ("PAPIRUS Sp. z o.o.", 'PL%s' % self.nip_a, "123456785", 'active'))
        bank = partner.bank_ids
        self.assertEqual(bank.sanitized_acc_number, 'PL' + NRB_A)
        self.assertEqual(bank.ksef_whitelist_state, 'assigned')
        self.assertEqual(bank.ksef_whitelist_request_id, wizard.vendor_whitelist_request_id)
        # the registered account is the invoice's: no bank step, straight to the bill options
        self.assertEqual(wizard.step, 'options')
        self.assertEqual(wizard.partner_bank_id, bank)
        self.assertEqual(wizard.move_type, 'in_invoice')
        self.assertEqual(wizard.journal_id.type, 'purchase')
        codes = {line.rate_code: line.tax_id for line in wizard.tax_line_ids}
        self.assertEqual(set(codes), {'23', '8'})
        chart = self.env['account.chart.template'].with_company(self.ksef_company)
        self.assertEqual(codes['23'], chart.ref('vz_kraj_23'))
        self.assertEqual(codes['8'], chart.ref('vz_kraj_8'))
        action = wizard.action_create_bill()
        move = self.env['account.move'].browse(action['res_id'])
        self.assertEqual(action['res_model'], 'account.move')
        record = wizard.inbox_id
        invoice = record._ksef_invoice()
        self.assertEqual(move.move_type, 'in_invoice')
        self.assertEqual(move.state, 'draft')
        self.assertEqual(move.partner_id, partner)
        self.assertEqual(move.partner_bank_id, bank)
        self.assertEqual(move.ksef_number, self.number_a)
        self.assertEqual(move.ref, "FA/A/1")
        self.assertEqual(move.payment_reference, "FA/A/1")
        self.assertEqual(move.invoice_date, invoice.fa.p_1)
        self.assertEqual(move.delivery_date, invoice.fa.p_6)
        self.assertEqual(move.invoice_date_due, invoice.fa.platnosc.termin_platnosci[0].termin)
        self.assertAlmostEqual(move.amount_total, float(invoice.fa.p_15), places=2)
        self.assertAlmostEqual(move.amount_tax, float(invoice.fa.p_14_1 + invoice.fa.p_14_2), places=2)
        self.assertEqual(len(move.invoice_line_ids), 2)
        for line, row in zip(move.invoice_line_ids.sorted('sequence'), invoice.fa.fa_wiersz):
            self.assertEqual(line.quantity, float(row.p_8b))
            self.assertAlmostEqual(line.price_unit, float(row.p_9a), places=2)
            self.assertAlmostEqual(line.price_subtotal, float(row.p_11), places=2)
            self.assertEqual(line.tax_ids, codes[row.p_12])
        names = sorted(move.attachment_ids.mapped('name'))
        self.assertEqual(names, sorted(['%s.xml' % self.number_a, 'KSeF-%s.pdf' % self.number_a]))
        xml = move.attachment_ids.filtered(lambda a: a.name.endswith('.xml'))
        self.assertEqual(xml.raw, record._ksef_xml())
        self.assertEqual(move.message_main_attachment_id.name, 'KSeF-%s.pdf' % self.number_a)
        self.assertEqual((record.state, record.move_id), ('processed', move))
        # both ways: from the bill back to the inbox record
        back = self.env['l10n_pl_ksef.inbox']._ksef_action_open_for_moves(move)
        self.assertEqual(back['res_id'], record.id)

    def test_without_contact_creation_right_a_clear_message(self):
        user = new_test_user(self.env, login='ksef_import_no_contacts', groups='account.group_account_manager',
                             company_id=self.ksef_company.id, company_ids=[self.ksef_company.id])
        self.assertFalse(user.has_group('base.group_partner_manager'))
        record = self.inbox(ksef_number=self.number_a).with_user(user)
        wizard = self.env['l10n_pl_ksef.purchase_import'].with_user(user).browse(
            record.action_ksef_import()['res_id'])
        wizard.action_next()
        self.assertEqual(wizard.step, 'vendor')
        with self.assertRaises(UserError) as caught:
            wizard.action_create_vendor()
        self.assertNotIsInstance(caught.exception, AccessError, "a clear message, not Odoo's access error")
        self.assertIn("choose an existing one", str(caught.exception))
        self.assertFalse(self.env['res.partner'].search([('vat', '=', 'PL%s' % self.nip_a)]))

    def test_existing_vendor_bank_step_with_white_list_check_and_foreign_currency(self):
        wizard = self.wizard(self.number_b)
        self.assertEqual(wizard.partner_id, self.partner_b, "PL 123-456-78-90 matches the NIP")
        self.assertTrue(wizard.needs_bank)
        self.assertIn(NRB_B, wizard.checks_html)
        wizard.action_next()
        self.assertEqual(wizard.step, 'bank')
        self.assertEqual(wizard.bank_acc_number, NRB_B)
        self.assertEqual(wizard.bank_whitelist_state, 'not_checked')
        wizard.action_bank_whitelist()
        self.assertEqual(self.whitelist.requests[-1][0], '/api/check/nip/%s/bank-account/%s' % (self.nip_b, NRB_B))
        self.assertEqual(wizard.bank_whitelist_state, 'assigned')
        self.assertTrue(wizard.bank_whitelist_request_id)
        self.assertEqual(wizard.bank_whitelist_date, fields.Date.context_today(wizard))
        request_id = wizard.bank_whitelist_request_id
        wizard.action_add_bank()
        bank = wizard.partner_bank_id
        self.assertEqual(bank.partner_id, self.partner_b)
        self.assertEqual((bank.ksef_whitelist_state, bank.ksef_whitelist_request_id, bank.ksef_whitelist_nip),
                         ('assigned', request_id, self.nip_b))
        self.assertTrue(bank.ksef_whitelist_date and bank.ksef_whitelist_checked_at)
        self.assertEqual(wizard.step, 'options')
        move = self.env['account.move'].browse(wizard.action_create_bill()['res_id'])
        invoice = wizard.inbox_id._ksef_invoice()
        self.assertEqual(move.currency_id.name, 'EUR')
        self.assertTrue(move.currency_id.active)
        self.assertAlmostEqual(move.invoice_currency_rate, 1 / 4.25, places=6)
        self.assertAlmostEqual(move.amount_total, float(invoice.fa.p_15), places=2)
        vat_pln = float(invoice.fa.p_14_1w)
        tax_lines = move.line_ids.filtered(lambda line: line.display_type == 'tax')
        self.assertAlmostEqual(abs(sum(tax_lines.mapped('balance'))),
                               vat_pln, delta=0.02)
        self.assertEqual(move.partner_bank_id, bank)

    def test_account_not_on_the_white_list_and_skip_bank(self):
        self.whitelist.subjects[self.nip_b]['accountNumbers'] = []
        wizard = self.wizard(self.number_b)
        wizard.action_next()
        wizard.action_bank_whitelist()
        self.assertEqual(wizard.bank_whitelist_state, 'not_assigned')
        self.assertIn('NOT on the VAT white list', wizard.bank_whitelist_message)
        wizard.action_skip_bank()
        self.assertEqual(wizard.step, 'options')
        self.assertFalse(wizard.partner_bank_id)
        move = self.env['account.move'].browse(wizard.action_create_bill()['res_id'])
        self.assertFalse(move.partner_bank_id)
        self.assertFalse(self.partner_b.bank_ids)

    def test_white_list_failures_are_clear_user_errors(self):
        wizard = self.wizard(self.number_b)
        wizard.action_next()
        self.whitelist.fail('WL-191')
        with self.assertRaisesRegex(UserError, 'daily limit'):
            wizard.action_bank_whitelist()
        self.whitelist.fail('WL-196', count=1)
        with self.assertRaisesRegex(UserError, 'not available'):
            wizard.action_bank_whitelist()
        self.assertEqual(wizard.bank_whitelist_state, 'not_checked')
        # the bank account form button: a check against the holder's NIP, the answer stored as proof
        bank = self.env['res.partner.bank'].create({'partner_id': self.partner_b.id, 'acc_number': NRB_B})
        result = bank.action_ksef_whitelist_check()
        self.assertEqual(result['params']['type'], 'success')
        self.assertEqual(bank.ksef_whitelist_state, 'assigned')
        foreign = self.env['res.partner.bank'].create({'partner_id': self.partner_b.id,
                                                        'acc_number': 'DE89370400440532013000'})
        foreign.action_ksef_whitelist_check()
        self.assertEqual(foreign.ksef_whitelist_state, 'not_applicable')
        # partner refresh: status, REGON and registered accounts from the register
        self.whitelist.add_subject(self.nip_b, "Drukarnia Kolor S.A.", regon="987654321", accounts=[NRB_B, NRB_C])
        self.partner_b.action_ksef_whitelist_refresh()
        self.assertEqual((self.partner_b.ksef_regon, self.partner_b.ksef_vat_status), ("987654321", 'active'))
        self.assertEqual(sorted(self.partner_b.bank_ids.mapped('sanitized_acc_number')),
                         sorted(['DE89370400440532013000', NRB_B, 'PL' + NRB_C]))

    def test_use_an_existing_partner_without_tax_id(self):
        partner = self.env['res.partner'].create({'name': "Papirus", 'is_company': True})
        wizard = self.wizard(self.number_a)
        wizard.action_next()
        wizard.partner_id = partner
        wizard.action_use_vendor()
        self.assertEqual(partner.vat, 'PL%s' % self.nip_a)
        self.assertEqual(wizard.step, 'bank', "the invoice's account is not registered for that partner")

    def test_known_vendor_goes_straight_to_options_with_product_matching(self):
        wizard = self.wizard(self.number_c)
        self.assertFalse(wizard.needs_vendor or wizard.needs_bank)
        self.assertEqual(wizard.partner_bank_id.partner_id, self.partner_c)
        wizard.action_next()
        self.assertEqual(wizard.step, 'options')
        account = self.company_data['default_account_expense']
        wizard.default_account_id = account
        move = self.env['account.move'].browse(wizard.action_create_bill()['res_id'])
        lines = move.invoice_line_ids.sorted('sequence')
        self.assertEqual(lines[0].product_id, self.product_c, "SKU-00001 is the vendor's code of our product")
        self.assertFalse(lines[1].product_id)
        self.assertEqual(lines[1].account_id, account)
        self.assertIn('SKU-00002', lines[1].name)

    def test_correction_becomes_a_credit_note_linked_to_the_original(self):
        original = self.inbox(ksef_number=self.number_c)._ksef_create_bill(self.partner_c, render_pdf=False)
        wizard = self.wizard(self.number_d)
        self.assertIn('Corrected bill found', wizard.checks_html)
        wizard.action_next()
        self.assertEqual(wizard.move_type, 'in_refund')
        self.assertEqual(wizard.original_move_id, original)
        refund = self.env['account.move'].browse(wizard.action_create_bill()['res_id'])
        invoice = wizard.inbox_id._ksef_invoice()
        self.assertEqual(refund.move_type, 'in_refund')
        self.assertEqual(refund.reversed_entry_id, original)
        self.assertAlmostEqual(refund.amount_total, -float(invoice.fa.p_15), places=2)
        self.assertIn(self.number_c, refund.narration)
        self.assertIn("Rabat 10%", refund.narration)

    def test_import_twice_is_impossible_and_mark_processed_is_final(self):
        record = self.inbox(ksef_number=self.number_c)
        move = record._ksef_create_bill(self.partner_c, render_pdf=False)
        with self.assertRaisesRegex(UserError, 'already imported'):
            record._ksef_create_bill(self.partner_c, render_pdf=False)
        record.state = 'new'          # even if someone reopened it, the bill's KSeF number blocks a second one
        with self.assertRaisesRegex(UserError, 'already imported'):
            record._ksef_create_bill(self.partner_c, render_pdf=False)
        checks, _found = record._ksef_import_checks()
        self.assertEqual([c['key'] for c in checks], ['duplicate'])
        self.assertIn(move.display_name, checks[0]['message'])
        other = self.inbox(ksef_number=self.number_a)
        other.action_ksef_mark_processed()
        self.assertEqual(other.state, 'processed')
        self.assertEqual(other.processed_by_id, self.env.user)
        wizard = self.wizard(self.number_a)
        self.assertTrue(wizard.blocking)
        with self.assertRaises(UserError):
            wizard.action_next()

    def test_wizard_title_and_payment_form_in_the_user_language(self):
        self.env['res.lang']._activate_lang('pl_PL')
        step = self.env['ir.model.fields.selection'].search([
            ('field_id.model', '=', 'l10n_pl_ksef.purchase_import'), ('field_id.name', '=', 'step'),
            ('value', '=', 'checks')])
        step.with_context(lang='pl_PL').name = "Weryfikacja"
        self.env.registry.clear_cache()
        wizard = self.wizard(self.number_c)
        self.assertIn("Checks", wizard._reopen()['name'])
        self.assertIn("Weryfikacja", wizard.with_context(lang='pl_PL')._reopen()['name'])
        # FormaPlatnosci 6 of the example invoice, in words (translatable), not a code
        values = self.inbox(ksef_number=self.number_c)._ksef_display_values()
        self.assertEqual(values['payment']['form'], "bank transfer")

    def test_not_the_buyer_and_unsupported_are_blocking(self):
        invoice = fa3.example_invoice(seller_nip=random_nip(), buyer_nip=random_nip(), number="FA/X/1")
        number = ksef_numbers.generate_ksef_number(invoice.podmiot1.dane_identyfikacyjne.nip, datetime.date.today())
        record = self.Inbox._ksef_store_downloaded(self.ksef_company, [ExportedInvoice(number, fa3.build(invoice))])
        wizard = self.wizard(number)
        self.assertTrue(wizard.blocking)
        self.assertIn('is not the buyer', wizard.checks_html)
        with self.assertRaises(UserError):
            wizard.action_next()
        record.invoice_type = 'VAT_RR'
        checks, _found = record._ksef_import_checks()
        self.assertEqual(checks[0]['key'], 'type')
        self.assertEqual(checks[0]['level'], 'blocking')
        zero = self.inbox(invoice_type='KOR').filtered(lambda r: not r.amount_gross)[:1]
        checks, _found = zero._ksef_import_checks()
        self.assertIn(('amounts', 'blocking'), [(c['key'], c['level']) for c in checks])

    def test_every_official_sample_imports_with_the_invoice_totals(self):
        records = self.inbox().filtered(lambda r: r.ksef_number in self.seeded)
        done = self.env['l10n_pl_ksef.inbox']
        for record in records:
            checks, found = record._ksef_import_checks()
            if any(c['level'] == 'blocking' for c in checks):
                self.assertIn(record.invoice_type, ('KOR', 'KOR_ZAL'), "only zero-amount corrections are refused")
                continue
            partner = found['partner'] or self.env['res.partner'].create({
                'name': record.seller_name, 'vat': 'PL%s' % record.seller_nip, 'is_company': True})
            move = record._ksef_create_bill(partner, render_pdf=False)
            invoice = record._ksef_invoice()
            total = float(invoice.fa.p_15)
            self.assertEqual(move.move_type, 'in_refund' if total < 0 else 'in_invoice', record.invoice_number)
            # MF example 1 states P_15 = 2051 for 2050.99 of nets + VAT: a 0.01 tolerance
            self.assertAlmostEqual(move.amount_total, abs(total), delta=0.011, msg=record.invoice_number)
            if move.currency_id == self.ksef_company.currency_id and fa3.rates.bucket_values(invoice.fa):
                vat = sum(float(v or 0) for _n, v, _p in fa3.rates.bucket_values(invoice.fa).values())
                sign = -1 if move.move_type == 'in_refund' else 1
                self.assertAlmostEqual(move.amount_tax, sign * vat, delta=0.011, msg=record.invoice_number)
            done |= record
        self.assertEqual(set(done.mapped('invoice_type')), {'VAT', 'KOR', 'ZAL', 'ROZ', 'UPR', 'KOR_ZAL', 'KOR_ROZ'})
        self.assertTrue(all(r.state == 'processed' for r in done))

    def test_import_ready_invoices_in_one_click(self):
        records = self.inbox(ksef_number=self.number_c) | self.inbox(ksef_number=self.number_a)
        action = records.action_ksef_import_ready()
        self.assertEqual(action['tag'], 'display_notification')
        record_c = self.inbox(ksef_number=self.number_c)
        self.assertEqual(record_c.state, 'processed')
        self.assertTrue(record_c.move_id.attachment_ids.filtered(lambda a: a.name.endswith('.pdf')))
        self.assertEqual(self.inbox(ksef_number=self.number_a).state, 'new', "vendor A must be created first")

    def test_pdf_visualisation_has_the_qr_code(self):
        record = self.inbox(ksef_number=self.number_a)
        url = record._ksef_qr_url()
        self.assertTrue(url.startswith(self.ksef_sandbox.qr_url + '/invoice/%s/' % self.nip_a))
        html = self.env['ir.actions.report']._render_qweb_html('l10n_pl_ksef.report_ksef_inbox', record.ids)[0]
        self.assertIn(b'data:image/png;base64,', html)
        self.assertIn(url.encode(), html)
        self.assertIn(record.ksef_number.encode(), html)
        pdf = record.with_context(force_report_rendering=True)._ksef_render_pdfs()[record.id]
        self.assertTrue(pdf.startswith(b'%PDF'))


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestPurchaseMatching(KsefReceiveCommon):
    """Partner matching by tax id (Polish, EU, other) in multi-company, and tax mapping per rate code."""

    seed_samples = False

    def test_partner_matching_by_tax_identifiers_and_company(self):
        Partner = self.env['res.partner']
        company = self.ksef_company
        nip = random_nip()
        shared = Partner.create({'name': "Shared", 'vat': 'PL %s' % nip, 'is_company': True})
        self.assertEqual(Partner._ksef_find_by_tax_id(company, nip=nip), shared)
        contact = Partner.create({'name': "Jan", 'parent_id': shared.id, 'type': 'contact'})
        self.assertEqual(Partner._ksef_find_by_tax_id(company, nip=nip), shared, "commercial partner, not contact")
        own = Partner.create({'name': "Own", 'vat': nip, 'is_company': True, 'company_id': company.id})
        self.assertEqual(Partner._ksef_find_by_tax_id(company, nip=nip), own, "the company's own partner wins")
        other_company = self.env['res.company'].create({'name': "Other Sp. z o.o."})
        other_nip = random_nip()
        Partner.create({'name': "Elsewhere", 'vat': 'PL' + other_nip, 'company_id': other_company.id})
        self.assertFalse(Partner._ksef_find_by_tax_id(company, nip=other_nip), "partner of another company")
        de = Partner.create({'name': "GmbH", 'vat': 'DE 123456788', 'country_id': self.env.ref('base.de').id})
        self.assertEqual(Partner._ksef_find_by_tax_id(company, eu_prefix='DE', eu_number='123456788'), de)
        self.assertEqual(Partner._ksef_find_by_tax_id(company, eu_prefix='DE', eu_number='DE123456788'), de)
        us = Partner.create({'name': "Inc", 'vat': '98-7654321', 'country_id': self.env.ref('base.us').id})
        us.flush_recordset()
        self.assertEqual(Partner._ksef_find_by_tax_id(company, other_id='987654321', country_code='US'), us)
        self.assertFalse(Partner._ksef_find_by_tax_id(company, other_id='987654321', country_code='GB'))
        contact.unlink()

    def test_rate_codes_map_to_the_polish_purchase_taxes(self):
        record = self.Inbox.create({'company_id': self.ksef_company.id,
                                    'ksef_number': ksef_numbers.generate_ksef_number(random_nip(),
                                                                                     datetime.date.today())})
        ref = self.env['account.chart.template'].with_company(self.ksef_company).ref
        expected = {'23': 'vz_kraj_23', '8': 'vz_kraj_8', '5': 'vz_kraj_5', '0 KR': 'vz_kraj_0', '0 WDT': 'vz_kraj_0',
                    '0 EX': 'vz_kraj_0', 'zw': 'vz_kraj_zw', 'np II': 'vz_nabu'}
        for code, xmlid in expected.items():
            self.assertEqual(record._ksef_purchase_tax(code), ref(xmlid), code)
        self.assertFalse(record._ksef_purchase_tax('np I'), "supply outside Poland: no Polish tax")
        # a purchase tax mapped by hand (ksef_rate_code) wins
        services = ref('vz_kraj_usl_23')
        services.ksef_rate_code = '23'
        self.assertEqual(record._ksef_purchase_tax('23'), services)
