"""Client <-> sandbox: a 503 with Retry-After (maintenance, failure) is a refusal before processing.

Unsafe calls (sending an invoice) normally treat a 5xx as ambiguous (KSeF may have stored it). A 503
that carries ``Retry-After`` is KSeF saying "not now": nothing was processed, so the error is not
ambiguous and the caller may queue the invoice again instead of leaving it "verifying".
"""
import pytest

from ksef.errors import ServiceUnavailableError
from ksef.tests.test_client_sandbox import invoice_xml, make_client

SEND_PATH = r"/sessions/online/[^/]+/invoices$"


@pytest.fixture
def client(sandbox):
    c = make_client(sandbox, timeout=(5, 3), retries=2)
    c.authenticate()
    return c


def test_maintenance_refuses_the_send_without_ambiguity(sandbox, client):
    session = client.open_online_session()
    xml = invoice_xml(client.context.value, "FV/MAINT/1")
    sandbox.set_status("MAINTENANCE", "Prace serwisowe", api="503")
    with pytest.raises(ServiceUnavailableError) as info:
        session.send(xml)
    assert info.value.ambiguous is False
    assert info.value.params["refused"] is True
    assert info.value.params["retry_after"] == 60
    assert not session.pending, "nothing to resolve: KSeF refused the request"
    sandbox.set_status("AVAILABLE")
    assert not sandbox.invoices(session_reference_number=session.reference_number)
    assert session.send(xml).how == "sent"
    session.close()
    assert len(sandbox.invoices(session_reference_number=session.reference_number)) == 1


def test_503_without_retry_after_after_storing_stays_ambiguous(sandbox, client):
    session = client.open_online_session()
    sandbox.set_faults(type="error", status=503, when="after", path=SEND_PATH, method="POST", count=1)
    sent = session.send(invoice_xml(client.context.value, "FV/MAINT/2"))
    assert sent.how == "found_by_hash"
    session.close()
    assert len(sandbox.invoices(session_reference_number=session.reference_number)) == 1
