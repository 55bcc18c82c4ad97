"""pytest fixtures of the fake VAT white-list API (see :mod:`ksef.tests.whitelist_fake`)."""
import pytest

from ksef.tests.whitelist_fake import FakeWhiteList


@pytest.fixture(scope="session")
def whitelist_server():
    with FakeWhiteList() as fake:
        yield fake


@pytest.fixture
def whitelist(whitelist_server):
    """The fake register, emptied before each test."""
    whitelist_server.reset()
    return whitelist_server
