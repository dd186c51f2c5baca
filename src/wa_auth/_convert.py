"""The converters for what wa_auth reads from Meta and peers: integers and text.

`to_int` is the one integer converter for numbers read from bodies, headers and debug_token;
`well_formed` the one repair of text a peer sent that UTF-8 cannot encode; `json_encoder` the
one JSON encoder made once for the lines written per message.

Meta's numbers arrive as JSON integers, as floats (`131048.0`), as strings when a BSP re-wraps
an error (`"131056"`), and sometimes as garbage. Every reader goes through `to_int`, so a value
that is not a usable integer is dropped the same way everywhere instead of raising in one
place (`int(1e308)` then `float()` overflows, `int("1" * 5000)` exceeds Python's digit limit)
and passing in another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

__all__ = ["INT_MAX", "INT_MIN", "json_encoder", "to_int", "well_formed"]

#: Meta's codes, subcodes, counters and Unix times all fit a signed 64-bit integer; a larger
#: value is not one Meta sends, and keeping it would overflow `float()` further on.
INT_MAX: Final = 2**63 - 1
INT_MIN: Final = -(2**63)
#: An optional sign and at most 19 digits (the length of INT_MAX), blanks around allowed.
_INT_TEXT: Final = re.compile(r"\s*([+-]?\d{1,19})\s*")
#: Longer strings are refused before the regex runs, so a 5,000-digit "code" costs nothing.
_MAX_TEXT: Final = 40


def to_int(value: object) -> int | None:
    """Return *value* as an int, or None when it is not a usable integer.

    Accepted: ints (not bools), finite floats (truncated toward zero, as `int()` does) and
    strings holding only an optionally signed decimal integer. Anything outside the signed
    64-bit range, NaN, infinities, bools, None and every other type give None.
    """
    if type(value) is int:  # the common case: a JSON integer
        return value if INT_MIN <= value <= INT_MAX else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return int(value) if INT_MIN <= value <= INT_MAX else None
    if isinstance(value, float):
        # NaN fails both comparisons, infinities and huge floats fail one: all give None.
        if INT_MIN <= value <= INT_MAX:
            return int(value)
        return None
    if isinstance(value, str) and len(value) <= _MAX_TEXT:
        m = _INT_TEXT.fullmatch(value)
        if m:
            number = int(m.group(1))
            return number if INT_MIN <= number <= INT_MAX else None
    return None


def well_formed(value: str) -> str:
    r"""Return *value* with each half of a surrogate pair replaced by U+FFFD.

    JSON allows a lone surrogate escape (`"\\ud83d"`, a string cut inside an emoji), which no
    UTF-8 file, log, terminal or database can hold: every text a peer sent is repaired here
    before it is written anywhere. A pair of surrogates becomes its character; any other text
    comes back as it is (ASCII at the cost of one `isascii`).
    """
    if value.isascii():
        return value
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def json_encoder(item_separator: str = ", ", key_separator: str = ": ") -> Callable[[Any], str]:
    """Return `json.dumps(value, ensure_ascii=False, allow_nan=False)` with these separators.

    `json.dumps` with any option builds a `JSONEncoder`, and each encoding builds its C
    encoder: here the C encoder is made once (a third less per line). It has no
    circular-reference check: the values are JSON-shaped (made from JSON, or by wa_auth), and
    a cycle would end in a `RecursionError` instead of a `ValueError`.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python): the encoder as it is
        return json.JSONEncoder(
            separators=(item_separator, key_separator), ensure_ascii=False, allow_nan=False
        ).encode
    # markers (None: no cycle check, see above), default, the string encoder of
    # ensure_ascii=False, indent, the separators, then sort_keys, skipkeys and allow_nan.
    flags = (False, False, False)
    encode = make(
        None, _not_json, json.encoder.encode_basestring, None, key_separator, item_separator, *flags
    )
    return lambda value: "".join(encode(value, 0))


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
