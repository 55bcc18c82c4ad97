"""Unit tests of the client's pure parts: rate budget (fake clock), error parsing, dates, packages."""
import datetime
import io
import json
import threading
import zipfile

import pytest

from ksef import crypto
from ksef.client import ratelimit
from ksef.client.auth import AuthTokens, ContextIdentifier, KsefTokenCredential
from ksef.client.http import Secrets, parse_error_body, parse_retry_after
from ksef.client.keys import PublicKeyCache, parse_public_key_certificates, select_certificate
from ksef.client.receive import build_filters
from ksef.client.sessions import BatchPackage, InvoiceResult, resolve_form_code
from ksef.client.util import add_months, format_datetime, jwt_expiry, parse_datetime
from ksef.environments import get_environment
from ksef.errors import ApiError, RateLimitError


class FakeClock:
    def __init__(self, start=1_000_000.0):
        self.now = start
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(limits=None, margins=(0.0, 0.0, 0.0)):
    clock = FakeClock()
    return ratelimit.RateLimiter(limits, clock=clock, sleep=clock.sleep, margins=margins), clock


# ------------------------------------------------------------------ rate limiter
def test_endpoint_groups_follow_the_official_table():
    g = ratelimit.endpoint_group
    assert g("POST", "/sessions/online") == "onlineSession"
    assert g("POST", "/sessions/online/20250626-SO-2F14610000-242991F8C9-B4/close") == "onlineSession"
    assert g("POST", "/sessions/online/REF/invoices") == "invoiceSend"
    assert g("POST", "/sessions/batch") == "batchSession"
    assert g("POST", "/sessions/batch/REF/close") == "batchSession"
    assert g("GET", "/sessions") == "sessionList"
    assert g("GET", "/sessions/REF/invoices") == "sessionInvoiceList"
    assert g("GET", "/sessions/REF/invoices/failed") == "sessionInvoiceList"
    assert g("GET", "/sessions/REF/invoices/INVREF") == "invoiceStatus"
    assert g("GET", "/sessions/REF/invoices/INVREF/upo") == "sessionMisc"
    assert g("GET", "/sessions/REF") == "sessionMisc"
    assert g("GET", "/sessions/REF/upo/UPOREF") == "sessionMisc"
    assert g("POST", "/invoices/query/metadata?pageSize=10") == "invoiceMetadata"
    assert g("POST", "/invoices/exports") == "invoiceExport"
    assert g("GET", "/invoices/exports/REF") == "invoiceExportStatus"
    assert g("GET", "/invoices/ksef/5842816354-20260319-33C61F800000-AD") == "invoiceDownload"
    assert g("POST", "/auth/challenge") == "public"
    assert g("GET", "/auth/20250626-AU-2F14610000-242991F8C9-B4") == "public"
    assert g("GET", "/auth/sessions") == "other"
    assert g("DELETE", "/auth/sessions/current") == "other"
    assert g("POST", "/tokens") == "other"
    assert g("GET", "/security/public-key-certificates") == "public"


def test_per_second_window_spaces_requests():
    lim, clock = limiter({"g": (2, None, None)})
    start = clock.now
    for _ in range(6):
        lim.acquire("g", "ctx")
    # 2 per second: the 6th request goes out 2 s after the first
    assert clock.now - start == pytest.approx(2.0)
    assert lim.usage("g", "ctx")[0] == 2


def test_minute_and_hour_windows_apply_at_once():
    lim, clock = limiter({"g": (10, 3, 5)})
    start = clock.now
    stamps = []
    for _ in range(6):
        lim.acquire("g", "ctx")
        stamps.append(clock.now - start)
    # 3 per minute: requests 4-5 wait for the minute window; the 6th waits for the hour window
    assert stamps[:3] == [0.0, 0.0, 0.0]
    assert stamps[3] == pytest.approx(60.0)
    assert stamps[4] == pytest.approx(60.0)
    assert stamps[5] == pytest.approx(3600.0)
    # never more than the limits in any window ending at a request
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps[: i + 1] if s > t - 60) <= 3
        assert sum(1 for s in stamps[: i + 1] if s > t - 3600) <= 5


