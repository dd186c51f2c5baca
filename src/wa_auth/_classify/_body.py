"""The body of an error answer: its JSON (or its text), a cut body salvaged field by field.

Every helper is total: a body `json` cannot parse (cut off mid-string, nested deeper than
`json` allows, holding a 5,000-digit number) gives what can be read of it, and text no UTF-8
file could hold is made well formed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

from wa_auth._convert import to_int, well_formed

__all__ = [
    "BODY_EXCERPT_CHARS",
    "TEXT_CUT",
    "fallback_message",
    "is_map",
    "parse_body",
    "salvage_truncated",
    "to_text",
    "utf8",
]

#: How much of a non-JSON body is kept (redacted) for diagnostics.
BODY_EXCERPT_CHARS: Final = 300
#: The fields `salvage_truncated` reads one by one from a body `json` cannot parse (cut off, or
#: one field nested deeper than `json` allows). Each string must be closed by its quote, so a
#: value cut in half is never read as a whole one; only the message may be read in part.
_TRUNCATED_RE: Final = {
    # A number counts only when it is complete ("code": 1304, cut, must not pass for another
    # code): closed by its quote, or followed by `,` or `}`. A BSP's symbolic code likewise.
    "code": re.compile(
        r'"(?:code|error_code|errorCode)"\s*:\s*'
        r'(?:(-?\d+)\s*[,}]|"(-?\d+)"|"([A-Za-z][A-Za-z0-9_]{0,63})")'
    ),
    "error_subcode": re.compile(r'"(?:error_subcode|subcode)"\s*:\s*(?:(-?\d+)\s*[,}]|"(-?\d+)")'),
    "fbtrace_id": re.compile(r'"fbtrace_id"\s*:\s*"([^"\\]*)"'),
    "type": re.compile(r'"type"\s*:\s*"([^"\\]*)"'),
    "title": re.compile(r'"title"\s*:\s*"((?:[^"\\]|\\.)*)"'),
    "error_user_title": re.compile(r'"error_user_title"\s*:\s*"((?:[^"\\]|\\.)*)"'),
    "error_user_msg": re.compile(r'"error_user_msg"\s*:\s*"((?:[^"\\]|\\.)*)"'),
    "details": re.compile(r'"details"\s*:\s*"((?:[^"\\]|\\.)*)"'),
}
#: The message under any of the keys `_MESSAGE_KEYS` knows, read up to its closing quote or
#: to where the body was cut (group 2 is the quote: None when the message was cut).
_TRUNCATED_MESSAGE: Final = re.compile(
    r'"(?:message|error_msg|error_description|errorMessage|developerMessage|developer_message)"'
    r'\s*:\s*"((?:[^"\\]|\\.)*)(")?'
)
#: Keys that open an error object, one of which a cut body must show early to be salvaged.
_TRUNCATED_MARKERS: Final = ('"error', '"meta"', '"developer')
#: How far into a cut body one of the markers must appear.
_TRUNCATED_MARKER_WINDOW: Final = 200
#: The key `salvage_truncated` sets when the message was cut or lost: the text that decides
#: some rows is then incomplete.
TEXT_CUT: Final = "_text_cut"
_TRANSIENT_TRUE: Final = re.compile(r'"is_transient"\s*:\s*true\b')


def is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """Return True for a mapping; JSON gives plain dicts, the ABC check is the slow fallback."""
    return type(value) is dict or isinstance(value, Mapping)


def utf8(value: str | None) -> str | None:
    """Return *value* with each half of a surrogate pair replaced by U+FFFD (`well_formed`).

    JSON allows a lone surrogate escape (half an emoji), which no UTF-8 file, log or terminal
    can write: the CLI failed with an internal error on such a message.
    """
    return None if value is None else well_formed(value)


def to_text(value: Any) -> str | None:
    """Return *value* as text; None when it is None or cannot be turned into text.

    Objects become their JSON; a structure too deep to serialise, a circular one or an integer
    beyond Python's 4,300-digit limit gives None instead of an exception.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    except (TypeError, ValueError, RecursionError):
        return None


def parse_body(body: bytes | str | Mapping[str, Any] | None) -> tuple[Any, str]:
    """Return the parsed JSON of *body* (or None) and, when it is not JSON, its stripped text."""
    if body is None:
        return None, ""
    if is_map(body):
        return body, ""
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body).decode("utf-8", "replace")
    if not isinstance(body, str):
        return body, ""
    stripped = body.strip()
    if not stripped:
        return None, ""
    if not stripped.isascii():
        stripped = utf8(stripped) or ""
    if stripped[0] in "{[":
        try:
            return json.loads(stripped), ""
        except json.JSONDecodeError:
            pass
        except RecursionError:
            pass  # nested deeper than json can parse: salvage or the HTTP status decide
        except ValueError:
            # Python refuses integers of more than 4,300 digits: drop those numbers only.
            try:
                return json.loads(stripped, parse_int=to_int), ""
            except (ValueError, RecursionError):
                pass
    return None, stripped


def salvage_truncated(excerpt: str) -> dict[str, Any] | None:
    """Recover the fields of an error body that `json` could not parse, each on its own.

    Only what is certainly whole is kept: a code, subcode or title counts when its closing
    quote (or the `,`/`}` after a number) survived. The message is kept up to where the body
    was cut, and the result then carries `TEXT_CUT`, because a row that reads the message may
    have needed the part that was lost.
    """
    head = excerpt[:_TRUNCATED_MARKER_WINDOW]
    if not excerpt.startswith("{") or not any(m in head for m in _TRUNCATED_MARKERS):
        return None
    found: dict[str, Any] = {}
    for key, pattern in _TRUNCATED_RE.items():
        m = pattern.search(excerpt)
        if m:
            found[key] = _unescape(next(g for g in m.groups() if g is not None))
    m = _TRUNCATED_MESSAGE.search(excerpt)
    if m:
        found["message"] = _unescape(m.group(1))
    if m is None or m.group(2) is None:
        found[TEXT_CUT] = True
    if _TRANSIENT_TRUE.search(excerpt):
        found["is_transient"] = True
    return found if len(found) > 1 or TEXT_CUT not in found else None


#: A backslash escape cut in half at the end of a salvaged string (`\`, `\u00`).
_CUT_ESCAPE: Final = re.compile(r"\\(?:u[0-9A-Fa-f]{0,3})?$")


def _unescape(raw: str) -> str:
    """Return the JSON string body *raw* with its escapes decoded; as it is when it cannot be."""
    if "\\" not in raw:
        return raw
    for candidate in (raw, _CUT_ESCAPE.sub("", raw)):
        try:
            value = json.loads(f'"{candidate}"')
        except ValueError:
            continue
        if isinstance(value, str):
            # A cut between the two halves of a surrogate pair (`\ud83d` of an emoji) leaves
            # half a character, which no UTF-8 log or file could write.
            return value[:-1] if value and "\ud800" <= value[-1] <= "\udbff" else value
    return raw


def fallback_message(status: int | None, excerpt: str) -> str:
    """Return the message of an error whose body says nothing readable."""
    head = f"HTTP {status}" if status is not None else "Error"
    if not excerpt:
        return f"{head} with no error body"
    snippet = " ".join(excerpt[:BODY_EXCERPT_CHARS].split())
    return f"{head} with a non-JSON body: {snippet}"
