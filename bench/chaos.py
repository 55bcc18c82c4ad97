"""Chaos report: 1,000 invoices through the Odoo KSeF jobs while KSeF misbehaves and workers get SIGKILL.

In a throwaway database (``-i l10n_pl_ksef --without-demo=all``, dropped at the end unless ``--keep-db``)
and against a sandbox subprocess on port ``--sandbox-port`` (default: a free port; rate limits off —
429s come from the injected storms), it runs :class:`odoo.addons.l10n_pl_ksef.tests.ksef_chaos.ChaosRun`:
worker processes (send / status / offline / "Send to KSeF" clicks) forked from a zygote and killed at
random and at targeted moments (KSeF holding a request), fault episodes (timeouts after storing, 5xx
before/after storing, 429 storms, maintenance and failure windows with API 503 or dropped connections,
malformed answers, drops, latency, slow UPO), invoices queued in waves, clicked, or issued offline.

Then it proves the result against the sandbox's own store (``GET /_sandbox/invoices``) and prints: sent
(stored in KSeF), accepted in Odoo with the matching KSeF number + hash + UPO, duplicates in KSeF, lost,
missing UPO, kills performed (random / targeted, per job), faults injected by type, KSeF windows,
exceptions that escaped a job, wall time. Exit code 0 only with zero lost and zero duplicated.

    .venv/bin/python bench/chaos.py [--count 1000] [--chaos-seconds 240] [--seed N] [--keep-db] [--db NAME]
        [--workers send=3,status=2,offline=1,click=1] [--kill-every 1.5 4] [--sandbox-port 8775] [--verbose]
"""
import argparse
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from odoo_send import addons_link, create_db, drop_db, free_port, odoo_args, spec_env  # noqa: E402

SANDBOX_CONFIG = {"auth_delay": 0.05, "invoice_delay": 0.1, "session_close_delay": 0.1, "export_delay": 0.1,
                  "token_activation_delay": 0.1}