def test_production_send_budget_never_exceeds_official_limits():
    lim, clock = limiter()
    stamps = []
    for _ in range(200):
        lim.acquire("invoiceSend", "ctx")
        stamps.append(clock.now)
    per = {1: 10, 60: 30, 3600: 180}
    for i, t in enumerate(stamps):
        for window, limit in per.items():
            assert sum(1 for s in stamps[: i + 1] if s > t - window) <= limit
    # 180/h: request 181 cannot go before an hour has passed
    assert stamps[180] - stamps[0] >= 3600


def test_scopes_and_groups_are_independent_and_public_is_per_ip():
    lim, clock = limiter({"g": (1, None, None)})
    lim.acquire("g", "env#Nip:1")
    lim.acquire("g", "env#Nip:2")
    lim.acquire("other", "env#Nip:1")
    assert clock.sleeps == []
    lim.acquire("public", "env#Nip:1")
    # public groups ignore the context part of the scope
    assert lim.usage("public", "env#Nip:2")[0] == 1


def test_max_wait_raises_without_sleeping():
    lim, clock = limiter({"g": (1, 1, None)})
    lim.acquire("g")
    with pytest.raises(RateLimitError) as info:
        lim.acquire("g", max_wait=5)
    assert info.value.code == "rate_budget"
    assert info.value.retry_after == pytest.approx(60.0)
    assert clock.sleeps == []


def test_block_from_retry_after_delays_next_request():
    lim, _clock = limiter({"g": (100, None, None)})
    lim.block("g", "s", 7)
    assert lim.delay("g", "s") == pytest.approx(7)
    waited = lim.acquire("g", "s")
    assert waited == pytest.approx(7)


def test_margins_widen_windows():
    lim, clock = limiter({"g": (1, None, None)}, margins=(0.25, 0, 0))
    lim.acquire("g")
    lim.acquire("g")
    assert clock.sleeps == [pytest.approx(1.25)]


def test_state_export_import_shares_budget():
    lim, clock = limiter({"g": (10, 2, None)})
    lim.acquire("g", "s")
    lim.acquire("g", "s")
    lim.block("g", "t", 30)
    state = json.loads(json.dumps(lim.export_state()))
    other = ratelimit.RateLimiter({"g": (10, 2, None)}, clock=clock, sleep=clock.sleep, margins=(0, 0, 0))
    other.import_state(state)
    assert other.delay("g", "s") == pytest.approx(60.0)
    assert other.delay("g", "t") == pytest.approx(30.0)
    # old entries are dropped from the export
    clock.now += 4000
    assert lim.export_state()["events"] == {}


def test_limiter_is_thread_safe():
    lim, _clock = limiter({"g": (1000, 1000, 50)})
    errors = []

    def worker():
        for _ in range(10):
            try:
                lim.acquire("g", max_wait=0)
            except RateLimitError:
                errors.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # exactly the hourly limit was granted, the rest refused
    assert lim.usage("g")[2] == 50
    assert len(errors) == 30


def test_update_from_effective_limits():
    lim, _ = limiter()
    lim.update_from_effective({"invoiceSend": {"perSecond": 1, "perMinute": 2, "perHour": 3}})
    assert lim.limits("invoiceSend") == (1, 2, 3)


# ------------------------------------------------------------------ error bodies
def test_parse_classic_exception_body():
    body = {"exception": {"exceptionDetailList": [
        {"exceptionCode": 21405, "exceptionDescription": "Błąd walidacji", "details": ["pole x"]},
        {"exceptionCode": 21470, "exceptionDescription": "Klucz", "details": None}],
        "referenceNumber": "abc", "serviceCode": "x", "timestamp": "2025-10-11T12:23:56.0154302"}}
    codes, details, ref, _ = parse_error_body(json.dumps(body).encode(), "application/json")
    assert codes == [21405, 21470]
    assert details == ["Błąd walidacji", "pole x", "Klucz"]
    assert ref == "abc"


