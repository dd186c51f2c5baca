"""How `parse` reads a webhook's values: ids as text, timestamps as ints, objects as mappings.

Values are read leniently (an id may be a number, a timestamp a numeric string) and strictly
bounded (an id longer than `MAX_ID` characters is no id). None of these raises on a value JSON
can hold. They live apart from `_parse` because a `MessageStatus` reads its derived fields with
them too (see `_types.status_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

from wa_auth._convert import to_int, well_formed

__all__ = ["MAX_DIGITS", "MAX_ID", "is_map", "read_id", "seconds"]

#: The longest id, name or code read; Meta's are far shorter, so a longer one is garbage.
MAX_ID: Final = 1024
#: Digits of a timestamp read without `to_int` (18 always fit a signed 64-bit integer).
MAX_DIGITS: Final = 18


def is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    """Return whether *value* is a mapping; a JSON object (a dict) without the ABC's cost."""
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def read_id(value: object) -> str | None:
    """Return an id, name or code as text: a string (or an integer Meta sent as a number)."""
    if type(value) is str:
        if 0 < len(value) <= MAX_ID:
            return value if value.isascii() else well_formed(value)
        return None
    number = to_int(value) if isinstance(value, int) else None
    return None if number is None else str(number)


def seconds(value: object) -> int | None:
    """Return a timestamp (Meta sends `"1750263773"`) as an int, or None."""
    if type(value) is str and 0 < len(value) <= MAX_DIGITS and value.isascii() and value.isdigit():
        return int(value)
    return to_int(value)
