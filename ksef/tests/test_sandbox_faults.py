"""Sandbox robustness, rate limits, Latarnia status and every fault-injection switch (raw HTTP)."""
import http.client
import time
import urllib.parse

import pytest
import requests

from ksef.tests.fixtures_sandbox import make_invoice, random_nip


def _code(resp):
    return resp.json()["exception"]["exceptionDetailList"][0]["exceptionCode"]


@pytest.fixture
def seller(sandbox, raw):
    nip = random_nip()
    access = raw.login(nip, sandbox.create_token(nip))["accessToken"]["token"]
    return nip, access


# --------------------------------------------------------------------------------------------
# robustness
# --------------------------------------------------------------------------------------------

def test_unknown_path_bad_json_and_oversized_body(sandbox, raw, seller):
    _nip, access = seller
    missing = raw.call("GET", "/no/such/endpoint")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/problem+json")
    assert requests.get(sandbox.url + "/elsewhere", timeout=10).status_code == 404
    json_headers = {"Content-Type": "application/json"}
    bad = raw.call("POST", "/sessions/online", access, data=b"{'no': json}", headers=json_headers)
    assert bad.status_code == 400 and _code(bad) == 21405
    sandbox.set_config(max_body_bytes=1000)
    big = raw.call("POST", "/sessions/online", access, data=b"x" * 5000, headers=json_headers)
    assert big.status_code == 413
    sandbox.set_config(max_body_bytes=16 * 1024 * 1024)
    assert raw.call("GET", "/rate-limits", access).status_code == 200


def test_concurrent_requests_are_served(sandbox, raw, seller):
    import concurrent.futures

    _nip, access = seller

    def hit(_):
        return requests.get(sandbox.api_url + "/rate-limits", headers={"Authorization": "Bearer " + access},
                            timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(hit, range(40))) == {200}


# --------------------------------------------------------------------------------------------
# rate limits
# --------------------------------------------------------------------------------------------

def test_rate_limit_429_with_retry_after_and_body(sandbox, raw, seller):
    _nip, access = seller
    sandbox.set_rate_limits({"other": [1, 100, 1000]})
    limits = raw.call("GET", "/rate-limits", access).json()
    assert limits["other"] == {"perSecond": 1, "perMinute": 100, "perHour": 1000}
    assert limits["invoiceMetadata"] == {"perSecond": 8, "perMinute": 16, "perHour": 20}
    limited = raw.call("GET", "/rate-limits", access)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    body = limited.json()
    assert body["status"]["code"] == 429 and body["status"]["description"] == "Too Many Requests"
    assert body["status"]["details"]
    problem = raw.call("GET", "/rate-limits", access, headers={"X-Error-Format": "problem-details"})
    assert problem.status_code == 429 and problem.json()["status"] == 429
    # budgets are per context: another context is not affected
    other = random_nip()
    other_access = raw.login(other, sandbox.create_token(other))["accessToken"]["token"]
    assert raw.call("GET", "/rate-limits", other_access).status_code == 200
    time.sleep(1.05)
    assert raw.call("GET", "/rate-limits", access).status_code == 200


