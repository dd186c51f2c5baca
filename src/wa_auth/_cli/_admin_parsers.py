"""The parsers of the operators' commands of `wa-auth`: outbox, state, sandbox and serve.

`wa_auth._cli._parser.build` adds them after the commands that send, check and classify.
"""

from __future__ import annotations

import argparse
from typing import Final

from wa_auth._cli._options import common, configuration, docs_url, output_options
from wa_auth._cli._usage import (
    Parser,
    fingerprint,
    integer,
    port,
    positive_int,
    positive_seconds,
    rate,
    seconds,
)

__all__ = ["MARKABLE", "outbox", "sandbox", "serve", "state", "webhook_queue"]


_OUTBOX_EPILOG = """\
examples:
  wa-auth outbox stats --outbox outbox.db --format text
  wa-auth outbox list --outbox outbox.db --state queued
  wa-auth outbox replay --outbox outbox.db          # from cron, every few minutes
  wa-auth outbox mark order-42 pending --outbox outbox.db
  wa-auth outbox purge --outbox outbox.db --delivered-older-than 604800
  wa-auth outbox export --outbox outbox.db --output dead-letters.jsonl
  wa-auth outbox migrate --outbox postgresql://wa_auth@db.internal/n8n   # before a fleet starts
"""


#: `outbox mark`'s states (`wa_auth.outbox.MARKABLE_STATES`; a test holds them equal).
MARKABLE = ("pending", "delivered", "failed", "expired")


def outbox(commands: argparse._SubParsersAction[Parser]) -> None:
    p = commands.add_parser(
        "outbox",
        help="the outbox: list, stats, replay, mark, purge, export, migrate",
        description=(
            "Inspect and replay the outbox that `wa-auth send --outbox PATH` writes: a SQLite "
            "file (PATH or sqlite:///PATH) or PostgreSQL (postgresql://user:pw@host/db)."
        ),
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
            "--outbox",
            metavar="PATH|URL",
            help=(
                "the outbox: a file, sqlite:///PATH or postgresql://... (WA_AUTH_OUTBOX); "
                "never created (but by migrate)"
            ),
        )
        return sub

    ls = action("list", "list rows, oldest first", "wa-auth outbox list --state queued")
    ls.add_argument("--state", help="only rows in this state (pending, queued, failed, ...)")
    ls.add_argument("--category", help="only rows whose last failure has this category")
    ls.add_argument("--consumer", help="only rows of this consumer")
    ls.add_argument("--dead-letters", action="store_true", help="only rows no replay sends")
    ls.add_argument("--limit", type=positive_int, metavar="N", help="at most N rows")
    output_options(ls)
    stats = action("stats", "count rows by state and category", "wa-auth outbox stats")
    output_options(stats)
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
    replay.add_argument(
        "--follow",
        action="store_true",
        help="a worker: replay again whenever there is work, until SIGTERM or Ctrl-C",
    )
    replay.add_argument(
        "--poll",
        type=seconds,
        default=5.0,
        metavar="S",
        help="with --follow: idle at most S seconds between looks (PostgreSQL wakes it sooner)",
    )
    common(replay)
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
    output_options(mark)
    purge = action(
        "purge",
        "delete old delivered or expired rows",
        "wa-auth outbox purge --delivered-older-than 604800",
    )
    purge.add_argument("--delivered-older-than", type=seconds, metavar="S")
    purge.add_argument("--expired-older-than", type=seconds, metavar="S")
    output_options(purge)
    export = action(
        "export",
        "write the dead letters as JSON lines (stdout, or --output FILE)",
        "wa-auth outbox export --output dead-letters.jsonl",
    )
    export.add_argument("--output", metavar="FILE", help="a new file (never overwritten)")
    output_options(export)
    migrate = action(
        "migrate",
        "create the outbox, or migrate its schema to this wa_auth's version",
        "wa-auth outbox migrate --outbox postgresql://wa_auth@db.internal/n8n",
    )
    output_options(migrate)


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


def state(commands: argparse._SubParsersAction[Parser]) -> None:
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
    ls.add_argument("--redis", metavar="URL", help="a fleet's Redis instead (WA_AUTH_REDIS_URL)")
    output_options(ls)
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
    clear.add_argument("--redis", metavar="URL", help="a fleet's Redis instead (WA_AUTH_REDIS_URL)")
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
    output_options(clear)


def sandbox(commands: argparse._SubParsersAction[Parser]) -> None:
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
    p.add_argument(
        "--phone-numbers",
        type=positive_int,
        default=2,
        metavar="N",
        help="how many phone numbers the business account has, 1 to 20",
    )


