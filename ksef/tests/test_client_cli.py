"""``ksef auth/send/status/upo/fetch/token/permissions/latarnia/logout`` against the sandbox."""
import json
import os
import stat

import pytest

from ksef.cli import main
from ksef.tests.fixtures_sandbox import random_nip
from ksef.tests.test_client_sandbox import invoice_xml, seal_credential


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KSEF_CLI_STATE", str(tmp_path / "state" / "cli-state.json"))

    def run(*argv, code=0):
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out = capsys.readouterr()
        assert rc == code, out.out + out.err
        return out.out
    return run


def test_cli_end_to_end(sandbox, cli, tmp_path):
    nip = random_nip()
    token = sandbox.create_token(nip, ("InvoiceRead", "InvoiceWrite", "CredentialsManage", "CredentialsRead"))
    out = cli("auth", "--env", sandbox.url, "--nip", nip, "--token", token)
    assert "authenticated" in out and token not in out
    state_file = tmp_path / "state" / "cli-state.json"
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    files = []
    for i in range(2):
        path = tmp_path / ("fv%d.xml" % i)
        path.write_bytes(invoice_xml(nip, "FV/CLI/%d" % i))
        files.append(path)
    out = cli("send", *files)
    assert out.count("accepted, KSeF number %s" % nip) == 2
    rows = json.loads(cli("send", "--json", "--batch", tmp_path / "fv0.xml", code=2))
    assert rows[0]["statusCode"] == 440 and rows[0]["originalKsefNumber"]
    state = json.loads(state_file.read_text())
    online = state["sessions"][-2]
    invoice_ref = next(iter(online["sent"].values()))
    out = cli("status", invoice_ref)
    assert "status 200" in out
    out = cli("status", "--session", online["referenceNumber"])
    assert "invoices 2 (ok 2, failed 0)" in out
    cli("upo", "--session", online["referenceNumber"], "-o", tmp_path / "upo.xml")
    assert b"Potwierdzenie" in (tmp_path / "upo.xml").read_bytes()
    cli("upo", "--session", online["referenceNumber"], "--invoice", invoice_ref, "--api", "-o", tmp_path / "i.xml")
    assert b"Potwierdzenie" in (tmp_path / "i.xml").read_bytes()
    out = cli("permissions")
    assert "InvoiceWrite" in out
    out = cli("token", "list")
    assert "Active" in out
    out = cli("latarnia")
    assert "AVAILABLE" in out
    sandbox.set_status("MAINTENANCE", "Przerwa techniczna")
    assert "MAINTENANCE" in cli("latarnia", code=3)
    sandbox.set_status("AVAILABLE")
    # receive: purchase invoices of this NIP, resumable into a directory
    sandbox.set_config(hwm_lag=0.0)
    seeded = set(sandbox.seed(nip, count=3))
    import time
    time.sleep(0.3)
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    inbox = tmp_path / "inbox"
    out = cli("fetch", "--since", since, "-o", inbox)
    assert "3 invoice(s) received (3 new files)" in out
    assert {p.stem for p in inbox.glob("*.xml")} == seeded
    out = cli("fetch", "-o", inbox)
    assert "0 invoice(s) received" in out
    cli("logout")
    assert json.loads(state_file.read_text())["tokens"] is None
    text = state_file.read_text()
    assert token in text                      # kept (0600) for automatic re-login, never printed


def test_cli_certificate_login_and_token_create(sandbox, cli, tmp_path):
    from ksef import crypto
    nip = random_nip()
    cred = seal_credential(nip)
    (tmp_path / "c.pem").write_bytes(crypto.certificate_pem(cred.certificate))
    (tmp_path / "k.pem").write_bytes(crypto.private_key_pem(cred.private_key, "pw"))
    os.environ["KSEF_TEST_PW"] = "pw"
    try:
        out = cli("auth", "--env", sandbox.url, "--nip", nip, "--cert", tmp_path / "c.pem", "--key",
                  tmp_path / "k.pem", "--password-env", "KSEF_TEST_PW")
        assert "certificate" in out
        out = cli("token", "create", "--description", "Odoo token", "-o", tmp_path / "t.txt")
        assert "created (Active)" in out
        token = (tmp_path / "t.txt").read_text().strip()
        assert token and token not in out
        ref = out.split()[2]
        out = cli("token", "revoke", ref)
        assert "revoked" in out
    finally:
        del os.environ["KSEF_TEST_PW"]


def test_cli_errors_are_clear(sandbox, cli, tmp_path, capsys):
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "ksef auth" in err
