"""End-to-end browser test of the demo flow, driven through the web client by headless Chromium.

What a newcomer does after ``./tools/run`` (README "Quick start" and "What it does"), clicking in the UI:
send a posted invoice to KSeF and see it accepted with its KSeF number and the QR code on the printout,
issue a credit note (correction) and send it, issue another invoice offline (offline24: OFFLINE and
CERTYFIKAT codes) and let it be sent, then fetch a purchase invoice into the KSeF inbox and import it as
a vendor bill through the import wizard. A screenshot is saved after every step into
``$KSEF_E2E_SCREENSHOTS`` (default ``<repo>/.cache/screens/e2e/``) as ``NN_<step>.png``.

The browser is Playwright's Python package driving the system Chromium (no browser download): it runs
whenever ``playwright`` is importable, a Chromium/Chrome executable is found (``$KSEF_E2E_CHROMIUM``,
``chromium``, ``chromium-browser``, ``google-chrome``) and Odoo's HTTP server runs (pytest-odoo
``--odoo-http`` or Odoo's own test runner); otherwise the class is skipped with the reason.

Like the demo, the posted customer invoices exist beforehand (tools/demo_setup.py creates them) and the
background jobs (send queue, status, offline sending, purchase download) are run by the test through the
ORM where a server would run them a few seconds later; everything the user does is a click in the UI.
"""
import base64
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from unittest import SkipTest

import odoo
from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests.common import TEST_CURSOR_COOKIE_NAME

from odoo.addons.l10n_pl_ksef.ksef import fa3
from odoo.addons.l10n_pl_ksef.ksef.tests.whitelist_fake import FakeWhiteList
from odoo.addons.l10n_pl_ksef.tests.common import random_nip
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import KsefSendCommon

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

_logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
KSEF_NUMBER_RE = re.compile(r'\b\d{10}-\d{8}-[0-9A-F]{12}-[0-9A-F]{2}\b')
CHROMIUM_ARGS = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
]
TIMEOUT_MS = 30000


