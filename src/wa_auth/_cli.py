"""`wa-auth`: the thin command-line front door: `--version` and `sandbox` (JSON out).

Commands import their modules lazily, so `wa-auth --version` imports neither httpx nor the
sandbox.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from wa_auth._version import package_version

#: Exit code of bad input (arguments, a tokens file, an address that cannot be bound).
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print one JSON error line on stderr and return *code*; never a traceback."""
    error = {"ok": False, "error": {"category": "invalid_request", "message": message}}
    sys.stderr.write(json.dumps(error) + "\n")
    sys.stderr.flush()
    return code


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports bad arguments as a JSON line, like every other error."""

    def error(self, message: str) -> NoReturn:
        """Print the usage error as JSON on stderr and exit with `EXIT_USAGE`."""
        raise SystemExit(_fail(f"{self.prog}: {message}"))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wa-auth", description="WhatsApp Cloud API tokens as a managed state.")
    parser.add_argument("--version", action="store_true", help="print the version as JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sandbox = commands.add_parser(
        "sandbox",
        help="run a local Graph API simulator until Ctrl-C or SIGTERM",
        description=(
            "Serve a local Graph API simulator. Prints one JSON line (base_url, ids, demo "
            "tokens), then serves until Ctrl-C or SIGTERM. Change its state through the admin "
            "API under {base_url}/_sandbox/ (see docs/sandbox.md)."
        ),
    )
    sandbox.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    sandbox.add_argument("--tokens", metavar="FILE", help="JSON tokens file (docs/sandbox.md)")
    sandbox.add_argument("--seed", type=int, help="seed of every random choice (reproducible)")
    sandbox.add_argument(
        "--freeze-clock",
        action="store_true",
        help="the sandbox clock moves only through the admin API's advance",
    )
    return parser


def _sandbox(args: argparse.Namespace) -> int:
    import signal
    import threading

    from wa_auth.sandbox import Sandbox

    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be 0-65535, got {args.port}")
    try:
        sandbox = Sandbox(
            host=args.host,
            port=args.port,
            tokens=args.tokens,
            seed=args.seed,
            freeze_clock=args.freeze_clock,
        )
    except ValueError as exc:
        return _fail(f"--tokens {args.tokens}: {exc}")
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sandbox.start()
        except OSError as exc:
            return _fail(f"cannot bind {args.host}:{args.port}: {exc.strerror or exc}")
        try:
            info = sandbox.info()
            line = {
                key: info[key]
                for key in (
                    "base_url",
                    "admin_url",
                    "phone_number_id",
                    "phone_number_ids",
                    "business_account_id",
                    "app_id",
                    "app_token",
                    "seed",
                )
            }
            line["tokens"] = [
                {
                    "name": t.name,
                    "token": t.value,
                    "fingerprint": t.fingerprint,
                    "kind": t.kind,
                    "scopes": list(t.scopes),
                    "expires_at": t.expires_at,
                }
                for t in sandbox.tokens()
            ]
            # Flushed at once: a parent reading a pipe must see it without PYTHONUNBUFFERED.
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
        finally:
            sandbox.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        sys.stdout.write(json.dumps({"version": package_version()}) + "\n")
        return 0
    if args.command == "sandbox":
        return _sandbox(args)
    parser.print_help(sys.stderr)
    return EXIT_USAGE