def test_parse_problem_details_bodies():
    body = {"title": "Bad Request", "status": 400, "detail": "Żądanie jest nieprawidłowe.",
            "errors": [{"code": 21157, "description": "Nieprawidłowy rozmiar", "details": ["part 1"]}]}
    codes, details, _, _ = parse_error_body(json.dumps(body).encode(), "application/problem+json")
    assert codes == [21157]
    assert "part 1" in details and "Żądanie jest nieprawidłowe." in details
    forbidden = {"title": "Forbidden", "status": 403, "detail": "Brak uprawnień", "reasonCode": "missing-permissions",
                 "security": {"requiredAnyOfPermissions": ["InvoiceRead"]}}
    codes, details, _, extra = parse_error_body(json.dumps(forbidden).encode(), "application/problem+json")
    assert codes == [] and extra["reasonCode"] == "missing-permissions"
    too_many = {"status": {"code": 429, "description": "Too Many Requests", "details": ["po 30 sekundach"]}}
    _, details, _, _ = parse_error_body(json.dumps(too_many).encode(), "application/json")
    assert details == ["Too Many Requests", "po 30 sekundach"]
    assert parse_error_body(b"<html>oops</html>", "text/html")[1] == ["<html>oops</html>"]
    assert parse_error_body(b"", "")[0] == []


def test_retry_after_parsing():
    assert parse_retry_after("30") == 30
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == pytest.approx(10)
    assert parse_retry_after("soon") is None


def test_secrets_scrubbing():
    s = Secrets()
    s.add("supersecrettoken123", "short")
    text = s.scrub("token supersecrettoken123 and eyJhbGciOi.eyJzdWIiOiIx.sig_part and short")
    assert "supersecrettoken123" not in text
    assert "eyJhbGciOi" not in text
    assert "short" in text       # too short to be registered


# ------------------------------------------------------------------ values
def test_dates():
    d = parse_datetime("2025-10-11T12:23:56.0154302+02:00")
    assert d.utcoffset() == datetime.timedelta(hours=2) and d.microsecond == 15430
    assert format_datetime("2026-03-01") == "2026-03-01T00:00:00.000Z"
    assert format_datetime(parse_datetime("2026-03-01T10:00:00+01:00")) == "2026-03-01T09:00:00.000Z"
    assert add_months(parse_datetime("2025-11-30T00:00:00Z"), 3).date() == datetime.date(2026, 2, 28)
    with pytest.raises(ValueError):
        parse_datetime("yesterday")


def _jwt(claims):
    def enc(obj):
        return crypto.b64url_nopad(json.dumps(obj).encode())
    return "%s.%s.%s" % (enc({"alg": "none"}), enc(claims), "sig")


def test_auth_tokens_roundtrip_and_expiry_from_jwt():
    exp = int(datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc).timestamp())
    access = _jwt({"exp": exp})
    tokens = AuthTokens.from_dict({
        "accessToken": {"token": access, "validUntil": "2031-01-01T00:00:00Z"},
        "refreshToken": {"token": _jwt({"exp": exp + 100}), "validUntil": "2030-01-02T00:00:00Z"},
        "referenceNumber": "20250101-AU-1", "contextIdentifier": {"type": "Nip", "value": "1234567890"}})
    assert tokens.access_expires_at == jwt_expiry(access)     # the earlier of exp and validUntil
    again = AuthTokens.from_dict(json.loads(json.dumps(tokens.to_dict())))
    assert again.access_token == access and again.context == ContextIdentifier("Nip", "1234567890")
    assert access not in repr(tokens) and access not in str(tokens)
    assert "secret-token-value" not in repr(KsefTokenCredential("secret-token-value"))


def test_environment_table():
    assert get_environment("test").api_url == "https://api-test.ksef.mf.gov.pl/v2"
    assert get_environment("production").qr_url == "https://qr.ksef.mf.gov.pl"
    sb = get_environment("http://127.0.0.1:9999/v2")
    assert (sb.name, sb.api_url, sb.latarnia_url, sb.qr_url) == (
        "sandbox", "http://127.0.0.1:9999/v2", "http://127.0.0.1:9999/latarnia", "http://127.0.0.1:9999/qr")
    assert get_environment("https://api.ksef.mf.gov.pl/v2").name == "prod"
    with pytest.raises(ValueError):
        get_environment("staging")


