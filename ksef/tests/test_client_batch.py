"""Client <-> sandbox: batch sessions (zip, encrypted parts, pre-signed uploads, results, UPO)."""
import json

import pytest

from ksef import crypto
from ksef.client import BatchPackage
from ksef.tests.test_client_sandbox import invoice_xml, make_client


@pytest.fixture
def client(sandbox):
    c = make_client(sandbox)
    c.authenticate()
    return c


def test_batch_in_several_parts_with_a_rejected_invoice(sandbox, client):
    nip = client.context.value
    invoices = [("fv-%02d.xml" % i, invoice_xml(nip, "FV/B/%d" % i, lines=3)) for i in range(20)]
    bad = invoice_xml(nip, "FV/B/BAD").replace(b"<P_2>", b"<P_2x>", 1).replace(b"</P_2>", b"</P_2x>", 1)
    invoices.append(("bad.xml", bad))
    sessions = []
    result = client.send_batch(invoices, part_size=4000, timeout=120, on_session=sessions.append)
    assert len(result.sessions) == 1 and sessions == result.sessions
    assert len(result.sessions[0].part_upload_requests) > 1
    assert result.statuses[0]["status"]["code"] == 200
    assert len(result.accepted) == 20 and len(result.rejected) == 1
    by_hash = result.by_hash()
    assert by_hash[crypto.sha256_b64(bad)].status_code in (430, 450)
    for _name, xml in invoices[:20]:
        assert by_hash[crypto.sha256_b64(xml)].ksef_number
    session = result.sessions[0]
    assert [f.invoice_hash for f in session.failed_invoices()] == [crypto.sha256_b64(bad)]
    upo = session.session_upo()
    assert upo and b"Potwierdzenie" in upo[0]
    assert len(sandbox.invoices(session_reference_number=session.reference_number)) == 20


def test_batch_split_into_sessions_and_offline_mode(sandbox, client):
    nip = client.context.value
    invoices = [invoice_xml(nip, "FV/BO/%d" % i) for i in range(5)]
    result = client.send_batch(invoices, offline_mode=True, max_per_session=3, compression="TarGz", timeout=120)
    assert len(result.sessions) == 2
    assert len(result.accepted) == 5
    assert {r.invoicing_mode for r in result.accepted} == {"Offline"}


def test_batch_resume_after_crash_between_upload_and_close(sandbox, client):
    nip = client.context.value
    invoices = [invoice_xml(nip, "FV/BR/%d" % i) for i in range(4)]
    with BatchPackage.build(invoices, part_size=2000) as package:
        session = client.open_batch_session(package)
        session.upload(package)
        state = json.loads(json.dumps(session.to_dict()))
    assert state["uploadedParts"] == list(range(1, len(package.parts) + 1))
    other = make_client(sandbox, nip, tokens=client.export_tokens())
    resumed = other.resume_batch_session(state)
    resumed.close()
    resumed.close()                         # idempotent
    assert resumed.wait(timeout=60)["status"]["code"] == 200
    assert sum(1 for r in resumed.invoices() if r.is_success) == 4


def test_upload_fault_on_presigned_part_is_retried(sandbox, client):
    nip = client.context.value
    sandbox.set_faults(type="error", status=503, path=r"^/storage/batch/", method="PUT", count=1)
    before = client.stats["retries"]
    result = client.send_batch([invoice_xml(nip, "FV/BU/%d" % i) for i in range(3)], timeout=120)
    assert len(result.accepted) == 3
    assert client.stats["retries"] == before + 1
    assert sandbox.faults() == [] or all(f.get("count") == 0 for f in sandbox.faults())
