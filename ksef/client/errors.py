"""Client-specific refinements of :mod:`ksef.errors` (all are subclasses of the lead's hierarchy)."""
from ..errors import AuthenticationError, OperationFailed, RequestTimeout, TransportError


class AuthenticationFailed(AuthenticationError):
    """The authentication operation ended with a failure status (415, 425, 450, 460, 470, 480, 500, 550).

    ``status_code``/``description``/``details``: KSeF's ``status`` of ``GET /auth/{referenceNumber}``.
    """

    code = "auth_failed"

    def __init__(self, message="", *, status_code=None, description=None, **kw):
        self.status_code = status_code
        self.description = description
        params = dict(kw.pop("params", None) or {})
        params.update({"status_code": status_code, "description": description})
        super().__init__(message, params=params, **kw)


class OperationPending(RequestTimeout):
    """An asynchronous KSeF operation is still running after the wait limit; ask again later."""

    code = "operation_pending"


class SendUnresolved(TransportError):
    """A send failed ambiguously and the session could not be checked yet.

    The invoice stays *pending* in the session object (``session.pending``); call
    ``session.resolve_pending()`` later — never resend it by hand.
    """

    code = "send_unresolved"

    def __init__(self, message="", *, invoice_hash=None, **kw):
        self.invoice_hash = invoice_hash
        super().__init__(message, **kw)


class InvoiceRejected(OperationFailed):
    """KSeF processed the invoice and rejected it (status ≥ 400 of the session invoice)."""

    code = "invoice_rejected"

    def __init__(self, message="", *, original_ksef_number=None, invoice_reference=None, **kw):
        self.original_ksef_number = original_ksef_number
        self.invoice_reference = invoice_reference
        super().__init__(message, **kw)


class DuplicateInvoice(InvoiceRejected):
    """Status 440: the invoice already is in KSeF; ``original_ksef_number`` is its number."""

    code = "invoice_duplicate"
