import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from ksef import crypto
from ksef.errors import CredentialError


@pytest.fixture(scope="module")
def seal():
    return crypto.generate_self_signed_certificate(
        crypto.generate_private_key("ec"), nip="5260250274", organization="Firma sp. z o.o.", seal=True)


def test_aes_round_trip_and_stream():
    key, iv = crypto.new_symmetric_key()
    data = bytes(range(256)) * 100 + b"tail"
    encrypted = crypto.aes_cbc_encrypt(key, iv, data)
    assert len(encrypted) % 16 == 0 and encrypted != data
    assert crypto.aes_cbc_decrypt(key, iv, encrypted) == data
    stream = crypto.AesCbcStreamDecryptor(key, iv)
    out = b"".join(stream.update(encrypted[i:i + 1000]) for i in range(0, len(encrypted), 1000))
    assert out + stream.finalize() == data
    with pytest.raises(ValueError):
        crypto.aes_cbc_decrypt(crypto.new_symmetric_key()[0], iv, encrypted)


def test_rsa_oaep_wrap():
    key, cert = crypto.generate_self_signed_certificate(nip="5260250274", organization="X", seal=True)
    secret = b"k" * 32
    wrapped = crypto.rsa_oaep_encrypt(cert, secret)
    assert len(wrapped) == 256
    assert crypto.rsa_oaep_decrypt(key, wrapped) == secret


def test_hash_encodings():
    data = b"<Faktura/>"
    digest = hashlib.sha256(data).digest()
    assert crypto.sha256_b64(data) == base64.b64encode(digest).decode()
    assert crypto.sha256_b64url(data) == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert crypto.b64url_decode(crypto.sha256_b64url(data)) == digest


def test_subject_identifiers(seal):
    _key, cert = seal
    assert crypto.certificate_subject_identifier(cert) == ("Nip", "5260250274")
    _k, person = crypto.generate_self_signed_certificate(
        crypto.generate_private_key("ec"), pesel="44051401359", given_name="Jan", surname="Kowalski")
    assert crypto.certificate_subject_identifier(person) == ("Pesel", "44051401359")
    _k, tin = crypto.generate_self_signed_certificate(
        crypto.generate_private_key("ec"), nip="5260250274", given_name="Anna", surname="Nowak")
    assert crypto.certificate_subject_identifier(tin) == ("Nip", "5260250274")
    _k, anonymous = crypto.generate_self_signed_certificate(
        crypto.generate_private_key("ec"), subject=crypto.build_subject(common_name="x", seal=False))
    assert crypto.certificate_subject_identifier(anonymous) is None


def test_key_ids(seal):
    key, cert = seal
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    assert crypto.public_key_id(cert) == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert crypto.certificate_id(cert) == crypto.sha256_b64(crypto.certificate_der(cert))
    assert len(crypto.certificate_serial_hex(cert)) >= 16


def test_load_credentials_formats(seal):
    key, cert = seal
    pem_key = crypto.private_key_pem(key, "tajne")
    der_cert = crypto.certificate_der(cert)
    for cert_data in (crypto.certificate_pem(cert), der_cert, base64.b64encode(der_cert)):
        k, c = crypto.load_credentials(cert_data, pem_key, "tajne")
        assert crypto.public_keys_equal(k.public_key(), c.public_key())
    p12 = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, BestAvailableEncryption(b"pw"))
    k, c = crypto.load_credentials(p12, None, "pw")
    assert c == cert


@pytest.mark.parametrize("password,code", [(None, "key_password_required"), ("zle", "key_bad_password")])
def test_encrypted_key_errors(seal, password, code):
    key, cert = seal
    with pytest.raises(CredentialError) as err:
        crypto.load_credentials(crypto.certificate_pem(cert), crypto.private_key_pem(key, "tajne"), password)
    assert err.value.code == code
    assert "tajne" not in str(err.value)


def test_key_mismatch_and_garbage(seal):
    _key, cert = seal
    other = crypto.generate_private_key("ec")
    with pytest.raises(CredentialError) as err:
        crypto.load_credentials(crypto.certificate_pem(cert), crypto.private_key_pem(other))
    assert err.value.code == "key_mismatch"
    with pytest.raises(CredentialError) as err:
        crypto.load_certificate(b"not a certificate")
    assert err.value.code == "certificate_unreadable"
    with pytest.raises(CredentialError) as err:
        crypto.load_credentials(crypto.certificate_pem(cert), crypto.certificate_pem(cert))
    assert err.value.code == "key_is_certificate"


def test_binary_der_ending_in_whitespace_byte_is_kept_intact():
    """DER is binary: a certificate or key whose last byte is 0x0a/0x20/0x09 must load unchanged."""
    found_cert = found_key = False
    for _ in range(2000):
        key, cert = crypto.generate_self_signed_certificate(
            crypto.generate_private_key("ec"), nip="5260250274", organization="X", seal=True)
        der = crypto.certificate_der(cert)
        key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        if der[-1:] in (b"\n", b" ", b"\t", b"\r") and not found_cert:
            assert crypto.load_certificate(der) == cert
            found_cert = True
        if key_der[-1:] in (b"\n", b" ", b"\t", b"\r") and not found_key:
            assert crypto.load_credentials(der, key_der)[1] == cert
            found_key = True
        if found_cert and found_key:
            break
    assert found_cert and found_key
