"""The wire helpers: one parsed HTTP request, and the formats the Graph API reads and writes.

Pure functions over bytes and strings, shared by the request pipeline and its handlers: the
bearer token, a strict JSON body, a form body, a multipart upload, and Graph's paging cursors.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import attrs

from wa_auth.sandbox._checks import loads_strict

__all__ = [
    "RECIPIENT_RE",
    "HttpRequest",
    "bearer",
    "decode_cursor",
    "digits_of",
    "encode_cursor",
    "form",
    "json_body",
    "multipart",
]

#: A recipient as the Cloud API takes it: 7 to 15 digits, with or without a `+`.
RECIPIENT_RE: Final = re.compile(r"\+?[0-9]{7,15}")


@attrs.frozen
class HttpRequest:
    """One parsed HTTP request, as the server hands it to the pipeline."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes = attrs.field(default=b"", repr=False)


def bearer(req: HttpRequest) -> str | None:
    """Return the request's token: the `Authorization` header, else `access_token`."""
    auth = req.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return req.query.get("access_token") or None


def digits_of(recipient: str) -> str:
    """Return a recipient's WhatsApp id: its number without the `+`."""
    return recipient.lstrip("+")


def json_body(req: HttpRequest) -> dict[str, Any] | None:
    """Return the body as a JSON object, or None if it is not one (or not strict JSON)."""
    try:
        data = loads_strict(req.body or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def form(body: bytes) -> dict[str, str]:
    """Return an `application/x-www-form-urlencoded` body's fields."""
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def multipart(req: HttpRequest) -> dict[str, tuple[bytes, str]] | None:
    """Return a `multipart/form-data` body's fields as (data, content type); None if not one."""
    content_type = req.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    raw = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + req.body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not message.is_multipart():
        return None
    fields: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = (data, part.get_content_type())
    return fields


def encode_cursor(index: int) -> str:
    """Return the paging cursor of the item at *index*."""
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the index a paging cursor points at.

    Raises:
        ValueError: Not a cursor the sandbox wrote (a negative index included).
    """
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("bad cursor") from None
    index = decoded.removeprefix("idx:")
    if index == decoded or not index.isascii() or not index.isdigit():
        raise ValueError("bad cursor")
    return int(index)
