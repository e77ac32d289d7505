"""The ``a2k`` command line. Each subcommand lives in ``a2k_toolkit/commands/<name>.py`` and exposes
``add_parser(subparsers)``, which registers its parser and sets ``func`` (taking the parsed args, returning an exit
code). User errors (:class:`~a2k_toolkit.errors.A2KError`) print one line and exit 2; no traceback."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import warnings

from . import __version__
from .errors import A2KError

COMMAND_MODULES = (
    "a2k_toolkit.commands.generate",
    "a2k_toolkit.commands.convert",
    "a2k_toolkit.commands.plugins",
    "a2k_toolkit.commands.config",
    "a2k_toolkit.commands.eval",
    "a2k_toolkit.commands.voices",
    "a2k_toolkit.commands.dub",
    "a2k_toolkit.commands.stream",
    "a2k_toolkit.commands.serve",
    "a2k_toolkit.commands.train",
    "a2k_toolkit.commands.ensemble",
    "a2k_toolkit.commands.mouth_prior",
    "a2k_toolkit.commands.export",
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and systemd send), raised like Ctrl-C so that every ``finally`` and cleanup
    runs: temporaries are removed and child processes killed, the previous outputs stay as they were."""


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def _sigterm_raises():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    warnings.formatwarning = _format_warning
    try:
        with _sigterm_raises():
            return int(args.func(args) or 0)
    except A2KError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
