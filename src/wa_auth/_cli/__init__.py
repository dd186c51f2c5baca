"""`wa-auth`: the thin command-line front door for scripts and n8n.

`send`, `check` and `classify` read their input, call the library (the guard, the client,
the classifier) and print JSON lines; `sandbox` serves the Graph API simulator, and `serve`
the same commands over local HTTP (`wa_auth._cli._serve`); `outbox` and `state` show and
repair what runs left behind. No policy lives here: every decision is the guard's or the
classifier's, and the CLI only prints it (the line shapes are `wa_auth._cli._output`, the exit
codes `wa_auth._cli._codes`). `main()` turns any failure into one JSON line and an exit code,
never a traceback; a usage error never shows a value (`wa_auth._cli._usage`), no line shows a
secret-named variable's value (`wa_auth._cli._secrets`), and wa_auth's log records reach
stderr (`wa_auth._cli._log`).

Commands import their modules lazily, so `wa-auth --version` imports neither httpx, attrs nor
the sandbox.
"""

from __future__ import annotations

import itertools
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
    For the run, stdout and stderr never show the value of a variable whose name says TOKEN,
    KEY or SECRET (`wa_auth._cli._secrets`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        # The cold-start path: nothing but the version's metadata lookup.
        sys.stdout.write(json.dumps({"version": package_version()}) + "\n")
        return 0
    options = args[: args.index("--")] if "--" in args else args
    exit_zero = "--exit-zero" in options or (
        os.environ.get("WA_AUTH_EXIT_ZERO", "").strip().lower() in _TRUE
    )
    text = "--format=text" in options or any(
        a == "--format" and b == "text" for a, b in itertools.pairwise(options)
    )
    from wa_auth._cli._secrets import scrubbed_output

    with scrubbed_output(os.environ, args):
        try:
            code = _run(args, text=text)
        except SystemExit as exc:  # argparse's --help (0)
            code = exc.code if isinstance(exc.code, int) else 2
    return 0 if exit_zero else code


def _run(argv: list[str], *, text: bool) -> int:
    from wa_auth._cli import _codes
    from wa_auth._cli._config import ARGV_REFUSAL, refused_secret_flag

    secret = refused_secret_flag(argv)
    if secret is not None:
        return _usage_failed(ARGV_REFUSAL.format(flag=secret), text=text)

    from wa_auth._cli import _parser

    parser = _parser.build(argv)
    try:
        args = parser.parse_args(argv)
        _parser.check(args)
    except _parser.UsageError as exc:
        return _usage_failed(exc.message, text=text, to_stderr=exc.to_stderr)
    if args.version:
        from wa_auth._cli._output import write

        write({"version": package_version()})
        return _codes.OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return _codes.USAGE
    if args.command == "sandbox":
        from wa_auth._cli import _sandbox

        return _sandbox.run(args)
    from wa_auth._cli._log import logging_to_stderr

    with logging_to_stderr(verbose=bool(getattr(args, "verbose", False))):
        try:
            return _dispatch(args)
        except Exception as exc:  # noqa: BLE001 - the contract: a JSON line, never a traceback
            return _failed(exc, text=text)


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
    if command == "state":
        from wa_auth._cli import _state

        return _state.run(args)  # type: ignore[arg-type]
    if command == "webhook":
        from wa_auth._cli import _webhook

        return _webhook.run(args)  # type: ignore[arg-type]
    from wa_auth._cli import _classify

    return _classify.run(args)  # type: ignore[arg-type]


def _usage_failed(message: str, *, text: bool, to_stderr: bool = False) -> int:
    """Print a usage error (as JSON, or a sentence with `--format text`); return exit 2."""
    from wa_auth._cli import _codes

    return _print_error(_codes.USAGE_CATEGORY, message, text=text, to_stderr=to_stderr)


def _failed(exc: Exception, *, text: bool = False) -> int:
    """Print the line of a command that failed as a whole; return its exit code."""
    from wa_auth._cli import _codes
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
    # A full disk or a lock is retryable: the same command works later.
    return _print_error(category, redact_text(message), text=text, retryable=retryable)


def _print_error(
    category: str, message: str, *, text: bool, to_stderr: bool = False, retryable: bool = False
) -> int:
    """Print a command's error; return the category's exit code.

    The error is one JSON line on stdout (stderr for `sandbox`), or with `--format text` a
    sentence for a person on stderr.
    """
    from wa_auth._cli import _codes
    from wa_auth._cli._output import command_error, write

    code = _codes.for_category(category)
    if text:
        sys.stderr.write(f"{message} [{category}, exit {code}]\n")
        sys.stderr.flush()
    else:
        line = command_error(category, message)
        line["error"]["retryable"] = retryable
        write(line, sys.stderr if to_stderr else None)
    return code
