"""Client <-> sandbox integration: authentication, token lifecycle, KSeF tokens, online sessions, UPO.

Real HTTP on 127.0.0.1, real crypto, every test in its own random NIP context.
"""
import json
import time

import pytest

from ksef import crypto
from ksef.client import (
    AuthenticationFailed,
    CertificateCredential,
    ContextIdentifier,
    KsefClient,
    KsefTokenCredential,
    Poller,
)
from ksef.client.keys import PublicKeyCache
from ksef.errors import AuthenticationError, BadRequestError, ForbiddenError
from ksef.tests.fixtures_sandbox import random_nip

FAST_POLL = Poller(first=0.05, cap=0.3, factor=1.5)


def make_client(sandbox, nip=None, *, token=None, permissions=("InvoiceRead", "InvoiceWrite"), limiter=False,
                **kw):
    """A client on its own NIP with a sandbox-issued KSeF token (or ``credential=``/``tokens=`` in kw)."""
    nip = nip or random_nip()
    if token is None and "credential" not in kw and "tokens" not in kw:
        token = sandbox.create_token(nip, permissions)
    if token is not None:
        kw.setdefault("credential", KsefTokenCredential(token))
    kw.setdefault("poller", FAST_POLL)
    kw.setdefault("send_resolve_delays", (0.0, 0.2))
    kw.setdefault("timeout", (5, 20))
    kw.setdefault("backoff", (0.05, 0.5))
    kw.setdefault("public_key_cache", PublicKeyCache())
    return KsefClient(sandbox.url, nip=nip, rate_limiter=limiter if limiter is not False else False, **kw)


def invoice_xml(seller_nip, number, buyer_nip="1111111111", **kw):
    from ksef import fa3
    from ksef.fa3.examples import example_invoice
    return fa3.build(example_invoice(seller_nip=seller_nip, buyer_nip=buyer_nip, number=number, **kw))


def seal_credential(nip, kind="rsa", **kw):
    key = crypto.generate_private_key(kind)
    key, cert = crypto.generate_self_signed_certificate(key, nip=nip, organization="Firma %s sp. z o.o." % nip)
    return CertificateCredential(cert, key, **kw)


# ------------------------------------------------------------------ authentication
def test_token_auth_state_roundtrip_and_logout(sandbox):
    seen = []
    client = make_client(sandbox, on_tokens_changed=seen.append)
    tokens = client.authenticate()
    assert tokens.access_valid() and tokens.refresh_valid()
    assert seen and seen[-1]["accessToken"]["token"] == tokens.access_token
    assert seen[-1]["contextIdentifier"] == {"type": "Nip", "value": client.context.value}
    # Odoo stores the dict; a new client without credential continues with it
    state = json.loads(json.dumps(client.export_tokens()))
    other = make_client(sandbox, client.context.value, tokens=state)
    assert list(other.list_sessions()) == []
    assert other.stats["calls:public"] == 0          # no new login happened
    assert other.logout() is True
    with pytest.raises(AuthenticationError) as info:
        other.access_token()
    assert info.value.code == "reauth_required"
    # the revoked refresh token cannot be used any more
    old = make_client(sandbox, client.context.value, tokens=state)
    old._tokens.access_valid_until = old._tokens.access_valid_until.replace(year=2000)
    with pytest.raises(AuthenticationError):
        old.access_token()


def test_refresh_before_expiry_and_reauth_when_refresh_dead(sandbox):
    sandbox.set_config(access_token_ttl=3.0)
    changes = []
    client = make_client(sandbox, refresh_margin=2.5, on_tokens_changed=changes.append)
    first = client.authenticate()
    calls = client.stats["calls"]
    time.sleep(1.1)
    token = client.access_token()              # < 2.5 s left: refreshed
    assert client.stats["calls"] == calls + 1  # one POST /auth/token/refresh, no new login
    assert token != first.access_token
    assert client.tokens.refresh_token == first.refresh_token
    assert client.tokens.reference_number == first.reference_number
    assert len(changes) == 2
    # a dead refresh token: a fresh authentication with the stored credential
    sandbox.set_config(refresh_token_ttl=0.5)
    client2 = make_client(sandbox, refresh_margin=2.5)
    before = client2.authenticate()
    time.sleep(1.0)
    client2.access_token()
    assert client2.tokens.reference_number != before.reference_number


