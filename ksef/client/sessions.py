"""Online (interactive) and batch sessions: send invoices, follow statuses, fetch UPO.

Persisted session state (``OnlineSession.to_dict()``) — the AES key is in it, store it like a secret::

    {"version": 1, "type": "online", "referenceNumber": "20250626-SO-…", "validUntil": "…Z",
     "formCode": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
     "symmetricKey": "<b64 32 bytes>", "initializationVector": "<b64 16 bytes>",
     "sent": {"<invoiceHash b64>": "<invoice referenceNumber>", …},
     "pending": {"<invoiceHash b64>": {"since": "…Z", "reason": "timeout"}, …},
     "closed": false}

``BatchSession.to_dict()`` has ``"type": "batch"``, the same key fields, ``partUploadRequests``,
``uploadedParts`` (ordinal numbers), ``offlineMode``, ``invoiceCount`` and ``closed``.

Exactly-once sending (online): an invoice is identified by the SHA-256 of its bytes. A send that fails
ambiguously (timeout after the request was written, connection reset, 5xx, malformed 2xx) is resolved
by looking the hash up in the session's invoice list — never by resending blindly. Only when the list
(read successfully after a grace period) provably does not contain it, the invoice is sent again.
Sending the same bytes twice through one session object returns the first reference.
"""
import hashlib
import io
import logging
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field

from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .. import crypto
from ..errors import ApiError, BadRequestError, NotFoundError, ServerError, TransportError
from . import keys
from .errors import DuplicateInvoice, InvoiceRejected, OperationPending, SendUnresolved
from .util import format_datetime, parse_datetime, utcnow

_logger = logging.getLogger(__name__)

FORM_CODES = {
    "FA3": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
    "FA2": {"systemCode": "FA (2)", "schemaVersion": "1-0E", "value": "FA"},
    "FA_RR1": {"systemCode": "FA_RR (1)", "schemaVersion": "1-1E", "value": "FA_RR"},
    "PEF3": {"systemCode": "PEF (3)", "schemaVersion": "2-1", "value": "PEF"},
    "PEF_KOR3": {"systemCode": "PEF_KOR (3)", "schemaVersion": "2-1", "value": "PEF"},
}

MAX_INVOICES_PER_SESSION = 10_000
MAX_PART_SIZE = 100_000_000          # 100 MB before encryption (DIGEST §7)
MAX_PARTS = 50
MAX_BATCH_SIZE = 5_000_000_000
SESSION_IN_PROGRESS = (100, 150, 170)


def resolve_form_code(value="FA3"):
    """``FormCode`` dict from ``"FA3"``, ``"FA (3)"``, ``"fa2"``, ``"PEF_KOR3"``… or a dict."""
    if isinstance(value, dict):
        missing = [k for k in ("systemCode", "schemaVersion", "value") if not value.get(k)]
        if missing:
            raise ValueError("form code lacks %s" % ", ".join(missing))
        return {k: value[k] for k in ("systemCode", "schemaVersion", "value")}
    key = str(value or "").upper().replace(" ", "").replace("(", "").replace(")", "")
    if key not in FORM_CODES:
        raise ValueError("unknown form code %r (known: %s)" % (value, ", ".join(FORM_CODES)))
    return dict(FORM_CODES[key])


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------

