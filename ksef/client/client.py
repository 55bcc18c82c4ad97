"""``KsefClient``: authentication, token lifecycle, public keys, KSeF tokens, permissions.

Sessions (online/batch) live in :mod:`ksef.client.sessions`, receiving in :mod:`ksef.client.receive`;
the client exposes them as methods (``open_online_session``, ``send_batch``, ``export_invoices``…).
"""
import datetime
import logging
import threading
import time

from .. import crypto
from .. import environments as envs
from ..errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    CredentialError,
    ForbiddenError,
    GoneError,
    OperationFailed,
    ServerError,
    TransportError,
)
from . import keys
from .auth import AuthTokens, CertificateCredential, ContextIdentifier, KsefTokenCredential
from .errors import AuthenticationFailed, OperationPending
from .http import Transport
from .latarnia import LatarniaClient
from .ratelimit import default_rate_limiter
from .util import jwt_claims, parse_datetime, utcnow

_logger = logging.getLogger(__name__)

#: Permissions a KSeF token may carry (``TokenPermissionType``).
TOKEN_PERMISSIONS = ("InvoiceRead", "InvoiceWrite", "CredentialsRead", "CredentialsManage", "SubunitManage",
                     "EnforcementOperations", "Introspection")
#: Everything an owner has in its own context (DIGEST §13: all but VatUeManage).
OWNER_PERMISSIONS = frozenset(TOKEN_PERMISSIONS)

# refresh-token failures after which only a new authentication helps
_DEAD_REFRESH_STATUSES = (400, 401, 403, 410)


class Poller:
    """Backoff schedule for status polls: ``first`` seconds, times ``factor``, capped at ``cap``."""

    def __init__(self, first=0.5, cap=10.0, factor=1.6):
        self.first, self.cap, self.factor = first, cap, factor

    def delays(self):
        delay = self.first
        while True:
            yield delay
            delay = min(self.cap, delay * self.factor)


