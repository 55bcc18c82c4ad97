"""Fuzzing the FA(3) export with odd partner / product / invoice data (hypothesis).

Every posted customer invoice — whatever its partner and product look like (very long names, control
characters, emojis, no street / city / zip, zero and negative prices and quantities, 23/8/5/0 %, exempt,
reverse charge and not-taxable-in-Poland mixes, EUR/USD with exchange rates) — either gives FA(3) XML
that passes the official XSD and the business rules, or a list of translated problems each naming the
invoice (and through it the record and field to fix). Nothing else may come out of the builder: no
``TypeError``, ``KeyError``, ``ValueError`` from lxml, ...
"""
import collections
import datetime
import logging
import string
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from odoo import fields
from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from odoo.addons.l10n_pl_ksef.ksef import fa3
from odoo.addons.l10n_pl_ksef.tests.common import random_nip
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import FA3_NS, KsefSendCommon

_logger = logging.getLogger(__name__)

EMOJIS = "😀🚚📦🇵🇱👍🏽🧾"
ODD_CHARS = "\x01\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f\x85\xa0\u200b\u2028\ufeff\ufffe\t\r\n"
POLISH = "zażółć gęślą jaźń ZAŻÓŁĆ &<>\"' "

odd_text = st.one_of(
    st.text(alphabet=string.ascii_letters + POLISH + EMOJIS + ODD_CHARS, min_size=1, max_size=40),
    st.text(alphabet=string.ascii_letters + POLISH + EMOJIS, min_size=513, max_size=700),
    st.sampled_from(["", " ", "\t\n", "   \x01   ", "Łódź 🚚", "x" * 600]),
)
maybe_text = st.one_of(st.none(), odd_text)

VAT_KINDS = ('pl_valid', 'pl_invalid', 'none', 'eu', 'eu_bad', 'foreign', 'slash')
# (tax codes on a line) — several codes on one line must be refused per line, not crash
TAX_MIXES = [('23',), ('8',), ('5',), ('0 KR',), ('zw',), ('oo',), ('np I',), ('np II',), ('0 WDT',), ('0 EX',),
             (), ('23', '8')]

line_strategy = st.fixed_dictionaries({
    'name': odd_text,
    'product': st.one_of(st.none(), st.fixed_dictionaries({
        'name': odd_text, 'default_code': maybe_text, 'barcode': st.one_of(st.none(), st.sampled_from(
            ["5901234123457", "123", "abc\x01", "😀" * 10])),
    })),
    # mostly amounts Odoo lets post (a negative total is refused before KSeF), some zero and negative;
    # totals stay below 10^13 (beyond, Odoo's own float balance check refuses the move)
    'quantity': st.sampled_from([1.0, 1.0, 2.5, 3.0, 0.000001, 1e4, 0.0, -1.0]),
    'price_unit': st.sampled_from([100.0, 0.01, 99.99, 1234567.891, 1e8, 0.0, -100.0, -0.01]),
    'discount': st.sampled_from([0.0, 10.0, 100.0, 33.333]),
    'taxes': st.sampled_from(TAX_MIXES),
})

invoice_strategy = st.fixed_dictionaries({
    'partner_name': odd_text,
    'is_company': st.booleans(),
    'vat_kind': st.sampled_from(VAT_KINDS),
    'country': st.sampled_from([None, 'PL', 'DE', 'US']),
    'street': maybe_text,
    'street2': maybe_text,
    'city': maybe_text,
    'zip': maybe_text,
    'ref': maybe_text,
    'currency': st.sampled_from(['PLN', 'EUR', 'USD']),
    'exemption_basis': maybe_text,
    'move_type': st.sampled_from(['out_invoice', 'out_invoice', 'out_invoice', 'out_refund']),
    'lines': st.lists(line_strategy, min_size=1, max_size=4),
})

