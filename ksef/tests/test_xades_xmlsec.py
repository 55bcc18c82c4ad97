"""Cross-check ksef.xades against an independent implementation: xmlsec1 (Debian package ``xmlsec1``).

* xmlsec1 verifies signatures produced by :func:`ksef.xades.sign`;
* :func:`ksef.xades.verify` accepts signatures produced by ``xmlsec1 --sign`` from XAdES templates with
  the canonicalisation/transform variants KSeF allows (inclusive, exclusive with PrefixList, with
  comments, C14N 1.1, the XPath ``not(ancestor-or-self::ds:Signature)`` filter, enveloping).

Skipped when xmlsec1 is not installed (``apt-get install xmlsec1``). xmlsec1 1.2.x has no RSA-PSS, so
PSS is only checked by the self-consistency tests in test_xades.py.
"""
import base64
import hashlib
import shutil
import subprocess

import pytest
from lxml import etree

from ksef import crypto, xades
from ksef.errors import SignatureError
from ksef.tests.fixtures_credentials import SEAL_NIP, make_credentials

XMLSEC = shutil.which("xmlsec1")
pytestmark = pytest.mark.skipif(XMLSEC is None, reason="xmlsec1 not installed (apt-get install xmlsec1)")

DS = xades.DSIG_NS
NS21 = xades.AUTH_NAMESPACES["2.1"]
CHALLENGE = "20250604-CR-461EA5B000-537A6BA15D-D7"
ID_ATTR = ["--id-attr:Id", "%s:SignedProperties" % xades.XADES_NS]


def _xmlsec(*args):
    return subprocess.run([XMLSEC, *args], capture_output=True, text=True, timeout=60, check=False)


def _xmlsec_verify(tmp_path, cred, signed):
    cert = tmp_path / "cert.pem"
    cert.write_bytes(cred.cert_pem)
    doc = tmp_path / "signed.xml"
    doc.write_bytes(signed)
    return _xmlsec("--verify", "--pubkey-cert-pem", str(cert), *ID_ATTR, str(doc))


@pytest.mark.parametrize("cred_name", ["rsa_seal", "rsa_person", "ec_seal", "ec_person_nip"])
def test_xmlsec_verifies_our_signature(tmp_path, request, cred_name):
    cred = request.getfixturevalue(cred_name)
    signed = xades.sign(xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP), cred.key, cred.cert)
    result = _xmlsec_verify(tmp_path, cred, signed)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SignedInfo References (ok/all): 2/2" in result.stderr + result.stdout


def test_xmlsec_verifies_our_sha512_signature(tmp_path, rsa_seal):
    signed = xades.sign(xades.build_auth_token_request(CHALLENGE, "InternalId", SEAL_NIP + "-00001"),
                        rsa_seal.key, rsa_seal.cert, digest="sha512")
    assert _xmlsec_verify(tmp_path, rsa_seal, signed).returncode == 0


def test_xmlsec_rejects_tampered_or_foreign(tmp_path, rsa_seal, rsa_person):
    """Negative controls: xmlsec1 really checks what the positive tests rely on."""
    signed = xades.sign(xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP), rsa_seal.key, rsa_seal.cert)
    assert _xmlsec_verify(tmp_path, rsa_seal, signed.replace(b"D7</Challenge>", b"D8</Challenge>")).returncode != 0
    assert _xmlsec_verify(tmp_path, rsa_person, signed).returncode != 0


# --------------------------------------------------------------------------------------------
# xmlsec1 --sign → ksef.xades.verify
# --------------------------------------------------------------------------------------------

C14N = xades.C14N
EXC = xades.EXC_C14N
ENVELOPED = '<ds:Transform Algorithm="%s"/>' % xades.TRANSFORM_ENVELOPED
XPATH = ('<ds:Transform Algorithm="%s"><ds:XPath>not(ancestor-or-self::ds:Signature)</ds:XPath></ds:Transform>'
         % xades.TRANSFORM_XPATH)