def test_form_codes_and_filters():
    assert resolve_form_code("FA (3)") == {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}
    assert resolve_form_code("fa2")["systemCode"] == "FA (2)"
    with pytest.raises(ValueError):
        resolve_form_code("FA9")
    f = build_filters("buyer", "2026-01-01", None, restrict_to_hwm=True, sellerNip="1111111111")
    assert f == {"subjectType": "Subject2", "sellerNip": "1111111111",
                 "dateRange": {"dateType": "PermanentStorage", "from": "2026-01-01T00:00:00.000Z",
                               "restrictToPermanentStorageHwmDate": True}}


def test_invoice_result_duplicate():
    res = InvoiceResult.from_api({"referenceNumber": "R", "invoiceHash": "h", "status": {
        "code": 440, "description": "Duplikat faktury", "details": ["dup"],
        "extensions": {"originalKsefNumber": "5842816354-20260319-33C61F800000-AD",
                       "originalSessionReferenceNumber": "S"}}})
    assert res.is_duplicate and res.original_ksef_number == "5842816354-20260319-33C61F800000-AD"
    with pytest.raises(ApiError) as info:
        res.raise_for_status()
    assert info.value.code == "invoice_duplicate"
    assert info.value.original_ksef_number == "5842816354-20260319-33C61F800000-AD"


def test_batch_package_parts_decrypt_to_the_archive():
    invoices = [("inv-%d.xml" % i, (b"<Faktura>%d</Faktura>" % i) * 50) for i in range(40)]
    with BatchPackage.build(invoices, part_size=1000) as package:
        assert len(package.parts) > 2
        plain = b""
        for part in package.parts:
            part.fileobj.seek(0)
            data = part.fileobj.read()
            assert len(data) == part.size and crypto.sha256_b64(data) == part.hash
            plain += crypto.aes_cbc_decrypt(package._key, package._iv, data)
        assert len(plain) == package.file_size and crypto.sha256_b64(plain) == package.file_hash
        with zipfile.ZipFile(io.BytesIO(plain)) as zf:
            assert sorted(zf.namelist()) == sorted(n for n, _ in invoices)
        info = package.file_info()
        assert [p["ordinalNumber"] for p in info["fileParts"]] == list(range(1, len(package.parts) + 1))
    with pytest.raises(ValueError):
        BatchPackage.build([b"<a/>", b"<a/>"])


def test_public_key_selection_prefers_latest_valid(monkeypatch):
    now = datetime.datetime.now(datetime.timezone.utc)
    key_a, cert_a = crypto.generate_self_signed_certificate(common_name="A", nip="1111111111", organization="MF")
    _, cert_b = crypto.generate_self_signed_certificate(common_name="B", nip="1111111111", organization="MF")

    def item(cert, start, end, usage):
        return {"certificate": crypto.b64encode(crypto.certificate_der(cert)), "certificateId": "c",
                "publicKeyId": crypto.public_key_id(cert), "validFrom": format_datetime(start),
                "validTo": format_datetime(end), "usage": usage}

    items = [item(cert_a, now - datetime.timedelta(days=10), now + datetime.timedelta(days=10),
                  ["SymmetricKeyEncryption"]),
             item(cert_b, now - datetime.timedelta(days=1), now + datetime.timedelta(days=10),
                  ["SymmetricKeyEncryption", "KsefTokenEncryption"]),
             item(cert_a, now + datetime.timedelta(days=1), now + datetime.timedelta(days=10),
                  ["KsefTokenEncryption"])]
    certs = parse_public_key_certificates(items)
    assert select_certificate(certs, "SymmetricKeyEncryption").public_key_id == crypto.public_key_id(cert_b)
    assert select_certificate(certs, "KsefTokenEncryption").public_key_id == crypto.public_key_id(cert_b)
    cache = PublicKeyCache(ttl=60)
    calls = []
    cache.get("u", lambda: calls.append(1) or items, "KsefTokenEncryption")
    cache.get("u", lambda: calls.append(1) or items, "SymmetricKeyEncryption")
    assert len(calls) == 1
    cache.get("u", lambda: calls.append(1) or items, "KsefTokenEncryption", now=now + datetime.timedelta(hours=1))
    assert len(calls) == 2
    assert key_a is not None
