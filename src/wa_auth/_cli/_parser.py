"""The argument parser of `wa-auth`: every command, flag and help example, and nothing else.

argparse (not a framework) keeps the cold start small. The parser class (`_usage.Parser`)
turns every refusal into a usage error that shows no value, and the flags' types refuse a bad
value with a fixed reason; abbreviations are off, so `--tok` can never be taken for
`--token-file`. The help names the project's documentation by its URL (the package's
metadata), since a pip install does not carry the docs.
"""

from __future__ import annotations

import argparse
import functools
from typing import Final

from wa_auth._cli._usage import (
    Parser,
    UsageError,
    days,
    fingerprint,
    http_status,
    integer,
    port,
    positive_int,
    positive_seconds,
    rate,
    seconds,
    unix_time,
)

__all__ = ["Parser", "UsageError", "build", "check", "docs_url"]

#: The `[project.urls]` entry the help points at.
_DOCS_LABEL: Final = "Documentation"


@functools.cache
def _docs_base() -> str | None:
    """Return the documentation URL of the installed package's metadata, or None."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("wa-auth").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip() == _DOCS_LABEL and url.strip():
            return str(url).strip().rstrip("/") + "/"
    return None


def docs_url(page: str) -> str:
    """Return where *page* of the docs (`cli.md`) is read: the project's URL, else a hint.

    The URL is the `Documentation` entry of the package's `Project-URL` metadata. Until the
    project has a public home there is none, and the help names the page in the source
    distribution, which carries docs/ (a wheel does not).
    """
    base = _docs_base()
    if base is not None:
        return f"{base}{page}"
    return f"docs/{page} in wa-auth's source distribution (pip download --no-binary :all: wa-auth)"


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


def _common(parser: argparse.ArgumentParser) -> None:
    """Add the options every command that talks to the Graph API shares."""
    _configuration(parser)
    _output_options(parser)


def _configuration(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("configuration (flags win over the environment)")
    g.add_argument("--phone-number-id", metavar="ID", help="sender (WA_PHONE_NUMBER_ID)")
    g.add_argument("--business-account-id", metavar="ID", help="the WABA (WA_BUSINESS_ACCOUNT_ID)")
    g.add_argument("--base-url", metavar="URL", help="Graph API base URL (WA_BASE_URL)")
    g.add_argument("--api-version", metavar="V", help="e.g. v23.0 (WA_API_VERSION)")
    g.add_argument(
        "--token-file", metavar="PATH", help="read the token from this file (WA_TOKEN_FILE)"
    )
    g.add_argument(
        "--consumer", metavar="NAME", help="who sends: the n8n workflow (WA_AUTH_CONSUMER)"
    )
    g.add_argument(
        "--timeout", type=positive_seconds, metavar="S", help="HTTP timeout in seconds (above 0)"
    )
    g.add_argument(
        "--state",
        metavar="PATH",
        help="SQLite state file that short-lived runs share (WA_AUTH_STATE)",
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output")
    g.add_argument(
        "--format",
        choices=("json", "text"),
        default="json",
        help="json lines, or a short summary for a person",
    )
    g.add_argument(
        "--exit-zero",
        action="store_true",
        help="always exit 0; the JSON carries exit_code (n8n; WA_AUTH_EXIT_ZERO=1)",
    )
    g.add_argument("--verbose", action="store_true", help="log wa_auth's events on stderr")


def build() -> argparse.ArgumentParser:
    """Return the parser of `wa-auth` and its commands."""
    parser = Parser(
        prog="wa-auth",
        description="WhatsApp Cloud API tokens as a managed state: send, check, classify.",
        lazy_epilog=_epilog,
    )
    parser.add_argument("--version", action="store_true", help="print the version as JSON")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _send(commands)
    _check(commands)
    _classify(commands)
    _outbox(commands)
    _state(commands)
    _sandbox(commands)
    _serve(commands)
    return parser


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
        metavar="PATH",
        help="SQLite outbox: every intent recorded before its send (WA_AUTH_OUTBOX)",
    )
    _common(p)


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
    _common(p)


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
    _output_options(p)


_OUTBOX_EPILOG = """\
examples:
  wa-auth outbox stats --outbox outbox.db --format text
  wa-auth outbox list --outbox outbox.db --state queued
  wa-auth outbox replay --outbox outbox.db          # from cron, every few minutes
  wa-auth outbox mark order-42 pending --outbox outbox.db
  wa-auth outbox purge --outbox outbox.db --delivered-older-than 604800
  wa-auth outbox export --outbox outbox.db --output dead-letters.jsonl
