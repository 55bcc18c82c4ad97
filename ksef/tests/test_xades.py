"""AuthTokenRequest building, XAdES signing and verification (self-consistency, tampering, XML attacks)."""
import base64
import datetime
import os
import pathlib
import re

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from ksef import crypto, xades
from ksef.errors import CredentialError, SignatureError
from ksef.tests.fixtures_credentials import SEAL_NIP, make_credentials

DS = xades.DSIG_NS
NS21 = xades.AUTH_NAMESPACES["2.1"]
CHALLENGE = "20250604-CR-461EA5B000-537A6BA15D-D7"
SIGNING_TIME = datetime.datetime(2026, 2, 1, 9, 30, 15, tzinfo=datetime.timezone.utc)


def _schema(version="2.1", fix_anchors=False):
    schema_dir = pathlib.Path(os.environ.get("KSEF_SCHEMA_DIR", ""))
    path = schema_dir / "auth" / ("schemat_auth_v%s.xsd" % version.replace(".", "-"))
    if not path.is_file():
        pytest.fail("auth XSD not found at %s (set KSEF_SCHEMA_DIR)" % path)
    doc = etree.parse(str(path))
    if fix_anchors:
        # The official 2.1 XSD writes ^...$ in two patterns; XSD regexes have no anchors, so libxml2
        # reads them as literal characters. Strip them to check our output against the intended rule.
        for el in doc.iter("{http://www.w3.org/2001/XMLSchema}pattern"):
            el.set("value", re.sub(r"^\^|\$$", "", el.get("value")))
    return etree.XMLSchema(doc)


def _assert_valid(schema, xml):
    doc = etree.fromstring(xml)
    assert schema.validate(doc), schema.error_log


def _signed(cred, **kw):
    xml = xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP)
    return xades.sign(xml, cred.key, cred.cert, signing_time=SIGNING_TIME, **kw)


def _code(excinfo):
    return excinfo.value.code, excinfo.value.params.get("reason")


# --------------------------------------------------------------------------------------------
# AuthTokenRequest
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ctx", "value"), [("Nip", "5265877635"), ("InternalId", "5265877635-12345")])
def test_auth_request_valid_against_official_xsd(ctx, value):
    xml = xades.build_auth_token_request(CHALLENGE, ctx, value)
    _assert_valid(_schema(), xml)
    root = etree.fromstring(xml)
    assert root.tag == "{%s}AuthTokenRequest" % NS21
    assert [etree.QName(c).localname for c in root] == ["Challenge", "ContextIdentifier", "SubjectIdentifierType"]
    assert root.findtext("{%s}ContextIdentifier/{%s}%s" % (NS21, NS21, ctx)) == value
    assert root.findtext("{%s}SubjectIdentifierType" % NS21) == "certificateSubject"


@pytest.mark.parametrize(("ctx", "value"), [("NipVatUe", "5265877635-ATU12345678"), ("PeppolId", "PAB123456")])
def test_auth_request_anchor_patterns(ctx, value):
    xml = xades.build_auth_token_request(CHALLENGE, ctx, value, "certificateFingerprint")
    _assert_valid(_schema(fix_anchors=True), xml)
    assert not _schema().validate(etree.fromstring(xml))  # documents the XSD defect (see _schema)


def test_auth_request_matches_official_sample_content(samples_dir):
    sample = etree.parse(str(samples_dir / "auth" / "AuthTokenRequest_context-identifier-internal-id.xml"))
    ns20 = xades.AUTH_NAMESPACES["2.0"]
    ours = etree.fromstring(xades.build_auth_token_request(
        sample.findtext("{%s}Challenge" % ns20), "InternalId",
        sample.findtext("{%s}ContextIdentifier/{%s}InternalId" % (ns20, ns20)), version="2.0"))
    assert ours.tag == sample.getroot().tag
    assert [(e.tag, (e.text or "").strip()) for e in ours.iter()] == \
           [(e.tag, (e.text or "").strip()) for e in sample.getroot().iter()]