class KsefClient:
    """A KSeF API v2 client for one environment and one login context.

    Parameters (all keyword-only except ``environment``):

    * ``environment``: ``"test"``, ``"demo"``, ``"prod"``, ``"sandbox"``, a URL or an
      :class:`~ksef.environments.Environment`;
    * ``context``: :class:`ContextIdentifier`, ``{"type","value"}``, ``("Nip", "…")`` or a NIP string
      (``nip=`` is a shortcut);
    * ``credential``: :class:`KsefTokenCredential` or :class:`CertificateCredential` (``ksef_token=`` is a
      shortcut). Without a credential the client works only while ``tokens`` stay refreshable;
    * ``tokens``: a dict from :meth:`AuthTokens.to_dict` (restored state); ``on_tokens_changed(dict|None)``
      is called whenever the state changes (new login, refresh, logout);
    * ``rate_limiter``: a :class:`RateLimiter` (default: the process-wide one; ``False`` disables it);
      ``max_rate_wait``: longest wait for budget/Retry-After before :class:`~ksef.errors.RateLimitError`;
    * ``authorization_policy``: ``{"allowedIps": {"ip4Addresses": [...], "ip4Ranges": [...], "ip4Masks": [...]}}``
      (or directly the ``allowedIps`` dict) restricting where the access token may be used;
    * ``timeout`` ``(connect, read)``, ``retries``, ``backoff`` ``(first, cap)`` seconds, ``poller``
      (:class:`Poller`), ``sleep`` (tests),
      ``refresh_margin`` (seconds before access-token expiry at which it is refreshed),
      ``auth_timeout`` (seconds to wait for the authentication operation), ``http`` (a requests.Session).
    """

    def __init__(self, environment="test", *, context=None, nip=None, credential=None, ksef_token=None,
                 tokens=None, on_tokens_changed=None, rate_limiter=None, max_rate_wait=900.0, timeout=(10, 60),
                 retries=4, backoff=(0.5, 30.0), http=None, authorization_policy=None, refresh_margin=120.0,
                 auth_timeout=300.0, poller=None, sleep=time.sleep, problem_details=False, verify_tls=True,
                 public_key_cache=None, send_resolve_delays=(1.0, 3.0, 6.0)):
        self.environment = envs.get_environment(environment)
        self.context = ContextIdentifier.coerce(context if context is not None else nip)
        if ksef_token is not None and credential is None:
            credential = KsefTokenCredential(ksef_token)
        self.credential = credential
        if rate_limiter is None:
            rate_limiter = default_rate_limiter()
        self.rate_limiter = rate_limiter or None
        self.transport = Transport(self.environment.api_url, http=http, timeout=timeout,
                                   limiter=self.rate_limiter, max_rate_wait=max_rate_wait, retries=retries,
                                   backoff=backoff, sleep=sleep, problem_details=problem_details, verify=verify_tls)
        self.sleep = sleep
        self.poller = poller or Poller()
        self.refresh_margin = refresh_margin
        self.auth_timeout = auth_timeout
        self.send_resolve_delays = tuple(send_resolve_delays)
        self.authorization_policy = _normalize_policy(authorization_policy)
        self.on_tokens_changed = on_tokens_changed
        self.public_keys = public_key_cache or keys.shared_public_key_cache()
        self._lock = threading.RLock()
        self._tokens = None
        if credential is not None:
            self.transport.secrets.add(*credential.secrets())
        if tokens:
            restored = tokens if isinstance(tokens, AuthTokens) else AuthTokens.from_dict(tokens)
            self.transport.secrets.add(*restored.secrets())
            if self.context is not None and restored.context is not None and restored.context != self.context:
                _logger.info("stored KSeF tokens belong to context %s, not %s: ignored", restored.context,
                             self.context)
            else:
                self._tokens = restored
                if self.context is None:
                    self.context = restored.context
        self._latarnia = None

    def __repr__(self):
        return "<KsefClient %s context=%s credential=%s authenticated=%s>" % (
            self.environment.name, self.context, type(self.credential).__name__ if self.credential else None,
            self._tokens is not None)

    # ------------------------------------------------------------------ plumbing
    @property
    def scope(self):
        """Rate-limit scope: environment + context (KSeF counts per context and IP)."""
        return "%s#%s" % (self.environment.api_url, self.context or "")

    @property
    def stats(self):
        """Counters: ``calls``, ``calls:<group>``, ``429``, ``retries``."""
        return self.transport.stats

    def close(self):
        self.transport.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _public(self, method, path, **kw):
        return self.transport.call(method, path, scope=self.scope, **kw)

    def _api(self, method, path, *, safe=True, **kw):
        """Authenticated call; one retry after refreshing/re-authenticating on HTTP 401."""
        token = self.access_token()
        try:
            return self.transport.call(method, path, scope=self.scope, token=token, safe=safe, **kw)
        except AuthenticationError as exc:
            if exc.http_status != 401:
                raise
            _logger.info("KSeF rejected the access token (401); refreshing and retrying %s %s", method, path)
            token = self.access_token(force_refresh=True)
            return self.transport.call(method, path, scope=self.scope, token=token, safe=safe, **kw)

    def _poll(self, fetch, done, *, timeout, what, reference=None):
        """Call ``fetch()`` until ``done(result)``; raise :class:`OperationPending` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        for delay in self.poller.delays():
            result = fetch()
            if done(result):
                return result
            if time.monotonic() + delay > deadline:
                raise OperationPending("%s still in progress after %.0f s" % (what, timeout),
                                       reference_number=reference,
                                       params={"operation": what, "reference_number": reference})
            self.sleep(delay)
        return None  # pragma: no cover

    # ------------------------------------------------------------------ public keys
    def public_key_certificate(self, usage):
        """The MF certificate to encrypt with (``KsefTokenEncryption`` / ``SymmetricKeyEncryption``)."""
        return self.public_keys.get(self.environment.api_url, self.fetch_public_key_certificates, usage)

    def fetch_public_key_certificates(self):
        """Raw ``GET /security/public-key-certificates`` (the JSON list)."""
        return self._public("GET", "/security/public-key-certificates").data

    def with_public_key(self, usage, operation):
        """Run ``operation(cert)``; on 400 21470 (unknown key) refetch the keys once and retry."""
        cert = self.public_key_certificate(usage)
        try:
            return operation(cert)
        except BadRequestError as exc:
            if 21470 not in exc.exception_codes:
                raise
            _logger.warning("KSeF does not know public key %s any more: refetching the keys", cert.public_key_id)
            self.public_keys.invalidate(self.environment.api_url)
            return operation(self.public_key_certificate(usage))

    def encryption_info(self, key, iv, cert):
        """``EncryptionInfo`` for an AES key/IV wrapped with ``cert`` (SymmetricKeyEncryption)."""
        return {
            "encryptedSymmetricKey": crypto.b64encode(crypto.rsa_oaep_encrypt(cert.public_key, key)),
            "initializationVector": crypto.b64encode(iv),
            "publicKeyId": cert.public_key_id,
        }

    # ------------------------------------------------------------------ token state
    @property
    def tokens(self):
        """Current :class:`AuthTokens` (or ``None``)."""
        return self._tokens

    def export_tokens(self):
        """Current token state as a plain dict (``None`` when not authenticated)."""
        return self._tokens.to_dict() if self._tokens else None

    def set_tokens(self, tokens, notify=True):
        with self._lock:
            self._tokens = (tokens if isinstance(tokens, AuthTokens) or tokens is None
                            else AuthTokens.from_dict(tokens))
            if self._tokens is not None:
                self.transport.secrets.add(*self._tokens.secrets())
        if notify and self.on_tokens_changed is not None:
            self.on_tokens_changed(self.export_tokens())

    def access_token(self, force_refresh=False):
        """A valid access token: refreshed before expiry, re-authenticated when the refresh token is dead."""
        with self._lock:
            tokens = self._tokens
            if tokens is not None and not force_refresh and tokens.access_valid(self.refresh_margin):
                return tokens.access_token
            if tokens is not None and tokens.refresh_valid(30):
                try:
                    return self.refresh().access_token
                except (AuthenticationError, ForbiddenError, GoneError, BadRequestError) as exc:
                    if exc.http_status not in _DEAD_REFRESH_STATUSES:
                        raise
                    _logger.info("KSeF refresh token rejected (HTTP %s): authenticating again", exc.http_status)
            if self.credential is None:
                raise AuthenticationError(
                    "not authenticated: the KSeF tokens are missing or expired and no credential is configured",
                    code="reauth_required")
            return self.authenticate().access_token

    # ------------------------------------------------------------------ authentication
    def challenge(self):
        """``POST /auth/challenge`` → ``{challenge, timestamp, timestampMs, clientIp}``."""
        return self._public("POST", "/auth/challenge", safe=True, required=("challenge", "timestamp")).data

    def authenticate(self, credential=None, context=None, wait=True):
        """Full login: challenge → KSeF token or XAdES → poll status → redeem. Returns :class:`AuthTokens`."""
        credential = credential or self.credential
        context = ContextIdentifier.coerce(context) or self.context
        if credential is None:
            raise CredentialError("no credential to authenticate with", code="credential_missing")
        if context is None:
            raise CredentialError("no login context (NIP) configured", code="context_missing")
        self.transport.secrets.add(*credential.secrets())
        with self._lock:
            for attempt in range(2):
                try:
                    init = self._init_authentication(credential, context)
                except (TransportError, ServerError) as exc:
                    # an auth attempt has no business effect: start over with a fresh challenge once
                    if attempt or not (getattr(exc, "ambiguous", False) or isinstance(exc, ServerError)):
                        raise
                    _logger.warning("KSeF authentication request failed (%s): retrying with a new challenge",
                                    exc.code)
                    continue
                reference = init["referenceNumber"]
                auth_token = init["authenticationToken"]["token"]
                self.transport.secrets.add(auth_token)
                if not wait:
                    return init
                self.wait_for_authentication(reference, auth_token)
                try:
                    tokens = self._redeem(auth_token, reference, context, credential.method)
                except (TransportError, ServerError, BadRequestError) as exc:
                    # an ambiguous redeem may have consumed the one-time redeem (then 21301): log in again
                    if attempt or not (getattr(exc, "ambiguous", False) or 21301 in exc.exception_codes):
                        raise
                    _logger.warning("KSeF token redeem failed ambiguously (%s): authenticating again", exc.code)
                    continue
                self.context = context
                self.set_tokens(tokens)
                _logger.info("authenticated in KSeF %s context %s (%s)", self.environment.name, context,
                             credential.method)
                return tokens
        return None  # pragma: no cover

    def _init_authentication(self, credential, context):
        challenge = self.challenge()
        if isinstance(credential, KsefTokenCredential):
            timestamp_ms = challenge.get("timestampMs")
            if timestamp_ms is None:
                timestamp_ms = int(parse_datetime(challenge["timestamp"]).timestamp() * 1000)

            def send(cert):
                encrypted = crypto.b64encode(crypto.rsa_oaep_encrypt(
                    cert.public_key, ("%s|%d" % (credential.token, int(timestamp_ms))).encode("utf-8")))
                self.transport.secrets.add(encrypted)
                body = {"challenge": challenge["challenge"], "contextIdentifier": context.to_dict(),
                        "encryptedToken": encrypted, "publicKeyId": cert.public_key_id}
                if self.authorization_policy:
                    body["authorizationPolicy"] = self.authorization_policy
                # the challenge is single-use: an ambiguous failure restarts the login (authenticate())
                return self._public("POST", "/auth/ksef-token", json_body=body, safe=False,
                                    required=("referenceNumber", "authenticationToken")).data
            return self.with_public_key(keys.KSEF_TOKEN_ENCRYPTION, send)
        if isinstance(credential, CertificateCredential):
            from .. import xades
            allowed = (self.authorization_policy or {}).get("allowedIps")
            unsigned = xades.build_auth_token_request(
                challenge["challenge"], context.type, context.value,
                subject_identifier_type=credential.subject_identifier_type, allowed_ips=allowed)
            signed = xades.sign(unsigned, credential.private_key, credential.certificate,
                                signature_algorithm=credential.signature_algorithm)
            params = None
            if credential.verify_certificate_chain is not None:
                params = {"verifyCertificateChain": "true" if credential.verify_certificate_chain else "false"}
            # the challenge is single-use: an ambiguous failure restarts the login (authenticate())
            return self._public("POST", "/auth/xades-signature", data=signed, content_type="application/xml",
                                params=params, safe=False, required=("referenceNumber", "authenticationToken")).data
        raise CredentialError("unsupported credential %r" % type(credential).__name__, code="credential_unsupported")

    def authentication_status(self, reference_number, authentication_token):
        """``GET /auth/{referenceNumber}`` with the authentication token."""
        return self.transport.call("GET", "/auth/%s" % reference_number, scope=self.scope,
                                   token=authentication_token, required=("status",)).data

    def wait_for_authentication(self, reference_number, authentication_token, timeout=None):
        """Poll the auth operation until 200; raise :class:`AuthenticationFailed` on a failure status."""
        status = self._poll(lambda: self.authentication_status(reference_number, authentication_token),
                            lambda s: (s.get("status") or {}).get("code") != 100,
                            timeout=timeout or self.auth_timeout, what="authentication",
                            reference=reference_number)
        info = status.get("status") or {}
        code = info.get("code")
        if code != 200:
            details = [self.transport.secrets.scrub(d) for d in info.get("details") or ()]
            raise AuthenticationFailed(
                "KSeF authentication failed: status %s %s%s" % (
                    code, info.get("description") or "", (" (%s)" % "; ".join(details)) if details else ""),
                status_code=code, description=info.get("description"), details=details,
                reference_number=reference_number, exception_codes=[code] if code else [])
        return status

    def _redeem(self, authentication_token, reference, context, method):
        data = self.transport.call("POST", "/auth/token/redeem", scope=self.scope, token=authentication_token,
                                   safe=False, required=("accessToken", "refreshToken")).data
        tokens = AuthTokens.from_dict({**data, "referenceNumber": reference,
                                       "contextIdentifier": context.to_dict(), "authenticationMethod": method})
        self.transport.secrets.add(*tokens.secrets())
        return tokens

    def refresh(self):
        """``POST /auth/token/refresh`` with the refresh token; returns the updated :class:`AuthTokens`."""
        with self._lock:
            tokens = self._tokens
            if tokens is None or not tokens.refresh_token:
                raise AuthenticationError("no refresh token", code="reauth_required")
            data = self.transport.call("POST", "/auth/token/refresh", scope=self.scope, token=tokens.refresh_token,
                                       safe=True, required=("accessToken",)).data
            access = data["accessToken"]
            if not access.get("token"):
                raise AuthenticationError("refresh answer without a token", code="malformed_response")
            new = AuthTokens(access_token=access["token"],
                             access_valid_until=parse_datetime(access.get("validUntil")) or tokens.access_valid_until,
                             refresh_token=tokens.refresh_token, refresh_valid_until=tokens.refresh_valid_until,
                             reference_number=tokens.reference_number, context=tokens.context, method=tokens.method)
            self.set_tokens(new)
            _logger.debug("KSeF access token refreshed")
            return new

    def logout(self):
        """Revoke the current authentication session (``DELETE /auth/sessions/current``) and drop the tokens."""
        with self._lock:
            tokens = self._tokens
            if tokens is None:
                return False
            token = tokens.access_token if tokens.access_valid(5) else tokens.refresh_token
            try:
                if token:
                    self.transport.call("DELETE", "/auth/sessions/current", scope=self.scope, token=token,
                                        expect_json=False)
            except (AuthenticationError, GoneError) as exc:
                _logger.info("KSeF logout: session already invalid (HTTP %s)", exc.http_status)
            self.set_tokens(None)
            return True

    def auth_sessions(self, page_size=None):
        """Iterate the active authentication sessions (``GET /auth/sessions``)."""
        params = {"pageSize": page_size} if page_size else None
        return self._continuation("/auth/sessions", "items", params=params)

    def revoke_auth_session(self, reference_number):
        self._api("DELETE", "/auth/sessions/%s" % reference_number, expect_json=False)

    def _continuation(self, path, key, params=None):
        token = None
        while True:
            headers = {"x-continuation-token": token} if token else None
            data = self._api("GET", path, params=params, headers=headers).data or {}
            yield from data.get(key) or ()
            token = data.get("continuationToken")
            if not token:
                return

    # ------------------------------------------------------------------ KSeF tokens (POST /tokens …)
    def create_token(self, permissions, description, wait=True, timeout=120.0):
        """Generate a KSeF token (requires a XAdES login). Returns ``{"referenceNumber", "token", "status"}``.

        The token is shown only once: store it as a secret. With ``wait`` the call polls until the token is
        ``Active`` (or raises :class:`~ksef.errors.OperationFailed` when it ends ``Failed``).
        """
        perms = list(dict.fromkeys(permissions))
        bad = [p for p in perms if p not in TOKEN_PERMISSIONS]
        if bad or not perms:
            raise ValueError("invalid token permissions %r (allowed: %s)" % (
                bad or perms, ", ".join(TOKEN_PERMISSIONS)))
        if not (5 <= len(description or "") <= 256):
            raise ValueError("token description must have 5 to 256 characters")
        data = self._api("POST", "/tokens", json_body={"permissions": perms, "description": description},
                         safe=False, required=("referenceNumber", "token")).data
        self.transport.secrets.add(data["token"])
        result = {"referenceNumber": data["referenceNumber"], "token": data["token"], "status": "Pending"}
        if wait:
            result["status"] = self.wait_for_token(data["referenceNumber"], timeout=timeout)["status"]
        return result

    def get_token(self, reference_number):
        return self._api("GET", "/tokens/%s" % reference_number, required=("status",)).data

    def wait_for_token(self, reference_number, timeout=120.0):
        info = self._poll(lambda: self.get_token(reference_number),
                          lambda t: t.get("status") != "Pending", timeout=timeout, what="token activation",
                          reference=reference_number)
        if info.get("status") != "Active":
            raise OperationFailed("KSeF token %s is %s" % (reference_number, info.get("status")),
                                  status_code=info.get("status"),
                                  description="; ".join(info.get("statusDetails") or ()),
                                  reference_number=reference_number)
        return info

    def list_tokens(self, status=None, description=None, page_size=None):
        """Iterate token metadata (``GET /tokens``; ``status`` may be a list)."""
        params = {}
        if status:
            params["status"] = list(status) if isinstance(status, (list, tuple, set)) else [status]
        if description:
            params["description"] = description
        if page_size:
            params["pageSize"] = page_size
        return self._continuation("/tokens", "tokens", params=params or None)

    def revoke_token(self, reference_number):
        """``DELETE /tokens/{referenceNumber}`` (idempotent)."""
        self._api("DELETE", "/tokens/%s" % reference_number, expect_json=False)

    # ------------------------------------------------------------------ permissions / limits
    def rate_limits(self):
        """``GET /rate-limits`` (effective limits of this context)."""
        return self._api("GET", "/rate-limits").data

    def sync_rate_limits(self):
        """Load the effective limits into the client-side budget."""
        limits = self.rate_limits()
        if self.rate_limiter is not None:
            self.rate_limiter.update_from_effective(limits)
        return limits

    def personal_permissions(self, page_size=100):
        """Iterate ``POST /permissions/query/personal/grants`` (own permissions in the current context)."""
        offset = 0
        while True:
            data = self._api("POST", "/permissions/query/personal/grants",
                             params={"pageOffset": offset, "pageSize": page_size}, json_body={}).data or {}
            yield from data.get("permissions") or ()
            if not data.get("hasMore"):
                return
            offset += 1

    def current_permissions(self):
        """What the current credential may do in the current context.

        Returns ``{"permissions": sorted list, "source": ..., "owner": bool, "missing": {...}}`` where
        ``source`` is ``token`` (KSeF-token login: the token's frozen permissions from ``GET /tokens``),
        ``owner`` (certificate whose NIP is the context NIP), ``grants`` (personal grants query) or
        ``jwt`` (claims of the access token). ``missing`` lists which of InvoiceWrite/InvoiceRead are
        absent, for the Odoo settings warning.
        """
        self.access_token()
        tokens = self._tokens
        found, source, owner = set(), None, False
        if isinstance(self.credential, KsefTokenCredential) or (tokens and tokens.method == "Token"):
            try:
                items = list(self.list_tokens(status="Active"))
            except (ForbiddenError, ApiError) as exc:
                _logger.info("cannot list KSeF tokens (%s)", exc.code)
                items = []
            if len(items) == 1:
                found.update(items[0].get("requestedPermissions") or ())
                source = "token"
        if source is None and isinstance(self.credential, CertificateCredential) and self.context is not None:
            ident = self.credential.subject_identifier
            if ident and ident[0] == "Nip" and self.context.type == "Nip" and ident[1] == self.context.value:
                found.update(OWNER_PERMISSIONS)
                source, owner = "owner", True
        if source is None:
            try:
                for grant in self.personal_permissions():
                    if grant.get("permissionState", "Active") == "Active" and grant.get("permissionScope"):
                        found.add(grant["permissionScope"])
                source = "grants"
            except (ForbiddenError, ApiError) as exc:
                _logger.info("cannot query personal permissions (%s)", exc.code)
        if not found and tokens is not None:
            claims = jwt_claims(tokens.access_token)
            for key in ("perms", "permissions", "per", "roles"):
                value = claims.get(key)
                if isinstance(value, str):
                    value = [value]
                if isinstance(value, list):
                    found.update(str(v) for v in value)
                    source = "jwt"
        return {
            "permissions": sorted(found),
            "source": source,
            "owner": owner,
            "missing": sorted({"InvoiceWrite", "InvoiceRead"} - found),
        }

    # ------------------------------------------------------------------ status service
    @property
    def latarnia(self):
        if self._latarnia is None:
            if not self.environment.latarnia_url:
                raise ApiError("no status service known for %s" % self.environment.name, code="no_latarnia")
            self._latarnia = LatarniaClient(self.environment.latarnia_url, http=self.transport.http)
        return self._latarnia

    def service_status(self):
        """Latarnia status: ``{"status": AVAILABLE|MAINTENANCE|FAILURE|TOTAL_FAILURE, "messages": [...]}``."""
        return self.latarnia.status()

    # ------------------------------------------------------------------ sessions & receiving (delegates)
    def open_online_session(self, form_code="FA3", **kw):
        from .sessions import OnlineSession
        return OnlineSession.open(self, form_code, **kw)

    def resume_online_session(self, state):
        from .sessions import OnlineSession
        return OnlineSession.from_dict(self, state)

    def open_batch_session(self, package, form_code="FA3", **kw):
        from .sessions import BatchSession
        return BatchSession.open(self, package, form_code, **kw)

    def resume_batch_session(self, state):
        from .sessions import BatchSession
        return BatchSession.from_dict(self, state)

    def send_batch(self, invoices, form_code="FA3", **kw):
        from .sessions import send_batch
        return send_batch(self, invoices, form_code, **kw)

    def session_status(self, reference_number):
        """``GET /sessions/{ref}`` (any session type)."""
        return self._api("GET", "/sessions/%s" % reference_number, required=("status",)).data

    def list_sessions(self, session_type="Online", page_size=None, **filters):
        """Iterate ``GET /sessions`` (``session_type`` Online|Batch; filters as in the API, e.g. statuses)."""
        params = {"sessionType": session_type}
        if page_size:
            params["pageSize"] = page_size
        params.update({k: v for k, v in filters.items() if v is not None})
        return self._continuation("/sessions", "sessions", params=params)

    def session(self, reference_number):
        """A read-only handle on any session (status, invoice lists, UPO) without its key."""
        from .sessions import SessionHandle
        return SessionHandle(self, reference_number)

    def query_invoice_metadata(self, filters, page_offset=0, page_size=250, sort_order="Asc"):
        from .receive import query_invoice_metadata
        return query_invoice_metadata(self, filters, page_offset, page_size, sort_order)

    def iter_invoice_metadata(self, filters, **kw):
        from .receive import iter_invoice_metadata
        return iter_invoice_metadata(self, filters, **kw)

    def download_invoice(self, ksef_number):
        from .receive import download_invoice
        return download_invoice(self, ksef_number)

    def export_invoices(self, filters, **kw):
        from .receive import InvoiceExport
        return InvoiceExport.start(self, filters, **kw)

    def incremental_sync(self, subject_type="Subject2", cursor=None, **kw):
        from .receive import IncrementalSync
        return IncrementalSync(self, subject_type, cursor, **kw)


def _normalize_policy(policy):
    if not policy:
        return None
    if "allowedIps" not in policy:
        policy = {"allowedIps": policy}
    ips = {k: list(v) for k, v in (policy.get("allowedIps") or {}).items() if v}
    return {"allowedIps": ips} if ips else None


def token_expiry_summary(tokens, now=None):
    """Human summary (no secrets) of a token state dict, for CLIs and logs."""
    if not tokens:
        return "not authenticated"
    state = tokens if isinstance(tokens, AuthTokens) else AuthTokens.from_dict(tokens)
    now = now or utcnow()
    parts = []
    exp = state.access_expires_at
    if exp:
        parts.append("access token valid for %s" % _delta(exp - now))
    rexp = state.refresh_expires_at
    if rexp:
        parts.append("refresh token valid for %s" % _delta(rexp - now))
    return ", ".join(parts) or "tokens present"


def _delta(delta):
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0 s (expired)"
    return str(datetime.timedelta(seconds=seconds))