"""


#: `outbox mark`'s states (`wa_auth.outbox.MARKABLE_STATES`; a test holds them equal).
MARKABLE = ("pending", "delivered", "failed", "expired")


def _outbox(commands: argparse._SubParsersAction[Parser]) -> None:
    p = commands.add_parser(
        "outbox",
        help="the SQLite outbox: list, stats, replay, mark, purge, export",
        description="Inspect and replay the outbox that `wa-auth send --outbox PATH` writes.",
        epilog=_OUTBOX_EPILOG,
    )
    actions = p.add_subparsers(
        dest="outbox_command", metavar="ACTION", parser_class=Parser, required=True
    )

    def action(name: str, help_text: str, example: str) -> Parser:
        sub = actions.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}\n",
        )
        sub.add_argument(
            "--outbox", metavar="PATH", help="the outbox file (WA_AUTH_OUTBOX); never created"
        )
        return sub

    ls = action("list", "list rows, oldest first", "wa-auth outbox list --state queued")
    ls.add_argument("--state", help="only rows in this state (pending, queued, failed, ...)")
    ls.add_argument("--category", help="only rows whose last failure has this category")
    ls.add_argument("--consumer", help="only rows of this consumer")
    ls.add_argument("--dead-letters", action="store_true", help="only rows no replay sends")
    ls.add_argument("--limit", type=positive_int, metavar="N", help="at most N rows")
    _output_options(ls)
    stats = action("stats", "count rows by state and category", "wa-auth outbox stats")
    _output_options(stats)
    replay = action(
        "replay",
        "send what is replayable (pending, queued past not_before, failed for want of a token)",
        "wa-auth outbox replay --limit 500",
    )
    replay.add_argument(
        "--include-maybe-delivered",
        action="store_true",
        help="send maybe_delivered rows again (Meta may have them already)",
    )
    replay.add_argument("--limit", type=positive_int, metavar="N", help="at most N intents")
    replay.add_argument(
        "--concurrency", type=positive_int, default=16, metavar="N", help="sends in flight"
    )
    replay.add_argument(
        "--budget", type=seconds, default=30.0, metavar="S", help="seconds per intent"
    )
    replay.add_argument(
        "--max-attempts", type=positive_int, default=4, metavar="N", help="sends per intent"
    )
    replay.add_argument("--rate", type=rate, metavar="N", help="pace to N messages/s")
    _common(replay)
    mark = action(
        "mark",
        "set a row's state by hand: pending (send it again), delivered, failed or expired",
        "wa-auth outbox mark order-42 delivered --message-id wamid.HBgL...",
    )
    mark.add_argument("key", metavar="KEY", help="the intent's idempotency key")
    mark.add_argument(
        "mark_state", metavar="STATE", choices=MARKABLE, help=f"one of {', '.join(MARKABLE)}"
    )
    mark.add_argument("--reason", default="operator", help="why (default: operator)")
    mark.add_argument("--message-id", metavar="ID", help="Meta's message id (with delivered)")
    _output_options(mark)
    purge = action(
        "purge",
        "delete old delivered or expired rows",
        "wa-auth outbox purge --delivered-older-than 604800",
    )
    purge.add_argument("--delivered-older-than", type=seconds, metavar="S")
    purge.add_argument("--expired-older-than", type=seconds, metavar="S")
    _output_options(purge)
    export = action(
        "export",
        "write the dead letters as JSON lines (stdout, or --output FILE)",
        "wa-auth outbox export --output dead-letters.jsonl",
    )
    export.add_argument("--output", metavar="FILE", help="a new file (never overwritten)")
    _output_options(export)


_STATE_EPILOG: Final = """\
examples:
  wa-auth state list --state state.db --format text
  wa-auth state clear --state state.db --all                      # after a reset or a fix at Meta
  wa-auth state clear --state state.db --fingerprint sha256:b463b3a1db21
  wa-auth state clear --state state.db --phone-number-id 109000000000001

