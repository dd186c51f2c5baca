"""JSON from callers, read strictly: the one parser of the CLI's and `wa-auth serve`'s input.

Python's `json` module takes things a caller never means and guesses: a key given twice keeps
its last value (a recipient silently changed), `NaN` and `Infinity` are numbers, `1e999` is
infinity, and JSON nested a few thousand deep raises `RecursionError`, which is no
`ValueError` and used to end a whole batch as an internal error. Here each is refused with a
`JSONInputError` (a `ValueError`) that says what was wrong, so each front door can answer it
as that line's `invalid_request` or as a usage error for the whole input.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from wa_auth._validate import MAX_JSON_DEPTH

__all__ = ["MAX_JSON_DEPTH", "JSONInputError", "decode_utf8", "loads"]

#: A key shown in an error message is cut to this many characters.
_SHOWN_KEY_CHARS: Final = 40


class JSONInputError(ValueError):
    """A caller's JSON that wa_auth refuses; the message says why, never echoing a value.

    Args:
        message: What was wrong.
        not_json: The input is no JSON at all (a syntax error), rather than JSON refused.
    """

    def __init__(self, message: str, *, not_json: bool = False) -> None:
        super().__init__(message)
        self.not_json = not_json


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= _SHOWN_KEY_CHARS else key[:37] + "..."
                raise JSONInputError(
                    f"the key {shown!r} appears twice in one object: which value is meant?"
                )
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise JSONInputError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise JSONInputError(f"the number {literal[:40]} is out of range")
    return number


#: One decoder, made once: `json.loads` with these hooks would build one per call.
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_unique, parse_constant=_constant, parse_float=_finite
)


#: The first bytes of a JSON object or list: with a second byte that is not NUL, UTF-8.
_OPENERS: Final = (b"{", b"[")


def decode_utf8(data: bytes) -> str:
    """Return *data* decoded as UTF-8 (a leading byte order mark dropped).

    Raises:
        JSONInputError: A byte that is not UTF-8, named with its 1-based column.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONInputError(
            f"not UTF-8: byte 0x{data[exc.start]:02x} at column {exc.start + 1}"
        ) from None


def loads(data: str | bytes) -> Any:
    """Return the JSON value *data* holds, read strictly.

    Bytes are read as UTF-8 (or UTF-16/32 with a byte order mark, as `json.loads` does).

    Raises:
        JSONInputError: Not JSON, not UTF-8, a key given twice in one object, `NaN` or
            `Infinity`, a number out of range, or nested deeper than `MAX_JSON_DEPTH`.
    """
    if isinstance(data, bytes):
        if data.startswith(_OPENERS) and data[1:2] != b"\x00":
            # An object or a list in UTF-8 (a request's body): what `json.detect_encoding`
            # says of these bytes, without its Python-level look at them.
            data = decode_utf8(data)
        else:
            encoding = json.detect_encoding(data)
            data = decode_utf8(data) if encoding.startswith("utf-8") else _decode(data, encoding)
    try:
        value = _DECODER.decode(data)
    except RecursionError:
        raise _too_deep() from None
    except JSONInputError:
        raise
    except ValueError as exc:
        raise JSONInputError(f"not valid JSON: {exc}", not_json=True) from None
    # Fewer brackets than the limit cannot nest deeper: most inputs skip the walk.
    if data.count("[") + data.count("{") > MAX_JSON_DEPTH and _depth_over(value, MAX_JSON_DEPTH):
        raise _too_deep()
    return value


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"not {encoding.upper()} text: {exc.reason}") from None


def _too_deep() -> JSONInputError:
    return JSONInputError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")


def _depth_over(value: Any, limit: int) -> bool:
    """Return whether *value* nests lists and objects deeper than *limit* (without recursion)."""
    level: list[Any] = [value]
    depth = 0
    while level:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return False
