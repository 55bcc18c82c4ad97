"""Client of the Ministry of Finance VAT taxpayer register API ("biała lista", the VAT white list).

Public, no authentication, JSON over HTTPS (``requests`` only). Two calls are used:

* :meth:`WhiteListClient.search_nip` — ``GET /api/search/nip/{nip}?date=YYYY-MM-DD``: the register entry of a
  taxpayer (official name, addresses, REGON, KRS, VAT status, registered bank accounts);
* :meth:`WhiteListClient.check_account` — ``GET /api/check/nip/{nip}/bank-account/{nrb}?date=YYYY-MM-DD``:
  is this account registered for this NIP on that day (``TAK``/``NIE``)? The answer's ``requestId`` is the
  proof of the check a buyer keeps (art. 117ba Ordynacja podatkowa / art. 15d CIT, payments > 15 000 PLN).

Answers::

    {"result": {"subject": {...} | null, "requestId": "…", "requestDateTime": "23-11-2026 12:00:00"}}
    {"result": {"accountAssigned": "TAK" | "NIE", "requestId": "…", "requestDateTime": "…"}}
    HTTP 400 {"code": "WL-115", "message": "…"}   (some clients see it wrapped: {"exception": {…}})

Error codes of the register (``WL-1xx``) are mapped to typed errors: invalid input
(:class:`WhiteListInputError`), the daily per-IP limit ``WL-191`` (:class:`WhiteListLimitError`; since 2025:
100 ``search`` requests and 5 000 ``check`` requests per day and IP, the IP is blocked until midnight) and
server-side trouble (:class:`WhiteListUnavailable`: ``WL-100``, ``WL-196``, HTTP 5xx, no connection).
``WL-195`` ("the database was updated, ask again") is retried once automatically. Inputs are checked
locally first (NIP and NRB checksums) so that invalid data never spends the daily limit.

The register only knows Polish accounts (NRB, 26 digits; an ``PL`` IBAN prefix and spaces are accepted).
A "NIE" answer means "not confirmed", not "fraud": the account may be a virtual account of a bank
(``hasVirtualAccounts``) or the seller may not be an active VAT payer.
"""
import datetime
import logging
import re
from dataclasses import dataclass, field

import requests

from .errors import KsefError
from .numbers import is_valid_nip, normalize_nip

_logger = logging.getLogger(__name__)

PROD_URL = "https://wl-api.mf.gov.pl"
TEST_URL = "https://wl-test.mf.gov.pl"

STATUS_ACTIVE = "Czynny"
STATUS_EXEMPT = "Zwolniony"
STATUS_NOT_REGISTERED = "Niezarejestrowany"
#: ``statusVat`` value -> stable key used by callers
VAT_STATUSES = {STATUS_ACTIVE: "active", STATUS_EXEMPT: "exempt", STATUS_NOT_REGISTERED: "not_registered"}

#: register error codes that mean "your input is wrong" (never retried)
INPUT_CODES = {
    "WL-101": "date", "WL-102": "date", "WL-103": "date", "WL-104": "regon", "WL-105": "regon",
    "WL-106": "regon", "WL-107": "regon", "WL-108": "account", "WL-109": "account", "WL-110": "account",
    "WL-111": "account", "WL-112": "nip", "WL-113": "nip", "WL-114": "nip", "WL-115": "nip",
    "WL-116": "name", "WL-117": "name", "WL-118": "date", "WL-130": "request", "WL-190": "request",
}
LIMIT_CODES = ("WL-191",)
RETRY_CODES = ("WL-195",)
UNAVAILABLE_CODES = ("WL-100", "WL-196")


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

class WhiteListError(KsefError):
    """The VAT white list could not answer the question.

    ``wl_code``: the register's own code (``WL-115``…) when it gave one; ``http_status``: HTTP status or None.
    """

    code = "whitelist_error"

    def __init__(self, message="", *, wl_code=None, http_status=None, code=None, params=None):
        self.wl_code = wl_code
        self.http_status = http_status
        params = dict(params or {})
        params.setdefault("wl_code", wl_code)
        params.setdefault("http_status", http_status)
        super().__init__(message, code=code, params=params)


class WhiteListInputError(WhiteListError, ValueError):
    """The NIP, account number or date is invalid (checked locally or refused by the register).

    ``params['field']`` names the input: ``nip``, ``account``, ``date``, ``regon``, ``request``.
    """

    code = "whitelist_invalid_input"


class WhiteListLimitError(WhiteListError):
    """The register's daily request limit for this IP address is exhausted (``WL-191``): try tomorrow."""

    code = "whitelist_limit"


class WhiteListUnavailable(WhiteListError):
    """The register is unreachable, failing or being updated: try again later."""

    code = "whitelist_unavailable"


class WhiteListResponseError(WhiteListError):
    """The register answered something that is not the documented JSON."""

    code = "whitelist_malformed"


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------

