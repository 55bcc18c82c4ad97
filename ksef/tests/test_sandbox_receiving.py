"""Sandbox receiving side over raw HTTP: metadata query, HWM, download, exports, seeding from samples."""
import datetime
import io
import json
import time
import zipfile

import pytest
import requests

from ksef import crypto, numbers
from ksef.tests.fixtures_sandbox import random_nip


def _code(resp):
    return resp.json()["exception"]["exceptionDetailList"][0]["exceptionCode"]


def _range(minutes=60, **extra):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes)
    rng = {"dateType": "PermanentStorage", "from": start.isoformat()}
    rng.update(extra)
    return rng


@pytest.fixture
def buyer(sandbox, raw):
    nip = random_nip()
    access = raw.login(nip, sandbox.create_token(nip, permissions=["InvoiceRead"]))["accessToken"]["token"]
    return nip, access


def test_metadata_query_paging_and_fields(sandbox, raw, buyer):
    nip, access = buyer
    seeded = sandbox.seed(nip, count=23, seed=7)
    assert all(numbers.is_valid_ksef_number(n) for n in seeded)
    sandbox.set_config(hwm_lag=0.0)
    time.sleep(0.1)
    body = {"subjectType": "Subject2", "dateRange": _range()}
    page0 = raw.call("POST", "/invoices/query/metadata?pageSize=10&pageOffset=0", access, json=body).json()
    assert page0["hasMore"] is True and page0["isTruncated"] is False and len(page0["invoices"]) == 10
    assert page0["permanentStorageHwmDate"]
    page2 = raw.call("POST", "/invoices/query/metadata?pageSize=10&pageOffset=2", access, json=body).json()
    assert page2["hasMore"] is False and len(page2["invoices"]) == 3
    desc = raw.call("POST", "/invoices/query/metadata?pageSize=250&sortOrder=Desc", access, json=body).json()
    dates = [i["permanentStorageDate"] for i in desc["invoices"]]
    assert dates == sorted(dates, reverse=True) and len(dates) == 23
    assert {i["ksefNumber"] for i in desc["invoices"]} == set(seeded)
    first = desc["invoices"][0]
    for field in ("ksefNumber", "invoiceNumber", "issueDate", "invoicingDate", "acquisitionDate",
                  "permanentStorageDate", "seller", "buyer", "netAmount", "grossAmount", "vatAmount", "currency",
                  "invoicingMode", "invoiceType", "formCode", "isSelfInvoicing", "hasAttachment", "invoiceHash"):
        assert field in first
    assert first["buyer"]["identifier"] == {"type": "Nip", "value": nip}
    kinds = {i["invoiceType"] for i in desc["invoices"]}
    assert {"Vat", "Zal", "Kor"} <= kinds
    # filters
    only_kor = dict(body, invoiceTypes=["Kor"])
    kor = raw.call("POST", "/invoices/query/metadata?pageSize=250", access, json=only_kor).json()["invoices"]
    assert kor and all(i["invoiceType"] == "Kor" for i in kor)
    seller = first["seller"]["nip"]
    by_seller = raw.call("POST", "/invoices/query/metadata?pageSize=250", access,
                         json=dict(body, sellerNip=seller)).json()["invoices"]
    assert by_seller and all(i["seller"]["nip"] == seller for i in by_seller)
    big = raw.call("POST", "/invoices/query/metadata?pageSize=250", access,
                   json=dict(body, amount={"type": "Brutto", "from": 1000})).json()["invoices"]
    assert all(i["grossAmount"] >= 1000 for i in big)
    # the seller context sees none of them as Subject2
    other = raw.call("POST", "/invoices/query/metadata", access, json=dict(body, subjectType="Subject1")).json()
    assert other["invoices"] == []
    # validation
    bad = raw.call("POST", "/invoices/query/metadata?pageSize=5", access, json=body)
    assert bad.status_code == 400 and _code(bad) == 21405
    too_long = {"subjectType": "Subject2", "dateRange": {"dateType": "Issue", "from": "2026-01-01T00:00:00Z",
                                                         "to": "2026-05-01T00:00:00Z"}}
    bad = raw.call("POST", "/invoices/query/metadata", access, json=too_long)
    assert bad.status_code == 400 and _code(bad) == 21405


