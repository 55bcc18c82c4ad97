from odoo import Command
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from odoo.addons.account.tests.common import AccountTestInvoicingCommon
from odoo.addons.l10n_pl_ksef.models.account_tax import KSEF_RATE_CODES, L10N_PL_TAX_RATE_CODES


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefTaxRateCodes(AccountTestInvoicingCommon):
    """Rate codes of taxes; no sandbox needed."""

    @classmethod
    @AccountTestInvoicingCommon.setup_country('pl')
    def setUpClass(cls):
        super().setUpClass()
        cls.company = cls.company_data['company']
        cls.chart = cls.env['account.chart.template'].with_company(cls.company)

    def _tax(self, xmlid):
        return self.chart.ref(xmlid)

    def test_selection_is_the_fa3_list(self):
        self.assertEqual([code for code, _label in KSEF_RATE_CODES],
                         ['23', '22', '8', '7', '5', '4', '3', '0 KR', '0 WDT', '0 EX', 'zw', 'oo', 'np I', 'np II'])

    def test_l10n_pl_taxes_are_mapped(self):
        for xmlid, code in L10N_PL_TAX_RATE_CODES.items():
            tax = self._tax(xmlid)
            self.assertEqual(tax.ksef_rate_code, code, xmlid)
        self.assertEqual(self._tax('vs_kraj_23').ksef_rate_code, '23')
        self.assertEqual(self._tax('vs_unia').ksef_rate_code, '0 WDT')
        self.assertEqual(self._tax('vs_eksp_tow').ksef_rate_code, '0 EX')
        self.assertEqual(self._tax('vs_dostu').ksef_rate_code, 'np II')
        self.assertEqual(self._tax('vs_kraj_zw').ksef_rate_code, 'zw')
        # purchase taxes are not written in FA(3) sales invoices
        self.assertFalse(self._tax('vz_kraj_23').ksef_rate_code)
        # every active sale tax of the chart is mapped; only the test suite's 20%/10% taxes are not
        unmapped = self.env['account.tax']._ksef_unmapped_taxes(self.company)
        self.assertEqual(unmapped, self.tax_armageddon.children_tax_ids)

    def test_post_init_fills_existing_companies(self):
        tax = self._tax('vs_kraj_8')
        tax.ksef_rate_code = False
        self.env['account.chart.template']._ksef_apply_tax_rate_codes(self.company)
        self.assertEqual(tax.ksef_rate_code, '8')

    def test_unmapped_tax_is_listed_and_blocks(self):
        tax = self.env['account.tax'].create({
            'name': "0% special", 'amount': 0.0, 'amount_type': 'percent', 'type_tax_use': 'sale',
            'company_id': self.company.id,
        })
        self.assertFalse(tax.ksef_rate_code, "0% without tags is ambiguous: no suggestion")
        self.assertIn(tax, self.env['account.tax']._ksef_unmapped_taxes(self.company))
        action = self.company.action_ksef_open_unmapped_taxes()
        self.assertEqual(self.env['account.tax'].search(action['domain']), tax | self.tax_armageddon.children_tax_ids)
        with self.assertRaises(UserError) as caught:
            (tax | self._tax('vs_kraj_23'))._ksef_rate_code_for()
        self.assertIn('"0% special"', caught.exception.args[0])
        self.assertIn("KSeF Rate Code", caught.exception.args[0])
        settings = self.env['res.config.settings'].with_company(self.company).create({})
        self.assertEqual(settings.ksef_unmapped_tax_count, 3)

    def test_rate_code_for_invoice_line(self):
        invoice = self.init_invoice('out_invoice', products=self.product_a, taxes=self._tax('vs_kraj_8'))
        line = invoice.invoice_line_ids
        self.assertEqual(line.tax_ids._ksef_rate_code_for(line), '8')
        self.assertFalse(self.env['account.tax']._ksef_rate_code_for(line), "no tax: no P_12")
        bad = self._tax('vs_kraj_5').copy({'ksef_rate_code': False, 'name': "5% copy"})
        bad.ksef_rate_code = False
        with self.assertRaises(UserError) as caught:
            bad._ksef_rate_code_for(line)
        self.assertIn(invoice.name or "", caught.exception.args[0])
        self.assertIn("5% copy", caught.exception.args[0])
        with self.assertRaises(UserError):
            (self._tax('vs_kraj_8') | self._tax('vs_kraj_5'))._ksef_rate_code_for(line)

    def test_group_tax_is_flattened(self):
        group = self.env['account.tax'].create({
            'name': "Group 23", 'amount_type': 'group', 'type_tax_use': 'sale', 'company_id': self.company.id,
            'children_tax_ids': [Command.set(self._tax('vs_kraj_23').ids)],
        })
        self.assertEqual(group._ksef_rate_code_for(), '23')

    def test_suggestion_for_new_taxes(self):
        Tax = self.env['account.tax']
        tax_8 = Tax.create({'name': "8% new", 'amount': 8, 'type_tax_use': 'sale', 'company_id': self.company.id})
        self.assertEqual(tax_8.ksef_rate_code, '8')
        tag_k21 = self._tax('vs_unia').invoice_repartition_line_ids.filtered(
            lambda rl: rl.repartition_type == 'base').tag_ids
        wdt = self._tax('vs_unia').copy({'name': "WDT copy"})
        self.assertEqual(wdt.ksef_rate_code, '0 WDT')
        self.assertTrue(tag_k21)
        # a chosen code is kept when the tax changes
        tax_8.ksef_rate_code = '8'
        tax_8.name = "8% renamed"
        self.assertEqual(tax_8.ksef_rate_code, '8')
        purchase = Tax.create({'name': "8% p", 'amount': 8, 'type_tax_use': 'purchase', 'company_id': self.company.id})
        self.assertFalse(purchase.ksef_rate_code)

    def test_code_must_match_rate(self):
        tax = self._tax('vs_kraj_23')
        with self.assertRaises(ValidationError):
            tax.ksef_rate_code = '8'
        with self.assertRaises(ValidationError):
            self._tax('vs_kraj_0').ksef_rate_code = '23'
        self._tax('vs_kraj_0').ksef_rate_code = 'zw'
