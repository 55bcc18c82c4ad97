"""pytest fixtures of the local KSeF sandbox (contract: /work/team/SANDBOX_CONTRACT.md).

* ``sandbox_server`` (session scope): a :class:`ksef.sandbox.SandboxServer` in a background thread on a
  random free port of 127.0.0.1, with a temporary data directory and rate limits OFF.
* ``sandbox`` (function scope): a :class:`SandboxHandle` on that server after a reset of faults,
  Latarnia status, rate limits (off) and configuration. Stored data is kept between tests: every test
  should use its own context NIP (:func:`random_nip`).

Handle API: ``url``, ``api_url``, ``status_url``, ``qr_url``, ``create_token(nip, permissions=...,
description=...) -> str``, ``set_faults(**spec)`` (one fault, or ``faults=[...]`` + ``seed=``),
``clear_faults()``, ``set_status(status, message=None, api=None)``, ``set_rate_limits(mode_or_dict)``,
``set_config(**values)``, ``seed(buyer_nip, count=10, **options) -> list[str]``, ``invoices(**filters) -> list[dict]``,
``public_certificates() -> list[dict]``, ``grant(context, subject, permissions)``, ``wait_idle()``.
"""
import random
import tempfile

import pytest
import requests

from ksef.numbers import nip_check_digit


def random_nip(rng=random):
    """A random valid NIP (checksum OK, no leading zero, matches KSeF's NIP pattern)."""
    while True:
        first9 = "%d%08d" % (rng.randint(1, 9), rng.randint(0, 99999999))
        if first9[1:3] == "00":
            continue
        digit = nip_check_digit(first9)
        if digit is not None:
            return first9 + str(digit)


class SandboxHandle:
    """Test-side remote control of a running sandbox (through its HTTP admin API)."""

    def __init__(self, url, server=None):
        self.url = url.rstrip("/")
        self.api_url = self.url + "/v2"
        self.status_url = self.url + "/latarnia"
        self.qr_url = self.url + "/qr"
        self.server = server
        self.http = requests.Session()

    def admin(self, method, path, payload=None, **params):
        resp = self.http.request(method, self.url + "/_sandbox" + path, json=payload, params=params or None,
                                 timeout=120)
        if resp.status_code >= 400:
            raise AssertionError("sandbox admin %s %s failed: %s %s" % (method, path, resp.status_code, resp.text))
        return resp.json()

    def reset(self, data=False):
        return self.admin("POST", "/reset", {"data": data})

    def create_token(self, nip, permissions=("InvoiceRead", "InvoiceWrite"), description="sandbox test token"):
        return self.admin("POST", "/tokens", {"nip": nip, "permissions": list(permissions),
                                              "description": description})["token"]

    def create_token_ref(self, nip, permissions=("InvoiceRead", "InvoiceWrite"), description="sandbox test token"):
        data = self.admin("POST", "/tokens", {"nip": nip, "permissions": list(permissions),
                                              "description": description})
        return data["token"], data["referenceNumber"]

    def set_faults(self, **spec):
        return self.admin("POST", "/faults", spec)["faults"]

    def clear_faults(self):
        self.admin("DELETE", "/faults")

    def faults(self):
        return self.admin("GET", "/faults")["faults"]

    def set_status(self, status, message=None, api=None):
        return self.admin("POST", "/status", {"status": status, "message": message, "api": api})

    def set_rate_limits(self, mode_or_dict):
        return self.admin("POST", "/rate-limits", {"mode": mode_or_dict})

    def set_config(self, **values):
        return self.admin("POST", "/config", values)

    def grant(self, context, subject, permissions):
        return self.admin("POST", "/grants", {"context": context, "subject": subject,
                                              "permissions": list(permissions)})

    def seed(self, buyer_nip, count=10, **options):
        payload = {"buyerNip": buyer_nip, "count": count}
        payload.update({_camel(k): v for k, v in options.items()})
        return self.admin("POST", "/seed", payload)["ksefNumbers"]

    def invoices(self, **filters):
        return self.admin("GET", "/invoices", None, **{_camel(k): v for k, v in filters.items()})["invoices"]

    def public_certificates(self):
        resp = self.http.get(self.api_url + "/security/public-key-certificates", timeout=30)
        resp.raise_for_status()
        return resp.json()

    def wait_idle(self, timeout=120):
        return self.admin("POST", "/wait", {"timeout": timeout})["idle"]


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@pytest.fixture(scope="session")
def sandbox_server():
    from ksef.sandbox import SandboxServer

    with tempfile.TemporaryDirectory(prefix="ksef-sandbox-") as data_dir:
        # short processing times keep the suites fast; statuses 100/150/170 are still observable
        config = {"auth_delay": 0.1, "invoice_delay": 0.1, "session_close_delay": 0.1, "export_delay": 0.1,
                  "token_activation_delay": 0.2}
        server = SandboxServer(host="127.0.0.1", port=0, data_dir=data_dir, rate_limits="off",
                               config=config).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def sandbox(sandbox_server):
    handle = SandboxHandle(sandbox_server.url, sandbox_server)
    handle.reset()
    yield handle
    handle.http.close()


