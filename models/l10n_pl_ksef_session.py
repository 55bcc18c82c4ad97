import datetime
import logging
import re
import time

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import RedirectWarning, UserError
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY

from odoo.addons.l10n_pl_ksef.ksef import crypto as ksef_crypto
from odoo.addons.l10n_pl_ksef.ksef import fa3
from odoo.addons.l10n_pl_ksef.ksef.client import BatchPackage, BatchSession, SendUnresolved
from odoo.addons.l10n_pl_ksef.ksef.client.sessions import MAX_INVOICES_PER_SESSION, resolve_form_code
from odoo.addons.l10n_pl_ksef.ksef.errors import (
    BadRequestError,
    KsefError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    TransportError,
)

from .account_move import ACCEPTED_STATES

_logger = logging.getLogger(__name__)

# 400 exception codes meaning "this session cannot take invoices any more": use a new one
SESSION_GONE_CODES = {21155, 21173, 21180}
# session status codes (GET /sessions/{ref}) meaning the session ended without processing our invoices
SESSION_FAILED_CODES = {405, 415, 420, 430, 435, 440, 500}
BATCH_IN_PROGRESS = (150, 170)


class L10nPlKsefSession(models.Model):
    """A KSeF session (online or batch) opened by Odoo for a company.

    The session reference is stored and committed BEFORE any invoice is sent through it, and each
    invoice stores the session reference and the SHA-256 of its XML before it is sent: after a crash
    at any point the status job finds the invoice in the session by its hash (or KSeF answers 440 with
    the original KSeF number when it is sent again), so nothing is ever sent twice nor lost.

    Online sessions are reused across invoices and job runs until they near expiry (12 h) or their
    10,000-invoice limit; the AES key needed to reuse one is kept in a system-only field. Batch
    sessions are not resumed after a crash (the package cannot be rebuilt byte for byte): a batch
    session that stays open is abandoned and its invoices are queued again.
    """
    _name = 'l10n_pl_ksef.session'
    _description = "KSeF session"
    _order = 'id desc'
    _check_company_auto = True

    name = fields.Char(
        string="Reference",
        required=True,
        readonly=True,
        index=True,
        help="KSeF reference number of the session.",
    )
    company_id = fields.Many2one(
        comodel_name='res.company',
        required=True,
        readonly=True,
        index=True,
    )
    kind = fields.Selection(
        selection=[('online', "Online"), ('batch', "Batch")],
        string="Type",
        required=True,
        readonly=True,
    )
    state = fields.Selection(
        selection=[
            ('open', "Open"),
            ('closed', "Closed"),
            ('abandoned', "Abandoned"),
        ],
        string="Status",
        default='open',
        required=True,
        readonly=True,
        help="- Open: invoices may be sent in it (online) or its package is being uploaded (batch).\n"
             "- Closed: closed in KSeF; statuses of its invoices are followed.\n"
             "- Abandoned: a batch session that was never completed; its invoices were queued again.",
    )
    scope = fields.Char(
        string="KSeF Scope",
        readonly=True,
        help="KSeF environment and login context the session belongs to; a session is only reused in the same "
             "scope (another context or environment does not know it).",
    )
    offline_mode = fields.Boolean(readonly=True)
    valid_until = fields.Datetime(readonly=True)
    invoice_count = fields.Integer(readonly=True)
    date_closed = fields.Datetime(string="Closed On", readonly=True)
    key_b64 = fields.Char(string="Session Key", groups='base.group_system', readonly=True, copy=False)
    iv_b64 = fields.Char(string="Session IV", groups='base.group_system', readonly=True, copy=False)
    move_ids = fields.One2many(
        comodel_name='account.move',
        inverse_name='ksef_session_id',
        string="Invoices",
        readonly=True,
    )

    # -------------------------------------------------------------------------
    # HELPERS
    # -------------------------------------------------------------------------

    def _ksef_state_dict(self):
        """The ``OnlineSession.from_dict`` state of this session (sudo: it holds the AES key)."""
        self.ensure_one()
        record = self.sudo()
        return {
            'version': 1, 'type': 'online', 'referenceNumber': record.name,
            'validUntil': record.valid_until and record.valid_until.strftime('%Y-%m-%dT%H:%M:%SZ'),
            'formCode': resolve_form_code('FA3'), 'symmetricKey': record.key_b64,
            'initializationVector': record.iv_b64, 'sent': {}, 'pending': {}, 'closed': False,
        }

    @api.model
    def _ksef_param(self, key, default):
        value = self.env['ir.config_parameter'].sudo().get_param('l10n_pl_ksef.%s' % key)
        try:
            return float(value) if value not in (None, False, '') else default
        except ValueError:
            return default

    @api.model
    def _ksef_parse_date(self, value):
        if not value:
            return False
        text = re.sub(r"(\.\d{6})\d+", r"\1", str(value).replace('Z', '+00:00'))
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return False
        if moment.tzinfo:
            moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return moment.replace(microsecond=0)

    @api.model
    def _ksef_client(self, company, moves=None, quick=False):
        """The company's client, or ``None`` after recording why not on ``moves`` (nothing sent).

        ``quick``: for a user's click (one invoice, "send now", "refresh"): short timeouts, no retry
        loops, no long waits for the rate budget — the jobs do the patient work.
        """
        kwargs = {}
        if quick:
            kwargs = {'timeout': (5, 15), 'retries': 1, 'max_rate_wait': 5.0, 'send_resolve_delays': (1.0, 2.0)}
        try:
            return company._ksef_get_client(**kwargs)
        except (RedirectWarning, UserError, KsefError) as exc:
            message = company._ksef_error_message(exc) if isinstance(exc, KsefError) else exc.args[0]
            _logger.warning("KSeF client of company %s unavailable (%s)", company.id,
                            getattr(exc, 'code', type(exc).__name__))
            if moves:
                self._ksef_postpone(moves, message, delay=3600)
            return None

    @api.model
    def _ksef_postpone(self, moves, message, delay=None, count_attempt=False):
        """Temporary failure: keep the invoices where they are, say why and when the next attempt is."""
        Move = self.env['account.move']
        for move in moves:
            move = move.with_prefetch()
            attempts = move.ksef_attempt_count + (1 if count_attempt else 0)
            wait = delay if delay is not None else min(3600, 60 * 2 ** min(attempts, 6))
            when = fields.Datetime.now() + datetime.timedelta(seconds=wait)
            text = self.env._("%(message)s Next attempt at %(when)s.", message=message,
                              when=move._ksef_format_datetime(when))
            if move.ksef_message == text:
                continue
            if not move._ksef_lock((move.ksef_state,)):
                continue
            move._ksef_write({
                'ksef_message': text, 'ksef_message_level': 'warning', 'ksef_next_attempt': when,
                'ksef_attempt_count': attempts})
            Move._ksef_commit()

    @api.model
    def _ksef_budget(self):
        """Seconds one job run may work before it hands over to the next run (cron time limits)."""
        return self._ksef_param('cron_time_budget', 50.0)

    # -------------------------------------------------------------------------
    # SENDING
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_cron_send(self, offline=False):
        """Send queued invoices (``to_send``), or offline ones (``offline``) when KSeF is available."""
        Move = self.env['account.move']
        now = fields.Datetime.now()
        states = ['offline'] if offline else ['to_send']
        domain = [('ksef_state', 'in', states), ('state', '=', 'posted'),
                  '|', ('ksef_next_attempt', '=', False), ('ksef_next_attempt', '<=', now)]
        if offline:
            domain.append(('ksef_offline_mode', '!=', 'total_failure'))
        groups = Move._read_group(domain, ['company_id'], ['__count'])
        started = time.monotonic()
        done = remaining = 0
        for company, _count in groups:
            if offline and not self._ksef_is_available(company):
                continue
            if offline:
                self._ksef_close_offline_events(company)
            moves = Move.with_company(company).search([*domain, ('company_id', '=', company.id)], order='id',
                                                      limit=MAX_INVOICES_PER_SESSION + 1)
            try:
                result = self.with_company(company)._ksef_send_company(company, moves, started)
            except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:
                if not Move._ksef_can_commit():
                    raise
                # another job changed a row this one wrote (e.g. closed the session it was filling): what
                # was committed stands, the rest of this transaction is dropped and its invoices are
                # still queued (never sent twice: the send itself is resolved by its hash) — next run
                self.env.cr.rollback()
                _logger.info("KSeF sending of company %s met a concurrent change; the rest goes in the next run",
                             company.id)
                result = (0, len(moves))
            done += result[0]
            remaining += result[1]
        if remaining:
            self.env['ir.cron']._notify_progress(done=done, remaining=remaining)
            Move._ksef_trigger_crons()

    @api.model
    def _ksef_close_offline_events(self, company):
        """KSeF is available again: an unavailability/failure without a known end ended now; its
        invoices get their legal deadline (and are sent right away anyway)."""
        Move = self.env['account.move']
        open_events = Move.search([('company_id', '=', company.id), ('ksef_state', 'in', ('offline', 'to_send')),
                                   ('ksef_offline_mode', 'in', ('unavailability', 'failure')),
                                   ('ksef_offline_event_end', '=', False)])
        now = fields.Datetime.now()
        for move in open_events:
            move = move.with_prefetch()
            if move._ksef_lock((move.ksef_state,)):
                move._ksef_write({'ksef_offline_event_end': now,
                                  'ksef_offline_deadline': move._ksef_compute_deadline(move.ksef_offline_mode, now)})
                Move._ksef_commit()

    @api.model
    def _ksef_is_available(self, company):
        """Whether the status service says KSeF is available (``True`` when there is none to ask)."""
        client = company._ksef_status_client()
        if client is None:
            return True
        try:
            status = client.status().get('status')
        except KsefError as exc:
            _logger.info("KSeF status service of company %s not reachable (%s)", company.id, exc.code)
            return False
        return status == 'AVAILABLE'

    @api.model
    def _ksef_send_company(self, company, moves, started):
        """``(done, remaining)`` after sending ``moves`` of one company (batch above its threshold)."""
        client = self._ksef_client(company, moves)
        if client is None:
            return 0, 0
        ready = moves._ksef_prepare_queued(deadline=started + self._ksef_budget())
        Move = self.env['account.move']
        unprepared_domain = [('id', 'in', moves.ids), ('ksef_state', '=', 'to_send'), ('ksef_xml_hash', '=', False)]
        unprepared = Move.search_count(unprepared_domain)
        threshold = max(1, company.ksef_batch_threshold)
        if unprepared and len(ready) > threshold and unprepared <= threshold:
            # a short tail would go out online in the next run: take it into this batch
            ready |= Move.search(unprepared_domain)._ksef_prepare_queued()
            unprepared = Move.search_count(unprepared_domain)
        if not ready:
            return 0, unprepared
        if len(ready) > threshold:
            done, remaining = self._ksef_send_batch(client, company, ready)
        else:
            done, remaining = self._ksef_send_online(ready, client=client, started=started)
        return done, remaining + unprepared

    @api.model
    def _ksef_online_session(self, company, client, exclude=None):
        """An open online session of the company in the client's scope (reused) or a new one, stored and
        committed."""
        limit = fields.Datetime.now() + datetime.timedelta(minutes=30)
        domain = [('company_id', '=', company.id), ('kind', '=', 'online'), ('state', '=', 'open'),
                  ('valid_until', '>', limit), ('scope', '=', client.scope)]
        if exclude:
            domain.append(('id', 'not in', exclude.ids))
        for record in self.sudo().search(domain, limit=3):
            used = self.env['account.move'].sudo().search_count([('ksef_session_id', '=', record.id)])
            if used < MAX_INVOICES_PER_SESSION - 100:
                return record, client.resume_online_session(record._ksef_state_dict())
        session = client.open_online_session('FA3')
        state = session.to_dict(include_sent=False)
        record = self.sudo().create({
            'name': session.reference_number,
            'company_id': company.id,
            'kind': 'online',
            'scope': client.scope,
            'valid_until': self._ksef_parse_date(session.valid_until) or (
                fields.Datetime.now() + datetime.timedelta(hours=12)),
            'key_b64': state['symmetricKey'],
            'iv_b64': state['initializationVector'],
        })
        # the session must be known before any invoice goes into it
        self.env['account.move']._ksef_commit()
        return record, session

    @api.model
    def _ksef_send_online(self, moves, client=None, started=None, quick=False):
        """Send invoices one by one through the company's online session. ``(done, remaining)``.

        Per invoice: lock it, store state ``sending`` + session reference and commit, lock it again,
        POST it, store the invoice reference and commit. A crash between the two commits is resolved
        by the status job (hash lookup in the session).
        """
        Move = self.env['account.move']
        started = started or time.monotonic()
        budget = self._ksef_budget()
        done = 0
        todo = list(moves)
        for company in moves.company_id:
            # one record per transaction: a commit empties the cache, keep the next fetch small
            company_moves = [m.with_prefetch() for m in todo if m.company_id == company]
            client = client or self._ksef_client(company, moves.browse([m.id for m in company_moves]), quick=quick)
            if client is None:
                continue
            record = session = None
            for index, move in enumerate(company_moves):
                if not quick and time.monotonic() - started > budget:
                    return done, len(company_moves) - index
                from_state = move.ksef_state
                if from_state not in ('to_send', 'offline') or not move._ksef_lock((from_state,)):
                    continue
                if not move.ksef_xml_hash:
                    continue
                if session is None:
                    try:
                        # opening may commit: take the session first, then the invoice again
                        record, session = self._ksef_online_session(company, client)
                    except (KsefError, UserError) as exc:
                        self._ksef_failure(move, exc, company)
                        break
                    if not move._ksef_lock((from_state,)):
                        continue
                outcome = self._ksef_post_invoice(move, from_state, company, client, record, session)
                gone = self.browse()
                while outcome == 'session_gone' and len(gone) < 5:
                    # KSeF does not take invoices in that session any more (full, expired, closed): use another
                    gone |= record
                    if record._ksef_lock_session(('open',)):
                        record.sudo().write({'state': 'closed', 'date_closed': fields.Datetime.now()})
                        Move._ksef_commit()
                    try:
                        record, session = self._ksef_online_session(company, client, exclude=gone)
                    except (KsefError, UserError) as exc:
                        self._ksef_failure(move, exc, company)
                        outcome = 'stop'
                        break
                    outcome = 'failed'
                    if move._ksef_lock((from_state,)):
                        outcome = self._ksef_post_invoice(move, from_state, company, client, record, session)
                if outcome == 'stop':
                    break
                if outcome == 'sent':
                    done += 1
            if quick and len(moves) == 1 and moves.ksef_state == 'sending' and moves.ksef_reference:
                self._ksef_quick_status(moves, client)
            client = None
        if done:
            Move._ksef_trigger_status_cron(at=fields.Datetime.now() + datetime.timedelta(seconds=2))
        return done, 0

    @api.model
    def _ksef_post_invoice(self, move, from_state, company, client, record, session):  # noqa: PLR0917
        """Send one locked invoice. Returns ``sent``, ``session_gone``, ``failed`` or ``stop``."""
        Move = self.env['account.move']
        xml = move._ksef_xml_bytes()
        if not xml or ksef_crypto.sha256_b64(xml) != move.ksef_xml_hash:
            move._ksef_set_state('rejected', self.env._(
                "The stored KSeF XML file of this invoice is missing or does not match its hash; nothing was sent. "
                "Click Retry to build it again."), details=False)
            Move._ksef_commit()
            return 'failed'
        move._ksef_set_state('sending', self.env._("Sending to KSeF (session %s).", record.name), level=False, extra={
            'ksef_session_id': record.id, 'ksef_session_reference': record.name, 'ksef_reference': False,
            'ksef_sent_at': fields.Datetime.now(), 'ksef_attempt_count': move.ksef_attempt_count + 1,
            'ksef_next_attempt': False,
        })
        # persisted BEFORE the POST: session reference + hash identify the invoice after any crash
        Move._ksef_commit()
        if not move._ksef_lock(('sending',)):
            return 'failed'
        try:
            sent = session.send(xml, offline_mode=bool(move.ksef_offline_mode),
                                hash_of_corrected_invoice=move.ksef_corrected_hash or None)
        except SendUnresolved:
            move._ksef_write({
                'ksef_message': self.env._("The connection to KSeF broke while sending; Odoo is checking whether "
                                           "KSeF received the invoice (it will not be sent twice)."),
                'ksef_message_level': 'info'})
            Move._ksef_commit()
            return 'failed'
        except BadRequestError as exc:
            if SESSION_GONE_CODES & set(exc.exception_codes):
                self._ksef_requeue(move, from_state, False)
                return 'session_gone'
            self._ksef_request_refused(move, exc, company)
            return 'failed'
        except RateLimitError as exc:
            # 429: the request was not processed
            self._ksef_requeue(move, from_state, company._ksef_error_message(exc), delay=exc.retry_after or 60)
            Move._ksef_trigger_crons(at=fields.Datetime.now() + datetime.timedelta(seconds=exc.retry_after or 60))
            return 'stop'
        except (KsefError, UserError) as exc:
            if getattr(exc, 'ambiguous', False):
                # the client could not tell whether KSeF stored it: the status job resolves it by hash
                Move._ksef_commit()
                return 'failed'
            if isinstance(exc, ServiceUnavailableError) and exc.params.get('refused'):
                # 503 + Retry-After (maintenance, failure): refused before processing; back to the queue
                delay = max(60, exc.params.get('retry_after') or 0)
                self._ksef_requeue(move, from_state, self._ksef_unavailable_message(move), delay=delay)
                Move._ksef_trigger_crons(at=fields.Datetime.now() + datetime.timedelta(seconds=delay))
                return 'stop'
            self._ksef_requeue(move, from_state, self._ksef_exc_message(company, exc), count=True)
            return 'stop' if isinstance(exc, TransportError) else 'failed'
        move._ksef_write({'ksef_reference': sent.reference_number,
                                                       'ksef_message': False, 'ksef_message_level': False})
        Move._ksef_commit()
        return 'sent'

    @api.model
    def _ksef_unavailable_message(self, move):
        """KSeF refused a request because it is unavailable (maintenance / failure)."""
        if move.ksef_offline_mode:
            return self.env._("KSeF is unavailable (maintenance or failure) and refused the invoice before "
                              "processing it: nothing was sent. The offline invoice is sent automatically when "
                              "KSeF is back.")
        return self.env._("KSeF is unavailable (maintenance or failure) and refused the invoice before processing "
                          "it: nothing was sent. The invoice waits in the queue and is sent automatically when "
                          "KSeF is back; if it must be issued now, use \"Send offline\".")

    @api.model
    def _ksef_exc_message(self, company, exc):
        if isinstance(exc, KsefError):
            return company._ksef_error_message(exc)
        return exc.args[0] if exc.args else str(type(exc).__name__)

    @api.model
    def _ksef_failure(self, move, exc, company):
        """Opening a session failed: nothing was sent; keep the invoice queued with the reason."""
        if isinstance(exc, ServiceUnavailableError):
            self._ksef_postpone(move, self._ksef_unavailable_message(move), count_attempt=True,
                                delay=max(60, exc.params.get('retry_after') or 0))
            return
        self._ksef_postpone(move, self._ksef_exc_message(company, exc), count_attempt=True)

    @api.model
    def _ksef_requeue(self, move, from_state, message, delay=None, count=False):
        """Put a ``sending`` invoice back where it came from (KSeF provably does not have it)."""
        Move = self.env['account.move']
        attempts = move.ksef_attempt_count
        wait = delay if delay is not None else (min(3600, 60 * 2 ** min(attempts, 6)) if count else 0)
        when = fields.Datetime.now() + datetime.timedelta(seconds=wait) if wait else False
        text = message or False
        if text and when:
            text = self.env._("%(message)s Next attempt at %(when)s.", message=text,
                              when=move._ksef_format_datetime(when))
        move._ksef_set_state(from_state, text, level='warning' if text else False, chatter=bool(text), extra={
            'ksef_session_id': False, 'ksef_session_reference': False, 'ksef_reference': False,
            'ksef_sent_at': False, 'ksef_next_attempt': when})
        Move._ksef_commit()

    @api.model
    def _ksef_request_refused(self, move, exc, company):
        """KSeF refused the send request itself (HTTP 400, not a processing status)."""
        Move = self.env['account.move']
        codes = ", ".join(str(c) for c in exc.exception_codes) or "-"
        details = "; ".join(str(d) for d in exc.details)[:1500]
        if {21166, 21167} & set(exc.exception_codes):
            message = self.env._(
                "KSeF refused the technical correction of the offline invoice (codes %s): the original was already "
                "corrected or accepted. Check the invoice in KSeF; if it is there, nothing more is needed.", codes)
        else:
            message = self.env._("KSeF refused the sending request (codes %(codes)s). Next step: read the details, "
                                 "correct the invoice and click Retry.", codes=codes)
        move._ksef_set_state('rejected', message, details=details or False,
                             status_code=exc.http_status or 400)
        Move._ksef_commit()

    @api.model
    def _ksef_quick_status(self, move, client):
        """A couple of quick status checks right after a single send (the job does the rest)."""
        for delay in (0.7, 1.5):
            time.sleep(delay)
            self._ksef_update_status(move, quick=True, client=client)
            if move.ksef_state != 'sending':
                return

    @api.model
    def _ksef_send_batch(self, client, company, moves):
        """One batch session (ZIP of the frozen XML files) for many invoices. ``(done, remaining)``."""
        Move = self.env['account.move']
        locked = Move.browse([m.id for m in moves if m._ksef_lock((m.ksef_state,)) and m.ksef_xml_hash])
        done = 0
        for offline_flag in (False, True):
            group = locked.filtered(lambda m, f=offline_flag: bool(m.ksef_offline_mode) == f)
            if not group:
                continue
            items, names = [], set()
            for move in group:
                xml = move._ksef_xml_bytes()
                name = move._ksef_filename('.xml')
                while name in names:
                    name = "%s_%s.xml" % (name[:-4], move.id)
                names.add(name)
                items.append((name, xml))
            try:
                package = BatchPackage.build(items)
            except ValueError as exc:
                _logger.warning("KSeF batch package of company %s cannot be built: %s", company.id, exc)
                continue
            with package:
                try:
                    session = BatchSession.open(client, package, 'FA3', offline_mode=offline_flag)
                except (KsefError, UserError) as exc:
                    message = self._ksef_exc_message(company, exc)
                    if isinstance(exc, RateLimitError):
                        Move._ksef_trigger_crons(at=fields.Datetime.now() + datetime.timedelta(
                            seconds=exc.retry_after or 60))
                    Move._ksef_commit()
                    self._ksef_postpone(group, message, count_attempt=True)
                    continue
                state = session.to_dict()
                record = self.sudo().create({
                    'name': session.reference_number, 'company_id': company.id, 'kind': 'batch',
                    'offline_mode': offline_flag, 'invoice_count': len(group),
                    'valid_until': fields.Datetime.now() + datetime.timedelta(hours=12),
                    'key_b64': state['symmetricKey'], 'iv_b64': state['initializationVector'],
                })
                group._ksef_set_state('sending', self.env._("Sending to KSeF in batch session %s.", record.name),
                                      level=False, extra={
                                          'ksef_session_id': record.id, 'ksef_session_reference': record.name,
                                          'ksef_reference': False, 'ksef_sent_at': fields.Datetime.now(),
                                          'ksef_next_attempt': False})
                for move in group:
                    move._ksef_write(
                        {'ksef_attempt_count': move.ksef_attempt_count + 1})
                # session + invoices stored before the package goes out
                Move._ksef_commit()
                try:
                    session.upload(package)
                    session.close()
                except (KsefError, UserError) as exc:
                    _logger.warning("KSeF batch session %s of company %s not completed (%s); the status job "
                                    "abandons it and queues its invoices again", record.name, company.id,
                                    getattr(exc, 'code', type(exc).__name__))
                    continue
                record.sudo().write({'state': 'closed', 'date_closed': fields.Datetime.now()})
                Move._ksef_commit()
                done += len(group)
        if done:
            Move._ksef_trigger_status_cron(at=fields.Datetime.now() + datetime.timedelta(seconds=5))
        return done, 0

    # -------------------------------------------------------------------------
    # STATUS
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_cron_update_status(self):
        Move = self.env['account.move']
        started = time.monotonic()
        moves = Move.search([('ksef_state', '=', 'sending')], order='id')
        remaining = self._ksef_update_status(moves, started=started)
        missing_upo = Move.search([('ksef_state', 'in', ACCEPTED_STATES), ('ksef_upo_file', '=', False),
                                   ('ksef_session_reference', '!=', False)], order='id', limit=500)
        if missing_upo and time.monotonic() - started < self._ksef_budget():
            self._ksef_fetch_upos(missing_upo)
        self._ksef_close_idle_sessions()
        still = Move.search_count([('ksef_state', '=', 'sending')])
        if remaining or still:
            self.env['ir.cron']._notify_progress(done=len(moves) - remaining, remaining=remaining or still)
            if still and not remaining:
                Move._ksef_trigger_status_cron(at=fields.Datetime.now() + datetime.timedelta(seconds=10))

    @api.model
    def _ksef_update_status(self, moves, quick=False, client=None, started=None):
        """Follow ``sending`` invoices. Returns how many were left for the next run (time budget)."""
        started = started or time.monotonic()
        budget = self._ksef_budget()
        groups = {}
        for move in moves:
            if move.ksef_state == 'sending':
                groups.setdefault((move.company_id, move.ksef_session_reference), []).append(move)
        left = 0
        clients = {}
        for (company, reference), group in groups.items():
            if not quick and time.monotonic() - started > budget:
                left += len(group)
                continue
            if company not in clients:
                clients[company] = client or self._ksef_client(company, quick=quick)
            company_client = clients[company]
            if company_client is None:
                continue
            if not reference:
                for move in group:
                    self._ksef_requeue(move, move._ksef_queue_state(), False)
                continue
            try:
                self._ksef_follow_session(company, company_client, reference, group, quick=quick)
            except (KsefError, UserError) as exc:
                message = self._ksef_exc_message(company, exc)
                _logger.warning("KSeF status of session %s (company %s) not available: %s", reference, company.id,
                                getattr(exc, 'code', type(exc).__name__))
                if quick:
                    continue
                for move in group:
                    if move.ksef_message != message and move._ksef_lock(('sending',)):
                        move._ksef_write({'ksef_message': message,
                                                                       'ksef_message_level': 'warning'})
                        self.env['account.move']._ksef_commit()
        return left

    @api.model
    def _ksef_follow_session(self, company, client, reference, group, quick=False):
        Move = self.env['account.move']
        group = [move.with_prefetch() for move in group]
        handle = client.session(reference)
        record = group[0].ksef_session_id
        now = fields.Datetime.now()
        grace = self._ksef_param('resolve_grace_seconds', 300.0)
        if record.kind == 'batch':
            status = handle.status()
            code = (status.get('status') or {}).get('code')
            age = (now - (record.create_date or now)).total_seconds()
            if code == 100 and (record.state == 'abandoned' or (record.state == 'open' and age > max(grace, 600))):
                # never uploaded/closed (crash or failure): KSeF will not process it. Already 'abandoned':
                # an abandonment interrupted (worker killed, invoice locked) before every invoice was queued
                # again — finish it, or these invoices would stay 'sending' forever
                self._ksef_abandon(record, group, self.env._("The batch session was not completed; the invoice is "
                                                             "queued again."))
                return
            if code in SESSION_FAILED_CODES and not status.get('invoiceCount'):
                description = (status.get('status') or {}).get('description') or ''
                self._ksef_abandon(record, group, self.env._(
                    "KSeF did not process the batch session (status %(code)s %(description)s); the invoice is "
                    "queued again.", code=code, description=description))
                return
            if code == 100 or code in BATCH_IN_PROGRESS:
                return
        by_ref, by_hash = {}, {}
        listed = False
        need_list = record.kind == 'batch' or len(group) > 5 or any(not m.ksef_reference for m in group)
        if need_list:
            for result in handle.invoices():
                by_ref[result.reference_number] = result
                if result.invoice_hash:
                    by_hash[result.invoice_hash] = result
            listed = True
        else:
            for move in group:
                try:
                    result = handle.invoice_status(move.ksef_reference)
                except NotFoundError:
                    continue
                by_ref[result.reference_number] = result
        for move in group:
            result = by_ref.get(move.ksef_reference) if move.ksef_reference else None
            if result is None and move.ksef_xml_hash:
                result = by_hash.get(move.ksef_xml_hash)
            if result is None:
                sent_at = move.ksef_sent_at or move.write_date or now
                if listed and not move.ksef_reference and (now - sent_at).total_seconds() >= grace \
                        and record.kind != 'batch' and move._ksef_lock(('sending',)):
                    # read successfully after the grace period: KSeF does not have it, send it again
                    self._ksef_requeue(move, move._ksef_queue_state(), False)
                continue
            if not result.is_final:
                if not move.ksef_reference and move._ksef_lock(('sending',)):
                    move._ksef_write({'ksef_reference': result.reference_number})
                    Move._ksef_commit()
                continue
            if not move._ksef_lock(('sending',)):
                continue
            self._ksef_apply_result(move, result, client)
            Move._ksef_commit()

    def _ksef_lock_session(self, states):
        """Lock this session for the current transaction if it is (still) in one of ``states``, like
        ``account.move._ksef_lock``: ``False`` when another worker holds or just changed it — never waits,
        never lets a serialization failure escape a job."""
        self.ensure_one()
        try:
            with self.env.cr.savepoint():
                self.env.cr.execute("SELECT id FROM l10n_pl_ksef_session WHERE id = %s AND state IN %s "
                                    "FOR UPDATE SKIP LOCKED", [self.id, tuple(states)])
                row = self.env.cr.fetchone()
        except (psycopg2.errors.SerializationFailure, psycopg2.errors.LockNotAvailable):
            return False
        self.invalidate_recordset()
        return bool(row)

    @api.model
    def _ksef_abandon(self, record, moves, message):
        if record.state != 'abandoned':
            if not record._ksef_lock_session(('open', 'closed')):
                # another worker is closing or abandoning it right now: the next status run decides
                return
            record.sudo().write({'state': 'abandoned', 'date_closed': fields.Datetime.now()})
            self.env['account.move']._ksef_commit()
        for move in moves:
            move = move.with_prefetch()
            if move._ksef_lock(('sending',)):
                self._ksef_requeue(move, move._ksef_queue_state(), message)

    @api.model
    def _ksef_apply_result(self, move, result, client):
        """Final KSeF status of a locked ``sending`` invoice → accepted / duplicate / retry / rejected."""
        Move = self.env['account.move']
        outcome = Move._ksef_status_outcome(result.status_code, result.description, result.details,
                                            result.extensions, move.ksef_attempt_count)
        details = self._ksef_details_text(result)
        if outcome['state'] == 'accepted':
            self._ksef_accept(move, result, client, outcome['message'], details)
        elif outcome['state'] == 'duplicate':
            self._ksef_duplicate(move, result, client, outcome['message'], details)
        elif outcome['state'] == 'retry':
            move._ksef_write({'ksef_reference': result.reference_number})
            self._ksef_requeue(move, move._ksef_queue_state(), outcome['message'], count=True)
        else:
            move._ksef_write({'ksef_reference': result.reference_number})
            move._ksef_set_state('rejected', outcome['message'], details=details, status_code=result.status_code)

    @api.model
    def _ksef_details_text(self, result):
        parts = ["%s %s" % (result.status_code, result.description or "")]
        parts += [str(d) for d in result.details or ()]
        if result.extensions:
            parts += ["%s: %s" % (k, v) for k, v in sorted(result.extensions.items())]
        return "; ".join(p.strip() for p in parts if p and p.strip())[:2000]

    @api.model
    def _ksef_accept(self, move, result, client, message, details, *, ksef_number=None, level=False):
        invoicing_mode = (result.invoicing_mode or '').lower() or False
        state = 'offline_accepted' if move.ksef_offline_mode else 'accepted'
        extra = {
            'ksef_number': ksef_number or result.ksef_number,
            'ksef_reference': result.reference_number or move.ksef_reference,
            'ksef_acquisition_date': self._ksef_parse_date(result.acquisition_date),
            'ksef_invoicing_date': self._ksef_parse_date(result.invoicing_date),
            'ksef_invoicing_mode': invoicing_mode if invoicing_mode in ('online', 'offline') else False,
            'ksef_next_attempt': False, 'ksef_deadline_warning': False,
        }
        move._ksef_write(extra)
        upo = self._ksef_fetch_upo(move, client, result, quiet=True)
        attachments = move.ksef_xml_id | (upo or self.env['ir.attachment'])
        move._ksef_set_state(state, message, details=details, status_code=result.status_code, extra={},
                             level=level, attachments=attachments)
        move._ksef_refresh_pdf()

    @api.model
    def _ksef_duplicate(self, move, result, client, message, details):
        """440: the invoice number is already in KSeF. Use the original KSeF number when it is this invoice."""
        number = result.original_ksef_number
        original_session = result.original_session_reference_number
        same = None
        if original_session and number:
            try:
                found = client.session(original_session).find_invoice_by_hash(move.ksef_xml_hash)
                same = bool(found and found.ksef_number == number) or None
            except KsefError:
                same = None
        if not number:
            move._ksef_set_state('rejected', message, details=details, status_code=440)
            return
        if same:
            original = client.session(original_session).find_invoice_by_hash(move.ksef_xml_hash)
            self._ksef_use_original_session(move, original_session)
            self._ksef_accept(move, original, client, message, details, ksef_number=number)
            return
        # different bytes (e.g. rebuilt after a lost answer): compare with the copy KSeF holds
        try:
            held = client.download_invoice(number)
        except KsefError:
            held = None
        level = False
        if held is not None:
            verdict = self._ksef_same_invoice(move, held)
            if verdict is False:
                move._ksef_set_state('rejected', self.env._(
                    "KSeF already holds a different invoice with the number %(name)s (KSeF number %(number)s): the "
                    "invoice number is used twice. Next step: check the invoice in KSeF; if it is not this one, "
                    "issue this invoice again under a new number.", name=move.name, number=number),
                    details=details, status_code=440)
                return
            move._ksef_freeze_xml(held)
            if verdict == 'same':
                message = self.env._("%s Odoo keeps the copy held by KSeF (its QR code matches KSeF).", message)
            else:
                level = 'warning'
                message = self.env._(
                    "%s The copy held by KSeF differs in some details from the current data of the invoice in Odoo; "
                    "Odoo keeps the KSeF copy (it is the issued invoice). Issue a correction if the invoice in "
                    "KSeF is wrong.", message)
        else:
            level = 'warning'
            message = self.env._("%s Odoo could not download the copy held by KSeF to compare it.", message)
        if original_session:
            self._ksef_use_original_session(move, original_session)
        fake = _Result(reference_number=move.ksef_reference, status_code=200, ksef_number=number)
        self._ksef_accept(move, fake, client, message, details, ksef_number=number, level=level)

    @api.model
    def _ksef_use_original_session(self, move, original_session):
        """A duplicate accepted under the original KSeF number: its UPO is issued in the session where KSeF
        holds the invoice, not in the session of the refused copy (the UPO would never be found there)."""
        if original_session == move.ksef_session_reference:
            return
        record = self.sudo().search([('name', '=', original_session), ('company_id', '=', move.company_id.id)],
                                    limit=1)
        # the reference of the refused copy means nothing in the original session: the UPO is asked by KSeF number
        move._ksef_write({'ksef_session_reference': original_session, 'ksef_session_id': record.id or False,
                          'ksef_reference': False})

    @api.model
    def _ksef_same_invoice(self, move, held):
        """Compare KSeF's copy with ours: ``'same'`` (same content apart from the file header), ``'similar'``
        (same seller, number, kind, buyer and total), ``False`` (another document) or ``None`` (unknown)."""
        try:
            theirs = fa3.parse(held)
            ours = fa3.parse(move._ksef_xml_bytes())
        except (KsefError, ValueError):
            return None

        def key(invoice):
            buyer = invoice.podmiot2.dane_identyfikacyjne if invoice.podmiot2 else None
            return (invoice.podmiot1.dane_identyfikacyjne.nip, invoice.fa.p_2, invoice.fa.rodzaj_faktury,
                    invoice.fa.p_15, invoice.fa.kod_waluty,
                    buyer and (buyer.nip or buyer.nr_vat_ue or buyer.nr_id or buyer.brak_id))

        def content(invoice):
            data = fa3.to_dict(invoice)
            data.pop('naglowek', None)
            return data
        if key(theirs) != key(ours):
            return False
        return 'same' if content(theirs) == content(ours) else 'similar'

    # -------------------------------------------------------------------------
    # UPO
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_fetch_upo(self, move, client, result=None, quiet=False):
        """Fetch and store the UPO of an accepted invoice; ``None`` when not available yet."""
        if not move.ksef_session_reference:
            return None
        handle = client.session(move.ksef_session_reference)
        url = result.upo_download_url if result is not None else None
        try:
            if url:
                # pre-signed URL: no bearer token, not rate-limited
                path = "/sessions/%s/invoices/ksef/%s/upo" % (move.ksef_session_reference, move.ksef_number)
                content = handle._fetch_upo(url, path)
            elif move.ksef_reference or move.ksef_number:
                content = handle.invoice_upo(invoice_reference=move.ksef_reference or None,
                                             ksef_number=None if move.ksef_reference else move.ksef_number,
                                             timeout=5 if quiet else 60)
            else:
                return None
        except (KsefError, ValueError) as exc:
            _logger.info("UPO of invoice %s not available yet (%s)", move.id, getattr(exc, 'code', exc))
            return None
        return move._ksef_store_attachment('ksef_upo_file', move._ksef_filename('_UPO.xml'), content)

    @api.model
    def _ksef_fetch_upos(self, moves):
        Move = self.env['account.move']
        started = time.monotonic()
        budget = self._ksef_budget()
        by_session = {}
        for move in moves:
            by_session.setdefault((move.company_id, move.ksef_session_reference), []).append(move)
        for (company, reference), group in by_session.items():
            if time.monotonic() - started > budget:
                break
            client = self._ksef_client(company)
            if client is None:
                continue
            results = {}
            if len(group) > 3:
                try:
                    results = {r.ksef_number: r for r in client.session(reference).invoices() if r.ksef_number}
                except KsefError:
                    results = {}
            for move in group:
                move = move.with_prefetch()
                if not move._ksef_lock(ACCEPTED_STATES) or move.ksef_upo_file:
                    continue
                upo = self._ksef_fetch_upo(move, client, results.get(move.ksef_number), quiet=True)
                if upo:
                    move.with_context(no_new_invoice=True).message_post(
                        body=self.env._("KSeF: UPO (official acknowledgement of receipt) downloaded."),
                        attachment_ids=upo.ids, message_type='notification', subtype_xmlid='mail.mt_note')
                    row = move.ksef_transmission_ids.filtered(lambda r: r.state in ACCEPTED_STATES)[:1]
                    if row:
                        row.sudo().attachment_id = upo
                try:
                    Move._ksef_commit()
                except psycopg2.errors.SerializationFailure:
                    # another job stored this UPO while the session list was read (this transaction's
                    # snapshot is older than its commit): its work stands, this copy is dropped
                    self.env.cr.rollback()
                    _logger.info("UPO of invoice %s stored by another job meanwhile", move.id)

    # -------------------------------------------------------------------------
    # HOUSEKEEPING
    # -------------------------------------------------------------------------

    @api.model
    def _ksef_close_idle_sessions(self):
        """Close online sessions idle for an hour (or expiring), so KSeF issues their collective UPO."""
        Move = self.env['account.move']
        now = fields.Datetime.now()
        idle = self._ksef_param('session_idle_seconds', 3600.0)
        clients = {}
        for record in self.sudo().search([('kind', '=', 'online'), ('state', '=', 'open')]):
            last = Move.sudo().search([('ksef_session_id', '=', record.id)], order='ksef_sent_at desc', limit=1)
            last_used = (last.ksef_sent_at if last else None) or record.create_date
            expiring = record.valid_until and record.valid_until <= now + datetime.timedelta(minutes=30)
            if (now - last_used).total_seconds() < idle and not expiring:
                continue
            company = record.company_id
            if company not in clients:
                clients[company] = self._ksef_client(company)
            client = clients[company]
            if client is None:
                continue
            if not record._ksef_lock_session(('open',)):
                continue
            # a session of another context/environment (settings changed) is unknown there: just forget it
            if client.scope == record.scope and not (record.valid_until and record.valid_until <= now):
                try:
                    client.resume_online_session(record._ksef_state_dict()).close()
                except (KsefError, ValueError) as exc:
                    _logger.info("KSeF session %s not closed (%s)", record.name, getattr(exc, 'code', exc))
            record.write({'state': 'closed', 'date_closed': now})
            Move._ksef_commit()


class _Result:
    """Minimal stand-in for :class:`ksef.client.InvoiceResult` (accepting a duplicate)."""

    def __init__(self, reference_number, status_code, ksef_number):
        self.reference_number = reference_number
        self.status_code = status_code
        self.ksef_number = ksef_number
        self.acquisition_date = self.invoicing_date = self.invoicing_mode = None
        self.upo_download_url = None
        self.description = None
        self.details = []
        self.extensions = {}
