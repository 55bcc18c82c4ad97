"""KOD I / KOD II links, their signatures, and QR rendering (ksef.qr) plus the ``ksef qr`` CLI."""
import base64
import datetime
import hashlib
import io
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree
from PIL import Image

from ksef import crypto, qr
from ksef.cli import main
from ksef.errors import CredentialError
from ksef.tests.fixtures_credentials import SEAL_NIP

ZBARIMG = shutil.which("zbarimg")
needs_zbar = pytest.mark.skipif(ZBARIMG is None, reason="zbarimg not installed (apt-get install zbar-tools)")

# DIGEST §14 example
EXAMPLE_HASH = "UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE"
EXAMPLE_URL = "https://qr-test.ksef.mf.gov.pl/invoice/1111111111/01-02-2026/" + EXAMPLE_HASH
EXAMPLE_SIGNED = ("qr-test.ksef.mf.gov.pl/certificate/Nip/1111111111/1111111111/01F20A5D352AE590/" + EXAMPLE_HASH)
RAW_HASH = base64.urlsafe_b64decode(EXAMPLE_HASH + "=")
KSEF_NUMBER = "5265877635-20250729-01004014E040-00"


# --------------------------------------------------------------------------------------------
# KOD I
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hash_value", [EXAMPLE_HASH, base64.b64encode(RAW_HASH).decode(), RAW_HASH,
                                        base64.b64encode(RAW_HASH)])
def test_invoice_url_known_answer(hash_value):
    assert qr.invoice_url("test", "1111111111", datetime.date(2026, 2, 1), invoice_hash=hash_value) == EXAMPLE_URL


def test_invoice_url_from_xml_bytes():
    # SHA-256 of the empty string, a well-known value
    assert qr.invoice_url("prod", SEAL_NIP, "2026-02-01", invoice_xml_bytes=b"").endswith(
        "/invoice/5265877635/01-02-2026/47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU")
    data = b"<Faktura>\xc5\xbc</Faktura>"
    url = qr.invoice_url("demo", SEAL_NIP, datetime.date(2026, 12, 31), invoice_xml_bytes=data)
    assert url == "https://qr-demo.ksef.mf.gov.pl/invoice/5265877635/31-12-2026/" + crypto.sha256_b64url(data)
    assert "=" not in url.rsplit("/", 1)[1]


@pytest.mark.parametrize(("env", "base"), [
    ("test", "https://qr-test.ksef.mf.gov.pl"),
    ("demo", "https://qr-demo.ksef.mf.gov.pl"),
    ("prod", "https://qr.ksef.mf.gov.pl"),
    ("PRODUCTION", "https://qr.ksef.mf.gov.pl"),
    ("http://127.0.0.1:8765/qr/", "http://127.0.0.1:8765/qr"),
    ("https://qr-test.ksef.mf.gov.pl", "https://qr-test.ksef.mf.gov.pl"),
])
def test_qr_base(env, base):
    assert qr.qr_base(env) == base


def test_qr_base_from_environment_object():
    class Env:
        qr_url = "http://127.0.0.1:9999/qr"
    assert qr.invoice_url(Env(), SEAL_NIP, "2026-01-01", invoice_hash=RAW_HASH).startswith(
        "http://127.0.0.1:9999/qr/invoice/")


@pytest.mark.parametrize("env", ["staging", "", None, "ftp://example.org/qr", "https://x.pl/qr?x=1"])
def test_qr_base_errors(env):
    with pytest.raises(qr.QrError) as excinfo:
        qr.qr_base(env)
    assert excinfo.value.params["field"] == "env"


def test_invoice_url_normalises_inputs():
    aware = datetime.datetime(2026, 1, 31, 23, 30, tzinfo=datetime.timezone.utc)  # 1 Feb in Warsaw
    assert qr.invoice_url("test", "PL 111-111-11-11", aware, invoice_hash=RAW_HASH) == EXAMPLE_URL
    assert qr.invoice_url("test", "1111111111", "01-02-2026", invoice_hash=RAW_HASH) == EXAMPLE_URL


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"seller_nip": "123"}, "seller_nip"),
    ({"issue_date": "2026-02-30"}, "issue_date"),
    ({"issue_date": 20260201}, "issue_date"),
    ({"invoice_hash": "abc"}, "invoice_hash"),
    ({"invoice_hash": b"\x00" * 31}, "invoice_hash"),
    ({"invoice_hash": None}, "invoice_hash"),
    ({"invoice_xml_bytes": b"<a/>"}, "invoice_hash"),  # both given
    ({"invoice_hash": None, "invoice_xml_bytes": "<a/>"}, "invoice_xml_bytes"),  # text, not bytes
])
def test_invoice_url_errors(kwargs, field):
    args = {"base": "test", "seller_nip": "1111111111", "issue_date": "2026-02-01", "invoice_hash": RAW_HASH}
    args.update(kwargs)
    with pytest.raises(qr.QrError) as excinfo:
        qr.invoice_url(**args)
    assert excinfo.value.params["field"] == field
    assert isinstance(excinfo.value, ValueError)


