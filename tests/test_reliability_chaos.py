"""Chaos: worker processes killed with SIGKILL at random moments while KSeF misbehaves — nothing lost,
nothing sent twice (harness: ``tests/ksef_chaos.py``; the 1,000-invoice version is ``bench/chaos.py``).

The workers are separate OS processes forked from a zygote that loaded this database's registry; they
commit for real, so the run uses its own committed company (created once per database) with a fresh
seller NIP, and cleans up what could weigh on other tests (nothing left queued, no open session).
"""
import logging
import os
from unittest import SkipTest

from odoo import SUPERUSER_ID, api, tools
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, get_db_name, tagged

from odoo.addons.l10n_pl_ksef.ksef import schemas as ksef_schemas
from odoo.addons.l10n_pl_ksef.ksef.errors import SchemaUnavailableError
from odoo.addons.l10n_pl_ksef.tests.common import get_sandbox
from odoo.addons.l10n_pl_ksef.tests.ksef_chaos import TARGETS, ChaosRun, odoo_cli_args

_logger = logging.getLogger(__name__)


@tagged('post_install_l10n', 'post_install', '-at_install')
class TestKsefChaos(BaseCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())
        cls.sandbox = get_sandbox()
        # the worker processes validate every invoice against the official XSDs: without them nothing
        # could be sent and the run would only time out
        try:
            ksef_schemas.schema_location(cache_dir=os.path.join(tools.config['data_dir'], 'ksef_schemas'),
                                         download=False)
        except SchemaUnavailableError as exc:
            raise SkipTest("KSeF chaos test skipped: official schemas unavailable (%s); set KSEF_SCHEMA_DIR"
                           % exc) from None

    def env_for(self, cr, company=None):
        if getattr(cr, 'transaction', None) is None:
            # Odoo's own runner holds the registry lock during post-install tests: bind the cursor to
            # the loaded registry instead of asking Registry(dbname) again
            cr.transaction = api.Transaction(self.registry)
        return api.Environment(cr, SUPERUSER_ID, {'allowed_company_ids': company.ids} if company else {})

    def test_killed_workers_and_faults_lose_nothing_and_duplicate_nothing(self):
        self.sandbox.reset()
        run = ChaosRun(
            self.registry, self.env_for, self.sandbox, odoo_cli_args(tools.config),
            count=40, chaos_seconds=24.0, kill_every=(2.0, 4.0), targeted_every=3.0, episode_seconds=(2.0, 3.0),
            episodes=['mixed', 'maintenance', 'timeout_after_store', '5xx_after', '429_storm', 'failure_drop',
                      'malformed'],
            workers={'send': 2, 'status': 1, 'offline': 1, 'click': 1}, batch_threshold=10, wave_size=(1, 16),
            targets=[t for t in TARGETS if 'invoices' in t[1]['path'] or t[1]['path'].endswith('online$')],
            recovery_timeout=150.0, verbose=bool(os.environ.get('KSEF_CHAOS_VERBOSE')))
        try:
            result = run.run()
        finally:
            run.teardown()
        _logger.info("KSeF chaos: %s", {k: v for k, v in result.items() if k != 'problems'})
        run.log("result: %s", {k: v for k, v in result.items() if k != 'problems'})
        summary = "\n".join(result['problems'][:20] + run.timeline[-15:])
        self.assertGreaterEqual(result['kills'], 1, "at least one worker was killed for real")
        self.assertEqual(result['stored_in_ksef'], result['invoices'], summary)
        self.assertEqual(result['duplicates_in_ksef'], 0, summary)
        self.assertEqual(result['lost'], 0, summary)
        self.assertEqual(result['mismatched'], 0, summary)
        self.assertEqual(result['missing_upo'], 0, summary)
        self.assertEqual(result['accepted'], result['invoices'], summary)
        self.assertEqual(result['escaped'], 0, "exceptions escaped the jobs: %s" % result['escaped_samples'])
        self.assertEqual(result['stats'].get('worker_crashes', 0), 0, "no worker died by itself")
        self.assertTrue(sum(result['faults'].values()), "faults were injected")
