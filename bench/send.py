"""Benchmark: sending FA(3) invoices to a local sandbox with PRODUCTION rate limits.

Starts ``python -m ksef sandbox`` in a subprocess (production limits), generates invoices with
``ksef.fa3`` and sends them

* through batch sessions (zip, encrypted parts, pre-signed upload): ``--counts`` (default 1000 10000);
* through an online session: with production limits a context may send 180 invoices per hour
  (10/s, 30/min, 180/h), so the full counts would take hours — the theoretical bound is printed and a
  smaller run of ``--online-count`` invoices is measured (``--online-count 0`` skips it).

Prints wall time, invoices/min, API calls made and 429s received (target: 0). Target: 10,000 invoices
accepted in under 10 minutes via batch.

    .venv/bin/python bench/send.py [--counts 1000 10000] [--online-count 40] [--url http://127.0.0.1:PORT]
"""
import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ksef.client import KsefClient, KsefTokenCredential, Poller, RateLimiter  # noqa: E402
from ksef.client.keys import PublicKeyCache  # noqa: E402
from ksef.client.ratelimit import PRODUCTION_LIMITS  # noqa: E402
from ksef.client.sessions import send_online  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sandbox:
    """A sandbox subprocess (or an already running one given by URL)."""

    def __init__(self, url=None, rate_limits="production"):
        self.proc = None
        self.tmp = None
        if url:
            self.url = url.rstrip("/")
            return
        self.tmp = tempfile.TemporaryDirectory(prefix="ksef-bench-")
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        spec = pathlib.Path(os.environ.get("KSEF_SPEC_DIR") or ROOT.parent / "shared" / "ksef-spec")
        if not env.get("KSEF_SCHEMA_DIR") and (spec / "schemas").is_dir():
            env["KSEF_SCHEMA_DIR"] = str(spec / "schemas")     # local XSDs: no download attempts
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ksef", "sandbox", "--port", str(port), "--data-dir", self.tmp.name,
             "--rate-limits", rate_limits],
            cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                requests.get(self.url + "/_sandbox/", timeout=2)
                return
            except requests.RequestException:
                if self.proc.poll() is not None:
                    raise RuntimeError("sandbox failed: %s" % self.proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.2)
        raise RuntimeError("sandbox did not start")

    def admin(self, method, path, payload=None):
        resp = requests.request(method, self.url + "/_sandbox" + path, json=payload, timeout=3600)
        resp.raise_for_status()
        return resp.json()

    def close(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.tmp is not None:
            self.tmp.cleanup()


def random_nip(seed):
    from ksef.numbers import nip_check_digit
    n = 100000 + seed
    while True:
        first9 = "5%08d" % n
        digit = nip_check_digit(first9)
        if digit is not None and first9[1:3] != "00":
            return first9 + str(digit)
        n += 1


def generate(nip, count, prefix):
    from ksef import fa3
    from ksef.fa3.examples import example_invoice
    started = time.perf_counter()
    out = [fa3.build(example_invoice(seller_nip=nip, number="%s/%06d" % (prefix, i), lines=2))
           for i in range(count)]
    return out, time.perf_counter() - started


def make_client(sandbox, nip, limiter):
    token = sandbox.admin("POST", "/tokens", {"nip": nip, "permissions": ["InvoiceRead", "InvoiceWrite"],
                                              "description": "bench token"})["token"]
    client = KsefClient(sandbox.url, nip=nip, credential=KsefTokenCredential(token), rate_limiter=limiter,
                        max_rate_wait=7200, poller=Poller(0.2, 2.0), public_key_cache=PublicKeyCache())
    client.authenticate()
    return client


def online_bound_seconds(count):
    """Earliest time of the last send when requests go out as fast as the three sliding windows allow."""
    per_s, per_min, per_h = PRODUCTION_LIMITS["invoiceSend"]
    times = []
    for k in range(count):
        t = 0.0
        for window, limit in ((1.0, per_s), (60.0, per_min), (3600.0, per_h)):
            if k >= limit:
                t = max(t, times[k - limit] + window)
        times.append(t)
    return times[-1] if times else 0.0


def fmt_duration(seconds):
    if seconds >= 3600:
        return "%.1f h" % (seconds / 3600)
    if seconds >= 60:
        return "%.1f min" % (seconds / 60)
    return "%.1f s" % seconds


def bench_batch(sandbox, count, seq):
    nip = random_nip(1000 + seq)
    limiter = RateLimiter()
    client = make_client(sandbox, nip, limiter)
    xmls, gen_s = generate(nip, count, "B%d" % seq)
    calls0 = client.stats["calls"]
    started = time.perf_counter()
    result = client.send_batch(xmls, timeout=3600)
    wall = time.perf_counter() - started
    accepted = len(result.accepted)
    print("batch  %6d invoices: %6d accepted, %d rejected in %s  -> %.0f invoices/min; API calls %d "
          "(+%d pre-signed uploads), 429s %d  [generation with ksef.fa3: %.1f s, not included]" % (
              count, accepted, len(result.rejected), fmt_duration(wall), accepted / wall * 60,
              client.stats["calls"] - calls0 - client.stats["calls:presigned"], client.stats["calls:presigned"],
              client.stats["429"], gen_s))
    return wall, accepted


def bench_online(sandbox, count):
    nip = random_nip(9000)
    limiter = RateLimiter()
    client = make_client(sandbox, nip, limiter)
    xmls, _gen = generate(nip, count, "O")
    calls0 = client.stats["calls"]
    started = time.perf_counter()
    _sessions, _sent, results = send_online(client, xmls, timeout=3600)
    wall = time.perf_counter() - started
    accepted = sum(1 for r in results.values() if r.is_success)
    print("online %6d invoices: %6d accepted in %s -> %.1f invoices/min; API calls %d, 429s %d; "
          "client waited %.1f s for the rate budget" % (
              count, accepted, fmt_duration(wall), accepted / wall * 60, client.stats["calls"] - calls0,
              client.stats["429"], limiter.waited_total))
    return wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000], help="batch sizes")
    parser.add_argument("--online-count", type=int, default=40, help="invoices actually sent online (0 = skip)")
    parser.add_argument("--url", help="use a running sandbox (started with production limits) instead")
    args = parser.parse_args(argv)
    sandbox = Sandbox(args.url)
    try:
        info = sandbox.admin("GET", "/")
        print("sandbox %s, rate limits: %s; machine: %d CPU(s)" % (sandbox.url, info.get("rateLimits"),
                                                                  os.cpu_count() or 0))
        per_s, per_min, per_h = PRODUCTION_LIMITS["invoiceSend"]
        for count in sorted(set([*args.counts, 1000, 10000])):
            print("online %6d invoices: theoretical bound with production limits (%d/s, %d/min, %d/h per "
                  "context): >= %s (%.1f invoices/min) — not run in full" % (
                      count, per_s, per_min, per_h, fmt_duration(online_bound_seconds(count)),
                      count / online_bound_seconds(count) * 60))
        if args.online_count:
            print("online: measuring %d invoices (bound %s)" % (args.online_count,
                                                                fmt_duration(online_bound_seconds(args.online_count))))
            bench_online(sandbox, args.online_count)
        for seq, count in enumerate(args.counts):
            wall, accepted = bench_batch(sandbox, count, seq)
            if count >= 10000:
                print("target 10,000 accepted via batch in < 10 min: %s (%s, %d accepted)" % (
                    "MET" if wall < 600 and accepted == count else "NOT MET", fmt_duration(wall), accepted))
    finally:
        sandbox.close()


if __name__ == "__main__":
    main()