# --------------------------------------------------------------------------------------------
# Raw-HTTP helpers for sandbox tests (deliberately not the ksef.client: they speak the wire protocol)
# --------------------------------------------------------------------------------------------

FA3_FORM = {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}


class RawKsef:
    """Minimal raw KSeF v2 calls with ``requests`` + :mod:`ksef.crypto` (for sandbox tests)."""

    def __init__(self, api_url, http=None, recorder=None):
        self.api = api_url.rstrip("/")
        self.http = http or requests.Session()
        self.recorder = recorder

    def call(self, method, path, token=None, **kwargs):
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = "Bearer " + token
        kwargs.setdefault("timeout", 60)
        url = path if path.startswith("http") else self.api + path
        resp = self.http.request(method, url, headers=headers, **kwargs)
        if self.recorder is not None:
            self.recorder.append((method, path.split("?")[0], resp))
        return resp

    def key(self, usage):
        from ksef import crypto
        for item in self.call("GET", "/security/public-key-certificates").json():
            if usage in item["usage"]:
                return crypto.load_certificate(item["certificate"]), item["publicKeyId"]
        raise AssertionError("no %s key" % usage)

    def start_token_auth(self, nip, token, timestamp_shift=0, context=None):
        from ksef import crypto
        cert, key_id = self.key("KsefTokenEncryption")
        challenge = self.call("POST", "/auth/challenge").json()
        plain = ("%s|%d" % (token, challenge["timestampMs"] + timestamp_shift)).encode()
        body = {"challenge": challenge["challenge"],
                "contextIdentifier": context or {"type": "Nip", "value": nip},
                "encryptedToken": crypto.b64encode(crypto.rsa_oaep_encrypt(cert, plain)), "publicKeyId": key_id}
        return self.call("POST", "/auth/ksef-token", json=body)

    def wait_auth(self, init, timeout=10):
        import time
        deadline = time.time() + timeout
        while True:
            status = self.call("GET", "/auth/" + init["referenceNumber"], init["authenticationToken"]["token"]).json()
            if status["status"]["code"] != 100 or time.time() > deadline:
                return status
            time.sleep(0.05)

    def redeem(self, init):
        resp = self.call("POST", "/auth/token/redeem", init["authenticationToken"]["token"])
        assert resp.status_code == 200, resp.text
        return resp.json()

    def login(self, nip, token):
        """KSeF-token login; returns the redeemed ``{accessToken, refreshToken}``."""
        resp = self.start_token_auth(nip, token)
        assert resp.status_code == 202, resp.text
        init = resp.json()
        status = self.wait_auth(init)
        assert status["status"]["code"] == 200, status
        return self.redeem(init)

    def login_xades(self, nip, key, cert, subject_type="certificateSubject"):
        from ksef import xades
        challenge = self.call("POST", "/auth/challenge").json()["challenge"]
        doc = xades.build_auth_token_request(challenge, "Nip", nip, subject_type)
        signed = xades.sign(doc, key, cert)
        return self.call("POST", "/auth/xades-signature", data=signed, headers={"Content-Type": "application/xml"})

    def open_online(self, access, form=None, key=None, iv=None):
        """Open an online session; returns ``(referenceNumber, key, iv)``."""
        from ksef import crypto
        if key is None:
            key, iv = crypto.new_symmetric_key()
        cert, key_id = self.key("SymmetricKeyEncryption")
        body = {"formCode": form or FA3_FORM, "encryption": {
            "encryptedSymmetricKey": crypto.b64encode(crypto.rsa_oaep_encrypt(cert, key)),
            "initializationVector": crypto.b64encode(iv), "publicKeyId": key_id}}
        resp = self.call("POST", "/sessions/online", access, json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()["referenceNumber"], key, iv

    @staticmethod
    def invoice_body(xml, key, iv, **overrides):
        from ksef import crypto
        encrypted = crypto.aes_cbc_encrypt(key, iv, xml)
        body = {"invoiceHash": crypto.sha256_b64(xml), "invoiceSize": len(xml),
                "encryptedInvoiceHash": crypto.sha256_b64(encrypted), "encryptedInvoiceSize": len(encrypted),
                "encryptedInvoiceContent": crypto.b64encode(encrypted), "offlineMode": False}
        body.update(overrides)
        return body

    def send(self, access, ref, key, iv, xml, **overrides):
        return self.call("POST", "/sessions/online/%s/invoices" % ref, access,
                         json=self.invoice_body(xml, key, iv, **overrides))

    def wait_invoice(self, access, ref, inv_ref, timeout=15):
        import time
        deadline = time.time() + timeout
        while True:
            status = self.call("GET", "/sessions/%s/invoices/%s" % (ref, inv_ref), access).json()
            if status["status"]["code"] not in (100, 150) or time.time() > deadline:
                return status
            time.sleep(0.05)

    def wait_session(self, access, ref, timeout=60, done=(100, 150, 170)):
        import time
        deadline = time.time() + timeout
        while True:
            status = self.call("GET", "/sessions/%s" % ref, access).json()
            if status["status"]["code"] not in done or time.time() > deadline:
                return status
            time.sleep(0.05)


def make_invoice(seller_nip, buyer_nip, number=None, issue_date=None, *, kind="VAT", gross="123.00"):
    """A small valid FA(3) invoice (bytes) from ``seller_nip`` to ``buyer_nip``."""
    import datetime
    import uuid

    issue = issue_date or datetime.date.today().isoformat()
    number = number or "FV/%s" % uuid.uuid4().hex[:12].upper()
    net = "100.00"
    vat = "%.2f" % (float(gross) - 100)
    return (f"""<?xml version="1.0" encoding="UTF-8"?>
<Faktura xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/">
<Naglowek><KodFormularza kodSystemowy="FA (3)" wersjaSchemy="1-0E">FA</KodFormularza>
<WariantFormularza>3</WariantFormularza>
<DataWytworzeniaFa>2026-01-02T10:00:00Z</DataWytworzeniaFa></Naglowek>
<Podmiot1><DaneIdentyfikacyjne><NIP>{seller_nip}</NIP><Nazwa>Sprzedawca</Nazwa></DaneIdentyfikacyjne>
<Adres><KodKraju>PL</KodKraju><AdresL1>ul. Testowa 1</AdresL1></Adres></Podmiot1>
<Podmiot2><DaneIdentyfikacyjne><NIP>{buyer_nip}</NIP><Nazwa>Nabywca</Nazwa></DaneIdentyfikacyjne>
<Adres><KodKraju>PL</KodKraju><AdresL1>ul. Kupiecka 2</AdresL1></Adres><JST>2</JST><GV>2</GV></Podmiot2>
<Fa><KodWaluty>PLN</KodWaluty><P_1>{issue}</P_1><P_2>{number}</P_2><P_6>{issue}</P_6>
<P_13_1>{net}</P_13_1><P_14_1>{vat}</P_14_1><P_15>{gross}</P_15>
<Adnotacje><P_16>2</P_16><P_17>2</P_17><P_18>2</P_18><P_18A>2</P_18A><Zwolnienie><P_19N>1</P_19N></Zwolnienie>
<NoweSrodkiTransportu><P_22N>1</P_22N></NoweSrodkiTransportu><P_23>2</P_23><PMarzy><P_PMarzyN>1</P_PMarzyN></PMarzy>
</Adnotacje><RodzajFaktury>{kind}</RodzajFaktury>
<FaWiersz><NrWierszaFa>1</NrWierszaFa><P_7>Usługa</P_7><P_8A>szt.</P_8A><P_8B>1</P_8B><P_9A>{net}</P_9A>
<P_11>{net}</P_11><P_12>23</P_12></FaWiersz></Fa></Faktura>
""").encode()


@pytest.fixture
def raw(sandbox):
    """A :class:`RawKsef` on the ``sandbox`` fixture."""
    client = RawKsef(sandbox.api_url)
    yield client
    client.http.close()
