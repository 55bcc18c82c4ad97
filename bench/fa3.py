"""FA(3) engine benchmark: build + validate invoices of 1, 100 and 5,000 lines; parse 1,000 invoices.

Run: ``KSEF_SCHEMA_DIR=../shared/ksef-spec/schemas .venv/bin/python bench/fa3.py`` (from the repo root).
Targets: a 100-line invoice builds and validates in < 20 ms once the schema is loaded; 5,000 lines < 1 s.

Times are taken without tracing; peak memory is measured in a separate run with :mod:`tracemalloc`
(Python allocations only: libxml2's own buffers are not seen by tracemalloc, so the process RSS growth is
printed too).
"""
import datetime
import gc
import os
import pathlib
import resource
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from ksef import fa3, schemas

TODAY = datetime.date(2026, 3, 2)


def _timed(func, repeat):
    times = []
    result = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, min(times) * 1000, result


def _peak(func):
    gc.collect()
    tracemalloc.start()
    try:
        func()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_build_validate():
    print("build + validate (fa3.build_and_validate: build once, XSD, business rules)")
    print("%7s %9s %10s %10s %10s %10s %12s %12s" % ("lines", "bytes", "build ms", "xsd+rules", "total ms",
                                                      "min ms", "peak MiB", "peak/line KiB"))
    results = {}
    for lines, repeat in ((1, 50), (100, 30), (5000, 5)):
        invoice = fa3.example_invoice(lines=lines, issue_date=TODAY)
        build_ms, _m, data = _timed(lambda inv=invoice: fa3.build(inv), repeat)
        total_ms, total_min, (out, issues) = _timed(
            lambda inv=invoice: fa3.build_and_validate(inv, today=TODAY), repeat)
        errors = [i for i in issues if i.severity == "error"]
        # a 5,000-line invoice exceeds KSeF's 1 MB limit: that is the only expected error
        assert all(i.code == "file_too_large" for i in errors), errors[:3]
        assert out == data
        peak = _peak(lambda inv=invoice: fa3.build_and_validate(inv, today=TODAY))
        results[lines] = (total_ms, peak)
        print("%7d %9d %10.2f %10.2f %10.2f %10.2f %12.2f %12.2f" % (
            lines, len(data), build_ms, total_ms - build_ms, total_ms, total_min, peak / 2**20,
            peak / lines / 1024))
    per_line_100 = results[100][1] / 100
    per_line_5000 = results[5000][1] / 5000
    ratio = per_line_5000 / per_line_100
    print("memory per line: 100 lines %.1f KiB, 5,000 lines %.1f KiB (ratio %.2f) -> %s" % (
        per_line_100 / 1024, per_line_5000 / 1024, ratio,
        "linear (no super-linear growth)" if ratio < 1.5 else "SUPER-LINEAR"))
    print("targets: 100 lines %.1f ms (< 20 ms: %s), 5,000 lines %.1f ms (< 1000 ms: %s)" % (
        results[100][0], "OK" if results[100][0] < 20 else "MISSED",
        results[5000][0], "OK" if results[5000][0] < 1000 else "MISSED"))
    return results


def bench_parse():
    print()
    print("parse 1,000 invoices (10 lines each, all different)")
    docs = [fa3.build(fa3.example_invoice(lines=10, number="FV/%04d" % i, issue_date=TODAY)) for i in range(1000)]
    gc.collect()
    start = time.perf_counter()
    parsed = [fa3.parse(d) for d in docs]
    elapsed = time.perf_counter() - start
    assert len(parsed) == 1000 and parsed[7].fa.p_2 == "FV/0007"
    del parsed
    peak = _peak(lambda: [fa3.parse(d) for d in docs[:200]])
    print("  %.3f ms per invoice (%.0f ms total); peak %.2f MiB for 200 parsed models kept in memory "
          "(%.1f KiB per model)" % (elapsed, elapsed * 1000, peak / 2**20, peak / 200 / 1024))
    spec = pathlib.Path(os.environ.get("KSEF_SPEC_DIR") or pathlib.Path(__file__).resolve().parents[2]
                        / "shared" / "ksef-spec")
    samples = sorted((spec / "samples" / "fa3" / "mf-examples").glob("*.xml"))
    if samples:
        blobs = [p.read_bytes() for p in samples]
        count = 0
        start = time.perf_counter()
        while count < 1000:
            for blob in blobs:
                fa3.parse(blob)
                count += 1
        elapsed = time.perf_counter() - start
        print("  MF examples (26 files, cycled): %.3f ms per invoice over %d parses" % (elapsed * 1000 / count,
                                                                                        count))


def main():
    start = time.perf_counter()
    schemas.get_schema("FA3")
    print("schema load + compile: %.1f ms (once per process)" % ((time.perf_counter() - start) * 1000))
    print()
    bench_build_validate()
    bench_parse()
    print()
    print("process max RSS: %.1f MiB" % _rss_mb())


if __name__ == "__main__":
    main()
