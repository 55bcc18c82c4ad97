"""Every JSON body the sandbox produces in a scripted full flow validates against the official OpenAPI.

The OpenAPI 3.0 schemas are turned into JSON Schema (``$ref`` inlined, ``nullable`` -> ``null`` allowed) and
made strict: objects may not carry properties the OpenAPI does not declare.
"""
import io
import json
import re
import time
import zipfile

import pytest
import requests

from ksef import crypto
from ksef.tests.fixtures_sandbox import FA3_FORM, RawKsef, make_invoice, random_nip

jsonschema = pytest.importorskip("jsonschema")

_SKIP_KEYS = {"nullable", "example", "examples", "deprecated", "readOnly", "writeOnly", "description", "xml",
              "externalDocs", "discriminator"}


def to_json_schema(node, components, strict=True):
    if isinstance(node, list):
        return [to_json_schema(n, components, strict) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        out = to_json_schema(components[name], components, strict)
    else:
        out = {}
        for key, value in node.items():
            if key in _SKIP_KEYS or key.startswith("x-"):
                continue
            if key == "properties":
                out[key] = {k: to_json_schema(v, components, strict) for k, v in value.items()}
            elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
                out[key] = to_json_schema(value, components, strict)
            elif key in ("allOf", "anyOf", "oneOf"):
                out[key] = [to_json_schema(v, components, strict) for v in value]
            else:
                out[key] = value
        if strict and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class OpenApi:
    def __init__(self, path):
        with open(path, encoding="utf-8") as fh:
            self.doc = json.load(fh)
        self.components = self.doc["components"]["schemas"]
        self.routes = []
        for template, ops in self.doc["paths"].items():
            regex = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")
            self.routes.append((template.count("{"), template, regex, ops))
        self.routes.sort(key=lambda r: r[0])

    def operation(self, method, path):
        for _n, template, regex, ops in self.routes:
            if regex.match(path) and method.lower() in ops:
                return template, ops[method.lower()]
        return None, None

    def schema(self, method, path, status, content_type):
        template, op = self.operation(method, path)
        assert op is not None, "%s %s is not in the OpenAPI" % (method, path)
        response = op["responses"].get(str(status))
        assert response is not None, "%s %s: status %s is not documented" % (method, template, status)
        content = response.get("content") or {}
        assert content_type in content, "%s %s %s: content type %s not documented (%s)" % (
            method, template, status, content_type, sorted(content))
        return template, to_json_schema(content[content_type]["schema"], self.components)


def _scripted_flow(sandbox, api, samples_dir):
    rec = []
    raw = RawKsef(sandbox.api_url, recorder=rec)
    seller, buyer = random_nip(), random_nip()
    # keys, challenge, XAdES login of the owner, KSeF tokens API
    raw.call("GET", "/security/public-key-certificates")
    key, cert = crypto.generate_self_signed_certificate(nip=seller, organization="Firma %s" % seller)
    init = raw.login_xades(seller, key, cert).json()
    raw.wait_auth(init)
    owner = raw.redeem(init)
    owner_access = owner["accessToken"]["token"]
    raw.call("POST", "/auth/token/refresh", owner["refreshToken"]["token"])
    created = raw.call("POST", "/tokens", owner_access, json={"permissions": ["InvoiceRead", "InvoiceWrite",
                                                                             "Introspection"],
                                                              "description": "Token integracji"}).json()
    raw.call("GET", "/tokens/" + created["referenceNumber"], owner_access)
    time.sleep(0.35)
    raw.call("GET", "/tokens?pageSize=10", owner_access)
    raw.call("POST", "/tokens", owner_access, json={"permissions": ["EnforcementOperations"],
                                                    "description": "zbyt wiele"})
    raw.call("GET", "/auth/sessions", owner_access)
    raw.call("GET", "/rate-limits", owner_access)
    raw.call("GET", "/limits/context", owner_access)
    raw.call("GET", "/limits/subject", owner_access)
    person = random_nip()
    pkey, pcert = crypto.generate_self_signed_certificate(nip=person, given_name="Anna", surname="Nowak")
    sandbox.grant(seller, person, ["InvoiceRead", "Introspection"])
    pinit = raw.login_xades(seller, pkey, pcert).json()
    raw.wait_auth(pinit)
    raw.call("POST", "/permissions/query/personal/grants", raw.redeem(pinit)["accessToken"]["token"], json={})
    # KSeF-token login with the new token
    access = raw.login(seller, created["token"])["accessToken"]["token"]
    raw.call("POST", "/auth/token/redeem", init["authenticationToken"]["token"])  # 400 21301
    # online session: accepted, duplicate, XSD error
    ref, skey, iv = raw.open_online(access)
    xml = make_invoice(seller, buyer, number="FV/OA/1")
    inv = raw.send(access, ref, skey, iv, xml).json()["referenceNumber"]
    raw.call("GET", "/sessions/%s/invoices/%s" % (ref, inv), access)  # 100
    raw.wait_invoice(access, ref, inv)
    dup = raw.send(access, ref, skey, iv, make_invoice(seller, buyer, number="FV/OA/1")).json()["referenceNumber"]
    raw.wait_invoice(access, ref, dup)
    bad = raw.send(access, ref, skey, iv, make_invoice(seller, buyer).replace(b"<P_2>", b"<X/><P_2>")).json()
    raw.wait_invoice(access, ref, bad["referenceNumber"])
    raw.send(access, ref, skey, iv, xml, invoiceHash=crypto.sha256_b64(b"x"))  # 400 21403
    raw.call("GET", "/sessions/%s/invoices?pageSize=10" % ref, access)
    raw.call("GET", "/sessions/%s/invoices/failed" % ref, access)
    raw.call("GET", "/sessions/%s" % ref, access)
    raw.call("POST", "/sessions/online/%s/close" % ref, access)
    session = raw.wait_session(access, ref)
    raw.call("GET", "/sessions?sessionType=Online&pageSize=10", access)
    raw.call("GET", "/sessions/%s/upo/%s" % (ref, session["upo"]["pages"][0]["referenceNumber"]), access)
    # batch session
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr("f%d.xml" % i, make_invoice(seller, buyer))
    archive = buf.getvalue()
    bkey, biv = crypto.new_symmetric_key()
    part = crypto.aes_cbc_encrypt(bkey, biv, archive)
    rsa_cert, key_id = raw.key("SymmetricKeyEncryption")
    opened = raw.call("POST", "/sessions/batch", access, json={
        "formCode": FA3_FORM, "batchFile": {"fileSize": len(archive), "fileHash": crypto.sha256_b64(archive),
                                            "fileParts": [{"ordinalNumber": 1, "fileSize": len(part),
                                                           "fileHash": crypto.sha256_b64(part)}]},
        "encryption": {"encryptedSymmetricKey": crypto.b64encode(crypto.rsa_oaep_encrypt(rsa_cert, bkey)),
                       "initializationVector": crypto.b64encode(biv), "publicKeyId": key_id}}).json()
    requests.put(opened["partUploadRequests"][0]["url"], data=part, timeout=30)
    raw.call("POST", "/sessions/batch/%s/close" % opened["referenceNumber"], access)
    raw.wait_session(access, opened["referenceNumber"])
    raw.call("GET", "/sessions?sessionType=Batch", access)
    # receiving as the buyer (purchase invoices seeded + official samples)
    buyer_access = raw.login(buyer, sandbox.create_token(buyer, permissions=["InvoiceRead"]))["accessToken"]["token"]
    sandbox.seed(buyer, count=15, seed=2)
    sandbox.seed(buyer, count=0, from_dir=str(samples_dir / "fa3" / "mf-examples"))
    sandbox.set_config(hwm_lag=0.0)
    time.sleep(0.1)
    filters = {"subjectType": "Subject2", "dateRange": {"dateType": "PermanentStorage",
                                                        "from": "2026-01-01T00:00:00Z" if time.gmtime().tm_mon <= 3
                                                        else time.strftime("%Y-%m-01T00:00:00Z")}}
    found = raw.call("POST", "/invoices/query/metadata?pageSize=250", buyer_access, json=filters).json()
    raw.call("POST", "/invoices/query/metadata?pageSize=10&sortOrder=Desc", buyer_access,
             json={"subjectType": "Subject2", "dateRange": {"dateType": "Issue", "from": "2026-09-01"}})
    raw.call("POST", "/invoices/query/metadata", buyer_access, json={"subjectType": "Nobody"})  # 400
    raw.call("GET", "/invoices/ksef/%s" % found["invoices"][0]["ksefNumber"], buyer_access)
    raw.call("GET", "/invoices/ksef/%s" % found["invoices"][0]["ksefNumber"].replace("-", "-", 1), owner_access)
    ekey, eiv = crypto.new_symmetric_key()
    export = raw.call("POST", "/invoices/exports", buyer_access, json={
        "encryption": {"encryptedSymmetricKey": crypto.b64encode(crypto.rsa_oaep_encrypt(rsa_cert, ekey)),
                       "initializationVector": crypto.b64encode(eiv), "publicKeyId": key_id},
        "filters": dict(filters, dateRange=dict(filters["dateRange"], restrictToPermanentStorageHwmDate=True))}).json()
    raw.call("GET", "/invoices/exports/" + export["referenceNumber"], buyer_access)
    deadline = time.time() + 30
    while raw.call("GET", "/invoices/exports/" + export["referenceNumber"],
                   buyer_access).json()["status"]["code"] == 100 and time.time() < deadline:
        time.sleep(0.05)
    # errors: 401, 403, 429 (both formats)
    raw.call("GET", "/sessions?sessionType=Online")
    raw.call("POST", "/sessions/online", buyer_access, json={})
    sandbox.set_rate_limits({"other": [1, 10, 10]})
    raw.call("GET", "/limits/context", buyer_access)
    raw.call("GET", "/limits/context", buyer_access)
    raw.call("GET", "/limits/context", buyer_access, headers={"X-Error-Format": "problem-details"})
    sandbox.set_rate_limits("off")
    raw.call("POST", "/auth/ksef-token", json={"challenge": "x"}, headers={"X-Error-Format": "problem-details"})
    raw.call("DELETE", "/auth/sessions/current", access)
    return rec


def test_every_json_response_matches_the_openapi(sandbox, openapi_path, samples_dir):
    api = OpenApi(openapi_path)
    recorded = _scripted_flow(sandbox, api, samples_dir)
    checked = set()
    problems = []
    for method, path, resp in recorded:
        content_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type not in ("application/json", "application/problem+json"):
            continue
        template, schema = api.schema(method, path, resp.status_code, content_type)
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(resp.json()), key=lambda e: list(e.path))
        for error in errors[:3]:
            problems.append("%s %s -> %s: %s at %s" % (method, template, resp.status_code, error.message[:300],
                                                         "/".join(str(p) for p in error.path)))
        checked.add((method, template, resp.status_code))
    assert not problems, "\n".join(problems)
    statuses = {s for _m, _t, s in checked}
    assert {200, 201, 202, 400, 401, 403, 429} <= statuses
    assert len(checked) >= 30, sorted(checked)


def test_converter_translates_nullable_and_refs():
    components = {"A": {"type": "object", "properties": {"x": {"type": "string", "nullable": True}}}}
    schema = to_json_schema({"$ref": "#/components/schemas/A"}, components)
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid({"x": None})
    assert not validator.is_valid({"x": 1})
    assert not validator.is_valid({"x": "a", "extra": 1})
