"""KSeF verification QR codes (DIGEST §14): KOD I (invoice) and KOD II (issuer certificate, offline only).

* KOD I:  ``{base}/invoice/{sellerNip}/{DD-MM-YYYY}/{Base64URL(SHA-256(invoice file))}``
* KOD II: ``{base}/certificate/{ContextType}/{ContextValue}/{sellerNip}/{certSerialHex}/{hashB64Url}/{signature}``
  where ``signature`` = Base64URL(sign(UTF-8 of the URL without its scheme ``https://`` and without the
  trailing ``/signature``)), RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) for RSA ≥ 2048 bit or ECDSA
  P-256/SHA-256 as IEEE P1363 ``r‖s`` (64 bytes). The key is that of a KSeF certificate of type Offline.

Rendering (``render_png``/``render_svg``): ISO/IEC 18004 QR code, byte mode, error correction level
**M** (~15 % of codewords recoverable). M rather than MF's library default L because the codes are printed
on paper invoices (folds, toner gaps, smudges) and M still keeps the longest link, KOD II with an RSA-2048
signature (~470 characters), at version 17 (85 modules) and an ECDSA one (~220 characters) at version 11,
readable at the 210 pt size the MF visualiser uses; Q/H would push the RSA link past version 20 for little
practical gain. Output is deterministic: same input,
same bytes.
"""
import base64
import binascii
import datetime
import hashlib
import io
import logging
import os
import re
import urllib.parse
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from . import crypto
from .errors import CredentialError, KsefError

_logger = logging.getLogger(__name__)

QR_BASES = {
    "test": "https://qr-test.ksef.mf.gov.pl",
    "demo": "https://qr-demo.ksef.mf.gov.pl",
    "prod": "https://qr.ksef.mf.gov.pl",
}
_ALIASES = {"production": "prod", "prd": "prod", "te": "test", "tr": "demo"}

CONTEXT_TYPES = ("Nip", "InternalId", "NipVatUe", "PeppolId")
LABEL_OFFLINE = "OFFLINE"
LABEL_CERTIFICATE = "CERTYFIKAT"
PSS_SALT_LENGTH = 32
MIN_RSA_BITS = 2048