@dataclass
class InvoiceResult:
    """Status of one invoice in a session (``SessionInvoiceStatusResponse``)."""

    reference_number: str
    status_code: int | None
    description: str | None = None
    details: list = field(default_factory=list)
    ksef_number: str | None = None
    invoice_hash: str | None = None
    invoice_number: str | None = None
    ordinal_number: int | None = None
    invoice_file_name: str | None = None
    acquisition_date: str | None = None
    invoicing_date: str | None = None
    permanent_storage_date: str | None = None
    invoicing_mode: str | None = None
    upo_download_url: str | None = field(default=None, repr=False)
    upo_download_url_expiration_date: str | None = None
    extensions: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data):
        status = data.get("status") or {}
        return cls(
            reference_number=data.get("referenceNumber"),
            status_code=status.get("code"),
            description=status.get("description"),
            details=list(status.get("details") or ()),
            extensions=dict(status.get("extensions") or {}),
            ksef_number=data.get("ksefNumber"),
            invoice_hash=data.get("invoiceHash"),
            invoice_number=data.get("invoiceNumber"),
            ordinal_number=data.get("ordinalNumber"),
            invoice_file_name=data.get("invoiceFileName"),
            acquisition_date=data.get("acquisitionDate"),
            invoicing_date=data.get("invoicingDate"),
            permanent_storage_date=data.get("permanentStorageDate"),
            invoicing_mode=data.get("invoicingMode"),
            upo_download_url=data.get("upoDownloadUrl"),
            upo_download_url_expiration_date=data.get("upoDownloadUrlExpirationDate"),
            raw=data,
        )

    @property
    def is_final(self):
        return self.status_code is not None and self.status_code >= 200

    @property
    def is_success(self):
        return self.status_code == 200

    @property
    def is_duplicate(self):
        return self.status_code == 440

    @property
    def original_ksef_number(self):
        return self.extensions.get("originalKsefNumber")

    @property
    def original_session_reference_number(self):
        return self.extensions.get("originalSessionReferenceNumber")

    def raise_for_status(self):
        """Raise :class:`DuplicateInvoice` (440) or :class:`InvoiceRejected` (other ≥ 400)."""
        if self.status_code is None or self.status_code < 400:
            return self
        cls = DuplicateInvoice if self.is_duplicate else InvoiceRejected
        text = "; ".join(self.details[:3]) if self.details else ""
        raise cls("KSeF rejected invoice %s: status %s %s%s%s" % (
            self.reference_number, self.status_code, self.description or "", (" (%s)" % text) if text else "",
            (", original KSeF number %s" % self.original_ksef_number) if self.original_ksef_number else ""),
            status_code=self.status_code, description=self.description, details=self.details,
            original_ksef_number=self.original_ksef_number, invoice_reference=self.reference_number,
            exception_codes=[self.status_code])


@dataclass
class SentInvoice:
    """Outcome of :meth:`OnlineSession.send`.

    ``how``: ``sent`` (202 received), ``already_sent`` (same bytes sent before through this session),
    ``found_by_hash`` (ambiguous failure, found in the session list), ``resent`` (ambiguous failure, provably
    absent, sent again).
    """

    reference_number: str
    invoice_hash: str
    invoice_size: int
    how: str = "sent"


# ------------------------------------------------------------------------------------------------
# read-only session handle
# ------------------------------------------------------------------------------------------------

