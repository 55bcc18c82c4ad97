"""``ksef schemas fetch|where|verify``: the official XSD set (pinned, SHA-256 checked)."""
import os

from .. import schemas


def register(subparsers):
    parser = subparsers.add_parser("schemas", help="official KSeF XML schemas: download, locate, verify")
    sub = parser.add_subparsers(dest="schemas_command", metavar="ACTION", required=True)
    fetch = sub.add_parser("fetch", help="download the pinned official schemas into the cache and check SHA-256")
    fetch.add_argument("--cache", metavar="DIR", help="cache directory (default: $KSEF_SCHEMA_CACHE or "
                                                      "~/.cache/ksef/schemas)")
    fetch.add_argument("--base-url", metavar="URL", help="mirror to download from instead of the pinned URL "
                                                         "(hashes are still enforced)")
    fetch.add_argument("--force", action="store_true", help="download again even if the cached files are fine")
    fetch.set_defaults(func=_fetch)
    where = sub.add_parser("where", help="show which schema directory is used")
    where.add_argument("--cache", metavar="DIR")
    where.set_defaults(func=_where)
    verify = sub.add_parser("verify", help="check the schema files against the pinned SHA-256 and compile them")
    verify.add_argument("--dir", metavar="DIR", help="directory to check (default: the one `where` shows)")
    verify.add_argument("--cache", metavar="DIR")
    verify.set_defaults(func=_verify)


def _fetch(args):
    target = schemas.fetch_schemas(args.cache, base_url=args.base_url, force=args.force)
    pins = schemas.load_pins()
    print("%d schema files verified in %s (CIRFMF/ksef-docs @ %s)" % (len(pins["files"]), target,
                                                                       pins["commit"][:12]))
    schemas.clear_cache()
    return 0


def _where(args):
    env_dir = os.environ.get("KSEF_SCHEMA_DIR")
    if env_dir:
        print("%s (from KSEF_SCHEMA_DIR)" % env_dir)
        return 0
    target = schemas.default_cache_dir(args.cache)
    statuses = schemas.verify_schemas(target)
    bad = sum(status != "ok" for _name, status in statuses)
    state = "complete" if not bad else "%d of %d files missing or damaged; run `ksef schemas fetch`" % (
        bad, len(statuses))
    print("%s (cache, %s)" % (target, state))
    return 0 if not bad else 1


def _verify(args):
    directory = args.dir
    if not directory:
        directory = os.environ.get("KSEF_SCHEMA_DIR") or str(schemas.default_cache_dir(args.cache))
    failed = 0
    for name, status in schemas.verify_schemas(directory):
        if status != "ok":
            failed += 1
            print("%-8s %s" % (status.upper(), name))
    if failed:
        print("%d file(s) missing or not matching the pinned SHA-256 in %s" % (failed, directory))
        return 1
    for form in ("FA3", "FA2", "FA_RR", "UPO", "AUTH", "PEF", "PEF_KOR"):
        schemas.get_schema(form, schema_dir=directory)
    print("all pinned schema files match and compile (%s)" % directory)
    return 0
