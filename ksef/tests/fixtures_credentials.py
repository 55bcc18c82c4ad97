"""Shared test credentials: self-signed RSA and EC certificates following KSeF subject conventions.

Fixtures (session scope, generated once per run with :mod:`ksef.crypto`):

* ``rsa_seal`` / ``ec_seal`` — company seal, ``organizationIdentifier=VATPL-<SEAL_NIP>``;
* ``rsa_person`` — natural person, ``serialNumber=PNOPL-<PERSON_PESEL>``;
* ``ec_person_nip`` — natural person, ``serialNumber=TINPL-<PERSON_NIP>``;
* ``ec_offline`` / ``rsa_offline`` — KSeF "Offline" type certificates (nonRepudiation) for KOD II.

Each is a :class:`Credentials` with ``key``, ``cert``, ``key_pem``, ``cert_pem`` and ``write(dir)``.
"""
import dataclasses
import pathlib

import pytest

from ksef import crypto

SEAL_NIP = "5265877635"
PERSON_PESEL = "44051401359"
PERSON_NIP = "1111111111"


@dataclasses.dataclass
class Credentials:
    key: object
    cert: object

    @property
    def key_pem(self):
        return crypto.private_key_pem(self.key)

    @property
    def cert_pem(self):
        return crypto.certificate_pem(self.cert)

    def write(self, directory, name="cred", password=None):
        """Write ``<name>.key`` (PKCS#8 PEM, encrypted with ``password`` if given) and ``<name>.pem``;
        return ``(key_path, cert_path)``."""
        directory = pathlib.Path(directory)
        key_path, cert_path = directory / (name + ".key"), directory / (name + ".pem")
        key_path.write_bytes(crypto.private_key_pem(self.key, password))
        cert_path.write_bytes(self.cert_pem)
        return key_path, cert_path


def make_credentials(kind="rsa", *, key_usage="authentication", **subject):
    """New self-signed credentials; ``subject`` goes to :func:`ksef.crypto.build_subject`."""
    key, cert = crypto.generate_self_signed_certificate(
        crypto.generate_private_key(kind), key_usage=key_usage, **subject)
    return Credentials(key, cert)


@pytest.fixture(scope="session")
def rsa_seal():
    return make_credentials("rsa", nip=SEAL_NIP, organization="Testowa Spółka z o.o.")


@pytest.fixture(scope="session")
def ec_seal():
    return make_credentials("ec", nip=SEAL_NIP, organization="Testowa Spółka z o.o.")


@pytest.fixture(scope="session")
def rsa_person():
    return make_credentials("rsa", pesel=PERSON_PESEL, given_name="Jan", surname="Kowalski")


@pytest.fixture(scope="session")
def ec_person_nip():
    return make_credentials("ec", nip=PERSON_NIP, given_name="Anna", surname="Nowak")


@pytest.fixture(scope="session")
def ec_offline():
    return make_credentials("ec", key_usage="offline", nip=SEAL_NIP, organization="Testowa Spółka z o.o.")


@pytest.fixture(scope="session")
def rsa_offline():
    return make_credentials("rsa", key_usage="offline", nip=SEAL_NIP, organization="Testowa Spółka z o.o.")