class SessionHandle:
    """Status, invoice lists and UPO of a session known by reference number only."""

    kind = None

    def __init__(self, client, reference_number):
        self.client = client
        self.reference_number = reference_number

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self.reference_number)

    @property
    def _base(self):
        return "/sessions/%s" % self.reference_number

    def status(self):
        """``GET /sessions/{ref}``: ``{status{code,description,details}, invoiceCount, successfulInvoiceCount,
        failedInvoiceCount, upo{pages[]}, validUntil, dateCreated, dateUpdated}``."""
        return self.client.session_status(self.reference_number)

    def wait(self, timeout=600.0):
        """Poll the session until processing ends (status ≥ 200, not 100/150/170); return the status."""
        return self.client._poll(self.status,
                                 lambda s: (s.get("status") or {}).get("code") not in SESSION_IN_PROGRESS,
                                 timeout=timeout, what="session processing", reference=self.reference_number)

    def invoices(self, page_size=1000):
        """Iterate :class:`InvoiceResult` of every invoice of the session (continuation tokens)."""
        return self._list(self._base + "/invoices", page_size)

    def failed_invoices(self, page_size=1000):
        return self._list(self._base + "/invoices/failed", page_size)

    def _list(self, path, page_size):
        for item in self.client._continuation(path, "invoices", params={"pageSize": page_size}):
            yield InvoiceResult.from_api(item)

    def invoice_status(self, invoice_reference):
        data = self.client._api("GET", "%s/invoices/%s" % (self._base, invoice_reference),
                                required=("referenceNumber", "status")).data
        return InvoiceResult.from_api(data)

    def find_invoice_by_hash(self, invoice_hash):
        """The session's invoice whose ``invoiceHash`` is ``invoice_hash`` (``None`` if absent)."""
        for result in self.invoices():
            if result.invoice_hash == invoice_hash:
                return result
        return None

    def wait_for_invoices(self, references=None, timeout=600.0):
        """Wait until the given invoices (default: all of the session) have a final status.

        Few invoices are polled one by one (``GET …/invoices/{ref}``); many through the session list.
        Returns ``{reference_number: InvoiceResult}``.
        """
        refs = list(references) if references is not None else None
        results = {}

        def fetch():
            if refs is not None and len(refs) - len(results) <= 5:
                for ref in refs:
                    if ref not in results or not results[ref].is_final:
                        results[ref] = self.invoice_status(ref)
            else:
                for item in self.invoices():
                    if refs is None or item.reference_number in refs:
                        results[item.reference_number] = item
            return results

        def done(res):
            wanted = refs if refs is not None else list(res)
            return all(r in res and res[r].is_final for r in wanted)

        return self.client._poll(fetch, done, timeout=timeout, what="invoice processing",
                                 reference=self.reference_number)

    def wait_for_invoice(self, invoice_reference, timeout=300.0):
        return self.wait_for_invoices([invoice_reference], timeout=timeout)[invoice_reference]

    # ------------------------------------------------------------------ UPO
    def upo_pages(self, status=None):
        status = status or self.status()
        return list(((status.get("upo") or {}).get("pages")) or ())

    def session_upo(self, timeout=120.0, via_url=True):
        """The collective UPO of a closed, processed session: list of XML bytes (one per page).

        Waits up to ``timeout`` seconds for the UPO to be generated. Downloads the pre-signed
        ``downloadUrl`` without the bearer token; falls back to ``GET /sessions/{ref}/upo/{upoRef}``.
        """
        status = self.client._poll(self.status, lambda s: bool(self.upo_pages(s)) or (
            (s.get("status") or {}).get("code") not in (*SESSION_IN_PROGRESS, 200)),
            timeout=timeout, what="session UPO", reference=self.reference_number)
        pages = self.upo_pages(status)
        if not pages:
            code = (status.get("status") or {}).get("code")
            raise ApiError("session %s has no UPO (status %s)" % (self.reference_number, code), code="no_upo",
                           params={"status_code": code})
        out = []
        for page in pages:
            out.append(self._fetch_upo(page.get("downloadUrl") if via_url else None,
                                       "%s/upo/%s" % (self._base, page.get("referenceNumber"))))
        return out

    def invoice_upo(self, invoice_reference=None, ksef_number=None, via_url=True, timeout=120.0):
        """UPO XML of one invoice, by invoice reference or KSeF number; waits while it is not generated yet.

        With ``via_url`` (and an invoice reference) the pre-signed ``upoDownloadUrl`` is used, without
        the bearer token; otherwise ``GET /sessions/{ref}/invoices/{invRef}/upo`` or ``…/ksef/{n}/upo``.
        """
        if not invoice_reference and not ksef_number:
            raise ValueError("give an invoice reference or a KSeF number")
        if invoice_reference:
            path = "%s/invoices/%s/upo" % (self._base, invoice_reference)
        else:
            path = "%s/invoices/ksef/%s/upo" % (self._base, ksef_number)

        def attempt():
            url = None
            if via_url and invoice_reference:
                result = self.invoice_status(invoice_reference)
                if result.status_code is not None and result.status_code >= 400:
                    raise ApiError("invoice %s was rejected (status %s): it has no UPO" % (
                        invoice_reference, result.status_code), code="no_upo",
                        params={"status_code": result.status_code})
                if not result.is_final:
                    return None
                url = result.upo_download_url
            try:
                return self._fetch_upo(url, path)
            except (BadRequestError, NotFoundError) as exc:
                if exc.http_status == 404 or 21178 in exc.exception_codes:
                    return None
                raise
        upo = self.client._poll(attempt, lambda r: r is not None, timeout=timeout, what="invoice UPO",
                                reference=invoice_reference or ksef_number)
        return upo

    def _fetch_upo(self, url, api_path):
        if url:
            try:
                resp = self.client.transport.call_url("GET", url, safe=True)
                return _checked_upo(resp)
            except (NotFoundError, ApiError) as exc:
                if getattr(exc, "http_status", None) not in (403, 404, 410):
                    raise
                _logger.info("pre-signed UPO URL refused (HTTP %s): using the API", exc.http_status)
        resp = self.client._api("GET", api_path, expect_json=False, headers={"Accept": "application/xml"})
        return _checked_upo(resp)


def _checked_upo(resp):
    content = resp.content
    expected = resp.headers.get("x-ms-meta-hash")
    if expected and crypto.sha256_b64(content) != expected:
        raise TransportError("UPO does not match its x-ms-meta-hash", code="download_corrupt")
    if not content or not content.lstrip().startswith(b"<"):
        raise TransportError("UPO answer is not XML", code="malformed_response")
    return content


