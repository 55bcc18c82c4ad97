"""Official KSeF XML schemas: locating, downloading (pinned + SHA-256 checked), compiling, validating.

Where the schemas come from, in this order:

1. an explicit ``schema_dir`` argument, else the directory named by ``KSEF_SCHEMA_DIR``; it must have the
   layout of the official set: ``FA/schemat_FA(3)_v1-0E.xsd``, ``FA/schemat_FA(2)_v1-0E.xsd``,
   ``FA/bazowe/*.xsd``, ``RR/...``, ``PEF/...``, ``UPO/upo-v4-3.xsd``, ``auth/schemat_auth_v2-1.xsd``;
2. a cache directory (``cache_dir`` argument, else ``KSEF_SCHEMA_CACHE``, else ``~/.cache/ksef/schemas``)
   that is filled on first use by downloading every file listed in the pin file
   ``<addon>/schemas/official_schemas.json`` (official Ministry of Finance repository ``CIRFMF/ksef-docs``
   at a fixed commit) and checking its SHA-256. A mismatch is refused with :class:`SchemaUnavailableError`.

The FA(2)/FA(3)/FA_RR(1) schemas import ``StrukturyDanych_v10-0E.xsd`` from a ``crd.gov.pl`` URL; the
import is rewritten in memory to the local ``FA/bazowe`` copy, and the parser used to load schemas has
network access disabled, so validation never touches the network.

Compiled schemas are cached per process (keyed by form and directory). lxml validators keep their error
log on the validator object, so each compiled schema has its own lock: validation is thread-safe.

Public API::

    detect_form(xml) -> 'FA3' | 'FA2' | 'FA_RR' | 'PEF' | 'PEF_KOR' | 'UPO' | 'AUTH'
    get_schema(form, schema_dir=None, cache_dir=None) -> lxml.etree.XMLSchema
    validate_xsd(xml, form=None, schema_dir=None, cache_dir=None) -> list[ValidationIssue]
    parse_xml(data) -> lxml root element (safe parser; raises XmlParseError)
    schema_location(schema_dir=None, cache_dir=None, download=True) -> (Path, source)
    fetch_schemas(cache_dir=None, base_url=None, force=False, timeout=30) -> Path
    verify_schemas(directory) -> list[(name, status)]   # status: ok | missing | mismatch
"""
import hashlib
import json
import logging
import os
import pathlib
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from lxml import etree

from .errors import SchemaUnavailableError, ValidationIssue, XmlParseError

_logger = logging.getLogger(__name__)

FA3_NS = "http://crd.gov.pl/wzor/2025/06/25/13775/"
FA2_NS = "http://crd.gov.pl/wzor/2023/06/29/12648/"
FA_RR_NS = "http://crd.gov.pl/wzor/2026/03/06/14189/"
PEF_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
PEF_KOR_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
UPO_NS = "http://upo.schematy.mf.gov.pl/KSeF/v4-3"
AUTH_NS = "http://ksef.mf.gov.pl/auth/token/2.1"
AUTH20_NS = "http://ksef.mf.gov.pl/auth/token/2.0"

#: form -> root namespace (the namespace a document of that form must use)
FORM_NAMESPACES = {
    "FA3": FA3_NS,
    "FA2": FA2_NS,
    "FA_RR": FA_RR_NS,
    "PEF": PEF_NS,
    "PEF_KOR": PEF_KOR_NS,
    "UPO": UPO_NS,
    "AUTH": AUTH_NS,
}
NAMESPACE_FORMS = {ns: form for form, ns in FORM_NAMESPACES.items()}
NAMESPACE_FORMS[AUTH20_NS] = "AUTH"

#: form -> main schema file (relative to the schema directory)
SCHEMA_FILES = {
    "FA3": "FA/schemat_FA(3)_v1-0E.xsd",
    "FA2": "FA/schemat_FA(2)_v1-0E.xsd",
    "FA_RR": "RR/schemat_FA_RR(1)_v1-1E.xsd",
    "PEF": "PEF/Schemat_PEF(3)_v2-1.xsd",
    "PEF_KOR": "PEF/Schemat_PEF_KOR(3)_v2-1.xsd",
    "UPO": "UPO/upo-v4-3.xsd",
    "AUTH": "auth/schemat_auth_v2-1.xsd",
    "AUTH20": "auth/schemat_auth_v2-0.xsd",
}

#: form -> KSeF ``formCode`` (systemCode, schemaVersion, value) used when opening a session
FORM_CODES = {
    "FA3": ("FA (3)", "1-0E", "FA"),
    "FA2": ("FA (2)", "1-0E", "FA"),
    "FA_RR": ("FA_RR (1)", "1-1E", "FA_RR"),
    "PEF": ("PEF (3)", "2-1", "PEF"),
    "PEF_KOR": ("PEF_KOR (3)", "2-1", "PEF"),
}

