"""KSeF API v2 client (requests + cryptography only).

Typical use::

    from ksef.client import KsefClient, KsefTokenCredential

    client = KsefClient("test", nip="1234567890", credential=KsefTokenCredential(token),
                        tokens=stored_state, on_tokens_changed=store_state)
    with client.open_online_session("FA3") as session:
        sent = session.send(xml_bytes)
    result = session.wait_for_invoice(sent.reference_number)

See :mod:`ksef.client.client` (auth, tokens, permissions), :mod:`ksef.client.sessions` (online/batch,
UPO), :mod:`ksef.client.receive` (metadata, export, incremental sync), :mod:`ksef.client.ratelimit`
(client-side budget) and :mod:`ksef.client.latarnia` (status service).
"""
from .auth import AuthTokens, CertificateCredential, ContextIdentifier, KsefTokenCredential
from .client import OWNER_PERMISSIONS, TOKEN_PERMISSIONS, KsefClient, Poller, token_expiry_summary
from .errors import AuthenticationFailed, DuplicateInvoice, InvoiceRejected, OperationPending, SendUnresolved
from .keys import KSEF_TOKEN_ENCRYPTION, SYMMETRIC_KEY_ENCRYPTION, PublicKeyCache
from .latarnia import LatarniaClient
from .ratelimit import PRODUCTION_LIMITS, RateLimiter, default_rate_limiter, endpoint_group
from .receive import ExportedInvoice, IncrementalSync, InvoiceExport, build_filters
from .sessions import (
    FORM_CODES,
    BatchPackage,
    BatchResult,
    BatchSession,
    InvoiceResult,
    OnlineSession,
    SentInvoice,
    SessionHandle,
    resolve_form_code,
    send_batch,
    send_online,
)

__all__ = [
    "FORM_CODES", "KSEF_TOKEN_ENCRYPTION", "OWNER_PERMISSIONS", "PRODUCTION_LIMITS", "SYMMETRIC_KEY_ENCRYPTION",
    "TOKEN_PERMISSIONS", "AuthTokens", "AuthenticationFailed", "BatchPackage", "BatchResult", "BatchSession",
    "CertificateCredential", "ContextIdentifier", "DuplicateInvoice", "ExportedInvoice", "IncrementalSync",
    "InvoiceExport", "InvoiceRejected", "InvoiceResult", "KsefClient", "KsefTokenCredential", "LatarniaClient",
    "OnlineSession", "OperationPending", "Poller", "PublicKeyCache", "RateLimiter", "SendUnresolved", "SentInvoice",
    "SessionHandle", "build_filters", "default_rate_limiter", "endpoint_group", "resolve_form_code", "send_batch",
    "send_online", "token_expiry_summary",
]