def test_metadata_truncation_at_the_record_cap(sandbox, raw, buyer):
    nip, access = buyer
    sandbox.seed(nip, count=25, seed=3)
    sandbox.set_config(query_max_records=20, hwm_lag=0.0)
    time.sleep(0.1)
    body = {"subjectType": "Subject2", "dateRange": _range()}
    page = raw.call("POST", "/invoices/query/metadata?pageSize=10&pageOffset=1", access, json=body).json()
    assert page["isTruncated"] is True and page["hasMore"] is True and len(page["invoices"]) == 10
    assert raw.call("POST", "/invoices/query/metadata?pageSize=10&pageOffset=0", access,
                    json=body).json()["isTruncated"] is False
    # restart from the last record's date as KSeF instructs: the rest comes back
    last = page["invoices"][-1]["permanentStorageDate"]
    rest = raw.call("POST", "/invoices/query/metadata?pageSize=250", access,
                    json={"subjectType": "Subject2", "dateRange": _range(**{"from": last})}).json()
    assert rest["isTruncated"] is False and len(rest["invoices"]) >= 5


def test_hwm_restriction_and_21183(sandbox, raw, buyer):
    nip, access = buyer
    sandbox.set_config(hwm_lag=3600.0)
    sandbox.seed(nip, count=2)
    time.sleep(0.1)
    restricted = {"subjectType": "Subject2", "dateRange": _range(restrictToPermanentStorageHwmDate=True)}
    page = raw.call("POST", "/invoices/query/metadata", access, json=restricted).json()
    assert page["invoices"] == []  # stored after the HWM (now - 1 h)
    hwm = datetime.datetime.fromisoformat(page["permanentStorageHwmDate"])
    assert datetime.datetime.now(datetime.timezone.utc) - hwm > datetime.timedelta(minutes=59)
    unrestricted = {"subjectType": "Subject2", "dateRange": _range()}
    assert len(raw.call("POST", "/invoices/query/metadata", access, json=unrestricted).json()["invoices"]) == 2
    beyond = {"subjectType": "Subject2", "dateRange": _range(minutes=5, restrictToPermanentStorageHwmDate=True)}
    resp = raw.call("POST", "/invoices/query/metadata", access, json=beyond)
    assert resp.status_code == 400 and _code(resp) == 21183
    issue = {"subjectType": "Subject2", "dateRange": {"dateType": "Issue", "from": _range(60 * 24 * 10)["from"]}}
    assert "permanentStorageHwmDate" not in raw.call("POST", "/invoices/query/metadata", access, json=issue).json()


def test_download_by_ksef_number(sandbox, raw, buyer):
    nip, access = buyer
    ksef_number = sandbox.seed(nip, count=1)[0]
    time.sleep(0.1)
    resp = raw.call("GET", "/invoices/ksef/" + ksef_number, access)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/xml"
    assert resp.headers["x-ms-meta-hash"] == crypto.sha256_b64(resp.content)
    assert nip.encode() in resp.content
    stranger = random_nip()
    other = raw.login(stranger, sandbox.create_token(stranger))["accessToken"]["token"]
    resp = raw.call("GET", "/invoices/ksef/" + ksef_number, other)
    assert resp.status_code == 400 and _code(resp) == 21164
    unknown = numbers.generate_ksef_number(nip, datetime.date.today())
    assert _code(raw.call("GET", "/invoices/ksef/" + unknown, access)) == 21164
    sandbox.set_config(storage_delay=30.0)
    fresh = sandbox.seed(nip, count=1)[0]
    resp = raw.call("GET", "/invoices/ksef/" + fresh, access)
    assert resp.status_code == 400 and _code(resp) == 21165


def _export(raw, access, filters, key=None, iv=None, **extra):
    if key is None:
        key, iv = crypto.new_symmetric_key()
    cert, key_id = raw.key("SymmetricKeyEncryption")
    body = {"encryption": {"encryptedSymmetricKey": crypto.b64encode(crypto.rsa_oaep_encrypt(cert, key)),
                           "initializationVector": crypto.b64encode(iv), "publicKeyId": key_id},
            "filters": filters}
    body.update(extra)
    return raw.call("POST", "/invoices/exports", access, json=body), key, iv


def _wait_export(raw, access, ref, timeout=60):
    deadline = time.time() + timeout
    while True:
        status = raw.call("GET", "/invoices/exports/" + ref, access).json()
        if status["status"]["code"] != 100 or time.time() > deadline:
            return status
        time.sleep(0.05)


def _download_package(package, key, iv):
    data = b""
    for part in package["parts"]:
        resp = requests.get(part["url"], timeout=30)
        assert resp.status_code == 200
        assert crypto.sha256_b64(resp.content) == part["encryptedPartHash"]
        assert len(resp.content) == part["encryptedPartSize"]
        plain = crypto.aes_cbc_decrypt(key, iv, resp.content)
        assert crypto.sha256_b64(plain) == part["partHash"] and len(plain) == part["partSize"]
        data += plain
    assert len(data) == package["size"]
    return zipfile.ZipFile(io.BytesIO(data))


