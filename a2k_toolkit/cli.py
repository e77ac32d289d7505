"""The ``a2k`` command line. Each subcommand lives in ``a2k_toolkit/commands/<name>.py`` and exposes
``add_parser(subparsers)``, which registers its parser and sets ``func`` (taking the parsed args, returning an exit
code). User errors (:class:`~a2k_toolkit.errors.A2KError`) print one line and exit 2; no traceback."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from . import __version__
from .errors import A2KError

COMMAND_MODULES = (
    "a2k_toolkit.commands.generate",
    "a2k_toolkit.commands.plugins",
    "a2k_toolkit.commands.config",
    "a2k_toolkit.commands.eval",
    "a2k_toolkit.commands.voices",
    "a2k_toolkit.commands.dub",
    "a2k_toolkit.commands.train",
    "a2k_toolkit.commands.ensemble",
    "a2k_toolkit.commands.dataset",
    "a2k_toolkit.commands.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a2k",
        description="a2k-toolkit: speech + one face image -> 68-point facial keypoints at 25 fps -> video.",
    )
    parser.add_argument("--version", action="version", version=f"a2k-toolkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in COMMAND_MODULES:
        importlib.import_module(modname).add_parser(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    warnings.formatwarning = _format_warning
    try:
        return int(args.func(args) or 0)
    except A2KError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
