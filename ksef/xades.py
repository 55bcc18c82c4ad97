"""XAdES signatures for KSeF authentication (``POST /auth/xades-signature``), lxml + cryptography only.

* :func:`build_auth_token_request` builds the unsigned ``AuthTokenRequest`` document;
* :func:`sign` adds an enveloped XAdES-BES signature (``ds:Signature`` as the last child of the root);
* :func:`verify` checks an enveloped or enveloping XAdES signature the way KSeF accepts them and
  returns only the signed content (used by the local sandbox and by tests).

Signature layout produced by :func:`sign` (the same shape as MF's official clients): exclusive C14N 1.0
for ``SignedInfo`` and for both references; a reference ``URI=""`` with the enveloped-signature transform;
a reference to ``xades:SignedProperties`` (``Type=http://uri.etsi.org/01903#SignedProperties``);
``KeyInfo/X509Data`` with the signing certificate; ``SigningTime`` and ``SigningCertificate`` (CertDigest +
IssuerSerial). RSA keys sign with RSASSA-PKCS1-v1_5 (or RSASSA-PSS on request), EC keys with ECDSA, the
value being the raw ``r‖s`` concatenation required by XML-DSig 1.1.

Security of :func:`verify`: no DTD, no entity expansion, no network; ids must be unique; exactly one
top-level signature; the returned ``root`` is re-parsed from the exact octets that were digested, so a
caller can only ever read data covered by the signature (signature-wrapping resistant).
"""
import base64
import binascii
import datetime
import hashlib
import hmac
import logging
import re
import uuid
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from lxml import etree

from . import crypto
from .errors import CredentialError, KsefError, SignatureError

_logger = logging.getLogger(__name__)
_BACKEND = default_backend()

# --------------------------------------------------------------------------------------------
# Namespaces and algorithm identifiers
# --------------------------------------------------------------------------------------------

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
XADES_NAMESPACES = (XADES_NS, "http://uri.etsi.org/01903/v1.4.1#", "http://uri.etsi.org/01903/v1.1.1#")
AUTH_NAMESPACES = {
    "2.0": "http://ksef.mf.gov.pl/auth/token/2.0",
    "2.1": "http://ksef.mf.gov.pl/auth/token/2.1",
}
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"

C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_WITH_COMMENTS = C14N + "#WithComments"
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
C14N11_WITH_COMMENTS = C14N11 + "#WithComments"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_WITH_COMMENTS = EXC_C14N + "WithComments"
TRANSFORM_ENVELOPED = DSIG_NS + "enveloped-signature"
TRANSFORM_XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
TRANSFORM_XPATH_FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
TRANSFORM_BASE64 = DSIG_NS + "base64"

# algorithm URI -> (exclusive, with_comments). C14N 1.1 differs from 1.0 only in xml:id/xml:base
# inheritance on document subsets, which KSeF documents do not use: it is canonicalised as 1.0.
_C14N_METHODS = {
    C14N: (False, False),
    C14N_WITH_COMMENTS: (False, True),
    C14N11: (False, False),
    C14N11_WITH_COMMENTS: (False, True),
    EXC_C14N: (True, False),
    EXC_C14N_WITH_COMMENTS: (True, True),
}

_SHA3 = hasattr(hashes, "SHA3_256")

DIGEST_METHODS = {
    DSIG_NS + "sha1": hashes.SHA1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashes.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashes.SHA512,
}
if _SHA3:
    DIGEST_METHODS.update({
        "http://www.w3.org/2007/05/xmldsig-more#sha3-256": hashes.SHA3_256,
        "http://www.w3.org/2007/05/xmldsig-more#sha3-384": hashes.SHA3_384,
        "http://www.w3.org/2007/05/xmldsig-more#sha3-512": hashes.SHA3_512,
    })

_DIGEST_NAMES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
if _SHA3:
    _DIGEST_NAMES.update({"sha3-256": hashes.SHA3_256, "sha3-384": hashes.SHA3_384, "sha3-512": hashes.SHA3_512})

_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
_MORE07 = "http://www.w3.org/2007/05/xmldsig-more#"
_MORE21 = "http://www.w3.org/2021/04/xmldsig-more#"

# algorithm URI -> (kind, hash class); kind is "rsa" (PKCS#1 v1.5), "rsa-pss" (MGF1, salt = hash length)
# or "ecdsa" (value = raw r||s).
SIGNATURE_METHODS = {
    DSIG_NS + "rsa-sha1": ("rsa", hashes.SHA1),
    _MORE + "rsa-sha256": ("rsa", hashes.SHA256),
    _MORE + "rsa-sha384": ("rsa", hashes.SHA384),
    _MORE + "rsa-sha512": ("rsa", hashes.SHA512),
    _MORE07 + "sha1-rsa-MGF1": ("rsa-pss", hashes.SHA1),
    _MORE07 + "sha256-rsa-MGF1": ("rsa-pss", hashes.SHA256),
    _MORE07 + "sha384-rsa-MGF1": ("rsa-pss", hashes.SHA384),
    _MORE07 + "sha512-rsa-MGF1": ("rsa-pss", hashes.SHA512),
    _MORE + "ecdsa-sha1": ("ecdsa", hashes.SHA1),
    _MORE + "ecdsa-sha256": ("ecdsa", hashes.SHA256),
    _MORE + "ecdsa-sha384": ("ecdsa", hashes.SHA384),
    _MORE + "ecdsa-sha512": ("ecdsa", hashes.SHA512),
}
if _SHA3:
    SIGNATURE_METHODS.update({
        _MORE07 + "sha3-256-rsa-MGF1": ("rsa-pss", hashes.SHA3_256),
        _MORE07 + "sha3-384-rsa-MGF1": ("rsa-pss", hashes.SHA3_384),
        _MORE07 + "sha3-512-rsa-MGF1": ("rsa-pss", hashes.SHA3_512),
        _MORE21 + "ecdsa-sha3-256": ("ecdsa", hashes.SHA3_256),
        _MORE21 + "ecdsa-sha3-384": ("ecdsa", hashes.SHA3_384),
        _MORE21 + "ecdsa-sha3-512": ("ecdsa", hashes.SHA3_512),
    })

