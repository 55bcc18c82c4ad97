"""Sandbox over raw HTTP: keys, authentication, KSeF tokens, online and batch sessions, UPO."""
import datetime
import io
import time
import zipfile

import pytest
import requests
from lxml import etree

from ksef import crypto, numbers
from ksef.tests.fixtures_sandbox import FA3_FORM, make_invoice, random_nip


def _exception_code(resp):
    body = resp.json()
    return body["exception"]["exceptionDetailList"][0]["exceptionCode"]


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------

def test_public_keys_have_ids_computed_from_the_certificates(sandbox):
    certs = sandbox.public_certificates()
    assert sorted(u for c in certs for u in c["usage"]) == ["KsefTokenEncryption", "SymmetricKeyEncryption"]
    for item in certs:
        cert = crypto.load_certificate(item["certificate"])
        assert item["publicKeyId"] == crypto.public_key_id(cert)
        assert item["certificateId"] == crypto.certificate_id(cert)
        assert crypto.public_key_id(cert) != crypto.certificate_id(cert)


# --------------------------------------------------------------------------------------------
# KSeF-token authentication
# --------------------------------------------------------------------------------------------

def test_token_login_redeem_once_refresh_and_revoke(sandbox, raw):
    nip = random_nip()
    token = sandbox.create_token(nip)
    init = raw.start_token_auth(nip, token).json()
    first = raw.call("GET", "/auth/" + init["referenceNumber"], init["authenticationToken"]["token"]).json()
    assert first["status"]["code"] == 100  # processing takes a moment (polling exercised)
    assert raw.wait_auth(init)["status"]["code"] == 200
    tokens = raw.redeem(init)
    again = raw.call("POST", "/auth/token/redeem", init["authenticationToken"]["token"])
    assert again.status_code == 400 and _exception_code(again) == 21301
    refreshed = raw.call("POST", "/auth/token/refresh", tokens["refreshToken"]["token"])
    assert refreshed.status_code == 200
    access = refreshed.json()["accessToken"]["token"]
    listing = raw.call("GET", "/auth/sessions", access).json()
    assert any(i["isCurrent"] for i in listing["items"])
    assert raw.call("DELETE", "/auth/sessions/current", access).status_code == 204
    after = raw.call("POST", "/auth/token/refresh", tokens["refreshToken"]["token"])
    assert after.status_code == 400 and _exception_code(after) == 21301
    # an issued access token stays valid until it expires
    assert raw.call("GET", "/rate-limits", access).status_code == 200


@pytest.mark.parametrize("case", ["bad_timestamp", "unknown_token", "wrong_context", "revoked"])
def test_token_login_failures_end_in_status_450(sandbox, raw, case):
    nip = random_nip()
    token, ref = sandbox.create_token_ref(nip)
    shift, context = 0, None
    if case == "bad_timestamp":
        shift = 1000
    elif case == "unknown_token":
        token = token[:-4] + "0000"
    elif case == "wrong_context":
        context = {"type": "Nip", "value": random_nip()}
    elif case == "revoked":
        access = raw.login(nip, token)["accessToken"]["token"]
        sandbox.set_config(token_activation_delay=0.0)
        assert raw.call("DELETE", "/tokens/" + ref, access).status_code == 204
    resp = raw.start_token_auth(nip, token, timestamp_shift=shift, context=context)
    assert resp.status_code == 202
    status = raw.wait_auth(resp.json())
    assert status["status"]["code"] == 450
    redeem = raw.call("POST", "/auth/token/redeem", resp.json()["authenticationToken"]["token"])
    assert redeem.status_code == 400 and _exception_code(redeem) == 21301