# ------------------------------------------------------------------------------------------------
# online session
# ------------------------------------------------------------------------------------------------

class OnlineSession(SessionHandle):
    """An open interactive session (``POST /sessions/online``). Use :meth:`KsefClient.open_online_session`."""

    kind = "online"

    def __init__(self, client, reference_number, form_code, key, iv, *, valid_until=None, sent=None, pending=None,
                 closed=False):
        super().__init__(client, reference_number)
        self.form_code = form_code
        self._key = key
        self._iv = iv
        self.valid_until = valid_until
        self.sent = dict(sent or {})
        self.pending = dict(pending or {})
        self.closed = closed
        client.transport.secrets.add(crypto.b64encode(key))

    def __repr__(self):
        return "<OnlineSession %s form=%s sent=%d pending=%d key=<redacted>>" % (
            self.reference_number, self.form_code.get("systemCode"), len(self.sent), len(self.pending))

    @classmethod
    def open(cls, client, form_code="FA3"):
        form = resolve_form_code(form_code)
        key, iv = crypto.new_symmetric_key()

        def op(cert):
            body = {"formCode": form, "encryption": client.encryption_info(key, iv, cert)}
            # an orphan empty session is harmless (auto-closed, no invoices): opening is retry-safe
            return client._api("POST", "/sessions/online", json_body=body, safe=True,
                               required=("referenceNumber",)).data
        data = client.with_public_key(keys.SYMMETRIC_KEY_ENCRYPTION, op)
        session = cls(client, data["referenceNumber"], form, key, iv, valid_until=data.get("validUntil"))
        _logger.info("opened KSeF online session %s (%s)", session.reference_number, form["systemCode"])
        return session

    def to_dict(self, include_sent=True):
        return {
            "version": 1,
            "type": "online",
            "referenceNumber": self.reference_number,
            "validUntil": self.valid_until,
            "formCode": dict(self.form_code),
            "symmetricKey": crypto.b64encode(self._key),
            "initializationVector": crypto.b64encode(self._iv),
            "sent": dict(self.sent) if include_sent else {},
            "pending": dict(self.pending),
            "closed": self.closed,
        }

    @classmethod
    def from_dict(cls, client, data):
        if data.get("type", "online") != "online":
            raise ValueError("not an online session state")
        return cls(client, data["referenceNumber"], resolve_form_code(data["formCode"]),
                   crypto.b64decode(data["symmetricKey"]), crypto.b64decode(data["initializationVector"]),
                   valid_until=data.get("validUntil"), sent=data.get("sent"), pending=data.get("pending"),
                   closed=bool(data.get("closed")))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.closed:
            try:
                self.close()
            except ApiError:
                if exc_type is None:
                    raise
                _logger.warning("could not close KSeF session %s after an error", self.reference_number)

    @property
    def expired(self):
        until = parse_datetime(self.valid_until) if self.valid_until else None
        return until is not None and until <= utcnow()

    def build_send_request(self, xml, offline_mode=False, hash_of_corrected_invoice=None):
        """The ``SendInvoiceRequest`` body (encrypts ``xml`` with the session key)."""
        if isinstance(xml, str):
            raise TypeError("send the invoice as bytes (exactly the bytes to hash and store), not str")
        encrypted = crypto.aes_cbc_encrypt(self._key, self._iv, xml)
        body = {
            "invoiceHash": crypto.sha256_b64(xml),
            "invoiceSize": len(xml),
            "encryptedInvoiceHash": crypto.sha256_b64(encrypted),
            "encryptedInvoiceSize": len(encrypted),
            "encryptedInvoiceContent": crypto.b64encode(encrypted),
            "offlineMode": bool(offline_mode),
        }
        if hash_of_corrected_invoice:
            body["hashOfCorrectedInvoice"] = hash_of_corrected_invoice
        return body

    def send(self, xml, *, offline_mode=False, hash_of_corrected_invoice=None, max_attempts=3):
        """Send one invoice (bytes); return :class:`SentInvoice` once KSeF holds it exactly once.

        Raises :class:`SendUnresolved` when an ambiguous failure could not be checked against the
        session (the invoice stays in ``self.pending``; call :meth:`resolve_pending` later).
        """
        if self.closed:
            raise ApiError("session %s is closed" % self.reference_number, code="session_closed")
        invoice_hash = crypto.sha256_b64(xml)
        if invoice_hash in self.sent:
            return SentInvoice(self.sent[invoice_hash], invoice_hash, len(xml), "already_sent")
        if invoice_hash in self.pending:
            found = self._lookup(invoice_hash)
            if found is not None:
                return self._done(found, invoice_hash, xml, "found_by_hash")
        body = self.build_send_request(xml, offline_mode, hash_of_corrected_invoice)
        how = "sent"
        for attempt in range(max_attempts):
            try:
                data = self.client._api("POST", "%s/invoices" % self._online_base, json_body=body, safe=False,
                                        required=("referenceNumber",)).data
            except (TransportError, ServerError) as exc:
                if not _is_ambiguous(exc):
                    raise
                self.pending[invoice_hash] = {"since": format_datetime(utcnow()), "reason": exc.code}
                _logger.warning("KSeF send of invoice %s in session %s failed ambiguously (%s): checking the "
                                "session by hash", invoice_hash, self.reference_number, exc.code)
                found = self._resolve_ambiguous(invoice_hash)
                if found is not None:
                    return self._done(found, invoice_hash, xml, "found_by_hash")
                if attempt + 1 >= max_attempts:
                    raise SendUnresolved("invoice %s: send failed %d times and the session does not have it" % (
                        invoice_hash, max_attempts), invoice_hash=invoice_hash,
                        params={"invoice_hash": invoice_hash, "session": self.reference_number}) from None
                _logger.warning("invoice %s is provably not in session %s: sending it again", invoice_hash,
                                self.reference_number)
                how = "resent"
                continue
            return self._done(data["referenceNumber"], invoice_hash, xml, how)
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _online_base(self):
        return "/sessions/online/%s" % self.reference_number

    def _done(self, reference, invoice_hash, xml, how):
        self.pending.pop(invoice_hash, None)
        self.sent[invoice_hash] = reference
        _logger.debug("invoice %s in session %s: %s (%s)", invoice_hash, self.reference_number, reference, how)
        return SentInvoice(reference, invoice_hash, len(xml), how)

    def _lookup(self, invoice_hash):
        result = self.find_invoice_by_hash(invoice_hash)
        return result.reference_number if result is not None else None

    def _resolve_ambiguous(self, invoice_hash):
        """Reference of the invoice if the session has it; ``None`` if provably absent; else raise."""
        delays = self.client.send_resolve_delays or (0.0,)
        last_error = None
        for index, delay in enumerate(delays):
            if delay:
                self.client.sleep(delay)
            try:
                found = self._lookup(invoice_hash)
            except ApiError as exc:
                last_error = exc
                _logger.info("cannot list session %s yet (%s)", self.reference_number, exc.code)
                continue
            if found is not None:
                return found
            if index == len(delays) - 1:
                return None          # read successfully after the whole grace period: not there
            last_error = None
        raise SendUnresolved("invoice %s: the send failed ambiguously and session %s cannot be checked now (%s)" % (
            invoice_hash, self.reference_number, last_error.code if last_error else "unknown"),
            invoice_hash=invoice_hash, params={"invoice_hash": invoice_hash, "session": self.reference_number})

    def resolve_pending(self):
        """Check every pending invoice against the session list.

        Returns ``{invoice_hash: reference_number | None}``; ``None`` means KSeF provably does not have it
        (it is removed from ``pending`` and may be sent again).
        """
        if not self.pending:
            return {}
        present = {}
        for result in self.invoices():
            if result.invoice_hash in self.pending:
                present[result.invoice_hash] = result.reference_number
        out = {}
        for invoice_hash in list(self.pending):
            ref = present.get(invoice_hash)
            self.pending.pop(invoice_hash, None)
            if ref:
                self.sent[invoice_hash] = ref
            out[invoice_hash] = ref
        return out

    def close(self):
        """``POST /sessions/online/{ref}/close`` (idempotent: an already-closed session is fine)."""
        if self.closed:
            return
        _close(self, "%s/close" % self._online_base)
        self.closed = True
        _logger.info("closed KSeF online session %s (%d invoices)", self.reference_number, len(self.sent))