def test_parse_invoice_url():
    parts = qr.parse_invoice_url(EXAMPLE_URL)
    assert parts == {"base": "https://qr-test.ksef.mf.gov.pl", "seller_nip": "1111111111",
                     "issue_date": datetime.date(2026, 2, 1), "invoice_hash": RAW_HASH}
    with pytest.raises(qr.QrError):
        qr.parse_invoice_url(EXAMPLE_URL + "=")
    with pytest.raises(qr.QrError):
        qr.parse_invoice_url(EXAMPLE_URL.replace("01-02-2026", "31-02-2026"))


# --------------------------------------------------------------------------------------------
# KOD II
# --------------------------------------------------------------------------------------------

def _cert_url(cred, **kw):
    args = {"base": "test", "context_type": "Nip", "context_value": "1111111111", "seller_nip": "1111111111",
            "cert_serial_hex": "01F20A5D352AE590", "invoice_hash": EXAMPLE_HASH, "private_key": cred.key}
    args.update(kw)
    return qr.certificate_url(**args)


def test_kod2_rsa_pss_signature_independently_checked(rsa_offline):
    url = _cert_url(rsa_offline)
    assert url.startswith("https://" + EXAMPLE_SIGNED + "/")
    signature = crypto.b64url_decode(url.rsplit("/", 1)[1])
    assert len(signature) == 256
    # verify directly with cryptography over the exact string of DIGEST §14 (no ksef.qr code involved)
    rsa_offline.cert.public_key().verify(
        signature, EXAMPLE_SIGNED.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    assert qr.verify_certificate_url(url, rsa_offline.cert)
    assert qr.verify_certificate_url(url, rsa_offline.cert.public_key())
    assert qr.verify_certificate_url(url, rsa_offline.cert_pem)


def test_kod2_ecdsa_raw_signature_independently_checked(ec_offline):
    url = _cert_url(ec_offline)
    signature = crypto.b64url_decode(url.rsplit("/", 1)[1])
    assert len(signature) == 64  # IEEE P1363 r||s
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    ec_offline.cert.public_key().verify(der, EXAMPLE_SIGNED.encode(), ec.ECDSA(hashes.SHA256()))
    assert qr.verify_certificate_url(url, ec_offline.cert)


def test_kod2_ecdsa_der_accepted(ec_offline):
    url = _cert_url(ec_offline, ecdsa_format="der")
    signature = crypto.b64url_decode(url.rsplit("/", 1)[1])
    assert signature[0] == 0x30
    assert qr.verify_certificate_url(url, ec_offline.cert)


@pytest.mark.parametrize("cred_name", ["rsa_offline", "ec_offline"])
def test_kod2_tampering_fails(request, cred_name, ec_seal, rsa_seal):
    cred = request.getfixturevalue(cred_name)
    url = _cert_url(cred)
    assert qr.verify_certificate_url(url, cred.cert)
    assert not qr.verify_certificate_url(url.replace("/Nip/1111111111/1111111111/", "/Nip/1111111111/5265877635/"),
                                         cred.cert)
    head, sig = url.rsplit("/", 1)
    flipped = ("A" if sig[5] != "A" else "B").join((sig[:5], sig[6:]))
    assert not qr.verify_certificate_url(head + "/" + flipped, cred.cert)
    assert not qr.verify_certificate_url(url.replace("qr-test.", "qr-demo."), cred.cert)
    other = rsa_seal if cred_name.startswith("rsa") else ec_seal
    assert not qr.verify_certificate_url(url, other.cert)
    assert not qr.verify_certificate_url(head, cred.cert)
    assert not qr.verify_certificate_url("not a url", cred.cert)


def test_kod2_sandbox_base_and_xml_input(ec_offline):
    data = b"<Faktura/>"
    url = qr.certificate_url("http://127.0.0.1:8765/qr", "InternalId", SEAL_NIP + "-00001", SEAL_NIP, 0x1F,
                             None, ec_offline.key_pem, invoice_xml_bytes=data)
    parts = qr.parse_certificate_url(url)
    assert parts["base"] == "http://127.0.0.1:8765/qr"
    assert parts["context_type"] == "InternalId"
    assert parts["context_value"] == SEAL_NIP + "-00001"
    assert parts["cert_serial"] == "000000000000001F"
    assert parts["invoice_hash"] == hashlib.sha256(data).digest()
    assert parts["signed_data"].startswith(b"127.0.0.1:8765/qr/certificate/InternalId/")
    assert qr.verify_certificate_url(url, ec_offline.cert)


def test_kod2_encrypted_pem_key(tmp_path, ec_offline):
    pem = crypto.private_key_pem(ec_offline.key, "secret")
    url = _cert_url(ec_offline, private_key=pem, password="secret")
    assert qr.verify_certificate_url(url, ec_offline.cert)


def test_kod2_key_requirements():
    small = crypto.generate_private_key("rsa", bits=1024)
    with pytest.raises(CredentialError) as excinfo:
        qr.certificate_url("test", "Nip", "1111111111", "1111111111", "01", RAW_HASH, small)
    assert excinfo.value.code == "key_too_small"
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(CredentialError) as excinfo:
        qr.certificate_url("test", "Nip", "1111111111", "1111111111", "01", RAW_HASH, p384)
    assert excinfo.value.code == "key_unsupported"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"context_type": "Pesel"}, "context_type"),
    ({"context_value": "12345"}, "context_value"),
    ({"context_type": "PeppolId", "context_value": "PAB12345"}, "context_value"),
    ({"cert_serial_hex": "XYZ"}, "cert_serial_hex"),
    ({"seller_nip": "11111111"}, "seller_nip"),
])
def test_kod2_input_errors(ec_offline, kwargs, field):
    with pytest.raises(qr.QrError) as excinfo:
        _cert_url(ec_offline, **kwargs)
    assert excinfo.value.params["field"] == field