DEFAULT_CACHE_DIR = pathlib.Path("~/.cache/ksef/schemas")
PIN_FILE = pathlib.Path(__file__).resolve().parent.parent / "schemas" / "official_schemas.json"
_MAX_SCHEMA_FILE = 8 * 1024 * 1024
_XSD = "http://www.w3.org/2001/XMLSchema"


# ------------------------------------------------------------------------------------------------
# Safe XML parsing
# ------------------------------------------------------------------------------------------------

def _new_parser():
    # No entity expansion, no DTD loading, no network, bounded tree: XXE and "billion laughs" safe.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=False, remove_pis=False, collect_ids=False)


_parsers = threading.local()


def _parser():
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = _new_parser()
    return parser


def parse_xml(data):
    """Parse XML bytes (or text) safely and return the root element.

    Accepts ``bytes``/``bytearray``/``memoryview``/``str`` or an lxml element/tree (returned as is).
    Raises :class:`XmlParseError` (code ``xml_parse``) with line/column, never a bare lxml error.
    A document type declaration (DTD) is refused: KSeF documents never have one.
    """
    if isinstance(data, etree._ElementTree):
        return data.getroot()
    if isinstance(data, etree._Element):
        return data
    if isinstance(data, str):
        data = data.encode("utf-8") if not data.lstrip().startswith("<?xml") else _strip_decl(data)
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise XmlParseError("Expected XML bytes, got %s" % type(data).__name__, code="xml_parse",
                            params={"reason": "not_bytes"})
    if not data.strip():
        raise XmlParseError("The document is empty", params={"reason": "empty"})
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line, column = (exc.position if exc.position else (None, None))
        msg = exc.msg or str(exc)
        raise XmlParseError("Malformed XML at line %s, column %s: %s" % (line, column, msg),
                            params={"reason": "malformed", "line": line, "column": column, "detail": msg}) from None
    except ValueError as exc:  # e.g. unicode strings with encoding declaration
        raise XmlParseError("Malformed XML: %s" % exc, params={"reason": "malformed", "detail": str(exc)}) from None
    if root is None:
        raise XmlParseError("The document has no root element", params={"reason": "empty"})
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XmlParseError("Document type declarations (DOCTYPE/DTD) are not allowed",
                            params={"reason": "doctype"})
    return root


def _strip_decl(text):
    # A str cannot carry an encoding declaration for lxml; drop the declaration and encode as UTF-8.
    end = text.find("?>")
    return text[end + 2:].encode("utf-8") if end >= 0 else text.encode("utf-8")


def detect_form(xml):
    """Form of a document by its root namespace: 'FA3', 'FA2', 'FA_RR', 'PEF', 'PEF_KOR', 'UPO' or 'AUTH'.

    ``xml`` is bytes/str or an lxml element/tree. Raises :class:`XmlParseError` when the document is not
    well-formed or its namespace is not a known KSeF form (code ``xml_parse``, params ``reason`` =
    ``unknown_form`` and ``namespace``).
    """
    root = parse_xml(xml)
    qname = etree.QName(root)
    form = NAMESPACE_FORMS.get(qname.namespace or "")
    if form is None:
        raise XmlParseError("Unknown document type: root element %r in namespace %r" % (qname.localname,
                                                                                          qname.namespace),
                            params={"reason": "unknown_form", "namespace": qname.namespace,
                                    "root": qname.localname})
    return form


# ------------------------------------------------------------------------------------------------
# Pins, cache, download
# ------------------------------------------------------------------------------------------------

_pins_cache = {}


def load_pins(pin_file=None):
    """The pin file as a dict: ``base_url``, ``commit``, ``remote_imports``, ``files`` [{name, source, sha256}]."""
    path = pathlib.Path(pin_file or os.environ.get("KSEF_SCHEMA_PINS") or PIN_FILE)
    key = str(path)
    if key not in _pins_cache:
        try:
            _pins_cache[key] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaUnavailableError("Schema pin file %s cannot be read: %s" % (path, exc),
                                         params={"reason": "no_pin_file", "path": str(path)}) from None
    return _pins_cache[key]


def _remote_imports():
    try:
        return load_pins().get("remote_imports") or {}
    except SchemaUnavailableError:
        return {"http://crd.gov.pl/xml/schematy/dziedzinowe/mf/2022/01/05/eD/DefinicjeTypy/": "FA/bazowe/"}


