"""Downloading purchase invoices from KSeF into the KSeF inbox (against the in-process sandbox).

The sandbox is seeded with the official sample invoices (every invoice type: VAT, KOR, ZAL, ROZ, UPR,
KOR_ZAL, KOR_ROZ; PLN/EUR/USD; FA(3)) addressed to the test company's NIP, read from ``KSEF_SPEC_DIR``.
"""
import base64
import datetime
import json
import os
import re
import time
from unittest import SkipTest

from psycopg2 import IntegrityError

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from odoo.addons.base.tests.test_ir_cron import CronMixinCase
from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import fa3
from odoo.addons.l10n_pl_ksef.ksef import numbers as ksef_numbers
from odoo.addons.l10n_pl_ksef.ksef.client import ExportedInvoice
from odoo.addons.l10n_pl_ksef.ksef.fa3 import rates as fa3_rates
from odoo.addons.l10n_pl_ksef.tests.common import TestKsefCommon, random_nip

SPEC_DIR = os.environ.get('KSEF_SPEC_DIR') or os.path.join(
    os.path.dirname(os.path.realpath(__file__)), '..', '..', 'shared', 'ksef-spec')
SAMPLE_DIRS = ('mf-examples', 'third-party-test-suite')
# placeholders of the CIRFMF templates the sandbox seeder does not fill itself
TEMPLATE_PLACEHOLDERS = {b'#nip_podmiot1#': b'#nip#', b'#nip_podmiot2#': b'#buyer_nip#'}
ALL_TYPES = {'VAT', 'KOR', 'ZAL', 'ROZ', 'UPR', 'KOR_ZAL', 'KOR_ROZ'}


def samples_dir(name):
    path = os.path.join(SPEC_DIR, 'samples', 'fa3', name)
    if not os.path.isdir(path):
        raise SkipTest("official FA(3) samples not found at %s (set KSEF_SPEC_DIR)" % path)
    return path