def test_auth_request_allowed_ips_in_xsd_order():
    ips = {"ip4Masks": ["10.0.0.0/8"], "ip4Addresses": ["192.168.1.10", "8.8.8.8"], "ip4Ranges": ["1.1.1.1-1.1.1.9"]}
    xml = xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP, allowed_ips=ips)
    _assert_valid(_schema(), xml)
    allowed = etree.fromstring(xml).find("{%s}AuthorizationPolicy/{%s}AllowedIps" % (NS21, NS21))
    assert [(etree.QName(c).localname, c.text) for c in allowed] == [
        ("Ip4Address", "192.168.1.10"), ("Ip4Address", "8.8.8.8"), ("Ip4Range", "1.1.1.1-1.1.1.9"),
        ("Ip4Mask", "10.0.0.0/8")]
    empty = xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP, allowed_ips={"ip4Addresses": []})
    assert b"AuthorizationPolicy" not in empty


@pytest.mark.parametrize(("kwargs", "code", "field"), [
    ({"challenge": "20250604-CR-461EA5B000-537A6BA15D"}, "auth_request_challenge", "challenge"),
    ({"challenge": None}, "auth_request_challenge", "challenge"),
    ({"context_type": "Pesel"}, "auth_request_context_type", "context_type"),
    ({"context_value": "0123456789"}, "auth_request_context_value", "context_value"),
    ({"context_type": "InternalId"}, "auth_request_context_value", "context_value"),
    ({"subject_identifier_type": "fingerprint"}, "auth_request_subject_type", "subject_identifier_type"),
    ({"version": "3.0"}, "auth_request_version", "version"),
    ({"allowed_ips": {"ip4Addresses": ["256.1.1.1"]}}, "auth_request_allowed_ips", "ip4Addresses"),
    ({"allowed_ips": {"ip4Masks": ["10.0.0.0/33"]}}, "auth_request_allowed_ips", "ip4Masks"),
    ({"allowed_ips": {"ip4Addresses": ["1.1.1.%d" % i for i in range(11)]}}, "auth_request_allowed_ips",
     "ip4Addresses"),
    ({"allowed_ips": {"ipv6": ["::1"]}}, "auth_request_allowed_ips", "allowed_ips"),
])
def test_auth_request_bad_input(kwargs, code, field):
    args = {"challenge": CHALLENGE, "context_type": "Nip", "context_value": SEAL_NIP}
    args.update(kwargs)
    with pytest.raises(xades.AuthRequestError) as excinfo:
        xades.build_auth_token_request(**args)
    assert excinfo.value.code == code
    assert excinfo.value.params["field"] == field
    assert isinstance(excinfo.value, ValueError)


# --------------------------------------------------------------------------------------------
# sign + verify
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cred_name", "kw", "method"), [
    ("rsa_seal", {}, "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
    ("rsa_person", {"signature_algorithm": "rsa-pss"}, "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"),
    ("rsa_seal", {"digest": "sha512"}, "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"),
    ("rsa_seal", {"digest": "sha384", "signature_algorithm": "rsa-pss"},
     "http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1"),
    ("ec_seal", {}, "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"),
    ("ec_person_nip", {"digest": "sha384"}, "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"),
    ("ec_seal", {"digest": "sha3-256"}, "http://www.w3.org/2021/04/xmldsig-more#ecdsa-sha3-256"),
])
def test_sign_verify_roundtrip(request, cred_name, kw, method):
    cred = request.getfixturevalue(cred_name)
    signed = _signed(cred, **kw)
    result = xades.verify(signed)
    assert result.signature_method == method
    assert result.certificate == cred.cert
    assert result.signing_time == SIGNING_TIME
    assert result.root.tag == "{%s}AuthTokenRequest" % NS21
    assert result.root.findtext("{%s}Challenge" % NS21) == CHALLENGE
    assert result.root.find(".//{%s}Signature" % DS) is None
    assert not result.enveloping
    # the signed content is still valid against the XSD
    _assert_valid(_schema(), etree.tostring(result.root))


