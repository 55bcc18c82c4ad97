"""HTTP transport of the KSeF client: rate budget, retries, error mapping, secret scrubbing.

Retry policy (DIGEST §9, brief "Part 2" item 6):

* every call first takes a slot from the client-side :class:`~ksef.client.ratelimit.RateLimiter`;
* a request that provably never reached the server (connection refused, connect timeout, TLS
  handshake) is retried for every call;
* a 429 is retried after ``Retry-After`` for every call (KSeF rejects it before processing), as long as
  the total wait stays within ``max_rate_wait``;
* timeouts after the request was written, connection resets, 5xx and malformed answers are retried
  only for *safe* calls (reads, status polls, challenge, …). For unsafe calls (sending an invoice,
  creating a token…) they raise an error with ``ambiguous = True``: the caller resolves the outcome
  (e.g. by finding the invoice in the session by its hash) instead of resending blindly;
* except a 503 carrying ``Retry-After`` (maintenance, failure, overload): the server refused the request
  before processing it, so even for unsafe calls the error has ``ambiguous = False`` and
  ``params["refused"] = True`` (plus ``params["retry_after"]``) — the caller may send it again later.

Nothing secret (tokens, keys, encrypted tokens, invoice bodies) is ever logged or put in an exception:
bodies are never logged, registered secrets are replaced by ``***`` in every text taken from a response,
and JWT-looking strings are masked as well.
"""
import base64
import collections
import email.utils
import hashlib
import json
import logging
import random
import re
import threading
import time
import urllib.parse

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .. import __version__
from ..errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    GoneError,
    NotFoundError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    ServiceUnavailableError,
    TransportError,
)
from .ratelimit import endpoint_group

_logger = logging.getLogger(__name__)

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_STATUS_CLASSES = {400: BadRequestError, 401: AuthenticationError, 403: ForbiddenError, 404: NotFoundError,
                   410: GoneError, 429: RateLimitError, 503: ServiceUnavailableError}


class ApiResponse:
    """A successful answer: ``status``, ``headers``, ``content`` (bytes) and parsed ``data`` (JSON or None)."""

    __slots__ = ("content", "data", "headers", "status")

    def __init__(self, status, headers, content, data=None):
        self.status = status
        self.headers = headers
        self.content = content
        self.data = data

    def __repr__(self):
        return "<ApiResponse %s, %d bytes>" % (self.status, len(self.content or b""))


class Secrets:
    """Registry of secret strings that must never appear in logs or error texts."""

    def __init__(self):
        self._values = set()
        self._lock = threading.Lock()

    def add(self, *values):
        with self._lock:
            for value in values:
                if isinstance(value, bytes):
                    try:
                        value = value.decode("ascii")
                    except UnicodeDecodeError:
                        continue
                if isinstance(value, str) and len(value) >= 8:
                    self._values.add(value)

    def scrub(self, text):
        if text is None:
            return None
        text = str(text)
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        return _JWT_RE.sub("***", text)


