"""Cryptographic primitives used by KSeF (client and sandbox).

Works with cryptography 3.4.8 (the version Odoo 18.0 pins for Python 3.11) and newer.

* AES-256-CBC with PKCS#7 padding (invoice / batch part / export encryption);
* RSAES-OAEP with SHA-256 and MGF1-SHA-256 (KSeF token and symmetric key wrapping);
* SHA-256 in standard Base64 (JSON) and Base64URL without padding (QR links);
* loading certificates and private keys from PEM, DER, Base64-DER and PKCS#12, with passwords;
* self-signed certificates following KSeF's subject conventions (TEST accepts them).
"""
import base64
import datetime
import hashlib
import os
import re

from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from .errors import CredentialError

_BACKEND = default_backend()

OID_ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")
OID_SERIAL_NUMBER = NameOID.SERIAL_NUMBER  # 2.5.4.5

AES_KEY_SIZE = 32
AES_IV_SIZE = 16


# --------------------------------------------------------------------------------------------
# Hashing and encodings
# --------------------------------------------------------------------------------------------

def b64encode(data):
    return base64.b64encode(data).decode("ascii")


def b64decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.b64decode(text, validate=True)


def b64url_nopad(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text):
    text = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text.encode("ascii"))


def sha256(data):
    return hashlib.sha256(data).digest()


def sha256_b64(data):
    """SHA-256 digest in standard Base64 (44 chars), as in KSeF JSON bodies."""
    return b64encode(hashlib.sha256(data).digest())


def sha256_b64url(data):
    """SHA-256 digest in Base64URL without padding (43 chars), as in KSeF QR links."""
    return b64url_nopad(hashlib.sha256(data).digest())


# --------------------------------------------------------------------------------------------
# Symmetric encryption
# --------------------------------------------------------------------------------------------

def new_symmetric_key():
    """Return a fresh ``(key, iv)`` pair: 32 random bytes and 16 random bytes."""
    return os.urandom(AES_KEY_SIZE), os.urandom(AES_IV_SIZE)


def aes_cbc_encrypt(key, iv, data):
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv), backend=_BACKEND).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def aes_cbc_decrypt(key, iv, data):
    """Decrypt AES-256-CBC/PKCS#7; raises :class:`ValueError` on a bad key or padding."""
    if len(data) % 16:
        raise ValueError("ciphertext length is not a multiple of the block size")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv), backend=_BACKEND).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


class AesCbcStreamDecryptor:
    """Incremental AES-CBC decryption (for large export parts): feed chunks, then ``finalize``."""

    def __init__(self, key, iv):
        self._dec = Cipher(algorithms.AES(key), modes.CBC(iv), backend=_BACKEND).decryptor()
        self._unpad = padding.PKCS7(128).unpadder()

    def update(self, chunk):
        return self._unpad.update(self._dec.update(chunk))

    def finalize(self):
        return self._unpad.update(self._dec.finalize()) + self._unpad.finalize()


# --------------------------------------------------------------------------------------------
# RSA-OAEP
# --------------------------------------------------------------------------------------------

def _oaep():
    return asym_padding.OAEP(mgf=asym_padding.MGF1(algorithm=hashes.SHA256()),
                             algorithm=hashes.SHA256(), label=None)


def rsa_oaep_encrypt(public_key, data):
    if isinstance(public_key, x509.Certificate):
        public_key = public_key.public_key()
    return public_key.encrypt(data, _oaep())


def rsa_oaep_decrypt(private_key, data):
    return private_key.decrypt(data, _oaep())


# --------------------------------------------------------------------------------------------
# Loading certificates and keys
# --------------------------------------------------------------------------------------------

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def _to_bytes(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return data or b""


def _clean(data):
    """Bytes of a credential file: PEM/Base64 text loses surrounding whitespace, binary DER/PKCS#12
    is kept byte for byte (its last byte may well be 0x0a or 0x20)."""
    data = _to_bytes(data)
    stripped = data.strip()
    if b"-----BEGIN" in stripped[:64] or _is_base64_text(stripped):
        return stripped
    return data


def _is_base64_text(data):
    return bool(data) and re.fullmatch(rb"[A-Za-z0-9+/=\s]+", data) is not None


def load_certificate(data):
    """Load an X.509 certificate from PEM, DER or Base64-encoded DER bytes/str."""
    data = _clean(data)
    if not data:
        raise CredentialError("empty certificate", code="certificate_empty")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data, _BACKEND)
        try:
            return x509.load_der_x509_certificate(data, _BACKEND)
        except ValueError:
            return x509.load_der_x509_certificate(b64decode(b"".join(data.split())), _BACKEND)
    except (ValueError, TypeError) as exc:
        raise CredentialError("the certificate cannot be read (expected PEM or DER X.509)",
                              code="certificate_unreadable") from exc