def test_401_triggers_refresh_and_retry(sandbox):
    client = make_client(sandbox)
    client.authenticate()
    client._tokens.access_token = client._tokens.access_token[:-4] + "AAAA"    # corrupt signature
    assert list(client.list_sessions()) == []
    assert client.tokens.access_valid()


def test_bad_token_gives_typed_failure(sandbox):
    nip = random_nip()
    client = make_client(sandbox, nip, token="20250101-EC-0000000000-0000000000-00|" + "a" * 40)
    with pytest.raises(AuthenticationError) as info:
        client.authenticate()
    err = info.value
    assert isinstance(err, AuthenticationFailed) or err.http_status == 400
    if isinstance(err, AuthenticationFailed):
        assert err.status_code == 450 and err.description
    assert "a" * 40 not in str(err)


def test_xades_login_rsa_and_ec_then_token_management(sandbox):
    nip = random_nip()
    for kind in ("rsa", "ec"):
        client = make_client(sandbox, nip, credential=seal_credential(nip, kind))
        tokens = client.authenticate()
        assert tokens.method == "Certificate"
    perms = client.current_permissions()
    assert perms["owner"] and perms["missing"] == []
    created = client.create_token(["InvoiceRead", "InvoiceWrite"], "Odoo integration token")
    assert created["status"] == "Active" and created["token"]
    listed = {t["referenceNumber"]: t for t in client.list_tokens()}
    assert listed[created["referenceNumber"]]["requestedPermissions"] == ["InvoiceRead", "InvoiceWrite"]
    assert client.get_token(created["referenceNumber"])["status"] == "Active"
    # Odoo logs in with its own token from now on
    odoo = make_client(sandbox, nip, token=created["token"])
    odoo.authenticate()
    info = odoo.current_permissions()
    assert info["source"] in ("token", "jwt") and info["missing"] == []
    client.revoke_token(created["referenceNumber"])
    time.sleep(0.5)
    assert client.get_token(created["referenceNumber"])["status"] in ("Revoking", "Revoked")
    with pytest.raises(AuthenticationError):
        make_client(sandbox, nip, token=created["token"]).authenticate()


def test_xades_login_with_pkcs12_and_encrypted_key(sandbox):
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
    nip = random_nip()
    key, cert = crypto.generate_self_signed_certificate(nip=nip, organization="P12 Test")
    p12 = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, BestAvailableEncryption(b"pw"))
    cred = CertificateCredential(p12, None, "pw")
    assert make_client(sandbox, nip, credential=cred).authenticate()
    pem_key = crypto.private_key_pem(key, "secret")
    cred2 = CertificateCredential(crypto.certificate_pem(cert), pem_key, "secret",
                                  subject_identifier_type="certificateSubject")
    assert make_client(sandbox, nip, credential=cred2).authenticate()


def test_token_without_write_permission_is_flagged(sandbox):
    client = make_client(sandbox, permissions=("InvoiceRead",))
    client.authenticate()
    info = client.current_permissions()
    assert "InvoiceWrite" in info["missing"] and "InvoiceRead" in info["permissions"]
    with pytest.raises(ForbiddenError) as exc:
        client.open_online_session()
    assert exc.value.params.get("reasonCode") == "missing-permissions"


def test_stale_public_key_21470_refetches_once(sandbox):
    client = make_client(sandbox)
    # poison the cache with a key KSeF does not know
    _key, rogue = crypto.generate_self_signed_certificate(nip="1111111111", organization="Rogue")
    now = time.time()
    import datetime
    stale = [{"certificate": crypto.b64encode(crypto.certificate_der(rogue)), "certificateId": "x",
              "publicKeyId": crypto.public_key_id(rogue),
              "validFrom": "2000-01-01T00:00:00Z", "validTo": "2099-01-01T00:00:00Z",
              "usage": ["KsefTokenEncryption", "SymmetricKeyEncryption"]}]
    client.public_keys.get(client.environment.api_url, lambda: stale, "KsefTokenEncryption",
                           now=datetime.datetime.fromtimestamp(now, datetime.timezone.utc))
    client.authenticate()
    with client.open_online_session() as session:
        assert session.reference_number
    assert client.stats["calls:public"] >= 5