EXAMPLE_BASE = {
    'partner_name': "Klient", 'is_company': True, 'vat_kind': 'pl_valid', 'country': 'PL', 'street': "ul. Długa 1",
    'street2': None, 'city': "Gdańsk", 'zip': "80-001", 'ref': None, 'currency': 'PLN', 'exemption_basis': None,
    'move_type': 'out_invoice',
}
EXAMPLE_LINE = {'name': "Usługa", 'product': None, 'quantity': 1.0, 'price_unit': 100.0, 'discount': 0.0,
                'taxes': ('23',)}


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestFuzzFa3Build(KsefSendCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fuzz_taxes = {code: cls._ksef_tax(code) for code in
                          ('23', '8', '5', '0 KR', 'zw', 'np I', 'np II', '0 WDT', '0 EX')}
        # the Polish chart has no domestic reverse-charge sale tax: one like users create it
        cls.fuzz_taxes['oo'] = cls.tax_23.copy({'name': "0% reverse charge (oo)", 'amount': 0.0,
                                                'ksef_rate_code': 'oo'})
        cls.fuzz_currencies = {'PLN': cls.ksef_company.currency_id}
        for code, rate in (('EUR', 0.2345), ('USD', 0.2571)):
            cls.fuzz_currencies[code] = cls.setup_other_currency(code, rates=[('2000-01-01', rate)])
        cls.fuzz_countries = {code: cls.env.ref('base.%s' % code.lower()) for code in ('PL', 'DE', 'US')}

    # ------------------------------------------------------------------ data
    def _vat(self, kind):
        return {
            'pl_valid': 'PL%s' % random_nip(),
            'pl_invalid': 'PL1234567890',
            'none': False,
            'eu': 'DE123456789',
            'eu_bad': 'DE12',
            'foreign': 'US-12 345 678',
            'slash': '/',
        }[kind]

    def _make_invoice(self, data):
        country = self.fuzz_countries.get(data['country'])
        partner = self.env['res.partner'].with_context(no_vat_validation=True).create({
            'name': data['partner_name'] or "?",  # the name is required by Odoo itself
            'is_company': data['is_company'],
            'vat': self._vat(data['vat_kind']),
            'country_id': country.id if country else False,
            'street': data['street'], 'street2': data['street2'], 'city': data['city'], 'zip': data['zip'],
            'ref': data['ref'],
        })
        lines = []
        for index, line in enumerate(data['lines']):
            product = self.env['product.product']
            if line['product']:
                product = self.env['product.product'].create({
                    'name': line['product']['name'] or "?",
                    'default_code': line['product']['default_code'],
                    # unique within the example (each example is rolled back)
                    'barcode': line['product']['barcode'] and "%s%s%d" % (
                        line['product']['barcode'], "" if line['product']['barcode'].isdigit() else "-", index),
                    'taxes_id': [fields.Command.clear()],
                })
            taxes = [self.fuzz_taxes[code].id for code in line['taxes']]
            lines.append(fields.Command.create({
                'name': line['name'] or False,
                'product_id': product.id or False,
                'quantity': line['quantity'],
                'price_unit': line['price_unit'],
                'discount': line['discount'],
                'tax_ids': [fields.Command.set(taxes)],
            }))
        move = self.env['account.move'].create({
            'move_type': data['move_type'],
            'partner_id': partner.id,
            'invoice_date': self.today,
            'currency_id': self.fuzz_currencies[data['currency']].id,
            'company_id': self.ksef_company.id,
            'partner_bank_id': self.ksef_bank.id if data['move_type'] == 'out_invoice' else False,
            'ksef_exemption_basis': data['exemption_basis'] or False,
            'invoice_line_ids': lines,
        })
        return move

    # ------------------------------------------------------------------ the property
    def _check_case(self, data):
        with self.env.cr.savepoint() as savepoint:
            try:
                return self._check_invoice(data)
            finally:
                savepoint.rollback()
                self.env.invalidate_all()

    def _check_invoice(self, data):
        try:
            move = self._make_invoice(data)
            move.action_post()
        except (UserError, ValidationError):
            # Odoo's own refusal (negative total, no lines, ...): nothing reaches KSeF
            return 'refused_by_odoo'
        if move.move_type == 'out_refund':
            # a credit note without a corrected invoice: the builder must say which fields to fill
            move.ksef_corrected_invoice_number = "FV/1/2026"
            move.ksef_corrected_invoice_date = self.today - datetime.timedelta(days=3)
        try:
            xml, problems = move._ksef_generate_xml()
        except (UserError, ValidationError) as exc:
            self.assertTrue(exc.args and exc.args[0], "a refusal carries a message")
            _logger.debug("FA(3) fuzz: refused: %s", exc.args[0])
            return 'problems'
        if xml is None:
            self.assertTrue(problems, "no XML without saying why")
            for problem in problems:
                self.assertIsInstance(problem, str)
                self.assertIn(move.name, problem, "every problem names the invoice: %r" % problem)
                self.assertNotIn("Traceback", problem)
            self.assertNotIn("schemas (XSD) are not available", " ".join(problems), "the XSDs are reachable")
            _logger.debug("FA(3) fuzz: problems: %s", problems)
            return 'problems'
        self.assertFalse(problems)
        # what was built is well-formed, valid FA(3) with the invoice's own lines
        issues = [i for i in fa3.validate(xml, **move._ksef_schema_options()) if i.severity == 'error']
        self.assertFalse(issues, "validated XML stays valid: %s" % issues)
        tree = etree.fromstring(xml)
        self.assertEqual(len(tree.xpath('//fa:FaWiersz', namespaces=FA3_NS)),
                         len(move.invoice_line_ids.filtered(lambda ln: ln.display_type == 'product')))
        return 'xml'

    def test_fa3_build_validates_or_names_the_fields(self):
        outcomes = collections.Counter()

        @settings(max_examples=40, deadline=None, database=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @example(data=dict(EXAMPLE_BASE, lines=[EXAMPLE_LINE]))
        @example(data=dict(EXAMPLE_BASE, lines=[]))
        @example(data=dict(EXAMPLE_BASE, vat_kind='pl_invalid', lines=[EXAMPLE_LINE]))
        @example(data=dict(EXAMPLE_BASE, partner_name="A\x02B\x07C 😀" + "x" * 600, street=None, city=None,
                           zip=None, lines=[dict(EXAMPLE_LINE, name="Łódź\x1b\x0b🚚" * 100)]))
        @example(data=dict(EXAMPLE_BASE, currency='EUR', vat_kind='eu', country='DE', lines=[
            dict(EXAMPLE_LINE, taxes=('np II',)), dict(EXAMPLE_LINE, taxes=('0 WDT',), quantity=2.5),
            dict(EXAMPLE_LINE, taxes=('zw',)), dict(EXAMPLE_LINE, taxes=('oo',)), dict(EXAMPLE_LINE, taxes=('5',))]))
        @example(data=dict(EXAMPLE_BASE, vat_kind='none', is_company=False, country=None, currency='USD', lines=[
            dict(EXAMPLE_LINE, quantity=0.0), dict(EXAMPLE_LINE, price_unit=0.0),
            dict(EXAMPLE_LINE, taxes=('23', '8')), dict(EXAMPLE_LINE, price_unit=-0.01, taxes=())]))
        @given(data=invoice_strategy)
        def check(data):
            outcomes[self._check_case(data)] += 1

        started = time.monotonic()
        check()
        _logger.info("FA(3) fuzz: %s in %.1f s", dict(outcomes), time.monotonic() - started)
        # not a useless fuzz: cases reach the builder, some build valid XML, some are refused per field
        self.assertTrue(outcomes['xml'] and outcomes['problems'], outcomes)