@dataclass
class Subject:
    """One register entry (``result.subject``)."""

    name: str = ""
    nip: str = ""
    status_vat: str = ""
    regon: str = ""
    krs: str = ""
    residence_address: str = ""
    working_address: str = ""
    account_numbers: list = field(default_factory=list)
    has_virtual_accounts: bool = False
    registration_legal_date: str | None = None
    removal_date: str | None = None
    removal_basis: str | None = None
    restoration_date: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def status_key(self):
        """``active`` / ``exempt`` / ``not_registered`` / ``unknown``."""
        return VAT_STATUSES.get(self.status_vat, "unknown")

    @property
    def is_active(self):
        return self.status_vat == STATUS_ACTIVE

    @property
    def address(self):
        """Working address if any (the one invoices usually show), else the residence address."""
        return self.working_address or self.residence_address or ""

    @classmethod
    def from_json(cls, data):
        if not isinstance(data, dict):
            raise WhiteListResponseError("white list subject is not an object", code="whitelist_malformed")
        accounts = data.get("accountNumbers") or []
        if not isinstance(accounts, list):
            accounts = []
        return cls(
            name=str(data.get("name") or "").strip(),
            nip=str(data.get("nip") or "").strip(),
            status_vat=str(data.get("statusVat") or "").strip(),
            regon=str(data.get("regon") or "").strip(),
            krs=str(data.get("krs") or "").strip(),
            residence_address=str(data.get("residenceAddress") or "").strip(),
            working_address=str(data.get("workingAddress") or "").strip(),
            account_numbers=[str(a) for a in accounts if a],
            has_virtual_accounts=bool(data.get("hasVirtualAccounts")),
            registration_legal_date=data.get("registrationLegalDate"),
            removal_date=data.get("removalDate"),
            removal_basis=data.get("removalBasis"),
            restoration_date=data.get("restorationDate"),
            raw=data,
        )


@dataclass
class SearchResult:
    """Answer of ``search/nip``: ``subject`` is ``None`` when the NIP is not in the register."""

    nip: str
    date: datetime.date
    subject: Subject | None
    request_id: str
    request_datetime: str = ""

    @property
    def found(self):
        return self.subject is not None


@dataclass
class AccountCheck:
    """Answer of ``check/nip/…/bank-account/…``."""

    nip: str
    account: str
    date: datetime.date
    assigned: bool
    request_id: str
    request_datetime: str = ""


# --------------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------------

def normalize_account(value):
    """26-digit NRB from an account number with spaces/hyphens and an optional ``PL`` prefix.

    Returns ``""`` when the value is not a Polish account number (foreign IBANs included)."""
    text = re.sub(r"[\s-]", "", str(value or "")).upper()
    if text.startswith("PL"):
        text = text[2:]
    return text if re.fullmatch(r"[0-9]{26}", text, re.ASCII) else ""


def is_valid_nrb(value):
    """ISO 7064 mod 97-10 check of a Polish account number (as an IBAN with the ``PL`` prefix)."""
    nrb = normalize_account(value)
    if not nrb:
        return False
    rearranged = nrb[2:] + "2521" + nrb[:2]     # "PL" = 25 21
    return int(rearranged) % 97 == 1


def today_warsaw():
    """Today's date in Poland (the register works in Polish days)."""
    from .calendar import WARSAW
    return datetime.datetime.now(WARSAW).date()


def _check_nip(nip):
    value = normalize_nip(nip)
    if not is_valid_nip(value):
        raise WhiteListInputError("%r is not a valid Polish NIP" % (str(nip)[:20],), code="whitelist_invalid_nip",
                                  params={"field": "nip", "value": str(nip)[:20]})
    return value


def _check_account(account):
    nrb = normalize_account(account)
    if not nrb:
        raise WhiteListInputError("the account number is not a Polish NRB (26 digits): only those are in the "
                                  "VAT white list", code="whitelist_not_nrb",
                                  params={"field": "account", "value": str(account)[:40]})
    if not is_valid_nrb(nrb):
        raise WhiteListInputError("the account number has a wrong check sum", code="whitelist_invalid_account",
                                  params={"field": "account", "value": nrb})
    return nrb


def _check_date(value):
    today = today_warsaw()
    if value is None:
        return today
    if isinstance(value, datetime.datetime):
        value = value.date()
    if isinstance(value, str):
        try:
            value = datetime.date.fromisoformat(value)
        except ValueError:
            raise WhiteListInputError("date must be YYYY-MM-DD", code="whitelist_invalid_date",
                                      params={"field": "date", "value": value[:20]}) from None
    if value > today:
        raise WhiteListInputError("the white list cannot answer for a future date", code="whitelist_future_date",
                                  params={"field": "date", "value": value.isoformat()})
    return value


# --------------------------------------------------------------------------------------------
# client
# --------------------------------------------------------------------------------------------

