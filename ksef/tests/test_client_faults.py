"""Client <-> sandbox under injected faults: exactly-once sending, retries, 429, malformed answers."""
import time

import pytest

from ksef.client import RateLimiter, SendUnresolved
from ksef.errors import RateLimitError, ServerError, ServiceUnavailableError, TransportError
from ksef.tests.test_client_sandbox import invoice_xml, make_client

SEND_PATH = r"/sessions/online/[^/]+/invoices$"


def _stored(sandbox, session):
    return sandbox.invoices(session_reference_number=session.reference_number)


@pytest.fixture
def client(sandbox):
    c = make_client(sandbox, timeout=(5, 1.5), retries=3)
    c.authenticate()
    return c


def test_timeout_after_store_is_resolved_by_hash_without_duplicate(sandbox, client):
    nip = client.context.value
    session = client.open_online_session()
    sandbox.set_faults(type="timeout_after_store", path=SEND_PATH, method="POST", seconds=4, count=1)
    sent = session.send(invoice_xml(nip, "FV/T/1"))
    assert sent.how == "found_by_hash"
    session.close()
    sandbox.wait_idle()
    stored = _stored(sandbox, session)
    assert len(stored) == 1 and stored[0]["invoiceHash"] == sent.invoice_hash
    assert session.wait_for_invoice(sent.reference_number).is_success


def test_connection_drop_before_store_is_resent_once(sandbox, client):
    nip = client.context.value
    session = client.open_online_session()
    sandbox.set_faults(type="drop", path=SEND_PATH, method="POST", count=1)
    sent = session.send(invoice_xml(nip, "FV/D/1"))
    assert sent.how == "resent"
    session.close()
    assert len(_stored(sandbox, session)) == 1


@pytest.mark.parametrize(("when", "how"), [("after", "found_by_hash"), ("before", "resent")])
def test_5xx_on_send_never_duplicates(sandbox, client, when, how):
    nip = client.context.value
    session = client.open_online_session()
    sandbox.set_faults(type="error", status=500, when=when, path=SEND_PATH, method="POST", count=1)
    sent = session.send(invoice_xml(nip, "FV/5/%s" % when))
    assert sent.how == how
    session.close()
    assert len(_stored(sandbox, session)) == 1


def test_malformed_send_answer_is_resolved_by_hash(sandbox, client):
    nip = client.context.value
    session = client.open_online_session()
    sandbox.set_faults(type="malformed", mode="truncated_json", path=SEND_PATH, method="POST", count=1)
    sent = session.send(invoice_xml(nip, "FV/M/1"))
    assert sent.how == "found_by_hash"
    session.close()
    assert len(_stored(sandbox, session)) == 1


def test_unresolvable_send_stays_pending_and_resolves_later(sandbox):
    client = make_client(sandbox, timeout=(5, 1.5), retries=1)
    client.authenticate()
    nip = client.context.value
    session = client.open_online_session()
    xml = invoice_xml(nip, "FV/P/1")
    # the send is stored but answered 503, and every session listing fails too
    sandbox.set_faults(faults=[
        {"type": "error", "status": 503, "when": "after", "path": SEND_PATH, "method": "POST", "count": 1},
        {"type": "error", "status": 503, "path": r"/sessions/[^/]+/invoices$", "method": "GET"}])
    with pytest.raises(SendUnresolved) as info:
        session.send(xml)
    assert info.value.invoice_hash in session.pending
    state = session.to_dict()
    assert info.value.invoice_hash in state["pending"]
    sandbox.clear_faults()
    resumed = client.resume_online_session(state)
    resolved = resumed.resolve_pending()
    assert resolved[info.value.invoice_hash]                    # KSeF has it: no resend
    assert resumed.send(xml).how == "already_sent"
    resumed.close()
    assert len(_stored(sandbox, session)) == 1


def test_many_random_send_faults_exactly_once(sandbox, client):
    nip = client.context.value
    session = client.open_online_session()
    sandbox.set_faults(seed=7, faults=[
        {"type": "timeout_after_store", "path": SEND_PATH, "method": "POST", "seconds": 3, "probability": 0.15},
        {"type": "error", "status": 502, "when": "after", "path": SEND_PATH, "method": "POST", "probability": 0.15},
        {"type": "drop", "path": SEND_PATH, "method": "POST", "probability": 0.1},
        {"type": "rate_limit", "retry_after": 1, "path": SEND_PATH, "method": "POST", "probability": 0.1},
    ])
    xmls = [invoice_xml(nip, "FV/X/%d" % i) for i in range(15)]
    hows = [session.send(x).how for x in xmls]
    sandbox.clear_faults()
    session.close()
    stored = _stored(sandbox, session)
    assert len(stored) == 15
    assert len({s["invoiceHash"] for s in stored}) == 15
    assert set(hows) - {"sent"}, "the faults should have hit at least one send"


