"""The parser of `wa-auth webhook`: its actions `verify`, `parse`, `list` and `replay`.

`webhook(commands)` adds the command; each action is one function of the actions' subparsers
(`_verify`, `_parse`), listed in `_ACTIONS`, so the forward queue's `list` and `replay` are
added the same way (a function here, its entry in `_ACTIONS`, its runner in
`wa_auth._cli._webhook.ACTIONS`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Final

from wa_auth._cli._admin_parsers import webhook_queue
from wa_auth._cli._options import docs_url, output_options
from wa_auth._cli._usage import Parser

__all__ = ["webhook"]

_Actions = argparse._SubParsersAction  # noqa: SLF001 - argparse's own type, for annotations


def _epilog() -> str:
    return f"""\
examples:
  wa-auth webhook verify --input body.json --signature "$X_HUB_SIGNATURE_256"
  WA_AUTH_WEBHOOK_SIGNATURE="sha256=..." wa-auth webhook verify --parse < body.json
  wa-auth webhook verify --input-b64 "$BODY_B64" --app-secret-file app_secret --exit-zero
  wa-auth webhook parse --input body.json

The app secret comes from WA_AUTH_APP_SECRET or --app-secret-file (one secret per line: a
rotation window), never from a flag's value. Exit 13: the signature is missing, malformed or
wrong. Documentation: {docs_url("webhooks.md")}
"""


def _body_options(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("the body (its exact bytes)").add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE", help="the raw body; - or none for stdin")
    src.add_argument(
        "--input-b64", metavar="B64", help="the raw body as base64 (n8n's binary data)"
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="add each event's raw object (an inbound message's content: its text too)",
    )


def _verify(actions: _Actions[Parser]) -> None:
    p = actions.add_parser(
        "verify",
        help="check X-Hub-Signature-256 over the raw body (exit 13 when it fails)",
        description=(
            "Check Meta's X-Hub-Signature-256 (sha256=<hex HMAC-SHA256 of the raw body with "
            "the app secret>) over the body's exact bytes. One JSON line: verified, or the "
            "reason it is not (missing_header, wrong_scheme, malformed_signature, mismatch)."
        ),
        lazy_epilog=_epilog,
    )
    _body_options(p)
    p.add_argument(
        "--signature",
        metavar="HEADER",
        help=(
            "the X-Hub-Signature-256 header's value (WA_AUTH_WEBHOOK_SIGNATURE); give a "
            "caller's header as --signature=VALUE or in the variable, since a value that "
            "starts with - is otherwise read as an option"
        ),
    )
    p.add_argument(
        "--app-secret-file",
        metavar="PATH",
        help="the app secret, one per line for a rotation window (WA_AUTH_APP_SECRET)",
    )
    p.add_argument(
        "--parse", action="store_true", help="once verified, add the typed events to the line"
    )
    output_options(p)


def _parse(actions: _Actions[Parser]) -> None:
    p = actions.add_parser(
        "parse",
        help="print one JSON line per typed event of a payload (nothing is verified)",
        description=(
            "Read a webhook payload and print one line per event: statuses (a failed one "
            "classified like a failed send), inbound messages, account, quality, capability, "
            "security and template news, and unknown changes kept as such."
        ),
        lazy_epilog=_epilog,
    )
    _body_options(p)
    output_options(p)


#: The actions, in the order `wa-auth webhook --help` lists them.
_ACTIONS: Final[tuple[Callable[[_Actions[Parser]], None], ...]] = (
    _verify,
    _parse,
    webhook_queue,
)


def webhook(commands: _Actions[Parser]) -> None:
    """Add `wa-auth webhook` and its actions to *commands*."""
    p = commands.add_parser(
        "webhook",
        help="inbound webhooks: verify a signature, parse a payload, serve's forward queue",
        description="Verify and read the webhooks Meta delivers (see docs/webhooks.md).",
        lazy_epilog=_epilog,
    )
    actions = p.add_subparsers(
        dest="webhook_command", metavar="ACTION", parser_class=Parser, required=True
    )
    for add in _ACTIONS:
        add(actions)
