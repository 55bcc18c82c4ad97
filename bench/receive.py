"""Benchmark: receiving purchase invoices from a local sandbox with PRODUCTION rate limits.

Seeds ``--count`` (default 10,000) purchase invoices addressed to one buyer NIP, then syncs them

* with the incremental sync on async exports (encrypted packages, ``PermanentStorage`` + HWM): measured
  in full (wall time, API calls, 429s, peak memory);
* with metadata queries + one ``GET /invoices/ksef/{n}`` per invoice: production limits allow 64
  downloads and 20 metadata pages per hour per context, so only ``--sample`` downloads are measured
  and the full run is EXTRAPOLATED (clearly labelled) from the rate limits.

    .venv/bin/python bench/receive.py [--count 10000] [--sample 20] [--url http://127.0.0.1:PORT]
"""
import argparse
import datetime
import os
import pathlib
import resource
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send import Sandbox, fmt_duration, random_nip  # noqa: E402

from ksef.client import IncrementalSync, KsefClient, KsefTokenCredential, Poller, RateLimiter  # noqa: E402
from ksef.client.keys import PublicKeyCache  # noqa: E402
from ksef.client.ratelimit import PRODUCTION_LIMITS  # noqa: E402
from ksef.client.receive import build_filters, download_invoice, query_invoice_metadata  # noqa: E402


def bound_seconds(count, group):
    """Earliest time of the ``count``-th request of ``group`` under the three sliding windows."""
    limits = PRODUCTION_LIMITS[group]
    times = []
    for k in range(count):
        t = 0.0
        for window, limit in ((1.0, limits[0]), (60.0, limits[1]), (3600.0, limits[2])):
            if limit and k >= limit:
                t = max(t, times[k - limit] + window)
        times.append(t)
    return times[-1] if times else 0.0


def make_client(sandbox, nip):
    token = sandbox.admin("POST", "/tokens", {"nip": nip, "permissions": ["InvoiceRead"],
                                              "description": "bench receive"})["token"]
    client = KsefClient(sandbox.url, nip=nip, credential=KsefTokenCredential(token), rate_limiter=RateLimiter(),
                        max_rate_wait=7200, poller=Poller(0.2, 2.0), public_key_cache=PublicKeyCache())
    client.authenticate()
    return client


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10000, help="purchase invoices to seed and sync")
    parser.add_argument("--sample", type=int, default=20, help="per-invoice downloads actually measured")
    parser.add_argument("--url", help="use a running sandbox (started with production limits) instead")
    args = parser.parse_args(argv)
    sandbox = Sandbox(args.url)
    try:
        nip = random_nip(int(time.time()) % 100000)
        print("sandbox %s, rate limits: %s; machine: %d CPU(s)" % (
            sandbox.url, sandbox.admin("GET", "/").get("rateLimits"), os.cpu_count() or 0))
        started = time.perf_counter()
        remaining = args.count
        while remaining:
            chunk = min(remaining, 2000)
            sandbox.admin("POST", "/seed", {"buyerNip": nip, "count": chunk})
            remaining -= chunk
        print("seeded %d purchase invoices for buyer %s in %s (sandbox side, not measured below)" % (
            args.count, nip, fmt_duration(time.perf_counter() - started)))
        time.sleep(2.0)                     # past the sandbox's HWM lag
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)

        # ---- export-based incremental sync (measured in full)
        client = make_client(sandbox, nip)
        calls0 = client.stats["calls"]
        rss0 = max_rss_mb()
        started = time.perf_counter()
        sync = IncrementalSync(client, "Subject2", start=start, mode="export")
        count = size = 0
        numbers = set()
        for invoice in sync.run():
            count += 1
            size += len(invoice.xml or b"")
            numbers.add(invoice.ksef_number)
        wall = time.perf_counter() - started
        print("export sync: %d invoices (%d unique, %.1f MB XML) in %s -> %.0f invoices/min; API calls %d "
              "(+%d pre-signed part downloads), exports %d, 429s %d; peak RSS %.0f MB (was %.0f MB before)" % (
                  count, len(numbers), size / 1e6, fmt_duration(wall), count / wall * 60,
                  client.stats["calls"] - calls0 - client.stats["calls:presigned"], client.stats["calls:presigned"],
                  sync.stats["exports"], client.stats["429"], max_rss_mb(), rss0))

        # ---- metadata query + per-invoice download (sample, then extrapolation)
        client = make_client(sandbox, nip)
        calls0 = client.stats["calls"]
        started = time.perf_counter()
        filters = build_filters("Subject2", start, restrict_to_hwm=True)
        page = query_invoice_metadata(client, filters, page_size=250)
        downloaded = 0
        for meta in page["invoices"][:args.sample]:
            download_invoice(client, meta["ksefNumber"])
            downloaded += 1
        wall = time.perf_counter() - started
        print("per-invoice download SAMPLE: 1 metadata page + %d downloads in %s; API calls %d, 429s %d" % (
            downloaded, fmt_duration(wall), client.stats["calls"] - calls0, client.stats["429"]))
        pages = -(-args.count // 250)
        meta_bound = bound_seconds(pages, "invoiceMetadata")
        dl_bound = bound_seconds(args.count, "invoiceDownload")
        print("per-invoice download EXTRAPOLATED for %d invoices (production limits: metadata %s, download %s "
              "per s/min/h): >= %s for %d metadata pages, >= %s for the downloads (%.1f invoices/h); "
              "the sample's pace: %.1f invoices/min" % (
                  args.count, "/".join(map(str, PRODUCTION_LIMITS["invoiceMetadata"])),
                  "/".join(map(str, PRODUCTION_LIMITS["invoiceDownload"])), fmt_duration(meta_bound), pages,
                  fmt_duration(dl_bound), args.count / max(dl_bound, 1) * 3600, downloaded / wall * 60))
    finally:
        sandbox.close()


if __name__ == "__main__":
    main()