def test_production_limits_and_public_endpoints(sandbox, raw, seller):
    _nip, access = seller
    sandbox.set_rate_limits("production")
    assert raw.call("GET", "/rate-limits", access).json()["sessionList"] == {
        "perSecond": 5, "perMinute": 10, "perHour": 60}
    codes = [raw.call("GET", "/sessions?sessionType=Online", access).status_code for _ in range(6)]
    assert codes[:5] == [200] * 5 and codes[5] == 429
    sandbox.set_rate_limits({"public": 3})
    codes = [raw.call("POST", "/auth/challenge").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    sandbox.set_rate_limits("off")
    assert all(raw.call("POST", "/auth/challenge").status_code == 200 for _ in range(70))


# --------------------------------------------------------------------------------------------
# Latarnia status
# --------------------------------------------------------------------------------------------

def test_latarnia_status_and_api_behaviour(sandbox, raw, seller):
    _nip, access = seller
    status = requests.get(sandbox.status_url + "/status", timeout=10).json()
    assert status == {"status": "AVAILABLE", "messages": []}
    sandbox.set_status("MAINTENANCE", "Prace serwisowe 16-18")
    status = requests.get(sandbox.status_url + "/status", timeout=10).json()
    assert status["status"] == "MAINTENANCE"
    assert status["messages"][0]["category"] == "MAINTENANCE"
    assert status["messages"][0]["type"] == "MAINTENANCE_ANNOUNCEMENT"
    resp = raw.call("GET", "/rate-limits", access)
    assert resp.status_code == 503 and resp.headers["Retry-After"]
    sandbox.set_status("FAILURE")
    assert raw.call("POST", "/auth/challenge").status_code == 503
    sandbox.set_status("TOTAL_FAILURE")
    with pytest.raises(requests.ConnectionError):
        raw.call("GET", "/rate-limits", access, timeout=5)
    sandbox.set_status("AVAILABLE")
    assert raw.call("GET", "/rate-limits", access).status_code == 200
    messages = requests.get(sandbox.status_url + "/messages", timeout=10).json()
    types = [m["type"] for m in messages]
    assert "FAILURE_START" in types and "FAILURE_END" in types and "MAINTENANCE_ANNOUNCEMENT" in types
    for msg in messages:
        assert {"id", "eventId", "category", "type", "title", "text", "start", "version", "published"} <= set(msg)
    sandbox.set_status("MAINTENANCE", api="up")  # announced, API still answering
    assert raw.call("GET", "/rate-limits", access).status_code == 200


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------

def test_fault_latency(sandbox, raw, seller):
    _nip, access = seller
    sandbox.set_faults(type="latency", seconds=0.6, path="/rate-limits", count=1)
    start = time.time()
    assert raw.call("GET", "/rate-limits", access).status_code == 200
    assert time.time() - start >= 0.55
    start = time.time()
    raw.call("GET", "/rate-limits", access)
    assert time.time() - start < 0.5  # count exhausted


def test_fault_error_5xx_and_count(sandbox, raw, seller):
    _nip, access = seller
    sandbox.set_faults(type="error", status=503, path=r"/rate-limits$", count=2)
    assert [raw.call("GET", "/rate-limits", access).status_code for _ in range(3)] == [503, 503, 200]
    sandbox.set_faults(type="error", status=500, method="POST")
    assert raw.call("GET", "/rate-limits", access).status_code == 200
    assert raw.call("POST", "/auth/challenge").status_code == 500
    assert sandbox.faults()[-1]["hits"] == 1


def test_fault_error_after_store_keeps_the_invoice(sandbox, raw, seller):
    nip, access = seller
    ref, key, iv = raw.open_online(access)
    sandbox.set_faults(type="error", status=502, when="after", path="/invoices$", count=1)
    xml = make_invoice(nip, random_nip())
    assert raw.send(access, ref, key, iv, xml).status_code == 502
    sandbox.clear_faults()
    time.sleep(0.4)
    assert len(sandbox.invoices(seller_nip=nip)) == 1


def test_fault_rate_limit_storm(sandbox, raw):
    sandbox.set_faults(type="rate_limit", retry_after=7, path="/auth/challenge", count=3)
    responses = [raw.call("POST", "/auth/challenge") for _ in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 429, 200]
    assert responses[0].headers["Retry-After"] == "7"


def test_fault_probability_is_reproducible(sandbox, raw):
    def run():
        sandbox.clear_faults()
        sandbox.set_faults(faults=[{"type": "error", "status": 500, "path": "/auth/challenge",
                                    "probability": 0.5}], seed=42)
        return [raw.call("POST", "/auth/challenge").status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert 500 in first and 200 in first


def test_fault_timeout_after_store_and_drop(sandbox, raw, seller):
    nip, access = seller
    ref, key, iv = raw.open_online(access)
    sandbox.set_faults(type="timeout_after_store", seconds=3, path="/invoices$", count=1)
    xml = make_invoice(nip, random_nip())
    with pytest.raises(requests.exceptions.ReadTimeout):
        raw.call("POST", "/sessions/online/%s/invoices" % ref, access, json=raw.invoice_body(xml, key, iv),
                 timeout=1)
    # the request was processed: the invoice exists exactly once; a retry is a duplicate (440)
    time.sleep(0.4)
    stored = sandbox.invoices(seller_nip=nip)
    assert len(stored) == 1
    retry = raw.send(access, ref, key, iv, xml).json()["referenceNumber"]
    status = raw.wait_invoice(access, ref, retry)
    assert status["status"]["code"] == 440
    assert status["status"]["extensions"]["originalKsefNumber"] == stored[0]["ksefNumber"]
    sandbox.set_faults(type="drop", path="/auth/challenge", count=1)
    with pytest.raises(requests.ConnectionError):
        raw.call("POST", "/auth/challenge")
    assert raw.call("POST", "/auth/challenge").status_code == 200


@pytest.mark.parametrize("mode", ["truncated_json", "wrong_content_type", "short_body"])
def test_fault_malformed_responses(sandbox, raw, mode):
    sandbox.set_faults(type="malformed", mode=mode, path="/auth/challenge", count=1)
    parsed = urllib.parse.urlsplit(sandbox.url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    conn.request("POST", "/v2/auth/challenge")
    resp = conn.getresponse()
    if mode == "short_body":
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
    else:
        body = resp.read()
        if mode == "truncated_json":
            assert resp.getheader("Content-Type").startswith("application/json")
            with pytest.raises(ValueError):
                __import__("json").loads(body)
        else:
            assert resp.getheader("Content-Type") == "text/html" and body.startswith(b"<html>")
    conn.close()
    assert raw.call("POST", "/auth/challenge").json()["challenge"]


def test_fault_slow_upo(sandbox, raw, seller):
    nip, access = seller
    sandbox.set_faults(type="slow_upo", seconds=1.5)
    ref, key, iv = raw.open_online(access)
    inv = raw.send(access, ref, key, iv, make_invoice(nip, random_nip())).json()["referenceNumber"]
    status = raw.wait_invoice(access, ref, inv)
    assert status["status"]["code"] == 200 and "upoDownloadUrl" not in status
    early = raw.call("GET", "/sessions/%s/invoices/%s/upo" % (ref, inv), access)
    assert early.status_code == 400 and _code(early) == 21178
    time.sleep(1.6)
    assert raw.call("GET", "/sessions/%s/invoices/%s/upo" % (ref, inv), access).status_code == 200
    assert "upoDownloadUrl" in raw.wait_invoice(access, ref, inv)


def test_admin_api_rejects_bad_fault_specs(sandbox):
    resp = sandbox.http.post(sandbox.url + "/_sandbox/faults", json={"type": "explode"}, timeout=10)
    assert resp.status_code == 400 and "unknown fault type" in resp.json()["error"]
    resp = sandbox.http.post(sandbox.url + "/_sandbox/faults", json={"type": "error", "path": "("}, timeout=10)
    assert resp.status_code == 400