def _serve_epilog() -> str:
    return f"""\
examples:
  WA_AUTH_API_KEY=... wa-auth serve
  wa-auth serve --api-key-file /run/secrets/wa_auth_api_key --outbox outbox.db --state state.db
  curl -s -H "Authorization: Bearer $WA_AUTH_API_KEY" -H 'Content-Type: application/json' \\
    -d '{{"to": "+15551234567", "type": "text", "text": {{"body": "hi"}}}}' localhost:8787/send

Routes: POST /send (one intent or a list), POST /check, POST /classify, GET /outbox,
POST /outbox/replay, POST /state/clear, GET /healthz, GET /readyz, GET /metrics, GET and
POST /webhook (Meta's), GET, POST /webhook/routes and DELETE /webhook/routes/ID. Every route
but /healthz and /webhook needs the API key (Authorization: Bearer KEY or X-API-Key: KEY).
Documentation: {docs_url("serve.md")}
"""


def serve(commands: argparse._SubParsersAction[Parser]) -> None:
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
    h.add_argument(
        "--transport",
        choices=serve.TRANSPORTS,
        default=serve.DEFAULT_TRANSPORT,
        help=(
            "how the sends reach Meta: raw (wa_auth's own HTTP/1.1 on asyncio: about half "
            "the CPU per send) or aiohttp"
        ),
    )
    h.add_argument(
        "--http",
        choices=serve.HTTP_PATHS,
        default=serve.DEFAULT_HTTP,
        help=(
            "how callers' requests are read: lane (serve's own HTTP/1.1 for plain requests, "
            "aiohttp's server for any other; less CPU per item) or aiohttp (every request)"
        ),
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
        metavar="PATH|URL",
        help=(
            "outbox: every intent recorded before its send: a SQLite file (PATH, sqlite:///PATH) "
            "or postgresql://... (WA_AUTH_OUTBOX)"
        ),
    )
    _webhook_options(p)
    configuration(p)
    p.add_argument("--verbose", action="store_true", help="log wa_auth's events on stderr")


def _webhook_options(p: Parser) -> None:
    w = p.add_argument_group(
        "webhooks",
        "POST/GET /webhook and the fan-out, on when an app secret is set "
        "(WA_AUTH_WEBHOOK_APP_SECRET or --webhook-app-secret-file)",
    )
    w.add_argument(
        "--webhook-app-secret-file",
        metavar="PATH",
        help="file holding the Meta app secret that signs deliveries (re-read when it changes)",
    )
    w.add_argument(
        "--webhook-verify-token-file",
        metavar="PATH",
        help="file holding the verify token of the GET handshake (WA_AUTH_WEBHOOK_VERIFY_TOKEN)",
    )
    w.add_argument(
        "--webhook-queue",
        metavar="PATH",
        help="SQLite file of deliveries, ledger and forwards (default: --state, else --outbox)",
    )
    w.add_argument(
        "--webhook-config",
        metavar="PATH",
        help="TOML or JSON file of the forward routes (WA_AUTH_WEBHOOK_CONFIG)",
    )
    w.add_argument(
        "--forward-timeout",
        type=positive_seconds,
        metavar="S",
        help="seconds a route has to answer a forward (default 10)",
    )
    w.add_argument(
        "--forward-attempts",
        type=positive_int,
        metavar="N",
        help="attempts of a forward before it is a dead letter (default 12)",
    )
    w.add_argument(
        "--forward-backoff",
        type=positive_seconds,
        metavar="S",
        help="wait before the second attempt, doubled each time up to 300 s (default 1)",
    )


def webhook_queue(actions: argparse._SubParsersAction[Parser]) -> None:
    """Add `list` and `replay` (serve's forward queue) to the `webhook` command's actions."""
    ls = actions.add_parser(
        "list",
        help="the forwards waiting for their route, or (--failed) the dead letters",
        description=(
            "Print serve's queued forwards, one JSON line each, oldest first: those waiting "
            "for their route, or with --failed the dead letters (the last attempt failed)."
        ),
        epilog="example:\n  wa-auth webhook list --queue webhooks.db --failed\n",
    )
    ls.add_argument("--queue", metavar="PATH", help="serve's webhook queue file")
    ls.add_argument("--failed", action="store_true", help="the dead letters")
    ls.add_argument("--limit", type=positive_int, default=100, metavar="N", help="at most N (100)")
    replay = actions.add_parser(
        "replay",
        help="put dead letters back in their routes' queues",
        description=(
            "Put the dead letters (all, or those of --seq) back in their routes' queues; a "
            "running wa-auth serve sends them within a second, after the route's pending ones."
        ),
        epilog="example:\n  wa-auth webhook replay --queue webhooks.db --seq 12\n",
    )
    replay.add_argument("--queue", metavar="PATH", help="serve's webhook queue file")
    replay.add_argument(
        "--seq", type=positive_int, action="append", metavar="N", help="this one (repeat)"
    )
