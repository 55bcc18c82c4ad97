"""Benchmark: the Odoo sending jobs of l10n_pl_ksef against a sandbox with PRODUCTION rate limits.

In a throwaway database (created with ``-i l10n_pl_ksef --without-demo=all``, dropped at the end unless
``--keep-db``) it sets up a Polish company (chart ``pl``) logged in to a sandbox subprocess that applies
the official production rate limits, then for each count in ``--counts`` (default 100 1000):

1. creates and posts that many invoices (not measured: that is Odoo's own work),
2. queues them with the list action ("Send to KSeF", background: XML built by the job),
3. runs the send job until the queue is empty (above the company's batch threshold: one batch session),
4. runs the status job until every invoice is accepted (UPO downloaded, history and chatter written).

Each count uses a fresh seller NIP (fresh KSeF rate budget). Printed per phase: wall time, SQL queries
(``odoo.sql_db.sql_counter``) and queries per invoice — constant per invoice means no N+1 —, growth of
the worker's peak RSS (``ru_maxrss``; ``--tracemalloc`` adds the Python heap peak), KSeF API calls
made (client-side rate budget counters) and the time spent waiting for KSeF's limits.

``--online-count N`` (default 40, 0 skips) also sends N invoices through an online session (batch
threshold raised above N): with production limits (30 invoices/min, 180/h per context) that run is
bounded by KSeF, which the "waited for KSeF" column shows.

    .venv/bin/python bench/odoo_send.py [--counts 100 1000] [--online-count 40] [--keep-db]
        [--odoo /opt/odoo] [--db NAME] [--sandbox-url http://127.0.0.1:PORT]
"""
import argparse
import datetime
import math
import os
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc

import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def addons_link():
    """The repository exposed as an addon named l10n_pl_ksef (as tools/test does)."""
    directory = ROOT / ".cache" / "addons"
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "l10n_pl_ksef"
    if not link.exists():
        link.symlink_to(ROOT)
    return directory


def spec_env():
    env = dict(os.environ)
    spec = pathlib.Path(env.get("KSEF_SPEC_DIR") or ROOT.parent / "shared" / "ksef-spec")
    if not env.get("KSEF_SCHEMA_DIR") and (spec / "schemas").is_dir():
        env["KSEF_SCHEMA_DIR"] = str(spec / "schemas")
    os.environ.update({k: v for k, v in env.items() if k == "KSEF_SCHEMA_DIR"})
    return env