RSA_PSS_SHA256 = _MORE07 + "sha256-rsa-MGF1"
RSA_SHA256 = _MORE + "rsa-sha256"
ECDSA_SHA256 = _MORE + "ecdsa-sha256"

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256

# Suggested KSeF exceptionCode (HTTP 400 of /auth/xades-signature) for each SignatureError code.
KSEF_EXCEPTION_CODES = {
    "bad_document": 9101,
    "no_signature": 9102,
    "too_many_signatures": 9103,
    "bad_signature": 9105,
    "detached_not_allowed": 9105,
    "unsupported_algorithm": 9105,
}

CONTEXT_TYPES = ("Nip", "InternalId", "NipVatUe", "PeppolId")
SUBJECT_IDENTIFIER_TYPES = ("certificateSubject", "certificateFingerprint")

_NIP = r"[1-9]((\d[1-9])|([1-9]\d))\d{7}"
_VAT_UE = (r"((AT)(U\d{8})|(BE)([01]\d{9})|(BG)(\d{9,10})|(CY)(\d{8}[A-Z])|(CZ)(\d{8,10})|(DE)(\d{9})"
           r"|(DK)(\d{8})|(EE)(\d{9})|(EL)(\d{9})|(ES)([A-Z]\d{8}|\d{8}[A-Z]|[A-Z]\d{7}[A-Z])|(FI)(\d{8})"
           r"|(FR)[A-Z0-9]{2}\d{9}|(HR)(\d{11})|(HU)(\d{8})|(IE)(\d{7}[A-Z]{2}|\d[A-Z0-9+*]\d{5}[A-Z])"
           r"|(IT)(\d{11})|(LT)(\d{9}|\d{12})|(LU)(\d{8})|(LV)(\d{11})|(MT)(\d{8})|(NL)([A-Z0-9+*]{12})"
           r"|(PT)(\d{9})|(RO)(\d{2,10})|(SE)(\d{12})|(SI)(\d{8})|(SK)(\d{10})|(XI)((\d{9}|(\d{12}))|(GD|HA)(\d{3})))")
# Same patterns as the auth XSD (the XSD's NipVatUe/PeppolId patterns carry stray ^/$ that XSD engines
# read as literal characters; KSeF reads them as anchors, which is what is implemented here).
CONTEXT_PATTERNS = {
    "Nip": re.compile(_NIP),
    "InternalId": re.compile(_NIP + r"-\d{5}"),
    "NipVatUe": re.compile(_NIP + "-" + _VAT_UE),
    "PeppolId": re.compile(r"P[A-Z]{2}[0-9]{6}"),
}
CHALLENGE_RE = re.compile(r"\d{8}-CR-[A-F0-9]{10}-[A-F0-9]{10}-[A-F0-9]{2}")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4 = r"(%s\.){3}%s" % (_OCTET, _OCTET)
_ALLOWED_IPS = {
    # JSON name (as in the REST API's authorizationPolicy.allowedIps) -> (XML element, pattern)
    "ip4Addresses": ("Ip4Address", re.compile(_IP4)),
    "ip4Ranges": ("Ip4Range", re.compile(_IP4 + "-" + _IP4)),
    "ip4Masks": ("Ip4Mask", re.compile(_IP4 + r"/(0|[1-9]|[12][0-9]|3[0-2])")),
}
MAX_ALLOWED_IPS = 10


class AuthRequestError(KsefError, ValueError):
    """An input of the AuthTokenRequest document is invalid (``params`` says which and why)."""

    code = "auth_request_invalid"


def _ds(tag):
    return "{%s}%s" % (DSIG_NS, tag)


def _xades(tag):
    return "{%s}%s" % (XADES_NS, tag)


# --------------------------------------------------------------------------------------------
# AuthTokenRequest
# --------------------------------------------------------------------------------------------

def build_auth_token_request(challenge, context_type, context_value,  # noqa: PLR0917
                             subject_identifier_type="certificateSubject", allowed_ips=None, version="2.1"):
    """Return the unsigned ``AuthTokenRequest`` XML (UTF-8 bytes) for XAdES authentication.

    ``context_type``: ``Nip``, ``InternalId``, ``NipVatUe`` or ``PeppolId``; ``allowed_ips``: optional dict
    ``{"ip4Addresses": [...], "ip4Ranges": ["a-b"], "ip4Masks": ["x/nn"]}`` (≤10 each) restricting where
    the access token may be used. ``version``: ``"2.1"`` (default) or ``"2.0"``.
    Raises :class:`AuthRequestError` (a ``ValueError``) naming the bad field.
    """
    ns = AUTH_NAMESPACES.get(str(version))
    if ns is None:
        raise AuthRequestError("unknown AuthTokenRequest version %r (expected 2.0 or 2.1)" % (version,),
                               code="auth_request_version", params={"field": "version", "value": version})
    challenge = (challenge or "").strip() if isinstance(challenge, str) else challenge
    if not isinstance(challenge, str) or not CHALLENGE_RE.fullmatch(challenge):
        raise AuthRequestError("invalid challenge %r (expected YYYYMMDD-CR-XXXXXXXXXX-XXXXXXXXXX-XX)" % (challenge,),
                               code="auth_request_challenge", params={"field": "challenge", "value": challenge})
    if context_type not in CONTEXT_TYPES:
        raise AuthRequestError("unknown context type %r (expected one of %s)"
                               % (context_type, ", ".join(CONTEXT_TYPES)), code="auth_request_context_type",
                               params={"field": "context_type", "value": context_type})
    value = str(context_value or "").strip()
    if not CONTEXT_PATTERNS[context_type].fullmatch(value):
        raise AuthRequestError("invalid %s context identifier %r" % (context_type, value),
                               code="auth_request_context_value",
                               params={"field": "context_value", "context_type": context_type, "value": value})
    if subject_identifier_type not in SUBJECT_IDENTIFIER_TYPES:
        raise AuthRequestError("unknown subject identifier type %r (expected %s)" % (
            subject_identifier_type, " or ".join(SUBJECT_IDENTIFIER_TYPES)),
            code="auth_request_subject_type",
            params={"field": "subject_identifier_type", "value": subject_identifier_type})
    ips = _check_allowed_ips(allowed_ips)

    def q(tag):
        return "{%s}%s" % (ns, tag)

    root = etree.Element(q("AuthTokenRequest"), nsmap={None: ns})
    etree.SubElement(root, q("Challenge")).text = challenge
    ctx = etree.SubElement(root, q("ContextIdentifier"))
    etree.SubElement(ctx, q(context_type)).text = value
    etree.SubElement(root, q("SubjectIdentifierType")).text = subject_identifier_type
    if ips:
        allowed = etree.SubElement(etree.SubElement(root, q("AuthorizationPolicy")), q("AllowedIps"))
        for key, (tag, _pattern) in _ALLOWED_IPS.items():
            for item in ips.get(key, ()):
                etree.SubElement(allowed, q(tag)).text = item
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _check_allowed_ips(allowed_ips):
    if not allowed_ips:
        return {}
    if not isinstance(allowed_ips, dict):
        raise AuthRequestError("allowed_ips must be a dict with ip4Addresses/ip4Ranges/ip4Masks lists",
                               code="auth_request_allowed_ips", params={"field": "allowed_ips"})
    unknown = sorted(set(allowed_ips) - set(_ALLOWED_IPS))
    if unknown:
        raise AuthRequestError("unknown allowed_ips key(s) %s (expected ip4Addresses, ip4Ranges, ip4Masks)"
                               % ", ".join(map(str, unknown)),
                               code="auth_request_allowed_ips", params={"field": "allowed_ips", "keys": unknown})
    result = {}
    for key, (_tag, pattern) in _ALLOWED_IPS.items():
        items = allowed_ips.get(key) or []
        if isinstance(items, str):
            items = [items]
        items = [str(i).strip() for i in items]
        if len(items) > MAX_ALLOWED_IPS:
            raise AuthRequestError("too many %s (%d, at most %d)" % (key, len(items), MAX_ALLOWED_IPS),
                                   code="auth_request_allowed_ips",
                                   params={"field": key, "count": len(items), "max": MAX_ALLOWED_IPS})
        for item in items:
            if not pattern.fullmatch(item):
                raise AuthRequestError("invalid %s entry %r" % (key, item), code="auth_request_allowed_ips",
                                       params={"field": key, "value": item})
        if items:
            result[key] = items
    return result


