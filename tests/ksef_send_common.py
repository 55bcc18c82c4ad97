"""Shared helpers of the sending tests (test_send*, test_offline*, test_report*, test_cron*).

:class:`KsefSendCommon` extends :class:`TestKsefCommon` (Polish company configured against the sandbox
running in a thread) with a 23 % tax, a bank account, invoice factories and helpers that run the
KSeF jobs until the sandbox has processed the invoices.
"""
import base64
import datetime
import time

from lxml import etree

from odoo import fields

from odoo.addons.l10n_pl_ksef.ksef import calendar as ksef_calendar
from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.tests.common import TestKsefCommon, random_nip

FA3_NS = {'fa': 'http://crd.gov.pl/wzor/2025/06/25/13775/'}


class KsefSendCommon(TestKsefCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        icp = cls.env['ir.config_parameter'].sudo()
        # tests resolve "was it sent?" questions at once instead of after 5 minutes
        icp.set_param('l10n_pl_ksef.resolve_grace_seconds', '0')
        cls.tax_23 = cls._ksef_tax('23')
        cls.tax_8 = cls._ksef_tax('8')
        cls.tax_zw = cls._ksef_tax('zw')
        cls.ksef_product = cls.product_a
        cls.ksef_product.write({'taxes_id': [fields.Command.set(cls.tax_23.ids)], 'default_code': 'PROD-A'})
        cls.ksef_bank = cls.env['res.partner.bank'].create({
            'acc_number': 'PL61109010140000071219812874',
            'partner_id': cls.ksef_company.partner_id.id,
            'allow_out_payment': True,
        })
        cls.today = datetime.datetime.now(ksef_calendar.WARSAW).date()

    def setUp(self):
        super().setUp()
        # KSeF keeps what every test sent while invoice numbers restart with each test: each test is its
        # own seller (NIP, KSeF context), so invoice numbers never collide (440) across tests
        self.ksef_nip = random_nip()
        self.ksef_company.vat = 'PL%s' % self.ksef_nip
        self.ksef_token = self.ksef_configure_token(self.ksef_company, nip=self.ksef_nip)

    @classmethod
    def _ksef_tax(cls, code):
        tax = cls.env['account.tax'].search([
            ('company_id', '=', cls.ksef_company.id), ('type_tax_use', '=', 'sale'), ('ksef_rate_code', '=', code),
            ('amount_type', '=', 'percent')], limit=1)
        assert tax, "the Polish chart has a sale tax with KSeF code %s" % code
        return tax

    # ------------------------------------------------------------------ factories
    def ksef_partner(self, **vals):
        vals.setdefault('is_company', True)
        vals.setdefault('country_id', self.env.ref('base.pl').id)
        return self.env['res.partner'].with_context(no_vat_validation=True).create(vals)

    def ksef_invoice(self, amounts=(100.0,), post=True, partner=None, *, move_type='out_invoice', taxes=None,
                     invoice_date=None, currency=None):
        move = self.init_invoice(
            move_type, partner=partner or self.ksef_buyer, invoice_date=invoice_date or self.today,
            amounts=list(amounts), taxes=taxes if taxes is not None else self.tax_23, company=self.ksef_company,
            currency=currency)
        move.partner_bank_id = self.ksef_bank
        if post:
            move.action_post()
        return move

    def ksef_credit_note(self, invoice, reason="Zwrot towaru", post=True):
        wizard = self.env['account.move.reversal'].with_context(
            active_model='account.move', active_ids=invoice.ids).create({
                'reason': reason, 'journal_id': invoice.journal_id.id, 'date': self.today})
        action = wizard.refund_moves()
        refund = self.env['account.move'].browse(action['res_id'])
        if post:
            refund.action_post()
        return refund

    # ------------------------------------------------------------------ running the jobs
    def ksef_run_send(self, offline=False):
        Move = self.env['account.move']
        if offline:
            Move._cron_ksef_send_offline()
        else:
            Move._cron_ksef_send()

    def ksef_run_status(self, moves, timeout=15.0):
        """Run the status job until none of ``moves`` is ``sending`` (the sandbox works asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            self.env['account.move']._cron_ksef_update_status()
            moves.invalidate_recordset()
            if not moves.filtered(lambda m: m.ksef_state == 'sending') or time.monotonic() > deadline:
                return moves
            time.sleep(0.15)

    def ksef_send(self, moves):
        """Queue (frozen XML) + send job + status job."""
        errors = moves.with_context(ksef_no_send_now=True)._ksef_enqueue()
        self.assertFalse(errors, "invoices could be queued")
        self.ksef_run_send()
        return self.ksef_run_status(moves)

    # ------------------------------------------------------------------ inspecting
    def ksef_tree(self, move):
        return etree.fromstring(base64.b64decode(move.ksef_xml_file) if move.ksef_xml_file and not isinstance(
            move.ksef_xml_file, bytes) else move.ksef_xml_id.raw)

    def ksef_xpath(self, move, path):
        return [n.text for n in self.ksef_tree(move).xpath(path, namespaces=FA3_NS)]

    def ksef_sandbox_invoices(self, **filters):
        return self.ksef_sandbox.invoices(**filters)

    def ksef_sandbox_by_hash(self, invoice_hash):
        return [i for i in self.ksef_sandbox.invoices(seller_nip=self.ksef_nip) if i.get('invoiceHash') == invoice_hash]

    def assertKsefAccepted(self, move, offline=False):
        self.assertEqual(move.ksef_state, 'offline_accepted' if offline else 'accepted', move.ksef_message)
        self.assertTrue(move.ksef_number)
        xml = move.ksef_xml_id.raw
        self.assertEqual(ksef_crypto.sha256_b64(xml), move.ksef_xml_hash, "the stored XML is what was hashed")
