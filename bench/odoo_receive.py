"""Benchmark: receiving purchase invoices in Odoo (KSeF inbox download and import as vendor bills).

In a throwaway database (``-i l10n_pl_ksef --without-demo=all``, dropped at the end unless ``--keep-db``) a
Polish company (chart ``pl``) is logged in to a sandbox subprocess that applies the official PRODUCTION rate
limits. The sandbox is seeded with ``--count`` (default 10 000) generated purchase invoices for the company's
NIP (VAT, KOR, ZAL, ROZ, UPR, EUR, self-billing; six sellers), then:

1. ``download``: the download job (incremental sync over the export endpoint) stores them in the KSeF inbox;
2. ``import``: ``--import-count`` (default 1 000) of them become draft vendor bills / credit notes with the
   one-click import (checks, vendor and bank account matching, tax mapping, XML attached); vendors and their
   bank accounts are created beforehand (not measured) so that every invoice passes the checks;
3. ``pdf``: the PDF visualisations (with the KOD I QR code) of the imported invoices are rendered (one
   wkhtmltopdf run per 50 invoices) and attached to the bills.

Printed per phase: wall time, SQL queries (``odoo.sql_db.sql_counter``) and queries per invoice, KSeF API
calls (client counters: the export endpoint means tens of calls, not one per invoice), growth of the
process peak RSS (``ru_maxrss``) and, with ``--tracemalloc``, the Python heap peak.

    .venv/bin/python bench/odoo_receive.py [--count 10000] [--import-count 1000] [--pdf-count N] [--keep-db]
        [--db NAME]
        [--odoo /opt/odoo] [--sandbox-url http://127.0.0.1:PORT] [--tracemalloc]

Note: Debian's wkhtmltopdf (unpatched Qt) cannot render several documents in one run; the visualisations
are then rendered one run per invoice (about 1.5 s each on 2 cores), which dominates the ``pdf`` phase.
"""
import argparse
import datetime
import os
import pathlib
import subprocess
import sys
import time
import tracemalloc

import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from odoo_send import Sandbox as SendBenchSandbox  # noqa: E402
from odoo_send import create_db, drop_db, free_port, odoo_args, random_nip, rss_mb  # noqa: E402


class Sandbox(SendBenchSandbox):
    """The bench sandbox (production rate limits, or an existing one at ``url``) with seeding."""

    def __init__(self, url=None):
        super().__init__(url)
        if self.proc:
            # seeded invoices are below the permanent-storage high-water mark at once
            requests.post(self.url + "/_sandbox/config", json={"hwm_lag": 0.0}, timeout=30).raise_for_status()

    def admin(self, method, path, **kw):
        resp = requests.request(method, self.url + "/_sandbox" + path, timeout=3600, **kw)
        resp.raise_for_status()
        return resp.json()

    def token(self, nip):
        return self.admin("POST", "/tokens", json={"nip": nip, "permissions": ["InvoiceRead", "InvoiceWrite"],
                                                  "description": "odoo receive bench"})["token"]

    def seed(self, nip, count):
        numbers = []
        for start in range(0, count, 2000):
            numbers += self.admin("POST", "/seed", json={"buyerNip": nip, "count": min(2000, count - start),
                                                        "seed": start})["ksefNumbers"]
        return numbers


