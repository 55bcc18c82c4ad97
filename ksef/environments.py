"""KSeF environments: API base, status service ("Latarnia") base and QR verification base.

Known names (DIGEST §1): ``test``, ``demo``, ``prod`` (alias ``production``), and ``sandbox`` — the
local sandbox (``python -m ksef sandbox``), by default on ``http://127.0.0.1:8765`` (or
``$KSEF_SANDBOX_URL``). Any URL is also accepted: a URL equal to a known API base maps to that
environment; any other URL is treated as a sandbox root (``/v2``, ``/latarnia`` and ``/qr`` are derived
from it; a trailing ``/v2`` is stripped).
"""
import os
import re
from dataclasses import dataclass, replace

SANDBOX_DEFAULT_URL = "http://127.0.0.1:8765"


@dataclass(frozen=True)
class Environment:
    """One KSeF installation.

    ``api_url``: REST base including ``/v2``; ``latarnia_url``: status service base (``None`` if unknown);
    ``qr_url``: base of KOD I / KOD II verification links; ``production``: legal effect (real invoices);
    ``self_signed_ok``: whether self-signed certificates are accepted for XAdES login.
    ``accepted_forms``: form codes that may be *sent* there.
    """

    name: str
    api_url: str
    latarnia_url: str | None
    qr_url: str
    production: bool = False
    self_signed_ok: bool = False
    accepted_forms: tuple = ("FA3", "PEF3", "PEF_KOR3", "FA_RR1")

    @property
    def root_url(self):
        return self.api_url[:-3] if self.api_url.endswith("/v2") else self.api_url

    @property
    def is_sandbox(self):
        return self.name == "sandbox"


TEST = Environment(
    name="test",
    api_url="https://api-test.ksef.mf.gov.pl/v2",
    latarnia_url="https://api-latarnia-test.ksef.mf.gov.pl",
    qr_url="https://qr-test.ksef.mf.gov.pl",
    self_signed_ok=True,
    accepted_forms=("FA2", "FA3", "PEF3", "PEF_KOR3", "FA_RR1"),
)
DEMO = Environment(
    name="demo",
    api_url="https://api-demo.ksef.mf.gov.pl/v2",
    # no DEMO status service was found; the TEST one is what third-party clients use (DIGEST §1 [INF])
    latarnia_url="https://api-latarnia-test.ksef.mf.gov.pl",
    qr_url="https://qr-demo.ksef.mf.gov.pl",
)
PROD = Environment(
    name="prod",
    api_url="https://api.ksef.mf.gov.pl/v2",
    latarnia_url="https://api-latarnia.ksef.mf.gov.pl",
    qr_url="https://qr.ksef.mf.gov.pl",
    production=True,
)

ENVIRONMENTS = {"test": TEST, "demo": DEMO, "prod": PROD}
_ALIASES = {"production": "prod", "prd": "prod", "te": "test", "tr": "demo", "pre-production": "demo"}


def sandbox_environment(url=None):
    """The local sandbox at ``url`` (root URL, with or without ``/v2``)."""
    root = (url or os.environ.get("KSEF_SANDBOX_URL") or SANDBOX_DEFAULT_URL).strip().rstrip("/")
    if root.endswith("/v2"):
        root = root[:-3]
    return Environment(
        name="sandbox",
        api_url=root + "/v2",
        latarnia_url=root + "/latarnia",
        qr_url=root + "/qr",
        self_signed_ok=True,
        accepted_forms=TEST.accepted_forms,
    )


def get_environment(value=None):
    """Resolve ``value`` (an :class:`Environment`, a known name or a URL) to an :class:`Environment`.

    ``None`` means ``test``. Raises :class:`ValueError` for an unknown name.
    """
    if isinstance(value, Environment):
        return value
    text = (value or "test").strip()
    key = text.lower()
    key = _ALIASES.get(key, key)
    if key in ENVIRONMENTS:
        return ENVIRONMENTS[key]
    if key == "sandbox":
        return sandbox_environment()
    if re.match(r"^https?://", text, re.I):
        norm = text.rstrip("/")
        for env in ENVIRONMENTS.values():
            if norm in (env.api_url, env.root_url):
                return env
        return sandbox_environment(norm)
    raise ValueError("unknown KSeF environment %r (expected test, demo, prod, sandbox or a URL)" % (value,))


def with_overrides(env, **kw):
    """A copy of ``env`` with some fields replaced (e.g. another Latarnia URL)."""
    return replace(get_environment(env), **kw)