class KsefReceiveCommon(TestKsefCommon):
    """A Polish company whose KSeF inbox is filled from the sandbox (official samples by default)."""

    seed_samples = True
    seed_generated = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ksef_sandbox.set_config(hwm_lag=0.0)          # seeded invoices are below the HWM at once
        cls.sync = cls.env['l10n_pl_ksef.inbox_sync']._ksef_for_companies(cls.ksef_company)
        cls.sync.start_date = fields.Datetime.now() - datetime.timedelta(days=1)
        cls.seeded = []
        if cls.seed_samples:
            for name in SAMPLE_DIRS:
                cls.seeded += cls.ksef_sandbox.seed(cls.ksef_nip, count=0, from_dir=samples_dir(name))
            cls.seeded += cls.ksef_sandbox.seed(cls.ksef_nip, count=0, xml=cls.template_documents())
        if cls.seed_generated:
            cls.seeded += cls.ksef_sandbox.seed(cls.ksef_nip, count=cls.seed_generated, seed=11)
        time.sleep(0.2)
        cls.first_new = cls.ksef_download()
        cls.Inbox = cls.env['l10n_pl_ksef.inbox']

    @classmethod
    def template_documents(cls):
        """The CIRFMF invoice templates (base64), their remaining placeholders filled in."""
        folder = samples_dir('cirfmf-templates')
        documents = []
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), 'rb') as fh:
                raw = fh.read()
            for placeholder, value in TEMPLATE_PLACEHOLDERS.items():
                raw = raw.replace(placeholder, value)
            # the multiple-Subject3 template lists NIP and IDWew, an XSD choice: keep the internal id (IDWew)
            raw = re.sub(rb'\s*<NIP>#nip\d_podmiot3#</NIP>', b'', raw)
            raw = raw.replace(b'#idwew1_podmiot3#', b'%s-00001' % random_nip().encode())
            raw = raw.replace(b'#idwew2_podmiot3#', b'%s-00002' % random_nip().encode())
            # ... and the Java template stands for a whole identifier element
            raw = raw.replace(b'#subject3IdentifierValue#', b'<NIP>%s</NIP>' % random_nip().encode())
            documents.append(base64.b64encode(raw).decode())
        return documents

    def setUp(self):
        super().setUp()                                     # resets the sandbox configuration
        self.ksef_sandbox.set_config(hwm_lag=0.0)

    @classmethod
    def ksef_client(cls, **kwargs):
        kwargs.setdefault('rate_limiter', False)          # the sandbox has limits off; no client-side waits
        return cls.ksef_company._ksef_get_client(**kwargs)

    @classmethod
    def ksef_download(cls, subject='buyer', client=None, sync=None):
        sync = sync or cls.sync
        client = client or cls.ksef_client()
        try:
            return sync._ksef_download(subject, client=client)
        finally:
            client.close()

    def inbox(self, **domain):
        return self.Inbox.search([(k, '=', v) for k, v in domain.items()] +
                                 [('company_id', '=', self.ksef_company.id)])


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestReceive(KsefReceiveCommon, CronMixinCase):

    def test_download_stores_every_sample_once_with_its_xml(self):
        records = self.inbox()
        self.assertEqual(self.first_new, len(self.seeded))
        self.assertEqual(sorted(records.mapped('ksef_number')), sorted(self.seeded))
        self.assertEqual(set(records.mapped('invoice_type')), ALL_TYPES)
        self.assertEqual(self.sync.state, 'ok')
        self.assertFalse(self.sync.last_error)
        self.assertEqual(self.sync.last_count, len(self.seeded))
        cursor = json.loads(self.sync.sudo().cursor)
        self.assertEqual(cursor['subjectType'], 'Subject2')
        self.assertFalse(cursor['pendingExport'])
        self.assertTrue(set(records.mapped('currency_id.name')) >= {'PLN', 'EUR', 'USD'})
        for record in records:
            xml = base64.b64decode(record.with_context(bin_size=False).xml_file)
            self.assertEqual(ksef_crypto.sha256_b64(xml), record.invoice_hash, record.ksef_number)
            self.assertEqual(record.xml_filename, '%s.xml' % record.ksef_number)
            invoice = fa3.parse(xml)
            self.assertEqual(record.invoice_number, invoice.fa.p_2)
            self.assertEqual(record.issue_date, invoice.fa.p_1)
            self.assertAlmostEqual(record.amount_gross, float(invoice.fa.p_15 or 0), places=2)
            if record.currency_id.name != 'PLN':
                # KSeF's metadata gives the VAT in PLN: the inbox shows it in the invoice currency
                vat = sum((v or 0) for _n, v, _p in fa3_rates.bucket_values(invoice.fa).values())
                self.assertAlmostEqual(record.amount_vat, float(vat), places=2, msg=record.ksef_number)
            self.assertEqual(record.seller_nip, invoice.podmiot1.dane_identyfikacyjne.nip)
            self.assertEqual(record.buyer_nip, self.ksef_nip)
            self.assertEqual(record.seller_country_code, 'PL')
            self.assertEqual(record.state, 'new')
            self.assertTrue(record.is_supported and not record.has_error)
            self.assertEqual(record.support_group, 'kor' if record.invoice_type.startswith('KOR') else 'vat')
            self.assertTrue(record.download_day and record.acquisition_date)
        self.assertTrue(records.filtered('is_self_invoicing'), "the self-billing template is flagged SF")
        kor = records.filtered(lambda r: r.invoice_type == 'KOR' and r.corrected_ksef_numbers)[:1]
        expected = [d.nr_ksef_fa_korygowanej for d in kor._ksef_invoice().fa.dane_fa_korygowanej]
        self.assertEqual(kor.corrected_ksef_numbers.split(','), expected)

    def test_second_download_and_restart_store_nothing_twice(self):
        # (other tests of the class add invoices to the sandbox, which keeps them: catch up first)
        self.ksef_download()
        count = len(self.inbox())
        self.assertEqual(count, len(self.ksef_sandbox.invoices(buyer_nip=self.ksef_nip)))
        client = self.ksef_client()
        self.assertEqual(self.ksef_download(client=client), 0)
        self.assertEqual(client.stats['calls:invoiceDownload'], 0, "receiving uses the export endpoint")
        # a new start date restarts the download from scratch: KSeF numbers are deduplicated
        self.sync.start_date = fields.Datetime.now() - datetime.timedelta(days=2)
        self.assertFalse(self.sync.sudo().cursor)
        self.assertEqual(self.ksef_download(), 0)
        self.assertEqual(len(self.inbox()), count)
        # storing the same downloaded invoices again is a no-op
        record = self.inbox()[:1]
        item = ExportedInvoice(record.ksef_number, record._ksef_xml(), None)
        self.assertFalse(self.Inbox._ksef_store_downloaded(self.ksef_company, [item, item]))
        # and the database refuses a second record with the same KSeF number in the company
        with mute_logger('odoo.sql_db'), self.assertRaises(IntegrityError), self.cr.savepoint():
            self.Inbox.create({'company_id': self.ksef_company.id, 'ksef_number': record.ksef_number})

    def test_cursor_resumes_with_only_the_new_invoices(self):
        before = json.loads(self.sync.sudo().cursor)
        new_numbers = self.ksef_sandbox.seed(self.ksef_nip, count=4, seed=3)
        time.sleep(0.2)
        client = self.ksef_client()
        self.assertEqual(self.ksef_download(client=client), 4)
        self.assertEqual(sorted(self.inbox().filtered(lambda r: r.ksef_number in new_numbers).mapped('ksef_number')),
                         sorted(new_numbers))
        after = json.loads(self.sync.sudo().cursor)
        self.assertGreater(after['from'], before['from'])
        # one export (plus its status polls and the public key), not one request per invoice
        self.assertEqual(client.stats['calls:invoiceExport'], 1)
        self.assertLessEqual(client.stats['calls'], 12)

    def test_backfill_beyond_three_months(self):
        self.sync.start_date = fields.Datetime.now() - datetime.timedelta(days=400)
        client = self.ksef_client()
        self.assertEqual(self.ksef_download(client=client), 0)
        # 400 days = 5 windows of at most 3 months, one export each, the last one reaching the HWM
        self.assertEqual(client.stats['calls:invoiceExport'], 5)
        self.assertEqual(self.sync.state, 'ok')

    def test_broken_documents_stay_visible_with_their_error(self):
        good = self.inbox()[:1]
        today = datetime.date.today()
        bad_number = ksef_numbers.generate_ksef_number(random_nip(), today)
        other_number = ksef_numbers.generate_ksef_number(random_nip(), today)
        fresh_xml = good._ksef_xml().replace(good.invoice_number.encode(), b'FV/NEW/1')
        fresh_number = ksef_numbers.generate_ksef_number(good.seller_nip, today)
        meta = {'invoiceNumber': 'X/1', 'issueDate': today.isoformat(), 'seller': {'nip': '5261040828',
                'name': 'Broken Sp. z o.o.'}, 'grossAmount': 123.0, 'currency': 'PLN', 'invoiceType': 'Vat',
                'formCode': {'systemCode': 'FA (3)'}}
        items = [
            ExportedInvoice(bad_number, b'<Faktura><Fa><P_1>2026-01-', dict(meta)),
            ExportedInvoice(other_number, b'<?xml version="1.0"?><Zamowienie xmlns="urn:x"/>', dict(meta)),
            ExportedInvoice(fresh_number, fresh_xml, None),
        ]
        records = self.Inbox._ksef_store_downloaded(self.ksef_company, items)
        self.assertEqual(len(records), 3, "a broken document never stops the others")
        broken = records.filtered('has_error')
        self.assertEqual(sorted(broken.mapped('ksef_number')), sorted([bad_number, other_number]))
        for record in broken:
            self.assertTrue(record.error_message)
            self.assertFalse(record.is_supported)
            self.assertEqual(record.support_group, 'none')
            self.assertEqual(record.seller_name, 'Broken Sp. z o.o.')
            self.assertIn('alert-danger', record.preview_html)
            checks, _found = record._ksef_import_checks()
            self.assertEqual(checks[-1]['level'], 'blocking')
            self.assertIn(record, self.Inbox.search([('has_error', '=', True)]))
        fine = records - broken
        self.assertEqual(fine.invoice_number, 'FV/NEW/1')
        self.assertTrue(fine.is_supported)

    def test_download_failure_is_recorded_not_raised(self):
        self.ksef_sandbox.set_faults(type='error', status=500, path='/invoices/exports', count=50)
        try:
            client = self.ksef_client(retries=0)
            self.assertEqual(self.sync._ksef_download_safe('buyer', client=client), 0)
        finally:
            self.ksef_sandbox.clear_faults()
        self.assertEqual(self.sync.state, 'error')
        self.assertIn('server error', self.sync.last_error)
        banner = self.env['l10n_pl_ksef.inbox_sync'].ksef_banner_data()
        company = next(c for c in banner['companies'] if c['id'] == self.ksef_company.id)
        self.assertEqual(company['error'], self.sync.last_error)

    def test_fetch_now_triggers_the_cron_which_respects_the_cycle(self):
        user = new_test_user(self.env, login='ksef_o3_viewer', groups='account.group_account_invoice',
                             company_id=self.ksef_company.id, company_ids=[self.ksef_company.id])
        with self.assertRaises(UserError):
            self.env['l10n_pl_ksef.inbox_sync'].with_user(user).action_ksef_fetch_now()
        with self.capture_triggers('l10n_pl_ksef.ir_cron_ksef_receive') as capture:
            action = self.env['l10n_pl_ksef.inbox_sync'].with_company(self.ksef_company).action_ksef_fetch_now()
        self.assertEqual(len(capture.records), 1)
        self.assertEqual(action['tag'], 'display_notification')
        self.assertTrue(self.sync.requested)
        # the previous download ran a moment ago: the cron waits for the next cycle (KSeF limits)
        last_run = self.sync.last_run_at
        self.env['l10n_pl_ksef.inbox_sync']._cron_ksef_receive()
        self.assertEqual(self.sync.last_run_at, last_run)
        self.assertTrue(self.sync.requested)
        # a few minutes later the requested download runs
        self.sync.last_run_at = fields.Datetime.now() - datetime.timedelta(minutes=6)
        new = self.ksef_sandbox.seed(self.ksef_nip, count=1, seed=21)
        time.sleep(0.2)
        self.env['l10n_pl_ksef.inbox_sync']._cron_ksef_receive()
        self.assertFalse(self.sync.requested)
        self.assertTrue(self.inbox(ksef_number=new[0]))

    def test_cron_survives_a_company_whose_login_fails(self):
        Sync = self.env['l10n_pl_ksef.inbox_sync']
        other = self.env['res.company'].create({'name': "Inna Sp. z o.o.", 'country_id': self.env.ref('base.pl').id})
        other.sudo().write({'ksef_context_nip': random_nip(), 'ksef_auth_method': 'token',
                            'ksef_environment': 'sandbox', 'ksef_sandbox_url': self.ksef_sandbox.url})
        self.assertNotIn(other, Sync._ksef_configured_companies(), "no credential: nothing to download")
        # a token KSeF does not know: the login fails, the cron records it and goes on
        other.sudo().ksef_token = self.ksef_sandbox.create_token(random_nip()).replace('|', '|x', 1)
        self.assertIn(other, Sync._ksef_configured_companies())
        self.sync.last_run_at = fields.Datetime.now() - datetime.timedelta(hours=1)
        Sync._cron_ksef_receive()
        other_sync = Sync.search([('company_id', '=', other.id)])
        self.assertEqual(other_sync.state, 'error')
        self.assertTrue(other_sync.last_error)
        self.assertEqual(self.sync.state, 'ok')
        self.assertFalse(self.sync.requested)

    def test_search_filters_cover_the_icargo_filters(self):
        arch = self.Inbox.get_views([(False, 'search')])['views']['search']['arch']
        for name in ('to_process', 'processed', 'supported_vat', 'supported_kor', 'not_supported', 'self_invoicing',
                     'filter_issue_date', 'filter_download_date', 'group_vendor', 'group_issue_month', 'type_vat',
                     'type_kor', 'type_other', 'group_type'):
            self.assertIn('name="%s"' % name, arch)
        for field in ('ksef_number', 'seller_name', 'seller_nip', 'amount_gross', 'issue_date', 'download_day'):
            self.assertIn('name="%s"' % field, arch)
        records = self.inbox()
        one = records[0]
        self.assertEqual(self.inbox(ksef_number=one.ksef_number), one)
        part = one.seller_name[2:8]
        by_name = self.Inbox.search([('seller_name', 'ilike', part), ('company_id', '=', self.ksef_company.id)])
        self.assertIn(one, by_name)
        self.assertEqual(self.Inbox.search([('seller_nip', '=', one.seller_nip), ('id', 'in', records.ids)]),
                         records.filtered(lambda r: r.seller_nip == one.seller_nip))
        self.assertIn(one, self.Inbox.search([('amount_gross', '=', one.amount_gross)]))
        self.assertEqual(self.Inbox.search([('support_group', '=', 'kor'), ('id', 'in', records.ids)]),
                         records.filtered(lambda r: r.invoice_type in ('KOR', 'KOR_ZAL', 'KOR_ROZ')))
        issued = records.filtered(lambda r: r.issue_date <= datetime.date(2026, 2, 15))
        self.assertEqual(self.Inbox.search([('issue_date', '<=', '2026-02-15'), ('id', 'in', records.ids)]), issued)
        self.assertEqual(self.Inbox.search([('download_day', '>=', fields.Date.today() - datetime.timedelta(days=1)),
                                            ('id', 'in', records.ids)]), records)
        zal = self.Inbox.search([('invoice_type', '=', 'ZAL'), ('id', 'in', records.ids)])
        self.assertEqual(zal, records.filtered(lambda r: r.invoice_type == 'ZAL'))
        self.assertTrue(zal)
        groups = self.Inbox.read_group([('id', 'in', records.ids)], ['seller_name'], ['issue_date:month'])
        self.assertGreater(len(groups), 1)

    def test_preview_renders_parties_lines_payment_and_corrections(self):
        vat = self.inbox(invoice_type='VAT').filtered(lambda r: r.bank_account_number)[:1]
        html = vat.preview_html
        self.assertIn(vat.seller_name, html)
        self.assertIn(vat.bank_account_number, html)
        self.assertIn(vat.invoice_number, html)
        kor = self.inbox(invoice_type='KOR').filtered('corrected_ksef_numbers')[:1]
        self.assertIn(kor.corrected_ksef_numbers.split(',')[0], kor.preview_html)
        self.assertTrue(kor._ksef_qr_url().startswith(self.ksef_sandbox.qr_url + '/invoice/'))


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestReceiveThirdParty(KsefReceiveCommon):
    """Subject3: invoices bought by someone else naming the company in Podmiot3 (here: JST recipient)."""

    seed_samples = False

    def test_third_party_invoices_are_downloaded_when_enabled(self):
        other_buyer = random_nip()
        invoice = fa3.example_invoice()
        invoice.podmiot3 = [fa3.Podmiot3(
            dane_identyfikacyjne=fa3.DaneIdentyfikacyjne(nip=self.ksef_nip, nazwa="Szkoła Podstawowa nr 1"),
            adres=fa3.Adres(adres_l1="ul. Szkolna 1, 00-001 Warszawa"), rola=8)]
        invoice.podmiot2.jst = 1
        xml = fa3.build(invoice)
        numbers = self.ksef_sandbox.seed(other_buyer, count=0, xml=[base64.b64encode(xml).decode()])
        time.sleep(0.2)
        self.assertEqual(self.ksef_download('buyer'), 0, "not our purchase as buyer")
        self.sync.include_third_party = True
        self.assertEqual(self.ksef_download('third_party'), 1)
        record = self.inbox(ksef_number=numbers[0])
        self.assertEqual(record.subject_type, 'third_party')
        checks, _found = record._ksef_import_checks()
        buyer_check = next(c for c in checks if c['key'] == 'buyer')
        self.assertEqual(buyer_check['level'], 'info')
        self.assertTrue(self.sync.sudo().cursor_third_party)