def _is_ambiguous(exc):
    """Whether an unsafe call may have been processed: explicit ``ambiguous`` flag of the transport (``False``
    for a 503 with Retry-After, a refusal before processing), else any 5xx."""
    flag = getattr(exc, "ambiguous", None)
    return isinstance(exc, ServerError) if flag is None else bool(flag)


def _close(session, path):
    try:
        session.client._api("POST", path, safe=False, expect_json=False)
        return
    except (TransportError, ServerError, BadRequestError) as exc:
        ambiguous = _is_ambiguous(exc)
        if not ambiguous and 21180 not in exc.exception_codes:
            raise
        code = (session.status().get("status") or {}).get("code")
        if code not in (100,):
            return          # already closing / closed / processed
        if not ambiguous:
            raise
    session.client._api("POST", path, safe=False, expect_json=False)


# ------------------------------------------------------------------------------------------------
# batch
# ------------------------------------------------------------------------------------------------

class _StreamEncryptor:
    def __init__(self, key, iv):
        self._enc = Cipher(algorithms.AES(key), modes.CBC(iv), backend=default_backend()).encryptor()
        self._pad = padding.PKCS7(128).padder()

    def update(self, data):
        return self._enc.update(self._pad.update(data))

    def finalize(self):
        return self._enc.update(self._pad.finalize()) + self._enc.finalize()