def _safe_url(url):
    """URL for logs: no query string (pre-signed URLs carry signatures there)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def parse_retry_after(value, now=None):
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent/unreadable."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def parse_error_body(content, content_type=""):
    """Extract ``(codes, details, reference_number, extra)`` from a KSeF error body.

    Understands the classic ``{"exception": {"exceptionDetailList": [...]}}`` body, the 429
    ``{"status": {"code", "description", "details"}}`` body and RFC-7807 problem details
    (``errors[]`` for 400, ``reasonCode``/``security`` for 403, ``detail`` for the rest).
    ``details`` is a list of human strings (descriptions first, then their details).
    """
    codes, details, reference, extra = [], [], None, {}
    try:
        body = json.loads(content.decode("utf-8")) if content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        if content and "json" not in (content_type or ""):
            text = content[:300].decode("utf-8", "replace").strip()
            if text:
                details.append(text)
        return codes, details, reference, extra
    exc = body.get("exception")
    if isinstance(exc, dict):
        reference = exc.get("referenceNumber")
        for item in exc.get("exceptionDetailList") or ():
            if not isinstance(item, dict):
                continue
            if item.get("exceptionCode") is not None:
                codes.append(_int(item.get("exceptionCode")))
            if item.get("exceptionDescription"):
                details.append(str(item["exceptionDescription"]))
            details.extend(str(d) for d in item.get("details") or () if d)
    status = body.get("status")
    if isinstance(status, dict):
        if status.get("description"):
            details.append(str(status["description"]))
        details.extend(str(d) for d in status.get("details") or () if d)
    for item in body.get("errors") or ():
        if isinstance(item, dict):
            if item.get("code") is not None:
                codes.append(_int(item.get("code")))
            if item.get("description"):
                details.append(str(item["description"]))
            details.extend(str(d) for d in item.get("details") or () if d)
    if isinstance(body.get("detail"), str) and body["detail"] not in details:
        details.append(body["detail"])
    for key in ("reasonCode", "security", "title", "traceId"):
        if body.get(key) is not None:
            extra[key] = body[key]
    return [c for c in codes if c is not None], details, reference, extra


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Transport:
    """Sends requests to one KSeF API base URL.

    ``limiter``: a :class:`~ksef.client.ratelimit.RateLimiter` (``None`` = no client-side budget);
    ``timeout``: ``(connect, read)`` seconds; ``retries``: extra attempts for retryable failures;
    ``max_rate_wait``: the longest total wait (seconds) for budget/``Retry-After`` before giving up with
    :class:`~ksef.errors.RateLimitError`.
    """

    def __init__(self, api_url, *, http=None, timeout=(10, 60), limiter=None, max_rate_wait=900.0, retries=4,
                 backoff=(0.5, 30.0), sleep=time.sleep, problem_details=False, verify=True, secrets=None):
        self.api_url = api_url.rstrip("/")
        self.http = http or requests.Session()
        if http is None:
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
            self.http.mount("http://", adapter)
            self.http.mount("https://", adapter)
        self.timeout = timeout
        self.limiter = limiter
        self.max_rate_wait = max_rate_wait
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.problem_details = problem_details
        self.verify = verify
        self.secrets = secrets or Secrets()
        self.max_server_retry_after = 10.0
        self.stats = collections.Counter()
        self.user_agent = "l10n_pl_ksef/%s (python-requests)" % __version__

    # ------------------------------------------------------------------ helpers
    def _backoff(self, attempt):
        base, cap = self.backoff
        return min(cap, base * (2 ** attempt)) * (0.5 + random.random() / 2)

    def _headers(self, token=None, extra=None, content_type=None):
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.problem_details:
            headers["X-Error-Format"] = "problem-details"
        if token:
            headers["Authorization"] = "Bearer " + token
        if content_type:
            headers["Content-Type"] = content_type
        if extra:
            headers.update(extra)
        return headers

    def error_from_response(self, resp, label):
        """Build the typed :class:`~ksef.errors.ApiError` for a non-2xx ``requests`` response."""
        status = resp.status_code
        codes, details, reference, extra = parse_error_body(resp.content, resp.headers.get("Content-Type", ""))
        details = [self.secrets.scrub(d) for d in details]
        cls = _STATUS_CLASSES.get(status) or (ServerError if status >= 500 else ApiError)
        summary = "; ".join(details[:3]) if details else resp.reason or ""
        message = "KSeF %s: HTTP %s%s%s" % (
            label, status, (" [%s]" % ", ".join(str(c) for c in codes)) if codes else "",
            (": " + summary) if summary else "")
        kw = {"http_status": status, "exception_codes": codes, "details": details, "reference_number": reference,
              "params": {"operation": label}}
        if extra:
            kw["params"].update({k: v for k, v in extra.items() if k in ("reasonCode", "security")})
        if cls is RateLimitError:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            kw["params"]["retry_after"] = retry_after
            return RateLimitError(self.secrets.scrub(message), retry_after=retry_after, **kw)
        return cls(self.secrets.scrub(message), **kw)

    # ------------------------------------------------------------------ public API
    def call(self, method, path, *, scope=None, token=None, json_body=None, data=None, content_type=None,
             params=None, headers=None, safe=True, expect_json=True, required=(), timeout=None, group=None):
        """Call ``{api_url}{path}``; return an :class:`ApiResponse` or raise a typed ``ApiError``."""
        group = group or endpoint_group(method, path)
        url = self.api_url + path
        label = "%s %s" % (method, path)
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            content_type = content_type or "application/json"
        return self._send(method, url, label=label, group=group, scope=scope, token=token, data=data,
                          content_type=content_type, params=params, headers=headers, safe=safe,
                          expect_json=expect_json, required=required, timeout=timeout, limited=True)

    def call_url(self, method, url, *, data=None, headers=None, safe=True, expect_json=False, timeout=None,
                 content_type=None):
        """Call an absolute pre-signed URL: no bearer token, no rate budget (KSeF does not limit them)."""
        label = "%s %s" % (method, _safe_url(url))
        return self._send(method, url, label=label, group="presigned", scope=None, token=None, data=data,
                          content_type=content_type, params=None, headers=headers, safe=safe,
                          expect_json=expect_json, required=(), timeout=timeout, limited=False,
                          raw_headers=True)

    def download(self, url, fileobj, *, expected_hash=None, expected_size=None, timeout=None, chunk_size=1 << 20):
        """Stream a pre-signed URL (GET, no token) into ``fileobj``; verify SHA-256 (Base64) and size.

        Retried from scratch (``fileobj`` is truncated) on transport errors and hash mismatches.
        Returns the number of bytes written.
        """
        label = "GET %s" % _safe_url(url)
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self._backoff(attempt - 1))
            fileobj.seek(0)
            fileobj.truncate()
            digest = hashlib.sha256()
            size = 0
            started = time.monotonic()
            try:
                self.stats["calls"] += 1
                self.stats["calls:presigned"] += 1
                with self.http.get(url, stream=True, timeout=timeout or (self.timeout[0], max(self.timeout[1], 300)),
                                   verify=self.verify, headers={"User-Agent": self.user_agent}) as resp:
                    if resp.status_code >= 300:
                        resp.content  # noqa: B018 - read the error body
                        err = self.error_from_response(resp, label)
                        if resp.status_code == 429 or resp.status_code >= 500:
                            last = err
                            continue
                        raise err
                    for chunk in resp.iter_content(chunk_size):
                        digest.update(chunk)
                        size += len(chunk)
                        fileobj.write(chunk)
            except requests.RequestException as exc:
                last = TransportError("KSeF %s: download failed (%s)" % (label, type(exc).__name__),
                                      code="transport", params={"operation": label})
                continue
            _logger.debug("%s -> %d bytes (%.0f ms)", label, size, (time.monotonic() - started) * 1000)
            got = base64.b64encode(digest.digest()).decode("ascii")
            if (expected_hash and got != expected_hash) or (expected_size is not None and size != expected_size):
                last = TransportError("KSeF %s: downloaded data does not match its hash/size" % label,
                                      code="download_corrupt", params={"operation": label})
                continue
            fileobj.seek(0)
            return size
        raise last

    # ------------------------------------------------------------------ engine
    def _send(self, method, url, *, label, group, scope, token, data, content_type, params, headers, safe,
              expect_json, required, timeout, limited, raw_headers=False):
        attempt = 0
        rate_waited = 0.0
        rate_limited_retries = 0
        hdrs = (dict(headers or {}) if raw_headers else self._headers(token, headers, content_type))
        if raw_headers:
            hdrs.setdefault("User-Agent", self.user_agent)
            if content_type:
                hdrs.setdefault("Content-Type", content_type)
        while True:
            if limited and self.limiter is not None:
                budget = None if self.max_rate_wait is None else max(0.0, self.max_rate_wait - rate_waited)
                rate_waited += self.limiter.acquire(group, scope, max_wait=budget)
            if hasattr(data, "seek"):
                data.seek(0)
            started = time.monotonic()
            self.stats["calls"] += 1
            self.stats["calls:" + group] += 1
            try:
                resp = self.http.request(method, url, data=data, params=params, headers=hdrs,
                                         timeout=timeout or self.timeout, verify=self.verify)
                content = resp.content
            except requests.RequestException as exc:
                error, sent = self._classify(exc, label)
                _logger.debug("%s -> %s (%.0f ms)", label, type(exc).__name__, (time.monotonic() - started) * 1000)
                if (safe or not sent) and attempt < self.retries:
                    self.stats["retries"] += 1
                    self.sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                if sent and not safe:
                    error.ambiguous = True
                    error.params["ambiguous"] = True
                raise error from None
            elapsed = (time.monotonic() - started) * 1000
            _logger.debug("%s -> %s (%.0f ms)", label, resp.status_code, elapsed)
            status = resp.status_code
            if status < 300:
                result = ApiResponse(status, resp.headers, content)
                if expect_json:
                    try:
                        result.data = self._parse_json(content, label, required)
                    except TransportError as exc:
                        if safe and attempt < self.retries:
                            self.stats["retries"] += 1
                            self.sleep(self._backoff(attempt))
                            attempt += 1
                            continue
                        if not safe:
                            exc.ambiguous = True
                            exc.params["ambiguous"] = True
                        raise
                return result
            error = self.error_from_response(resp, label)
            if status == 429:
                self.stats["429"] += 1
                retry_after = (error.retry_after if error.retry_after is not None
                               else self._backoff(min(rate_limited_retries, 5)))
                _logger.warning("KSeF rate limit hit on %s: retrying after %.1f s", label, retry_after)
                if rate_limited_retries >= 30 or (
                        self.max_rate_wait is not None and rate_waited + retry_after > self.max_rate_wait):
                    raise error
                rate_limited_retries += 1
                if limited and self.limiter is not None:
                    self.limiter.block(group, scope, retry_after)   # the next acquire() waits for it
                else:
                    self.sleep(retry_after)
                    rate_waited += retry_after
                continue
            if status >= 500 and safe and attempt < self.retries:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if retry_after is not None and retry_after > self.max_server_retry_after:
                    # announced outage (maintenance/failure): tell the caller now instead of blocking
                    error.params["retry_after"] = retry_after
                    raise error
                self.stats["retries"] += 1
                self.sleep(retry_after if retry_after is not None else self._backoff(attempt))
                attempt += 1
                continue
            if status >= 500 and not safe:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if status == 503 and retry_after is not None:
                    # refused before processing (maintenance / failure / overload): nothing to resolve
                    error.ambiguous = False
                    error.params.update(refused=True, retry_after=retry_after)
                    raise error
                error.ambiguous = True
                error.params["ambiguous"] = True
            raise error

    def _parse_json(self, content, label, required):
        if not content:
            if required:
                raise TransportError("KSeF %s: empty answer" % label, code="malformed_response",
                                     params={"operation": label})
            return None
        try:
            data = json.loads(content.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise TransportError("KSeF %s: the answer is not valid JSON" % label, code="malformed_response",
                                 params={"operation": label}) from None
        if required:
            missing = [k for k in required if not isinstance(data, dict) or data.get(k) in (None, "")]
            if missing:
                raise TransportError("KSeF %s: the answer lacks %s" % (label, ", ".join(missing)),
                                     code="malformed_response", params={"operation": label, "missing": missing})
        return data

    @staticmethod
    def _classify(exc, label):
        """Map a ``requests`` exception to ``(TransportError, request_was_possibly_sent)``."""
        params = {"operation": label, "reason": type(exc).__name__}
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return TransportError("KSeF %s: connection timed out" % label, code="connect_timeout",
                                  params=params), False
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return RequestTimeout("KSeF %s: no answer in time (the request may have been processed)" % label,
                                  params=params), True
        if isinstance(exc, requests.exceptions.SSLError):
            return TransportError("KSeF %s: TLS error" % label, code="tls", params=params), False
        if isinstance(exc, requests.exceptions.ConnectionError):
            reason = exc.args[0] if exc.args else None
            inner = getattr(reason, "reason", reason)
            if isinstance(inner, (NewConnectionError, ConnectTimeoutError)):
                return TransportError("KSeF %s: cannot connect" % label, code="connect_failed",
                                      params=params), False
            return TransportError("KSeF %s: connection lost (the request may have been processed)" % label,
                                  code="connection_lost", params=params), True
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return TransportError("KSeF %s: malformed answer" % label, code="malformed_response",
                                  params=params), True
        return TransportError("KSeF %s: HTTP failure (%s)" % (label, type(exc).__name__), code="transport",
                              params=params), True