def test_export_package_decrypts_and_unzips(sandbox, raw, buyer):
    nip, access = buyer
    seeded = sandbox.seed(nip, count=12, seed=11)
    sandbox.set_config(hwm_lag=0.0, export_part_size=4096)
    time.sleep(0.1)
    filters = {"subjectType": "Subject2", "dateRange": _range(restrictToPermanentStorageHwmDate=True)}
    resp, key, iv = _export(raw, access, filters)
    assert resp.status_code == 201
    status = _wait_export(raw, access, resp.json()["referenceNumber"])
    assert status["status"]["code"] == 200, status
    package = status["package"]
    assert package["invoiceCount"] == 12 and package["isTruncated"] is False
    assert len(package["parts"]) > 1 and package["permanentStorageHwmDate"]
    archive = _download_package(package, key, iv)
    names = set(archive.namelist())
    assert names == {n + ".xml" for n in seeded} | {"_metadata.json"}
    metadata = json.loads(archive.read("_metadata.json"))
    assert {m["ksefNumber"] for m in metadata["invoices"]} == set(seeded)
    for meta in metadata["invoices"]:
        assert crypto.sha256_b64(archive.read(meta["ksefNumber"] + ".xml")) == meta["invoiceHash"]


def test_export_truncation_only_metadata_and_limits(sandbox, raw, buyer):
    nip, access = buyer
    sandbox.seed(nip, count=7, seed=5)
    sandbox.set_config(hwm_lag=0.0, export_max_invoices=5)
    time.sleep(0.1)
    filters = {"subjectType": "Subject2", "dateRange": _range()}
    resp, key, iv = _export(raw, access, filters, onlyMetadata=True)
    status = _wait_export(raw, access, resp.json()["referenceNumber"])
    package = status["package"]
    assert package["isTruncated"] is True and package["invoiceCount"] == 5
    assert package["lastPermanentStorageDate"]
    archive = _download_package(package, key, iv)
    assert archive.namelist() == ["_metadata.json"]
    assert len(json.loads(archive.read("_metadata.json"))["invoices"]) == 5
    # beyond the HWM: export ends in status 420
    sandbox.set_config(hwm_lag=3600.0)
    resp, key, iv = _export(raw, access, {"subjectType": "Subject2", "dateRange": _range(
        minutes=5, restrictToPermanentStorageHwmDate=True)})
    assert _wait_export(raw, access, resp.json()["referenceNumber"])["status"]["code"] == 420
    # at most N exports in progress per context
    sandbox.set_config(max_concurrent_exports=2, export_delay=30.0)
    assert _export(raw, access, filters)[0].status_code == 201
    assert _export(raw, access, filters)[0].status_code == 201
    third = _export(raw, access, filters)[0]
    assert third.status_code == 400 and _code(third) == 21182
    unknown = raw.call("GET", "/invoices/exports/20250101-EH-0000000000-0000000000-00", access)
    assert unknown.status_code == 400 and _code(unknown) == 21175


def test_seed_from_official_samples(sandbox, raw, buyer, samples_dir):
    nip, access = buyer
    mf_dir, third_dir = samples_dir / "fa3" / "mf-examples", samples_dir / "fa3" / "third-party-test-suite"
    seeded = sandbox.seed(nip, count=0, from_dir=str(mf_dir))
    assert len(seeded) == len(list(mf_dir.glob("*.xml"))) == 26
    more = sandbox.seed(nip, count=0, from_dir=str(third_dir))
    assert len(more) == len(list(third_dir.glob("*.xml")))
    stored = sandbox.invoices(buyer_nip=nip)
    assert len(stored) == len(seeded) + len(more)
    # seeding the same files again keeps them unique (suffixed numbers), never a 440
    assert len(sandbox.seed(random_nip(), count=0, from_dir=str(samples_dir / "fa3" / "mf-examples"))) == 26
    sandbox.set_config(hwm_lag=0.0)
    time.sleep(0.1)
    body = {"subjectType": "Subject2", "dateRange": _range()}
    found = raw.call("POST", "/invoices/query/metadata?pageSize=250", access, json=body).json()["invoices"]
    assert {i["ksefNumber"] for i in found} == set(seeded + more)
    currencies = {i["currency"] for i in found}
    assert len(currencies) > 1


def test_generated_seed_invoices_pass_fa3_validation(sandbox, raw, buyer):
    from ksef import fa3

    nip, access = buyer
    seeded = sandbox.seed(nip, count=40, seed=99)
    time.sleep(0.1)
    kinds = set()
    for number in seeded:
        xml = raw.call("GET", "/invoices/ksef/" + number, access).content
        issues = fa3.validate(xml)
        assert not issues, (number, [str(i) for i in issues])
        kinds.add(fa3.parse(xml).fa.rodzaj_faktury)
    assert {"VAT", "KOR", "ZAL", "ROZ"} <= kinds
