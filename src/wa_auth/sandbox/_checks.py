"""Argument checks shared by the sandbox's Python API, its admin API and its tokens file.

Every setter runs the same checks whether it is called from Python or over JSON, so a bad
argument gets one answer everywhere: a `ValueError` whose message names the argument (the
admin API turns it into a 400). The checks are strict where JSON is loose: a number is an
`int` or a `float` but never a `bool` or a string, and it is finite; a list is a list and never
a string (whose characters would read as items); a flag is a `bool`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_LATENCY",
    "MAX_SECONDS",
    "ArgumentTypeError",
    "check_keys",
    "flag",
    "iterable",
    "loads_strict",
    "nested_deeper",
    "opt_positive_int",
    "opt_text",
    "real",
    "text",
    "text_list",
]

#: The longest duration any argument may give (token lifetimes, windows, clock jumps): 100
#: years, so every time the sandbox renders stays inside what `datetime` can format.
MAX_SECONDS: Final = 100 * 365 * 24 * 3600.0
#: The longest injected latency, in seconds: longer is a mistake, not a slow network.
MAX_LATENCY: Final = 600.0
#: How deep a request's JSON may nest (the sandbox's own bound; Meta documents none).
MAX_JSON_DEPTH: Final = 256


class ArgumentTypeError(ValueError, TypeError):
    """An argument has the wrong type.

    It is a `ValueError`, the one error of every bad sandbox argument, and a `TypeError`, as
    Python's idiom for a wrong type expects.
    """


def real(
    name: str, value: object, *, low: float = 0.0, high: float, low_open: bool = False
) -> float:
    """Return *value* as a float if it is a finite number in [*low*, *high*].

    Args:
        name: The argument's name, for the message.
        value: The value to check.
        low: The smallest value allowed.
        high: The largest value allowed.
        low_open: *low* itself is not allowed (for "must be positive").

    Raises:
        ValueError: *value* is not an int or float (a bool is neither), is not finite, or is
            out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number, got {_show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if number < low or (low_open and number == low) or number > high:
        bound = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bound}{low:g}, {high:g}], got {value!r}")
    return number


def opt_positive_int(name: str, value: object) -> int | None:
    """Return *value* if it is None or an int >= 1 (not a bool).

    Raises:
        ValueError: Anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {_show(value)}")
    return value


def flag(name: str, value: object) -> bool:
    """Return *value* if it is a bool; JSON's `"false"` is a string, which is truthy.

    Raises:
        ValueError: *value* is not a bool.
    """
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be true or false, got {_show(value)}")
    return value


def text(name: str, value: object) -> str:
    """Return *value* if it is a string.

    Raises:
        ValueError: *value* is not a string.
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a string, got {_show(value)}")
    return value


def opt_text(name: str, value: object) -> str | None:
    """Return *value* if it is None or a string.

    Raises:
        ValueError: Anything else.
    """
    return None if value is None else text(name, value)


def text_list(name: str, value: object, *, ids: bool = False) -> tuple[str, ...]:
    """Return *value*, a list (or another iterable) of strings, as a tuple.

    Args:
        name: The argument's name, for the message.
        value: The value to check.
        ids: Also accept integers (Graph ids written as JSON numbers).

    Raises:
        ValueError: *value* is a string (whose characters would read as items), a mapping or
            not iterable, or an item is not a string (or an id).
    """
    items: list[str] = []
    for item in iterable(name, value, "strings"):
        if isinstance(item, str) or (
            ids and isinstance(item, int) and not isinstance(item, bool) and item >= 0
        ):
            items.append(str(item))
        else:
            raise ArgumentTypeError(f"{name} must be a list of strings, got an item {_show(item)}")
    return tuple(items)


def iterable(name: str, value: object, of: str) -> tuple[Any, ...]:
    """Return the items of *value*, refusing a string, bytes or a mapping posing as a list.

    Raises:
        ValueError: *value* is a string, bytes, a mapping or not iterable.
    """
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ArgumentTypeError(f"{name} must be a list of {of}, got {_show(value)}")
    return tuple(value)


def check_keys(where: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse keys of *given* that are not in *allowed*, naming them.

    Raises:
        ValueError: An unknown key.
    """
    known = set(allowed)
    unknown = sorted(str(k) for k in given if k not in known)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise ValueError(f"{where}: unknown argument {names}; allowed: {sorted(known)}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_strict(data: bytes | str) -> Any:
    """Parse JSON the way a strict parser does: `NaN`, `Infinity` and `1e999` are refused.

    Python's `json` module accepts `NaN` and `Infinity` and reads `1e999` as infinity; Meta's
    parsers and RFC 8259 do not. JSON nested deeper than `MAX_JSON_DEPTH` is refused too: it
    is no Graph request, and Python's parser raises `RecursionError` for it (which would end
    the request's thread and drop its connection).

    Raises:
        ValueError: Not valid JSON, a non-finite number, or nested too deep.
    """
    try:
        value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    if nested_deeper(value, MAX_JSON_DEPTH):
        raise ValueError(f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def nested_deeper(value: Any, limit: int) -> bool:
    """Return whether *value* nests lists and objects deeper than *limit* (no recursion)."""
    level: list[Any] = [value]
    for _ in range(limit + 1):
        level = [
            child
            for container in level
            if isinstance(container, (dict, list))
            for child in (container.values() if isinstance(container, dict) else container)
        ]
        if not level:
            return False
    return any(isinstance(v, (dict, list)) for v in level)


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"the number {literal[:40]} is out of range")
    return number


def _show(value: object) -> str:
    # A string in the wrong place may be a token pasted into the wrong field: never echo it.
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
