"""Command line of the KSeF core: ``python -m ksef`` or the ``ksef`` console script.

Each area registers its sub-commands in ``ksef/commands/<area>.py`` with a function
``register(subparsers)``; a sub-command sets ``func`` (``args -> exit code``) on its parser.
"""
import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import KsefError

COMMAND_MODULES = ("fa3", "number", "qr", "calendar", "schemas", "api", "sandbox")


def build_parser():
    parser = argparse.ArgumentParser(prog="ksef", description="KSeF 2.0 tools (FA(3), API client, sandbox).")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(".commands.%s" % name, __package__)
        except ModuleNotFoundError as exc:
            if exc.name == "%s.commands.%s" % (__package__, name):
                continue  # area not installed
            raise
        module.register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args) or 0
    except KsefError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