class Bench:
    def __init__(self, args, db, sandbox):
        self.db = db
        sys.path.insert(0, args.odoo)
        import odoo
        from odoo.modules.registry import Registry

        odoo.tools.config.parse_config(odoo_args(args, db))
        self.odoo = odoo
        self.registry = Registry(db)
        self.sandbox = sandbox
        self.args = args

    def env(self, cr, company=None):
        from odoo import SUPERUSER_ID, api
        return api.Environment(cr, SUPERUSER_ID, {'allowed_company_ids': [company]} if company else {})

    def setup_company(self):
        self.nip = random_nip()
        with self.registry.cursor() as cr:
            env = self.env(cr)
            company = env['res.company'].with_context(chart_template_load=True).create({
                'name': "KSeF Odbiorca Sp. z o.o.", 'country_id': env.ref('base.pl').id,
                'currency_id': env.ref('base.PLN').id, 'vat': 'PL%s' % self.nip})
            env['account.chart.template'].try_loading('pl', company=company, install_demo=False)
            company.sudo().write({'ksef_environment': 'sandbox', 'ksef_sandbox_url': self.sandbox.url,
                                  'ksef_context_nip': self.nip, 'ksef_auth_method': 'token',
                                  'ksef_token': self.sandbox.token(self.nip)})
            sync = env['l10n_pl_ksef.inbox_sync']._ksef_for_companies(company)
            sync.start_date = datetime.datetime.now() - datetime.timedelta(days=10)
            self.company_id, self.sync_id = company.id, sync.id

    def measure(self, name, count, body, calls=None):
        sql_db = self.odoo.sql_db
        if self.args.tracemalloc:
            tracemalloc.start()
        rss0 = rss_mb()
        queries0 = sql_db.sql_counter
        started = time.monotonic()
        extra = body() or {}
        wall = time.monotonic() - started
        queries = sql_db.sql_counter - queries0
        heap = ""
        if self.args.tracemalloc:
            heap = "  heap peak %.0f MB" % (tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
        print("  %-9s %6d invoices  %8.1f s  %8d queries  %5.1f queries/invoice  %s  peak RSS %5.0f MB (+%.0f)%s" % (
            name, count, wall, queries, queries / max(count, 1),
            ("KSeF calls %4d" % extra['calls']) if 'calls' in extra else "              ",
            rss_mb(), rss_mb() - rss0, heap), flush=True)
        for key, value in extra.items():
            if key != 'calls':
                print("            %s: %s" % (key, value), flush=True)

    def download(self):
        with self.registry.cursor() as cr:
            env = self.env(cr, self.company_id)
            sync = env['l10n_pl_ksef.inbox_sync'].browse(self.sync_id)
            client = env['res.company'].browse(self.company_id)._ksef_get_client()
            new = 0
            runs = 0
            while True:           # what successive cron runs do until caught up with the HWM
                runs += 1
                new += sync._ksef_download('buyer', client=client)
                if sync.state != 'pending' or runs > 20:
                    break
            stats = dict(client.stats)
            client.close()
            return {'calls': stats.get('calls', 0), 'stored in inbox': new, 'cron runs': runs,
                    'calls by endpoint': {k[6:]: v for k, v in sorted(stats.items()) if k.startswith('calls:')},
                    'status': sync.state}

    def prepare_import(self, count):
        """Vendors and their bank accounts (like an accountant who set them up once); not measured."""
        with self.registry.cursor() as cr:
            env = self.env(cr, self.company_id)
            records = env['l10n_pl_ksef.inbox'].search([('company_id', '=', self.company_id),
                                                        ('state', '=', 'new'), ('is_supported', '=', True)],
                                                       order='id', limit=count)
            partners = {}
            for record in records:
                partner = partners.get(record.seller_nip)
                if not partner:
                    partner = env['res.partner'].create({'name': record.seller_name, 'is_company': True,
                                                         'vat': 'PL%s' % record.seller_nip,
                                                         'country_id': env.ref('base.pl').id})
                    partners[record.seller_nip] = partner
                if record.bank_account_number:
                    env['res.partner.bank'].create({'partner_id': partner.id,
                                                    'acc_number': 'PL%s' % record.bank_account_number})
            return records.ids

    def import_bills(self, ids):
        done_ids, skipped = [], 0
        for start in range(0, len(ids), 100):
            with self.registry.cursor() as cr:
                env = self.env(cr, self.company_id)
                done, skip = env['l10n_pl_ksef.inbox'].browse(ids[start:start + 100])._ksef_import_ready(
                    render_pdf=False)
                done_ids += done.ids
                skipped += len(skip)
        self.imported = done_ids
        with self.registry.cursor() as cr:
            env = self.env(cr, self.company_id)
            moves = env['l10n_pl_ksef.inbox'].browse(done_ids).move_id
            kinds = {t: n for t, n in env['account.move']._read_group(
                [('id', 'in', moves.ids)], ['move_type'], ['__count'])}
        return {'imported': len(done_ids), 'skipped': skipped, 'bills / credit notes': kinds}

    def start_http(self):
        """wkhtmltopdf loads the report styles over HTTP, as in production: run the Odoo server."""
        port = free_port()
        self.http = subprocess.Popen(
            [sys.executable, "%s/odoo-bin" % self.args.odoo, *odoo_args(self.args, self.db),
             "--http-interface=127.0.0.1", "--http-port=%d" % port, "--gevent-port=%d" % free_port(),
             "--db-filter=^%s$" % self.db, "--logfile=%s" % (ROOT / ".cache" / "logs" / "bench-receive-http.log")],
            cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = "http://127.0.0.1:%d" % port
        for _ in range(300):
            try:
                requests.get(url + "/web/login", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        with self.registry.cursor() as cr:
            self.env(cr)['ir.config_parameter'].set_param('report.url', url)
        return url

    def stop_http(self):
        if getattr(self, 'http', None):
            self.http.terminate()
            self.http.wait(timeout=60)

    def render_pdfs(self):
        for start in range(0, len(self.imported), 100):
            with self.registry.cursor() as cr:
                env = self.env(cr, self.company_id)
                env['l10n_pl_ksef.inbox'].browse(self.imported[start:start + 100])._ksef_attach_pdfs()
        with self.registry.cursor() as cr:
            env = self.env(cr, self.company_id)
            moves = env['l10n_pl_ksef.inbox'].browse(self.imported).move_id
            pdfs = env['ir.attachment'].search_count([('res_model', '=', 'account.move'), ('res_id', 'in', moves.ids),
                                                      ('mimetype', '=', 'application/pdf')])
        return {'PDFs attached': pdfs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--import-count", type=int, default=1000)
    parser.add_argument("--pdf-count", type=int, default=None,
                        help="render the visualisation of this many imported invoices (default: all)")
    parser.add_argument("--odoo", default=os.environ.get("ODOO_SRC", "/opt/odoo"))
    parser.add_argument("--db", help="database to use (default: a new throwaway one)")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--sandbox-url")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", "odoo"))
    parser.add_argument("--pg-password", default=os.environ.get("PGPASSWORD", "odoo"))
    args = parser.parse_args()
    db = args.db or "ksef_receive_bench_%d" % int(time.time())
    created = not args.db
    if created:
        create_db(args, db)
    sandbox = Sandbox(args.sandbox_url)
    try:
        bench = Bench(args, db, sandbox)
        bench.setup_company()
        started = time.monotonic()
        seeded = sandbox.seed(bench.nip, args.count)
        print("seeded %d purchase invoices for NIP %s in %.0f s (not measured)" % (
            len(seeded), bench.nip, time.monotonic() - started), flush=True)
        bench.measure("download", args.count, bench.download)
        ids = bench.prepare_import(args.import_count)
        if not ids:
            return
        bench.measure("import", len(ids), lambda: bench.import_bills(ids))
        if args.pdf_count is not None:
            bench.imported = bench.imported[:args.pdf_count]
        bench.start_http()
        try:
            bench.measure("pdf", len(bench.imported), bench.render_pdfs)
        finally:
            bench.stop_http()
    finally:
        sandbox.close()
        if created and not args.keep_db:
            drop_db(db)
        elif created:
            print("kept database %s" % db)


if __name__ == "__main__":
    main()