EXC_PREFIXES = ('<ds:Transform Algorithm="%s"><ec:InclusiveNamespaces xmlns:ec="%s" PrefixList="unused #default"/>'
                '</ds:Transform>' % (EXC, EXC))

VARIANTS = {
    # name: (SignedInfo C14N, document reference transforms, SignedProperties transform)
    "inclusive-default": (C14N, ENVELOPED, C14N),
    "inclusive-comments": (xades.C14N_WITH_COMMENTS,
                           ENVELOPED + '<ds:Transform Algorithm="%s"/>' % xades.C14N_WITH_COMMENTS,
                           xades.C14N_WITH_COMMENTS),
    "exclusive-comments": (xades.EXC_C14N_WITH_COMMENTS,
                           ENVELOPED + '<ds:Transform Algorithm="%s"/>' % xades.EXC_C14N_WITH_COMMENTS, EXC),
    "xpath-exclusive-prefixlist": (EXC, XPATH + EXC_PREFIXES, EXC),
    "c14n11": (xades.C14N11, ENVELOPED + '<ds:Transform Algorithm="%s"/>' % xades.C14N11, xades.C14N11),
}

SIGNATURE_METHODS = {"rsa": xades.RSA_SHA256, "ec": xades.ECDSA_SHA256}


def _signed_properties(cert, sig_id="Sig1", props_id="SP1"):
    digest = base64.b64encode(hashlib.sha256(crypto.certificate_der(cert)).digest()).decode()
    return (
        '<xades:QualifyingProperties xmlns:xades="%(x)s" Target="#%(sid)s">\n'
        '      <xades:SignedProperties Id="%(pid)s"><xades:SignedSignatureProperties>\n'
        '        <xades:SigningTime>2026-02-01T10:00:00.1234567+01:00</xades:SigningTime>\n'
        '        <xades:SigningCertificate><xades:Cert><xades:CertDigest>\n'
        '          <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        '<ds:DigestValue>%(d)s</ds:DigestValue>\n'
        '        </xades:CertDigest><xades:IssuerSerial><ds:X509IssuerName>%(issuer)s</ds:X509IssuerName>'
        '<ds:X509SerialNumber>%(serial)d</ds:X509SerialNumber></xades:IssuerSerial></xades:Cert>'
        '</xades:SigningCertificate>\n'
        '      </xades:SignedSignatureProperties></xades:SignedProperties>\n'
        '    </xades:QualifyingProperties>'
    ) % {"x": xades.XADES_NS, "sid": sig_id, "pid": props_id, "d": digest,
         "issuer": cert.issuer.rfc4514_string(), "serial": cert.serial_number}


def _reference(uri, transforms, typ=None):
    return ('<ds:Reference URI="%s"%s><ds:Transforms>%s</ds:Transforms>'
            '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>'
            % (uri, ' Type="%s"' % typ if typ else "", transforms))


def _signature(cert, method, c14n, refs, objects):
    return (
        '<ds:Signature xmlns:ds="%s" Id="Sig1">\n'
        '    <ds:SignedInfo><ds:CanonicalizationMethod Algorithm="%s"/><ds:SignatureMethod Algorithm="%s"/>\n'
        '      %s\n    </ds:SignedInfo>\n'
        '    <ds:SignatureValue/>\n    <ds:KeyInfo><ds:X509Data/></ds:KeyInfo>\n'
        '    %s\n    <ds:Object>%s</ds:Object>\n  </ds:Signature>'
    ) % (DS, c14n, method, "\n      ".join(refs), objects, _signed_properties(cert))