_NIP_RE = re.compile(r"\d{10}")
_SERIAL_RE = re.compile(r"[0-9A-F]{1,40}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


class QrError(KsefError, ValueError):
    """Bad input for a KSeF QR link (``params`` names the field)."""

    code = "qr_invalid"


def _bad(field, message, value=None, code="qr_invalid"):
    params = {"field": field}
    if value is not None:
        params["value"] = value if isinstance(value, (str, int)) else repr(value)[:80]
    raise QrError(message, code=code, params=params)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def qr_base(env_or_url):
    """QR base URL from an environment name (``test``/``demo``/``prod``), an object with ``qr_url``
    (e.g. a ``ksef.environments.Environment``) or any ``http(s)://`` URL (e.g. the local sandbox's
    ``http://127.0.0.1:PORT/qr``). No trailing slash."""
    qr_url = getattr(env_or_url, "qr_url", None)
    if qr_url:
        env_or_url = qr_url
    if not isinstance(env_or_url, str) or not env_or_url.strip():
        _bad("env", "a QR environment name or base URL is required", env_or_url)
    text = env_or_url.strip()
    name = _ALIASES.get(text.lower(), text.lower())
    if name in QR_BASES:
        return QR_BASES[name]
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
        _bad("env", "unknown QR environment %r (expected test, demo, prod or an http(s) URL)" % text, text)
    return text.rstrip("/")


def _nip(value, field="seller_nip"):
    text = re.sub(r"[\s-]", "", str(value or ""))
    if text.upper().startswith("PL"):
        text = text[2:]
    if not _NIP_RE.fullmatch(text):
        _bad(field, "%s must be a 10-digit NIP, got %r" % (field, value), value)
    return text


def _issue_date(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            from .calendar import WARSAW
            value = value.astimezone(WARSAW)
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        for fmt in ("%Y-%m-%d", "%d-%m-%Y"):
            try:
                return datetime.datetime.strptime(text, fmt).date()
            except ValueError:
                pass
    _bad("issue_date", "issue_date must be a date (YYYY-MM-DD), got %r" % (value,), value)


def hash_bytes(invoice_xml_bytes=None, invoice_hash=None):
    """The 32-byte SHA-256 of the invoice: computed from the file bytes, or decoded from ``invoice_hash``
    (raw 32 bytes, KSeF's standard Base64 ``invoiceHash`` or Base64URL)."""
    if invoice_xml_bytes is not None:
        if invoice_hash is not None:
            _bad("invoice_hash", "give either the invoice XML bytes or its hash, not both")
        if isinstance(invoice_xml_bytes, str):
            _bad("invoice_xml_bytes", "the invoice must be given as the exact bytes sent to KSeF, not text")
        return hashlib.sha256(bytes(invoice_xml_bytes)).digest()
    if invoice_hash is None:
        _bad("invoice_hash", "the invoice XML bytes or its SHA-256 hash is required")
    if isinstance(invoice_hash, (bytes, bytearray)) and len(invoice_hash) == 32:
        return bytes(invoice_hash)
    text = invoice_hash.decode("ascii", "replace") if isinstance(invoice_hash, (bytes, bytearray)) \
        else str(invoice_hash)
    text = text.strip()
    try:
        if re.fullmatch(r"[A-Za-z0-9+/]{43}=", text):
            raw = base64.b64decode(text, validate=True)
        elif re.fullmatch(r"[A-Za-z0-9_-]{43}=?", text):
            raw = base64.urlsafe_b64decode(text.rstrip("=") + "=")
        else:
            raw = b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        _bad("invoice_hash", "invoice_hash must be a SHA-256 digest (32 bytes, Base64 or Base64URL)", text[:60])
    return raw


# --------------------------------------------------------------------------------------------
# KOD I
# --------------------------------------------------------------------------------------------

def invoice_url(base, seller_nip, issue_date, invoice_xml_bytes=None, invoice_hash=None):
    """KOD I link: ``{base}/invoice/{nip}/{DD-MM-YYYY}/{Base64URL(SHA-256) without padding}``.

    ``base``: environment name or URL (see :func:`qr_base`); ``issue_date``: the invoice's P_1;
    the hash comes from ``invoice_xml_bytes`` (the exact file sent) or ``invoice_hash``.
    """
    digest = hash_bytes(invoice_xml_bytes, invoice_hash)
    return "%s/invoice/%s/%s/%s" % (qr_base(base), _nip(seller_nip), _issue_date(issue_date).strftime("%d-%m-%Y"),
                                    crypto.b64url_nopad(digest))


def parse_invoice_url(url):
    """Split a KOD I link into ``{base, seller_nip, issue_date (date), invoice_hash (32 bytes)}``;
    raises :class:`QrError` if it is not one."""
    m = re.fullmatch(r"(https?://[^?#]+?)/invoice/(\d{10})/(\d{2}-\d{2}-\d{4})/([A-Za-z0-9_-]{43})", str(url).strip())
    if not m:
        _bad("url", "not a KSeF invoice verification link", str(url)[:120])
    try:
        day = datetime.datetime.strptime(m.group(3), "%d-%m-%Y").date()
    except ValueError:
        _bad("url", "the issue date in the link is not a valid date", m.group(3))
    return {"base": m.group(1), "seller_nip": m.group(2), "issue_date": day,
            "invoice_hash": crypto.b64url_decode(m.group(4))}


# --------------------------------------------------------------------------------------------
# KOD II
# --------------------------------------------------------------------------------------------

def _context(context_type, context_value):
    if context_type not in CONTEXT_TYPES:
        _bad("context_type", "context_type must be one of %s, got %r" % (", ".join(CONTEXT_TYPES), context_type),
             context_type)
    from .xades import CONTEXT_PATTERNS
    value = str(context_value or "").strip()
    if not CONTEXT_PATTERNS[context_type].fullmatch(value):
        _bad("context_value", "invalid %s context identifier %r" % (context_type, value), value)
    return value


def _serial(value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = "%016X" % value
    text = re.sub(r"[\s:]", "", str(value or "")).upper()
    if not _SERIAL_RE.fullmatch(text):
        _bad("cert_serial_hex", "the certificate serial must be hexadecimal, got %r" % (value,), value)
    return text


def signed_part(url_without_signature):
    """The exact string KOD II signs: the link without its scheme (``https://``) and trailing slash."""
    return re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", url_without_signature.rstrip("/"))


def certificate_url(base, context_type, context_value, seller_nip, cert_serial_hex,  # noqa: PLR0917
                    invoice_hash, private_key, *, invoice_xml_bytes=None, password=None, ecdsa_format="p1363"):
    """KOD II link signed with the private key of a KSeF **Offline** certificate.

    ``invoice_hash``: raw 32 bytes, Base64 or Base64URL (or ``None`` with ``invoice_xml_bytes``);
    ``private_key``: a cryptography RSA (≥2048 bit) or EC P-256 key, or PEM/DER bytes (``password``
    if encrypted). RSA signs RSASSA-PSS/SHA-256/MGF1/salt 32; EC signs ECDSA/SHA-256 as raw ``r‖s``
    (``ecdsa_format="der"`` for ASN.1 DER, which KSeF also accepts).
    """
    digest = hash_bytes(invoice_xml_bytes, invoice_hash)
    context_value = _context(context_type, context_value)
    unsigned = "%s/certificate/%s/%s/%s/%s/%s" % (
        qr_base(base), context_type, context_value, _nip(seller_nip), _serial(cert_serial_hex),
        crypto.b64url_nopad(digest))
    if isinstance(private_key, (bytes, str)):
        private_key = crypto.load_private_key(private_key, password)
    signature = sign_data(signed_part(unsigned).encode("utf-8"), private_key, ecdsa_format=ecdsa_format)
    return "%s/%s" % (unsigned, crypto.b64url_nopad(signature))


def sign_data(data, private_key, *, ecdsa_format="p1363"):
    """Sign ``data`` the KOD II way (RSASSA-PSS SHA-256 salt 32, or ECDSA P-256 SHA-256)."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < MIN_RSA_BITS:
            raise CredentialError("RSA key too small for KOD II (%d bits, at least %d)"
                                  % (private_key.key_size, MIN_RSA_BITS), code="key_too_small",
                                  params={"bits": private_key.key_size})
        return private_key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                  salt_length=PSS_SALT_LENGTH), hashes.SHA256())
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise CredentialError("KOD II needs an EC key on curve P-256, got %s" % private_key.curve.name,
                                  code="key_unsupported", params={"curve": private_key.curve.name})
        der = private_key.sign(data, ec.ECDSA(hashes.SHA256()))
        if ecdsa_format == "der":
            return der
        if ecdsa_format != "p1363":
            _bad("ecdsa_format", "ecdsa_format must be 'p1363' or 'der'", ecdsa_format)
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise CredentialError("KOD II needs an RSA or EC P-256 private key", code="key_unsupported",
                          params={"type": type(private_key).__name__})


_CERT_URL_RE = re.compile(
    r"(https?://[^?#]+?)/certificate/(Nip|InternalId|NipVatUe|PeppolId)/([^/]+)/(\d{10})/([0-9A-Fa-f]+)"
    r"/([A-Za-z0-9_-]{43})/([A-Za-z0-9_-]+)")


def parse_certificate_url(url):
    """Split a KOD II link into ``{base, context_type, context_value, seller_nip, cert_serial,
    invoice_hash (32 bytes), signature (bytes), signed_data (bytes)}``; raises :class:`QrError`."""
    m = _CERT_URL_RE.fullmatch(str(url).strip())
    if not m:
        _bad("url", "not a KSeF certificate verification link", str(url)[:120])
    try:
        signature = crypto.b64url_decode(m.group(7))
    except (binascii.Error, ValueError):
        _bad("url", "the signature part is not Base64URL")
    unsigned = str(url).strip()[: -(len(m.group(7)) + 1)]
    return {"base": m.group(1), "context_type": m.group(2), "context_value": urllib.parse.unquote(m.group(3)),
            "seller_nip": m.group(4), "cert_serial": m.group(5).upper(),
            "invoice_hash": crypto.b64url_decode(m.group(6)), "signature": signature,
            "signed_data": signed_part(unsigned).encode("utf-8")}


def verify_certificate_url(url, public_key_or_cert):
    """Whether the KOD II link's signature verifies with the key (a public key, a certificate, or PEM/DER
    certificate bytes). RSA: PSS salt 32; EC: raw ``r‖s`` or DER. Malformed links give ``False``."""
    try:
        parts = parse_certificate_url(url)
    except QrError:
        return False
    key = public_key_or_cert
    if isinstance(key, (bytes, str)):
        key = crypto.load_certificate(key)
    if isinstance(key, x509.Certificate):
        key = key.public_key()
    data, signature = parts["signed_data"], parts["signature"]
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH),
                       hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(signature) == 2 * size:
                signature = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                                 int.from_bytes(signature[size:], "big"))
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

ERROR_CORRECTION = "M"
DEFAULT_BOX_SIZE = 6
DEFAULT_BORDER = 4

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
)


def qr_matrix(data, *, border=DEFAULT_BORDER):
    """The module matrix (list of rows of booleans, True = dark), quiet zone of ``border`` modules included."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    if not isinstance(data, str) or not data:
        _bad("url", "the QR content must be a non-empty string", data)
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        _bad("border", "border must be a non-negative integer", border)
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=border, box_size=1)
    code.add_data(data.encode("utf-8"), optimize=0)  # one byte-mode segment: simple and deterministic
    code.make(fit=True)
    return code.get_matrix()


def find_font_path():
    """A TrueType font for labels: ``KSEF_QR_FONT`` env var, then DejaVu Sans / Liberation Sans / Arial."""
    candidates = [os.environ.get("KSEF_QR_FONT")] if os.environ.get("KSEF_QR_FONT") else []
    for path in [*candidates, *_FONT_CANDIDATES]:
        if path and os.path.isfile(path):
            return path
    return None


def _label_image(label, width, box_size):
    """A white strip ``width`` px wide with ``label`` centred in black (Pillow "L" image)."""
    from PIL import Image, ImageDraw, ImageFont

    margin = max(2, box_size)
    path = find_font_path()

    def scalable_font(size):
        if path:
            return ImageFont.truetype(path, size)
        try:  # Pillow >= 10.1 ships a scalable default font
            font = ImageFont.load_default(size=size)
        except TypeError:  # older Pillow: a fixed bitmap font only
            return None
        return font if hasattr(font, "getmetrics") else None

    size = max(12, round(width / 20))
    font = scalable_font(size)
    if font is not None:
        while size > 8 and font.getlength(label) > width - 2 * margin:
            size -= 1
            font = scalable_font(size)
        left, top, right, bottom = font.getbbox(label)
        ascent, descent = font.getmetrics()
        height = ascent + descent + margin
        strip = Image.new("L", (width, height), 255)
        ImageDraw.Draw(strip).text(((width - (right - left)) // 2 - left, margin // 2), label, font=font, fill=0)
        return strip
    # Fallback: Pillow's built-in bitmap font (~6 px capitals), scaled up by an integer factor so that the
    # text is about as tall as the TrueType label would be (cap height ~ 0.75 x width / 20).
    font = ImageFont.load_default()
    left, top, right, bottom = font.getbbox(label)
    small = Image.new("L", (right - left + 2, bottom - top + 2), 255)
    ImageDraw.Draw(small).text((1 - left, 1 - top), label, font=font, fill=0)
    ink = small.point(lambda v: 255 if v < 128 else 0).getbbox()
    glyph_height = (ink[3] - ink[1]) if ink else small.height
    room = width - 2 * margin
    if small.width > room:  # too long even unscaled: shrink to fit (smoothly, to stay legible)
        big = small.resize((room, max(1, round(small.height * room / small.width))), Image.LANCZOS)
    else:
        factor = max(1, min(round(0.75 * width / 20 / glyph_height), room // small.width))
        big = small.resize((small.width * factor, small.height * factor), Image.NEAREST)
    strip = Image.new("L", (width, big.height + 2 * margin), 255)
    strip.paste(big, ((width - big.width) // 2, margin))
    return strip


def render_png(url, label=None, *, box_size=DEFAULT_BOX_SIZE, border=DEFAULT_BORDER):
    """PNG bytes of the QR code for ``url`` (``box_size`` px per module, ``border`` quiet-zone modules),
    with ``label`` (``OFFLINE``, the KSeF number or ``CERTYFIKAT``) centred underneath when given."""
    from PIL import Image

    if isinstance(box_size, bool) or not isinstance(box_size, int) or not 1 <= box_size <= 100:
        _bad("box_size", "box_size must be an integer between 1 and 100", box_size)
    matrix = qr_matrix(url, border=border)
    n = len(matrix)
    code = Image.frombytes("L", (n, n), bytes(0 if dark else 255 for row in matrix for dark in row))
    code = code.resize((n * box_size, n * box_size), Image.NEAREST)
    if label:
        strip = _label_image(str(label), code.width, box_size)
        image = Image.new("L", (code.width, code.height + strip.height), 255)
        image.paste(code, (0, 0))
        image.paste(strip, (0, code.height))
    else:
        image = code
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def render_svg(url, label=None, *, module_size=DEFAULT_BOX_SIZE, border=DEFAULT_BORDER):
    """SVG (UTF-8 bytes) of the QR code for ``url``, the label as a centred ``<text>`` element underneath.
    Coordinates are in modules; ``module_size`` sets the width/height attributes in px."""
    if isinstance(module_size, bool) or not isinstance(module_size, (int, float)) or module_size <= 0:
        _bad("module_size", "module_size must be a positive number", module_size)
    matrix = qr_matrix(url, border=border)
    n = len(matrix)
    label_h = 3 if label else 0
    path = []
    for y, row in enumerate(matrix):
        x = 0
        while x < n:
            if row[x]:
                start = x
                while x < n and row[x]:
                    x += 1
                path.append("M%d %dh%dv1h-%dz" % (start, y, x - start, x - start))
            else:
                x += 1
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 %d %d" width="%s" height="%s">\n'
        % (n, n + label_h, _num(n * module_size), _num((n + label_h) * module_size)),
        '<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>\n' % (n, n + label_h),
        '<path fill="#000000" shape-rendering="crispEdges" d="%s"/>\n' % "".join(path),
    ]
    if label:
        size = min(2.0, (n - 2) / max(1, len(str(label))) / 0.6)
        parts.append('<text x="%s" y="%s" font-family="DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif" '
                     'font-size="%s" text-anchor="middle" fill="#000000">%s</text>\n'
                     % (_num(n / 2), _num(n + 2), _num(round(size, 2)), escape(str(label))))
    parts.append("</svg>\n")
    return "".join(parts).encode("utf-8")


def _num(value):
    return ("%.2f" % value).rstrip("0").rstrip(".")
