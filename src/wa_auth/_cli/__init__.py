"""`wa-auth`: the thin command-line front door for scripts and n8n.

`send`, `check` and `classify` read their input, call the library (the guard, the client,
the classifier) and print JSON lines; `sandbox` serves the Graph API simulator, and `serve`
the same commands over local HTTP (`wa_auth._cli._serve`). No policy lives here: every
decision is the guard's or the classifier's, and the CLI only prints it (the line shapes are
`wa_auth._cli._output`, the exit codes `wa_auth._cli._codes`). `main()` turns any failure into
one JSON line and an exit code, never a traceback.

Commands import their modules lazily, so `wa-auth --version` imports neither httpx, attrs nor
the sandbox.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from wa_auth._version import package_version

__all__ = ["main"]

_TRUE = frozenset({"1", "true", "yes", "on"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code.

    With `--exit-zero` (or `WA_AUTH_EXIT_ZERO=1`) the code is always 0 and the JSON carries
    `exit_code`, because n8n's Execute Command node drops stdout when a command exits non-zero.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        # The cold-start path: nothing but the version's metadata lookup.
        sys.stdout.write(json.dumps({"version": package_version()}) + "\n")
        return 0
    exit_zero = (
        "--exit-zero" in args[: args.index("--")] if "--" in args else "--exit-zero" in args
    ) or os.environ.get("WA_AUTH_EXIT_ZERO", "").strip().lower() in _TRUE
    try:
        code = _run(args)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (already printed)
        code = exc.code if isinstance(exc.code, int) else 2
    return 0 if exit_zero else code


def _run(argv: list[str]) -> int:
    from wa_auth._cli import _codes
    from wa_auth._cli._config import ARGV_REFUSAL, refused_secret_flag
    from wa_auth._cli._output import command_error, write

    secret = refused_secret_flag(argv)
    if secret is not None:
        write(command_error(_codes.USAGE_CATEGORY, ARGV_REFUSAL.format(flag=secret)))
        return _codes.USAGE

    from wa_auth._cli import _parser

    parser = _parser.build()
    args = parser.parse_args(argv)
    if args.version:
        write({"version": package_version()})
        return _codes.OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return _codes.USAGE
    if args.command == "sandbox":
        from wa_auth._cli import _sandbox

        return _sandbox.run(args)
    try:
        return _dispatch(args)
    except Exception as exc:  # noqa: BLE001 - the contract: a JSON line, never a traceback
        return _failed(exc)


def _dispatch(args: object) -> int:
    command = getattr(args, "command", None)
    if command == "send":
        from wa_auth._cli import _send

        return _send.run(args)  # type: ignore[arg-type]
    if command == "check":
        from wa_auth._cli import _check

        return _check.run(args)  # type: ignore[arg-type]
    if command == "outbox":
        from wa_auth._cli import _outbox

        return _outbox.run(args)  # type: ignore[arg-type]
    if command == "serve":
        from wa_auth._cli import _serve

        return _serve.run(args)  # type: ignore[arg-type]
    from wa_auth._cli import _classify

    return _classify.run(args)  # type: ignore[arg-type]


def _failed(exc: Exception) -> int:
    """Print the line of a command that failed as a whole; return its exit code."""
    from wa_auth._cli import _codes
    from wa_auth._cli._output import command_error, write
    from wa_auth._redact import redact_text
    from wa_auth.errors import ConfigurationError, WhatsAppError

    retryable = False
    if isinstance(exc, ConfigurationError):
        category, message = _codes.USAGE_CATEGORY, exc.message
    elif isinstance(exc, WhatsAppError):
        category, message, retryable = exc.category, exc.message, bool(exc.retryable)
    else:
        category = _codes.INTERNAL_CATEGORY
        message = f"internal error (please report it): {type(exc).__name__}: {exc}"
    line = command_error(category, redact_text(message))
    line["error"]["retryable"] = retryable  # a full disk or a lock: the same command works later
    write(line)
    return _codes.for_category(category)
