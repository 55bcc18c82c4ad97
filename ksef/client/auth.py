"""Authentication values: context identifier, credentials and the persisted token state.

:class:`AuthTokens` is the state an Odoo company stores server-side between cron runs; its
:meth:`AuthTokens.to_dict` format is::

    {"version": 1,
     "referenceNumber": "20251010-AU-…",            # auth operation reference (may be None)
     "contextIdentifier": {"type": "Nip", "value": "1234567890"},
     "accessToken": {"token": "<JWT>", "validUntil": "2025-10-10T12:30:00.000Z"},
     "refreshToken": {"token": "<JWT>", "validUntil": "2025-10-17T12:15:00.000Z"} | null,
     "authenticationMethod": "Token" | "Certificate" | None}

Tokens never appear in ``repr``/``str`` of these objects.
"""
import datetime
from dataclasses import dataclass, field

from .. import crypto
from ..errors import CredentialError
from .util import format_datetime, jwt_expiry, parse_datetime, redacted, utcnow

CONTEXT_TYPES = ("Nip", "InternalId", "NipVatUe", "PeppolId")


@dataclass(frozen=True)
class ContextIdentifier:
    """The login context: ``type`` in ``Nip``/``InternalId``/``NipVatUe``/``PeppolId``."""

    type: str
    value: str

    def __post_init__(self):
        if self.type not in CONTEXT_TYPES:
            raise ValueError("unknown context type %r (expected one of %s)" % (self.type, ", ".join(CONTEXT_TYPES)))
        if not self.value or not str(self.value).strip():
            raise ValueError("empty %s context identifier" % self.type)
        object.__setattr__(self, "value", str(self.value).strip())

    @classmethod
    def nip(cls, nip):
        return cls("Nip", nip)

    @classmethod
    def coerce(cls, value):
        """Accept a ContextIdentifier, ``{"type","value"}``, ``("Nip", "...")`` or a bare NIP string."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(value["type"], value["value"])
        if isinstance(value, (tuple, list)):
            return cls(*value)
        return cls("Nip", str(value))

    def to_dict(self):
        return {"type": self.type, "value": self.value}

    def __str__(self):
        return "%s:%s" % (self.type, self.value)


class KsefTokenCredential:
    """A KSeF token (secret) — ``POST /auth/ksef-token``."""

    method = "Token"

    def __init__(self, token):
        token = (token or "").strip()
        if not token:
            raise CredentialError("the KSeF token is empty", code="ksef_token_empty")
        self._token = token

    @property
    def token(self):
        return self._token

    def secrets(self):
        return (self._token,)

    def __repr__(self):
        return "<KsefTokenCredential token=<redacted>>"


class CertificateCredential:
    """A certificate + private key for XAdES login (``POST /auth/xades-signature``).

    ``certificate``/``private_key``: PEM/DER bytes (or a PKCS#12 bundle in either) or cryptography objects;
    ``password`` decrypts the key / PKCS#12. ``subject_identifier_type``: ``certificateSubject`` (NIP/PESEL
    read from the subject) or ``certificateFingerprint``. ``verify_certificate_chain``: sent as the query
    parameter of the same name when not ``None`` (meaningful where self-signed certificates are accepted).
    """

    method = "Certificate"

    def __init__(self, certificate=None, private_key=None, password=None, *,
                 subject_identifier_type="certificateSubject", verify_certificate_chain=None,
                 signature_algorithm=None):
        if hasattr(certificate, "public_bytes") and hasattr(private_key, "sign"):
            key, cert = private_key, certificate
            if not crypto.public_keys_equal(key.public_key(), cert.public_key()):
                raise CredentialError("the private key does not match the certificate", code="key_mismatch")
        else:
            key, cert = crypto.load_credentials(certificate, private_key, password)
        self.private_key = key
        self.certificate = cert
        self.subject_identifier_type = subject_identifier_type
        self.verify_certificate_chain = verify_certificate_chain
        self.signature_algorithm = signature_algorithm

    @classmethod
    def from_files(cls, certificate_path=None, key_path=None, password=None, **kw):
        def read(path):
            if not path:
                return None
            with open(path, "rb") as fh:
                return fh.read()
        return cls(read(certificate_path), read(key_path), password, **kw)

    @property
    def subject_identifier(self):
        return crypto.certificate_subject_identifier(self.certificate)

    def secrets(self):
        return ()

    def __repr__(self):
        return "<CertificateCredential subject=%r fingerprint=%s>" % (
            crypto.certificate_common_name(self.certificate),
            crypto.certificate_fingerprint_hex(self.certificate)[:16])


@dataclass
class AuthTokens:
    """Access + refresh token state (see the module docstring for the dict format)."""

    access_token: str = field(repr=False)
    access_valid_until: datetime.datetime
    refresh_token: str | None = field(default=None, repr=False)
    refresh_valid_until: datetime.datetime | None = None
    reference_number: str | None = None
    context: ContextIdentifier | None = None
    method: str | None = None

    def __repr__(self):
        return ("AuthTokens(access_token=%s, access_valid_until=%s, refresh_token=%s, refresh_valid_until=%s, "
                "reference_number=%r, context=%s)" % (
                    redacted(self.access_token), self.access_valid_until, redacted(self.refresh_token),
                    self.refresh_valid_until, self.reference_number, self.context))

    __str__ = __repr__

    @property
    def access_expires_at(self):
        """The earlier of ``validUntil`` and the JWT ``exp``."""
        candidates = [d for d in (self.access_valid_until, jwt_expiry(self.access_token)) if d]
        return min(candidates) if candidates else None

    @property
    def refresh_expires_at(self):
        if not self.refresh_token:
            return None
        candidates = [d for d in (self.refresh_valid_until, jwt_expiry(self.refresh_token)) if d]
        return min(candidates) if candidates else None

    def access_valid(self, margin=0.0, now=None):
        now = now or utcnow()
        exp = self.access_expires_at
        return bool(self.access_token) and exp is not None and exp - datetime.timedelta(seconds=margin) > now

    def refresh_valid(self, margin=0.0, now=None):
        now = now or utcnow()
        exp = self.refresh_expires_at
        return bool(self.refresh_token) and exp is not None and exp - datetime.timedelta(seconds=margin) > now

    def to_dict(self):
        return {
            "version": 1,
            "referenceNumber": self.reference_number,
            "contextIdentifier": self.context.to_dict() if self.context else None,
            "accessToken": {"token": self.access_token, "validUntil": format_datetime(self.access_valid_until)},
            "refreshToken": ({"token": self.refresh_token,
                              "validUntil": format_datetime(self.refresh_valid_until)
                              if self.refresh_valid_until else None}
                             if self.refresh_token else None),
            "authenticationMethod": self.method,
        }

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; also accepts the raw ``AuthenticationTokensResponse``."""
        if not data:
            return None
        access = data.get("accessToken") or {}
        refresh = data.get("refreshToken") or {}
        if not access.get("token"):
            raise ValueError("token state without an access token")
        valid_until = parse_datetime(access.get("validUntil")) or jwt_expiry(access["token"])
        if valid_until is None:
            raise ValueError("token state without accessToken.validUntil")
        return cls(
            access_token=access["token"],
            access_valid_until=valid_until,
            refresh_token=refresh.get("token") or None,
            refresh_valid_until=parse_datetime(refresh.get("validUntil")) if refresh.get("token") else None,
            reference_number=data.get("referenceNumber"),
            context=ContextIdentifier.coerce(data.get("contextIdentifier")),
            method=data.get("authenticationMethod"),
        )

    def secrets(self):
        return tuple(t for t in (self.access_token, self.refresh_token) if t)