class SandboxProcess:
    def __init__(self, port):
        self.tmp = tempfile.TemporaryDirectory(prefix="ksef-chaos-sandbox-")
        self.url = "http://127.0.0.1:%d" % port
        config = [item for key, value in SANDBOX_CONFIG.items() for item in ("--config", "%s=%s" % (key, value))]
        self.log = open(os.path.join(self.tmp.name, "sandbox.log"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ksef", "sandbox", "--port", str(port), "--data-dir", self.tmp.name,
             "--rate-limits", "off", *config],
            cwd=str(ROOT), env=dict(spec_env(), PYTHONPATH=str(ROOT)), stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                requests.get(self.url + "/_sandbox", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise SystemExit("the sandbox did not start")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.tmp.cleanup()


def parse_workers(text):
    workers = {}
    for item in filter(None, text.split(",")):
        job, _, number = item.partition("=")
        workers[job.strip()] = int(number or 1)
    return workers


def report(result, args):
    print("\n=== KSeF chaos report (seed %s) ===" % result["seed"])
    rows = [
        ("invoices in the run", result["invoices"]),
        ("sent (stored in KSeF)", result["stored_in_ksef"]),
        ("accepted in Odoo with KSeF number + hash + UPO", result["accepted"]),
        ("duplicates in KSeF", result["duplicates_in_ksef"]),
        ("lost (not accepted in Odoo or not in KSeF)", result["lost"]),
        ("KSeF number / hash mismatch", result["mismatched"]),
        ("missing UPO", result["missing_upo"]),
        ("exceptions escaped a job", result["escaped"]),
        ("workers that died by themselves", result["stats"].get("worker_crashes", 0)),
        ("worker kills (SIGKILL)", result["kills"]),
    ]
    for label, value in rows:
        print("  %-52s %6s" % (label, value))
    print("  kills by kind: %s" % ", ".join("%s %s" % kv for kv in sorted(result["kills_by_kind"].items())))
    print("  kills by job:  %s" % ", ".join("%s %s" % kv for kv in sorted(result["kills_by_job"].items())))
    print("  targeted kills armed but not hit: %s" % result["stats"].get("targeted_missed", 0))
    print("  faults injected (requests hit):")
    for label, value in sorted(result["faults"].items(), key=lambda kv: -kv[1]):
        print("    %-50s %6s" % (label, value))
    print("  KSeF windows: %s" % (", ".join("%s x%s" % kv for kv in sorted(result["windows"].items())) or "-"))
    stats = result["stats"]
    print("  queued by the list action %s, issued offline %s, clicked the rest; fast-forwarded waits: %s next "
          "attempts, %s batch sessions" % (stats.get("queued", 0), stats.get("issued_offline", 0),
                                           stats.get("fast_forwarded_attempts", 0),
                                           stats.get("fast_forwarded_batches", 0)))
    print("  final states in Odoo: %s" % result["states"])
    print("  wall time %.1f s (chaos %.1f s, recovery %.1f s)" % (
        result["wall_seconds"], stats.get("chaos_seconds", 0), stats.get("recovery_seconds", 0)))
    if result["problems"]:
        print("  problems (first 20):")
        for line in result["problems"][:20]:
            print("    " + line)
    if result["escaped_samples"]:
        print("  escaped (samples): %s" % json.dumps(result["escaped_samples"], ensure_ascii=False))
    print("  worker log: %s" % result["worker_log"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--chaos-seconds", type=float, default=240.0)
    parser.add_argument("--recovery-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workers", default="send=3,status=2,offline=1,click=1")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(1.5, 4.0))
    parser.add_argument("--targeted-every", type=float, default=4.0)
    parser.add_argument("--batch-threshold", type=int, default=25)
    parser.add_argument("--wave-size", type=int, nargs=2, default=(1, 60))
    parser.add_argument("--odoo", default=os.environ.get("ODOO_SRC", "/opt/odoo"))
    parser.add_argument("--db", help="database to use (default: a new throwaway one)")
    parser.add_argument("--db-prefix", default="ksef_chaos", help="prefix of the throwaway database name")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--sandbox-port", type=int, default=0)
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", "odoo"))
    parser.add_argument("--pg-password", default=os.environ.get("PGPASSWORD", "odoo"))
    parser.add_argument("--verbose", action="store_true", help="print the timeline while running")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    args = parser.parse_args()
    spec_env()
    addons_link()
    db = args.db or "%s_%d" % (args.db_prefix, int(time.time()))
    created = not args.db
    if created:
        create_db(args, db)
    sandbox_proc = SandboxProcess(args.sandbox_port or free_port())
    ok = False
    try:
        sys.path.insert(0, args.odoo)
        import odoo
        from odoo import SUPERUSER_ID, api
        from odoo.modules.registry import Registry

        odoo.tools.config.parse_config(odoo_args(args, db))
        registry = Registry(db)
        # the harness lives with the tests: importing Odoo's test framework outside a test run is intended here
        logging.getLogger("odoo.tests.common").setLevel(logging.CRITICAL)
        from odoo.addons.l10n_pl_ksef.tests.common import SandboxAdmin
        from odoo.addons.l10n_pl_ksef.tests.ksef_chaos import ChaosRun, odoo_cli_args

        def env_factory(cr, company=None):
            return api.Environment(cr, SUPERUSER_ID, {'allowed_company_ids': company.ids} if company else {})

        run = ChaosRun(registry, env_factory, SandboxAdmin(sandbox_proc.url), odoo_cli_args(odoo.tools.config),
                       count=args.count, chaos_seconds=args.chaos_seconds, workers=parse_workers(args.workers),
                       kill_every=tuple(args.kill_every), targeted_every=args.targeted_every,
                       batch_threshold=args.batch_threshold, wave_size=tuple(args.wave_size), seed=args.seed,
                       recovery_timeout=args.recovery_timeout, verbose=args.verbose)
        try:
            result = run.run()
        finally:
            run.teardown()
        report(result, args)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(result, fh, indent=1, ensure_ascii=False, default=str)
        ok = (result["lost"] == 0 and result["duplicates_in_ksef"] == 0 and result["missing_upo"] == 0
              and result["mismatched"] == 0 and result["accepted"] == result["invoices"])
    finally:
        sandbox_proc.close()
        if created and not args.keep_db:
            drop_db(db)
        elif created:
            print("kept database %s" % db)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
