"""Client-side request budget: KSeF's rate limits applied BEFORE KSeF answers 429.

KSeF counts requests per (context, client IP) and endpoint group in three sliding windows at once
(per second, per minute, per hour; DIGEST §9). :class:`RateLimiter` keeps the timestamps of the
requests made in the last hour per ``(scope, group)`` and makes a caller wait until all three windows
have room. The clock and the sleep function are pluggable (tests use a fake clock), the object is
thread-safe, and its state can be exported to / imported from a plain dict so that several processes
(Odoo workers, cron runs) can share one budget.
"""
import collections
import logging
import re
import threading
import time

from ..errors import RateLimitError

_logger = logging.getLogger(__name__)

SECOND, MINUTE, HOUR = 1.0, 60.0, 3600.0

#: Official production limits (TEST equals PRD since 2.5.0): group -> (per second, per minute, per hour).
#: Group names are those of ``GET /rate-limits`` (``EffectiveApiRateLimits``) plus ``public`` for the
#: unauthenticated endpoints limited per IP only.
PRODUCTION_LIMITS = {
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
    "public": (60, None, None),
}

#: Groups counted per client IP only (no context).
PUBLIC_GROUPS = frozenset({"public"})

_REF = r"[^/]+"
_RULES = [
    ("POST", re.compile(r"^/auth/(challenge|xades-signature|ksef-token|token/redeem|token/refresh)$"), "public"),
    ("GET", re.compile(r"^/auth/sessions$"), "other"),
    ("GET", re.compile(r"^/auth/%s$" % _REF), "public"),
    ("GET", re.compile(r"^/security/public-key-certificates$"), "public"),
    ("POST", re.compile(r"^/testdata/(subject|person|permissions|attachment)(/.*)?$"), "public"),
    ("POST", re.compile(r"^/sessions/online(/%s/close)?$" % _REF), "onlineSession"),
    ("POST", re.compile(r"^/sessions/online/%s/invoices$" % _REF), "invoiceSend"),
    ("POST", re.compile(r"^/sessions/batch(/%s/close)?$" % _REF), "batchSession"),
    ("GET", re.compile(r"^/sessions$"), "sessionList"),
    ("GET", re.compile(r"^/sessions/%s/invoices(/failed)?$" % _REF), "sessionInvoiceList"),
    ("GET", re.compile(r"^/sessions/%s/invoices/(?!failed$)%s$" % (_REF, _REF)), "invoiceStatus"),
    ("GET", re.compile(r"^/sessions/.+$"), "sessionMisc"),
    ("POST", re.compile(r"^/invoices/query/metadata$"), "invoiceMetadata"),
    ("POST", re.compile(r"^/invoices/exports$"), "invoiceExport"),
    ("GET", re.compile(r"^/invoices/exports/%s$" % _REF), "invoiceExportStatus"),
    ("GET", re.compile(r"^/invoices/ksef/%s$" % _REF), "invoiceDownload"),
]


def endpoint_group(method, path):
    """Rate-limit group of an API call; ``path`` is relative to the ``/v2`` base, without query."""
    method = method.upper()
    path = "/" + path.split("?", 1)[0].strip("/")
    for rule_method, pattern, group in _RULES:
        if rule_method == method and pattern.match(path):
            return group
    return "other"