def test_signature_layout(ec_seal):
    root = etree.fromstring(_signed(ec_seal))
    sig = root[-1]
    assert sig.tag == "{%s}Signature" % DS
    ns = {"ds": DS, "xades": xades.XADES_NS}
    assert sig.xpath("ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm", namespaces=ns) == [xades.EXC_C14N]
    doc_ref, props_ref = sig.xpath("ds:SignedInfo/ds:Reference", namespaces=ns)
    assert doc_ref.get("URI") == ""
    assert doc_ref.xpath("ds:Transforms/ds:Transform/@Algorithm", namespaces=ns) == [
        xades.TRANSFORM_ENVELOPED, xades.EXC_C14N]
    assert props_ref.get("Type") == xades.SIGNED_PROPERTIES_TYPE
    props_id = props_ref.get("URI")[1:]
    props = sig.xpath("ds:Object/xades:QualifyingProperties/xades:SignedProperties", namespaces=ns)[0]
    assert props.get("Id") == props_id
    assert props.getparent().get("Target") == "#" + sig.get("Id")
    cert_der = crypto.certificate_der(ec_seal.cert)
    assert props.xpath(".//xades:CertDigest/ds:DigestValue/text()", namespaces=ns) == [
        xades.sha256_digest_b64(cert_der)]
    assert props.xpath(".//ds:X509SerialNumber/text()", namespaces=ns) == [str(ec_seal.cert.serial_number)]
    assert props.xpath(".//xades:SigningTime/text()", namespaces=ns) == ["2026-02-01T09:30:15Z"]
    assert base64.b64decode(sig.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()", namespaces=ns)[0]) == cert_der
    raw = base64.b64decode(sig.findtext("{%s}SignatureValue" % DS))
    assert len(raw) == 64  # P-256: raw r||s, not DER


def test_sign_keeps_document_bytes_before_signature(rsa_seal):
    xml = xades.build_auth_token_request(CHALLENGE, "InternalId", "5265877635-00001")
    signed = xades.sign(xml, rsa_seal.key, rsa_seal.cert)
    body = xml.split(b"?>", 1)[1].strip()
    assert signed.split(b"?>", 1)[1].strip().startswith(body[: body.rindex(b"</AuthTokenRequest>")])


def test_sign_accepts_pem_and_str_input(rsa_seal):
    xml = xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP).decode("utf-8")
    result = xades.verify(xades.sign(xml.encode(), rsa_seal.key_pem, rsa_seal.cert_pem).decode("utf-8"))
    assert result.certificate == rsa_seal.cert


def test_sign_errors(rsa_seal, ec_seal):
    xml = xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP)
    with pytest.raises(CredentialError) as excinfo:
        xades.sign(xml, rsa_seal.key, ec_seal.cert)
    assert excinfo.value.code == "key_mismatch"
    with pytest.raises(CredentialError) as excinfo:
        xades.sign(xml, ec_seal.key, ec_seal.cert, signature_algorithm="rsa-pss")
    assert excinfo.value.code == "key_algorithm_mismatch"
    with pytest.raises(SignatureError) as excinfo:
        xades.sign(xml, ec_seal.key, ec_seal.cert, digest="md5")
    assert excinfo.value.code == "unsupported_algorithm"
    with pytest.raises(SignatureError) as excinfo:
        xades.sign(xades.sign(xml, ec_seal.key, ec_seal.cert), ec_seal.key, ec_seal.cert)
    assert excinfo.value.code == "too_many_signatures"
    with pytest.raises(SignatureError) as excinfo:
        xades.sign(b"<a><b></a>", ec_seal.key, ec_seal.cert)
    assert excinfo.value.code == "bad_document"


