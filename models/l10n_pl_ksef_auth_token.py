import contextlib
import json
import logging

import psycopg2.errors

from odoo import fields, models, modules, tools

_logger = logging.getLogger(__name__)

# pg_advisory_xact_lock(int, int) namespace of the per-company login lock ("KSEF")
_LOCK_NAMESPACE = 0x4B534546
_LOCK_TIMEOUT = '90s'


def _separate_cursors():
    """Token state goes through its own short transactions, except under tests (one shared transaction)."""
    return not tools.config['test_enable'] and not modules.module.current_test


class L10nPlKsefAuthToken(models.Model):
    """Server-side KSeF access/refresh tokens of a company (one row per company).

    Kept apart from ``res.company`` so that saving them in a separate transaction never waits for a
    lock on the company row held by the user's own transaction (settings save, then Authorize).
    Only the client factory ``res.company._ksef_get_client`` reads and writes it, with sudo.
    """

    _name = 'l10n_pl_ksef.auth_token'
    _description = "KSeF access tokens"
    _rec_name = 'company_id'

    company_id = fields.Many2one(
        comodel_name='res.company',
        required=True,
        ondelete='cascade',
        index=True,
    )
    credential_fingerprint = fields.Char(
        groups='l10n_pl_ksef.group_ksef_manager',
        help="Hash of environment, context and credential the tokens were obtained with.",
    )
    tokens = fields.Json(
        groups='l10n_pl_ksef.group_ksef_manager',
        help="Access and refresh token state of the KSeF client (secret).",
    )

    _sql_constraints = [
        ('company_uniq', 'unique(company_id)', "A company has one set of KSeF tokens."),
    ]

    # -------------------------------------------------------------------------
    # BUSINESS
    # -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _ksef_cursor(self):
        if not _separate_cursors():
            yield self.env.cr
            return
        with self.env.registry.cursor() as cr:
            yield cr

    @contextlib.contextmanager
    def _ksef_locked(self, company_id):
        """A cursor holding the per-company login lock until the block ends (then committed).

        Outside tests this is a separate connection with a session-level advisory lock: the
        transaction that waited for the lock is ended before anything is read, so that the tokens
        committed by the worker that held the lock are seen (Odoo transactions are REPEATABLE READ).
        """
        if not _separate_cursors():
            self.env.cr.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, company_id))
            yield self.env.cr
            return
        with self.env.registry.cursor() as cr:
            locked = False
            try:
                cr.execute("SET LOCAL lock_timeout = %s", (_LOCK_TIMEOUT,))
                cr.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_NAMESPACE, company_id))
                locked = True
            except psycopg2.errors.LockNotAvailable:
                _logger.warning("KSeF login lock of company %s not obtained in %s; logging in anyway",
                                company_id, _LOCK_TIMEOUT)
                cr.rollback()
            # own short transactions on a dedicated connection (never the caller's transaction)
            cr.commit()  # pylint: disable=invalid-commit
            try:
                yield cr
                cr.commit()  # pylint: disable=invalid-commit
            finally:
                if locked:
                    cr.rollback()
                    cr.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_NAMESPACE, company_id))
                    cr.commit()  # pylint: disable=invalid-commit

    def _ksef_load(self, cr, company_id, fingerprint):
        """Stored token state of the company if it belongs to ``fingerprint``, else ``None``."""
        cr.execute("SELECT credential_fingerprint, tokens FROM l10n_pl_ksef_auth_token WHERE company_id = %s",
                   (company_id,))
        row = cr.fetchone()
        if not row or row[0] != fingerprint or not row[1]:
            return None
        state = row[1]
        if isinstance(state, str):
            state = json.loads(state)
        return state

    def _ksef_save(self, cr, company_id, fingerprint, state):
        """Insert or replace the token state of the company (``state`` None clears it)."""
        cr.execute(
            """
            INSERT INTO l10n_pl_ksef_auth_token (company_id, credential_fingerprint, tokens,
                                                 create_uid, write_uid, create_date, write_date)
                 VALUES (%(company)s, %(fp)s, %(tokens)s, %(uid)s, %(uid)s,
                         (now() at time zone 'UTC'), (now() at time zone 'UTC'))
            ON CONFLICT (company_id) DO UPDATE
                    SET credential_fingerprint = EXCLUDED.credential_fingerprint,
                        tokens = EXCLUDED.tokens,
                        write_uid = EXCLUDED.write_uid,
                        write_date = EXCLUDED.write_date
            """,
            {'company': company_id, 'fp': fingerprint, 'tokens': json.dumps(state) if state else None,
             'uid': self.env.uid},
        )
        if cr is self.env.cr:
            self.invalidate_model(['credential_fingerprint', 'tokens'])

    def _ksef_saver(self, company_id, fingerprint):
        return _TokenSaver(self, company_id, fingerprint)

    def _ksef_clear(self, companies):
        """Forget the tokens of ``companies`` (e.g. credentials replaced)."""
        with self._ksef_cursor() as cr:
            cr.execute("DELETE FROM l10n_pl_ksef_auth_token WHERE company_id IN %s", (tuple(companies.ids) or (0,),))


class _TokenSaver:
    """``on_tokens_changed`` callback of the KSeF client: persists every new token state.

    While ``cursor`` is set (inside the login lock) it writes there; otherwise each save is its own
    short transaction (refreshes during a long cron run survive a later rollback of the cron's work).
    """

    def __init__(self, store, company_id, fingerprint):
        self.store = store
        self.company_id = company_id
        self.fingerprint = fingerprint
        self.cursor = None

    def __call__(self, state):
        try:
            if self.cursor is not None:
                self.store._ksef_save(self.cursor, self.company_id, self.fingerprint, state)
                return
            with self.store._ksef_cursor() as cr:
                self.store._ksef_save(cr, self.company_id, self.fingerprint, state)
        except psycopg2.Error as exc:
            # losing a token state only costs a new login later
            _logger.warning("could not store the KSeF tokens of company %s (%s)", self.company_id,
                            type(exc).__name__)
