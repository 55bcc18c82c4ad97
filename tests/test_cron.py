"""Crash recovery and concurrency of the KSeF jobs.

The crash tests stop the job at a chosen point with an exception nothing catches (like a killed worker):
every write before that point is kept (Odoo commits before each call to KSeF), nothing after it
happens. The next run must find the invoice again — never send it twice, never lose it.

The concurrency tests use separate database cursors with real commits (the ``ksef_commit`` context key
enables the commits the jobs skip under tests).
"""
import datetime
import threading
import time
from unittest.mock import patch

import psycopg2

from odoo import SUPERUSER_ID, api, fields
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, get_db_name, tagged

from odoo.addons.l10n_pl_ksef.ksef.client import BatchSession, OnlineSession
from odoo.addons.l10n_pl_ksef.tests.common import get_sandbox, random_nip
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import KsefSendCommon


class _Crash(BaseException):
    """The worker dies here (not an Exception: nothing in the job may catch it)."""


def crash(run):
    """Run ``run`` and swallow the simulated crash. (Not ``assertRaises``: Odoo's rolls the savepoint back,
    while a crashed worker keeps what it committed before the crash.)"""
    try:
        run()
    except _Crash:
        return True
    raise AssertionError("the job was expected to crash")


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefCronRecovery(KsefSendCommon):

    def queue(self, count=1):
        moves = self.env['account.move']
        for _i in range(count):
            moves |= self.ksef_invoice()
        moves.with_context(ksef_no_send_now=True)._ksef_enqueue()
        return moves

    def test_crash_after_ksef_accepted_before_reference_stored(self):
        invoice = self.queue()
        real_send = OnlineSession.send

        def send_then_die(session, xml, **kw):
            real_send(session, xml, **kw)      # KSeF has it (202) ...
            raise _Crash()                     # ... and the worker dies before Odoo stores anything
        with patch.object(OnlineSession, 'send', send_then_die):
            crash(self.ksef_run_send)
        self.assertEqual(invoice.ksef_state, 'sending')
        self.assertTrue(invoice.ksef_session_reference, "the session was stored before sending")
        self.assertFalse(invoice.ksef_reference)
        # the next runs find it in the session by its hash
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        stored = self.ksef_sandbox_by_hash(invoice.ksef_xml_hash)
        self.assertEqual([s['ksefNumber'] for s in stored], [invoice.ksef_number], "exactly once in KSeF")

    def test_crash_before_the_post(self):
        invoice = self.queue()

        def die(session, xml, **kw):
            raise _Crash()
        with patch.object(OnlineSession, 'send', die):
            crash(self.ksef_run_send)
        self.assertEqual(invoice.ksef_state, 'sending')
        # KSeF does not have it: once the session list proves it, it is queued again and sent
        self.env['account.move']._cron_ksef_update_status()
        self.assertEqual(invoice.ksef_state, 'to_send')
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        self.assertEqual(len(self.ksef_sandbox_by_hash(invoice.ksef_xml_hash)), 1)

    def test_crash_after_final_status_before_it_was_stored(self):
        invoice = self.queue()
        self.ksef_run_send()
        Session = type(self.env['l10n_pl_ksef.session'])

        def die(self_, move, result, client):
            raise _Crash()
        time.sleep(0.3)
        with patch.object(Session, '_ksef_apply_result', die):
            crash(lambda: self.ksef_run_status(invoice))
        self.assertEqual(invoice.ksef_state, 'sending')
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        self.assertEqual(len(self.ksef_sandbox_by_hash(invoice.ksef_xml_hash)), 1)

    def test_ambiguous_timeout_is_resolved_by_hash_not_resent(self):
        invoice = self.queue()
        self.ksef_sandbox.set_faults(type='timeout_after_store', seconds=1, path=r'/sessions/online/[^/]+/invoices$',
                                     method='POST', count=1)
        try:
            self.ksef_run_send()
        finally:
            self.ksef_sandbox.clear_faults()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)
        self.assertEqual(len(self.ksef_sandbox_by_hash(invoice.ksef_xml_hash)), 1)

    def test_batch_crash_before_upload_is_abandoned_and_resent(self):
        self.ksef_company.ksef_batch_threshold = 1
        invoices = self.queue(3)

        def die(session, package):
            raise _Crash()
        with patch.object(BatchSession, 'upload', die):
            crash(self.ksef_run_send)
        session = invoices.ksef_session_id
        self.assertEqual((session.kind, session.state), ('batch', 'open'))
        self.assertEqual(set(invoices.mapped('ksef_state')), {'sending'})
        # young: left alone (the upload may still be running in another worker)
        self.env['account.move']._cron_ksef_update_status()
        self.assertEqual(set(invoices.mapped('ksef_state')), {'sending'})
        # old and still open in KSeF: abandoned, invoices queued again
        self.env.cr.execute("UPDATE l10n_pl_ksef_session SET create_date = now() - interval '1 hour' WHERE id = %s",
                            [session.id])
        session.invalidate_recordset()
        self.env['account.move']._cron_ksef_update_status()
        self.assertEqual(session.state, 'abandoned')
        self.assertEqual(set(invoices.mapped('ksef_state')), {'to_send'})
        self.ksef_run_send()
        self.ksef_run_status(invoices)
        for invoice in invoices:
            self.assertKsefAccepted(invoice)
            self.assertEqual(len(self.ksef_sandbox_by_hash(invoice.ksef_xml_hash)), 1)

    def test_rate_limit_keeps_the_invoice_queued(self):
        invoice = self.queue()
        self.ksef_sandbox.set_faults(type='rate_limit', retry_after=3600, path=r'/sessions/online/[^/]+/invoices$',
                                     method='POST', count=1)
        try:
            self.ksef_run_send()
        finally:
            self.ksef_sandbox.clear_faults()
        self.assertEqual(invoice.ksef_state, 'to_send')
        self.assertTrue(invoice.ksef_next_attempt > fields.Datetime.now() + datetime.timedelta(minutes=30))
        self.assertFalse(self.ksef_sandbox_by_hash(invoice.ksef_xml_hash))
        invoice.action_ksef_retry()
        self.ksef_run_send()
        self.ksef_run_status(invoice)
        self.assertKsefAccepted(invoice)

    def test_session_of_another_context_is_not_reused(self):
        first = self.queue()
        self.ksef_run_send()
        self.ksef_run_status(first)
        # the company switches to another KSeF context (NIP): KSeF would not know the old session there
        new_nip = random_nip()
        self.ksef_company.vat = 'PL%s' % new_nip
        self.ksef_configure_token(self.ksef_company, nip=new_nip)
        self.ksef_nip = new_nip
        second = self.queue()
        self.ksef_run_send()
        self.ksef_run_status(second)
        self.assertKsefAccepted(first)
        self.assertKsefAccepted(second)
        self.assertNotEqual(first.ksef_session_id, second.ksef_session_id)
        self.assertEqual(first.ksef_session_id.state, 'open', "the old session is left to the idle closing")

    def test_session_is_reused_across_runs_and_closed_when_idle(self):
        first = self.queue()
        self.ksef_run_send()
        second = self.queue()
        self.ksef_run_send()
        self.ksef_run_status(first | second)
        self.assertEqual(first.ksef_session_id, second.ksef_session_id)
        session = first.ksef_session_id
        self.env['ir.config_parameter'].sudo().set_param('l10n_pl_ksef.session_idle_seconds', '0')
        self.env['account.move']._cron_ksef_update_status()
        self.assertEqual(session.state, 'closed')


