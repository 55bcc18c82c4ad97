"""``ksef fa3 parse|build|validate|example``."""
import json

from ksef import cli, fa3


def test_parse_summary_and_json(capsys, samples_dir):
    path = str(samples_dir / "fa3" / "mf-examples" / "Fa_3_Przyklad_20.xml")
    assert cli.main(["fa3", "parse", path]) == 0
    out = capsys.readouterr().out
    assert "FV2026/02/150" in out and "P_14_1=3118.80" in out and "16678.80 EUR" in out
    assert cli.main(["fa3", "parse", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fa"]["kod_waluty"] == "EUR"
    assert fa3.from_dict(data) == fa3.parse((samples_dir / "fa3" / "mf-examples" / "Fa_3_Przyklad_20.xml")
                                            .read_bytes())


def test_build_from_json(tmp_path, capsysbinary, fa3_invoice):
    invoice = fa3_invoice(lines=2)
    source = tmp_path / "inv.json"
    source.write_text(fa3.to_json(invoice), encoding="utf-8")
    assert cli.main(["fa3", "build", str(source)]) == 0
    assert capsysbinary.readouterr().out == fa3.build(invoice)
    # totals recomputed on request
    data = fa3.to_dict(invoice)
    data["fa"]["p_15"] = "0"
    source.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "out.xml"
    assert cli.main(["fa3", "build", str(source), "--compute-totals", "-o", str(out)]) == 0
    assert out.read_bytes() == fa3.build(invoice)


def test_validate_exit_codes(tmp_path, capsys, samples_dir, fa3_invoice):
    good = str(samples_dir / "fa3" / "mf-examples" / "FA_3_Przyklad_1.xml")
    assert cli.main(["fa3", "validate", good, "--today", "2026-12-31"]) == 0
    assert "valid" in capsys.readouterr().out
    data = fa3.build(fa3_invoice()).replace(b"<NIP>9999999999</NIP>", b"<NIP>9999999990</NIP>")
    bad = tmp_path / "bad.xml"
    bad.write_bytes(data)
    assert cli.main(["fa3", "validate", good, str(bad), "--today", "2026-12-31"]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "Faktura/Podmiot1/DaneIdentyfikacyjne/NIP" in out and "9999999990" in out
    assert cli.main(["fa3", "validate", str(bad), "--json", "--lang", "pl"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[0]["valid"] is False
    assert report[0]["issues"][0]["code"] == "nip_checksum"
    assert "cyfrę kontrolną" in report[0]["issues"][0]["message"]
    assert cli.main(["fa3", "validate", str(tmp_path / "missing.xml")]) == 1
    model = tmp_path / "model.json"
    model.write_text(fa3.to_json(fa3_invoice()), encoding="utf-8")
    assert cli.main(["fa3", "validate", str(model), "--today", "2026-12-31"]) == 0


def test_parse_error_is_clean(tmp_path, capsys):
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<Faktura><Fa>")
    assert cli.main(["fa3", "parse", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Malformed XML") and "Traceback" not in err


def test_example(capsysbinary):
    assert cli.main(["fa3", "example", "--lines", "3", "--currency", "EUR"]) == 0
    data = capsysbinary.readouterr().out
    assert fa3.parse(data).fa.kod_waluty == "EUR"
    assert [i for i in fa3.validate(data) if i.severity == "error"] == []
