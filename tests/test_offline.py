import datetime
from unittest.mock import patch

from odoo import fields
from odoo.tests import Form, tagged

from odoo.addons.l10n_pl_ksef.ksef import calendar as ksef_calendar
from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import qr as ksef_qr
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import KsefSendCommon


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefOffline(KsefSendCommon):

    def setUp(self):
        super().setUp()
        self.offline_cert = self.ksef_configure_certificate(self.ksef_company, usage='offline', nip=self.ksef_nip)

    def issue_offline(self, moves, mode='offline24', event_end=None):
        wizard = Form(self.env['l10n_pl_ksef.offline_mode'].with_context(
            default_move_ids=[fields.Command.set(moves.ids)]))
        wizard.mode = mode
        if event_end:
            wizard.event_end = event_end
        record = wizard.save()
        self.assertFalse(record.problems)
        record.action_confirm()
        return record

    def test_offline24_qr_codes_deadline_and_later_sending(self):
        invoice = self.ksef_invoice()
        wizard = self.issue_offline(invoice)
        self.assertIn("art. 106nda", wizard.explanation)
        self.assertEqual(invoice.ksef_state, 'offline')
        self.assertEqual(invoice.ksef_offline_mode, 'offline24')
        # deadline: end of the next business day after the issue date (Warsaw time)
        expected = ksef_calendar.offline_deadline('offline24', issue_date=invoice.invoice_date)
        self.assertEqual(invoice.ksef_offline_deadline,
                         expected.astimezone(datetime.timezone.utc).replace(tzinfo=None, microsecond=0))
        self.assertIn(invoice.name, wizard.deadline_text)
        self.assertEqual(invoice.ksef_banner_level, 'warning')
        # the printout: KOD I (OFFLINE) with the hash of the frozen file, KOD II (CERTYFIKAT) signed
        values = invoice._ksef_report_qr_values()
        self.assertEqual(values['mode'], 'offline')
        link = ksef_qr.parse_invoice_url(values['kod1_url'])
        self.assertEqual(link['invoice_hash'], ksef_crypto.sha256(invoice.ksef_xml_id.raw))
        self.assertEqual(link['seller_nip'], self.ksef_nip)
        self.assertEqual(link['issue_date'], invoice.invoice_date)
        cert = ksef_crypto.load_certificate(self.offline_cert.sudo()._ksef_key_and_certificate_pem("test")[1])
        self.assertTrue(ksef_qr.verify_certificate_url(values['kod2_url'], cert))
        kod2 = ksef_qr.parse_certificate_url(values['kod2_url'])
        self.assertEqual(kod2['invoice_hash'], link['invoice_hash'])
        self.assertEqual(kod2['cert_serial'], ksef_crypto.certificate_serial_hex(cert))
        # KSeF in maintenance: the offline job waits
        self.ksef_sandbox.set_status('MAINTENANCE', "Prace serwisowe")
        try:
            self.ksef_run_send(offline=True)
        finally:
            self.ksef_sandbox.set_status('AVAILABLE')
        self.assertEqual(invoice.ksef_state, 'offline')
        # available again: sent with offlineMode, accepted as an offline invoice
        self.ksef_run_send(offline=True)
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice, offline=True)
        self.assertEqual(invoice.ksef_invoicing_mode, 'offline')
        stored = self.ksef_sandbox_by_hash(invoice.ksef_xml_hash)
        self.assertEqual([s['invoicingMode'] for s in stored], ['Offline'])
        # printout after acceptance: one QR with the KSeF number, same hash as before
        after = invoice._ksef_report_qr_values()
        self.assertEqual(after['mode'], 'number')
        self.assertEqual(after['kod1_url'], values['kod1_url'])
        self.assertFalse(after['kod2_url'])

    def test_failure_mode_deadline_from_event_end(self):
        invoice = self.ksef_invoice()
        end = datetime.datetime(2026, 12, 23, 10, 0)   # Wednesday before Christmas
        self.issue_offline(invoice, mode='failure', event_end=end)
        # 7 business days after 23.12.2026: 24-26 Dec holidays, weekend, 1 Jan, 6 Jan -> 5 Jan 2027? count:
        expected = ksef_calendar.offline_deadline('failure', failure_end=datetime.date(2026, 12, 23))
        self.assertEqual(invoice.ksef_offline_deadline,
                         expected.astimezone(datetime.timezone.utc).replace(tzinfo=None, microsecond=0))
        self.assertEqual(invoice._ksef_report_qr_values()['mode'], 'offline')

    def test_unavailability_without_end_has_no_deadline_yet(self):
        invoice = self.ksef_invoice()
        self.issue_offline(invoice, mode='unavailability')
        self.assertEqual(invoice.ksef_state, 'offline')
        self.assertFalse(invoice.ksef_offline_deadline)
        self.assertIn("starts when the unavailability or failure ends", invoice.ksef_banner)
        # KSeF is back: the unavailability ended now, the deadline is known, the invoice goes out
        self.ksef_run_send(offline=True)
        self.assertTrue(invoice.ksef_offline_event_end)
        expected = ksef_calendar.offline_deadline(
            'unavailability', unavailability_end=invoice.ksef_offline_event_end.replace(
                tzinfo=datetime.timezone.utc).astimezone(ksef_calendar.WARSAW))
        self.assertEqual(invoice.ksef_offline_deadline,
                         expected.astimezone(datetime.timezone.utc).replace(tzinfo=None, microsecond=0))
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice, offline=True)

    def test_total_failure_no_qr_no_sending_correction_outside_ksef(self):
        invoice = self.ksef_invoice()
        self.issue_offline(invoice, mode='total_failure')
        self.assertEqual(invoice.ksef_state, 'offline')
        self.assertFalse(invoice.ksef_offline_deadline)
        self.assertFalse(invoice._ksef_report_qr_values()['mode'])
        self.assertEqual(invoice.ksef_banner_level, 'info')
        self.ksef_run_send(offline=True)
        self.assertEqual(invoice.ksef_state, 'offline', "total failure invoices are not sent")
        self.assertFalse(self.ksef_sandbox_by_hash(invoice.ksef_xml_hash))
        # a correction of it is issued with NrKSeFN (original outside KSeF) and may be sent
        refund = self.ksef_credit_note(invoice)
        self.ksef_send(refund)
        self.assertKsefAccepted(refund)
        self.assertEqual(self.ksef_xpath(refund, '//fa:NrKSeFN'), ['1'])

    def test_offline_requires_offline_certificate(self):
        self.ksef_company.sudo().ksef_offline_certificate_id = False
        invoice = self.ksef_invoice()
        wizard = self.env['l10n_pl_ksef.offline_mode'].create({
            'move_ids': [fields.Command.set(invoice.ids)], 'mode': 'offline24'})
        self.assertIn("no KSeF offline certificate", wizard.problems)
        total = self.env['l10n_pl_ksef.offline_mode'].create({
            'move_ids': [fields.Command.set(invoice.ids)], 'mode': 'total_failure'})
        self.assertFalse(total.problems)

    def test_suggested_mode_follows_status_service(self):
        self.ksef_sandbox.set_status('FAILURE', "Awaria")
        try:
            wizard = self.env['l10n_pl_ksef.offline_mode'].with_company(self.ksef_company).create({
                'move_ids': [fields.Command.set(self.ksef_invoice().ids)]})
        finally:
            self.ksef_sandbox.set_status('AVAILABLE')
        self.assertEqual(wizard.mode, 'failure')

    def test_deadline_warnings(self):
        invoice = self.ksef_invoice()
        self.issue_offline(invoice)
        responsible = self.env.user
        self.ksef_company.ksef_offline_responsible_id = responsible
        Move = self.env['account.move']
        now = fields.Datetime.now()
        # far away: nothing
        invoice.with_context(ksef_skip_guard=True).ksef_offline_deadline = now + datetime.timedelta(days=10)
        Move._cron_ksef_offline_deadlines()
        self.assertFalse(invoice.activity_ids)
        # less than a business day left: one activity
        invoice.with_context(ksef_skip_guard=True).ksef_offline_deadline = now + datetime.timedelta(hours=3)
        Move._cron_ksef_offline_deadlines()
        Move._cron_ksef_offline_deadlines()
        self.assertEqual(len(invoice.activity_ids), 1)
        self.assertEqual(invoice.activity_ids.user_id, responsible)
        self.assertIn("deadline near", invoice.activity_ids.summary)
        self.assertEqual(invoice.ksef_deadline_warning, 'near')
        # overdue: a second one, and the banner turns red
        invoice.with_context(ksef_skip_guard=True).ksef_offline_deadline = now - datetime.timedelta(hours=1)
        Move._cron_ksef_offline_deadlines()
        Move._cron_ksef_offline_deadlines()
        self.assertEqual(len(invoice.activity_ids), 2)
        self.assertIn("deadline passed", invoice.activity_ids.sorted('id')[-1].summary)
        self.assertEqual(invoice.ksef_banner_level, 'danger')

    def test_jobs_write_their_messages_in_polish_when_installed(self):
        """The jobs run as OdooBot (English): what they store for Polish accountants is in Polish."""
        self.env['res.lang']._activate_lang('pl_PL')
        self.env['ir.module.module']._load_module_terms(['l10n_pl_ksef'], ['pl_PL'], overwrite=True)
        invoice = self.ksef_invoice()
        self.issue_offline(invoice)
        self.ksef_company.ksef_offline_responsible_id = self.env.user
        invoice.with_context(ksef_skip_guard=True).ksef_offline_deadline = (
            fields.Datetime.now() + datetime.timedelta(hours=3))
        self.env['account.move'].with_context(lang='en_US')._cron_ksef_offline_deadlines()
        self.assertIn("Zbliża się termin KSeF", invoice.activity_ids.summary)

    def test_rejected_offline_invoice_is_resent_as_technical_correction(self):
        invoice = self.ksef_invoice()
        self.issue_offline(invoice)
        first_hash = invoice.ksef_xml_hash
        invoice._ksef_set_state('rejected', "KSeF rejected the file", status_code=430)
        with patch.object(type(self.env['account.move']), '_ksef_send_now', lambda self: None):
            invoice.action_ksef_retry()
        self.assertEqual(invoice.ksef_state, 'to_send')
        self.assertEqual(invoice.ksef_corrected_hash, first_hash)
        self.assertEqual(invoice.ksef_offline_mode, 'offline24')
        self.assertEqual(invoice._ksef_report_qr_values()['mode'], 'offline')
