"""Sliding-window rate limits per (context, client IP) and endpoint group (DIGEST section 9)."""
import collections
import math
import threading
import time

# official values (GET /rate-limits on TEST = PRD since API 2.5.0)
PRODUCTION = {
    "onlineSession": (10, 30, 120),
    "batchSession": (10, 20, 60),
    "invoiceSend": (10, 30, 180),
    "invoiceStatus": (30, 120, 1200),
    "sessionList": (5, 10, 60),
    "sessionInvoiceList": (10, 20, 200),
    "sessionMisc": (10, 120, 1200),
    "invoiceMetadata": (8, 16, 20),
    "invoiceExport": (8, 16, 20),
    "invoiceExportStatus": (10, 60, 600),
    "invoiceDownload": (8, 16, 64),
    "other": (10, 30, 120),
}
PUBLIC_PER_SECOND = 60
GROUPS = tuple(PRODUCTION)
WINDOWS = ((1.0, "sekundę"), (60.0, "minutę"), (3600.0, "godzinę"))
# values reported by GET /rate-limits when limits are switched off (nothing is enforced)
OFF_VALUE = 1000000


class RateLimited(Exception):
    def __init__(self, retry_after, limit, window_name):
        super().__init__("rate limited")
        self.retry_after = retry_after
        self.limit = limit
        self.window_name = window_name

    @property
    def message(self):
        return "Przekroczono limit %d żądań na %s. Spróbuj ponownie po %d sekundach." % (
            self.limit, self.window_name, self.retry_after)


def normalize(mode):
    """``"production"``, ``"off"`` or a dict ``{group: [s, m, h] | {perSecond, perMinute, perHour}}``.

    A dict may also contain ``"public"`` (requests per second per IP on public endpoints);
    groups it does not name keep the production values.
    """
    if mode in (None, "off", False):
        return None
    if mode == "production":
        return {"groups": dict(PRODUCTION), "public": PUBLIC_PER_SECOND}
    if not isinstance(mode, dict):
        raise ValueError("rate limit mode must be 'production', 'off' or an object")
    groups = dict(PRODUCTION)
    public = mode.get("public", PUBLIC_PER_SECOND)
    for key, value in mode.items():
        if key in ("public", "mode"):
            continue
        if key not in PRODUCTION:
            raise ValueError("unknown rate limit group %r" % key)
        if isinstance(value, dict):
            value = (value.get("perSecond"), value.get("perMinute"), value.get("perHour"))
        value = tuple(int(v) for v in value)
        if len(value) != 3 or any(v < 1 for v in value):
            raise ValueError("group %r needs three positive numbers" % key)
        groups[key] = value
    return {"groups": groups, "public": int(public)}


class RateLimiter:
    def __init__(self, mode="off", clock=time.monotonic):
        self._lock = threading.Lock()
        self._hits = collections.defaultdict(collections.deque)
        self._clock = clock
        self.mode_name = "off"
        self.config = None
        self.set_mode(mode)

    def set_mode(self, mode):
        config = normalize(mode)
        with self._lock:
            self.config = config
            self.mode_name = mode if isinstance(mode, str) else ("custom" if config else "off")
            self._hits.clear()

    def effective(self):
        """Body of ``GET /rate-limits``."""
        out = {}
        for group in GROUPS:
            if self.config is None:
                values = (OFF_VALUE, OFF_VALUE, OFF_VALUE)
            else:
                values = self.config["groups"][group]
            out[group] = {"perSecond": values[0], "perMinute": values[1], "perHour": values[2]}
        return out

    def check(self, group, key):
        """Count one request; raise :class:`RateLimited` when a window is full.

        ``group`` ``"public"`` uses the per-IP per-second limit. Rejected requests are not counted.
        """
        config = self.config
        if config is None:
            return
        if group == "public":
            limits = ((1.0, config["public"], "sekundę"),)
        else:
            s, m, h = config["groups"][group]
            limits = ((1.0, s, "sekundę"), (60.0, m, "minutę"), (3600.0, h, "godzinę"))
        now = self._clock()
        with self._lock:
            hits = self._hits[(group, key)]
            horizon = now - limits[-1][0]
            while hits and hits[0] <= horizon:
                hits.popleft()
            for window, limit, name in limits:
                start = now - window
                # number of hits inside this window (deque is sorted)
                count = len(hits) - _bisect(hits, start)
                if count >= limit:
                    oldest_in_window = hits[len(hits) - limit]
                    retry = max(1, math.ceil(oldest_in_window + window - now))
                    raise RateLimited(retry, limit, name)
            hits.append(now)


def _bisect(dq, value):
    """Index of the first element > value in a sorted deque."""
    lo, hi = 0, len(dq)
    while lo < hi:
        mid = (lo + hi) // 2
        if dq[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo
