"""Shared fixtures of the Odoo-free suite.

The official spec bundle (XSDs, samples, OpenAPI) is never committed; it is found through
``KSEF_SPEC_DIR`` (default: ``<repo>/../shared/ksef-spec``). ``KSEF_SCHEMA_DIR`` defaults to
its ``schemas`` folder. Modules named ``ksef/tests/fixtures_*.py`` are loaded as plugins so
that each area can contribute fixtures without editing this file.
"""
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC_DIR = pathlib.Path(os.environ.get("KSEF_SPEC_DIR") or (REPO.parent / "shared" / "ksef-spec")).resolve()
if not os.environ.get("KSEF_SCHEMA_DIR") and (SPEC_DIR / "schemas").is_dir():
    os.environ["KSEF_SCHEMA_DIR"] = str(SPEC_DIR / "schemas")

pytest_plugins = sorted(
    "ksef.tests.%s" % p.stem for p in pathlib.Path(__file__).parent.glob("fixtures_*.py")
)


@pytest.fixture(scope="session")
def spec_dir():
    if not SPEC_DIR.is_dir():
        pytest.fail("KSeF spec bundle not found at %s (set KSEF_SPEC_DIR)" % SPEC_DIR)
    return SPEC_DIR


@pytest.fixture(scope="session")
def samples_dir(spec_dir):
    return spec_dir / "samples"


@pytest.fixture(scope="session")
def openapi_path(spec_dir):
    return spec_dir / "openapi" / "ksef-api-v2_openapi_2.6.0_from-ksef-docs.json"