def _chromium_path():
    candidates = [os.environ.get('KSEF_E2E_CHROMIUM')] + [
        shutil.which(name) for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


@contextlib.contextmanager
def _address_space_for_chromium():
    """Lift Odoo's RLIMIT_AS (limit_memory_hard) while the Playwright driver and Chromium start: they inherit
    it, and Chromium reserves far more virtual memory than that (Odoo's own ChromeBrowser lifts it too)."""
    try:
        import resource  # POSIX only
    except ImportError:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _ErrorRecords(logging.Handler):
    """Server-side errors logged while the browser runs (to explain a failed request)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.texts = []

    def emit(self, record):
        self.texts.append(self.format(record)[:2000])


def _skip_reason():
    if sync_playwright is None:
        return "the playwright Python package is not installed (pip install playwright; no browser download needed)"
    if not _chromium_path():
        return "no Chromium/Chrome executable found (install chromium or set KSEF_E2E_CHROMIUM)"
    server = odoo.service.server.server
    if server is None or getattr(server, 'httpd', None) is None:
        return "Odoo's HTTP server is not running (pytest-odoo needs --odoo-http)"
    return None


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefE2eBrowser(KsefSendCommon, HttpCase):

    @classmethod
    def setUpClass(cls):
        reason = _skip_reason()
        if reason:
            raise SkipTest("KSeF end-to-end browser test skipped: %s" % reason)
        super().setUpClass()
        cls.whitelist = FakeWhiteList().start()
        cls.addClassCleanup(cls.whitelist.stop)
        cls.env['ir.config_parameter'].sudo().set_param('l10n_pl_ksef.whitelist_url', cls.whitelist.url)
        cls.e2e_user = new_test_user(
            cls.env, login='ksef_e2e', name="Anna Księgowa", password='ksef_e2e', tz='Europe/Warsaw',
            groups='base.group_user,base.group_partner_manager,account.group_account_manager,'
                   'l10n_pl_ksef.group_ksef_manager',
            company_id=cls.ksef_company.id, company_ids=[cls.ksef_company.id])

    def setUp(self):
        super().setUp()
        self.ksef_configure_certificate(self.ksef_company, usage='offline', nip=self.ksef_nip)
        self.ksef_sandbox.set_config(hwm_lag=0.0)       # seeded purchase invoices are downloadable at once
        self.shots_dir = os.environ.get('KSEF_E2E_SCREENSHOTS') or os.path.join(REPO, '.cache', 'screens', 'e2e')
        os.makedirs(self.shots_dir, exist_ok=True)
        for name in os.listdir(self.shots_dir):
            if re.match(r'\d\d_.*\.png$', name):
                os.unlink(os.path.join(self.shots_dir, name))
        self.shot_count = 0
        self.started = time.monotonic()
        self.pending = set()
        self.js_errors = []

    # ------------------------------------------------------------------ browser helpers
    def start_browser(self, playwright):
        profile = tempfile.mkdtemp(prefix='ksef-e2e-chromium-')
        self.addCleanup(shutil.rmtree, profile, ignore_errors=True)
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=_chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={'width': 1400, 'height': 1000}, locale='en-US', timezone_id='Europe/Warsaw')
        context.set_default_timeout(TIMEOUT_MS)
        session = self.authenticate('ksef_e2e', 'ksef_e2e')
        context.add_cookies([
            {'name': 'session_id', 'value': session.sid, 'url': self.base_url()},
            {'name': TEST_CURSOR_COOKIE_NAME, 'value': self.http_request_key, 'url': self.base_url()},
        ])
        page = context.pages[0] if context.pages else context.new_page()
        # (Playwright wants Python functions as handlers, not bound built-ins like set.add)
        page.on('request', self._request_started)
        page.on('requestfinished', self._request_done)
        page.on('requestfailed', self._request_done)
        page.on('pageerror', lambda error: self.js_errors.append(str(error)))
        page.on('console', self._console_message)
        page.on('response', self._response)
        self.page = page
        return context

    def _console_message(self, message):
        # failed loads are reported with their URL by _response
        if message.type == 'error' and not message.text.startswith("Failed to load resource"):
            self.js_errors.append(message.text)

    def _response(self, response):
        # server errors fail the test; a missing resource (seen once: a 404 of some static file while the
        # test database builds its asset bundles) is logged, an RPC error shows an error dialog anyway
        if response.status >= 500:
            self.js_errors.append("%s %s" % (response.status, response.url))
        elif response.status >= 400:
            _logger.warning("the web client got %s for %s", response.status, response.url)

    def _request_started(self, request):
        # RPCs and page loads; not the bus worker (its requests are not reported back to the page)
        if request.resource_type in ('fetch', 'xhr', 'document') and '/websocket' not in request.url:
            self.pending.add(request)

    def _request_done(self, request):
        self.pending.discard(request)

    def settle(self, timeout=TIMEOUT_MS / 1000):
        """Wait until the web client has no request in flight (websocket excluded) for a moment."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 3:
            self.page.wait_for_timeout(100)
            busy = self.pending or self.page.locator('.o_blockUI').count()
            quiet = 0 if busy else quiet + 1
            if time.monotonic() > deadline:
                raise AssertionError("the web client is still busy: %s" % [r.url for r in self.pending])
        self.assertNoErrorDialog()

    def assertNoErrorDialog(self):
        dialogs = self.page.locator('.o_error_dialog, .o_dialog:has(.modal-title:text-is("Validation Error")), '
                                    '.o_dialog:has(.modal-title:text-is("User Error")), '
                                    '.o_dialog:has(.modal-title:text-is("Invalid Operation"))')
        if dialogs.count():
            self.shot('error')
            self.fail("the web client shows an error: %s" % dialogs.first.inner_text())

    def goto(self, path):
        self.page.goto(self.base_url() + path)
        self.settle()

    def click(self, selector):
        self.page.locator(selector).first.click()
        self.settle()

    def shot(self, name):
        self.shot_count += 1
        path = os.path.join(self.shots_dir, '%02d_%s.png' % (self.shot_count, name))
        self.page.screenshot(path=path)
        _logger.info("screenshot %s (%.1f s)", path, time.monotonic() - self.started)
        return path

    def field_text(self, name, scope='.o_form_view'):
        return self.page.locator('%s .o_field_widget[name="%s"]' % (scope, name)).first.inner_text().strip()

    def wait_field(self, name, text, scope='.o_form_view'):
        self.page.locator('%s .o_field_widget[name="%s"]' % (scope, name)).first.filter(has_text=text).wait_for()

    def wizard_step(self, label):
        self.page.locator('.modal-dialog .o_field_widget[name="step"] .o_arrow_button_current').filter(
            has_text=label).wait_for()

    def reload(self):
        self.env.flush_all()
        self.page.reload()
        self.settle()

    def run_jobs(self, moves, offline=False):
        """What the KSeF jobs do in the background a few seconds later (through the ORM, not the UI)."""
        self.env.invalidate_all()
        self.ksef_run_send(offline=offline)
        self.ksef_run_status(moves)
        self.env.flush_all()

    def assert_accepted(self, move, label="Accepted"):
        self.wait_field('ksef_state', label)
        number = self.field_text('ksef_number')
        self.assertRegex(number, KSEF_NUMBER_RE)
        move.invalidate_recordset()
        self.assertEqual(move.ksef_number, number)
        return number

    def open_printout(self, move):
        """The invoice printout as HTML (what Print > Invoices renders to PDF)."""
        self.goto('/report/html/account.report_invoice/%d' % move.id)
        return self.page.locator('#ksef_qr')

    def open_invoice_from_list(self, move, list_path='/odoo/customer-invoices'):
        self.goto(list_path)
        self.page.locator('.o_list_view .o_data_row').filter(has_text=move.name).first.click()
        self.settle()
        self.page.locator('.o_form_view .o_field_widget[name="name"]').filter(has_text=move.name).wait_for()

    # ------------------------------------------------------------------ data (what the demo prepares)
    def seed_purchase_invoice(self):
        seller_nip = random_nip()
        bban = '10205011%016d' % int(seller_nip)
        nrb = '%02d%s' % (98 - int(bban + '252100') % 97, bban)
        invoice = fa3.example_invoice(seller_nip=seller_nip, buyer_nip=self.ksef_nip, number="FV/2026/E2E/1",
                                      lines=2)
        invoice.podmiot1.dane_identyfikacyjne.nazwa = "Papirus Hurt Sp. z o.o."
        invoice.fa.platnosc.rachunek_bankowy[0].nr_rb = nrb
        fa3.apply_summary(invoice)
        self.whitelist.add_subject(seller_nip, "PAPIRUS HURT SPÓŁKA Z OGRANICZONĄ ODPOWIEDZIALNOŚCIĄ",
                                   accounts=[nrb])
        number = self.ksef_sandbox.seed(self.ksef_nip, count=0, xml=[base64.b64encode(fa3.build(invoice)).decode()])[0]
        sync = self.env['l10n_pl_ksef.inbox_sync']._ksef_for_companies(self.ksef_company)
        sync.start_date = fields.Datetime.subtract(fields.Datetime.now(), days=1)
        return number, seller_nip, nrb

    # ------------------------------------------------------------------ the test
    def test_demo_flow_in_the_browser(self):
        started = time.monotonic()
        invoice = self.ksef_invoice(amounts=(1000.0, 250.0))
        invoice_offline = self.ksef_invoice(amounts=(480.0,))
        purchase = self.seed_purchase_invoice()
        # as Odoo's own runner does before HTTP tests: on a fresh database the browser's parallel first
        # requests would otherwise build the asset bundles concurrently (a 500 on one of them)
        self.env['ir.qweb']._pregenerate_assets_bundles()
        self.env.flush_all()

        server_errors = _ErrorRecords()
        logging.getLogger('odoo').addHandler(server_errors)
        self.addCleanup(logging.getLogger('odoo').removeHandler, server_errors)
        # the whole flow, not only the start: the server threads answering the browser live in this
        # process too, and under load (many threads, one malloc arena each) Odoo's address-space limit
        # made one of them fail with a 500 once
        with _address_space_for_chromium():
            playwright = sync_playwright().start()
            self.addCleanup(playwright.stop)
            context = self.start_browser(playwright)
            try:
                self.flow(invoice, invoice_offline, *purchase)
            except Exception:
                with contextlib.suppress(Exception):     # the page may be gone; keep the original error
                    self.shot('failure')
                raise
            finally:
                context.close()
        self.assertFalse(self.js_errors, "JavaScript errors or failed requests in the web client; server errors: %s"
                         % server_errors.texts)
        _logger.info("KSeF end-to-end browser test: %.1f s", time.monotonic() - started)

    def flow(self, invoice, invoice_offline, purchase_number, seller_nip, bank_account):
        page = self.page
        # 1. the customer invoices (the URL tools/run prints)
        self.goto('/odoo/customer-invoices')
        page.locator('.o_list_view .o_data_row').filter(has_text=invoice.name).wait_for()
        self.shot('invoice_list')

        # 2. open the posted invoice: it can be sent to KSeF
        self.open_invoice_from_list(invoice)
        self.assertTrue(page.locator('.o_form_statusbar button[name="action_ksef_send"]').is_visible())
        self.shot('invoice_posted')

        # 3. Send to KSeF: one immediate attempt; the status job confirms it (run here through the ORM)
        self.click('.o_form_statusbar button[name="action_ksef_send"]')
        self.run_jobs(invoice)
        self.reload()
        number = self.assert_accepted(invoice)
        self.shot('invoice_accepted')

        # 4. the KSeF tab: number, XML, UPO, history
        self.click('.o_notebook a[name="ksef"]')
        page.locator('.o_notebook .tab-pane.active').filter(has_text=number).wait_for()
        self.shot('invoice_ksef_tab')

        # 5. the printout carries KOD I with the KSeF number under it
        qr = self.open_printout(invoice)
        qr.wait_for()
        self.assertEqual(qr.locator('#ksef_qr_kod1 img').count(), 1)
        self.assertIn(number, qr.locator('#ksef_qr_kod1').inner_text())
        page.locator('#ksef_qr').scroll_into_view_if_needed()
        self.shot('invoice_printout_qr')

        # 6. correction: Credit Note from the invoice, reason, Reverse, Confirm
        self.open_invoice_from_list(invoice)
        self.click('.o_form_statusbar button[name="action_reverse"]')
        dialog = page.locator('.modal-dialog')
        dialog.locator('.o_field_widget[name="reason"] input').fill("Zwrot części towaru")
        self.shot('credit_note_wizard')
        self.click('.modal-footer button[name="refund_moves"]')
        self.click('.o_form_statusbar button[name="action_post"]')
        refund = self.env['account.move'].search([('reversed_entry_id', '=', invoice.id)])
        self.assertEqual(len(refund), 1)
        self.shot('credit_note_posted')

        # 7. send the correction: accepted, linked to the corrected invoice
        self.click('.o_form_statusbar button[name="action_ksef_send"]')
        self.run_jobs(refund)
        self.reload()
        refund_number = self.assert_accepted(refund)
        self.assertNotEqual(refund_number, number)
        self.click('.o_notebook a[name="ksef"]')
        self.assertIn(invoice.name, self.field_text('reversed_entry_id'))
        page.locator('.o_field_widget[name="reversed_entry_id"]').scroll_into_view_if_needed()
        self.assertIn("Zwrot części towaru", page.locator('.o_field_widget[name="ksef_correction_reason"]')
                      .first.evaluate("el => el.querySelector('input') ? el.querySelector('input').value "
                                      ": el.innerText"))
        self.shot('credit_note_accepted')

        # 8. another invoice, sent offline (offline24)
        self.open_invoice_from_list(invoice_offline)
        self.click('.o_form_statusbar button[name="action_ksef_send_offline"]')
        dialog = page.locator('.modal-dialog')
        dialog.locator('.o_field_widget[name="mode"] input[data-value="offline24"]').check()
        self.settle()
        self.shot('offline_wizard')
        self.click('.modal-footer button[name="action_confirm"]')
        self.wait_field('ksef_state', "Offline")
        self.assertIn("OFFLINE", page.locator('.o_form_view .alert-warning').first.inner_text().upper())
        self.shot('offline_issued')

        # 9. its printout: OFFLINE and CERTYFIKAT codes
        qr = self.open_printout(invoice_offline)
        qr.wait_for()
        self.assertIn("OFFLINE", qr.locator('#ksef_qr_kod1').inner_text())
        self.assertIn("CERTYFIKAT", qr.locator('#ksef_qr_kod2').inner_text())
        self.assertEqual(qr.locator('img').count(), 2)
        page.locator('#ksef_qr').scroll_into_view_if_needed()
        self.shot('offline_printout_qr')

        # 10. KSeF is available: "Send now", the offline job sends it, KSeF accepts it
        self.open_invoice_from_list(invoice_offline)
        self.click('.o_form_view .alert-warning button[name="action_ksef_retry"]')
        self.run_jobs(invoice_offline, offline=True)
        self.reload()
        self.assert_accepted(invoice_offline, label="Accepted (offline)")
        self.shot('offline_accepted')

        # 11. purchase side: KSeF inbox, Fetch now (the download job runs through the ORM)
        self.goto('/odoo/action-l10n_pl_ksef.l10n_pl_ksef_inbox_action')
        self.click('button:has-text("Fetch now")')
        self.env.invalidate_all()
        self.env['l10n_pl_ksef.inbox_sync']._cron_ksef_receive()
        self.reload()
        row = page.locator('.o_list_view .o_data_row').filter(has_text=seller_nip)
        row.wait_for()
        self.shot('inbox_fetched')

        # 12. the purchase invoice, then the import wizard: checks, vendor, bank account, options
        row.first.click()
        self.settle()
        page.locator('.o_form_view').filter(has_text=purchase_number).wait_for()
        self.shot('inbox_record')
        self.click('.o_form_statusbar button[name="action_ksef_import"]')
        wizard = page.locator('.modal-dialog')
        self.wizard_step("Checks")
        self.assertFalse(wizard.locator('.o_field_widget[name="checks_html"] .text-danger').count(),
                         "no blocking check")
        self.shot('import_checks')
        self.click('.modal-footer button[name="action_next"]')
        self.wizard_step("Vendor")
        self.click('.modal-dialog button[name="action_vendor_whitelist"]')
        self.assertEqual(wizard.locator('.o_field_widget[name="vendor_vat"] input').input_value().replace('PL', ''),
                         seller_nip)
        self.shot('import_vendor')
        self.click('.modal-footer button[name="action_create_vendor"]')
        # the account on the invoice is registered for the vendor in the white list: the wizard adds it to
        # the new vendor and skips the bank account step
        self.wizard_step("Bill")
        bank = wizard.locator('.o_field_widget[name="partner_bank_id"]')
        value = bank.locator('input').input_value() if bank.locator('input').count() else bank.inner_text()
        self.assertIn(bank_account, value.replace(' ', ''))
        wizard.locator('.o_field_widget[name="tax_line_ids"] .o_data_row').first.wait_for()
        self.shot('import_bill_options')
        self.click('.modal-footer button[name="action_create_bill"]')

        # 13. the draft vendor bill
        self.settle()
        self.env.invalidate_all()
        bill = self.env['account.move'].search([('move_type', '=', 'in_invoice'),
                                                ('company_id', '=', self.ksef_company.id)], order='id desc', limit=1)
        self.assertTrue(bill)
        self.assertEqual((bill.state, bill.ref, bill.ksef_number), ('draft', "FV/2026/E2E/1", purchase_number))
        self.assertIn("PAPIRUS", bill.partner_id.name)
        form = page.locator('.o_form_view')
        form.locator('.o_field_widget[name="ref"] input').wait_for()
        self.assertEqual(form.locator('.o_field_widget[name="ref"] input').input_value(), "FV/2026/E2E/1")
        self.assertIn("PAPIRUS", form.locator('.o_field_widget[name="partner_id"] input').input_value())
        self.assertIn(purchase_number, form.inner_text())
        self.assertEqual(form.locator('.o_field_widget[name="invoice_line_ids"] .o_data_row').count(), 2)
        self.shot('vendor_bill')