def load_private_key(data, password=None):
    """Load a private key (PEM or DER; PKCS#8, traditional RSA/EC; encrypted or not)."""
    data = _clean(data)
    if not data:
        raise CredentialError("empty private key", code="key_empty")
    pwd = _to_bytes(password) or None
    loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
              else serialization.load_der_private_key)
    try:
        return loader(data, password=pwd, backend=_BACKEND)
    except TypeError as exc:
        if pwd is None:
            raise CredentialError("the private key is encrypted: a password is required",
                                  code="key_password_required") from exc
        # a password was given for an unencrypted key: the key is usable as it is
        try:
            return loader(data, password=None, backend=_BACKEND)
        except (TypeError, ValueError) as exc2:
            raise CredentialError("the private key cannot be read", code="key_unreadable") from exc2
    except ValueError as exc:
        if pwd is not None:
            raise CredentialError("the private key cannot be decrypted: wrong password or unsupported format",
                                  code="key_bad_password") from exc
        raise CredentialError("the private key cannot be read (expected PEM or DER, PKCS#8 or PKCS#1)",
                              code="key_unreadable") from exc


def load_pkcs12(data, password=None):
    """Return ``(private_key, certificate)`` from PKCS#12 bytes."""
    try:
        key, cert, _extra = pkcs12.load_key_and_certificates(
            _to_bytes(data), _to_bytes(password) or None, _BACKEND)
    except (ValueError, TypeError) as exc:
        raise CredentialError("the PKCS#12 file cannot be opened (wrong password or damaged file)",
                              code="pkcs12_unreadable") from exc
    if key is None or cert is None:
        raise CredentialError("the PKCS#12 file must contain a certificate and its private key",
                              code="pkcs12_incomplete")
    return key, cert


def is_pkcs12(data):
    data = _to_bytes(data)
    return bool(data) and data[:1] == b"\x30" and b"-----BEGIN" not in data[:64] and _looks_like_pfx(data)


def _looks_like_pfx(data):
    try:
        x509.load_der_x509_certificate(data, _BACKEND)
        return False
    except ValueError:
        pass
    try:
        serialization.load_der_private_key(data, None, _BACKEND)
        return False
    except (ValueError, TypeError):
        pass
    return True


def load_credentials(certificate=None, private_key=None, password=None):
    """Load a signing credential.

    Accepts either a PKCS#12 bundle (in ``certificate`` or ``private_key``) or a certificate
    plus a private key (PEM/DER, optionally encrypted with ``password``). Returns
    ``(private_key, certificate)`` and checks that they belong together.
    """
    cert_b, key_b = _clean(certificate), _clean(private_key)
    if cert_b and not key_b and is_pkcs12(cert_b):
        return load_pkcs12(cert_b, password)
    if key_b and not cert_b and is_pkcs12(key_b):
        return load_pkcs12(key_b, password)
    if not cert_b:
        raise CredentialError("a certificate is required", code="certificate_empty")
    if not key_b:
        raise CredentialError("a private key is required", code="key_empty")
    if b"-----BEGIN" in key_b and b"CERTIFICATE" in key_b and b"PRIVATE KEY" not in key_b:
        raise CredentialError("the key file contains a certificate, not a private key",
                              code="key_is_certificate")
    cert = load_certificate(cert_b)
    key = load_private_key(key_b, password)
    if not public_keys_equal(key.public_key(), cert.public_key()):
        raise CredentialError("the private key does not match the certificate", code="key_mismatch")
    return key, cert


def public_key_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def public_keys_equal(a, b):
    return public_key_der(a) == public_key_der(b)