COMPANY_NAME = "KSeF concurrency test company"


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefConcurrency(BaseCase):
    """Two workers (own cursors, real commits) run the send job on the same queue at once."""

    N = 8

    @classmethod
    def _request_handler(cls, s, r, /, **kw):
        # Odoo 18's harness compares the timeout with a number; the KSeF client passes (connect, read)
        timeout = kw.get('timeout')
        if isinstance(timeout, tuple):
            kw['timeout'] = max(t or 0 for t in timeout) or None
        return super()._request_handler(s, r, **kw)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())
        cls.sandbox = get_sandbox()

    def env_for(self, cr, **context):
        if getattr(cr, 'transaction', None) is None:
            # Odoo's own test runner runs post-install tests while the registry class lock is held:
            # bind the cursor to the loaded registry instead of asking Registry(dbname) again
            cr.transaction = api.Transaction(self.registry)
        env = api.Environment(cr, SUPERUSER_ID, {})
        company = env['res.company'].search([('name', '=', COMPANY_NAME)], limit=1)
        ctx = {'allowed_company_ids': company.ids, 'ksef_commit': True, **context}
        return api.Environment(cr, SUPERUSER_ID, ctx), company

    def setup_queue(self):
        """A committed Polish company (created once per database), a fresh NIP and N queued invoices."""
        with self.registry.cursor() as cr:
            env, company = self.env_for(cr)
            env = api.Environment(cr, SUPERUSER_ID, {})
            if not company:
                company = env['res.company'].create({
                    'name': COMPANY_NAME, 'country_id': env.ref('base.pl').id, 'currency_id': env.ref('base.PLN').id,
                    'street': "ul. Współbieżna 1", 'zip': "00-950", 'city': "Warszawa"})
                env['account.chart.template'].try_loading('pl', company=company, install_demo=False)
            env = api.Environment(cr, SUPERUSER_ID, {'allowed_company_ids': company.ids})
            company = company.with_env(env)
            self.cleanup(env, company)
            nip = random_nip()
            token = self.sandbox.create_token(nip)
            company.write({'vat': 'PL%s' % nip})
            company.sudo().write({'ksef_environment': 'sandbox', 'ksef_sandbox_url': self.sandbox.url,
                                  'ksef_context_nip': nip, 'ksef_auth_method': 'token', 'ksef_token': token,
                                  'ksef_batch_threshold': 1000})
            buyer = env['res.partner'].with_context(no_vat_validation=True).create({
                'name': "Nabywca współbieżny", 'is_company': True, 'vat': 'PL%s' % random_nip(),
                'country_id': env.ref('base.pl').id, 'street': "ul. Równoległa 2", 'zip': "00-001",
                'city': "Warszawa"})
            tax = env['account.tax'].search([('company_id', '=', company.id), ('type_tax_use', '=', 'sale'),
                                             ('ksef_rate_code', '=', '23')], limit=1)
            today = fields.Date.context_today(company)
            moves = env['account.move'].create([{
                'move_type': 'out_invoice', 'partner_id': buyer.id, 'invoice_date': today,
                'company_id': company.id,
                'invoice_line_ids': [fields.Command.create({'name': "Usługa %s" % i, 'quantity': 1,
                                                            'price_unit': 100 + i,
                                                            'tax_ids': [fields.Command.set(tax.ids)]})],
            } for i in range(self.N)])
            moves.action_post()
            errors = moves.with_context(ksef_no_send_now=True)._ksef_enqueue()
            self.assertFalse(errors)
            # log in once so that the workers only read the stored tokens
            company._ksef_get_client(authenticate=True)
            cr.commit()  # pylint: disable=invalid-commit
            return company.id, nip, moves.ids

    def cleanup(self, env, company):
        """Leftovers of earlier runs in this database (the company is kept): nothing queued, no open
        session, so that they never weigh on later runs or on the other tests."""
        env.cr.execute("UPDATE account_move SET ksef_state = NULL WHERE company_id = %s "
                       "AND ksef_state IN ('to_send', 'sending', 'offline')", [company.id])
        env.cr.execute("UPDATE l10n_pl_ksef_session SET state = 'closed' WHERE company_id = %s AND state = 'open'",
                       [company.id])
        env.invalidate_all()

    def tearDown(self):
        with self.registry.cursor() as cr:
            env, company = self.env_for(cr)
            if company:
                self.cleanup(env, company)
        super().tearDown()

    def run_workers(self, count, target):
        barrier = threading.Barrier(count)
        failures = []

        def work():
            try:
                with self.registry.cursor() as cr:
                    env, _company = self.env_for(cr)
                    barrier.wait(timeout=30)
                    target(env)
            except Exception as exc:  # reported by the assertion below
                failures.append(repr(exc))
        threads = [threading.Thread(target=work, name="ksef-worker-%s" % i) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        self.assertFalse(failures, "workers must not fail")

    def follow(self, move_ids, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            with self.registry.cursor() as cr:
                env, _company = self.env_for(cr)
                env['account.move']._cron_ksef_update_status()
                moves = env['account.move'].browse(move_ids)
                states = moves.mapped('ksef_state')
                if 'sending' not in states or time.monotonic() > deadline:
                    return {m.id: (m.ksef_state, m.ksef_number, m.ksef_xml_hash) for m in moves}
            time.sleep(0.2)

    def test_two_workers_send_each_invoice_exactly_once(self):
        _company_id, nip, move_ids = self.setup_queue()
        self.run_workers(2, lambda env: env['l10n_pl_ksef.session']._ksef_cron_send())
        result = self.follow(move_ids)
        stored = self.sandbox.invoices(seller_nip=nip)
        by_hash = {}
        for item in stored:
            by_hash.setdefault(item['invoiceHash'], []).append(item['ksefNumber'])
        self.assertEqual(len(stored), self.N, "KSeF received each invoice once")
        for state, number, xml_hash in result.values():
            self.assertEqual(state, 'accepted')
            self.assertEqual(by_hash.get(xml_hash), [number])

    def test_concurrent_change_while_sending_is_not_a_failed_job(self):
        """Seen once in the 1,000-invoice chaos run: the send job's commit failed with a serialization
        failure (another job closed the session it was filling) and the exception escaped the job. Now the
        job drops that transaction, keeps the invoices queued, and the next run sends them."""
        _company_id, nip, move_ids = self.setup_queue()
        Session = self.registry['l10n_pl_ksef.session']
        original = Session._ksef_send_company
        calls = []

        def conflicting(session, company, moves, started):
            calls.append(moves.ids)
            if len(calls) == 1:
                moves[:1]._ksef_write({'ksef_attempt_count': 7})  # uncommitted work, dropped with the conflict
                raise psycopg2.errors.SerializationFailure("could not serialize access due to concurrent update")
            return original(session, company, moves, started)
        with patch.object(Session, '_ksef_send_company', conflicting), self.registry.cursor() as cr:
            env, _company = self.env_for(cr)
            env['l10n_pl_ksef.session']._ksef_cron_send()  # no exception escapes
            moves = env['account.move'].browse(move_ids)
            self.assertEqual(set(moves.mapped('ksef_state')), {'to_send'})
            self.assertNotEqual(moves[0].ksef_attempt_count, 7)
            cr.commit()  # pylint: disable=invalid-commit
            env['l10n_pl_ksef.session']._ksef_cron_send()
        result = self.follow(move_ids)
        self.assertEqual({state for state, _number, _hash in result.values()}, {'accepted'})
        self.assertEqual(len(self.sandbox.invoices(seller_nip=nip)), self.N)

    def test_session_changed_by_another_worker_is_skipped_not_a_failed_job(self):
        """Found by the chaos run: two status jobs closing (or abandoning) the same session at once — the
        second one's write failed at commit with a serialization failure that escaped the job (five
        failed runs deactivate a cron). The session row is now locked first; a session another worker
        holds or just changed is left to it."""
        company_id, _nip, _move_ids = self.setup_queue()
        with self.registry.cursor() as cr:
            env, _company = self.env_for(cr)
            record = env['l10n_pl_ksef.session'].sudo().create({
                'name': "20260101-SO-0000000000-0000000000-00", 'company_id': company_id, 'kind': 'online'})
            cr.execute("UPDATE l10n_pl_ksef_session SET create_date = now() - interval '1 day' WHERE id = %s",
                       [record.id])
            cr.commit()  # pylint: disable=invalid-commit
        with self.registry.cursor() as late_cr:
            env, _company = self.env_for(late_cr)
            env.cr.execute("SELECT 1")  # this job's snapshot: the session is open
            with self.registry.cursor() as other_cr:
                # meanwhile another worker closes it and commits
                other_cr.execute("UPDATE l10n_pl_ksef_session SET state = 'closed' WHERE id = %s", [record.id])
                other_cr.commit()  # pylint: disable=invalid-commit
            env['l10n_pl_ksef.session']._ksef_close_idle_sessions()
            late_cr.rollback()
            held = env['l10n_pl_ksef.session'].sudo().browse(record.id)
            held.state = 'open'
            late_cr.commit()  # pylint: disable=invalid-commit
            # the same with the row held by a worker that has not committed yet
            with self.registry.cursor() as holder_cr:
                holder_cr.execute("SELECT id FROM l10n_pl_ksef_session WHERE id = %s FOR UPDATE", [record.id])
                env['l10n_pl_ksef.session']._ksef_close_idle_sessions()
                late_cr.commit()  # pylint: disable=invalid-commit
                holder_cr.rollback()
            held.invalidate_recordset()
            self.assertEqual(held.state, 'open', "left to the worker holding it")
            held.state = 'closed'
            late_cr.commit()  # pylint: disable=invalid-commit

    def test_upo_stored_by_another_job_meanwhile_is_not_a_failed_job(self):
        """Found by the chaos run: two status jobs fetching the UPO of the same invoice; the one whose
        transaction began before the other's commit failed at its own commit (serialization failure
        escaping the job). Its copy is now dropped and the job goes on."""
        _company_id, _nip, move_ids = self.setup_queue()
        self.run_workers(1, lambda env: env['l10n_pl_ksef.session']._ksef_cron_send())
        self.follow(move_ids)
        move_id = move_ids[0]
        with self.registry.cursor() as cr:
            env, _company = self.env_for(cr)
            move = env['account.move'].browse(move_id)
            self.assertEqual(move.ksef_state, 'accepted')
            move.ksef_transmission_ids.sudo().write({'attachment_id': False})
            move.with_context(ksef_skip_guard=True).ksef_upo_file = False
            cr.commit()  # pylint: disable=invalid-commit
        with self.registry.cursor() as late_cr:
            env, _company = self.env_for(late_cr)
            late = env['account.move'].browse(move_id)
            self.assertFalse(late.ksef_upo_file)  # this job's snapshot: no UPO yet
            with self.registry.cursor() as other_cr:
                other_env, _company = self.env_for(other_cr)
                other = other_env['account.move'].browse(move_id)
                other_env['l10n_pl_ksef.session']._ksef_fetch_upos(other)
                self.assertTrue(other.ksef_upo_file)
            env['l10n_pl_ksef.session']._ksef_fetch_upos(late)
        with self.registry.cursor() as cr:
            env, _company = self.env_for(cr)
            move = env['account.move'].browse(move_id)
            self.assertEqual(move.ksef_state, 'accepted')
            self.assertTrue(move.ksef_upo_file)
            self.assertEqual(len(move.message_ids.filtered(lambda m: 'UPO (official' in (m.body or ''))), 1)

    def test_manual_click_skips_an_invoice_a_worker_holds(self):
        _company_id, nip, move_ids = self.setup_queue()
        with self.registry.cursor() as worker_cr:
            # a worker holds the first invoice (row lock, not committed yet)
            worker_cr.execute("SELECT id FROM account_move WHERE id = %s FOR UPDATE", [move_ids[0]])
            with self.registry.cursor() as user_cr:
                env, _company = self.env_for(user_cr)
                move = env['account.move'].browse(move_ids[0])
                env['l10n_pl_ksef.session']._ksef_send_online(move, quick=True)
                move.invalidate_recordset()
                self.assertEqual(move.ksef_state, 'to_send', "skipped: another process is sending it")
            worker_cr.rollback()
        self.assertFalse(self.sandbox.invoices(seller_nip=nip))
        # everything is sent afterwards, once
        self.run_workers(1, lambda env: env['l10n_pl_ksef.session']._ksef_cron_send())
        result = self.follow(move_ids)
        self.assertEqual({r[0] for r in result.values()}, {'accepted'})
        self.assertEqual(len(self.sandbox.invoices(seller_nip=nip)), self.N)