def _enveloped_template(cert, method, c14n, doc_transforms, props_transform):
    props_ref = _reference("#SP1", '<ds:Transform Algorithm="%s"/>' % props_transform, xades.SIGNED_PROPERTIES_TYPE)
    sig = _signature(cert, method, c14n, [_reference("", doc_transforms), props_ref], "")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- leading comment -->\n'
        '<AuthTokenRequest xmlns="%s" xmlns:unused="urn:unused">\n'
        '  <Challenge>%s</Challenge>\n  <!-- inner comment -->\n'
        '  <ContextIdentifier>\n    <Nip>%s</Nip>\n  </ContextIdentifier>\n'
        '  <SubjectIdentifierType>certificateSubject</SubjectIdentifierType>\n  %s\n</AuthTokenRequest>\n'
    ) % (NS21, CHALLENGE, SEAL_NIP, sig)


def _enveloping_template(cert, method):
    request = xades.build_auth_token_request(CHALLENGE, "Nip", SEAL_NIP).split(b"?>", 1)[1].strip().decode()
    refs = [_reference("#obj", '<ds:Transform Algorithm="%s"/>' % EXC),
            _reference("#SP1", '<ds:Transform Algorithm="%s"/>' % EXC, xades.SIGNED_PROPERTIES_TYPE)]
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _signature(
        cert, method, EXC, refs, '<ds:Object Id="obj">%s</ds:Object>' % request)


def _xmlsec_sign(tmp_path, cred, template):
    key_path, cert_path = cred.write(tmp_path)
    tpl = tmp_path / "template.xml"
    tpl.write_text(template, encoding="utf-8")
    out = tmp_path / "out.xml"
    result = _xmlsec("--sign", "--privkey-pem", "%s,%s" % (key_path, cert_path), *ID_ATTR,
                     "--output", str(out), str(tpl))
    assert result.returncode == 0, result.stderr[-2000:]
    return out.read_bytes()


@pytest.fixture(scope="module", params=["rsa", "ec"])
def any_cred(request):
    return request.param, make_credentials(request.param, nip=SEAL_NIP, organization="Firma xmlsec")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_verify_accepts_xmlsec_enveloped(tmp_path, any_cred, variant):
    kind, cred = any_cred
    c14n, doc_transforms, props_transform = VARIANTS[variant]
    signed = _xmlsec_sign(tmp_path, cred, _enveloped_template(cred.cert, SIGNATURE_METHODS[kind], c14n,
                                                               doc_transforms, props_transform))
    result = xades.verify(signed)
    assert result.certificate == cred.cert
    assert result.canonicalization_method == c14n
    assert result.root.findtext("{%s}Challenge" % NS21) == CHALLENGE
    assert result.root.find(".//{%s}Signature" % DS) is None
    assert result.signing_time.isoformat() == "2026-02-01T09:00:00.123456+00:00"
    # ...and a one-character change in the signed content is caught
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(signed.replace(b"<Nip>" + SEAL_NIP.encode(), b"<Nip>1111111111"))
    assert excinfo.value.code == "bad_signature"


def test_verify_accepts_xmlsec_enveloping(tmp_path, any_cred):
    kind, cred = any_cred
    signed = _xmlsec_sign(tmp_path, cred, _enveloping_template(cred.cert, SIGNATURE_METHODS[kind]))
    assert etree.fromstring(signed).tag == "{%s}Signature" % DS
    result = xades.verify(signed)
    assert result.enveloping
    assert result.root.tag == "{%s}AuthTokenRequest" % NS21
    assert result.root.findtext("{%s}ContextIdentifier/{%s}Nip" % (NS21, NS21)) == SEAL_NIP
    with pytest.raises(SignatureError):
        xades.verify(signed.replace(CHALLENGE.encode(), b"20250604-CR-461EA5B000-537A6BA15D-D8"))


def test_verify_rejects_xmlsec_signature_with_wrong_cert_digest(tmp_path, rsa_seal, rsa_person):
    """xmlsec1 signs happily, but the XAdES SigningCertificate names another certificate."""
    template = _enveloped_template(rsa_person.cert, xades.RSA_SHA256, EXC,
                                   ENVELOPED + '<ds:Transform Algorithm="%s"/>' % EXC, EXC)
    signed = _xmlsec_sign(tmp_path, rsa_seal, template)
    with pytest.raises(SignatureError) as excinfo:
        xades.verify(signed)
    assert excinfo.value.params["reason"] == "certificate_digest_mismatch"


