"""Values as the outbox and the state file store them: errors and deliveries from their JSON.

An error is stored as its `to_dict()` (never the token: that shape holds only its
fingerprint) and comes back as the same class with the same policy fields, so a guard or a
replay decides on a stored error exactly as on a fresh one. Each field is read on its own: a
field of the wrong type (a hand-edited file) is dropped and the class default stands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from wa_auth import errors
from wa_auth._usage import EMPTY_USAGE
from wa_auth.errors import ApiError, WhatsAppError

__all__ = ["dumps", "encodable", "error_from_dict", "loads_object", "printable"]

_NUMBER: Final = (int, float)
#: The fields of `WhatsAppError.to_dict()` (and its subclasses') that are set back, by type.
_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "retryable": (bool,),
    "retry_after": _NUMBER,
    "max_attempts": (int,),
    "ambiguous": (bool,),
    "operator_action": (str,),
    "http_status": (int,),
    "code": (int,),
    "subcode": (int,),
    "error_type": (str,),
    "user_title": (str,),
    "user_message": (str,),
    "details": (str,),
    "fbtrace_id": (str,),
    "token_fingerprint": (str,),
    "maybe_delivered": (bool,),
    "rule": (str,),
    "source": (str,),
    "kind": (str,),
    "path": (str,),
}
#: What an `ApiError` sets in `__init__` and a bare instance would lack.
_API_DEFAULTS: Final[dict[str, Any]] = {
    "http_status": None,
    "code": None,
    "subcode": None,
    "error_type": None,
    "user_title": None,
    "user_message": None,
    "details": None,
    "fbtrace_id": None,
    "token_fingerprint": None,
    "rule": None,
    "maybe_delivered": False,
}


def encodable(text: str) -> bool:
    """Return True when *text* is valid Unicode (no lone surrogate): SQLite can store it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    r"""Return *text* with each lone surrogate written as its escape (`\ud800`), or as is.

    A Graph or proxy message may hold half an emoji (JSON's `"\ud83d"`): it must still go
    into a message, a log line or a row, so it is escaped rather than allowed to fail there.
    """
    if encodable(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dumps(value: object) -> str:
    r"""Return compact JSON (what a row stores), always storable.

    Text is kept as it is, except when it holds a lone surrogate (a peer's half emoji): then
    the JSON escapes it (`\ud83d`), which reads back as the same string.
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if encodable(text):
        return text
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def loads_object(text: str | None) -> dict[str, Any] | None:
    """Return the JSON object *text* holds, or None for no text or anything but an object.

    A hand-edited value nested too deep to read is as unreadable as one that is not JSON.
    """
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _error_class(data: Mapping[str, Any]) -> type[WhatsAppError]:
    name = data.get("type")
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, WhatsAppError):
        return cls
    category = data.get("category")
    return errors.error_class_for(category if isinstance(category, str) else "unknown")


def error_from_dict(data: Mapping[str, Any]) -> WhatsAppError:
    """Return the error whose `to_dict()` is *data*: its class, message and policy fields.

    The class is found by its name in `wa_auth.errors` (by the category when the name is
    unknown); a field of the wrong type keeps the class default. `usage` is not restored.
    """
    cls = _error_class(data)
    message = data.get("message")
    text = message if isinstance(message, str) else ""
    err = cls.__new__(cls)
    err.args = (text,)
    state: dict[str, Any] = {"message": text}
    if issubclass(cls, ApiError):
        state.update(_API_DEFAULTS, usage=EMPTY_USAGE)
    for name, kinds in _FIELDS.items():
        value = data.get(name)
        if name not in data or (value is None and name not in _API_DEFAULTS):
            continue
        if value is None or (isinstance(value, kinds) and not _is_bool_for_number(value, kinds)):
            state[name] = value
    fingerprints = data.get("fingerprints")
    if isinstance(fingerprints, list) and all(isinstance(f, str) for f in fingerprints):
        state["fingerprints"] = tuple(fingerprints)
    err.__dict__.update(state)
    return err


def _is_bool_for_number(value: object, kinds: tuple[type, ...]) -> bool:
    """A JSON `true` is an int to Python; it is not a number here."""
    return isinstance(value, bool) and bool not in kinds