def test_ecdsa_der_signature_value_tolerated(ec_seal):
    signed = etree.fromstring(_signed(ec_seal))
    signed_info = signed.find(".//{%s}SignedInfo" % DS)
    octets = etree.tostring(signed_info, method="c14n", exclusive=True)
    der = ec_seal.key.sign(octets, ec.ECDSA(hashes.SHA256()))
    signed.find(".//{%s}SignatureValue" % DS).text = base64.b64encode(der).decode()
    assert xades.verify(etree.tostring(signed)).certificate == ec_seal.cert
    # a raw value of the right length but wrong content still fails
    signed.find(".//{%s}SignatureValue" % DS).text = base64.b64encode(b"\x01" * 64).decode()
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(etree.tostring(signed))
    assert _code(excinfo) == ("bad_signature", "signature_mismatch")


def test_unsigned_comment_is_not_returned(rsa_seal):
    signed = _signed(rsa_seal).replace(b"<Challenge>", b"<!-- injected --><Challenge>")
    result = xades.verify(signed)  # comments are outside the URI="" node-set
    assert b"injected" not in etree.tostring(result.root)
    assert b"injected" not in result.signed_bytes


# --------------------------------------------------------------------------------------------
# Tampering and attacks
# --------------------------------------------------------------------------------------------

def _mutate(signed, func):
    root = etree.fromstring(signed)
    func(root)
    return etree.tostring(root)


def test_tampered_challenge(rsa_seal):
    bad = _signed(rsa_seal).replace(CHALLENGE.encode(), b"20250604-CR-461EA5B000-537A6BA15D-D8")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(bad)
    assert _code(excinfo) == ("bad_signature", "digest_mismatch")
    assert excinfo.value.params["uri"] == ""
    assert xades.KSEF_EXCEPTION_CODES[excinfo.value.code] == 9105


def test_tampered_signing_time(ec_seal):
    bad = _signed(ec_seal).replace(b"2026-02-01T09:30:15Z", b"2026-02-01T09:31:15Z")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(bad)
    assert _code(excinfo) == ("bad_signature", "digest_mismatch")
    assert excinfo.value.params["uri"].startswith("#SignedProperties-")


def test_tampered_whitespace_in_document(rsa_seal):
    bad = _signed(rsa_seal).replace(b"<Nip>", b" <Nip>", 1)
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(bad)
    assert _code(excinfo) == ("bad_signature", "digest_mismatch")


def test_tampered_signed_info(rsa_seal):
    def change(root):
        el = root.find(".//{%s}SignedInfo/{%s}Reference" % (DS, DS))
        el.set("Id", "other")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), change))
    assert _code(excinfo) == ("bad_signature", "signature_mismatch")


def test_swapped_certificate(rsa_seal, rsa_person):
    def swap(root):
        root.find(".//{%s}X509Certificate" % DS).text = base64.b64encode(
            crypto.certificate_der(rsa_person.cert)).decode()
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), swap))
    assert _code(excinfo) == ("bad_signature", "certificate_digest_mismatch")


def test_swapped_certificate_and_cert_digest(rsa_seal, rsa_person):
    def swap(root):
        der = crypto.certificate_der(rsa_person.cert)
        root.find(".//{%s}X509Certificate" % DS).text = base64.b64encode(der).decode()
        root.find(".//{%s}CertDigest/{%s}DigestValue" % (xades.XADES_NS, DS)).text = xades.sha256_digest_b64(der)
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), swap))
    assert _code(excinfo) == ("bad_signature", "digest_mismatch")


def test_resigned_by_attacker_with_own_cert_is_attacker_identity(rsa_seal, rsa_person):
    """An attacker can only re-sign with his own key: verify() then reports HIS certificate."""
    result = xades.verify(_signed(rsa_person))
    assert crypto.certificate_subject_identifier(result.certificate) == ("Pesel", "44051401359")


def test_wrapping_attack_with_enveloping_signature_inside_evil_document(ec_seal):
    """A valid enveloping signature moved inside another document must not validate that document."""
    genuine = _enveloping(ec_seal)
    assert xades.verify(genuine).root.findtext("{%s}Challenge" % NS21) == CHALLENGE
    evil = etree.fromstring(xades.build_auth_token_request("20990101-CR-0000000000-0000000000-00", "Nip",
                                                            "1111111111"))
    evil.append(etree.fromstring(genuine))
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(etree.tostring(evil))
    assert _code(excinfo) == ("bad_signature", "document_not_covered")