def test_verify_accepts_default_namespace_layout(tmp_path, rsa_seal):
    """The layout .NET's SignedXml produces (MF's C# client): unprefixed ``Signature`` redeclaring the
    default namespace, inclusive C14N for SignedInfo, exclusive C14N for the references."""
    cert = rsa_seal.cert
    digest = base64.b64encode(hashlib.sha256(crypto.certificate_der(cert)).digest()).decode()

    def ref(uri, typ=""):
        return ('<Reference URI="%s"%s><Transforms>%s<Transform Algorithm="%s"/></Transforms>'
                '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/></Reference>'
                % (uri, typ, '<Transform Algorithm="%s"/>' % xades.TRANSFORM_ENVELOPED if not uri else "", EXC))

    template = (
        '<?xml version="1.0" encoding="utf-8"?>\n<AuthTokenRequest xmlns="%(ns)s">\n'
        '  <Challenge>%(ch)s</Challenge>\n  <ContextIdentifier>\n    <Nip>%(nip)s</Nip>\n  </ContextIdentifier>\n'
        '  <SubjectIdentifierType>certificateSubject</SubjectIdentifierType>\n'
        '<Signature Id="Signature" xmlns="%(ds)s"><SignedInfo>'
        '<CanonicalizationMethod Algorithm="%(c14n)s"/><SignatureMethod Algorithm="%(rsa)s"/>%(r1)s%(r2)s'
        '</SignedInfo><SignatureValue/><KeyInfo><X509Data/></KeyInfo><Object>'
        '<xades:QualifyingProperties Target="#Signature" xmlns:xades="%(x)s" xmlns="%(ds)s">'
        '<xades:SignedProperties Id="SignedProperties"><xades:SignedSignatureProperties>'
        '<xades:SigningTime>2026-02-01T09:00:00.0000000+00:00</xades:SigningTime><xades:SigningCertificate>'
        '<xades:Cert><xades:CertDigest><DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256" />'
        '<DigestValue>%(d)s</DigestValue></xades:CertDigest><xades:IssuerSerial><X509IssuerName>CN=x</X509IssuerName>'
        '<X509SerialNumber>%(serial)d</X509SerialNumber></xades:IssuerSerial></xades:Cert></xades:SigningCertificate>'
        '</xades:SignedSignatureProperties></xades:SignedProperties></xades:QualifyingProperties></Object>'
        '</Signature></AuthTokenRequest>'
    ) % {"ns": NS21, "ch": CHALLENGE, "nip": SEAL_NIP, "ds": DS, "c14n": C14N, "rsa": xades.RSA_SHA256,
         "r1": ref(""), "r2": ref("#SignedProperties", ' Type="%s"' % xades.SIGNED_PROPERTIES_TYPE),
         "x": xades.XADES_NS, "d": digest, "serial": cert.serial_number}
    signed = _xmlsec_sign(tmp_path, rsa_seal, template)
    result = xades.verify(signed)
    assert result.certificate == cert
    assert result.canonicalization_method == C14N
    assert result.root.findtext("{%s}Challenge" % NS21) == CHALLENGE


def test_xmlsec_verifies_signed_unicode_document_with_comments_and_pis(tmp_path, ec_seal):
    doc = ('<?xml version="1.0" encoding="UTF-8"?>\n<!-- Zażółć -->\n<a xmlns="urn:x" xmlns:u="urn:unused">'
           '<!-- gęślą --><b attr="&quot;ż&#9;">jaźń &amp; &lt;</b><?pi zż?>\n</a>\n<!-- koniec -->').encode()
    signed = xades.sign(doc, ec_seal.key, ec_seal.cert)
    assert _xmlsec_verify(tmp_path, ec_seal, signed).returncode == 0
    result = xades.verify(signed)
    assert result.root.findtext("{urn:x}b") == "jaźń & <"
    assert b"<!--" not in result.signed_bytes