@dataclass
class PackagePart:
    ordinal_number: int
    fileobj: object = field(repr=False)
    size: int            # encrypted size (sent as fileSize)
    hash: str            # SHA-256 of the encrypted part (sent as fileHash)
    plain_size: int


class BatchPackage:
    """A zip (or tar.gz) of invoice files, split into encrypted parts held in spooled temp files.

    Memory stays bounded: the archive and the parts spill to disk above ``spool_size`` bytes.
    ``invoices`` maps each invoice's SHA-256 (Base64) to its file name in the archive.
    """

    def __init__(self, key, iv, *, part_size=MAX_PART_SIZE, compression="Zip", spool_size=32 << 20):
        if not 16 <= part_size <= MAX_PART_SIZE:
            raise ValueError("part_size must be between 16 bytes and 100 MB")
        if compression not in ("Zip", "TarGz"):
            raise ValueError("compression must be Zip or TarGz")
        self._key, self._iv = key, iv
        self.part_size = part_size
        self.compression = compression
        self.spool_size = spool_size
        self.file_size = 0
        self.file_hash = None
        self.parts = []
        self.invoices = {}

    def __repr__(self):
        return "<BatchPackage %d invoices, %d bytes, %d parts>" % (len(self.invoices), self.file_size, len(self.parts))

    @classmethod
    def build(cls, invoices, key=None, iv=None, **kw):
        """Archive ``invoices`` (iterable of bytes or ``(file_name, bytes)``), split and encrypt the parts."""
        if key is None or iv is None:
            key, iv = crypto.new_symmetric_key()
        package = cls(key, iv, **kw)
        archive = tempfile.SpooledTemporaryFile(max_size=package.spool_size)
        names = set()
        if package.compression == "Zip":
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                for name, data in package._items(invoices, names):
                    zf.writestr(name, data)
        else:
            with tarfile.open(fileobj=archive, mode="w:gz") as tf:
                for name, data in package._items(invoices, names):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mtime = int(time.time())
                    tf.addfile(info, io.BytesIO(data))
        if not package.invoices:
            raise ValueError("a batch needs at least one invoice")
        if len(package.invoices) > MAX_INVOICES_PER_SESSION:
            raise ValueError("a batch session holds at most %d invoices" % MAX_INVOICES_PER_SESSION)
        package._split(archive)
        return package

    def _items(self, invoices, names):
        for index, item in enumerate(invoices, 1):
            if isinstance(item, (tuple, list)):
                name, data = item
            else:
                name, data = "invoice-%05d.xml" % index, item
            if isinstance(data, str):
                raise TypeError("invoice %s must be bytes, not str" % name)
            if name in names:
                raise ValueError("duplicate file name %r in the batch" % name)
            names.add(name)
            invoice_hash = crypto.sha256_b64(data)
            if invoice_hash in self.invoices:
                raise ValueError("the same invoice (hash %s) is twice in the batch" % invoice_hash)
            self.invoices[invoice_hash] = name
            yield name, data

    def _split(self, archive):
        size = archive.seek(0, io.SEEK_END)
        if size > MAX_BATCH_SIZE:
            raise ValueError("the archive is larger than 5 GB")
        archive.seek(0)
        whole = hashlib.sha256()
        ordinal = 0
        while archive.tell() < size:
            ordinal += 1
            if ordinal > MAX_PARTS:
                raise ValueError("more than %d parts: use a larger part size" % MAX_PARTS)
            out = tempfile.SpooledTemporaryFile(max_size=self.spool_size)
            enc = _StreamEncryptor(self._key, self._iv)
            digest = hashlib.sha256()
            remaining = min(self.part_size, size - archive.tell())
            plain = remaining
            while remaining:
                chunk = archive.read(min(remaining, 1 << 20))
                remaining -= len(chunk)
                whole.update(chunk)
                block = enc.update(chunk)
                digest.update(block)
                out.write(block)
            block = enc.finalize()
            digest.update(block)
            out.write(block)
            self.parts.append(PackagePart(ordinal, out, out.tell(), crypto.b64encode(digest.digest()), plain))
        archive.close()
        self.file_size = size
        self.file_hash = crypto.b64encode(whole.digest())

    def file_info(self):
        """``BatchFileInfo`` for ``POST /sessions/batch``."""
        info = {
            "fileSize": self.file_size,
            "fileHash": self.file_hash,
            "fileParts": [{"ordinalNumber": p.ordinal_number, "fileSize": p.size, "fileHash": p.hash}
                          for p in self.parts],
        }
        if self.compression != "Zip":
            info["compressionType"] = self.compression
        return info

    def close(self):
        for part in self.parts:
            part.fileobj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BatchSession(SessionHandle):
    """A batch session: open with the package description, upload parts, close, follow status."""

    kind = "batch"

    def __init__(self, client, reference_number, form_code, key, iv, *, part_upload_requests=(),
                 offline_mode=False, invoice_count=None, uploaded_parts=(), closed=False):
        super().__init__(client, reference_number)
        self.form_code = form_code
        self._key, self._iv = key, iv
        self.part_upload_requests = list(part_upload_requests)
        self.offline_mode = offline_mode
        self.invoice_count = invoice_count
        self.uploaded_parts = set(uploaded_parts)
        self.closed = closed
        client.transport.secrets.add(crypto.b64encode(key))

    def __repr__(self):
        return "<BatchSession %s parts=%d uploaded=%d key=<redacted>>" % (
            self.reference_number, len(self.part_upload_requests), len(self.uploaded_parts))

    @classmethod
    def open(cls, client, package, form_code="FA3", offline_mode=False):
        form = resolve_form_code(form_code)

        def op(cert):
            body = {"formCode": form, "batchFile": package.file_info(),
                    "encryption": client.encryption_info(package._key, package._iv, cert),
                    "offlineMode": bool(offline_mode)}
            return client._api("POST", "/sessions/batch", json_body=body, safe=True,
                               required=("referenceNumber", "partUploadRequests")).data
        data = client.with_public_key(keys.SYMMETRIC_KEY_ENCRYPTION, op)
        session = cls(client, data["referenceNumber"], form, package._key, package._iv,
                      part_upload_requests=data["partUploadRequests"], offline_mode=offline_mode,
                      invoice_count=len(package.invoices))
        _logger.info("opened KSeF batch session %s (%d invoices, %d parts)", session.reference_number,
                     len(package.invoices), len(package.parts))
        return session

    def to_dict(self):
        return {
            "version": 1,
            "type": "batch",
            "referenceNumber": self.reference_number,
            "formCode": dict(self.form_code),
            "symmetricKey": crypto.b64encode(self._key),
            "initializationVector": crypto.b64encode(self._iv),
            "partUploadRequests": self.part_upload_requests,
            "uploadedParts": sorted(self.uploaded_parts),
            "offlineMode": self.offline_mode,
            "invoiceCount": self.invoice_count,
            "closed": self.closed,
        }

    @classmethod
    def from_dict(cls, client, data):
        if data.get("type") != "batch":
            raise ValueError("not a batch session state")
        return cls(client, data["referenceNumber"], resolve_form_code(data["formCode"]),
                   crypto.b64decode(data["symmetricKey"]), crypto.b64decode(data["initializationVector"]),
                   part_upload_requests=data.get("partUploadRequests") or (),
                   offline_mode=bool(data.get("offlineMode")), invoice_count=data.get("invoiceCount"),
                   uploaded_parts=data.get("uploadedParts") or (), closed=bool(data.get("closed")))

    def upload(self, package):
        """PUT every part not uploaded yet to its pre-signed URL (exact method/headers, no bearer token)."""
        by_ordinal = {p.ordinal_number: p for p in package.parts}
        for request in sorted(self.part_upload_requests, key=lambda r: r["ordinalNumber"]):
            ordinal = request["ordinalNumber"]
            if ordinal in self.uploaded_parts:
                continue
            part = by_ordinal.get(ordinal)
            if part is None:
                raise ValueError("KSeF asked for part %s which the package does not have" % ordinal)
            part.fileobj.seek(0)
            # a pre-signed part upload overwrites the same object: repeating it is safe
            self.client.transport.call_url(request.get("method") or "PUT", request["url"], data=part.fileobj,
                                           headers=dict(request.get("headers") or {}), safe=True,
                                           timeout=(10, 600))
            self.uploaded_parts.add(ordinal)
            _logger.debug("uploaded part %d of batch session %s (%d bytes)", ordinal, self.reference_number,
                          part.size)

    def close(self):
        if self.closed:
            return
        _close(self, "/sessions/batch/%s/close" % self.reference_number)
        self.closed = True
        _logger.info("closed KSeF batch session %s", self.reference_number)