class Sandbox:
    def __init__(self, url=None):
        self.proc = self.tmp = None
        if url:
            self.url = url.rstrip("/")
            return
        self.tmp = tempfile.TemporaryDirectory(prefix="ksef-odoo-bench-")
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        env = dict(spec_env(), PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ksef", "sandbox", "--port", str(port), "--data-dir", self.tmp.name,
             "--rate-limits", "production"],
            cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                requests.get(self.url + "/latarnia/status", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise SystemExit("the sandbox did not start")

    def token(self, nip):
        resp = requests.post(self.url + "/_sandbox/tokens", timeout=30, json={
            "nip": nip, "permissions": ["InvoiceRead", "InvoiceWrite"], "description": "odoo bench"})
        resp.raise_for_status()
        return resp.json()["token"]

    def count(self, nip):
        return requests.get(self.url + "/_sandbox/invoices", params={"sellerNip": nip}, timeout=60).json()["count"]

    def close(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if self.tmp:
            self.tmp.cleanup()


def odoo_args(args, db):
    return ["--addons-path=%s/odoo/addons,%s" % (args.odoo, addons_link()), "--db_host=%s" % args.pg_host,
            "--db_user=%s" % args.pg_user, "--db_password=%s" % args.pg_password, "-d", db,
            "--data-dir=%s" % (ROOT / ".cache" / "bench-data"), "--log-level=warn", "--max-cron-threads=0"]


def create_db(args, db):
    print("installing l10n_pl_ksef into throwaway database %s ..." % db, flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "%s/odoo-bin" % args.odoo, *odoo_args(args, db), "-i", "l10n_pl_ksef",
                    "--without-demo=all", "--stop-after-init"], check=True, env=spec_env(), cwd=str(ROOT),
                   stdout=subprocess.DEVNULL)
    print("  installed in %.0f s" % (time.monotonic() - started), flush=True)


def drop_db(db):
    import odoo
    from odoo.modules.registry import Registry

    Registry.delete(db)
    odoo.sql_db.close_db(db)
    odoo.service.db.exp_drop(db)


def random_nip():
    import random

    from ksef.numbers import nip_check_digit
    while True:
        first9 = "%d%08d" % (random.randint(1, 9), random.randint(0, 99999999))
        digit = nip_check_digit(first9)
        if first9[1:3] != "00" and digit is not None:
            return first9 + str(digit)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Bench:
    def __init__(self, args, db, sandbox):
        sys.path.insert(0, args.odoo)
        import odoo
        from odoo.modules.registry import Registry

        odoo.tools.config.parse_config(odoo_args(args, db))
        self.odoo = odoo
        self.registry = Registry(db)
        self.sandbox = sandbox
        self.args = args
        from odoo.addons.l10n_pl_ksef.ksef.client import ratelimit
        self.limiter = ratelimit.default_rate_limiter()

    def env(self, cr, company=None):
        from odoo import SUPERUSER_ID, api
        ctx = {'allowed_company_ids': [company]} if company else {}
        return api.Environment(cr, SUPERUSER_ID, ctx)

    def setup_company(self):
        with self.registry.cursor() as cr:
            env = self.env(cr)
            company = env['res.company'].search([('name', '=', "KSeF Bench Sp. z o.o.")], limit=1)
            if not company:
                # chart_template_load: no automatic installation of more l10n modules for the country
                company = env['res.company'].with_context(chart_template_load=True).create({
                    'name': "KSeF Bench Sp. z o.o.", 'country_id': env.ref('base.pl').id,
                    'currency_id': env.ref('base.PLN').id, 'street': "ul. Wydajna 1", 'zip': "00-001",
                    'city': "Warszawa"})
                env['account.chart.template'].try_loading('pl', company=company, install_demo=False)
            env = self.env(cr, company.id)
            buyer = env['res.partner'].with_context(no_vat_validation=True).create({
                'name': "Odbiorca Testowy Sp. z o.o.", 'is_company': True, 'vat': 'PL%s' % random_nip(),
                'country_id': env.ref('base.pl').id, 'street': "ul. Kupiecka 1", 'zip': "30-001",
                'city': "Kraków"})
            self.company_id, self.buyer_id = company.id, buyer.id
            self.tax_id = env['account.tax'].search([('company_id', '=', company.id), ('type_tax_use', '=', 'sale'),
                                                     ('ksef_rate_code', '=', '23')], limit=1).id

    def new_seller(self, threshold):
        """A fresh NIP + token for the company: a fresh KSeF context and rate budget."""
        nip = random_nip()
        with self.registry.cursor() as cr:
            env = self.env(cr, self.company_id)
            company = env['res.company'].browse(self.company_id)
            company.write({'vat': 'PL%s' % nip})
            company.sudo().write({'ksef_environment': 'sandbox', 'ksef_sandbox_url': self.sandbox.url,
                                  'ksef_context_nip': nip, 'ksef_auth_method': 'token',
                                  'ksef_token': self.sandbox.token(nip), 'ksef_batch_threshold': threshold})
            cr.commit()
            company._ksef_get_client(authenticate=True)
        return nip

    def create_invoices(self, count):
        from odoo import fields
        ids = []
        today = datetime.date.today()
        for start in range(0, count, 100):
            with self.registry.cursor() as cr:
                env = self.env(cr, self.company_id)
                moves = env['account.move'].create([{
                    'move_type': 'out_invoice', 'partner_id': self.buyer_id, 'invoice_date': today,
                    'company_id': self.company_id,
                    'invoice_line_ids': [fields.Command.create({
                        'name': "Usługa transportowa %d" % (start + i), 'quantity': 1 + (i % 3),
                        'price_unit': 100 + i, 'tax_ids': [fields.Command.set([self.tax_id])]})],
                } for i in range(min(100, count - start))])
                moves.action_post()
                ids += moves.ids
        return ids

    def measure(self, name, count, body):
        sql_db = self.odoo.sql_db
        if self.args.tracemalloc:
            tracemalloc.start()
        rss0 = rss_mb()
        queries0 = sql_db.sql_counter
        waited0 = self.limiter.waited_total
        calls0 = sum(self.limiter.acquired.values())
        started = time.monotonic()
        body()
        wall = time.monotonic() - started
        queries = sql_db.sql_counter - queries0
        row = {
            'phase': name, 'n': count, 'wall': wall, 'queries': queries, 'per_invoice': queries / count,
            'rss_growth': rss_mb() - rss0, 'rss_peak': rss_mb(),
            'waited': self.limiter.waited_total - waited0, 'calls': sum(self.limiter.acquired.values()) - calls0,
        }
        if self.args.tracemalloc:
            row['heap_peak'] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        print("  %-7s %5d invoices  %7.1f s  %7d queries  %6.1f queries/invoice  KSeF calls %4d  "
              "waited for KSeF %6.1f s  peak RSS %6.0f MB (+%.0f)%s" % (
                  name, count, wall, queries, row['per_invoice'], row['calls'], row['waited'], row['rss_peak'],
                  row['rss_growth'], ("  heap peak %.0f MB" % row['heap_peak']) if 'heap_peak' in row else ""),
              flush=True)
        return row

    def run_count(self, count, threshold):
        nip = self.new_seller(threshold)
        print("\n%d invoices (batch threshold %d, seller NIP %s)" % (count, threshold, nip), flush=True)
        t0 = time.monotonic()
        ids = self.create_invoices(count)
        print("  created and posted in %.1f s (not measured)" % (time.monotonic() - t0), flush=True)
        rows = []

        def queue():
            with self.registry.cursor() as cr:
                env = self.env(cr, self.company_id)
                env['account.move'].browse(ids)._ksef_enqueue(background=True)

        def count_state(states):
            with self.registry.cursor() as cr:
                return self.env(cr)['account.move'].search_count([('id', 'in', ids), ('ksef_state', 'in', states)])

        def send():
            while True:
                with self.registry.cursor() as cr:
                    self.env(cr)['account.move']._cron_ksef_send()
                if not count_state(['to_send']):
                    return
                time.sleep(0.5)       # next_attempt after a rate-limit answer; the cron would be triggered

        def status():
            idle = 0
            while count_state(['sending']):
                with self.registry.cursor() as cr:
                    self.env(cr)['account.move']._cron_ksef_update_status()
                idle += 1
                if count_state(['sending']):
                    time.sleep(min(2.0, 0.2 * idle))

        rows.append(self.measure("queue", count, queue))
        rows.append(self.measure("send", count, send))
        rows.append(self.measure("status", count, status))
        with self.registry.cursor() as cr:
            env = self.env(cr)
            moves = env['account.move'].browse(ids)
            accepted = len(moves.filtered(lambda m: m.ksef_state == 'accepted' and m.ksef_number and m.ksef_upo_file))
            sessions = ", ".join("%s %s" % (s.kind, s.name) for s in moves.ksef_session_id)
        stored = self.sandbox.count(nip)
        print("  -> accepted with UPO: %d/%d, stored in KSeF: %d, sessions: %s" % (
            accepted, count, stored, sessions), flush=True)
        total = sum(r['wall'] for r in rows)
        print("  total %.1f s for %d invoices (%.0f invoices/min)" % (total, count, 60 * count / max(total, 0.001)))
        return rows, accepted == count == stored


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--online-count", type=int, default=40)
    parser.add_argument("--threshold", type=int, default=50, help="batch threshold of the company")
    parser.add_argument("--odoo", default=os.environ.get("ODOO_SRC", "/opt/odoo"))
    parser.add_argument("--db", help="database to use (default: a new throwaway one)")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--sandbox-url")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slower)")
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", "odoo"))
    parser.add_argument("--pg-password", default=os.environ.get("PGPASSWORD", "odoo"))
    args = parser.parse_args()
    spec_env()
    db = args.db or "ksef_bench_%d" % int(time.time())
    created = not args.db
    if created:
        create_db(args, db)
    sandbox = Sandbox(args.sandbox_url)
    ok = True
    try:
        bench = Bench(args, db, sandbox)
        bench.setup_company()
        results = []
        for count in args.counts:
            rows, good = bench.run_count(count, args.threshold)
            results += rows
            ok = ok and good
        if args.online_count:
            rows, good = bench.run_count(args.online_count, args.online_count + 1)
            ok = ok and good
            bound = max(0, math.ceil(args.online_count / 30.0) - 1) * 60
            print("  (online sessions: KSeF allows 30 invoices per sliding minute and 180/h per context, so %d "
                  "invoices need at least %.0f s)" % (args.online_count, bound))
        by_phase = {}
        for row in results:
            by_phase.setdefault(row['phase'], []).append(row)
        print("\nqueries per invoice by phase (constant = no N+1):")
        for phase, rows in by_phase.items():
            print("  %-7s %s" % (phase, "   ".join("n=%d: %.1f" % (r['n'], r['per_invoice']) for r in rows)))
    finally:
        sandbox.close()
        if created and not args.keep_db:
            drop_db(db)
        elif created:
            print("kept database %s" % db)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