A verdict makes every send with that token fail at once, without a request, for an hour; a
pause holds a number's sends until its probe. Clear them once the cause is fixed (a new token
deployed, a sandbox reset, an account restored). `wa-auth check` also drops the verdict of a
token Meta calls valid again.
"""


def _state(commands: argparse._SubParsersAction[Parser]) -> None:
    p = commands.add_parser(
        "state",
        help="the state file: list or clear dead-token verdicts and paused numbers",
        description=(
            "List or clear what short-lived runs share in the state file (--state PATH or "
            "WA_AUTH_STATE): the verdicts on dead tokens and the paused numbers and open "
            "circuits. The file must exist; it is never created here."
        ),
        epilog=_STATE_EPILOG,
    )
    actions = p.add_subparsers(
        dest="state_command", metavar="ACTION", parser_class=Parser, required=True
    )
    ls = actions.add_parser(
        "list",
        help="the verdicts and pauses in force",
        description="Print the verdicts and pauses in force as one JSON line.",
        epilog="example:\n  wa-auth state list --state state.db\n",
    )
    ls.add_argument("--state", metavar="PATH", help="the state file (WA_AUTH_STATE)")
    _output_options(ls)
    clear = actions.add_parser(
        "clear",
        help="drop verdicts and pauses: the cause is fixed",
        description=(
            "Drop the verdicts on the given token fingerprints, the pauses of the given "
            "numbers, or (--all) every verdict and pause. Print what was dropped."
        ),
        epilog="example:\n  wa-auth state clear --state state.db --all\n",
    )
    clear.add_argument("--state", metavar="PATH", help="the state file (WA_AUTH_STATE)")
    clear.add_argument(
        "--fingerprint",
        type=fingerprint,
        action="append",
        default=[],
        metavar="FP",
        help="drop the verdict on this token fingerprint (sha256:...; repeat)",
    )
    clear.add_argument(
        "--phone-number-id",
        action="append",
        default=[],
        metavar="ID",
        help="resume this number: drop its pause and circuit (repeat)",
    )
    clear.add_argument("--all", action="store_true", help="drop every verdict and pause")
    _output_options(clear)


def _sandbox(commands: argparse._SubParsersAction[Parser]) -> None:
    p = commands.add_parser(
        "sandbox",
        help="run a local Graph API simulator until Ctrl-C or SIGTERM",
        description=(
            "Serve a local Graph API simulator. Prints one JSON line (base_url, ids, demo "
            "tokens), then serves until Ctrl-C or SIGTERM. Change its state through the admin "
            "API under {base_url}/_sandbox/."
        ),
        lazy_epilog=lambda: (
            "example:\n  wa-auth sandbox --port 8765 --seed 1\n\n"
            f"Admin API and tokens file: {docs_url('sandbox.md')}\n"
        ),
    )
    # The sandbox's stdout carries its one info line: its usage errors go to stderr.
    p.to_stderr = True
    p.add_argument("--port", type=port, default=0, help="port to bind; 0 picks a free one")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--tokens", metavar="FILE", help="a JSON tokens file, in place of the demo ones")
    p.add_argument("--seed", type=integer, help="seed of every random choice (reproducible)")
    p.add_argument(
        "--freeze-clock",
        action="store_true",
        help="the sandbox clock moves only through the admin API's advance",
    )


def _serve_epilog() -> str:
    return f"""\