class WhiteListClient:
    """A small synchronous client; ``base_url`` is the register root (``PROD_URL``, ``TEST_URL`` or a fake).

    ``timeout`` ``(connect, read)`` seconds; ``http`` an optional ``requests.Session``. The object keeps
    ``calls`` (number of HTTP requests made) for callers that budget the daily limit.
    """

    def __init__(self, base_url=PROD_URL, *, timeout=(5, 20), http=None):
        self.base_url = (base_url or PROD_URL).rstrip("/")
        self.timeout = timeout
        self.http = http or requests.Session()
        self.calls = 0

    def __repr__(self):
        return "<WhiteListClient %s>" % self.base_url

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ calls
    def search_nip(self, nip, date=None):
        """Register entry of ``nip`` on ``date`` (default today); ``subject`` is ``None`` if unknown."""
        nip = _check_nip(nip)
        day = _check_date(date)
        result = self._get("/api/search/nip/%s" % nip, day)
        subject = result.get("subject")
        return SearchResult(nip=nip, date=day, subject=Subject.from_json(subject) if subject else None,
                            request_id=str(result.get("requestId") or ""),
                            request_datetime=str(result.get("requestDateTime") or ""))

    def check_account(self, nip, account, date=None):
        """Is ``account`` registered for ``nip`` on ``date`` (default today)?"""
        nip = _check_nip(nip)
        nrb = _check_account(account)
        day = _check_date(date)
        result = self._get("/api/check/nip/%s/bank-account/%s" % (nip, nrb), day)
        answer = result.get("accountAssigned")
        if answer not in ("TAK", "NIE"):
            raise WhiteListResponseError("white list check answer without accountAssigned TAK/NIE",
                                         code="whitelist_malformed")
        return AccountCheck(nip=nip, account=nrb, date=day, assigned=answer == "TAK",
                            request_id=str(result.get("requestId") or ""),
                            request_datetime=str(result.get("requestDateTime") or ""))

    # ------------------------------------------------------------------ plumbing
    def _get(self, path, day, _retry=True):
        url = self.base_url + path
        self.calls += 1
        try:
            resp = self.http.get(url, params={"date": day.isoformat()}, timeout=self.timeout,
                                 headers={"Accept": "application/json"})
        except requests.Timeout:
            raise WhiteListUnavailable("the VAT white list did not answer in time", code="whitelist_timeout") \
                from None
        except requests.RequestException as exc:
            raise WhiteListUnavailable("the VAT white list cannot be reached (%s)" % type(exc).__name__,
                                       code="whitelist_unreachable") from None
        data = None
        try:
            data = resp.json()
        except ValueError:
            data = None
        wl_code, message = _error_of(data)
        if resp.status_code == 200 and not wl_code:
            result = data.get("result") if isinstance(data, dict) else None
            if not isinstance(result, dict):
                raise WhiteListResponseError("white list answer without a result object", code="whitelist_malformed",
                                             http_status=resp.status_code)
            _logger.debug("white list %s -> requestId %s", path.split("/")[2], result.get("requestId"))
            return result
        if wl_code in RETRY_CODES and _retry:
            _logger.info("white list database was updated (%s): asking again", wl_code)
            return self._get(path, day, _retry=False)
        text = "VAT white list error %s: %s" % (wl_code or resp.status_code, (message or "")[:200])
        if wl_code in LIMIT_CODES or resp.status_code == 429:
            raise WhiteListLimitError(text, wl_code=wl_code, http_status=resp.status_code)
        if wl_code in INPUT_CODES:
            raise WhiteListInputError(text, wl_code=wl_code, http_status=resp.status_code,
                                      params={"field": INPUT_CODES[wl_code], "message": (message or "")[:200]})
        if wl_code in UNAVAILABLE_CODES or wl_code in RETRY_CODES or resp.status_code >= 500:
            raise WhiteListUnavailable(text, wl_code=wl_code, http_status=resp.status_code)
        if resp.status_code == 200:
            raise WhiteListResponseError(text, wl_code=wl_code, http_status=resp.status_code)
        raise WhiteListError(text, wl_code=wl_code, http_status=resp.status_code,
                             params={"message": (message or "")[:200]})


def _error_of(data):
    """``(code, message)`` of an error body (flat or wrapped in ``exception``), else ``(None, None)``."""
    if not isinstance(data, dict):
        return None, None
    body = data.get("exception") if isinstance(data.get("exception"), dict) else data
    code = body.get("code")
    if isinstance(code, str) and code.upper().startswith("WL-"):
        return code.upper(), str(body.get("message") or "")
    return None, None


__all__ = [
    "PROD_URL", "STATUS_ACTIVE", "STATUS_EXEMPT", "STATUS_NOT_REGISTERED", "TEST_URL", "AccountCheck",
    "SearchResult", "Subject", "WhiteListClient", "WhiteListError", "WhiteListInputError", "WhiteListLimitError",
    "WhiteListResponseError", "WhiteListUnavailable", "is_valid_nrb", "normalize_account", "today_warsaw",
]
