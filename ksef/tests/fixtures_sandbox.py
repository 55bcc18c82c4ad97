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
        server = SandboxServer(host="127.0.0.1", port=0, data_dir=data_dir, rate_limits="off").start()
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
