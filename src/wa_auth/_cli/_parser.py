"""The argument parser of `wa-auth`: every command, flag and help example, and nothing else.

argparse (not a framework) keeps the cold start small. The parser class (`_usage.Parser`)
turns every refusal into a usage error that shows no value, and the flags' types refuse a bad
value with a fixed reason; abbreviations are off, so `--tok` can never be taken for
`--token-file`. The help names the project's documentation by its URL (the package's
metadata), since a pip install does not carry the docs.

This module builds the parser and its commands that send, check and classify; the
operators' commands (outbox, state, sandbox, serve) are `_admin_parsers`, and the option
groups they all share are `_options`.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from wa_auth._cli._options import common, docs_url, output_options
from wa_auth._cli._usage import (
    Parser,
    UsageError,
    days,
    http_status,
    positive_int,
    rate,
    seconds,
    unix_time,
)

__all__ = ["Parser", "UsageError", "build", "check", "docs_url"]


def _exit_codes() -> str:
    from wa_auth._cli import _codes

    lines, line = [], "Exit codes:"
    for code, name in _codes.NAMES.items():
        entry = f" {code} {name}{'.' if code == max(_codes.NAMES) else ','}"
        if len(line) + len(entry) > 92:
            lines.append(line)
            line = " "
        line += entry
    return "\n".join([*lines, line])


def _epilog() -> str:
    return f"""\
examples:
  wa-auth send --to +15551234567 --text "Your order shipped"
  wa-auth send --input intents.jsonl
  wa-auth send --input-b64 "$INTENT_B64" --exit-zero     # from an n8n Execute Command node
  wa-auth check --warn-days 14
  wa-auth classify < error.json
  wa-auth state list --state state.db
  wa-auth sandbox --port 8765
  wa-auth serve --outbox outbox.db                      # n8n's HTTP Request and Code nodes
  wa-auth webhook verify --input body.json --signature "$SIG"   # exit 13: not Meta's

The token comes from the environment (WA_ACCESS_TOKEN, WA_TOKEN_FILE or WA_VAULT_*), never
from an argument. Output is JSON lines on stdout.
{_exit_codes()}
Documentation: {docs_url("cli.md")}
"""


def _send_epilog() -> str:
    return f"""\
examples:
  wa-auth send --to +15551234567 --text "Your order shipped" --idempotency-key order-42
  wa-auth send --to +15551234567 --template order_update --lang en_US --param 42 --param Friday
  wa-auth send --input intents.jsonl --concurrency 32
  wa-auth send --input-b64 "$(printf %s "$INTENT_JSON" | base64 -w0)"

An input line is an intent: {{"to": "+15551234567", "type": "text", "text": {{"body": "hi"}},
"idempotency_key": "order-42"}} ({docs_url("guards.md")}). One JSON result line per input, in
input order; a summary line on stderr.
"""


_CHECK_EPILOG: Final = """\
examples:
  wa-auth check
  wa-auth check --warn-days 14 --format text