def test_wrapping_attack_duplicate_id(rsa_seal):
    """A forged SignedProperties with the same Id hidden in another ds:Object (outside the URI="" digest)."""
    def add_forged(root):
        sig = root[-1]
        props = sig.find(".//{%s}SignedProperties" % xades.XADES_NS)
        forged = etree.fromstring(etree.tostring(props).replace(b"2026-02-01T09:30:15Z", b"2030-01-01T00:00:00Z"))
        obj = etree.Element("{%s}Object" % DS)
        obj.append(forged)
        sig.insert(3, obj)
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), add_forged))
    assert _code(excinfo) == ("bad_signature", "duplicate_id")


def _resign(doc_bytes, cred):
    """Recompute every reference digest and the RSA-SHA256 SignatureValue after a structural change
    (what an attacker holding a valid key could do), so that a test reaches the structural checks."""
    tree = xades._parse(doc_bytes)
    sig = xades._top_level_signatures(tree.getroot())[0]
    for ref in sig.find("{%s}SignedInfo" % DS).findall("{%s}Reference" % DS):
        data, _target = xades._dereference(ref.get("URI"), tree, doc_bytes, sig)
        data = xades._apply_transforms(ref, data)
        ref.find("{%s}DigestValue" % DS).text = xades.sha256_digest_b64(data.octets)
    octets = etree.tostring(sig.find("{%s}SignedInfo" % DS), method="c14n", exclusive=True)
    sig.find("{%s}SignatureValue" % DS).text = base64.b64encode(
        cred.key.sign(octets, padding.PKCS1v15(), hashes.SHA256())).decode()
    return etree.tostring(tree)


def test_resign_helper_sanity(rsa_seal):
    assert xades.verify(_resign(_signed(rsa_seal), rsa_seal)).certificate == rsa_seal.cert


def test_wrapping_attack_reference_to_subelement(rsa_seal):
    """A signature whose only data reference covers a part of the document does not validate the document."""
    def retarget(root):
        ref = root.find(".//{%s}Reference" % DS)
        ref.set("URI", "#part")
        root.find("{%s}Challenge" % NS21).set("Id", "part")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_resign(_mutate(_signed(rsa_seal), retarget), rsa_seal))
    assert _code(excinfo) == ("bad_signature", "document_not_covered")


def test_signed_properties_of_another_signature(rsa_seal):
    def retarget(root):
        root.find(".//{%s}QualifyingProperties" % xades.XADES_NS).set("Target", "#Other")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_resign(_mutate(_signed(rsa_seal), retarget), rsa_seal))
    assert _code(excinfo) == ("bad_signature", "bad_signed_properties")


def test_signed_properties_type_on_wrong_target(rsa_seal):
    def retype(root):
        root.find(".//{%s}Reference" % DS).set("Type", xades.SIGNED_PROPERTIES_TYPE)
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_resign(_mutate(_signed(rsa_seal), retype), rsa_seal))
    assert _code(excinfo) == ("bad_signature", "bad_signed_properties")


def test_issuer_serial_mismatch(rsa_seal):
    def change(root):
        root.find(".//{%s}X509SerialNumber" % DS).text = "12345"
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_resign(_mutate(_signed(rsa_seal), change), rsa_seal))
    assert _code(excinfo) == ("bad_signature", "issuer_serial_mismatch")


def test_xpath_filter2_subtract_transform(rsa_seal):
    def change(root):
        tr = root.find(".//{%s}Transform" % DS)
        tr.set("Algorithm", xades.TRANSFORM_XPATH_FILTER2)
        xp = etree.SubElement(tr, "{%s}XPath" % xades.TRANSFORM_XPATH_FILTER2, Filter="subtract",
                              nsmap={"dsig-xpath": xades.TRANSFORM_XPATH_FILTER2, "ds": DS})
        xp.text = "/descendant::ds:Signature"
    result = xades.verify(_resign(_mutate(_signed(rsa_seal), change), rsa_seal))
    assert result.root.find(".//{%s}Signature" % DS) is None
    assert result.root.findtext("{%s}Challenge" % NS21) == CHALLENGE


