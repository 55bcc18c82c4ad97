"""MF public-key certificates (``GET /security/public-key-certificates``), cached per API base URL.

``KsefTokenEncryption`` encrypts the KSeF-token auth string, ``SymmetricKeyEncryption`` wraps AES
session/export keys (DIGEST §3). Among the certificates valid now for a usage the one with the latest
``validFrom`` wins. The list is cached per base URL until ``ttl`` passes or a chosen certificate expires;
error 21470 (unknown/withdrawn key) makes the caller invalidate the cache and retry once.
"""
import datetime
import logging
import threading
from dataclasses import dataclass

from .. import crypto
from ..errors import ApiError, CredentialError, TransportError
from .util import parse_datetime, utcnow

_logger = logging.getLogger(__name__)

KSEF_TOKEN_ENCRYPTION = "KsefTokenEncryption"  # noqa: S105 - a usage name, not a secret
SYMMETRIC_KEY_ENCRYPTION = "SymmetricKeyEncryption"


@dataclass(frozen=True)
class PublicKeyCertificate:
    certificate: object          # cryptography x509.Certificate
    certificate_id: str
    public_key_id: str
    valid_from: datetime.datetime
    valid_to: datetime.datetime
    usage: tuple

    @property
    def public_key(self):
        return self.certificate.public_key()

    def is_valid(self, when):
        return self.valid_from <= when <= self.valid_to


def parse_public_key_certificates(items):
    """Parse the JSON array of ``PublicKeyCertificate``; raises :class:`TransportError` when malformed."""
    if not isinstance(items, list):
        raise TransportError("public-key certificates: expected a JSON array", code="malformed_response")
    result = []
    for item in items:
        try:
            cert = crypto.load_certificate(item["certificate"])
            result.append(PublicKeyCertificate(
                certificate=cert,
                certificate_id=item.get("certificateId") or crypto.certificate_id(cert),
                public_key_id=item.get("publicKeyId") or crypto.public_key_id(cert),
                valid_from=parse_datetime(item.get("validFrom")) or crypto.not_valid_before(cert),
                valid_to=parse_datetime(item.get("validTo")) or crypto.not_valid_after(cert),
                usage=tuple(item.get("usage") or ()),
            ))
        except (KeyError, TypeError, ValueError, CredentialError) as exc:
            raise TransportError("public-key certificates: unreadable entry (%s)" % type(exc).__name__,
                                 code="malformed_response") from None
    return result


def select_certificate(certs, usage, when=None):
    """The certificate valid at ``when`` for ``usage`` with the latest ``validFrom``."""
    when = when or utcnow()
    candidates = [c for c in certs if usage in c.usage and c.is_valid(when)]
    if not candidates:
        raise ApiError("KSeF publishes no valid public key for %s" % usage, code="no_public_key",
                       params={"usage": usage})
    return max(candidates, key=lambda c: c.valid_from)


class PublicKeyCache:
    """Thread-safe cache ``{api_url: (expires_at, [PublicKeyCertificate])}``."""

    def __init__(self, ttl=6 * 3600):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries = {}

    def get(self, api_url, fetch, usage, now=None):
        """Certificate for ``usage``; ``fetch()`` returns the JSON list when the cache is cold/expired."""
        now = now or utcnow()
        with self._lock:
            entry = self._entries.get(api_url)
        if entry is None or entry[0] <= now:
            certs = parse_public_key_certificates(fetch())
            chosen_ends = [c.valid_to for c in certs if c.is_valid(now)]
            expires = now + datetime.timedelta(seconds=self.ttl)
            if chosen_ends:
                expires = min(expires, *chosen_ends)
            entry = (expires, certs)
            with self._lock:
                self._entries[api_url] = entry
            _logger.debug("fetched %d KSeF public-key certificates", len(certs))
        return select_certificate(entry[1], usage, now)

    def invalidate(self, api_url=None):
        with self._lock:
            if api_url is None:
                self._entries.clear()
            else:
                self._entries.pop(api_url, None)


_shared_cache = PublicKeyCache()


def shared_public_key_cache():
    return _shared_cache