@dataclass
class BatchResult:
    """Outcome of :func:`send_batch` (one or more batch sessions)."""

    sessions: list
    statuses: list
    results: list = field(repr=False)
    invoice_hashes: dict = field(default_factory=dict, repr=False)   # hash -> file name

    @property
    def accepted(self):
        return [r for r in self.results if r.is_success]

    @property
    def rejected(self):
        return [r for r in self.results if r.status_code is not None and r.status_code >= 400]

    def by_hash(self):
        return {r.invoice_hash: r for r in self.results}


def send_batch(client, invoices, form_code="FA3", *, offline_mode=False, part_size=MAX_PART_SIZE,
               compression="Zip", wait=True, timeout=1800.0, max_per_session=MAX_INVOICES_PER_SESSION,
               on_session=None):
    """Send invoices through batch sessions (≤ ``max_per_session`` invoices each).

    ``invoices``: iterable of bytes or ``(file_name, bytes)``. ``on_session(BatchSession)`` is called right
    after each session is opened (persist ``session.to_dict()`` there to survive a crash). With ``wait``
    the sessions are followed until processed and every per-invoice result is collected.
    """
    sessions, statuses, results, hashes = [], [], [], {}
    iterator = iter(invoices)
    while True:
        chunk = []
        for item in iterator:
            chunk.append(item)
            if len(chunk) >= max_per_session:
                break
        if not chunk:
            break
        with BatchPackage.build(chunk, part_size=part_size, compression=compression) as package:
            del chunk
            hashes.update(package.invoices)
            session = BatchSession.open(client, package, form_code, offline_mode)
            if on_session is not None:
                on_session(session)
            session.upload(package)
            session.close()
            sessions.append(session)
    for session in sessions:
        if wait:
            statuses.append(session.wait(timeout=timeout))
            results.extend(session.invoices())
    return BatchResult(sessions, statuses, results, hashes)