def test_authorization_policy_ip_restriction(sandbox):
    client = make_client(sandbox, authorization_policy={"ip4Addresses": ["10.1.2.3"]})
    client.authenticate()
    with pytest.raises(ForbiddenError) as info:
        list(client.list_sessions())
    assert info.value.params.get("reasonCode") == "ip-not-allowed"
    ok = make_client(sandbox, authorization_policy={"ip4Masks": ["127.0.0.0/8"]})
    ok.authenticate()
    assert list(ok.list_sessions()) == []


def test_internal_id_context(sandbox):
    nip = random_nip()
    cred = seal_credential(nip)
    client = make_client(sandbox, nip, credential=cred)
    client.context = ContextIdentifier("InternalId", "%s-00001" % nip)
    try:
        client.authenticate()
    except AuthenticationFailed as exc:     # no permissions granted in the subunit: a typed failure
        assert exc.status_code in (415, 450, 460)
    else:
        assert client.tokens.context.type == "InternalId"


# ------------------------------------------------------------------ online session
def test_online_session_full_flow(sandbox):
    client = make_client(sandbox)
    nip = client.context.value
    xmls = [invoice_xml(nip, "FV/%d" % i) for i in range(12)]
    bad = invoice_xml(nip, "FV/BAD").replace(b"<P_2>", b"<P_2x>", 1).replace(b"</P_2>", b"</P_2x>", 1)
    with client.open_online_session("FA3") as session:
        sent = [session.send(x) for x in xmls]
        bad_sent = session.send(bad)
        again = session.send(xmls[0])
        assert again.how == "already_sent" and again.reference_number == sent[0].reference_number
        results = session.wait_for_invoices([s.reference_number for s in sent] + [bad_sent.reference_number])
    ok = [results[s.reference_number] for s in sent]
    assert all(r.is_success and r.ksef_number for r in ok)
    assert all(r.ksef_number.startswith(nip) for r in ok)
    assert results[bad_sent.reference_number].status_code == 430
    # list with continuation tokens (page size 10 < 13 invoices)
    listed = list(session.invoices(page_size=10))
    assert len(listed) == 13
    failed = list(session.failed_invoices(page_size=10))
    assert [f.reference_number for f in failed] == [bad_sent.reference_number]
    status = session.wait()
    assert status["status"]["code"] == 200 and status["invoiceCount"] == 13
    assert status["successfulInvoiceCount"] == 12 and status["failedInvoiceCount"] == 1
    # UPO: session (pre-signed URL, then API), per invoice (URL, API, by KSeF number)
    upo_url = session.session_upo()
    upo_api = session.session_upo(via_url=False)
    assert upo_url == upo_api and b"Potwierdzenie" in upo_url[0]
    one = session.invoice_upo(sent[0].reference_number)
    assert ok[0].ksef_number.encode() in one
    assert session.invoice_upo(sent[0].reference_number, via_url=False) == one
    assert ok[1].ksef_number.encode() in session.invoice_upo(ksef_number=ok[1].ksef_number)
    stored = sandbox.invoices(session_reference_number=session.reference_number)
    assert len(stored) == 12


def test_session_state_resumes_in_new_process(sandbox):
    client = make_client(sandbox)
    nip = client.context.value
    session = client.open_online_session()
    first = session.send(invoice_xml(nip, "FV/R/1"))
    state = json.loads(json.dumps(session.to_dict()))
    assert "symmetricKey" in state and state["sent"] == {first.invoice_hash: first.reference_number}
    assert crypto.b64encode(session._key) not in repr(session)
    # "crashed" process: a new client from the stored token state resumes the same session
    other = make_client(sandbox, nip, tokens=client.export_tokens())
    resumed = other.resume_online_session(state)
    assert resumed.send(invoice_xml(nip, "FV/R/1")).how == "already_sent"
    second = resumed.send(invoice_xml(nip, "FV/R/2"))
    resumed.close()
    results = resumed.wait_for_invoices([first.reference_number, second.reference_number])
    assert all(r.is_success for r in results.values())