# --------------------------------------------------------------------------------------------
# Parsing and canonicalisation helpers (shared by sign and verify)
# --------------------------------------------------------------------------------------------

def _parser():
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=False, remove_comments=False, remove_pis=False,
                           collect_ids=False)


def _parse(data, *, what="document"):
    """Parse untrusted XML; DTDs (and so entities) are refused outright."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray)) or not data.strip():
        _fail("bad_document", "the %s is empty or not bytes" % what, reason="empty")
    data = bytes(data)
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        _fail("bad_document", "the %s contains a DTD, which is not allowed" % what, reason="dtd")
    try:
        root = etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        _fail("bad_document", "the %s is not well-formed XML: %s" % (what, _short(exc)), reason="not_well_formed")
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        _fail("bad_document", "the %s contains a DTD, which is not allowed" % what, reason="dtd")
    return tree


def _short(exc):
    return str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__


def _fail(code, message, **params):
    raise SignatureError(message, code=code, params=params)


def _c14n(node, exclusive, with_comments, prefixes=None):
    """Canonical octets of a whole document (``_ElementTree``: libxml2) or of an element subtree.

    Subtrees use :func:`c14n_subtree`: lxml canonicalises an element through a temporary "fake root"
    document, which renders wrong namespace declarations (spurious ``xmlns=""``) when a default
    namespace is redeclared below the root — exactly the layout of .NET-made (MF C# client) signatures.
    """
    if isinstance(node, etree._ElementTree):
        kwargs = {"method": "c14n", "exclusive": exclusive, "with_comments": with_comments}
        if exclusive and prefixes:
            kwargs["inclusive_ns_prefixes"] = list(prefixes)
        return etree.tostring(node, **kwargs)
    return c14n_subtree(node, exclusive=exclusive, with_comments=with_comments, prefixes=prefixes)


XML_NS = "http://www.w3.org/XML/1998/namespace"
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;",
                               "\r": "&#xD;"})


def c14n_subtree(element, *, exclusive=False, with_comments=False, prefixes=None):
    """Canonical XML 1.0 (inclusive) or Exclusive XML Canonicalization 1.0 of ``element`` and its
    descendants, as a document subset (XML-DSig same-document reference). ``prefixes``: the exclusive
    InclusiveNamespaces PrefixList (``#default`` = the default namespace). Returns UTF-8 bytes."""
    out = []
    inclusive_prefixes = {None if p == "#default" else p for p in (prefixes or ())} if exclusive else set()
    extra = {}
    if not exclusive:  # C14N 1.0: xml:* attributes are inherited by the apex of a subset
        for ancestor in element.iterancestors():
            for name, value in ancestor.attrib.items():
                if name.startswith("{%s}" % XML_NS) and name not in element.attrib:
                    extra.setdefault(name, value)
    _c14n_element(element, out, {}, None, (exclusive, with_comments, inclusive_prefixes), extra=extra)
    return "".join(out).encode("utf-8")


def _attr_qname(name, nsmap):
    if not name.startswith("{"):
        return name
    uri, local = name[1:].split("}", 1)
    if uri == XML_NS:
        return "xml:" + local
    candidates = sorted(p for p, u in nsmap.items() if p is not None and u == uri)
    if not candidates:
        raise SignatureError("attribute namespace without prefix", code="bad_document",
                             params={"reason": "attribute_namespace"})
    return "%s:%s" % (candidates[0], local)


def _c14n_element(el, out, rendered, parent_scope, opts, *, extra=None):
    """``rendered``: prefix -> URI of the declarations in effect in the output (exclusive mode);
    ``parent_scope``: the in-scope namespaces of the output parent (inclusive mode), ``None`` at the apex;
    ``opts``: ``(exclusive, with_comments, inclusive_prefixes)``; ``extra``: inherited xml:* attributes."""
    exclusive, with_comments, inclusive_prefixes = opts
    scope = {p: u for p, u in el.nsmap.items()}
    scope.setdefault(None, "")
    qname = "%s:%s" % (el.prefix, etree.QName(el).localname) if el.prefix else etree.QName(el).localname
    attrs = dict(el.attrib)
    if extra:
        attrs.update(extra)
    decls = {}
    if exclusive:
        used = {el.prefix}
        used.update(_attr_qname(n, scope).split(":", 1)[0] for n in attrs if n.startswith("{")
                    and not n.startswith("{%s}" % XML_NS))
        used.update(p for p in inclusive_prefixes if p in scope)
        for prefix in used:
            uri = scope.get(prefix, "")
            if rendered.get(prefix, "") != uri:
                decls[prefix] = uri
        if decls:
            rendered = {**rendered, **decls}
    else:
        parent = parent_scope or {}
        for prefix, uri in scope.items():
            # xmlns="" only undoes a non-empty default of the output parent
            if parent.get(prefix, "" if prefix is None else None) != uri:
                decls[prefix] = uri
    out.append("<" + qname)
    for prefix in sorted(decls, key=lambda p: p or ""):
        out.append(' %s="%s"' % ("xmlns:" + prefix if prefix else "xmlns", decls[prefix].translate(_ATTR_ESCAPES)))
    keyed = []
    for name, value in attrs.items():
        uri, local = (name[1:].split("}", 1) if name.startswith("{") else ("", name))
        keyed.append(((uri, local), _attr_qname(name, scope), value))
    for _key, name, value in sorted(keyed):
        out.append(' %s="%s"' % (name, value.translate(_ATTR_ESCAPES)))
    out.append(">")
    if el.text:
        out.append(el.text.translate(_TEXT_ESCAPES))
    for child in el:
        if child.tag is etree.Comment:
            if with_comments:
                out.append("<!--%s-->" % (child.text or ""))
        elif child.tag is etree.PI:
            out.append("<?%s%s?>" % (child.target, " " + child.text if child.text else ""))
        elif isinstance(child.tag, str):
            _c14n_element(child, out, rendered, scope, opts)
        else:
            raise SignatureError("unsupported node in signed data", code="bad_document",
                                 params={"reason": "entity_reference"})
        if child.tail:
            out.append(child.tail.translate(_TEXT_ESCAPES))
    out.append("</%s>" % qname)


def _detach(element):
    """Remove ``element`` from its parent, keeping its tail text (which belongs to the parent)."""
    parent = element.getparent()
    tail = element.tail
    if tail:
        prev = element.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _b64decode(text, what):
    compact = re.sub(r"\s+", "", text or "")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        _fail("bad_signature", "%s is not valid Base64" % what, reason="bad_base64", element=what)


def _hash(hash_cls, data):
    h = hashes.Hash(hash_cls(), backend=_BACKEND)
    h.update(data)
    return h.finalize()


# --------------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------------

def _digest_uri(hash_cls):
    for uri, cls in DIGEST_METHODS.items():
        if cls is hash_cls:
            return uri
    raise AssertionError(hash_cls)


def _resolve_signature_method(private_key, hash_cls, signature_algorithm):
    if signature_algorithm in SIGNATURE_METHODS:
        kind, method_hash = SIGNATURE_METHODS[signature_algorithm]
        uri = signature_algorithm
    else:
        if isinstance(private_key, rsa.RSAPrivateKey):
            default_kind = "rsa"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey):
            default_kind = "ecdsa"
        else:
            raise CredentialError("unsupported private key type %s (RSA or EC expected)"
                                  % type(private_key).__name__, code="key_unsupported")
        kind = {None: default_kind, "rsa": "rsa", "rsa-pkcs1": "rsa", "rsa-pss": "rsa-pss",
                "ecdsa": "ecdsa"}.get(signature_algorithm)
        if kind is None:
            _fail("unsupported_algorithm", "unknown signature algorithm %r" % (signature_algorithm,),
                  algorithm=signature_algorithm)
        method_hash = hash_cls
        uri = next((u for u, (k, h) in SIGNATURE_METHODS.items() if k == kind and h is hash_cls), None)
        if uri is None:
            _fail("unsupported_algorithm", "no %s signature method with this digest" % kind, algorithm=kind)
    needs = rsa.RSAPrivateKey if kind in ("rsa", "rsa-pss") else ec.EllipticCurvePrivateKey
    if not isinstance(private_key, needs):
        raise CredentialError("the signature algorithm %s does not match the private key type" % uri,
                              code="key_algorithm_mismatch", params={"algorithm": uri})
    return uri, kind, method_hash


def _raw_sign(private_key, kind, hash_cls, data):
    if kind == "rsa":
        return private_key.sign(data, padding.PKCS1v15(), hash_cls())
    if kind == "rsa-pss":
        return private_key.sign(data, padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls.digest_size),
                                hash_cls())
    der = private_key.sign(data, ec.ECDSA(hash_cls()))
    r, s = decode_dss_signature(der)
    size = (private_key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def format_signing_time(value=None):
    """xs:dateTime in UTC with a ``Z`` suffix, second precision (``2026-02-01T10:00:00Z``)."""
    value = value or datetime.datetime.now(datetime.timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(xml_bytes, private_key, certificate, *, digest="sha256", signature_algorithm=None, signing_time=None):
    """Sign ``xml_bytes`` with an enveloped XAdES-BES signature; return the signed document (UTF-8 bytes).

    ``private_key``/``certificate``: cryptography objects (or PEM/DER bytes of an unencrypted key and a
    certificate). ``digest``: ``sha256`` (default), ``sha384``, ``sha512``… used for the references, the
    certificate digest and the signature hash. ``signature_algorithm``: ``None`` (RSA → rsa-sha256 PKCS#1
    v1.5; EC → ecdsa), ``"rsa-pss"`` (RSASSA-PSS, MGF1, salt = hash length), ``"ecdsa"``, ``"rsa"``, or a
    SignatureMethod URI. ``signing_time``: aware datetime (default: now).
    """
    if isinstance(certificate, (bytes, str)):
        certificate = crypto.load_certificate(certificate)
    if isinstance(private_key, (bytes, str)):
        private_key = crypto.load_private_key(private_key)
    if not isinstance(certificate, x509.Certificate):
        raise CredentialError("certificate must be an X.509 certificate", code="certificate_unreadable")
    if not crypto.public_keys_equal(private_key.public_key(), certificate.public_key()):
        raise CredentialError("the private key does not match the certificate", code="key_mismatch")
    hash_cls = _DIGEST_NAMES.get(str(digest).lower().replace("_", "-"))
    if hash_cls is None:
        _fail("unsupported_algorithm", "unknown digest %r" % (digest,), algorithm=digest)
    method_uri, kind, method_hash = _resolve_signature_method(private_key, hash_cls, signature_algorithm)
    digest_uri = _digest_uri(hash_cls)

    tree = _parse(xml_bytes)
    root = tree.getroot()
    if root.tag == _ds("Signature") or next(root.iter(_ds("Signature")), None) is not None:
        _fail("too_many_signatures", "the document is already signed", reason="already_signed")

    suffix = uuid.uuid4().hex
    sig_id, props_id = "Signature-" + suffix, "SignedProperties-" + suffix
    sig = etree.SubElement(root, _ds("Signature"), {"Id": sig_id}, nsmap={"ds": DSIG_NS})
    signed_info = etree.SubElement(sig, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=method_uri)
    doc_ref = etree.SubElement(signed_info, _ds("Reference"), {"Id": "Reference-" + suffix, "URI": ""})
    transforms = etree.SubElement(doc_ref, _ds("Transforms"))
    etree.SubElement(transforms, _ds("Transform"), Algorithm=TRANSFORM_ENVELOPED)
    etree.SubElement(transforms, _ds("Transform"), Algorithm=EXC_C14N)
    etree.SubElement(doc_ref, _ds("DigestMethod"), Algorithm=digest_uri)
    doc_digest = etree.SubElement(doc_ref, _ds("DigestValue"))
    props_ref = etree.SubElement(signed_info, _ds("Reference"),
                                 {"Type": SIGNED_PROPERTIES_TYPE, "URI": "#" + props_id})
    etree.SubElement(etree.SubElement(props_ref, _ds("Transforms")), _ds("Transform"), Algorithm=EXC_C14N)
    etree.SubElement(props_ref, _ds("DigestMethod"), Algorithm=digest_uri)
    props_digest = etree.SubElement(props_ref, _ds("DigestValue"))
    sig_value = etree.SubElement(sig, _ds("SignatureValue"), Id="SignatureValue-" + suffix)
    x509_data = etree.SubElement(etree.SubElement(sig, _ds("KeyInfo")), _ds("X509Data"))
    etree.SubElement(x509_data, _ds("X509Certificate")).text = _b64(crypto.certificate_der(certificate))

    qualifying = etree.SubElement(etree.SubElement(sig, _ds("Object")), _xades("QualifyingProperties"),
                                  {"Target": "#" + sig_id}, nsmap={"xades": XADES_NS})
    props = etree.SubElement(qualifying, _xades("SignedProperties"), Id=props_id)
    sig_props = etree.SubElement(props, _xades("SignedSignatureProperties"))
    etree.SubElement(sig_props, _xades("SigningTime")).text = format_signing_time(signing_time)
    cert_el = etree.SubElement(etree.SubElement(sig_props, _xades("SigningCertificate")), _xades("Cert"))
    cert_digest = etree.SubElement(cert_el, _xades("CertDigest"))
    etree.SubElement(cert_digest, _ds("DigestMethod"), Algorithm=digest_uri)
    etree.SubElement(cert_digest, _ds("DigestValue")).text = _b64(
        _hash(hash_cls, crypto.certificate_der(certificate)))
    issuer_serial = etree.SubElement(cert_el, _xades("IssuerSerial"))
    etree.SubElement(issuer_serial, _ds("X509IssuerName")).text = certificate.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, _ds("X509SerialNumber")).text = str(certificate.serial_number)

    # Digests: the document without the signature (= enveloped transform), then the SignedProperties.
    doc_copy = _parse(etree.tostring(tree, encoding="UTF-8"))
    _detach(doc_copy.getroot()[-1])
    doc_digest.text = _b64(_hash(hash_cls, _c14n(doc_copy, True, False)))
    props_digest.text = _b64(_hash(hash_cls, _c14n(props, True, False)))
    sig_value.text = _b64(_raw_sign(private_key, kind, method_hash, _c14n(signed_info, True, False)))
    _logger.debug("XAdES signature created (%s, %s)", method_uri, digest_uri)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

@dataclass
class VerifiedSignature:
    """Result of :func:`verify`.

    ``root``: the signed document's root element, re-parsed from exactly the octets that the data
    reference digested (the signature itself is not in it); ``signed_bytes``: those octets;
    ``certificate``: the signing certificate (bound by XAdES SigningCertificate — NOT checked for trust,
    validity or revocation); ``signing_time``: aware UTC datetime or ``None``.
    """

    certificate: x509.Certificate
    root: object
    signing_time: object
    signature_method: str
    digest_method: str
    canonicalization_method: str = ""
    enveloping: bool = False
    signed_bytes: bytes = b""
    certificate_digest_method: str = ""
    references: list = field(default_factory=list)


@dataclass
class _Data:
    """Data flowing through a reference's transform chain: a node-set (a private copy of the
    document and an apex node) or octets."""

    tree: object = None
    apex: object = None  # None = the whole document
    comments: bool = False
    octets: bytes = None
    signature: object = None  # the verified ds:Signature element inside the copy


def _only(parent, tag, what, required=True):
    found = [c for c in parent if c.tag == tag]
    if len(found) > 1:
        _fail("bad_signature", "duplicate %s element" % what, reason="duplicate_element", element=what)
    if not found:
        if required:
            _fail("bad_signature", "missing %s element" % what, reason="missing_element", element=what)
        return None
    return found[0]


def _algorithm(el, what):
    alg = (el.get("Algorithm") or "").strip() if el is not None else ""
    if not alg:
        _fail("bad_signature", "%s has no Algorithm" % what, reason="missing_algorithm", element=what)
    return alg


def _find_by_id(tree, value):
    root = tree.getroot()
    hits = root.xpath("//*[@Id=$v or @ID=$v or @id=$v or @xml:id=$v]", v=value)
    if len(hits) > 1:
        _fail("bad_signature", "the id %r is not unique in the document" % value, reason="duplicate_id", id=value)
    if not hits:
        _fail("bad_signature", "no element with id %r" % value, reason="unresolved_reference", uri="#" + value)
    return hits[0]


_XPOINTER_ID = re.compile(r"""#xpointer\(id\((['"])([^'"]+)\1\)\)""")


def _dereference(uri, tree, data_bytes, signature):
    """Resolve a same-document URI to a fresh node-set. Returns ``(_Data, target element in the original)``.

    Comments are kept in the copy; they are dropped at canonicalisation unless both the URI (``#xpointer``)
    and the C14N algorithm (``#WithComments``) keep them."""
    if uri is None:
        _fail("detached_not_allowed", "a Reference without URI is not allowed", reason="no_uri")
    copy = _parse(data_bytes)
    if uri == "":
        target, with_comments, apex = tree.getroot(), False, None
    elif uri == "#xpointer(/)":
        target, with_comments, apex = tree.getroot(), True, None
    elif uri.startswith("#"):
        m = _XPOINTER_ID.fullmatch(uri)
        ident, with_comments = (m.group(2), True) if m else (uri[1:], False)
        if not ident or "(" in ident:
            _fail("unsupported_algorithm", "unsupported reference URI %r" % uri, reason="uri", uri=uri)
        target = _find_by_id(tree, ident)
        apex = target
    else:
        _fail("detached_not_allowed", "detached signatures (external reference %r) are not allowed" % uri,
              reason="external_reference", uri=uri)
    data = _Data(tree=copy, comments=with_comments, signature=_copy_node(copy, tree, signature))
    if apex is not None:
        data.apex = _copy_node(copy, tree, apex)
    return data, target


def _copy_node(copy, tree, node):
    """The node of ``copy`` (a re-parse of the same bytes) at the position of ``node`` in ``tree``."""
    index = next(i for i, n in enumerate(tree.getroot().iter()) if n is node)
    return next(n for i, n in enumerate(copy.getroot().iter()) if i == index)


def _apply_transforms(ref, data):
    transforms_el = _only(ref, _ds("Transforms"), "Transforms", required=False)
    transforms = list(transforms_el) if transforms_el is not None else []
    for tr in transforms:
        if tr.tag is etree.Comment or tr.tag is etree.PI:
            continue
        if tr.tag != _ds("Transform"):
            _fail("bad_signature", "unexpected element in Transforms", reason="bad_structure")
        alg = _algorithm(tr, "Transform")
        if alg in _C14N_METHODS:
            data = _to_octets(data, alg, _prefix_list(tr))
        elif alg == TRANSFORM_BASE64:
            text = data.octets.decode("utf-8", "replace") if data.octets is not None else "".join(
                (data.apex if data.apex is not None else data.tree.getroot()).itertext())
            data = _Data(octets=_b64decode(text, "base64-transformed data"))
        elif alg in (TRANSFORM_ENVELOPED, TRANSFORM_XPATH, TRANSFORM_XPATH_FILTER2):
            if data.octets is not None:
                _fail("unsupported_algorithm", "transform %s after canonicalisation is not supported" % alg,
                      algorithm=alg)
            sig_copy = data.signature
            if alg == TRANSFORM_ENVELOPED:
                victims = [sig_copy]
            elif alg == TRANSFORM_XPATH:
                victims = _xpath_not_signature(tr, data)
            else:
                victims = _xpath_filter2(tr, data, sig_copy)
            for victim in victims:
                if victim is data.apex or (data.apex is not None and victim in data.apex.iterancestors()):
                    _fail("bad_signature", "a transform removes the whole signed data", reason="empty_data")
                if victim.getparent() is not None:
                    _detach(victim)
        else:
            _fail("unsupported_algorithm", "unsupported transform %s" % alg, algorithm=alg)
    if data.octets is None:
        # node-set → octets with inclusive C14N 1.0 (XML-DSig default)
        data = _to_octets(data, C14N, ())
    return data


def _prefix_list(transform):
    inc = [c for c in transform if c.tag == "{%s}InclusiveNamespaces" % EXC_C14N]
    if not inc:
        return ()
    return tuple((inc[0].get("PrefixList") or "").split())


def _to_octets(data, alg, prefixes):
    if data.octets is not None:
        # octets → node-set → canonical octets (only reached if a document is canonicalised twice)
        data = _Data(tree=_parse(data.octets, what="transformed data"), comments=True)
    exclusive, with_comments = _C14N_METHODS[alg]
    node = data.apex if data.apex is not None else data.tree
    return _Data(octets=_c14n(node, exclusive, with_comments and data.comments, prefixes))


_NOT_SIGNATURE_XPATH = re.compile(r"\s*not\s*\(\s*ancestor-or-self::([A-Za-z_][\w.-]*):Signature\s*\)\s*")


def _xpath_not_signature(transform, data):
    xpath_el = _only(transform, _ds("XPath"), "XPath")
    m = _NOT_SIGNATURE_XPATH.fullmatch(xpath_el.text or "")
    if not m or xpath_el.nsmap.get(m.group(1)) != DSIG_NS:
        _fail("unsupported_algorithm", "unsupported XPath transform %r" % (xpath_el.text or "")[:100],
              algorithm=TRANSFORM_XPATH, expression=(xpath_el.text or "")[:100])
    return _top_level_signatures(data.tree.getroot())


_HERE_SIGNATURE = re.compile(r"\s*here\(\)\s*/\s*ancestor::([A-Za-z_][\w.-]*):Signature\s*\[\s*1\s*\]\s*")


def _xpath_filter2(transform, data, sig_copy):
    victims = []
    filters = [c for c in transform if c.tag == "{%s}XPath" % TRANSFORM_XPATH_FILTER2]
    if not filters:
        _fail("bad_signature", "XPath-Filter2 transform without XPath", reason="bad_structure")
    for el in filters:
        expr = el.text or ""
        if el.get("Filter") != "subtract":
            _fail("unsupported_algorithm", "only the 'subtract' XPath-Filter2 filter is supported",
                  algorithm=TRANSFORM_XPATH_FILTER2, filter=el.get("Filter"))
        m = _HERE_SIGNATURE.fullmatch(expr)
        if m and el.nsmap.get(m.group(1)) == DSIG_NS:
            victims.append(sig_copy)
            continue
        namespaces = {k: v for k, v in el.nsmap.items() if k}
        try:
            found = data.tree.xpath(expr, namespaces=namespaces)
        except etree.XPathError:
            _fail("unsupported_algorithm", "unsupported XPath-Filter2 expression %r" % expr[:100],
                  algorithm=TRANSFORM_XPATH_FILTER2, expression=expr[:100])
        if not isinstance(found, list) or not all(isinstance(n, etree._Element) for n in found):
            _fail("unsupported_algorithm", "XPath-Filter2 expression must select elements",
                  algorithm=TRANSFORM_XPATH_FILTER2, expression=expr[:100])
        victims.extend(found)
    return victims


def _top_level_signatures(root):
    return [s for s in root.iter(_ds("Signature"))
            if not any(a.tag == _ds("Signature") for a in s.iterancestors())]


def _load_signed_certificate(signature, props):
    """Return ``(certificate, digest method URI)`` bound by SigningCertificate(V2)."""
    key_info = _only(signature, _ds("KeyInfo"), "KeyInfo", required=False)
    certs = []
    if key_info is not None:
        for x509_data in key_info.iter(_ds("X509Data")):
            for cert_el in x509_data.iter(_ds("X509Certificate")):
                der = _b64decode(cert_el.text, "X509Certificate")
                try:
                    certs.append(x509.load_der_x509_certificate(der, _BACKEND))
                except ValueError:
                    _fail("bad_signature", "X509Certificate cannot be read", reason="bad_certificate")
    if not certs:
        _fail("bad_signature", "the signature carries no X509Certificate in KeyInfo", reason="no_certificate")
    ssp = None
    for ns in XADES_NAMESPACES:
        ssp = props.find("{%s}SignedSignatureProperties" % ns)
        if ssp is not None:
            break
    if ssp is None:
        _fail("bad_signature", "SignedProperties has no SignedSignatureProperties", reason="not_xades")
    signing_certs = [c for c in ssp if etree.QName(c).localname in ("SigningCertificate", "SigningCertificateV2")
                     and etree.QName(c).namespace in XADES_NAMESPACES]
    if len(signing_certs) != 1:
        _fail("bad_signature", "SignedSignatureProperties must contain one SigningCertificate",
              reason="no_signing_certificate")
    for cert_ref in signing_certs[0]:
        if etree.QName(cert_ref).localname != "Cert":
            continue
        cert_digest = next((c for c in cert_ref if etree.QName(c).localname == "CertDigest"), None)
        if cert_digest is None:
            continue
        method = _algorithm(_only(cert_digest, _ds("DigestMethod"), "CertDigest/DigestMethod"), "CertDigest")
        hash_cls = DIGEST_METHODS.get(method)
        if hash_cls is None:
            _fail("unsupported_algorithm", "unsupported CertDigest method %s" % method, algorithm=method)
        expected = _b64decode(_only(cert_digest, _ds("DigestValue"), "CertDigest/DigestValue").text,
                              "CertDigest/DigestValue")
        for cert in certs:
            if hmac.compare_digest(_hash(hash_cls, crypto.certificate_der(cert)), expected):
                serial = cert_ref.xpath("./*[local-name()='IssuerSerial']/*[local-name()='X509SerialNumber']")
                if serial and (serial[0].text or "").strip() != str(cert.serial_number):
                    _fail("bad_signature", "SigningCertificate IssuerSerial does not match the certificate",
                          reason="issuer_serial_mismatch")
                return cert, method
    _fail("bad_signature", "the KeyInfo certificate does not match the SigningCertificate digest",
          reason="certificate_digest_mismatch")


def _parse_xs_datetime(text):
    m = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?\s*", text or "")
    if not m:
        _fail("bad_signature", "SigningTime is not an xs:dateTime", reason="bad_signing_time")
    date_part, time_part, frac, tz = m.groups()
    value = "%sT%s.%s" % (date_part, time_part, (frac or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        _fail("bad_signature", "SigningTime is not a valid date/time", reason="bad_signing_time")
    if tz and tz != "Z":
        sign_ = 1 if tz[0] == "+" else -1
        offset = datetime.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        parsed = parsed.replace(tzinfo=datetime.timezone(sign_ * offset))
    else:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)  # no zone: read as UTC
    return parsed.astimezone(datetime.timezone.utc)


def _check_key(public_key, kind):
    if kind in ("rsa", "rsa-pss"):
        if not isinstance(public_key, rsa.RSAPublicKey):
            _fail("bad_signature", "the signature method needs an RSA key", reason="key_type_mismatch")
        if public_key.key_size < MIN_RSA_BITS:
            _fail("bad_signature", "RSA key too small (%d bits, at least %d)" % (public_key.key_size, MIN_RSA_BITS),
                  reason="weak_key", bits=public_key.key_size)
    else:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            _fail("bad_signature", "the signature method needs an EC key", reason="key_type_mismatch")
        if public_key.curve.key_size < MIN_EC_BITS:
            _fail("bad_signature", "EC curve too small (%d bits)" % public_key.curve.key_size,
                  reason="weak_key", bits=public_key.curve.key_size)


def _raw_verify(public_key, kind, hash_cls, signature, data):
    try:
        if kind == "rsa":
            public_key.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif kind == "rsa-pss":
            public_key.verify(signature, data, padding.PSS(mgf=padding.MGF1(hash_cls()),
                                                           salt_length=hash_cls.digest_size), hash_cls())
        else:
            size = (public_key.curve.key_size + 7) // 8
            if len(signature) == 2 * size:
                der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                           int.from_bytes(signature[size:], "big"))
            else:
                der = signature  # tolerated: ASN.1 DER instead of r||s
            public_key.verify(der, data, ec.ECDSA(hash_cls()))
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


def verify(xml_bytes):
    """Verify a XAdES signature the way KSeF accepts it and return :class:`VerifiedSignature`.

    Raises :class:`~ksef.errors.SignatureError` with ``code`` ``bad_document`` (not XML, DTD),
    ``no_signature``, ``too_many_signatures``, ``detached_not_allowed``, ``unsupported_algorithm`` or
    ``bad_signature`` (digest/signature/certificate binding failure; ``params["reason"]`` tells which).
    The certificate's trust, validity dates and revocation are NOT checked here.
    """
    if isinstance(xml_bytes, str):
        xml_bytes = xml_bytes.encode("utf-8")
    tree = _parse(xml_bytes)
    data_bytes = bytes(xml_bytes)
    root = tree.getroot()
    signatures = _top_level_signatures(root)
    if not signatures:
        _fail("no_signature", "the document has no ds:Signature")
    if len(signatures) > 1:
        _fail("too_many_signatures", "the document has %d signatures (exactly one allowed)" % len(signatures),
              count=len(signatures))
    signature = signatures[0]
    enveloping = signature is root

    signed_info = _only(signature, _ds("SignedInfo"), "SignedInfo")
    elements = [c for c in signature if isinstance(c.tag, str)]
    if not elements or elements[0] is not signed_info:
        _fail("bad_signature", "SignedInfo must be the first child of Signature", reason="bad_structure")
    sig_value_el = _only(signature, _ds("SignatureValue"), "SignatureValue")
    c14n_alg = _algorithm(_only(signed_info, _ds("CanonicalizationMethod"), "CanonicalizationMethod"),
                          "CanonicalizationMethod")
    if c14n_alg not in _C14N_METHODS:
        _fail("unsupported_algorithm", "unsupported CanonicalizationMethod %s" % c14n_alg, algorithm=c14n_alg)
    sig_method_el = _only(signed_info, _ds("SignatureMethod"), "SignatureMethod")
    sig_alg = _algorithm(sig_method_el, "SignatureMethod")
    if sig_alg not in SIGNATURE_METHODS:
        _fail("unsupported_algorithm", "unsupported SignatureMethod %s" % sig_alg, algorithm=sig_alg)
    if len(sig_method_el):
        _fail("unsupported_algorithm", "SignatureMethod parameters are not supported", algorithm=sig_alg)
    kind, sig_hash = SIGNATURE_METHODS[sig_alg]

    refs = [c for c in signed_info if c.tag == _ds("Reference")]
    if not refs:
        _fail("bad_signature", "SignedInfo has no Reference", reason="missing_element", element="Reference")
    for ref in refs:  # refuse detached references before doing any work
        uri = ref.get("URI")
        if uri is None or (uri and not uri.startswith("#")):
            _fail("detached_not_allowed", "detached signatures (reference %r) are not allowed" % uri,
                  reason="external_reference", uri=uri)

    props = None
    data_ref = None
    ref_infos = []
    for ref in refs:
        uri = ref.get("URI")
        data, target = _dereference(uri, tree, data_bytes, signature)
        digest_alg = _algorithm(_only(ref, _ds("DigestMethod"), "DigestMethod"), "DigestMethod")
        hash_cls = DIGEST_METHODS.get(digest_alg)
        if hash_cls is None:
            _fail("unsupported_algorithm", "unsupported DigestMethod %s" % digest_alg, algorithm=digest_alg)
        data = _apply_transforms(ref, data)
        expected = _b64decode(_only(ref, _ds("DigestValue"), "DigestValue").text, "DigestValue")
        if not hmac.compare_digest(_hash(hash_cls, data.octets), expected):
            _fail("bad_signature", "digest mismatch for reference %r" % uri, reason="digest_mismatch", uri=uri)
        is_props = (etree.QName(target).localname == "SignedProperties"
                    and etree.QName(target).namespace in XADES_NAMESPACES)
        if ref.get("Type") == SIGNED_PROPERTIES_TYPE and not is_props:
            _fail("bad_signature", "the SignedProperties reference does not point at SignedProperties",
                  reason="bad_signed_properties")
        ref_infos.append({"uri": uri, "digest_method": digest_alg, "type": ref.get("Type")})
        if is_props:
            if props is not None:
                _fail("bad_signature", "more than one SignedProperties reference", reason="bad_signed_properties")
            qp = target.getparent()
            if (qp is None or etree.QName(qp).localname != "QualifyingProperties"
                    or signature not in qp.iterancestors()
                    or (qp.get("Target") or "").lstrip("#") != (signature.get("Id") or "\0")):
                _fail("bad_signature", "SignedProperties is not part of this signature's QualifyingProperties",
                      reason="bad_signed_properties")
            props = target
        elif not enveloping and target is root:
            if data_ref is None:
                data_ref = (data, digest_alg)
        elif enveloping and target.tag == _ds("Object") and target.getparent() is signature:
            if data_ref is not None:
                _fail("bad_signature", "more than one signed Object in an enveloping signature",
                      reason="ambiguous_data")
            data_ref = (data, digest_alg)
        # other references (KeyInfo, parts of the document) are verified above but give no data
    if props is None:
        _fail("bad_signature", "not a XAdES signature: no reference to SignedProperties", reason="not_xades")
    if data_ref is None:
        _fail("bad_signature", "no reference covers the signed document", reason="document_not_covered")

    certificate, cert_digest_method = _load_signed_certificate(signature, props)
    public_key = certificate.public_key()
    _check_key(public_key, kind)
    exclusive, with_comments = _C14N_METHODS[c14n_alg]
    method = _only(signed_info, _ds("CanonicalizationMethod"), "CanonicalizationMethod")
    signed_info_octets = _c14n(signed_info, exclusive, with_comments, _prefix_list(method))
    signature_value = _b64decode(sig_value_el.text, "SignatureValue")
    if not _raw_verify(public_key, kind, sig_hash, signature_value, signed_info_octets):
        _fail("bad_signature", "the signature value does not verify with the certificate's key",
              reason="signature_mismatch")

    signing_time = None
    times = props.xpath("./*[local-name()='SignedSignatureProperties']/*[local-name()='SigningTime']")
    if times:
        signing_time = _parse_xs_datetime(times[0].text)

    data, digest_alg = data_ref
    signed_root = _parse(data.octets, what="signed data").getroot()
    if enveloping:
        children = [c for c in signed_root if isinstance(c.tag, str)]
        if signed_root.tag == _ds("Object"):
            if len(children) != 1:
                _fail("bad_signature", "the signed Object must hold exactly one element", reason="ambiguous_data")
            signed_root = children[0]
    _logger.debug("XAdES signature verified (%s, %s references)", sig_alg, len(refs))
    return VerifiedSignature(
        certificate=certificate, root=signed_root, signing_time=signing_time, signature_method=sig_alg,
        digest_method=digest_alg, canonicalization_method=c14n_alg, enveloping=enveloping,
        signed_bytes=data.octets, certificate_digest_method=cert_digest_method, references=ref_infos)


def sha256_digest_b64(data):
    """Base64 SHA-256 of ``data`` (helper for templates and tests)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