def send_online(client, invoices, form_code="FA3", *, offline_mode=False, session=None, close=True,
                on_session=None, wait=True, timeout=600.0):
    """Send invoices one by one through online session(s); open a new session when one is full/expired.

    Returns ``(sessions, {invoice_hash: SentInvoice}, {invoice_reference: InvoiceResult})``.
    """
    sessions = [session] if session is not None else []
    sent = {}
    for xml in invoices:
        if not sessions or sessions[-1].closed or sessions[-1].expired or \
                len(sessions[-1].sent) >= MAX_INVOICES_PER_SESSION:
            if sessions and not sessions[-1].closed and close:
                sessions[-1].close()
            sessions.append(OnlineSession.open(client, form_code))
            if on_session is not None:
                on_session(sessions[-1])
        try:
            result = sessions[-1].send(xml, offline_mode=offline_mode)
        except BadRequestError as exc:
            if not {21155, 21173, 21180} & set(exc.exception_codes):
                raise
            sessions[-1].closed = True           # full / gone / not open any more: continue in a new one
            sessions.append(OnlineSession.open(client, form_code))
            if on_session is not None:
                on_session(sessions[-1])
            result = sessions[-1].send(xml, offline_mode=offline_mode)
        sent[result.invoice_hash] = result
    results = {}
    for item in sessions:
        if close and not item.closed:
            item.close()
        if wait and item.sent:
            results.update(item.wait_for_invoices(list(item.sent.values()), timeout=timeout))
    return sessions, sent, results


__all__ = [
    "FORM_CODES", "BatchPackage", "BatchResult", "BatchSession", "InvoiceResult", "OnlineSession",
    "OperationPending", "SentInvoice", "SessionHandle", "resolve_form_code", "send_batch", "send_online",
]
