"""Fault injection of the sandbox (admin API ``/_sandbox/faults`` and CLI ``--fault``).

A fault is a dict::

    {"type": "latency" | "error" | "rate_limit" | "timeout_after_store" | "drop" | "malformed" | "slow_upo",
     "path": "<regex searched in the request path>"   (default: every API path),
     "method": "POST"                                  (optional),
     "probability": 1.0, "count": null (unlimited) or N,
     ...type specific: "seconds", "status", "retry_after", "mode", "when"}

* ``latency``: sleep ``seconds`` (default 2) before handling the request.
* ``error``: answer ``status`` (default 500; 502/503/504 ...) instead of handling the request
  (``"when": "after"`` handles and stores it first, then answers the error).
* ``rate_limit``: answer 429 with ``Retry-After: retry_after`` (default 1) without handling.
* ``timeout_after_store``: handle and store the request, then hold the connection ``seconds``
  (default 30) and close it without a response.
* ``drop``: close the connection without a response and without handling the request.
* ``malformed``: handle the request, then send a broken response: ``mode`` ``truncated_json``
  (default: body cut in half, Content-Length matching), ``wrong_content_type`` (an HTML page with
  ``text/html``) or ``short_body`` (Content-Length larger than the bytes sent).
* ``slow_upo``: UPOs (and ``upoDownloadUrl``) become available only ``seconds`` (default 10) after
  the KSeF number was assigned; takes effect globally while the fault is active.

The random generator is seeded (``seed`` in the POST body, default 0) for reproducible runs.
"""
import itertools
import random
import re
import threading

TYPES = ("latency", "error", "rate_limit", "timeout_after_store", "drop", "malformed", "slow_upo")
_DEFAULTS = {
    "latency": {"seconds": 2.0},
    "error": {"status": 500, "when": "before"},
    "rate_limit": {"retry_after": 1},
    "timeout_after_store": {"seconds": 30.0},
    "drop": {},
    "malformed": {"mode": "truncated_json"},
    "slow_upo": {"seconds": 10.0},
}
MALFORMED_MODES = ("truncated_json", "wrong_content_type", "short_body")


def parse_cli(spec):
    """``type[:key=value,...]`` e.g. ``error:status=503,path=/sessions,count=2``."""
    kind, _, rest = spec.partition(":")
    fault = {"type": kind.strip()}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("fault option %r must be key=value" % item)
        fault[key.strip()] = value.strip()
    return fault


def normalize(fault):
    if not isinstance(fault, dict):
        raise ValueError("a fault must be an object")
    kind = fault.get("type")
    if kind not in TYPES:
        raise ValueError("unknown fault type %r (one of %s)" % (kind, ", ".join(TYPES)))
    out = dict(_DEFAULTS[kind])
    out.update(fault)
    out["type"] = kind
    path = out.get("path") or ""
    try:
        re.compile(path)
    except re.error as exc:
        raise ValueError("bad path regex %r: %s" % (path, exc)) from None
    out["path"] = path
    out["method"] = (out.get("method") or "").upper() or None
    out["probability"] = float(out.get("probability", 1.0))
    if not 0 <= out["probability"] <= 1:
        raise ValueError("probability must be between 0 and 1")
    count = out.get("count")
    out["count"] = None if count in (None, "", "null") else int(count)
    for key in ("seconds",):
        if key in out:
            out[key] = float(out[key])
    for key in ("status", "retry_after"):
        if key in out:
            out[key] = int(out[key])
    if kind == "malformed" and out["mode"] not in MALFORMED_MODES:
        raise ValueError("malformed mode must be one of %s" % ", ".join(MALFORMED_MODES))
    if kind == "error" and not 400 <= out["status"] <= 599:
        raise ValueError("error status must be 4xx or 5xx")
    if kind == "error" and out.get("when") not in ("before", "after"):
        raise ValueError("error 'when' must be 'before' or 'after'")
    out.setdefault("hits", 0)
    return out


class FaultInjector:
    def __init__(self):
        self._lock = threading.Lock()
        self._faults = []
        self._ids = itertools.count(1)
        self._rng = random.Random(0)

    def add(self, faults, seed=None):
        normalized = [normalize(f) for f in faults]
        with self._lock:
            if seed is not None:
                self._rng = random.Random(seed)
            for fault in normalized:
                fault["id"] = next(self._ids)
                self._faults.append(fault)
        return normalized

    def clear(self, fault_id=None):
        with self._lock:
            if fault_id is None:
                self._faults = []
                self._rng = random.Random(0)
            else:
                self._faults = [f for f in self._faults if f["id"] != fault_id]

    def list(self):
        with self._lock:
            return [dict(f) for f in self._faults]

    def slow_upo_seconds(self):
        with self._lock:
            values = [f["seconds"] for f in self._faults if f["type"] == "slow_upo"
                      and (f["count"] is None or f["count"] > 0)]
        return max(values) if values else 0.0

    def pick(self, method, path):
        """Faults that fire for this request (consuming their counts), in definition order."""
        fired = []
        with self._lock:
            for fault in self._faults:
                if fault["type"] == "slow_upo":
                    continue
                if fault["count"] is not None and fault["count"] <= 0:
                    continue
                if fault["method"] and fault["method"] != method:
                    continue
                if fault["path"] and not re.search(fault["path"], path):
                    continue
                if fault["probability"] < 1 and self._rng.random() >= fault["probability"]:
                    continue
                if fault["count"] is not None:
                    fault["count"] -= 1
                fault["hits"] += 1
                fired.append(dict(fault))
        return fired
