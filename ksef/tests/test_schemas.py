"""ksef.schemas: form detection, validation messages, pinned download with SHA-256 checks."""
import functools
import http.server
import json
import pathlib
import shutil
import threading

import pytest
from lxml import etree

from ksef import cli, schemas
from ksef.errors import SchemaUnavailableError, XmlParseError

FA3 = schemas.FA3_NS


def _sample(samples_dir, rel):
    return (samples_dir / rel).read_bytes()


def _mutate(data, xpath, value=None, remove=False):
    root = etree.fromstring(data)
    node = root.xpath(xpath, namespaces={"f": etree.QName(root).namespace})[0]
    if remove:
        node.getparent().remove(node)
    else:
        node.text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# ------------------------------------------------------------------------------------------------
# detection / parsing


@pytest.mark.parametrize("rel,form", [
    ("fa3/mf-examples/FA_3_Przyklad_1.xml", "FA3"),
    ("other/csharp_DemoWebApp_faktura-online.xml", "FA2"),
    ("other/java_invoice-template-fa-rr-1.xml", "FA_RR"),
    ("other/java_invoice_template_pef.xml", "PEF"),
    ("other/java_invoice_template_pef_correction.xml", "PEF_KOR"),
    ("upo/pdf-generator_upo.xml", "UPO"),
    ("auth/AuthTokenRequest_context-identifier-nip.xml", "AUTH"),
])
def test_detect_form(samples_dir, rel, form):
    data = _sample(samples_dir, rel)
    assert schemas.detect_form(data) == form
    assert schemas.detect_form(etree.fromstring(data)) == form


def test_detect_form_errors():
    with pytest.raises(XmlParseError) as err:
        schemas.detect_form(b"<a xmlns='urn:x'/>")
    assert err.value.params["reason"] == "unknown_form"
    with pytest.raises(XmlParseError) as err:
        schemas.detect_form(b"<Faktura><unclosed></Faktura>")
    assert err.value.params["reason"] == "malformed"
    assert err.value.params["line"] == 1
    with pytest.raises(XmlParseError):
        schemas.detect_form(b"   ")
    with pytest.raises(XmlParseError):
        schemas.detect_form(12)


def test_parse_refuses_dtd_and_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "%s">]><r>&x;</r>' % secret.as_uri()).encode()
    with pytest.raises(XmlParseError) as err:
        schemas.parse_xml(xxe)
    assert "TOP-SECRET" not in str(err.value)
    laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;&c;&c;&c;</l>')
    with pytest.raises(XmlParseError) as err:
        schemas.parse_xml(laughs)
    assert err.value.params["reason"] in ("doctype", "malformed")


def test_parse_accepts_str_with_declaration():
    root = schemas.parse_xml('<?xml version="1.0" encoding="UTF-8"?><a>ż</a>')
    assert root.text == "ż"


# ------------------------------------------------------------------------------------------------
# validation


def test_all_mf_examples_valid(samples_dir):
    files = sorted((samples_dir / "fa3" / "mf-examples").glob("*.xml"))
    assert len(files) == 26
    for path in files:
        assert schemas.validate_xsd(path.read_bytes()) == [], path.name


def test_fa2_and_upo_samples(samples_dir):
    assert schemas.validate_xsd(_sample(samples_dir, "other/csharp_DemoWebApp_faktura-online.xml")) == []
    assert schemas.validate_xsd(_sample(samples_dir, "upo/pdf-generator_upo.xml"), form="UPO") == []
    # TE UPOs break the XSD's fixed receiver name (documented in SOURCES.md)
    issues = schemas.validate_xsd(_sample(samples_dir, "upo/upo-faktura-kontekst-id-nip.xml"))
    assert [i.path for i in issues] == ["Potwierdzenie/NazwaPodmiotuPrzyjmujacego"]
    assert issues[0].params["kind"] == "fixed_value"


