"""``POST /auth/xades-signature``: AuthTokenRequest structure, XAdES signature, certificate identity."""
import logging
import re

from lxml import etree

from .. import crypto
from ..errors import SchemaUnavailableError, SignatureError
from .http import Fail
from .util import now

_logger = logging.getLogger(__name__)

AUTH_NS = ("http://ksef.mf.gov.pl/auth/token/2.0", "http://ksef.mf.gov.pl/auth/token/2.1")
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_CTX_TYPES = {"Nip": "Nip", "InternalId": "InternalId", "NipVatUe": "NipVatUe", "PeppolId": "PeppolId"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _local(el):
    return etree.QName(el).localname if isinstance(el.tag, str) else None


def _structure_issues(root):
    """Structural checks mirroring schemat_auth_v2-1.xsd (used when the XSD is not available)."""
    issues = []
    ns = etree.QName(root).namespace
    kids = [c for c in root if isinstance(c.tag, str) and etree.QName(c).namespace != DSIG_NS]
    names = [_local(c) for c in kids]
    if any(etree.QName(c).namespace != ns for c in kids):
        issues.append("elementy muszą należeć do przestrzeni nazw %s" % ns)
    expected = ["Challenge", "ContextIdentifier", "SubjectIdentifierType"]
    if names[:3] != expected or any(n != "AuthorizationPolicy" for n in names[3:]) or len(names) > 4:
        issues.append("oczekiwano elementów Challenge, ContextIdentifier, SubjectIdentifierType"
                      " [, AuthorizationPolicy], otrzymano: %s" % ", ".join(names))
        return issues
    challenge = (kids[0].text or "").strip()
    if not re.fullmatch(r"\d{8}-CR-[A-F0-9]{10}-[A-F0-9]{10}-[A-F0-9]{2}", challenge):
        issues.append("Challenge: nieprawidłowa wartość %r" % challenge)
    ctx = [c for c in kids[1] if isinstance(c.tag, str)]
    if len(ctx) != 1 or _local(ctx[0]) not in _CTX_TYPES:
        issues.append("ContextIdentifier: oczekiwano dokładnie jednego z Nip, InternalId, NipVatUe, PeppolId")
    if (kids[2].text or "").strip() not in ("certificateSubject", "certificateFingerprint"):
        issues.append("SubjectIdentifierType: dozwolone certificateSubject, certificateFingerprint")
    return issues


class XadesAuthMixin:
    def _auth_xsd_issues(self, signed_root):
        try:
            from .. import schemas
            issues = schemas.validate_xsd(signed_root, "AUTH")
            return [str(i) for i in issues]
        except SchemaUnavailableError:
            return _structure_issues(signed_root)
        except ImportError:  # pragma: no cover
            return _structure_issues(signed_root)

    def h_auth_xades(self, req, ctx):
        from .. import xades

        body = req.body or b""
        if not body.strip():
            raise Fail(400, 21001, details=["Treść żądania jest pusta."])
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise Fail(400, 21217) from None
        try:
            doc_root = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError as exc:
            raise Fail(400, 21001, details=[str(exc)[:200]]) from None
        if _local(doc_root) != "AuthTokenRequest" and not (
                etree.QName(doc_root).namespace == DSIG_NS and _local(doc_root) == "Signature"):
            raise Fail(400, 9101, details=["Element główny %s nie jest AuthTokenRequest." % _local(doc_root)])
        try:
            verified = xades.verify(body)
        except SignatureError as exc:
            code = {"no_signature": 9102, "too_many_signatures": 9103, "bad_document": 9101,
                    "detached_not_allowed": 9105, "unsupported_algorithm": 9105}.get(exc.code, 9105)
            raise Fail(400, code, details=[str(exc)[:300]]) from None
        root = verified.root
        if _local(root) != "AuthTokenRequest" or etree.QName(root).namespace not in AUTH_NS:
            raise Fail(400, 9101, details=["Podpisany dokument nie jest AuthTokenRequest (2.0/2.1)."])
        issues = self._auth_xsd_issues(root)
        if issues:
            raise Fail(400, 21401, details=issues[:10])
        kids = {(_local(c)): c for c in root if isinstance(c.tag, str)}
        challenge = kids["Challenge"].text.strip()
        ctx_el = next(c for c in kids["ContextIdentifier"] if isinstance(c.tag, str))
        context = {"type": _CTX_TYPES[_local(ctx_el)], "value": (ctx_el.text or "").strip()}
        subject_type = kids["SubjectIdentifierType"].text.strip()
        allowed_ips = None
        if "AuthorizationPolicy" in kids:
            allowed_ips = {"ip4Addresses": [], "ip4Ranges": [], "ip4Masks": []}
            for el in kids["AuthorizationPolicy"].iter():
                name = _local(el)
                key = {"Ip4Address": "ip4Addresses", "Ip4Range": "ip4Ranges", "Ip4Mask": "ip4Masks"}.get(name)
                if key:
                    allowed_ips[key].append((el.text or "").strip())
        cert = verified.certificate
        if subject_type == "certificateSubject":
            ident = crypto.certificate_subject_identifier(cert)
            if ident is None:
                raise Fail(400, 21115, details=[
                    "Certyfikat nie zawiera identyfikatora NIP/PESEL (użyj certificateFingerprint)."])
            subject = {"type": ident[0], "value": ident[1]}
        else:
            subject = {"type": "Fingerprint", "value": crypto.certificate_fingerprint_hex(cert)}
        if context["type"] == "PeppolId" and subject["type"] != "Fingerprint":
            raise Fail(400, 21117)
        self.use_challenge(challenge)
        failure = None
        moment = now()
        if not crypto.not_valid_before(cert) <= moment <= crypto.not_valid_after(cert):
            failure = (460, "Nieważny certyfikat.")
        elif (req.arg("verifyCertificateChain") or "").lower() == "true" and cert.issuer == cert.subject:
            failure = (460, "Niezaufany łańcuch certyfikatów.")
        permissions = self.permissions_of(subject, context) if failure is None else []
        if failure is None and not permissions:
            failure = (415, "Brak przypisanych uprawnień.")
        seal = bool(cert.subject.get_attributes_for_oid(crypto.OID_ORGANIZATION_IDENTIFIER))
        method = "QualifiedSeal" if seal else "QualifiedSignature"
        info = ({"category": "XadesSignature", "code": "xades.qualified-seal", "displayName": "Pieczęć kwalifikowana"}
                if seal else {"category": "XadesSignature", "code": "xades.qualified-signature",
                              "displayName": "Podpis kwalifikowany"})
        return self.start_auth_operation(
            context=context, method=method, method_info=info, subject=subject, permissions=permissions,
            failure=failure, auth_doc_hash=crypto.sha256_b64(body), allowed_ips=allowed_ips,
            client_ip=req.client_ip)