def default_cache_dir(cache_dir=None):
    """The cache directory: the argument, else ``KSEF_SCHEMA_CACHE``, else ``~/.cache/ksef/schemas``."""
    return pathlib.Path(cache_dir or os.environ.get("KSEF_SCHEMA_CACHE") or DEFAULT_CACHE_DIR).expanduser()


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(65536), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_schemas(directory, pin_file=None):
    """Check every pinned file in ``directory``: list of ``(name, status)``, status ``ok|missing|mismatch``."""
    directory = pathlib.Path(directory)
    result = []
    for entry in load_pins(pin_file)["files"]:
        path = directory / entry["name"]
        if not path.is_file():
            result.append((entry["name"], "missing"))
        elif _sha256_file(path) != entry["sha256"]:
            result.append((entry["name"], "mismatch"))
        else:
            result.append((entry["name"], "ok"))
    return result


def _download(url, timeout):
    if not url.lower().startswith(("https://", "http://")):
        raise ValueError("only http(s) URLs are allowed")
    request = urllib.request.Request(url, headers={"User-Agent": "ksef-core schema fetch"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
        data = response.read(_MAX_SCHEMA_FILE + 1)
    if len(data) > _MAX_SCHEMA_FILE:
        raise ValueError("file too large")
    return data


def fetch_schemas(cache_dir=None, base_url=None, force=False, timeout=30, pin_file=None):
    """Download the pinned official schema files into the cache directory and verify their SHA-256.

    Files already present with the right hash are kept (unless ``force``). ``base_url`` replaces the
    pinned base URL (a mirror; the hashes are still enforced). Returns the cache directory. Raises
    :class:`SchemaUnavailableError` when a file cannot be downloaded or its hash does not match
    (``params['reason']`` is ``download_failed`` or ``sha256_mismatch``); nothing unverified is written.
    """
    pins = load_pins(pin_file)
    target = default_cache_dir(cache_dir)
    base = base_url or os.environ.get("KSEF_SCHEMA_BASE_URL") or pins["base_url"]
    if not base.endswith("/"):
        base += "/"
    for entry in pins["files"]:
        path = target / entry["name"]
        if not force and path.is_file() and _sha256_file(path) == entry["sha256"]:
            continue
        url = base + urllib.parse.quote(entry["source"])
        _logger.info("Downloading KSeF schema %s", url)
        try:
            data = _download(url, timeout)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise SchemaUnavailableError("Cannot download schema %s from %s: %s" % (entry["name"], url, exc),
                                         params={"reason": "download_failed", "file": entry["name"],
                                                 "url": url}) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry["sha256"]:
            raise SchemaUnavailableError(
                "Schema %s downloaded from %s has SHA-256 %s, expected %s; refusing it"
                % (entry["name"], url, actual, entry["sha256"]),
                params={"reason": "sha256_mismatch", "file": entry["name"], "url": url,
                        "expected": entry["sha256"], "actual": actual})
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return target


_verified_dirs = set()
_failed_fetch = {}  # cache dir -> (monotonic time, error) of the last failed download
FETCH_RETRY_SECONDS = 300
_state_lock = threading.RLock()


def schema_location(schema_dir=None, cache_dir=None, download=True):
    """Directory holding the schemas and where it came from: ``(Path, 'argument'|'env'|'cache')``.

    With ``download`` (default) a missing or damaged cache is (re)filled from the pinned URLs.
    """
    if schema_dir:
        return pathlib.Path(schema_dir), "argument"
    env_dir = os.environ.get("KSEF_SCHEMA_DIR")
    if env_dir:
        return pathlib.Path(env_dir), "env"
    target = default_cache_dir(cache_dir)
    with _state_lock:
        if str(target) not in _verified_dirs:
            bad = [name for name, status in verify_schemas(target) if status != "ok"]
            if bad:
                if not download:
                    raise SchemaUnavailableError(
                        "KSeF schemas are not in %s (%d file(s) missing or damaged); run `ksef schemas fetch`"
                        % (target, len(bad)), params={"reason": "not_cached", "path": str(target)})
                # Offline machines must not pay for a download attempt on every validation.
                failed = _failed_fetch.get(str(target))
                if failed and time.monotonic() - failed[0] < FETCH_RETRY_SECONDS:
                    raise failed[1]
                try:
                    fetch_schemas(target)
                except SchemaUnavailableError as exc:
                    _failed_fetch[str(target)] = (time.monotonic(), exc)
                    raise
                _failed_fetch.pop(str(target), None)
            _verified_dirs.add(str(target))
    return target, "cache"


# ------------------------------------------------------------------------------------------------
# Compiling
# ------------------------------------------------------------------------------------------------

class _Compiled:
    __slots__ = ("form", "lock", "repeatable", "schema", "types")

    def __init__(self, form, schema, types, repeatable):
        self.form = form
        self.schema = schema
        self.types = types
        self.repeatable = repeatable
        self.lock = threading.Lock()


_compiled = {}


def _load_xsd(path, base_dir):
    """Parse a main schema file, map remote imports to local files; returns (tree, types, repeatable)."""
    try:
        tree = etree.parse(str(path), _new_parser())
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchemaUnavailableError("Schema file %s cannot be read: %s" % (path, exc),
                                     params={"reason": "unreadable", "path": str(path)}) from None
    types, repeatable, done = {}, set(), set()
    remote = _remote_imports()
    for node in tree.iter("{%s}import" % _XSD, "{%s}include" % _XSD):
        location = node.get("schemaLocation") or ""
        for prefix, local in remote.items():
            if location.startswith(prefix):
                local_path = base_dir / local / location[len(prefix):]
                if not local_path.is_file():
                    raise SchemaUnavailableError("Schema file %s is missing" % local_path,
                                                 params={"reason": "missing", "path": str(local_path)})
                node.set("schemaLocation", local_path.resolve().as_uri())
                _collect_meta(local_path, types, repeatable, done)
                break
        else:
            if re.match(r"^[a-z]+://", location) and not location.startswith("file:"):
                raise SchemaUnavailableError("Schema %s refers to remote %s, which is not mapped locally"
                                             % (path.name, location),
                                             params={"reason": "remote_import", "url": location})
            if location:
                _collect_meta(pathlib.Path(path).parent / location, types, repeatable, done)
    _strip_regex_anchors(tree)
    _collect_meta_tree(tree, types, repeatable)
    return tree, types, repeatable


def _strip_regex_anchors(tree):
    """Drop ``^``/``$`` anchors from xsd:pattern values.

    The auth schema wraps the NipVatUe and PeppolId patterns in ``^...$``. XSD regexes are
    anchored implicitly and read ``^``/``$`` as literal characters, so valid identifiers would
    fail, while KSeF itself treats them as anchors and accepts them.
    """
    for node in tree.iter("{%s}pattern" % _XSD):
        value = node.get("value") or ""
        fixed = value[1:] if value.startswith("^") else value
        if fixed.endswith("$") and not fixed.endswith("\\$"):
            fixed = fixed[:-1]
        if fixed != value:
            node.set("value", fixed)


def _collect_meta(path, types, repeatable, done):
    key = str(pathlib.Path(path).resolve())
    if key in done:
        return
    done.add(key)
    try:
        tree = etree.parse(str(path), _new_parser())
    except (OSError, etree.XMLSyntaxError):
        return
    _collect_meta_tree(tree, types, repeatable)
    for node in tree.iter("{%s}include" % _XSD, "{%s}import" % _XSD):
        location = node.get("schemaLocation") or ""
        if location and "://" not in location:
            _collect_meta(pathlib.Path(path).parent / location, types, repeatable, done)


def _collect_meta_tree(tree, types, repeatable):
    """Remember named simple types' base types (for readable messages) and repeatable element names."""
    root = tree.getroot()
    tns = root.get("targetNamespace") or ""
    for simple in root.iter("{%s}simpleType" % _XSD):
        name = simple.get("name")
        if not name:
            continue
        restriction = simple.find("{%s}restriction" % _XSD)
        base = restriction.get("base") if restriction is not None else None
        if base:
            prefix, _, local = base.rpartition(":")
            base_ns = simple.nsmap.get(prefix or None, "")
            types["{%s}%s" % (tns, name)] = "{%s}%s" % (base_ns, local)
    for element in root.iter("{%s}element" % _XSD):
        max_occurs = element.get("maxOccurs")
        if max_occurs and max_occurs != "1" and element.get("name"):
            repeatable.add(element.get("name"))


def get_schema(form, schema_dir=None, cache_dir=None):
    """Compiled :class:`lxml.etree.XMLSchema` of a form ('FA3', 'FA2', 'FA_RR', 'PEF', 'PEF_KOR', 'UPO', 'AUTH').

    Cached per process. Raises :class:`SchemaUnavailableError` if the schemas cannot be found/downloaded.
    """
    return _get_compiled(form, schema_dir, cache_dir).schema


def _get_compiled(form, schema_dir=None, cache_dir=None):
    if form not in SCHEMA_FILES or form == "AUTH20":
        raise SchemaUnavailableError("Unknown form %r (known: %s)" % (form, ", ".join(FORM_NAMESPACES)),
                                     params={"reason": "unknown_form", "form": form})
    base_dir, _source = schema_location(schema_dir, cache_dir)
    key = (form, str(base_dir))
    compiled = _compiled.get(key)
    if compiled is not None:
        return compiled
    with _state_lock:
        compiled = _compiled.get(key)
        if compiled is None:
            path = base_dir / SCHEMA_FILES[form]
            if not path.is_file():
                raise SchemaUnavailableError("Schema file %s not found" % path,
                                             params={"reason": "missing", "path": str(path)})
            tree, types, repeatable = _load_xsd(path, base_dir)
            try:
                schema = etree.XMLSchema(tree)
            except etree.XMLSchemaParseError as exc:
                raise SchemaUnavailableError("Schema %s does not compile: %s" % (path, exc),
                                             params={"reason": "compile_failed", "path": str(path)}) from None
            compiled = _compiled[key] = _Compiled(form, schema, types, frozenset(repeatable))
            _logger.debug("Compiled KSeF schema %s from %s", form, path)
    return compiled


def clear_cache():
    """Forget compiled schemas and verified cache directories (tests, or after `ksef schemas fetch`)."""
    with _state_lock:
        _compiled.clear()
        _verified_dirs.clear()
        _failed_fetch.clear()
        _pins_cache.clear()
        _auth20.clear()


def repeatable_elements(form="FA3", schema_dir=None, cache_dir=None):
    """Names of elements declared with maxOccurs > 1 in the form's schema (they get ``[n]`` in paths)."""
    return _get_compiled(form, schema_dir, cache_dir).repeatable


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------

def validate_xsd(xml, form=None, schema_dir=None, cache_dir=None):
    """Validate a document against its official schema; returns a list of :class:`ValidationIssue`.

    ``xml``: bytes/str or an lxml element/tree. ``form``: expected form (default: detected from the root
    namespace; when given and the document has another namespace, that is reported as an issue).
    An ``AuthTokenRequest`` is checked without its enveloped ``ds:Signature`` (not declared by the XSD).
    Every issue has code ``xsd`` (``params['kind']`` tells which libxml2 check failed), the element path
    (e.g. ``Faktura/Fa/FaWiersz[3]/P_8B``), the offending value and English + Polish messages.
    A malformed document gives one issue with code ``xml_malformed``; an unknown root namespace one with
    code ``unknown_form``. Raises only :class:`SchemaUnavailableError` (schemas missing).
    """
    try:
        root = parse_xml(xml)
    except XmlParseError as exc:
        return [issue_from_parse_error(exc)]
    namespace = etree.QName(root).namespace or ""
    detected = NAMESPACE_FORMS.get(namespace)
    if form and form in FORM_NAMESPACES and detected != form and not (form == "AUTH" and namespace == AUTH20_NS):
        return [ValidationIssue(
            path=etree.QName(root).localname, code="unknown_form", value=namespace,
            message_en="The document is not %s: its root namespace is %r, expected %r"
                       % (form, namespace, FORM_NAMESPACES[form]),
            message_pl="Dokument nie jest w formacie %s: przestrzeń nazw elementu głównego to %r, oczekiwano %r"
                       % (form, namespace, FORM_NAMESPACES[form]),
            params={"expected_form": form, "namespace": namespace})]
    if detected is None:
        return [ValidationIssue(
            path=etree.QName(root).localname, code="unknown_form", value=namespace,
            message_en="Unknown document type (root namespace %r)" % namespace,
            message_pl="Nieznany rodzaj dokumentu (przestrzeń nazw %r)" % namespace,
            params={"namespace": namespace})]
    form = form or detected
    if detected == "AUTH":
        root = _without_signature(root)
    if namespace == AUTH20_NS:
        return _validate_auth20(root, schema_dir, cache_dir)
    compiled = _get_compiled(form, schema_dir, cache_dir)
    with compiled.lock:
        valid = compiled.schema.validate(root)
        entries = [] if valid else list(compiled.schema.error_log)
    if valid:
        return []
    return _issues_from_log(entries, root, compiled)


_DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"


def _without_signature(root):
    """AuthTokenRequest is validated without its enveloped ``ds:Signature`` (the XSD does not declare it)."""
    signatures = [c for c in root if isinstance(c.tag, str) and c.tag == "{%s}Signature" % _DSIG_NS]
    if not signatures:
        return root
    copy = etree.fromstring(etree.tostring(root), _parser())
    for child in list(copy):
        if isinstance(child.tag, str) and child.tag == "{%s}Signature" % _DSIG_NS:
            copy.remove(child)
    return copy


def issue_from_parse_error(exc):
    """The :class:`ValidationIssue` (code ``xml_malformed``) for an :class:`XmlParseError`."""
    params = dict(exc.params)
    return ValidationIssue(
        path="", code="xml_malformed", value=None,
        message_en=str(exc),
        message_pl="Dokument nie jest poprawnym XML-em%s: %s" % (
            " (wiersz %s, kolumna %s)" % (params.get("line"), params.get("column")) if params.get("line") else "",
            params.get("detail") or params.get("reason")),
        params=params)


_auth20 = {}


def _validate_auth20(root, schema_dir, cache_dir):
    # The 2.0 auth schema has regexes libxml2 rejects; xmlschema compiles it in "lax" mode.
    import xmlschema

    base_dir, _source = schema_location(schema_dir, cache_dir)
    key = str(base_dir)
    with _state_lock:
        schema = _auth20.get(key)
        if schema is None:
            schema = _auth20[key] = xmlschema.XMLSchema(str(base_dir / SCHEMA_FILES["AUTH20"]), validation="lax")
    issues = []
    for error in schema.iter_errors(etree.tostring(root)):
        steps = [p.split("}")[-1].split(":")[-1] for p in (error.path or "").strip("/").split("/") if p]
        path = "/".join(steps)
        element = steps[-1] if steps else "?"
        reason = str(error.reason or error.message)
        obj = getattr(error, "obj", None)
        issues.append(ValidationIssue(path=path, code="xsd", value=obj if isinstance(obj, str) else None,
                                      message_en="Element %s: %s" % (element, reason),
                                      message_pl="Element %s: niezgodność ze schematem: %s" % (element, reason),
                                      params={"kind": "xmlschema", "element": element}))
    return issues


_STEP_RE = re.compile(r"^(?P<name>[^\[]+)(?:\[(?P<index>\d+)\])?$")


def _node_from_path(root, path):
    """Follow a libxml2 node path (``/*/*[4]/*[16]/*[5]``, prefixed names, ``@attr``) from the root."""
    steps = [s for s in (path or "").split("/") if s]
    if not steps:
        return root, None
    node, attribute = None, None
    for position, step in enumerate(steps):
        if step.startswith("@"):
            attribute = step[1:]
            break
        m = _STEP_RE.match(step)
        if not m:
            return node, None
        name, index = m.group("name"), int(m.group("index") or 1)
        if position == 0:
            node = root
            continue
        if node is None:
            return None, None
        if name == "*":
            candidates = [c for c in node if isinstance(c.tag, str)]
        else:
            local = name.split(":")[-1]
            candidates = [c for c in node if isinstance(c.tag, str) and etree.QName(c).localname == local]
        if index > len(candidates):
            return node, None
        node = candidates[index - 1]
    return node, attribute


def element_path(node, repeatable=frozenset()):
    """``Faktura/Fa/FaWiersz[3]/P_8B``: local names; ``[n]`` (1-based) for repeatable or repeated elements."""
    parts = []
    while node is not None:
        local = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and etree.QName(c).localname == local]
            if len(same) > 1 or local in repeatable:
                local = "%s[%d]" % (local, same.index(node) + 1)
        parts.append(local)
        node = parent
    return "/".join(reversed(parts))


_QNAME_RE = re.compile(r"\{[^}\s]*[:/][^}\s]*\}")
_ELEMENT_RE = re.compile(r"^Element '(?P<element>[^']+)'(?:, attribute '(?P<attr>[^']+)')?: (?P<rest>.*)$", re.S)

_BUILTIN_WORDS = {
    "decimal": ("a valid decimal number (digits with a dot as the decimal separator)",
                "poprawną liczbą dziesiętną (cyfry, kropka jako separator dziesiętny)"),
    "date": ("a valid date (YYYY-MM-DD)", "poprawną datą (RRRR-MM-DD)"),
    "dateTime": ("a valid date and time (YYYY-MM-DDThh:mm:ss)", "poprawną datą i czasem (RRRR-MM-DDTgg:mm:ss)"),
    "integer": ("a valid whole number", "poprawną liczbą całkowitą"),
    "boolean": ("true or false", "wartością true lub false"),
    "string": ("valid text", "poprawnym tekstem"),
    "anyURI": ("a valid URI", "poprawnym adresem URI"),
    "base64Binary": ("valid Base64 data", "poprawnymi danymi Base64"),
    "gYear": ("a valid year (YYYY)", "poprawnym rokiem (RRRR)"),
    "time": ("a valid time (hh:mm:ss)", "poprawnym czasem (gg:mm:ss)"),
}
_INTEGER_TYPES = {"int", "integer", "long", "short", "byte", "nonNegativeInteger", "positiveInteger",
                  "unsignedByte", "unsignedInt", "unsignedShort", "unsignedLong", "nonPositiveInteger",
                  "negativeInteger"}


def _builtin_base(type_name, types):
    seen = 0
    while type_name in types and seen < 20:
        type_name = types[type_name]
        seen += 1
    local = type_name.split("}")[-1].split(":")[-1]
    if type_name.startswith("{%s}" % _XSD) or type_name.startswith("xs:") or type_name.startswith("xsd:"):
        if local in _INTEGER_TYPES:
            return "integer"
        return local
    return None


def _short(text, limit=120):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _enum_list(text, limit=12):
    values = re.findall(r"'([^']*)'", text)
    shown = ", ".join(values[:limit])
    if len(values) > limit:
        shown += ", … (%d values)" % len(values)
    return shown


def _explain(element, attr, rest, types, value_from_node):
    """English and Polish message, kind and value for one libxml2 schema error (text after ``Element 'X':``)."""
    what_en = "Element %s" % element + (", attribute %s" % attr if attr else "")
    what_pl = "Element %s" % element + (", atrybut %s" % attr if attr else "")
    rest = _QNAME_RE.sub("", rest).strip()
    m = re.match(r"^'(?P<value>.*)' is not a valid value of the (?:local )?atomic type(?: '(?P<type>[^']*)')?\.?$",
                 rest, re.S)
    if m:
        value = m.group("value")
        type_raw = m.group("type") or ""
        base = None
        for full, _base in types.items():
            if full.endswith("}" + type_raw):
                base = _builtin_base(full, types)
                break
        if base is None and type_raw:
            base = type_raw.split(":")[-1]
            base = "integer" if base in _INTEGER_TYPES else base
        words = _BUILTIN_WORDS.get(base or "", ("a valid value of type %s" % type_raw,
                                                "poprawną wartością typu %s" % type_raw))
        return ("%s: '%s' is not %s" % (what_en, _short(value), words[0]),
                "%s: '%s' nie jest %s" % (what_pl, _short(value), words[1]), "datatype", value)
    m = re.match(r"^\[facet '(?P<facet>\w+)'\] (?P<body>.*)$", rest, re.S)
    if m:
        facet, body = m.group("facet"), m.group("body")
        value_m = re.match(r"^The value '(?P<value>.*?)' ", body, re.S)
        value = value_m.group("value") if value_m else value_from_node
        if facet == "enumeration":
            allowed = _enum_list(body.split("set", 1)[-1])
            return ("%s: '%s' is not an allowed value (allowed: %s)" % (what_en, _short(value), allowed),
                    "%s: '%s' nie jest dozwoloną wartością (dozwolone: %s)" % (what_pl, _short(value), allowed),
                    "enumeration", value)
        if facet == "pattern":
            pattern = body.rsplit("pattern '", 1)[-1].rstrip("'.")
            return ("%s: '%s' does not have the required format (pattern %s)" % (what_en, _short(value), pattern),
                    "%s: '%s' nie ma wymaganego formatu (wzorzec %s)" % (what_pl, _short(value), pattern),
                    "pattern", value)
        if facet in ("maxLength", "minLength", "length"):
            nums = re.findall(r"'(\d+)'", body)
            actual, limit = [*nums, "?", "?"][:2]
            if facet == "maxLength":
                return ("%s: text is too long (%s characters, at most %s allowed)" % (what_en, actual, limit),
                        "%s: tekst jest za długi (%s znaków, dozwolone najwyżej %s)" % (what_pl, actual, limit),
                        facet, value_from_node)
            if facet == "minLength":
                return ("%s: text is too short (%s characters, at least %s required)" % (what_en, actual, limit),
                        "%s: tekst jest za krótki (%s znaków, wymagane co najmniej %s)" % (what_pl, actual, limit),
                        facet, value_from_node)
            return ("%s: text must have exactly %s characters (has %s)" % (what_en, limit, actual),
                    "%s: tekst musi mieć dokładnie %s znaków (ma %s)" % (what_pl, limit, actual),
                    facet, value_from_node)
        if facet == "fractionDigits":
            limit = re.findall(r"\('(\d+)'\)", body)
            limit = limit[0] if limit else "?"
            return ("%s: '%s' has too many decimal places (at most %s allowed)" % (what_en, _short(value), limit),
                    "%s: '%s' ma za dużo miejsc po przecinku (dozwolone najwyżej %s)" % (what_pl, _short(value),
                                                                                          limit),
                    facet, value)
        if facet == "totalDigits":
            limit = re.findall(r"\('(\d+)'\)", body)
            limit = limit[0] if limit else "?"
            return ("%s: '%s' has too many digits (at most %s allowed)" % (what_en, _short(value), limit),
                    "%s: '%s' ma za dużo cyfr (dozwolone najwyżej %s)" % (what_pl, _short(value), limit),
                    facet, value)
        if facet in ("minInclusive", "minExclusive", "maxInclusive", "maxExclusive"):
            limit = re.findall(r"\('([^']*)'\)", body)
            limit = limit[0] if limit else "?"
            rel_en = {"minInclusive": "less than the minimum %s", "minExclusive": "not greater than %s",
                      "maxInclusive": "greater than the maximum %s", "maxExclusive": "not less than %s"}[facet]
            rel_pl = {"minInclusive": "mniejsza niż minimum %s", "minExclusive": "nie większa niż %s",
                      "maxInclusive": "większa niż maksimum %s", "maxExclusive": "nie mniejsza niż %s"}[facet]
            return ("%s: '%s' is %s" % (what_en, _short(value), rel_en % limit),
                    "%s: wartość '%s' jest %s" % (what_pl, _short(value), rel_pl % limit), facet, value)
        return ("%s: '%s' violates the %s rule of the schema" % (what_en, _short(value), facet),
                "%s: '%s' narusza regułę %s schematu" % (what_pl, _short(value), facet), facet, value)
    m = re.match(r"^This element is not expected\.(?: Expected is(?: one of)? \( (?P<expected>.*) \)\.)?$", rest, re.S)
    if m:
        expected = ", ".join(x.strip() for x in (m.group("expected") or "").split(",") if x.strip())
        if expected:
            return ("%s is not allowed here; expected %s (a mandatory element may be missing or elements are "
                    "in the wrong order)" % (what_en, expected),
                    "%s nie jest tu dozwolony; oczekiwano %s (brak wymaganego elementu lub zła kolejność)"
                    % (what_pl, expected), "unexpected_element", None)
        return ("%s is not allowed here" % what_en, "%s nie jest tu dozwolony" % what_pl, "unexpected_element", None)
    m = re.match(r"^Missing child element\(s\)\. Expected is(?: one of)? \( (?P<expected>.*) \)\.$", rest, re.S)
    if m:
        expected = ", ".join(x.strip() for x in m.group("expected").split(","))
        return ("%s: missing mandatory child element(s): %s" % (what_en, expected),
                "%s: brak wymaganego elementu podrzędnego: %s" % (what_pl, expected), "missing_element", None)
    m = re.match(r"^The (?:actual )?value '(?P<value>.*)' does not match the fixed value constraint "
                 r"'(?P<fixed>.*)'\.$", rest, re.S)
    if m:
        return ("%s: must be '%s', not '%s'" % (what_en, m.group("fixed"), _short(m.group("value"))),
                "%s: musi mieć wartość '%s', a nie '%s'" % (what_pl, m.group("fixed"), _short(m.group("value"))),
                "fixed_value", m.group("value"))
    m = re.match(r"^The attribute '(?P<a>[^']+)' is not allowed\.$", rest)
    if m:
        return ("%s: attribute %s is not allowed" % ("Element %s" % element, m.group("a")),
                "%s: atrybut %s jest niedozwolony" % ("Element %s" % element, m.group("a")), "attribute", None)
    m = re.match(r"^The attribute '(?P<a>[^']+)' is required but missing\.$", rest)
    if m:
        return ("Element %s: mandatory attribute %s is missing" % (element, m.group("a")),
                "Element %s: brak wymaganego atrybutu %s" % (element, m.group("a")), "attribute", None)
    if rest.startswith("Character content other than whitespace is not allowed"):
        return ("%s: text is not allowed directly inside this element (only child elements)" % what_en,
                "%s: w tym elemencie nie może być tekstu (tylko elementy podrzędne)" % what_pl, "text_content",
                None)
    if rest.startswith("No matching global declaration available for the validation root"):
        return ("%s is not the root element of this schema" % what_en,
                "%s nie jest elementem głównym tego schematu" % what_pl, "root", None)
    if "is not a valid value of" in rest or "is not valid" in rest:
        return ("%s: %s" % (what_en, rest), "%s: nieprawidłowa wartość (%s)" % (what_pl, rest), "datatype",
                value_from_node)
    return ("%s: %s" % (what_en, rest), "%s: niezgodność ze schematem (%s)" % (what_pl, rest), "other", None)


def _issues_from_log(entries, root, compiled):
    issues = []
    seen = set()
    value_kinds = set()
    for entry in entries:
        message = entry.message or ""
        node, attribute = _node_from_path(root, entry.path)
        m = _ELEMENT_RE.match(message)
        if m:
            element = _QNAME_RE.sub("", m.group("element"))
            attr = m.group("attr") or attribute
            rest = m.group("rest")
        else:
            element, attr, rest = (etree.QName(node).localname if node is not None else "?"), attribute, message
        if node is not None:
            path = element_path(node, compiled.repeatable)
            if attr:
                path += "/@" + attr
            node_value = node.get(attr) if attr else (node.text if len(node) == 0 else None)
        else:
            path, node_value = element, None
        message_en, message_pl, kind, value = _explain(element, attr, rest, compiled.types, node_value)
        # One value problem per field is enough (libxml2 reports e.g. fractionDigits and pattern together).
        value_error = kind not in ("unexpected_element", "missing_element", "attribute", "text_content", "root")
        if value_error:
            if path in value_kinds:
                continue
            value_kinds.add(path)
        key = (path, message_en)
        if key in seen:
            continue
        seen.add(key)
        issues.append(ValidationIssue(path=path, code="xsd", message_en=message_en, message_pl=message_pl,
                                      value=value, severity="error",
                                      params={"kind": kind, "element": element, "line": entry.line}))
    return issues