def test_two_signatures(rsa_seal, ec_seal):
    first = etree.fromstring(_signed(rsa_seal))
    second = etree.fromstring(_signed(ec_seal))
    first.append(second[-1])
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(etree.tostring(first))
    assert excinfo.value.code == "too_many_signatures"
    assert excinfo.value.params["count"] == 2
    assert xades.KSEF_EXCEPTION_CODES["too_many_signatures"] == 9103


def test_no_signature():
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP))
    assert excinfo.value.code == "no_signature"
    assert xades.KSEF_EXCEPTION_CODES["no_signature"] == 9102


@pytest.mark.parametrize("data", [b"", b"not xml", b"<a><b></a>", "<a>\u017c</a".encode()])
def test_bad_document(data):
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(data)
    assert excinfo.value.code == "bad_document"


@pytest.mark.parametrize("data", [
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><a>&b;</a>',
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>',
])
def test_dtd_and_entities_rejected(data):
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(data)
    assert _code(excinfo) == ("bad_document", "dtd")


def test_signed_document_with_xxe_cannot_be_signed(rsa_seal):
    with pytest.raises(SignatureError) as excinfo:
        xades.sign(b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', rsa_seal.key, rsa_seal.cert)
    assert excinfo.value.code == "bad_document"


def test_detached_reference_rejected(rsa_seal):
    def detach(root):
        root.find(".//{%s}Reference" % DS).set("URI", "http://127.0.0.1:9/document.xml")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), detach))
    assert excinfo.value.code == "detached_not_allowed"


@pytest.mark.parametrize(("path", "algorithm"), [
    (".//{%s}SignatureMethod" % DS, "http://www.w3.org/2000/09/xmldsig#dsa-sha1"),
    (".//{%s}CanonicalizationMethod" % DS, "http://www.w3.org/2006/12/xml-c14n2"),
    (".//{%s}Reference/{%s}DigestMethod" % (DS, DS), "http://www.w3.org/2001/04/xmldsig-more#md5"),
    (".//{%s}Transform" % DS, "http://www.w3.org/TR/1999/REC-xslt-19991116"),
])
def test_unsupported_algorithms(rsa_seal, path, algorithm):
    def change(root):
        root.find(path).set("Algorithm", algorithm)
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), change))
    assert excinfo.value.code == "unsupported_algorithm"
    assert excinfo.value.params["algorithm"] == algorithm


def test_unsupported_xpath_expression(rsa_seal):
    def change(root):
        tr = root.find(".//{%s}Transform" % DS)
        tr.set("Algorithm", xades.TRANSFORM_XPATH)
        etree.SubElement(tr, "{%s}XPath" % DS).text = "count(//*) > 0"
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), change))
    assert excinfo.value.code == "unsupported_algorithm"


def test_not_xades_without_signed_properties(rsa_seal):
    def drop(root):
        si = root.find(".//{%s}SignedInfo" % DS)
        si.remove(si.findall("{%s}Reference" % DS)[1])
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(_mutate(_signed(rsa_seal), drop))
    assert excinfo.value.code == "bad_signature"
    assert excinfo.value.params["reason"] in ("signature_mismatch", "not_xades")


def test_weak_rsa_key_rejected():
    weak = make_credentials("rsa", nip=SEAL_NIP, organization="Weak")
    # 2048 is the fixture default; build a 1024-bit key by hand
    key, cert = crypto.generate_self_signed_certificate(crypto.generate_private_key("rsa", bits=1024),
                                                        subject=weak.cert.subject)
    signed = xades.sign(xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP), key, cert)
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(signed)
    assert _code(excinfo) == ("bad_signature", "weak_key")


