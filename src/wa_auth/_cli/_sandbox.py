"""`wa-auth sandbox`: serve the Graph API simulator until Ctrl-C or SIGTERM (one JSON line out)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from wa_auth._cli import _codes
from wa_auth._cli._output import command_error, write

_INFO_KEYS = (
    "base_url",
    "admin_url",
    "phone_number_id",
    "phone_number_ids",
    "business_account_id",
    "app_id",
    "app_token",
    "seed",
)


def _fail(message: str) -> int:
    """Print a usage error on stderr (stdout carries only the info line) and return its code."""
    write(command_error(_codes.USAGE_CATEGORY, message), sys.stderr)
    return _codes.USAGE


def run(args: argparse.Namespace) -> int:
    """Serve the sandbox; return the exit code."""
    from wa_auth.sandbox import MAX_PHONE_NUMBERS, Sandbox

    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be 0-65535, got {args.port}")
    if not 1 <= args.phone_numbers <= MAX_PHONE_NUMBERS:
        return _fail(f"--phone-numbers must be 1 to {MAX_PHONE_NUMBERS}, got {args.phone_numbers}")
    try:
        sandbox = Sandbox(
            host=args.host,
            port=args.port,
            tokens=args.tokens,
            seed=args.seed,
            freeze_clock=args.freeze_clock,
            phone_numbers=args.phone_numbers,
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
            line = {key: info[key] for key in _INFO_KEYS}
            line["tokens"] = [
                {
                    "id": t.id,
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
            write(line)
            while not stop.wait(0.5):
                pass
        finally:
            sandbox.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return _codes.OK