def certificate_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key, password=None):
    """PKCS#8 PEM, encrypted with ``password`` when given."""
    enc = (serialization.BestAvailableEncryption(_to_bytes(password)) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def public_key_id(cert_or_key):
    """KSeF ``publicKeyId``: Base64(SHA-256(SubjectPublicKeyInfo DER))."""
    key = cert_or_key.public_key() if isinstance(cert_or_key, x509.Certificate) else cert_or_key
    return sha256_b64(public_key_der(key))


def certificate_id(cert):
    """KSeF ``certificateId``: Base64(SHA-256(certificate DER))."""
    return sha256_b64(certificate_der(cert))


def certificate_fingerprint_hex(cert):
    """SHA-256 fingerprint in upper-case hex (KSeF ``certificateFingerprint`` identifier)."""
    return hashlib.sha256(certificate_der(cert)).hexdigest().upper()


def certificate_serial_hex(cert):
    """Serial number in upper-case hex, at least 16 digits (KSeF certificate serial)."""
    return "%016X" % cert.serial_number


def not_valid_before(cert):
    value = getattr(cert, "not_valid_before_utc", None)
    if value is None:
        value = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
    return value


def not_valid_after(cert):
    value = getattr(cert, "not_valid_after_utc", None)
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return value


def _name_attr(name, oid):
    values = name.get_attributes_for_oid(oid)
    return values[0].value if values else None


def certificate_subject_identifier(cert):
    """Identity KSeF reads from a certificate subject.

    Returns ``(kind, value)`` where kind is ``"Nip"`` or ``"Pesel"``, or ``None`` when the
    subject carries no KSeF identifier (then the fingerprint identifies the certificate).
    Conventions: organizationIdentifier ``VATPL-<NIP>`` (company seal); serialNumber
    ``PNOPL-<PESEL>`` / ``PESEL-<PESEL>`` or ``TINPL-<NIP>`` / ``NIP-<NIP>`` (person).
    """
    subject = cert.subject
    org_id = _name_attr(subject, OID_ORGANIZATION_IDENTIFIER)
    if org_id:
        m = re.fullmatch(r"VATPL-(\d{10})", org_id.strip())
        if m:
            return "Nip", m.group(1)
    serial = _name_attr(subject, OID_SERIAL_NUMBER)
    if serial:
        serial = serial.strip()
        m = re.fullmatch(r"(?:PNOPL|PESEL)-?(\d{11})", serial)
        if m:
            return "Pesel", m.group(1)
        m = re.fullmatch(r"(?:TINPL|NIP)-?(\d{10})", serial)
        if m:
            return "Nip", m.group(1)
    return None


def certificate_common_name(cert):
    return _name_attr(cert.subject, NameOID.COMMON_NAME)


# --------------------------------------------------------------------------------------------
# Key and certificate generation (sandbox, tests, self-signed TEST credentials)
# --------------------------------------------------------------------------------------------

def generate_private_key(kind="rsa", bits=2048):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1(), _BACKEND)
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits, backend=_BACKEND)
    raise ValueError("unknown key kind %r" % kind)


def build_subject(*, nip=None, pesel=None, organization=None, common_name=None,
                  given_name=None, surname=None, country="PL", seal=None):
    """Build an X.509 name following KSeF's conventions.

    A company seal (``seal=True`` or an organization with a NIP) carries
    ``organizationIdentifier=VATPL-<NIP>``; a person carries ``serialNumber=PNOPL-<PESEL>``
    or ``serialNumber=TINPL-<NIP>``.
    """
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)]
    if seal is None:
        seal = bool(organization) and not pesel and not given_name
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if seal:
        if not nip:
            raise ValueError("a company seal needs a NIP")
        attrs.append(x509.NameAttribute(OID_ORGANIZATION_IDENTIFIER, "VATPL-%s" % nip))
    else:
        if given_name:
            attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, given_name))
        if surname:
            attrs.append(x509.NameAttribute(NameOID.SURNAME, surname))
        if pesel:
            attrs.append(x509.NameAttribute(OID_SERIAL_NUMBER, "PNOPL-%s" % pesel))
        elif nip:
            attrs.append(x509.NameAttribute(OID_SERIAL_NUMBER, "TINPL-%s" % nip))
    cn = common_name or organization or " ".join(p for p in (given_name, surname) if p) or nip or pesel
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn or "KSeF"))
    return x509.Name(attrs)


def generate_self_signed_certificate(key=None, *, subject=None, days=730, serial_number=None,
                                     not_before=None, key_usage="authentication", **subject_kw):
    """Return ``(private_key, certificate)`` self-signed with SHA-256.

    ``key_usage``: ``"authentication"`` (digitalSignature, for XAdES login) or ``"offline"``
    (nonRepudiation, for signing KOD II links), mirroring KSeF certificate types.
    """
    key = key or generate_private_key("rsa")
    subject = subject or build_subject(**subject_kw)
    now = not_before or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(subject)
               .public_key(key.public_key())
               .serial_number(serial_number or x509.random_serial_number() >> 96 or 1)
               .not_valid_before(now.replace(tzinfo=None))
               .not_valid_after((now + datetime.timedelta(days=days)).replace(tzinfo=None)))
    offline = key_usage == "offline"
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=not offline, content_commitment=offline, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False), critical=True)
    cert = builder.sign(key, hashes.SHA256(), _BACKEND)
    return key, cert


def sign_certificate(issuer_key, issuer_cert, public_key, subject, *, days=365, serial_number=None,
                     key_usage="authentication"):
    """Issue a certificate for ``public_key`` signed by ``issuer_key`` (the sandbox's CA)."""
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    offline = key_usage == "offline"
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer_cert.subject)
               .public_key(public_key)
               .serial_number(serial_number or x509.random_serial_number() >> 96 or 1)
               .not_valid_before(now.replace(tzinfo=None))
               .not_valid_after((now + datetime.timedelta(days=days)).replace(tzinfo=None))
               .add_extension(x509.KeyUsage(
                   digital_signature=not offline, content_commitment=offline, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                   encipher_only=False, decipher_only=False), critical=True))
    return builder.sign(issuer_key, hashes.SHA256(), _BACKEND)