def test_error_messages_do_not_leak_document(rsa_seal):
    bad = _signed(rsa_seal).replace(CHALLENGE.encode(), b"20250604-CR-461EA5B000-537A6BA15D-D8")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(bad)
    assert "461EA5B000" not in str(excinfo.value)


# --------------------------------------------------------------------------------------------
# Enveloping signatures (built by hand here; xmlsec1-made ones are in test_xades_xmlsec.py)
# --------------------------------------------------------------------------------------------

def _enveloping(cred):
    """An enveloping XAdES signature: ds:Signature is the root, the request sits in ds:Object Id=obj."""
    request = etree.fromstring(xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP))
    sig = etree.Element("{%s}Signature" % DS, Id="S1", nsmap={"ds": DS})
    si = etree.SubElement(sig, "{%s}SignedInfo" % DS)
    etree.SubElement(si, "{%s}CanonicalizationMethod" % DS, Algorithm=xades.EXC_C14N)
    etree.SubElement(si, "{%s}SignatureMethod" % DS, Algorithm=xades.ECDSA_SHA256)
    refs = []
    for uri, typ in (("#obj", None), ("#props", xades.SIGNED_PROPERTIES_TYPE)):
        ref = etree.SubElement(si, "{%s}Reference" % DS, URI=uri)
        if typ:
            ref.set("Type", typ)
        etree.SubElement(etree.SubElement(ref, "{%s}Transforms" % DS), "{%s}Transform" % DS,
                         Algorithm=xades.EXC_C14N)
        etree.SubElement(ref, "{%s}DigestMethod" % DS, Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
        refs.append(etree.SubElement(ref, "{%s}DigestValue" % DS))
    etree.SubElement(sig, "{%s}SignatureValue" % DS)
    etree.SubElement(etree.SubElement(etree.SubElement(sig, "{%s}KeyInfo" % DS), "{%s}X509Data" % DS),
                     "{%s}X509Certificate" % DS).text = base64.b64encode(crypto.certificate_der(cred.cert)).decode()
    obj = etree.SubElement(sig, "{%s}Object" % DS, Id="obj")
    obj.append(request)
    x = xades.XADES_NS
    qp = etree.SubElement(etree.SubElement(sig, "{%s}Object" % DS), "{%s}QualifyingProperties" % x, Target="#S1",
                          nsmap={"xades": x})
    props = etree.SubElement(qp, "{%s}SignedProperties" % x, Id="props")
    ssp = etree.SubElement(props, "{%s}SignedSignatureProperties" % x)
    etree.SubElement(ssp, "{%s}SigningTime" % x).text = "2026-02-01T09:30:15Z"
    cd = etree.SubElement(etree.SubElement(etree.SubElement(ssp, "{%s}SigningCertificate" % x), "{%s}Cert" % x),
                          "{%s}CertDigest" % x)
    etree.SubElement(cd, "{%s}DigestMethod" % DS, Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(cd, "{%s}DigestValue" % DS).text = xades.sha256_digest_b64(crypto.certificate_der(cred.cert))
    sig = etree.fromstring(etree.tostring(sig))  # normalise namespaces as a receiver would see them
    refs = sig.findall(".//{%s}DigestValue" % DS)[:2]
    refs[0].text = xades.sha256_digest_b64(etree.tostring(sig.find("{%s}Object" % DS), method="c14n", exclusive=True))
    refs[1].text = xades.sha256_digest_b64(etree.tostring(sig.find(".//{%s}SignedProperties" % x), method="c14n",
                                                          exclusive=True))
    octets = etree.tostring(sig.find("{%s}SignedInfo" % DS), method="c14n", exclusive=True)
    r, s = decode_dss_signature(cred.key.sign(octets, ec.ECDSA(hashes.SHA256())))
    sig.find("{%s}SignatureValue" % DS).text = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()
    return etree.tostring(sig)


def test_enveloping_signature(ec_seal):
    result = xades.verify(_enveloping(ec_seal))
    assert result.enveloping
    assert result.root.tag == "{%s}AuthTokenRequest" % NS21
    assert result.root.findtext("{%s}Challenge" % NS21) == CHALLENGE
    assert result.certificate == ec_seal.cert
    assert result.signing_time == SIGNING_TIME


def test_enveloping_tampered_object(ec_seal):
    bad = _enveloping(ec_seal).replace(SEAL_NIP.encode() + b"</Nip>", b"1111111111</Nip>")
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(bad)
    assert _code(excinfo) == ("bad_signature", "digest_mismatch")


# --------------------------------------------------------------------------------------------
# Subtree canonicalisation (c14n_subtree) against libxml2
# --------------------------------------------------------------------------------------------

def test_c14n_subtree_matches_libxml2_on_spec_samples(samples_dir):
    """Whole documents in all four modes, and every element as an exclusive subtree, agree with libxml2."""
    files = sorted(samples_dir.rglob("*.xml"))
    assert len(files) > 20
    compared = 0
    for path in files:
        root = etree.parse(str(path), xades._parser()).getroot()
        alone = etree.ElementTree(etree.fromstring(etree.tostring(root, encoding="UTF-8")))
        for exclusive in (False, True):
            for comments in (False, True):
                assert xades.c14n_subtree(root, exclusive=exclusive, with_comments=comments) == etree.tostring(
                    alone, method="c14n", exclusive=exclusive, with_comments=comments), (path.name, exclusive)
                compared += 1
        for el in root.iter(tag=etree.Element):
            assert xades.c14n_subtree(el, exclusive=True) == etree.tostring(
                el, method="c14n", exclusive=True, with_comments=False), (path.name, el.tag)
            compared += 1
    assert compared > 1000


def test_c14n_subtree_default_namespace_redeclared():
    """The case lxml gets wrong (spurious xmlns=""), as in .NET-made signatures."""
    root = etree.fromstring(b'<a xmlns="urn:a" xmlns:p="urn:p"><S xmlns="urn:ds"><SI><R><T/></R></SI></S></a>')
    si = root[0][0]
    assert xades.c14n_subtree(si) == b'<SI xmlns="urn:ds" xmlns:p="urn:p"><R><T></T></R></SI>'
    assert xades.c14n_subtree(si, exclusive=True) == b'<SI xmlns="urn:ds"><R><T></T></R></SI>'
    assert xades.c14n_subtree(root[0]) == b'<S xmlns="urn:ds" xmlns:p="urn:p"><SI><R><T></T></R></SI></S>'


def test_c14n_subtree_namespace_rules():
    doc = etree.fromstring(
        b'<a xmlns="urn:a" xmlns:p="urn:p" xmlns:q="urn:q" xml:lang="pl">'
        b'<p:b z="1" q:y="&quot;&#9;" a="2"><c xmlns=""><d xmlns:p="urn:p"/></c><!--x--></p:b></a>')
    b = doc[0]
    # inclusive: all in-scope namespaces on the apex, inherited xml:lang, xmlns="" undeclaration kept
    assert xades.c14n_subtree(b, with_comments=True) == (
        b'<p:b xmlns="urn:a" xmlns:p="urn:p" xmlns:q="urn:q" a="2" z="1" xml:lang="pl" q:y="&quot;&#x9;">'
        b'<c xmlns=""><d></d></c><!--x--></p:b>')
    # exclusive: only visibly used prefixes, no xml:* inheritance, comments dropped
    assert xades.c14n_subtree(b, exclusive=True) == (
        b'<p:b xmlns:p="urn:p" xmlns:q="urn:q" a="2" z="1" q:y="&quot;&#x9;"><c><d></d></c></p:b>')
    # InclusiveNamespaces PrefixList
    assert xades.c14n_subtree(b[0], exclusive=True, prefixes=["#default", "q"]) == (
        b'<c xmlns:q="urn:q"><d></d></c>')
    assert xades.c14n_subtree(b, exclusive=True, prefixes=["#default"]).startswith(
        b'<p:b xmlns="urn:a" xmlns:p="urn:p"')