# --------------------------------------------------------------------------------------------
# MF reference images (spec bundle): decode them and rebuild the same links
# --------------------------------------------------------------------------------------------

def _zbar(path):
    result = subprocess.run([ZBARIMG, "--raw", "-q", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    return result.stdout.strip()


@needs_zbar
def test_mf_reference_images_match_our_format(spec_dir):
    images = spec_dir / "reference" / "images"
    for name in ("qr-offline.png", "qr-ksef.png"):
        url = _zbar(images / name)
        parts = qr.parse_invoice_url(url)
        assert qr.invoice_url(parts["base"], parts["seller_nip"], parts["issue_date"],
                              invoice_hash=parts["invoice_hash"]) == url == EXAMPLE_URL
    cert_url = _zbar(images / "qr-cert.png")
    parts = qr.parse_certificate_url(cert_url)
    assert parts["signed_data"] == EXAMPLE_SIGNED.encode()
    assert len(parts["signature"]) == 256  # MF's example was signed with RSA-2048 (PSS)
    assert parts["invoice_hash"] == RAW_HASH


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _format_info(matrix, border):
    """Error-correction level read from the format information next to the top-left finder (ISO/IEC 18004
    §7.9): 15 bits in column 8, checked against the BCH(15,5) code so a misread cannot pass."""
    bits = 0
    rows = [0, 1, 2, 3, 4, 5, 7, 8]
    for i, row in enumerate(rows):
        bits |= int(matrix[border + row][border + 8]) << i
    for i in range(8, 15):
        bits |= int(matrix[border + len(matrix) - 2 * border - 15 + i][border + 8]) << i
    valid = {}
    for data in range(32):
        rem = data << 10
        for shift in range(4, -1, -1):
            if rem & (1 << (shift + 10)):
                rem ^= 0b10100110111 << shift
        valid[((data << 10) | rem) ^ 0b101010000010010] = data
    assert bits in valid, "format information unreadable"
    return {0b01: "L", 0b00: "M", 0b11: "Q", 0b10: "H"}[valid[bits] >> 3]


@pytest.mark.parametrize("cred_name", ["rsa_offline", "ec_offline"])
def test_matrix_error_correction_and_version(request, cred_name):
    url = _cert_url(request.getfixturevalue(cred_name))
    matrix = qr.qr_matrix(url, border=4)
    assert _format_info(matrix, 4) == qr.ERROR_CORRECTION == "M"
    version = (len(matrix) - 8 - 17) // 4
    assert version <= (17 if cred_name == "rsa_offline" else 11)
    assert _format_info(qr.qr_matrix(EXAMPLE_URL, border=0), 0) == "M"


def test_render_png_sizes_and_label():
    matrix = qr.qr_matrix(EXAMPLE_URL)
    n = len(matrix)
    plain = Image.open(io.BytesIO(qr.render_png(EXAMPLE_URL, box_size=5)))
    assert plain.format == "PNG"
    assert plain.size == (n * 5, n * 5)
    labelled = Image.open(io.BytesIO(qr.render_png(EXAMPLE_URL, qr.LABEL_OFFLINE, box_size=5)))
    assert labelled.width == n * 5
    assert n * 5 + 12 <= labelled.height <= n * 5 + 80
    strip = labelled.convert("L").crop((0, n * 5, labelled.width, labelled.height))
    left, top, right, bottom = strip.point(lambda v: 255 if v < 128 else 0).getbbox()
    assert abs((left + right) / 2 - labelled.width / 2) <= 3  # centred
    assert bottom - top >= 8  # readable height
    # modules are drawn exactly: the top-left finder pattern is dark at the quiet zone's edge
    px = plain.convert("L")
    assert px.getpixel((4 * 5, 4 * 5)) == 0 and px.getpixel((4 * 5 - 1, 4 * 5 - 1)) == 255


def test_render_png_deterministic():
    assert qr.render_png(EXAMPLE_URL, KSEF_NUMBER) == qr.render_png(EXAMPLE_URL, KSEF_NUMBER)
    assert qr.render_svg(EXAMPLE_URL, KSEF_NUMBER) == qr.render_svg(EXAMPLE_URL, KSEF_NUMBER)


@pytest.mark.parametrize("system_font", [True, False])
def test_long_label_fits(monkeypatch, system_font):
    if not system_font:
        monkeypatch.setattr(qr, "find_font_path", lambda: None)
    elif qr.find_font_path() is None:
        pytest.skip("no DejaVu/Liberation/Arial TrueType font on this machine")
    image = Image.open(io.BytesIO(qr.render_png(EXAMPLE_URL, KSEF_NUMBER, box_size=4))).convert("L")
    n = len(qr.qr_matrix(EXAMPLE_URL))
    strip = image.crop((0, n * 4, image.width, image.height)).point(lambda v: 255 if v < 160 else 0)
    left, _top, right, _bottom = strip.getbbox()
    assert left > 0 and right < image.width
    assert right - left > image.width // 2


def test_render_png_without_system_font(monkeypatch):
    monkeypatch.setattr(qr, "find_font_path", lambda: None)
    image = Image.open(io.BytesIO(qr.render_png(EXAMPLE_URL, qr.LABEL_CERTIFICATE))).convert("L")
    n = len(qr.qr_matrix(EXAMPLE_URL))
    strip = image.crop((0, n * qr.DEFAULT_BOX_SIZE, image.width, image.height))
    box = strip.point(lambda v: 255 if v < 128 else 0).getbbox()
    # legible: the ~6 px capitals of an old Pillow bitmap font are scaled up; Pillow >= 10.1 draws its own
    # scalable font at the TrueType size
    assert box is not None and box[3] - box[1] >= 9


@pytest.mark.parametrize("kwargs", [{"box_size": 0}, {"box_size": 2.5}, {"border": -1}])
def test_render_png_bad_arguments(kwargs):
    with pytest.raises(qr.QrError):
        qr.render_png(EXAMPLE_URL, **kwargs)


def test_render_svg():
    svg = etree.fromstring(qr.render_svg(EXAMPLE_URL, 'A<B & "C"'))
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    texts = svg.findall("s:text", ns)
    assert len(texts) == 1 and texts[0].text == 'A<B & "C"'
    assert texts[0].get("text-anchor") == "middle"
    n = len(qr.qr_matrix(EXAMPLE_URL))
    assert svg.get("viewBox") == "0 0 %d %d" % (n, n + 3)
    path = svg.find("s:path", ns).get("d")
    dark = sum(sum(row) for row in qr.qr_matrix(EXAMPLE_URL))
    assert sum(int(seg.split("h")[1].split("v")[0]) for seg in path.split("M")[1:]) == dark
    plain = etree.fromstring(qr.render_svg(EXAMPLE_URL))
    assert plain.find("s:text", ns) is None


@needs_zbar
@pytest.mark.parametrize("label", [None, qr.LABEL_OFFLINE, KSEF_NUMBER])
def test_png_decodes_to_exact_url(tmp_path, label):
    path = tmp_path / "kod1.png"
    path.write_bytes(qr.render_png(EXAMPLE_URL, label))
    assert _zbar(path) == EXAMPLE_URL


@needs_zbar
@pytest.mark.parametrize("cred_name", ["rsa_offline", "ec_offline"])
def test_kod2_png_decodes_and_verifies(tmp_path, request, cred_name):
    cred = request.getfixturevalue(cred_name)
    url = _cert_url(cred)
    path = tmp_path / "kod2.png"
    path.write_bytes(qr.render_png(url, qr.LABEL_CERTIFICATE, box_size=3))
    decoded = _zbar(path)
    assert decoded == url
    assert qr.verify_certificate_url(decoded, cred.cert)


@needs_zbar
@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="rsvg-convert not installed (librsvg2-bin)")
def test_svg_decodes_to_exact_url(tmp_path):
    svg, png = tmp_path / "kod1.svg", tmp_path / "kod1.png"
    svg.write_bytes(qr.render_svg(EXAMPLE_URL, qr.LABEL_OFFLINE))
    subprocess.run(["rsvg-convert", "-o", str(png), str(svg)], check=True, timeout=60)
    assert _zbar(png) == EXAMPLE_URL


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def test_cli_invoice(tmp_path, capsys):
    png, svg = tmp_path / "k.png", tmp_path / "k.svg"
    assert main(["qr", "invoice", "--nip", "1111111111", "--date", "2026-02-01", "--hash", EXAMPLE_HASH,
                 "--png", str(png), "--svg", str(svg)]) == 0
    assert capsys.readouterr().out.strip() == EXAMPLE_URL
    assert Image.open(png).format == "PNG"
    assert b">OFFLINE</text>" in svg.read_bytes()
    xml = tmp_path / "invoice.xml"
    xml.write_bytes(b"<Faktura/>")
    assert main(["qr", "invoice", "--nip", SEAL_NIP, "--date", "2026-02-01", "--xml", str(xml), "--env",
                 "http://127.0.0.1:8765/qr"]) == 0
    assert capsys.readouterr().out.strip() == (
        "http://127.0.0.1:8765/qr/invoice/5265877635/01-02-2026/" + crypto.sha256_b64url(b"<Faktura/>"))


def test_cli_certificate_and_verify(tmp_path, capsys, ec_offline, rsa_seal):
    key_path, cert_path = ec_offline.write(tmp_path, "offline", password="pw")
    args = ["qr", "certificate", "--context-type", "Nip", "--context-value", SEAL_NIP, "--nip", SEAL_NIP,
            "--serial", "01F20A5D352AE590", "--hash", EXAMPLE_HASH, "--key", str(key_path), "--password", "pw",
            "--env", "demo", "--png", str(tmp_path / "c.png")]
    assert main(args) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("https://qr-demo.ksef.mf.gov.pl/certificate/Nip/5265877635/5265877635/01F20A5D352AE590/")
    assert qr.verify_certificate_url(url, ec_offline.cert)
    assert (tmp_path / "c.png").stat().st_size > 500
    assert main(["qr", "verify", url, "--cert", str(cert_path)]) == 0
    assert "valid" in capsys.readouterr().out
    _other_key, other_cert = rsa_seal.write(tmp_path, "other")
    assert main(["qr", "verify", url, "--cert", str(other_cert)]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main(["qr", "invoice", "--nip", "1111111111", "--date", "2026-02-01", "--xml",
                 str(tmp_path / "missing.xml")]) == 1
    assert "missing.xml" in capsys.readouterr().err
    assert main(["qr", "invoice", "--nip", "1111111111", "--date", "2026-02-01", "--hash", "abc"]) == 1
    assert "invoice_hash" in capsys.readouterr().err
