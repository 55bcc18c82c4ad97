"""Automatic download of purchase invoices from KSeF into the KSeF inbox (one record per company).

The cron ``l10n_pl_ksef.ir_cron_ksef_receive`` (every 15 minutes) runs :meth:`_cron_ksef_receive`: for each
company configured for KSeF it resumes the client's incremental sync (``ksef.client.IncrementalSync``: export
packages on ``PermanentStorage`` dates up to the high-water mark, 3-month windows, so a first run can start
long before the 3-month limit of one query) from the cursor stored here, stores the invoices in the inbox
(deduplicated by KSeF number) and saves the cursor in the same transaction, committing every
:data:`COMMIT_EVERY` invoices: a crash redelivers, never loses, an invoice.

* Subject2 (the company is the buyer) always; Subject3 (the company is a third party: recipient, payer,
  additional buyer, JST or VAT-group member) when ``include_third_party`` is set, at most every
  :data:`THIRD_PARTY_INTERVAL` (KSeF advises nightly runs for it).
* KSeF allows 20 exports per hour and context: a run starts at most one export per window and subject, the
  cron runs every 15 minutes and a manual "Fetch now" within :data:`MIN_INTERVAL` of the previous run waits
  for the next cycle. Rate-limit answers (429) are recorded and retried at the next cycle.
* An export KSeF is still preparing after :data:`EXPORT_WAIT` seconds stays in the cursor and is picked up
  by the next run (no second export is started).
"""
import datetime
import json
import logging

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import RedirectWarning, UserError

from odoo.addons.l10n_pl_ksef.ksef import errors as ksef_errors
from odoo.addons.l10n_pl_ksef.ksef.client import IncrementalSync
from odoo.addons.l10n_pl_ksef.ksef.client.errors import OperationPending

_logger = logging.getLogger(__name__)

COMMIT_EVERY = 200
MIN_INTERVAL = datetime.timedelta(minutes=5)
BUYER_INTERVAL = datetime.timedelta(minutes=14)
THIRD_PARTY_INTERVAL = datetime.timedelta(hours=6)
EXPORT_WAIT = 120.0
MAX_RATE_WAIT = 60.0
MAX_WINDOWS_PER_RUN = 8
SUBJECTS = {'buyer': 'Subject2', 'third_party': 'Subject3'}
# KSeF 2.0 became mandatory on 2026-02-01: nothing older can be in KSeF 2.0
DEFAULT_START = datetime.datetime(2026, 2, 1)


