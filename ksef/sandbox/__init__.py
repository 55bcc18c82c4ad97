"""Local KSeF 2.0 sandbox: an emulator of the official API v2 (OpenAPI 2.6.0) for tests, demos and integrators.

Running it
==========

::

    python -m ksef sandbox --port 8765 [--host 127.0.0.1] [--data-dir DIR] [--rate-limits production|off|JSON]
                           [--fault SPEC ...] [--fault-seed N] [--status MAINTENANCE] [--config key=value ...]
    python -m ksef sandbox seed --nip BUYER_NIP --count 50 [--from-dir DIR_OF_XML] [--seed N]
                                [--data-dir DIR | --url http://127.0.0.1:8765]

Embedded (tests)::

    from ksef.sandbox import SandboxServer
    with SandboxServer(port=0, data_dir=tmp, rate_limits="off") as server:   # or .start() / .stop()
        server.url   # http://127.0.0.1:PORT

URLs (``ROOT`` = ``http://HOST:PORT``): API ``ROOT/v2`` (same paths as ``https://api-test.ksef.mf.gov.pl/v2``),
Latarnia ``ROOT/latarnia/status`` + ``/latarnia/messages``, QR pages ``ROOT/qr/invoice/{nip}/{DD-MM-YYYY}/{hash}``
and ``ROOT/qr/certificate/...`` (HTML; ``?format=json``), pre-signed storage URLs ``ROOT/storage/...`` (UPO,
batch part upload, export part download; built from the request's ``Host`` header, signed and expiring, no
bearer token, never rate-limited), admin API ``ROOT/_sandbox``. Data (SQLite in WAL mode, batch parts, export
packages, the sandbox's RSA keys) lives in ``--data-dir`` (default ``~/.local/share/ksef-sandbox`` or
``$KSEF_SANDBOX_DATA``) and survives restarts.

Admin API (JSON, not part of KSeF, never faulted nor rate-limited)
================================================================

* ``GET /_sandbox`` -> ``{api, latarnia, qr, dataDir, invoices, status, rateLimits, faults}``
* ``POST /_sandbox/reset`` ``{"data": false}`` -> clears faults, status (AVAILABLE), rate limits and config back
  to the start-up values; ``"data": true`` also wipes every stored object.
* ``POST /_sandbox/tokens`` ``{nip | context:{type,value}, permissions:[...], description, author?}`` ->
  201 ``{token, referenceNumber}``: an Active KSeF token, as if created in the TEST portal.
* ``POST /_sandbox/grants`` ``{context, subject, permissions:[...]}``: ``context``/``subject`` are identifier
  values (NIP, PESEL, fingerprint). Person permissions (InvoiceRead, InvoiceWrite, ...) let a non-owner
  certificate log in; ``SelfInvoicing`` (context = seller NIP, subject = buyer NIP) allows self-billing;
  ``Attachment`` (context = subject = NIP) allows ``Zalacznik`` (also ``POST /v2/testdata/attachment``).
* ``POST /_sandbox/seed`` ``{buyerNip, count, seed?, fromDir?, xml?:[base64...], sellerNips?}`` -> 201
  ``{ksefNumbers:[...]}`` (see :mod:`ksef.sandbox.seed`).
* ``GET /_sandbox/invoices?sellerNip=&buyerNip=&nip=&ksefNumber=&invoiceNumber=&sessionReferenceNumber=&limit=``
  -> ``{count, invoices:[{ksefNumber, invoiceNumber, sellerNip, buyer, invoiceHash, invoiceType, invoicingMode,
  issueDate, acquisitionDate, permanentStorageDate, sessionReferenceNumber, invoiceReferenceNumber}]}``:
  what is stored (the chaos tests' "exactly once" proof).
* ``POST /_sandbox/faults`` (one fault object, or ``{"faults": [...], "seed": N}``; appended) -> ``{faults}``;
  ``GET`` lists them with remaining ``count`` and ``hits``; ``DELETE /_sandbox/faults`` clears all,
  ``DELETE /_sandbox/faults/{id}`` one. Fault spec: see :mod:`ksef.sandbox.faults` (latency,
  error 5xx before/after storing, rate_limit storms, timeout_after_store, drop, malformed responses
  truncated_json/wrong_content_type/short_body, slow_upo; scoped by ``path`` regex, ``method``,
  ``probability`` with a seeded RNG and ``count``). CLI: ``--fault 'error:status=503,path=/sessions,count=2'``.
* ``POST /_sandbox/status`` ``{status: AVAILABLE|MAINTENANCE|FAILURE|TOTAL_FAILURE, message?, api?}``.
  ``api`` = how ``/v2`` and ``/storage`` answer meanwhile: ``"503"`` (default for MAINTENANCE and FAILURE:
  503 problem+json with ``Retry-After: 60``), ``"drop"`` (default for TOTAL_FAILURE: connection closed
  without a response, like an unreachable host) or ``"up"`` (announcement only). Latarnia publishes
  ``MAINTENANCE_ANNOUNCEMENT``/``FAILURE_START`` messages and ``FAILURE_END`` when back to AVAILABLE.
* ``POST /_sandbox/rate-limits`` ``{"mode": "production" | "off" | {group: [perSecond, perMinute, perHour],
  "public": perSecondPerIp}}`` (unnamed groups keep production values); ``GET`` shows them.
* ``POST /_sandbox/config`` ``{key: value}`` / ``GET``: :class:`SandboxConfig` fields (token lifetimes,
  time spent in statuses 100/150/170, HWM lag, ``prd_like``, ``allow_attachments``, ``sign_upo``, export part
  size, record caps...).
* ``POST /_sandbox/wait`` ``{timeout}`` -> ``{idle}``: waits for background batch/export jobs.

What is emulated
================

* Public keys (``GET /security/public-key-certificates``): the sandbox's own self-signed RSA-2048 certificates
  for KsefTokenEncryption and SymmetricKeyEncryption, ``publicKeyId``/``certificateId`` as KSeF computes them;
  a given but unknown ``publicKeyId`` -> 400 21470.
* Authentication: challenge (single use, 10 min), KSeF token (RSA-OAEP-SHA256 ``token|timestampMs``; bad
  timestamp / unknown / inactive / revoked / other-context token -> status 450), XAdES (``ksef.xades.verify``:
  9101/9102/9103/9105, AuthTokenRequest 2.0/2.1 structure -> 21401, 21111 bad challenge, 21115 certificate
  without NIP/PESEL for ``certificateSubject``; self-signed certificates accepted as on TEST;
  ``verifyCertificateChain=true`` fails them with 460; expired certificate -> 460; owner = certificate NIP equal
  to the context NIP has every permission but EnforcementOperations, others need grants, else 415),
  ``authorizationPolicy.allowedIps`` (-> 403 ip-not-allowed), status polling (100 for ``auth_delay``),
  redeem once (21301), refresh, listing and revoking auth sessions (425 afterwards; access tokens stay valid
  until ``exp``). Tokens are HS256 JWTs signed by the sandbox; access tokens carry the context and the frozen
  permission set; 401/403 are problem+json as in the OpenAPI.
* KSeF tokens: create (XAdES logins only -> 403 auth-method-not-allowed; 26001/26002), list with filters and
  continuation tokens, status Pending -> Active, revoke Revoking -> Revoked.
* Online sessions: form codes FA (3)/FA (2)/FA_RR (1) (FA (2) refused when ``prd_like``), AES key unwrap
  (failure -> session 415), hash/size checks (21402/21403), 21155/21173/21180, technical corrections
  (21166/21167), asynchronous statuses 100/150 -> 200/410/415/430/435/440/450, auto-Offline when the P_1 day
  (Europe/Warsaw) precedes the acceptance day, close -> 170 -> 200/440/445 with session UPO pages.
* Invoice checks: UTF-8 without BOM and encoding declaration, form code vs session, XSD (``ksef.schemas``; skipped
  with a warning when the official XSDs are unavailable), size limits, attachments, permission for the seller
  (own NIP, self-billing with a SelfInvoicing grant, FA_RR issued by the buyer, PodmiotUpowazniony) -> 410,
  P_1 after acceptance -> 450, NIP checksums only when ``prd_like``, duplicates (Podmiot1 NIP + RodzajFaktury +
  P_2) -> 440 with ``originalSessionReferenceNumber``/``originalKsefNumber``. KSeF numbers with a valid CRC-8.
* Batch sessions: up to 50 parts, pre-signed PUT URLs, 21157/21161/21205/21208, background processing
  (part hashes -> 405, decryption -> 435, archive Zip or TarGz -> 430, > 10,000 files -> 420), each invoice
  independent, ``invoiceFileName``, 200/445.
* UPO v4-3 (per invoice and per session, pages of 10,000), ``x-ms-meta-hash``, valid against upo-v4-3.xsd with
  ``NazwaPodmiotuPrzyjmujacego`` "Ministerstwo Finansów"; optionally XAdES-signed with the sandbox seal
  (``sign_upo``; a signed UPO is then no longer XSD-valid, like MF's own).
* Receiving: metadata query (all filters, Subject1/2/3/SubjectAuthorized, Issue/Invoicing/PermanentStorage, range
  <= 3 months, pageOffset/pageSize 10-250, sortOrder, ``hasMore``/``isTruncated`` at 10,000,
  ``permanentStorageHwmDate`` = now - ``hwm_lag``, 21183), download by KSeF number (21164/21165), exports
  (async, AES-encrypted Zip/TarGz split into parts, ``{ksefNumber}.xml`` + ``_metadata.json``, ``onlyMetadata``,
  10,000 cap with ``isTruncated`` + ``last*Date``, 420 beyond the HWM, 21181/21182/21175).
* Rate limits: the official table per (context, client IP) and group, three sliding windows, public endpoints
  per IP, 429 + ``Retry-After`` + the documented body (or problem+json with ``X-Error-Format``); ``GET
  /rate-limits`` reflects the configuration. Limits (``/limits/context|subject``) with the official values.
* ``POST /permissions/query/personal/grants``: the caller's grants in the current context (from
  ``/testdata/permissions`` or ``/_sandbox/grants``; an owner's implicit rights are not grants).
* ``/testdata/permissions`` (+revoke), ``/testdata/attachment`` (+revoke), ``/testdata/rate-limits``
  (+production, DELETE); ``/testdata/subject|person`` accept and do nothing.
* Bad JSON -> 400 21405, unknown path -> 404, oversized body -> 413, ``X-Test-System-Warning`` echoed as
  ``X-System-Warning``.

Not emulated
============

The rest of the permissions API (grants, revocations, other queries), KSeF certificates (``/certificates/*``),
PEF/PEF_KOR and Peppol, the ``/peppol`` query, collective identifiers (2.7), OCSP/CRL, deceased persons and
blocked contexts (470/480), growing block times after repeated 429s, the 20:00-06:00 download limits, real MF
keys and signatures (UPOs are signed with the sandbox's own seal only on request). Technical-correction hashes
that match no stored invoice are accepted without a link. A 429 does not count against the window.
"""
from .app import Sandbox, SandboxConfig
from .server import SandboxServer

__all__ = ["Sandbox", "SandboxConfig", "SandboxServer"]
