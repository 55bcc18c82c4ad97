"""No token, key or encrypted token ever appears in logs, reprs or exception texts."""
import logging

import pytest

from ksef import crypto
from ksef.client import BatchPackage, IncrementalSync
from ksef.errors import KsefError
from ksef.tests.test_client_sandbox import invoice_xml, make_client, seal_credential


def test_full_flow_logs_no_secret(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    nip = None
    # certificate login, KSeF token creation, token login, sending (online + batch), faults, receiving
    from ksef.tests.fixtures_sandbox import random_nip
    nip = random_nip()
    cert_cred = seal_credential(nip)
    admin = make_client(sandbox, nip, credential=cert_cred)
    admin.authenticate()
    created = admin.create_token(["InvoiceRead", "InvoiceWrite"], "secret test token")
    client = make_client(sandbox, nip, token=created["token"], timeout=(5, 1.5))
    client.authenticate()
    session = client.open_online_session()
    sandbox.set_faults(type="timeout_after_store", path=r"/invoices$", method="POST", seconds=3, count=1)
    sent = session.send(invoice_xml(nip, "FV/SEC/1"))
    sandbox.clear_faults()
    texts.append(repr(session))
    texts.append(repr(session.to_dict().keys()))
    session.close()
    session.wait_for_invoice(sent.reference_number)
    session.invoice_upo(sent.reference_number)
    with BatchPackage.build([invoice_xml(nip, "FV/SEC/B%d" % i) for i in range(2)]) as package:
        texts.append(repr(package))
        batch = client.open_batch_session(package)
        texts.append(repr(batch))
        batch.upload(package)
        batch.close()
    batch.wait(timeout=60)
    sandbox.set_config(hwm_lag=0.0)
    sandbox.seed(nip, count=2)
    import datetime
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    sync = IncrementalSync(client, "Subject2", start=start)
    list(sync.run())
    export = client.export_invoices({"subjectType": "Subject2", "dateRange": {
        "dateType": "PermanentStorage", "from": start.isoformat()}})
    texts.append(repr(export))
    # errors carry no secrets either
    for bad in (lambda: client.session("20250101-SO-0000000000-0000000000-00").status(),
                lambda: make_client(sandbox, nip, token=created["token"] + "x").authenticate(),
                lambda: session.send(invoice_xml(nip, "FV/SEC/2"))):
        with pytest.raises(KsefError) as info:
            bad()
        texts.extend([str(info.value), repr(info.value), repr(info.value.params)])
    texts.extend([repr(client), repr(client.tokens), str(client.tokens), repr(admin.credential),
                  repr(client.credential)])
    client.logout()

    secrets = set()
    for c in (admin, client):
        secrets |= set(c.transport.secrets._values)
    secrets.add(created["token"])
    secrets.add(crypto.private_key_pem(cert_cred.private_key).decode().splitlines()[1])
    for obj in (session, batch, export):
        secrets.add(obj._key.hex())
        secrets.add(crypto.b64encode(obj._key))
    assert len(secrets) >= 8
    logged = "\n".join(r.getMessage() for r in caplog.records)
    logged += "\n".join(str(r.args) for r in caplog.records)
    assert caplog.records, "the flow should have logged at DEBUG"
    haystack = logged + "\n".join(texts)
    leaked = [s[:6] + "..." for s in secrets if s in haystack]
    assert not leaked, "secrets leaked: %s" % leaked
