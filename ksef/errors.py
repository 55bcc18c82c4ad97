"""Error hierarchy of the Odoo-free KSeF core.

The core cannot translate: every error carries a stable ``code`` and ``params`` so that the
Odoo layer can turn it into a translated message. ``str(error)`` is an English developer
message that never contains secrets (tokens, keys, passwords) nor invoice bodies.
"""
from dataclasses import asdict, dataclass, field


class KsefError(Exception):
    """Base class of every error raised by :mod:`ksef`."""

    code = "ksef_error"

    def __init__(self, message="", *, code=None, params=None):
        super().__init__(message or self.__class__.__doc__ or self.code)
        if code:
            self.code = code
        self.params = dict(params or {})

    @property
    def message(self):
        return self.args[0] if self.args else ""


# --------------------------------------------------------------------------------------------
# Validation (FA(3) model, XSD, business rules)
# --------------------------------------------------------------------------------------------

@dataclass
class ValidationIssue:
    """One problem found in an invoice.

    ``path`` is the element path in the FA(3) document (e.g. ``Fa/FaWiersz[2]/P_11``),
    ``value`` the offending value as text (or ``None``), ``code`` a stable identifier
    (e.g. ``nip_checksum``), ``message_pl`` / ``message_en`` human messages.
    ``severity`` is ``error`` (KSeF will reject) or ``warning`` (suspicious, accepted).
    """

    path: str
    code: str
    message_en: str
    message_pl: str
    value: object = None
    severity: str = "error"
    params: dict = field(default_factory=dict)

    def as_dict(self):
        return asdict(self)

    def __str__(self):
        shown = "" if self.value is None else " (value: %r)" % (self.value,)
        return "%s: %s%s" % (self.path, self.message_en, shown)


class InvoiceValidationError(KsefError):
    """The invoice is not valid FA(3)."""

    code = "invoice_invalid"

    def __init__(self, issues, message=None):
        self.issues = list(issues)
        text = message or "Invoice is invalid: %d problem(s): %s" % (
            len(self.issues), "; ".join(str(i) for i in self.issues[:5]))
        super().__init__(text, params={"count": len(self.issues)})


class XmlParseError(KsefError):
    """The document is not well-formed XML or not a supported invoice structure."""

    code = "xml_parse"


class SchemaUnavailableError(KsefError):
    """The official XSD set could not be found locally nor downloaded and verified."""

    code = "schema_unavailable"


# --------------------------------------------------------------------------------------------
# Crypto / credentials
# --------------------------------------------------------------------------------------------

class CredentialError(KsefError):
    """A certificate, private key or password cannot be used (unreadable, wrong password, mismatch)."""

    code = "credential_invalid"


class SignatureError(KsefError):
    """An XML signature or QR signature is invalid."""

    code = "signature_invalid"


# --------------------------------------------------------------------------------------------
# API (client side). The sandbox produces the same status codes on the wire.
# --------------------------------------------------------------------------------------------

class ApiError(KsefError):
    """KSeF answered with an error.

    ``http_status``: HTTP status; ``exception_codes``: list of KSeF ``exceptionCode`` ints
    (or the ``status.code`` of problem details); ``details``: list of detail strings
    (already scrubbed of secrets); ``reference_number``: KSeF's reference of the failing
    request, if any.
    """

    code = "api_error"

    def __init__(self, message="", *, http_status=None, exception_codes=None, details=None,
                 reference_number=None, body=None, code=None, params=None):
        self.http_status = http_status
        self.exception_codes = list(exception_codes or [])
        self.details = list(details or [])
        self.reference_number = reference_number
        self.body = body
        params = dict(params or {})
        params.setdefault("http_status", http_status)
        params.setdefault("exception_codes", self.exception_codes)
        super().__init__(message, code=code, params=params)

    @property
    def exception_code(self):
        return self.exception_codes[0] if self.exception_codes else None


class TransportError(ApiError):
    """No usable HTTP answer (connection refused, DNS, TLS, malformed response)."""

    code = "transport"


class RequestTimeout(TransportError):
    """The request timed out: the server may or may not have processed it."""

    code = "timeout"


class BadRequestError(ApiError):
    """HTTP 400 — KSeF rejected the request (see ``exception_codes``)."""

    code = "bad_request"


class AuthenticationError(ApiError):
    """HTTP 401 or a failed authentication operation (status 4xx of /auth/{ref})."""

    code = "unauthorized"


class ForbiddenError(ApiError):
    """HTTP 403 — the credential lacks the permission for this operation."""

    code = "forbidden"


class NotFoundError(ApiError):
    """HTTP 404."""

    code = "not_found"


class GoneError(ApiError):
    """HTTP 410 — the object's retention expired."""

    code = "gone"


class RateLimitError(ApiError):
    """HTTP 429 — rate limit exceeded; ``retry_after`` is in seconds."""

    code = "rate_limited"

    def __init__(self, message="", *, retry_after=None, **kw):
        self.retry_after = retry_after
        super().__init__(message, **kw)


class ServerError(ApiError):
    """HTTP 5xx — KSeF failed; safe to retry idempotent calls later."""

    code = "server_error"


class ServiceUnavailableError(ServerError):
    """KSeF is in maintenance or failure (HTTP 503 or status service says so)."""

    code = "unavailable"


class OperationFailed(ApiError):
    """An asynchronous operation ended with a failure status (e.g. session 445, export 415)."""

    code = "operation_failed"

    def __init__(self, message="", *, status_code=None, description=None, **kw):
        self.status_code = status_code
        self.description = description
        super().__init__(message, **kw)