class L10nPlKsefInboxSync(models.Model):
    _name = 'l10n_pl_ksef.inbox_sync'
    _description = "KSeF Purchase Invoice Download"
    _rec_name = 'company_id'
    _check_company_auto = True

    # -------------------------------------------------------------------------
    # FIELDS
    # -------------------------------------------------------------------------

    company_id = fields.Many2one(
        comodel_name='res.company',
        required=True,
        readonly=True,
        ondelete='cascade',
        default=lambda self: self.env.company,
    )
    active = fields.Boolean(
        string="Automatic Download",
        default=True,
        help="Download the company's purchase invoices from KSeF automatically, in cycles (every 15 minutes; "
             "KSeF limits how often invoices can be downloaded).",
    )
    start_date = fields.Datetime(
        string="Download Invoices Stored Since",
        required=True,
        default=DEFAULT_START,
        help="The first download takes every invoice KSeF stored since this moment, even more than 3 months "
             "back (it is fetched in 3-month steps). Changing it restarts the download from that moment; "
             "invoices already in the inbox are not duplicated.",
    )
    include_third_party = fields.Boolean(
        string="Also As Third Party",
        help="Also download invoices naming the company in Podmiot3 (recipient, payer, additional buyer, "
             "local-government unit or VAT group member). Checked a few times a day.",
    )
    default_journal_id = fields.Many2one(
        comodel_name='account.journal',
        string="Purchase Journal",
        check_company=True,
        domain="[('type', '=', 'purchase')]",
        help="Journal of the imported bills (default: the first purchase journal).",
    )
    default_product_id = fields.Many2one(
        comodel_name='product.product',
        check_company=True,
        help="Product of invoice lines that match no vendor product (vendor price list code or name).",
    )
    default_account_id = fields.Many2one(
        comodel_name='account.account',
        string="Default Expense Account",
        check_company=True,
        domain="[('account_type', 'not in', ('asset_receivable', 'liability_payable', 'asset_cash', "
               "'liability_credit_card', 'off_balance'))]",
        help="Account of invoice lines without a matched product (default: the journal's account). Advance "
             "payment invoices (ZAL) are booked on it too: a prepayments account fits them.",
    )
    line_mode = fields.Selection(
        selection=[('lines', "One line per invoice line"), ('per_rate', "One line per VAT rate")],
        string="Bill Lines",
        default='lines',
        required=True,
        help="How imported bills are built: a line for each invoice line (with vendor products), or one line "
             "per VAT rate with the net total on the default account.",
    )
    cursor = fields.Text(
        string="Download Cursor",
        groups='base.group_system',
        copy=False,
        help="Where the next download starts (JSON kept by the KSeF client; holds the key of an export KSeF is "
             "still preparing).",
    )
    cursor_third_party = fields.Text(string="Third-party Cursor", groups='base.group_system', copy=False)
    requested = fields.Boolean(string="Download Requested", readonly=True, copy=False)
    last_run_at = fields.Datetime(string="Last Download", readonly=True, copy=False)
    last_success_at = fields.Datetime(string="Last Successful Download", readonly=True, copy=False)
    third_party_run_at = fields.Datetime(string="Last Third-party Download", readonly=True, copy=False)
    last_count = fields.Integer(string="Invoices in Last Download", readonly=True, copy=False)
    last_error = fields.Text(readonly=True, copy=False)
    state = fields.Selection(
        selection=[('never', "Never run"), ('ok', "Up to date"), ('pending', "Waiting for KSeF"),
                   ('error', "Error")],
        string="Download Status",
        default='never',
        readonly=True,
        copy=False,
        help="Never run: no download yet. Up to date: the last download reached the newest invoices KSeF "
             "stores. Waiting for KSeF: KSeF is still preparing a package or asked to wait (limits); the next "
             "cycle continues. Error: see the last error.",
    )
    inbox_count = fields.Integer(string="Invoices in Inbox", compute='_compute_inbox_count')
    next_run_at = fields.Datetime(string="Next Download", compute='_compute_next_run_at')

    _sql_constraints = [
        ('company_uniq', 'unique(company_id)', "The company already has KSeF download settings."),
    ]

    # -------------------------------------------------------------------------
    # COMPUTE
    # -------------------------------------------------------------------------

    def _compute_inbox_count(self):
        groups = self.env['l10n_pl_ksef.inbox']._read_group(
            [('company_id', 'in', self.company_id.ids)], ['company_id'], ['__count'])
        counts = {company.id: count for company, count in groups}
        for sync in self:
            sync.inbox_count = counts.get(sync.company_id.id, 0)

    def _compute_next_run_at(self):
        cron = self.env.ref('l10n_pl_ksef.ir_cron_ksef_receive', raise_if_not_found=False)
        for sync in self:
            sync.next_run_at = cron.sudo().nextcall if cron and cron.sudo().active and sync.active else False

    # -------------------------------------------------------------------------
    # CRUD
    # -------------------------------------------------------------------------

    def write(self, vals):
        # EXTENDS 'base'
        if 'start_date' in vals:
            # a new start date restarts the download from there (the inbox deduplicates)
            vals = dict(vals, state='never')
            self.sudo().write({'cursor': False, 'cursor_third_party': False})
        return super().write(vals)

    # -------------------------------------------------------------------------
    # ACTIONS
    # -------------------------------------------------------------------------

    @api.model
    def action_ksef_fetch_now(self, company_ids=None):
        """Ask the download cron to run as soon as possible for the given (default: current) companies."""
        if not self.env.user.has_group('l10n_pl_ksef.group_ksef_sender'):
            raise UserError(self.env._("You are not allowed to download invoices from KSeF."))
        companies = self.env['res.company'].browse(company_ids) if company_ids else self.env.companies
        syncs = self.sudo()._ksef_for_companies(companies.filtered(lambda c: c in self.env.companies))
        syncs.write({'requested': True})
        self.env.ref('l10n_pl_ksef.ir_cron_ksef_receive').sudo()._trigger()
        return {
            'type': 'ir.actions.client',
            'tag': 'display_notification',
            'params': {
                'title': self.env._("KSeF download requested"),
                'message': self.env._("New purchase invoices will appear in the KSeF inbox within a few minutes. "
                                      "KSeF limits downloads, so invoices arrive in cycles, not instantly."),
                'type': 'info',
            },
        }

    def action_ksef_fetch_now_single(self):
        self.ensure_one()
        return self.action_ksef_fetch_now(self.company_id.ids)

    def action_ksef_open_inbox(self):
        self.ensure_one()
        action = self.env['ir.actions.act_window']._for_xml_id('l10n_pl_ksef.l10n_pl_ksef_inbox_action')
        action['domain'] = [('company_id', '=', self.company_id.id)]
        return action

    @api.model
    def action_ksef_open_settings(self):
        """The download settings of the current company (created on first use)."""
        sync = self.sudo()._ksef_for_companies(self.env.company)
        return {
            'type': 'ir.actions.act_window',
            'res_model': self._name,
            'res_id': sync.id,
            'views': [(False, 'form')],
            'name': self.env._("KSeF Purchase Invoice Download"),
        }

    @api.model
    def ksef_banner_data(self):
        """What the inbox list banner shows: per company last/next download, status and error."""
        syncs = self.search([('company_id', 'in', self.env.companies.ids)])
        return {
            'can_fetch': self.env.user.has_group('l10n_pl_ksef.group_ksef_sender'),
            'companies': [{
                'id': s.company_id.id, 'name': s.company_id.name, 'state': s.state,
                'last_run_at': fields.Datetime.to_string(s.last_success_at or s.last_run_at) or False,
                'next_run_at': fields.Datetime.to_string(s.next_run_at) or False,
                'last_count': s.last_count, 'error': s.last_error if s.state == 'error' else False,
                'requested': s.requested, 'active': s.active,
            } for s in syncs],
        }

    # -------------------------------------------------------------------------
    # BUSINESS
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_for_companies(self, companies):
        """The download records of ``companies`` (created when missing)."""
        syncs = self.with_context(active_test=False).search([('company_id', 'in', companies.ids)])
        missing = companies - syncs.company_id
        if missing:
            syncs |= self.create([{'company_id': c.id} for c in missing])
        return syncs

    @api.model
    def _ksef_import_defaults(self, company):
        """Import options of the company (journal, default product/account, line mode)."""
        sync = self.sudo().with_context(active_test=False).search([('company_id', '=', company.id)], limit=1)
        options = {'line_mode': sync.line_mode or 'lines'}
        if sync.default_journal_id:
            options['journal'] = sync.default_journal_id.sudo(False)
        if sync.default_product_id:
            options['default_product'] = sync.default_product_id.sudo(False)
        if sync.default_account_id:
            options['default_account'] = sync.default_account_id.sudo(False)
        return options

    @api.model
    def _ksef_configured_companies(self):
        """Polish companies with a KSeF context and a login credential (token or certificate)."""
        companies = self.env['res.company'].sudo().search([('partner_id.country_id.code', '=', 'PL')])

        def configured(company):
            if company.country_code != 'PL' or not company.ksef_context_nip:
                return False
            if company.ksef_auth_method == 'certificate':
                return bool(company.ksef_auth_certificate_id)
            return bool(company.ksef_token)
        return companies.filtered(configured)

    def _ksef_due(self, subject, now):
        """Should this run download ``subject`` (``buyer``/``third_party``)?"""
        self.ensure_one()
        if subject == 'third_party':
            return self.include_third_party and (not self.third_party_run_at or
                                                 now - self.third_party_run_at >= THIRD_PARTY_INTERVAL)
        if self.requested:
            return not self.last_run_at or now - self.last_run_at >= MIN_INTERVAL
        return not self.last_run_at or now - self.last_run_at >= BUYER_INTERVAL

    @api.model
    def _cron_ksef_receive(self, force=False):
        """Download new purchase invoices of every configured company (errors are recorded, never raised)."""
        syncs = self.with_env(self.env["account.move"]._ksef_job_env().env).sudo()
        syncs._ksef_for_companies(syncs._ksef_configured_companies())
        now = fields.Datetime.now()
        for sync in syncs.search([('active', '=', True)]):
            for subject in ('buyer', 'third_party'):
                if subject == 'third_party' and not sync.include_third_party:
                    continue
                if not (force or sync._ksef_due(subject, now)):
                    continue
                sync._ksef_download_safe(subject)

    def _ksef_download_safe(self, subject='buyer', **kwargs):
        """:meth:`_ksef_download` that records an unexpected failure instead of raising it."""
        self.ensure_one()
        try:
            if self._ksef_can_commit():
                return self._ksef_download(subject, **kwargs)
            with self.env.cr.savepoint():
                return self._ksef_download(subject, **kwargs)
        except Exception:
            if self._ksef_can_commit():
                self.env.cr.rollback()
            _logger.exception("KSeF download of company %s failed", self.company_id.id)
            self.write({'state': 'error', 'last_run_at': fields.Datetime.now(), 'requested': False,
                        'last_error': self.env._("Unexpected error during the download; see the server log.")})
            if self._ksef_can_commit():
                self.env.cr.commit()  # pylint: disable=invalid-commit
            return 0

    @api.model
    def _ksef_can_commit(self):
        return self.env['account.move']._can_commit()

    def _ksef_lock(self):
        """Row lock so that two workers never download the same company at once (False when busy)."""
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute("SELECT id FROM l10n_pl_ksef_inbox_sync WHERE id = %s FOR UPDATE NOWAIT",
                                    [self.id])
            return True
        except psycopg2.errors.LockNotAvailable:
            return False

    def _ksef_download(self, subject='buyer', client=None, **sync_kwargs):
        """Run the incremental sync of one subject type; returns the number of new inbox records.

        KSeF failures are stored in ``last_error``/``state`` (translated) and logged, not raised.
        """
        self.ensure_one()
        if not self._ksef_lock():
            _logger.info("KSeF download of company %s already running", self.company_id.id)
            return 0
        company = self.company_id
        cursor_field = 'cursor' if subject == 'buyer' else 'cursor_third_party'
        cursor = json.loads(self[cursor_field]) if self[cursor_field] else None
        Inbox = self.env['l10n_pl_ksef.inbox'].sudo()
        stats = {'new': 0}
        state, error = 'ok', False
        sync = None

        def flush(batch):
            if batch:
                stats['new'] += len(Inbox._ksef_store_downloaded(company, batch, subject))
            # the cursor covers every invoice yielded so far: stored together, committed together
            self.write({cursor_field: json.dumps(sync.cursor)})
            if self._ksef_can_commit():
                self.env.cr.commit()  # pylint: disable=invalid-commit  # stored before acknowledged: never lost
                self._ksef_lock()
            # thousands of invoices in one run: keep the ORM cache (XML included) bounded
            Inbox.invalidate_model()
            self.env['ir.attachment'].invalidate_model()

        own_client = client is None
        try:
            if own_client:
                client = company.with_company(company)._ksef_get_client(max_rate_wait=MAX_RATE_WAIT)
            sync = IncrementalSync(client, SUBJECTS[subject], cursor, start=self.start_date.replace(
                tzinfo=datetime.timezone.utc), mode='export', export_timeout=EXPORT_WAIT, **sync_kwargs)
            batch = []
            try:
                for item in sync.run(max_windows=MAX_WINDOWS_PER_RUN):
                    batch.append(item)
                    if len(batch) >= COMMIT_EVERY:
                        flush(batch)
                        batch = []
            finally:
                flush(batch)
            if sync.cursor.get('pendingExport'):
                state = 'pending'
        except OperationPending:
            state = 'pending'
            _logger.info("KSeF export for company %s still in preparation: next cycle", company.id)
        except ksef_errors.RateLimitError as exc:
            state, error = 'pending', company._ksef_error_message(exc)
            _logger.warning("KSeF download of company %s rate limited (retry after %s s)", company.id,
                            exc.retry_after)
        except ksef_errors.KsefError as exc:
            state, error = 'error', company._ksef_error_message(exc)
            _logger.warning("KSeF download of company %s failed: %s", company.id, exc.code)
        except (UserError, RedirectWarning) as exc:
            state, error = 'error', exc.args[0]
            _logger.warning("KSeF download of company %s not possible: configuration", company.id)
        finally:
            if own_client and client is not None:
                client.close()
        now = fields.Datetime.now()
        vals = {'state': state, 'last_error': error, 'last_run_at': now, 'requested': False}
        if subject == 'buyer':
            vals['last_count'] = stats['new']
            if state != 'error':
                vals['last_success_at'] = now
        else:
            vals['third_party_run_at'] = now
        self.write(vals)
        if self._ksef_can_commit():
            self.env.cr.commit()  # pylint: disable=invalid-commit
        _logger.info("KSeF download company %s (%s): %s new invoice(s), status %s", company.id, subject,
                     stats['new'], state)
        return stats['new']