def test_5xx_on_reads_is_retried(sandbox, client):
    session = client.open_online_session()
    sandbox.set_faults(type="error", status=503, path=r"/sessions/[^/]+$", method="GET", count=2)
    before = client.stats["retries"]
    assert session.status()["status"]["code"] == 100
    assert client.stats["retries"] - before == 2
    sandbox.set_faults(type="error", status=500, path=r"/sessions/[^/]+$", method="GET")
    with pytest.raises(ServerError):
        session.status()


def test_malformed_reads_retry_then_transport_error(sandbox, client):
    session = client.open_online_session()
    for mode in ("truncated_json", "wrong_content_type", "short_body"):
        sandbox.set_faults(type="malformed", mode=mode, path=r"/sessions/[^/]+$", method="GET", count=1)
        assert session.status()["status"]["code"] == 100, mode
        sandbox.clear_faults()
    sandbox.set_faults(type="malformed", mode="truncated_json", path=r"/sessions/[^/]+$", method="GET")
    with pytest.raises(TransportError) as info:
        session.status()
    assert info.value.code == "malformed_response"


def test_429_storm_honours_retry_after(sandbox):
    limiter = RateLimiter()
    c = make_client(sandbox, limiter=limiter)
    c.authenticate()
    session = c.open_online_session()
    sandbox.set_faults(type="rate_limit", retry_after=1, path=r"/sessions/[^/]+$", method="GET", count=3)
    started = time.monotonic()
    assert session.status()["status"]["code"] == 100
    assert time.monotonic() - started >= 2.9          # three Retry-After: 1
    assert c.stats["429"] == 3
    # a 429 on a send proves it was not processed: retried, stored once
    sandbox.set_faults(type="rate_limit", retry_after=1, path=SEND_PATH, method="POST", count=2)
    sent = session.send(invoice_xml(c.context.value, "FV/429/1"))
    assert sent.how == "sent"
    session.close()
    assert len(_stored(sandbox, session)) == 1


def test_429_beyond_max_wait_raises(sandbox):
    c = make_client(sandbox, limiter=RateLimiter(), max_rate_wait=2)
    c.authenticate()
    sandbox.set_faults(type="rate_limit", retry_after=5, path=r"^/v2/sessions$", method="GET", count=1)
    with pytest.raises(RateLimitError) as info:
        list(c.list_sessions())
    assert info.value.retry_after == 5


def test_production_limits_no_429(sandbox):
    sandbox.set_rate_limits("production")
    c = make_client(sandbox, limiter=RateLimiter())
    c.authenticate()
    session = c.open_online_session()
    ref = session.send(invoice_xml(c.context.value, "FV/PL/1")).reference_number
    started = time.monotonic()
    for _ in range(40):                 # invoiceStatus: 30/s, 120/min
        session.invoice_status(ref)
    assert time.monotonic() - started >= 0.9          # the client spread them over > 1 s
    assert c.stats["429"] == 0


def test_maintenance_status_and_unavailable_api(sandbox, client):
    sandbox.set_status("MAINTENANCE", "Prace serwisowe 16:00-18:00")
    status = client.service_status()
    assert status["status"] == "MAINTENANCE"
    assert any("serwisowe" in (m.get("text") or m.get("title") or "") for m in status["messages"])
    assert client.latarnia.messages()
    sandbox.set_status("FAILURE", "Awaria", api="503")
    with pytest.raises(ServiceUnavailableError):
        client.open_online_session()
    sandbox.set_status("AVAILABLE")
    assert client.service_status()["status"] == "AVAILABLE"


def test_slow_upo_is_awaited(sandbox, client):
    sandbox.set_faults(type="slow_upo", seconds=1.5)
    session = client.open_online_session()
    sent = session.send(invoice_xml(client.context.value, "FV/U/1"))
    started = time.monotonic()
    upo = session.invoice_upo(sent.reference_number, timeout=20)
    assert b"Potwierdzenie" in upo
    assert time.monotonic() - started >= 0.5
    session.close()


def test_ambiguous_login_restarts_with_fresh_challenge(sandbox):
    c = make_client(sandbox, timeout=(5, 1.5))
    sandbox.set_faults(type="timeout_after_store", path=r"/auth/ksef-token$", method="POST", seconds=3, count=1)
    tokens = c.authenticate()
    assert tokens.access_valid()
    assert c.stats["calls:public"] >= 8             # two challenges and two token posts
    sandbox.set_faults(type="error", status=502, path=r"/auth/token/redeem$", method="POST", when="after", count=1)
    assert make_client(sandbox, c.context.value, token=c.credential.token).authenticate().access_valid()