examples:
  WA_AUTH_API_KEY=... wa-auth serve
  wa-auth serve --api-key-file /run/secrets/wa_auth_api_key --outbox outbox.db --state state.db
  curl -s -H "Authorization: Bearer $WA_AUTH_API_KEY" -H 'Content-Type: application/json' \\
    -d '{{"to": "+15551234567", "type": "text", "text": {{"body": "hi"}}}}' localhost:8787/send

Routes: POST /send (one intent or a list), POST /check, POST /classify, GET /outbox,
POST /outbox/replay, POST /state/clear, GET /healthz, GET /readyz, GET /metrics. Every route
but /healthz needs the API key (Authorization: Bearer KEY or X-API-Key: KEY).
Documentation: {docs_url("serve.md")}
"""


def _serve(commands: argparse._SubParsersAction[Parser]) -> None:
    from wa_auth._cli import _serve as serve

    p = commands.add_parser(
        "serve",
        help="the same front door over local HTTP, for n8n's HTTP Request and Code nodes",
        description=(
            "Serve send, check, classify and the outbox over HTTP on one event loop, so the "
            "connection pool, verdicts, pauses and limiter stay warm across items. Binds "
            "127.0.0.1 unless told otherwise; refuses to start without an API key "
            "(WA_AUTH_API_KEY or --api-key-file). SIGTERM stops it gracefully."
        ),
        lazy_epilog=_serve_epilog,
    )
    h = p.add_argument_group("HTTP")
    h.add_argument("--host", default=serve.DEFAULT_HOST, help="address to bind")
    h.add_argument(
        "--port", type=port, default=serve.DEFAULT_PORT, help="port to bind; 0 picks a free one"
    )
    h.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="file holding the API key callers must send (WA_AUTH_API_KEY_FILE)",
    )
    h.add_argument(
        "--max-body",
        type=positive_int,
        default=serve.DEFAULT_MAX_BODY,
        metavar="BYTES",
        help="largest request body (1 MiB): 413 above it",
    )
    h.add_argument(
        "--request-timeout",
        type=positive_seconds,
        default=serve.DEFAULT_REQUEST_TIMEOUT,
        metavar="S",
        help="a request's body must arrive, and its sends start, within S seconds",
    )
    h.add_argument(
        "--header-timeout",
        type=positive_seconds,
        default=serve.DEFAULT_HEADER_TIMEOUT,
        metavar="S",
        help="a connection must send a request's headers within S seconds (default 10)",
    )
    h.add_argument(
        "--max-connections",
        type=positive_int,
        default=serve.DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="most connections open at once (default 1024, lowered to fit ulimit -n)",
    )
    h.add_argument(
        "--shutdown-timeout",
        type=positive_seconds,
        default=serve.DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="S",
        help="SIGTERM waits this long for the requests in flight",
    )
    g = p.add_argument_group("guard")
    g.add_argument(
        "--concurrency",
        type=positive_int,
        default=serve.DEFAULT_CONCURRENCY,
        metavar="N",
        help="sends in flight, over every request",
    )
    g.add_argument("--budget", type=seconds, default=30.0, metavar="S", help="seconds per intent")
    g.add_argument(
        "--max-attempts", type=positive_int, default=4, metavar="N", help="sends per intent"
    )
    g.add_argument("--rate", type=rate, metavar="N", help="pace to N messages/s per number")
    g.add_argument(
        "--outbox",
        metavar="PATH",
        help="SQLite outbox: every intent recorded before its send (WA_AUTH_OUTBOX)",
    )
    _configuration(p)
    p.add_argument("--verbose", action="store_true", help="log wa_auth's events on stderr")