class RateLimiter:
    """Three sliding windows per ``(scope, group)``; ``acquire`` waits until a request may be sent.

    ``limits``: ``{group: (per_second, per_minute, per_hour)}`` (``None`` = no limit in that window);
    unknown groups use the ``other`` limits. ``margins``: extra seconds added to each window to absorb
    network latency jitter (KSeF stamps requests on arrival, we stamp them on departure).
    ``clock``/``sleep``: wall-clock seconds and the matching sleep (inject fakes in tests). The clock is
    a wall clock (not monotonic) so that exported state stays meaningful in another process.
    """

    WINDOWS = (SECOND, MINUTE, HOUR)

    def __init__(self, limits=None, *, clock=time.time, sleep=time.sleep, margins=(0.2, 1.0, 5.0),
                 enabled=True):
        self._limits = dict(PRODUCTION_LIMITS)
        if limits:
            self._limits.update({g: tuple(v) for g, v in limits.items()})
        self.clock = clock
        self.sleep = sleep
        self.margins = tuple(margins)
        self.enabled = enabled
        self._lock = threading.RLock()
        self._events = collections.defaultdict(collections.deque)   # key -> deque of timestamps
        self._blocked_until = {}                                      # key -> timestamp
        self.waited_total = 0.0
        self.acquired = collections.Counter()                         # group -> count (statistics)

    # ------------------------------------------------------------------ configuration
    def limits(self, group):
        return self._limits.get(group) or self._limits["other"]

    def set_limits(self, group, per_second=None, per_minute=None, per_hour=None):
        with self._lock:
            self._limits[group] = (per_second, per_minute, per_hour)

    def update_from_effective(self, effective):
        """Apply a ``GET /rate-limits`` answer (``{group: {perSecond, perMinute, perHour}}``)."""
        for group, values in (effective or {}).items():
            if isinstance(values, dict):
                self.set_limits(group, values.get("perSecond"), values.get("perMinute"), values.get("perHour"))

    # ------------------------------------------------------------------ core
    @staticmethod
    def key(scope, group):
        return "%s|%s" % (scope or "", group)

    def _scope_for(self, scope, group):
        if group in PUBLIC_GROUPS:
            # per-IP limits: drop the context part, keep the environment part of the scope
            return (scope or "").split("#", 1)[0]
        return scope

    def _needed_wait(self, key, group, now):
        events = self._events.get(key)
        wait = max(0.0, self._blocked_until.get(key, 0.0) - now)
        if events:
            horizon = now - HOUR - self.margins[-1]
            while events and events[0] < horizon:
                events.popleft()
            for window, margin, limit in zip(self.WINDOWS, self.margins, self.limits(group)):
                if not limit or len(events) < limit:
                    continue
                # the limit-th most recent request must have left the window
                oldest_in_way = events[-limit]
                wait = max(wait, oldest_in_way + window + margin - now)
        return wait

    def delay(self, group, scope=None):
        """Seconds until a request of ``group`` may be sent (0 = now), without reserving it."""
        if not self.enabled:
            return 0.0
        scope = self._scope_for(scope, group)
        with self._lock:
            return self._needed_wait(self.key(scope, group), group, self.clock())

    def acquire(self, group, scope=None, *, max_wait=None):
        """Reserve a request slot, sleeping as needed; return the seconds waited.

        If the wait would exceed ``max_wait`` seconds, raise :class:`~ksef.errors.RateLimitError`
        (``code='rate_budget'``, ``retry_after`` = the wait) without waiting, so a cron job can stop and
        come back later instead of blocking for up to an hour.
        """
        if not self.enabled:
            return 0.0
        scope = self._scope_for(scope, group)
        key = self.key(scope, group)
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                wait = self._needed_wait(key, group, now)
                if wait <= 0:
                    self._events[key].append(now)
                    self.acquired[group] += 1
                    self.waited_total += waited
                    return waited
            if max_wait is not None and waited + wait > max_wait:
                self.waited_total += waited
                raise RateLimitError(
                    "client-side rate budget of %s exhausted: next request possible in %.1f s" % (group, wait),
                    retry_after=wait, code="rate_budget", params={"group": group, "retry_after": round(wait, 3)})
            if wait > 1:
                _logger.info("rate budget of %s: waiting %.1f s", group, wait)
            else:
                _logger.debug("rate budget of %s: waiting %.3f s", group, wait)
            self.sleep(wait)
            waited += wait

    def block(self, group, scope=None, seconds=0.0):
        """Record a server-imposed block (``Retry-After`` of a 429): no request of the group before then."""
        scope = self._scope_for(scope, group)
        with self._lock:
            key = self.key(scope, group)
            until = self.clock() + max(0.0, float(seconds or 0))
            self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def usage(self, group, scope=None):
        """Requests counted in the three windows now: ``(last_second, last_minute, last_hour)``."""
        scope = self._scope_for(scope, group)
        with self._lock:
            now = self.clock()
            events = self._events.get(self.key(scope, group), ())
            return tuple(sum(1 for t in events if t > now - w) for w in self.WINDOWS)

    # ------------------------------------------------------------------ persistence
    def export_state(self):
        """Plain-dict state: ``{"version": 1, "events": {key: [ts...]}, "blockedUntil": {key: ts}}``.

        Keys are ``"<scope>|<group>"``; timestamps are wall-clock seconds. Only the last hour is kept.
        """
        with self._lock:
            now = self.clock()
            horizon = now - HOUR - self.margins[-1]
            events = {k: [round(t, 3) for t in v if t >= horizon] for k, v in self._events.items()}
            return {
                "version": 1,
                "events": {k: v for k, v in events.items() if v},
                "blockedUntil": {k: round(v, 3) for k, v in self._blocked_until.items() if v > now},
            }

    def import_state(self, state, merge=True):
        """Load a state exported by :meth:`export_state` (merged with the current one by default)."""
        if not state:
            return
        with self._lock:
            if not merge:
                self._events.clear()
                self._blocked_until.clear()
            for key, stamps in (state.get("events") or {}).items():
                # multiset union: importing the same state twice does not double-count
                mine = collections.Counter(round(t, 3) for t in self._events.get(key, ()))
                merged = mine | collections.Counter(round(float(t), 3) for t in stamps)
                self._events[key] = collections.deque(sorted(merged.elements()))
            for key, until in (state.get("blockedUntil") or {}).items():
                self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), float(until))


_default_limiter = None
_default_lock = threading.Lock()


def default_rate_limiter():
    """The process-wide limiter shared by every client that is not given its own."""
    global _default_limiter  # noqa: PLW0603
    with _default_lock:
        if _default_limiter is None:
            _default_limiter = RateLimiter()
        return _default_limiter
