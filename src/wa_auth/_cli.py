"""`wa-auth`: the thin command-line front door (JSON out, one exit code per category)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wa-auth")
    except PackageNotFoundError:
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wa-auth", description="WhatsApp Cloud API tokens as a managed state."
    )
    parser.add_argument("--version", action="store_true", help="print the version as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    if args.version:
        sys.stdout.write(json.dumps({"version": _version()}) + "\n")
        return 0
    _parser().print_help(sys.stderr)
    return 2
