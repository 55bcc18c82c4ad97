"""Reliability of the KSeF sending jobs when KSeF misbehaves (targeted cases, in-process jobs).

Each test injects one kind of fault in the sandbox (over real HTTP) and checks that the invoice ends
exactly once in KSeF with its KSeF number and UPO in Odoo — or waits in the queue with a clear message
when KSeF refused the request before processing it. The random, multi-process version with worker
kills is ``test_reliability_chaos.py``.
"""
from unittest.mock import patch

from odoo.exceptions import RedirectWarning
from odoo.tests import tagged

from odoo.addons.l10n_pl_ksef.ksef.client import BatchSession
from odoo.addons.l10n_pl_ksef.tests.ksef_send_common import KsefSendCommon
from odoo.addons.l10n_pl_ksef.tests.test_cron import _Crash, crash

SEND_PATH = r'/sessions/online/[^/]+/invoices$'


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefReliability(KsefSendCommon):

    def assertExactlyOnce(self, move):
        self.assertKsefAccepted(move)
        self.assertTrue(move.ksef_upo_id, "the UPO is stored")
        stored = self.ksef_sandbox.invoices(seller_nip=self.ksef_nip, invoice_number=move.name)
        self.assertEqual([(s['ksefNumber'], s['invoiceHash']) for s in stored],
                         [(move.ksef_number, move.ksef_xml_hash)], "exactly once in KSeF")

    def test_maintenance_send_now_goes_back_to_the_queue(self):
        """KSeF in maintenance answers 503 + Retry-After to every call: a refusal before processing.
        "Send to KSeF" on an invoice (with an online session already open) leaves it waiting in the
        queue with a message naming the maintenance and the offline option — not "verifying"."""
        first = self.ksef_invoice()
        first.action_ksef_send()
        self.ksef_run_status(first)
        self.assertExactlyOnce(first)
        self.ksef_sandbox.set_status('MAINTENANCE', "Prace serwisowe", api='503')
        second = self.ksef_invoice()
        second.action_ksef_send()
        self.assertEqual(second.ksef_state, 'to_send', second.ksef_message)
        self.assertFalse(second.ksef_session_reference)
        self.assertTrue(second.ksef_next_attempt)
        self.assertIn("unavailable", second.ksef_message)
        self.assertIn("offline", second.ksef_message)
        self.assertEqual(second.ksef_banner_level, 'warning')
        self.assertFalse(self.ksef_sandbox.invoices(seller_nip=self.ksef_nip, invoice_number=second.name))
        # the jobs do not fail meanwhile
        self.ksef_run_send()
        self.env['account.move']._cron_ksef_update_status()
        self.assertEqual(second.ksef_state, 'to_send')
        # KSeF is back: the next attempt sends it, once
        self.ksef_sandbox.set_status('AVAILABLE')
        second.action_ksef_retry()
        self.ksef_run_status(second)
        self.assertExactlyOnce(second)

    def test_jobs_survive_a_company_without_ksef_configuration(self):
        """``_ksef_get_client`` raises RedirectWarning (not a UserError) when KSeF is not configured:
        no job may fail because of it (5 failures deactivate a cron); the invoices keep waiting."""
        sent = self.ksef_invoice()
        sent.with_context(ksef_no_send_now=True).action_ksef_send()
        self.ksef_run_send()
        self.assertEqual(sent.ksef_state, 'sending')
        queued = self.ksef_invoice()
        queued.with_context(ksef_no_send_now=True).action_ksef_send()
        self.ksef_company.sudo().ksef_token = False
        with self.assertRaises(RedirectWarning):
            self.ksef_company._ksef_get_client()
        Move = self.env['account.move']
        Move._cron_ksef_send()
        Move._cron_ksef_update_status()
        Move._cron_ksef_send_offline()
        Move._cron_ksef_offline_deadlines()
        self.env['l10n_pl_ksef.inbox_sync']._cron_ksef_receive()
        self.assertEqual(queued.ksef_state, 'to_send')
        self.assertIn("not configured", queued.ksef_message)
        self.assertEqual(sent.ksef_state, 'sending')
        # configured again: everything goes through
        self.ksef_configure_token(self.ksef_company, nip=self.ksef_nip)
        (queued | sent).action_ksef_retry()
        self.ksef_run_send()
        self.ksef_run_status(queued | sent)
        self.assertExactlyOnce(queued)
        self.assertExactlyOnce(sent)

    def test_interrupted_batch_abandonment_is_finished_by_the_next_run(self):
        """Found by the chaos run: the status job abandons a batch session KSeF never received (commits the
        session as 'abandoned'), then queues its invoices again one by one. A worker killed in between
        left the rest 'sending' in an abandoned session, which no run looked at again: stuck for good."""
        self.ksef_company.ksef_batch_threshold = 1
        invoices = self.ksef_invoice() | self.ksef_invoice() | self.ksef_invoice()
        invoices.with_context(ksef_no_send_now=True)._ksef_enqueue()

        def die(*args, **kwargs):
            raise _Crash()
        with patch.object(BatchSession, 'upload', die):
            crash(self.ksef_run_send)
        session = invoices.ksef_session_id
        self.assertEqual((session.kind, session.state), ('batch', 'open'))
        self.env.cr.execute("UPDATE l10n_pl_ksef_session SET create_date = now() - interval '1 hour' WHERE id = %s",
                            [session.id])
        session.invalidate_recordset()
        # the status job abandons it and dies after queueing the first invoice again
        Session = type(self.env['l10n_pl_ksef.session'])
        real_requeue = Session._ksef_requeue
        requeued = []

        def requeue_then_die(self_, move, *args, **kwargs):
            if requeued:
                raise _Crash()
            requeued.append(move.id)
            return real_requeue(self_, move, *args, **kwargs)
        with patch.object(Session, '_ksef_requeue', requeue_then_die):
            crash(self.env['account.move']._cron_ksef_update_status)
        self.assertEqual(session.state, 'abandoned')
        self.assertEqual(sorted(invoices.mapped('ksef_state')), ['sending', 'sending', 'to_send'])
        # the next run finishes the abandonment, and everything goes through once
        self.env['account.move']._cron_ksef_update_status()
        self.assertEqual(set(invoices.mapped('ksef_state')), {'to_send'})
        self.ksef_run_send()
        self.ksef_run_status(invoices)
        for invoice in invoices:
            self.assertExactlyOnce(invoice)

    def test_duplicate_gets_its_upo_from_the_session_where_ksef_holds_it(self):
        """Found by the chaos run: an invoice sent again after a lost answer is refused as a duplicate (440)
        and accepted under the original KSeF number — but Odoo kept the session of the refused copy and
        asked for the UPO there, where it never appears: accepted without UPO for good."""
        invoice = self.ksef_send(self.ksef_invoice())
        self.assertExactlyOnce(invoice)
        number, first_session = invoice.ksef_number, invoice.ksef_session_reference
        # Odoo lost the answer: the same file is queued again and goes out in another session
        invoice.ksef_session_id.sudo().state = 'closed'
        invoice.with_context(ksef_skip_guard=True).write({
            'ksef_state': 'to_send', 'ksef_number': False, 'ksef_reference': False, 'ksef_session_id': False,
            'ksef_session_reference': False, 'ksef_upo_file': False})
        # pre-signed UPO links refused: the UPO is asked through the API, by session
        self.ksef_sandbox.set_faults(type='error', status=404, path=r'^/storage/upo', method='GET')
        self.ksef_run_send()
        self.assertNotEqual(invoice.ksef_session_reference, first_session)
        self.ksef_run_status(invoice)
        self.env['account.move']._cron_ksef_update_status()
        self.assertEqual(invoice.ksef_number, number)
        self.assertExactlyOnce(invoice)
        self.assertIn(number.encode(), invoice.ksef_upo_id.raw)
        self.assertEqual(invoice.ksef_session_reference, first_session)
