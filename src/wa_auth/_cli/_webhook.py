"""`wa-auth webhook verify|parse`: a webhook's signature checked, its events printed.

`verify` checks `X-Hub-Signature-256` over the body's exact bytes (stdin, `--input FILE` or
`--input-b64`, never re-serialised) with the app secret, which comes from `WA_AUTH_APP_SECRET`
or `--app-secret-file` (one secret per line: a rotation window), never from a flag's value. A
bad, missing or malformed signature is exit 13 with a line naming the check's `reason`;
`--parse` adds the typed events to the line, for an n8n Switch to route on. `parse` prints one
line per typed event of a payload (`wa_auth.webhooks.parse`); the raw object (which may hold a
message's text) only with `--raw`.

`ACTIONS` maps each `webhook` action to its function: `run` dispatches through it; the
forward queue's `list` and `replay` (in `_hooks`, imported only for them) sit beside these.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from wa_auth import _json_input as json_input
from wa_auth._cli import _codes
from wa_auth._cli._output import error_object, write, write_text
from wa_auth.errors import ConfigurationError, WebhookSignatureError

__all__ = ["ACTIONS", "event_line", "run"]

#: Where the app secret is read when `--app-secret-file` is not given.
SECRET_VAR: Final = "WA_AUTH_APP_SECRET"  # noqa: S105 - a variable's name
#: Where the signature is read when `--signature` is not given.
SIGNATURE_VAR: Final = "WA_AUTH_WEBHOOK_SIGNATURE"
#: The fields every event line has at its top level; the rest of an event is its `details`.
_COMMON: Final = (
    "type",
    "key",
    "field",
    "business_account_id",
    "phone_number_id",
    "timestamp",
)
#: Fields of an event that are not details: shown at the top, or never (`raw` unless asked).
_NOT_DETAILS: Final = frozenset(
    {*_COMMON, "raw", "id", "errors", "error", "status", "idempotency_key", "category"}
    | {"effect", "event", "operator_action"}
)


def _body(args: argparse.Namespace) -> bytes:
    """Return the body's bytes, exactly as given.

    Raises:
        ConfigurationError: No input, an unreadable file, base64 that is not, an empty body.
    """
    if getattr(args, "input_b64", None) is not None:
        try:
            data = base64.b64decode(args.input_b64.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError(f"--input-b64 is not base64: {exc}") from None
        where = "--input-b64"
    elif args.input not in (None, "-"):
        try:
            with open(args.input, "rb") as f:  # noqa: PTH123 - one read
                data = f.read()
        except OSError as exc:
            raise ConfigurationError(
                f"--input {args.input}: cannot read it ({exc.strerror})"
            ) from None
        where = f"--input {args.input}"
    elif sys.stdin is None or sys.stdin.isatty():
        raise ConfigurationError(
            f"wa-auth webhook {args.webhook_command} reads the body from stdin, --input FILE "
            "or --input-b64"
        )
    else:
        from wa_auth._cli._input import stdin_bytes

        data, where = stdin_bytes(), "stdin"
    if not data.strip():
        raise ConfigurationError(f"{where}: the webhook body is empty")
    return data


def _app_secret(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    """Return the app secrets to try: `--app-secret-file`'s lines, or `WA_AUTH_APP_SECRET`.

    Raises:
        ConfigurationError: None configured, both, an unreadable or empty file; the message
            never holds a secret (nor the file's name, where a secret may have been pasted).
    """
    path = getattr(args, "app_secret_file", None)
    inline = environ.get(SECRET_VAR)
    if path is not None and inline is not None:
        raise ConfigurationError(
            f"configure one app secret source, not both --app-secret-file and {SECRET_VAR}"
        )
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:  # noqa: PTH123 - one read
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigurationError(
                f"--app-secret-file: cannot read it ({reason}; the file's name is not shown)"
            ) from None
        secrets = [line.strip() for line in text.splitlines() if line.strip()]
        if not secrets:
            raise ConfigurationError("--app-secret-file: the file holds no secret")
        return secrets
    if inline is None or not inline.strip():
        raise ConfigurationError(
            f"wa-auth webhook verify needs the app secret: set {SECRET_VAR} or pass "
            "--app-secret-file PATH (one secret per line: a rotation window); never a flag's value"
        )
    return [inline.strip()]


def _payload(body: bytes) -> Any:
    """Return the JSON object of *body*, read strictly.

    Raises:
        ConfigurationError: Not UTF-8, not JSON, a key given twice, not a webhook's shape.
    """
    try:
        data = json_input.loads(json_input.decode_utf8(body))
    except json_input.JSONInputError as exc:
        raise ConfigurationError(f"the webhook body is not a JSON payload: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("entry"), list):
        raise ConfigurationError(
            'the webhook body is not a webhook payload: no "entry" list in a JSON object'
        )
    return data


def event_line(event: Any, *, raw: bool = False) -> dict[str, Any]:
    """Return the line of one typed event (the schema's `webhook_event`)."""
    error = getattr(event, "error", None)
    line: dict[str, Any] = {"ok": True, "exit_code": _codes.OK}
    line.update({name: getattr(event, name) for name in _COMMON})
    line.update(
        message_id=event.message_id,
        status=getattr(event, "status", None),
        idempotency_key=getattr(event, "idempotency_key", None),
        category=event.category,
        effect=getattr(event, "effect", None),
        event=getattr(event, "event", None),
        operator_action=getattr(event, "operator_action", None)
        or (error.operator_action if error is not None else None),
        error=error_object(error) if error is not None else None,
    )
    details = {
        f.name: getattr(event, f.name)
        for f in attrs.fields(type(event))
        if f.name not in _NOT_DETAILS
    }
    line["details"] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in details.items()}
    if raw:
        line["raw"] = dict(event.raw)
    return line


def verify(args: argparse.Namespace) -> int:
    """Check the body's signature; print one line; 0 when Meta signed it, 13 otherwise."""
    environ = os.environ
    secrets = _app_secret(args, environ)
    body = _body(args)
    header = args.signature if args.signature is not None else environ.get(SIGNATURE_VAR)
    line: dict[str, Any] = {
        "ok": True,
        "exit_code": _codes.OK,
        "action": "verify",
        "verified": True,
        "reason": None,
        "category": None,
        "body_bytes": len(body),
        "secret_index": None,
        "events": None,
        "error": None,
    }
    # The check alone (hmac and the errors): `wa_auth.webhooks` is loaded only for --parse.
    from wa_auth._signature_check import match

    try:
        index = match(body, header or None, tuple(secrets))
    except WebhookSignatureError as exc:
        code = _codes.for_category(exc.category)
        line.update(
            ok=False,
            exit_code=code,
            verified=False,
            reason=exc.reason,
            category=exc.category,
            error=error_object(exc),
        )
    else:
        line["secret_index"] = index
        if args.parse:
            # Meta signed it: whatever its shape, it is read as `parse` reads it (an unknown
            # shape is no event, never an error that would hide the verification).
            from wa_auth import webhooks

            line["events"] = [event_line(e, raw=args.raw) for e in webhooks.parse(body)]
    if args.format == "text":
        if line["verified"]:
            write_text(f"verified: signed with the app secret ({len(body)} bytes)\n")
        else:
            write_text(
                f"rejected: {line['reason']} [invalid_signature, exit {line['exit_code']}]\n"
            )
    else:
        write(line)
    return int(line["exit_code"])


def parse(args: argparse.Namespace) -> int:
    """Print one line per typed event of the payload; 0 (a payload of no event prints none)."""
    from wa_auth import webhooks

    for event in webhooks.parse(_payload(_body(args))):
        line = event_line(event, raw=args.raw)
        if args.format == "text":
            write_text(
                " ".join(
                    str(v)
                    for v in (
                        line["type"],
                        line["status"] or line["event"],
                        line["category"],
                        line["message_id"] or line["key"],
                    )
                    if v
                )
                + "\n"
            )
        elif not write(line):
            break
    return _codes.OK


def _queue(args: argparse.Namespace) -> int:
    """`list` and `replay`: serve's forward queue (imported only for them)."""
    from wa_auth._cli import _hooks

    return _hooks.run(args)


#: The `webhook` actions, by name.
ACTIONS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "verify": verify,
    "parse": parse,
    "list": _queue,
    "replay": _queue,
}


def run(args: argparse.Namespace) -> int:
    """Run the `webhook` action the arguments name."""
    return ACTIONS[args.webhook_command](args)