def test_auth_samples(samples_dir):
    assert schemas.validate_xsd(_sample(samples_dir, "auth/AuthTokenRequest_context-identifier-nip.xml")) == []
    data = _sample(samples_dir, "auth/AuthTokenRequest_context-identifier-nip.xml").replace(
        b"auth/token/2.0", b"auth/token/2.1")
    assert schemas.validate_xsd(data, form="AUTH") == []
    signed = data.replace(b"</AuthTokenRequest>", b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
                                                    b"<ds:SignedInfo/></ds:Signature></AuthTokenRequest>")
    assert signed != data
    assert schemas.validate_xsd(signed, form="AUTH") == []
    assert schemas.validate_xsd(signed.replace(b"auth/token/2.1", b"auth/token/2.0")) == []
    bad = data.replace(b"<Challenge>", b"<Challenge>X")
    issues = schemas.validate_xsd(bad)
    assert issues and issues[0].path == "AuthTokenRequest/Challenge"


def test_bad_decimal_message(samples_dir):
    data = _mutate(_sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_1.xml"), "//f:FaWiersz[2]/f:P_8B", "1,5")
    issues = schemas.validate_xsd(data)
    assert len(issues) == 1
    issue = issues[0]
    assert issue.path == "Faktura/Fa/FaWiersz[2]/P_8B"
    assert issue.code == "xsd"
    assert issue.value == "1,5"
    assert issue.message_en.startswith("Element P_8B: '1,5' is not a valid decimal number")
    assert "liczbą dziesiętną" in issue.message_pl
    assert "{" not in issue.message_en


def test_single_line_is_indexed(samples_dir):
    data = _sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_26.xml")
    root = etree.fromstring(data)
    assert len(root.findall(".//{%s}FaWiersz" % FA3)) == 1
    data = _mutate(data, "//f:FaWiersz/f:P_11", "1.234")
    issues = schemas.validate_xsd(data)
    assert [i.path for i in issues] == ["Faktura/Fa/FaWiersz[1]/P_11"]  # one issue, not pattern + digits
    assert issues[0].params["kind"] == "fractionDigits"
    assert "decimal places" in issues[0].message_en


def test_missing_mandatory_annotation(samples_dir):
    data = _mutate(_sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_1.xml"), "//f:Adnotacje/f:P_16", remove=True)
    issues = schemas.validate_xsd(data)
    assert len(issues) == 1
    assert issues[0].path == "Faktura/Fa/Adnotacje/P_17"
    assert "P_16" in issues[0].message_en and "P_16" in issues[0].message_pl
    data = _mutate(_sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_1.xml"), "//f:Adnotacje/f:PMarzy",
                   remove=True)
    issues = schemas.validate_xsd(data)
    assert issues[0].path == "Faktura/Fa/Adnotacje"
    assert issues[0].params["kind"] == "missing_element"
    assert "PMarzy" in issues[0].message_en


@pytest.mark.parametrize("xpath,value,kind,fragment", [
    ("//f:FaWiersz[1]/f:P_12", "24", "enumeration", "'24' is not an allowed value"),
    ("//f:P_2", "x" * 300, "maxLength", "too long (300 characters, at most 256"),
    ("//f:P_1", "2051-01-01", "maxInclusive", "greater than the maximum 2050-01-01"),
    ("//f:Podmiot1/f:DaneIdentyfikacyjne/f:NIP", "12", "pattern", "required format"),
    ("//f:P_15", "abc", "datatype", "not a valid decimal number"),
])
def test_value_messages(samples_dir, xpath, value, kind, fragment):
    data = _mutate(_sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_1.xml"), xpath, value)
    issues = schemas.validate_xsd(data)
    assert len(issues) == 1, issues
    assert issues[0].params["kind"] == kind
    assert fragment in issues[0].message_en
    assert issues[0].message_pl and issues[0].message_pl != issues[0].message_en


def test_attribute_fixed_value(samples_dir):
    data = _sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_1.xml").replace(b'kodSystemowy="FA (3)"',
                                                                            b'kodSystemowy="FA (2)"')
    issues = schemas.validate_xsd(data)
    assert issues[0].path == "Faktura/Naglowek/KodFormularza/@kodSystemowy"
    assert issues[0].value == "FA (2)"
    assert "must be 'FA (3)'" in issues[0].message_en


def test_wrong_form_and_malformed(samples_dir):
    data = _sample(samples_dir, "other/csharp_DemoWebApp_faktura-online.xml")
    issues = schemas.validate_xsd(data, form="FA3")
    assert [i.code for i in issues] == ["unknown_form"]
    issues = schemas.validate_xsd(b"<Faktura>")
    assert [i.code for i in issues] == ["xml_malformed"]
    assert issues[0].message_pl


def test_threads_do_not_mix_errors(samples_dir):
    good = _sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_1.xml")
    bad = _mutate(good, "//f:FaWiersz[2]/f:P_8B", "1,5")
    results = {}

    def work(n):
        out = []
        for _ in range(40):
            out.append(len(schemas.validate_xsd(bad if n % 2 else good)))
        results[n] = out

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n, out in results.items():
        assert set(out) == ({1} if n % 2 else {0})


def test_get_schema_unknown_form():
    with pytest.raises(SchemaUnavailableError):
        schemas.get_schema("FA9")


def test_remote_import_never_fetched(tmp_path, spec_dir):
    # Without the local bazowe copy, compiling must fail cleanly instead of going to crd.gov.pl.
    target = tmp_path / "s"
    (target / "FA").mkdir(parents=True)
    shutil.copy(spec_dir / "schemas" / "FA" / "schemat_FA(3)_v1-0E.xsd", target / "FA")
    with pytest.raises(SchemaUnavailableError) as err:
        schemas.get_schema("FA3", schema_dir=target)
    assert err.value.params["reason"] == "missing"


# ------------------------------------------------------------------------------------------------
# pinned download from a local HTTP server


@pytest.fixture()
def mirror(tmp_path, spec_dir):
    """A local HTTP server laid out like the pinned repository (sources copied from the spec bundle)."""
    root = tmp_path / "mirror"
    for entry in schemas.load_pins()["files"]:
        dest = root / entry["source"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(spec_dir / "schemas" / entry["name"], dest)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, "http://127.0.0.1:%d/" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_pin_file_matches_spec_bundle(spec_dir):
    pins = schemas.load_pins()
    assert pins["commit"] == "d92d285b928896258afdb27f7150f9127ee18ada"
    assert pins["base_url"].startswith("https://raw.githubusercontent.com/CIRFMF/ksef-docs/" + pins["commit"])
    names = {e["name"] for e in pins["files"]}
    for form, rel in schemas.SCHEMA_FILES.items():
        assert rel in names, form
    statuses = schemas.verify_schemas(spec_dir / "schemas")
    assert statuses and all(status == "ok" for _n, status in statuses)


def test_fetch_into_cache_and_use(mirror, tmp_path, monkeypatch, samples_dir):
    _root, base = mirror
    monkeypatch.delenv("KSEF_SCHEMA_DIR", raising=False)
    monkeypatch.setenv("KSEF_SCHEMA_BASE_URL", base)
    cache = tmp_path / "cache"
    schemas.clear_cache()
    try:
        # first use downloads everything, verifies, then compiles from the cache
        where, source = schemas.schema_location(cache_dir=cache)
        assert (where, source) == (cache, "cache")
        assert all(status == "ok" for _n, status in schemas.verify_schemas(cache))
        data = _sample(samples_dir, "fa3/mf-examples/FA_3_Przyklad_1.xml")
        assert schemas.validate_xsd(data, cache_dir=cache) == []
        # damaged cache file is detected and replaced
        victim = cache / "FA" / "bazowe" / "KodyKrajow_v10-0E.xsd"
        victim.write_bytes(b"tampered")
        schemas.clear_cache()
        schemas.schema_location(cache_dir=cache)
        assert schemas.verify_schemas(cache) == [(n, "ok") for n, _s in schemas.verify_schemas(cache)]
        # without download permission a missing cache is an error
        with pytest.raises(SchemaUnavailableError) as err:
            schemas.schema_location(cache_dir=tmp_path / "empty", download=False)
        assert err.value.params["reason"] == "not_cached"
    finally:
        schemas.clear_cache()


def test_fetch_refuses_sha_mismatch(mirror, tmp_path):
    root, base = mirror
    entry = next(e for e in schemas.load_pins()["files"] if e["name"] == "FA/schemat_FA(3)_v1-0E.xsd")
    path = root / entry["source"]
    path.write_bytes(path.read_bytes().replace(b"FA (3)", b"FA (4)"))
    cache = tmp_path / "cache"
    with pytest.raises(SchemaUnavailableError) as err:
        schemas.fetch_schemas(cache, base_url=base)
    assert err.value.params["reason"] == "sha256_mismatch"
    assert err.value.params["file"] == "FA/schemat_FA(3)_v1-0E.xsd"
    assert "refusing" in str(err.value)
    assert not (cache / "FA" / "schemat_FA(3)_v1-0E.xsd").exists()


def test_fetch_download_failure(tmp_path, mirror):
    root, base = mirror
    shutil.rmtree(root / "faktury" / "upo")
    with pytest.raises(SchemaUnavailableError) as err:
        schemas.fetch_schemas(tmp_path / "c", base_url=base, timeout=5)
    assert err.value.params["reason"] == "download_failed"
    assert err.value.params["file"] == "UPO/upo-v4-3.xsd"


def test_pin_file_missing(tmp_path):
    with pytest.raises(SchemaUnavailableError) as err:
        schemas.load_pins(tmp_path / "nope.json")
    assert err.value.params["reason"] == "no_pin_file"


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_where_and_verify(capsys, spec_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("KSEF_SCHEMA_DIR", str(spec_dir / "schemas"))
    assert cli.main(["schemas", "where"]) == 0
    assert str(spec_dir / "schemas") in capsys.readouterr().out
    assert cli.main(["schemas", "verify"]) == 0
    assert "match and compile" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(spec_dir / "schemas", broken)
    (broken / "UPO" / "upo-v4-3.xsd").chmod(0o644)
    (broken / "UPO" / "upo-v4-3.xsd").write_text("x")
    assert cli.main(["schemas", "verify", "--dir", str(broken)]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    monkeypatch.delenv("KSEF_SCHEMA_DIR")
    assert cli.main(["schemas", "where", "--cache", str(tmp_path / "nothing")]) == 1


def test_cli_fetch(mirror, tmp_path, capsys):
    _root, base = mirror
    cache = tmp_path / "cli-cache"
    assert cli.main(["schemas", "fetch", "--cache", str(cache), "--base-url", base]) == 0
    out = capsys.readouterr().out
    assert "schema files verified" in out
    assert json.loads(json.dumps(schemas.verify_schemas(cache)))
    assert pathlib.Path(cache, "FA", "schemat_FA(3)_v1-0E.xsd").is_file()


def test_failed_download_is_not_retried_on_every_validation(tmp_path, monkeypatch, mirror):
    """Offline machines pay for one download attempt per FETCH_RETRY_SECONDS, not one per invoice."""
    root, base = mirror
    monkeypatch.delenv("KSEF_SCHEMA_DIR", raising=False)
    monkeypatch.setenv("KSEF_SCHEMA_BASE_URL", base)
    shutil.rmtree(root / "faktury" / "upo")
    calls = []
    real_fetch = schemas.fetch_schemas

    def counting_fetch(*args, **kwargs):
        calls.append(1)
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(schemas, "fetch_schemas", counting_fetch)
    cache = tmp_path / "offline-cache"
    schemas.clear_cache()
    try:
        for _ in range(3):
            with pytest.raises(SchemaUnavailableError) as err:
                schemas.schema_location(cache_dir=cache)
            assert err.value.params["reason"] == "download_failed"
        assert len(calls) == 1
        monkeypatch.setattr(schemas, "FETCH_RETRY_SECONDS", 0)
        with pytest.raises(SchemaUnavailableError):
            schemas.schema_location(cache_dir=cache)
        assert len(calls) == 2
    finally:
        schemas.clear_cache()