Exit codes: 0 healthy, 12 valid but expiring within --warn-days, 3/4 expired/revoked,
5 a missing scope or asset, 6 the number or account cannot send. A valid token loses any
verdict a send recorded against it (a state file's too).
"""

_CLASSIFY_EPILOG: Final = """\
examples:
  wa-auth classify < graph-error.json
  wa-auth classify --input n8n-error.json --format text

The input is a Graph API error body ({"error": {...}}), or the error output of n8n's
WhatsApp node or HTTP Request node.
"""


def check(args: argparse.Namespace) -> None:
    """Refuse flags that the rest of the command line leaves without effect.

    Raises:
        UsageError: A flag would be silently ignored (`--caption` with `--text`, ...).
    """
    if getattr(args, "command", None) != "send":
        return
    kind = next((k for k in ("text", "template", "image", "document") if getattr(args, k)), None)
    pairs = (
        (
            "--caption",
            args.caption is not None,
            kind in {"image", "document"},
            "--image or --document",
        ),
        ("--filename", args.filename is not None, kind == "document", "--document"),
        ("--preview-url", args.preview_url, kind == "text", "--text"),
        ("--param", bool(args.param), kind == "template", "--template"),
        ("--lang", args.lang is not None, kind == "template", "--template"),
    )
    for flag, given, fits, needs in pairs:
        if given and not fits:
            raise UsageError(
                f"wa-auth send: {flag} goes with {needs} only; here it would be ignored"
            )


#: The commands, in the order `wa-auth --help` lists them.
COMMANDS: Final = (
    "send",
    "check",
    "classify",
    "outbox",
    "state",
    "sandbox",
    "serve",
    "webhook",
)


def build(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Return the parser of `wa-auth` and its commands.

    When *argv* names a command first (`send ...`), only that command's parser is built: the
    others' (serve's reads `_cli._serve`) cost a one-message send nothing. Any other command
    line (`--help`, a typo) gets every command, so the help and the errors list them all.
    """
    parser = Parser(
        prog="wa-auth",
        description="WhatsApp Cloud API tokens as a managed state: send, check, classify.",
        lazy_epilog=_epilog,
    )
    parser.add_argument("--version", action="store_true", help="print the version as JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    builders = {"send": _send, "check": _check, "classify": _classify}
    for name in COMMANDS:
        if only is None or name == only:
            (builders.get(name) or _operators(name))(commands)
    return parser


def _operators(name: str) -> Any:
    """The builder of an operator's command's parser, whose modules a send does not import."""
    from wa_auth._cli import _admin_parsers, _webhook_parsers

    return _webhook_parsers.webhook if name == "webhook" else getattr(_admin_parsers, name)


def _send(commands: argparse._SubParsersAction[Parser]) -> None:
    p = commands.add_parser(
        "send",
        help="send one message from flags, or many intents as JSON lines",
        description=(
            "Send through the guard (retries, pacing, pauses, the outbox): one message from "
            "flags, intents as JSON lines from --input FILE or stdin, or one intent as "
            "--input-b64. Never interpolate message text into a command line: pass it as "
            "--input-b64 or in a file."
        ),
        lazy_epilog=_send_epilog,
    )
    m = p.add_argument_group("one message from flags")
    m.add_argument("--to", metavar="PHONE", help="recipient, international format")
    kind = m.add_mutually_exclusive_group()
    kind.add_argument("--text", metavar="TEXT", help="a text message")
    kind.add_argument("--template", metavar="NAME", help="an approved template")
    kind.add_argument("--image", metavar="LINK", help="an image by URL")
    kind.add_argument("--document", metavar="LINK", help="a document by URL")
    m.add_argument("--preview-url", action="store_true", help="text: show a link preview")
    m.add_argument(
        "--lang", metavar="CODE", help="template language (with --template; default: en_US)"
    )
    m.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="TEXT",
        help="template body parameter (repeat, in order)",
    )
    m.add_argument("--caption", metavar="TEXT", help="image/document caption")
    m.add_argument("--filename", metavar="NAME", help="document file name")
    m.add_argument("--idempotency-key", metavar="KEY", help="your id for the message")
    m.add_argument(
        "--not-after", type=unix_time, metavar="UNIX", help="deadline: never send after it"
    )
    src = p.add_argument_group("many intents").add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE", help="JSON lines (or a JSON array); - for stdin")
    src.add_argument("--input-b64", metavar="B64", help="one intent, the base64 of its JSON (n8n)")
    g = p.add_argument_group("guard")
    g.add_argument(
        "--concurrency", type=positive_int, default=16, metavar="N", help="sends in flight"
    )
    g.add_argument("--budget", type=seconds, default=30.0, metavar="S", help="seconds per intent")
    g.add_argument(
        "--max-attempts", type=positive_int, default=4, metavar="N", help="sends per intent"
    )
    g.add_argument(
        "--rate",
        type=rate,
        metavar="N",
        help=(
            "pace to N messages/s per number (and Meta's pair interval); default: unpaced, "
            "but a 130429 holds the number for its Retry-After"
        ),
    )
    g.add_argument(
        "--outbox",
        metavar="PATH|URL",
        help=(
            "outbox: every intent recorded before its send: a SQLite file (PATH, sqlite:///PATH) "
            "or postgresql://... (WA_AUTH_OUTBOX)"
        ),
    )
    _transport(p, "of a one-message send", "; a batch goes over the asyncio client either way")
    common(p)


def _transport(p: argparse.ArgumentParser, what: str, more: str = "") -> None:
    p.add_argument(
        "--transport",
        choices=("stdlib", "httpx"),
        default="stdlib",
        help=(
            f"the HTTP {what}: the standard library's http.client (default: the quickest "
            f"start) or httpx{more}"
        ),
    )


def _check(commands: argparse._SubParsersAction[Parser]) -> None:
    p = commands.add_parser(
        "check",
        help="token health: valid, expiry, scopes, WABA and number access",
        description=(
            "Ask Meta about the token (debug_token, with WA_APP_TOKEN when set) and probe the "
            "phone number: valid, expires in, scopes, missing scopes, WABA and number access."
        ),
        epilog=_CHECK_EPILOG,
    )
    p.add_argument(
        "--warn-days",
        type=days,
        metavar="N",
        help="exit 12 when the token expires within N days",
    )
    _transport(p, "of the check")
    common(p)


def _classify(commands: argparse._SubParsersAction[Parser]) -> None:
    p = commands.add_parser(
        "classify",
        help="classify an error: a Graph body or an n8n node's error output",
        description=(
            "Read an error JSON (stdin or --input) and print its classification: category, "
            "retry policy, operator action, exit code. Nothing is sent."
        ),
        epilog=_CLASSIFY_EPILOG,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE", help="the error JSON; - or none for stdin")
    src.add_argument(
        "--input-b64", metavar="B64", help="the error JSON as base64 (n8n: no stdin there)"
    )
    p.add_argument(
        "--status", type=http_status, metavar="HTTP", help="the HTTP status, when the JSON lacks it"
    )
    output_options(p)