def test_token_auth_request_errors(sandbox, raw):
    nip = random_nip()
    token = sandbox.create_token(nip)
    cert, _key_id = raw.key("KsefTokenEncryption")
    body = {"challenge": "20250101-CR-0000000000-0000000000-00", "contextIdentifier": {"type": "Nip", "value": nip},
            "encryptedToken": crypto.b64encode(crypto.rsa_oaep_encrypt(cert, b"x|1"))}
    resp = raw.call("POST", "/auth/ksef-token", json=body)
    assert resp.status_code == 400 and _exception_code(resp) == 21111
    challenge = raw.call("POST", "/auth/challenge").json()
    assert len(challenge["challenge"]) == 36 and challenge["clientIp"] == "127.0.0.1"
    body["challenge"] = challenge["challenge"]
    body["publicKeyId"] = crypto.sha256_b64(b"unknown key")
    resp = raw.call("POST", "/auth/ksef-token", json=body)
    assert resp.status_code == 400 and _exception_code(resp) == 21470
    resp = raw.call("POST", "/auth/ksef-token", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and _exception_code(resp) == 21405
    problem = raw.call("POST", "/auth/ksef-token", json={}, headers={"X-Error-Format": "problem-details"})
    assert problem.headers["Content-Type"].startswith("application/problem+json")
    assert problem.json()["errors"][0]["code"] == 21405
    # a used challenge cannot be replayed
    ok = raw.start_token_auth(nip, token)
    assert ok.status_code == 202


def test_protected_endpoints_need_a_valid_bearer_and_permissions(sandbox, raw):
    resp = raw.call("GET", "/sessions?sessionType=Online")
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert raw.call("GET", "/sessions?sessionType=Online", "not.a.jwt").status_code == 401
    nip = random_nip()
    access = raw.login(nip, sandbox.create_token(nip, permissions=["InvoiceRead"]))["accessToken"]["token"]
    forbidden = raw.call("POST", "/sessions/online", access, json={})
    assert forbidden.status_code == 403
    body = forbidden.json()
    assert body["reasonCode"] == "missing-permissions"
    assert "InvoiceWrite" in body["security"]["requiredAnyOfPermissions"]


def test_allowed_ips_policy_restricts_the_access_token(sandbox, raw):
    nip = random_nip()
    token = sandbox.create_token(nip)
    cert, key_id = raw.key("KsefTokenEncryption")
    challenge = raw.call("POST", "/auth/challenge").json()
    plain = ("%s|%d" % (token, challenge["timestampMs"])).encode()
    body = {"challenge": challenge["challenge"], "contextIdentifier": {"type": "Nip", "value": nip},
            "encryptedToken": crypto.b64encode(crypto.rsa_oaep_encrypt(cert, plain)), "publicKeyId": key_id,
            "authorizationPolicy": {"allowedIps": {"ip4Addresses": ["10.1.2.3"]}}}
    init = raw.call("POST", "/auth/ksef-token", json=body).json()
    raw.wait_auth(init)
    access = raw.redeem(init)["accessToken"]["token"]
    resp = raw.call("GET", "/tokens", access)
    assert resp.status_code == 403 and resp.json()["reasonCode"] == "ip-not-allowed"


# --------------------------------------------------------------------------------------------
# XAdES authentication and KSeF tokens
# --------------------------------------------------------------------------------------------

def _seal(nip):
    return crypto.generate_self_signed_certificate(nip=nip, organization="Firma %s" % nip)


def test_xades_owner_login_then_token_lifecycle(sandbox, raw):
    nip = random_nip()
    key, cert = _seal(nip)
    resp = raw.login_xades(nip, key, cert)
    assert resp.status_code == 202, resp.text
    init = resp.json()
    status = raw.wait_auth(init)
    assert status["status"]["code"] == 200
    assert status["authenticationMethodInfo"]["category"] == "XadesSignature"
    access = raw.redeem(init)["accessToken"]["token"]
    too_much = raw.call("POST", "/tokens", access, json={"permissions": ["EnforcementOperations"],
                                                         "description": "egzekucja"})
    assert too_much.status_code == 400 and _exception_code(too_much) == 26001
    created = raw.call("POST", "/tokens", access, json={"permissions": ["InvoiceRead", "InvoiceWrite"],
                                                        "description": "Token do faktur"})
    assert created.status_code == 202
    ref, token = created.json()["referenceNumber"], created.json()["token"]
    assert raw.call("GET", "/tokens/" + ref, access).json()["status"] == "Pending"
    time.sleep(0.4)
    assert raw.call("GET", "/tokens/" + ref, access).json()["status"] == "Active"
    listed = raw.call("GET", "/tokens?status=Active", access).json()
    assert ref in [t["referenceNumber"] for t in listed["tokens"]]
    token_access = raw.login(nip, token)["accessToken"]["token"]
    # POST /tokens is only for XAdES logins
    denied = raw.call("POST", "/tokens", token_access, json={"permissions": ["InvoiceRead"],
                                                             "description": "kolejny token"})
    assert denied.status_code == 403 and denied.json()["reasonCode"] == "auth-method-not-allowed"
    assert raw.call("DELETE", "/tokens/" + ref, access).status_code == 204
    assert raw.call("GET", "/tokens/" + ref, access).json()["status"] in ("Revoking", "Revoked")


def test_xades_signature_errors(sandbox, raw):
    from ksef import xades
    nip = random_nip()
    key, cert = _seal(nip)
    challenge = raw.call("POST", "/auth/challenge").json()["challenge"]
    doc = xades.build_auth_token_request(challenge, "Nip", nip)
    unsigned = raw.call("POST", "/auth/xades-signature", data=doc, headers={"Content-Type": "application/xml"})
    assert unsigned.status_code == 400 and _exception_code(unsigned) == 9102
    signed = xades.sign(doc, key, cert)
    tampered = signed.replace(nip.encode(), random_nip().encode(), 1)
    resp = raw.call("POST", "/auth/xades-signature", data=tampered, headers={"Content-Type": "application/xml"})
    assert resp.status_code == 400 and _exception_code(resp) == 9105
    garbage = raw.call("POST", "/auth/xades-signature", data=b"<a", headers={"Content-Type": "application/xml"})
    assert garbage.status_code == 400 and _exception_code(garbage) == 21001
    bad_doc = doc.replace(b"certificateSubject", b"somethingElse")
    resp = raw.call("POST", "/auth/xades-signature", data=xades.sign(bad_doc, key, cert),
                    headers={"Content-Type": "application/xml"})
    assert resp.status_code == 400 and _exception_code(resp) == 21401


def test_xades_without_permissions_ends_in_415_until_granted(sandbox, raw):
    context, person_nip = random_nip(), random_nip()
    key, cert = crypto.generate_self_signed_certificate(nip=person_nip, given_name="Jan", surname="Nowak")
    init = raw.login_xades(context, key, cert).json()
    assert raw.wait_auth(init)["status"]["code"] == 415
    sandbox.grant(context, person_nip, ["InvoiceRead"])
    init = raw.login_xades(context, key, cert).json()
    assert raw.wait_auth(init)["status"]["code"] == 200
    access = raw.redeem(init)["accessToken"]["token"]
    grants = raw.call("POST", "/permissions/query/personal/grants?pageSize=10", access, json={}).json()
    assert [g["permissionScope"] for g in grants["permissions"]] == ["InvoiceRead"] and not grants["hasMore"]
    assert grants["permissions"][0]["contextIdentifier"] == {"type": "Nip", "value": context}
    denied = raw.call("POST", "/sessions/online", access, json={})
    assert denied.status_code == 403


# --------------------------------------------------------------------------------------------
# online session
# --------------------------------------------------------------------------------------------

@pytest.fixture
def seller(sandbox, raw):
    nip = random_nip()
    access = raw.login(nip, sandbox.create_token(nip))["accessToken"]["token"]
    return nip, access


def test_online_invoice_accepted_with_valid_ksef_number_and_upo(sandbox, raw, seller, samples_dir):
    nip, access = seller
    ref, key, iv = raw.open_online(access)
    xml = make_invoice(nip, random_nip())
    resp = raw.send(access, ref, key, iv, xml)
    assert resp.status_code == 202
    inv_ref = resp.json()["referenceNumber"]
    status = raw.wait_invoice(access, ref, inv_ref)
    assert status["status"]["code"] == 200, status
    ksef_number = status["ksefNumber"]
    parsed = numbers.parse_ksef_number(ksef_number)
    assert parsed["nip"] == nip and not parsed["legacy"]
    assert status["invoicingMode"] == "Online"
    assert status["invoiceHash"] == crypto.sha256_b64(xml)
    upo_by_ref = raw.call("GET", "/sessions/%s/invoices/%s/upo" % (ref, inv_ref), access)
    assert upo_by_ref.status_code == 200 and upo_by_ref.headers["Content-Type"] == "application/xml"
    assert upo_by_ref.headers["x-ms-meta-hash"] == crypto.sha256_b64(upo_by_ref.content)
    presigned = requests.get(status["upoDownloadUrl"], timeout=10)
    assert presigned.status_code == 200 and presigned.content == upo_by_ref.content
    forged = requests.get(status["upoDownloadUrl"].replace("sig=", "sig=x"), timeout=10)
    assert forged.status_code == 403
    schema = etree.XMLSchema(etree.parse(str(samples_dir.parent / "schemas" / "UPO" / "upo-v4-3.xsd")))
    upo_doc = etree.fromstring(upo_by_ref.content)
    schema.assertValid(upo_doc)
    ns = {"u": "http://upo.schematy.mf.gov.pl/KSeF/v4-3"}
    assert upo_doc.findtext("u:Dokument/u:NumerKSeFDokumentu", namespaces=ns) == ksef_number
    assert upo_doc.findtext("u:Dokument/u:SkrotDokumentu", namespaces=ns) == crypto.sha256_b64(xml)
    assert upo_doc.find("u:Uwierzytelnienie/u:NumerReferencyjnyTokenaKSeF", ns) is not None
    # the invoice is downloadable by the seller once permanently stored
    time.sleep(0.1)
    download = raw.call("GET", "/invoices/ksef/" + ksef_number, access)
    assert download.status_code == 200 and download.content == xml
    assert download.headers["x-ms-meta-hash"] == crypto.sha256_b64(xml)
    # closing: 170 then 200 with a session UPO holding the invoice
    assert raw.call("POST", "/sessions/online/%s/close" % ref, access).status_code == 204
    session = raw.wait_session(access, ref)
    assert session["status"]["code"] == 200
    assert (session["invoiceCount"], session["successfulInvoiceCount"], session["failedInvoiceCount"]) == (1, 1, 0)
    page = session["upo"]["pages"][0]
    session_upo = requests.get(page["downloadUrl"], timeout=10)
    assert session_upo.status_code == 200
    schema.assertValid(etree.fromstring(session_upo.content))
    by_ref = raw.call("GET", "/sessions/%s/upo/%s" % (ref, page["referenceNumber"]), access)
    assert by_ref.content == session_upo.content
    closed = raw.send(access, ref, key, iv, make_invoice(nip, random_nip()))
    assert closed.status_code == 400 and _exception_code(closed) == 21180


def test_online_hash_and_size_mismatches_are_rejected_synchronously(sandbox, raw, seller):
    nip, access = seller
    ref, key, iv = raw.open_online(access)
    xml = make_invoice(nip, random_nip())
    resp = raw.send(access, ref, key, iv, xml, invoiceHash=crypto.sha256_b64(b"other"))
    assert resp.status_code == 400 and _exception_code(resp) == 21403
    resp = raw.send(access, ref, key, iv, xml, invoiceSize=len(xml) + 1)
    assert resp.status_code == 400 and _exception_code(resp) == 21402
    resp = raw.send(access, ref, key, iv, xml, encryptedInvoiceSize=7)
    assert resp.status_code == 400 and _exception_code(resp) == 21402
    resp = raw.send(access, ref, key, iv, xml, encryptedInvoiceHash=crypto.sha256_b64(b"x"))
    assert resp.status_code == 400 and _exception_code(resp) == 21403
    resp = raw.send(access, "20250101-SO-0000000000-0000000000-00", key, iv, xml)
    assert resp.status_code == 400 and _exception_code(resp) == 21173


def test_online_async_rejections(sandbox, raw, seller):
    nip, access = seller
    buyer = random_nip()
    ref, key, iv = raw.open_online(access)
    tomorrow = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    yesterday = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    cases = {
        "xsd": (make_invoice(nip, buyer).replace(b"<P_2>", b"<P_2X>x</P_2X><P_2>"), 430),
        "future": (make_invoice(nip, buyer, issue_date=tomorrow), 450),
        "seller": (make_invoice(random_nip(), buyer), 410),
        "malformed": (b"<Faktura>", 430),
    }
    refs = {}
    for name, (xml, _code) in cases.items():
        refs[name] = raw.send(access, ref, key, iv, xml).json()["referenceNumber"]
    plain = make_invoice(nip, buyer)
    garbled = crypto.aes_cbc_encrypt(key, iv, plain) + b"\x01\x02\x03"  # not a whole number of AES blocks
    body = raw.invoice_body(plain, key, iv, encryptedInvoiceContent=crypto.b64encode(garbled),
                            encryptedInvoiceHash=crypto.sha256_b64(garbled), encryptedInvoiceSize=len(garbled))
    refs["decrypt"] = raw.call("POST", "/sessions/online/%s/invoices" % ref, access, json=body)
    assert refs["decrypt"].status_code == 202, refs["decrypt"].text
    refs["decrypt"] = refs["decrypt"].json()["referenceNumber"]
    for name, (_xml, code) in cases.items():
        status = raw.wait_invoice(access, ref, refs[name])
        assert status["status"]["code"] == code, (name, status)
        assert status["status"]["details"]
    assert raw.wait_invoice(access, ref, refs["decrypt"])["status"]["code"] == 435
    offline = raw.send(access, ref, key, iv, make_invoice(nip, buyer, issue_date=yesterday)).json()
    assert raw.wait_invoice(access, ref, offline["referenceNumber"])["invoicingMode"] == "Offline"
    failed = raw.call("GET", "/sessions/%s/invoices/failed" % ref, access).json()["invoices"]
    assert {f["referenceNumber"] for f in failed} == set(refs.values())


def test_duplicate_is_440_with_original_in_extensions(sandbox, raw, seller):
    nip, access = seller
    ref, key, iv = raw.open_online(access)
    xml = make_invoice(nip, random_nip(), number="FV/DUP/1")
    first = raw.wait_invoice(access, ref, raw.send(access, ref, key, iv, xml).json()["referenceNumber"])
    assert first["status"]["code"] == 200
    ref2, key2, iv2 = raw.open_online(access)
    again = raw.send(access, ref2, key2, iv2, make_invoice(nip, random_nip(), number="FV/DUP/1"))
    status = raw.wait_invoice(access, ref2, again.json()["referenceNumber"])
    assert status["status"]["code"] == 440
    assert status["status"]["extensions"] == {"originalSessionReferenceNumber": ref,
                                              "originalKsefNumber": first["ksefNumber"]}
    # technical correction of an accepted invoice is refused
    resp = raw.send(access, ref2, key2, iv2, xml, hashOfCorrectedInvoice=crypto.sha256_b64(xml), offlineMode=True)
    assert resp.status_code == 400 and _exception_code(resp) == 21167


def test_session_without_invoices_is_cancelled_and_lists_work(sandbox, raw, seller):
    _nip, access = seller
    ref, _key, _iv = raw.open_online(access)
    assert raw.call("POST", "/sessions/online/%s/close" % ref, access).status_code == 204
    status = raw.wait_session(access, ref)
    assert status["status"]["code"] == 440
    again = raw.call("POST", "/sessions/online/%s/close" % ref, access)
    assert again.status_code == 400 and _exception_code(again) == 21180
    listing = raw.call("GET", "/sessions?sessionType=Online&statuses=Cancelled&pageSize=10", access).json()
    assert ref in [s["referenceNumber"] for s in listing["sessions"]]
    missing = raw.call("GET", "/sessions", access)
    assert missing.status_code == 400 and _exception_code(missing) == 21405
    bad_token = raw.call("GET", "/sessions?sessionType=Online", access, headers={"x-continuation-token": "@@"})
    assert bad_token.status_code == 400 and _exception_code(bad_token) == 21418


def test_unknown_public_key_and_form_code_on_open(sandbox, raw, seller):
    _nip, access = seller
    key, iv = crypto.new_symmetric_key()
    cert, _key_id = raw.key("SymmetricKeyEncryption")
    enc = {"encryptedSymmetricKey": crypto.b64encode(crypto.rsa_oaep_encrypt(cert, key)),
           "initializationVector": crypto.b64encode(iv), "publicKeyId": crypto.sha256_b64(b"old")}
    resp = raw.call("POST", "/sessions/online", access, json={"formCode": FA3_FORM, "encryption": enc})
    assert resp.status_code == 400 and _exception_code(resp) == 21470
    enc.pop("publicKeyId")
    resp = raw.call("POST", "/sessions/online", access, json={"formCode": {"systemCode": "FA (9)",
                                                                           "schemaVersion": "1", "value": "FA"},
                                                              "encryption": enc})
    assert resp.status_code == 400 and _exception_code(resp) == 21405


# --------------------------------------------------------------------------------------------
# batch session
# --------------------------------------------------------------------------------------------

def _zip(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _open_batch(raw, access, archive, parts=2, offline=False):
    key, iv = crypto.new_symmetric_key()
    size = -(-len(archive) // parts)
    chunks = [archive[i:i + size] for i in range(0, len(archive), size)]
    encrypted = [crypto.aes_cbc_encrypt(key, iv, c) for c in chunks]
    cert, key_id = raw.key("SymmetricKeyEncryption")
    body = {"formCode": FA3_FORM, "offlineMode": offline, "batchFile": {
        "fileSize": len(archive), "fileHash": crypto.sha256_b64(archive),
        "fileParts": [{"ordinalNumber": i + 1, "fileSize": len(e), "fileHash": crypto.sha256_b64(e)}
                      for i, e in enumerate(encrypted)]},
        "encryption": {"encryptedSymmetricKey": crypto.b64encode(crypto.rsa_oaep_encrypt(cert, key)),
                       "initializationVector": crypto.b64encode(iv), "publicKeyId": key_id}}
    resp = raw.call("POST", "/sessions/batch", access, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json(), encrypted


def test_batch_session_processes_each_invoice_independently(sandbox, raw, seller, samples_dir):
    nip, access = seller
    buyer = random_nip()
    files = {"inv%03d.xml" % i: make_invoice(nip, buyer) for i in range(12)}
    files["bad.xml"] = make_invoice(random_nip(), buyer)  # not this seller: 410
    files["dup.xml"] = make_invoice(nip, buyer, number="FV/B/DUP")
    files["dup2.xml"] = make_invoice(nip, buyer, number="FV/B/DUP")
    opened, encrypted = _open_batch(raw, access, _zip(files))
    early = raw.call("POST", "/sessions/batch/%s/close" % opened["referenceNumber"], access)
    assert early.status_code == 400 and _exception_code(early) == 21205
    for request, data in zip(opened["partUploadRequests"], encrypted):
        assert request["method"] == "PUT"
        put = requests.put(request["url"], data=data, headers=request["headers"], timeout=30)
        assert put.status_code == 201
    ref = opened["referenceNumber"]
    assert raw.call("POST", "/sessions/batch/%s/close" % ref, access).status_code == 204
    status = raw.wait_session(access, ref)
    assert status["status"]["code"] == 200, status
    assert (status["invoiceCount"], status["successfulInvoiceCount"], status["failedInvoiceCount"]) == (15, 13, 2)
    failed = raw.call("GET", "/sessions/%s/invoices/failed" % ref, access).json()["invoices"]
    assert sorted((f["invoiceFileName"], f["status"]["code"]) for f in failed) == [("bad.xml", 410),
                                                                                 ("dup2.xml", 440)]
    page1 = raw.call("GET", "/sessions/%s/invoices?pageSize=10" % ref, access)
    body = page1.json()
    assert len(body["invoices"]) == 10 and body["continuationToken"]
    page2 = raw.call("GET", "/sessions/%s/invoices?pageSize=10" % ref, access,
                     headers={"x-continuation-token": body["continuationToken"]}).json()
    assert len(page2["invoices"]) == 5 and not page2.get("continuationToken")
    upo = requests.get(status["upo"]["pages"][0]["downloadUrl"], timeout=10)
    doc = etree.fromstring(upo.content)
    ns = {"u": "http://upo.schematy.mf.gov.pl/KSeF/v4-3"}
    assert doc.findtext("u:OpisPotwierdzenia/u:CalkowitaLiczbaDokumentow", namespaces=ns) == "13"
    assert doc.find("u:Uwierzytelnienie/u:NumerReferencyjnyTokenaKSeF", ns) is not None


def test_batch_part_size_mismatch_and_bad_archive(sandbox, raw, seller):
    _nip, access = seller
    opened, encrypted = _open_batch(raw, access, b"this is not a zip file at all" * 10, parts=1)
    requests.put(opened["partUploadRequests"][0]["url"], data=encrypted[0][:-16], timeout=30)
    resp = raw.call("POST", "/sessions/batch/%s/close" % opened["referenceNumber"], access)
    assert resp.status_code == 400 and _exception_code(resp) == 21157
    requests.put(opened["partUploadRequests"][0]["url"], data=encrypted[0], timeout=30)
    assert raw.call("POST", "/sessions/batch/%s/close" % opened["referenceNumber"], access).status_code == 204
    assert raw.wait_session(access, opened["referenceNumber"])["status"]["code"] == 430


def test_persistence_across_restart(tmp_path):
    from ksef.sandbox import SandboxServer
    from ksef.tests.fixtures_sandbox import SandboxHandle

    buyer = random_nip()
    with SandboxServer(data_dir=str(tmp_path)) as server:
        handle = SandboxHandle(server.url)
        seeded = handle.seed(buyer, count=5)
        keys = handle.public_certificates()
        token = handle.create_token(buyer)
    with SandboxServer(data_dir=str(tmp_path)) as server:
        handle = SandboxHandle(server.url)
        assert [i["ksefNumber"] for i in handle.invoices(buyer_nip=buyer)] == seeded
        assert handle.public_certificates() == keys
        from ksef.tests.fixtures_sandbox import RawKsef
        assert RawKsef(handle.api_url).login(buyer, token)["accessToken"]["token"]


def test_batch_part_hash_mismatch_405_and_no_valid_invoice_445(sandbox, raw, seller):
    nip, access = seller
    opened, encrypted = _open_batch(raw, access, _zip({"a.xml": make_invoice(nip, random_nip())}), parts=1)
    tampered = bytes([encrypted[0][0] ^ 1]) + encrypted[0][1:]
    requests.put(opened["partUploadRequests"][0]["url"], data=tampered, timeout=30)
    raw.call("POST", "/sessions/batch/%s/close" % opened["referenceNumber"], access)
    assert raw.wait_session(access, opened["referenceNumber"])["status"]["code"] == 405
    opened, encrypted = _open_batch(raw, access, _zip({"a.xml": make_invoice(random_nip(), random_nip())}), parts=1)
    requests.put(opened["partUploadRequests"][0]["url"], data=encrypted[0], timeout=30)
    raw.call("POST", "/sessions/batch/%s/close" % opened["referenceNumber"], access)
    status = raw.wait_session(access, opened["referenceNumber"])
    assert status["status"]["code"] == 445 and status["failedInvoiceCount"] == 1
    again = raw.call("POST", "/sessions/batch/%s/close" % opened["referenceNumber"], access)
    assert again.status_code == 400 and _exception_code(again) == 21180
