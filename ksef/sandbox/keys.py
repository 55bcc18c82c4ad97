"""The sandbox's own key pairs: KSeF-token encryption, symmetric-key encryption, UPO signing.

Generated on first start and persisted (PEM) in ``<data_dir>/keys`` so that clients caching the
public certificates keep working across restarts.
"""
import datetime
import logging
import os

from cryptography import x509
from cryptography.x509.oid import NameOID

from .. import crypto

_logger = logging.getLogger(__name__)

USAGES = ("KsefTokenEncryption", "SymmetricKeyEncryption")


class KeyPair:
    def __init__(self, usage, key, cert):
        self.usage = usage
        self.key = key
        self.cert = cert
        self.public_key_id = crypto.public_key_id(cert)
        self.certificate_id = crypto.certificate_id(cert)

    def as_public_json(self, iso):
        return {
            "certificate": crypto.b64encode(crypto.certificate_der(self.cert)),
            "certificateId": self.certificate_id,
            "publicKeyId": self.public_key_id,
            "validFrom": iso(crypto.not_valid_before(self.cert)),
            "validTo": iso(crypto.not_valid_after(self.cert)),
            "usage": [self.usage],
        }


def _subject(common_name):
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "PL"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KSeF Sandbox (local, not Ministerstwo Finansow)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _load_or_create(directory, name, common_name):
    key_path = os.path.join(directory, "%s.key.pem" % name)
    cert_path = os.path.join(directory, "%s.cert.pem" % name)
    if os.path.exists(key_path) and os.path.exists(cert_path):
        with open(key_path, "rb") as fh:
            key = crypto.load_private_key(fh.read())
        with open(cert_path, "rb") as fh:
            cert = crypto.load_certificate(fh.read())
        if crypto.not_valid_after(cert) > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1):
            return key, cert
        _logger.info("sandbox key %s expired, generating a new one", name)
    key = crypto.generate_private_key("rsa", 2048)
    _key, cert = crypto.generate_self_signed_certificate(key, subject=_subject(common_name), days=3650)
    os.makedirs(directory, exist_ok=True)
    with open(key_path, "wb") as fh:
        fh.write(crypto.private_key_pem(key))
    os.chmod(key_path, 0o600)
    with open(cert_path, "wb") as fh:
        fh.write(crypto.certificate_pem(cert))
    _logger.info("generated sandbox key pair %s", name)
    return key, cert


class SandboxKeys:
    def __init__(self, directory):
        self.directory = directory
        self.pairs = {}
        for usage in USAGES:
            key, cert = _load_or_create(directory, usage, "KSeF Sandbox %s" % usage)
            self.pairs[usage] = KeyPair(usage, key, cert)
        self.upo_key, self.upo_cert = _load_or_create(directory, "UpoSigning", "KSeF Sandbox UPO seal")

    def by_usage(self, usage):
        return self.pairs[usage]

    def find(self, usage, public_key_id):
        """Key pair for ``usage``; with ``public_key_id`` given it must match, else ``None``."""
        pair = self.pairs[usage]
        if public_key_id is None or public_key_id == pair.public_key_id:
            return pair
        return None

    def public_certificates(self, iso):
        return [self.pairs[u].as_public_json(iso) for u in USAGES]
