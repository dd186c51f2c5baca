"""The input of `wa-auth send` (and of serve's `/send`): intents from flags, lines or base64.

One message from flags, JSON lines (or a JSON array) from `--input FILE` or stdin, or one
intent as `--input-b64`. Each input becomes an `Item`: its line number and the intent, or the
`invalid_request` result line of a line that is not one, so the other lines still go out.
Caller JSON is read strictly (`wa_auth._json_input`).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import sys
from collections.abc import Mapping
from typing import Any, Final

from wa_auth import _json_input as json_input
from wa_auth._cli._output import bad_line
from wa_auth._validate import check_key
from wa_auth.errors import ConfigurationError, RequestValidationError
from wa_auth.intents import Intent

__all__ = ["Item", "parse_input", "parse_item", "read_items", "stdin_bytes"]

#: One input: its line number and the intent, or the result line of a line that is not one.
Item = tuple[int, "Intent | dict[str, Any]"]

_KINDS: Final = ("text", "template", "image", "document")


def _from_flags(args: argparse.Namespace) -> list[Item]:
    """Return the one intent the flags describe (or its invalid_request line)."""
    if args.to is None:
        raise ConfigurationError("--to is required with --text, --template, --image, --document")
    kind = next((k for k in _KINDS if getattr(args, k) is not None), None)
    if kind is None:
        raise ConfigurationError(
            "say what to send: --text, --template, --image or --document (or --input)"
        )
    options: dict[str, Any] = {}
    if args.idempotency_key is not None:
        options["idempotency_key"] = args.idempotency_key
    if args.not_after is not None:
        options["not_after"] = args.not_after
    try:
        if kind == "text":
            intent = Intent.text(args.to, args.text, preview_url=args.preview_url, **options)
        elif kind == "template":
            params = [{"type": "text", "text": p} for p in args.param]
            components = [{"type": "body", "parameters": params}] if params else None
            lang = args.lang if args.lang is not None else "en_US"
            intent = Intent.template(args.to, args.template, lang, components, **options)
        else:
            intent = Intent.media(
                args.to,
                kind,
                link=getattr(args, kind),
                caption=args.caption,
                filename=args.filename if kind == "document" else None,
                **options,
            )
    except RequestValidationError as exc:
        return [(1, bad_line(exc.message, 1, _echoed_key(options)))]
    return [(1, intent)]


def parse_item(value: object, line: int) -> Item:
    """Return the intent *value* describes, or the invalid_request line naming the field."""
    try:
        return (line, Intent.from_dict(value))
    except RequestValidationError as exc:
        return (line, bad_line(exc.message, line, _echoed_key(value)))


def _echoed_key(value: object) -> str | None:
    """The idempotency key a bad line's result may repeat: only one that is a valid key."""
    key = value.get("idempotency_key") if isinstance(value, Mapping) else None
    try:
        return check_key(key)
    except RequestValidationError:
        return None


def parse_input(data: bytes) -> list[Item]:
    """Return the items of JSON lines, or of a JSON array of intents, from the input's bytes.

    Input whose first character is `[` is one JSON array (what n8n's "Convert to File" node
    writes); it is read as a whole, so an array that cannot be read is a usage error.
    Otherwise each line (ended by a line feed, and nothing else: a U+2028 inside a JSON string
    is text) is one intent, and a line that is not one (not UTF-8, not JSON, not an intent)
    is that line's invalid_request result. Line numbers count from 1 and name the physical
    line (or the array position).

    Raises:
        ConfigurationError: A JSON array that cannot be read, or UTF-16 that is not.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Windows' "Unicode": UTF-16 with a BOM
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise ConfigurationError(
                "the input starts with a UTF-16 byte order mark but is not UTF-16 text: send UTF-8"
            ) from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    if data.lstrip(b" \t\r\n").startswith(b"["):
        try:
            values = json_input.loads(data)
        except json_input.JSONInputError as exc:
            raise ConfigurationError(f"the input is not a valid JSON array: {exc}") from None
        return [parse_item(v, i) for i, v in enumerate(values, 1)]
    items: list[Item] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            value = json_input.loads(json_input.decode_utf8(raw))
        except json_input.JSONInputError as exc:
            items.append((number, bad_line(str(exc), number)))
            continue
        items.append(parse_item(value, number))
    return items


def _from_b64(data: str) -> list[Item]:
    """Return the one intent (or JSON array of intents) the base64 *data* holds."""
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(data.strip())
        except (binascii.Error, ValueError):
            return [(1, bad_line("--input-b64 is not valid base64", 1))]
    try:
        value = json_input.loads(json_input.decode_utf8(raw))
    except json_input.JSONInputError as exc:
        return [(1, bad_line(f"--input-b64 does not hold an intent: {exc}", 1))]
    if isinstance(value, list):
        return [parse_item(v, i) for i, v in enumerate(value, 1)]
    return [parse_item(value, 1)]


def stdin_bytes() -> bytes:
    """Return all of stdin as bytes: decoding is each line's business, not the stream's."""
    if sys.stdin is None:
        return b""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data
    # A text stream without bytes under it (a test's StringIO): what it holds, byte for byte.
    return sys.stdin.read().encode("utf-8", "surrogatepass")


def read_items(args: argparse.Namespace) -> list[Item]:
    """Return the inputs of this run, in input order.

    Stdin and `--input FILE` are read the same way, as bytes (`parse_input`).

    Raises:
        ConfigurationError: Both flags and an input were given, a file cannot be read, or
            there is no input at all.
    """
    flags = args.to is not None or any(getattr(args, k) is not None for k in _KINDS)
    if flags and (args.input is not None or args.input_b64 is not None):
        raise ConfigurationError("give one message as flags or intents as input, not both")
    if flags:
        return _from_flags(args)
    if args.input_b64 is not None:
        return _from_b64(args.input_b64)
    if args.input is not None and args.input != "-":
        try:
            with open(args.input, "rb") as f:  # noqa: PTH123 - one read
                data = f.read()
        except OSError as exc:
            raise ConfigurationError(
                f"--input {args.input}: cannot read it ({exc.strerror or exc})"
            ) from None
    elif args.input is None and sys.stdin is not None and sys.stdin.isatty():
        raise ConfigurationError(
            "nothing to send: give --to and --text, --input FILE, --input-b64, or pipe JSON "
            "lines to stdin"
        )
    else:
        data = stdin_bytes()
    items = parse_input(data)
    if not items:
        raise ConfigurationError("nothing to send: the input has no intent")
    return items