def test_duplicate_gets_440_with_original_number(sandbox):
    client = make_client(sandbox)
    nip = client.context.value
    with client.open_online_session() as s1:
        first = s1.wait_for_invoice(s1.send(invoice_xml(nip, "FV/DUP/1")).reference_number)
    assert first.is_success
    # same seller + type + number, different bytes (another creation time): KSeF's duplicate rule
    import datetime
    xml2 = invoice_xml(nip, "FV/DUP/1", created=datetime.datetime(2026, 1, 1, 8, tzinfo=datetime.timezone.utc))
    with client.open_online_session() as s2:
        dup = s2.wait_for_invoice(s2.send(xml2).reference_number)
    assert dup.is_duplicate and dup.original_ksef_number == first.ksef_number
    from ksef.client import DuplicateInvoice
    with pytest.raises(DuplicateInvoice) as info:
        dup.raise_for_status()
    assert info.value.original_ksef_number == first.ksef_number


def test_offline_mode_is_sent(sandbox):
    client = make_client(sandbox)
    nip = client.context.value
    with client.open_online_session() as session:
        ref = session.send(invoice_xml(nip, "FV/OFF/1"), offline_mode=True).reference_number
        result = session.wait_for_invoice(ref)
    assert result.is_success and result.invoicing_mode == "Offline"


def test_send_to_closed_session_is_refused(sandbox):
    client = make_client(sandbox)
    nip = client.context.value
    session = client.open_online_session()
    session.close()
    session.close()                     # idempotent
    resumed = client.resume_online_session(dict(session.to_dict(), closed=False))
    with pytest.raises(BadRequestError) as info:
        resumed.send(invoice_xml(nip, "FV/C/1"))
    assert 21180 in info.value.exception_codes


def test_technical_correction_of_rejected_offline_invoice(sandbox):
    client = make_client(sandbox)
    nip = client.context.value
    good = invoice_xml(nip, "FV/TC/1")
    rejected = good.replace(b"<P_2>", b"<P_2x>", 1).replace(b"</P_2>", b"</P_2x>", 1)
    with client.open_online_session() as session:
        bad = session.wait_for_invoice(session.send(rejected, offline_mode=True).reference_number)
        assert bad.status_code == 430
        fixed = session.send(good, offline_mode=True, hash_of_corrected_invoice=crypto.sha256_b64(rejected))
        result = session.wait_for_invoice(fixed.reference_number)
        assert result.is_success
        # a second correction of the same original is refused by KSeF (21166), the accepted one too (21167)
        with pytest.raises(BadRequestError) as info:
            session.send(invoice_xml(nip, "FV/TC/2"), offline_mode=True,
                         hash_of_corrected_invoice=crypto.sha256_b64(rejected))
        assert 21166 in info.value.exception_codes
        with pytest.raises(BadRequestError) as info:
            session.send(invoice_xml(nip, "FV/TC/3"), offline_mode=True,
                         hash_of_corrected_invoice=crypto.sha256_b64(good))
        assert 21167 in info.value.exception_codes
    meta = [m for m in sandbox.invoices(session_reference_number=session.reference_number)]
    assert len(meta) == 1


def test_problem_details_error_format(sandbox):
    client = make_client(sandbox, problem_details=True)
    client.authenticate()
    with pytest.raises(BadRequestError) as info:
        client.session("20250101-SO-0000000000-0000000000-00").status()
    assert info.value.exception_codes and info.value.details
    with pytest.raises(BadRequestError) as info:
        client.query_invoice_metadata({"subjectType": "Subject2", "dateRange": {"dateType": "Nope"}})
    assert 21405 in info.value.exception_codes


def test_presigned_urls_get_no_bearer_token(sandbox):
    client = make_client(sandbox)
    client.authenticate()
    seen = []
    client.transport.http.hooks["response"].append(
        lambda r, *a, **k: seen.append((r.request.url, r.request.headers.get("Authorization"))))
    nip = client.context.value
    result = client.send_batch([invoice_xml(nip, "FV/PS/%d" % i) for i in range(2)], timeout=60)
    session = result.sessions[0]
    session.session_upo()
    session.invoice_upo(result.accepted[0].reference_number)
    storage = [(u, a) for u, a in seen if "/storage/" in u]
    assert len(storage) >= 3                        # part upload, session UPO, invoice UPO
    assert all(a is None for _u, a in storage)
    assert all(a and a.startswith("Bearer ") for u, a in seen if "/v2/sessions" in u)


def test_tokens_of_another_context_are_not_used(sandbox):
    client = make_client(sandbox)
    client.authenticate()
    nip = random_nip()
    other = make_client(sandbox, nip, token=sandbox.create_token(nip), tokens=client.export_tokens())
    assert other.tokens is None
    other.authenticate()
    assert other.tokens.context == other.context != client.context
