"""The error object of an answer: where it is (Meta's, a webhook's, a BSP's), and its fields.

Each field is read on its own, under every spelling Meta and the BSPs use: one that cannot be
read is None, and the others still classify.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from wa_auth._classify._body import is_map, to_text, utf8
from wa_auth._convert import to_int

__all__ = ["Fields", "code_in_text", "find_error_object", "read_www_authenticate"]

_CODE_IN_TEXT: Final = re.compile(r"\(#(-?\d+)\)")
_WWW_AUTH: Final = re.compile(r'"([a-z_]+)"\s*"(.*)"\s*$', re.IGNORECASE)
#: OAuth error names (WWW-Authenticate, `{"error": "invalid_token"}`) that imply a Graph code.
_OAUTH_ERROR_CODES: Final = {"invalid_token": 190, "insufficient_scope": 10}


# The keys of one error object, Meta's spelling first. The others: the legacy REST shape
# (`error_code` / `error_msg`), debug_token's `data.error` (`subcode`), a health_status entity's
# `errors[]` (`error_code` / `error_description`), YCloud's failed-message webhook
# (`errorCode` / `errorMessage`) and 360dialog's `meta.developerMessage` (`developer_message`
# in the snake_case variant its docs list for a restart).
_CODE_KEYS: Final = ("code", "error_code", "errorCode")
_SUBCODE_KEYS: Final = ("error_subcode", "subcode")
_MESSAGE_KEYS: Final = (
    "message",
    "error_msg",
    "error_description",
    "errorMessage",
    "developerMessage",
    "developer_message",
)
#: A BSP's symbolic error code: a letter, then letters, digits and underscores.
_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: An object without `error` around it is an error object when it has one of these.
_ERROR_KEYS: Final = frozenset(_CODE_KEYS + _MESSAGE_KEYS)
#: How many wrappers (BSP envelope, webhook event, `data`) are looked through at most.
_MAX_NESTING: Final = 4
#: The keys under which `_inner_error` looks for a wrapped error object.
_WRAPPERS: Final = frozenset(
    {
        "error",
        "whatsappApiError",
        "whatsappMessage",
        "errors",
        "data",
        "meta",
        "health_status",
        "entities",
    }
)


def find_error_object(parsed: Any) -> Mapping[str, Any] | None:
    """Return the innermost error object of a parsed body, or None when there is none.

    Meta's `{"error": {...}}` is the common case. Also understood: a list of such bodies,
    webhook `errors[]`, the legacy and OAuth shapes, an unwrapped error object, debug_token's
    `{"data": {"error": ...}}`, a health_status answer's entity `errors[]`, and BSPs that pass
    Meta's error on under their own keys (YCloud `whatsappApiError` / `whatsappMessage`,
    360dialog `meta`).
    """
    if type(parsed) is dict:
        err = parsed.get("error")
        if type(err) is dict and _WRAPPERS.isdisjoint(err):
            return err  # Meta's own envelope: the common case, decided in two lookups
    elif isinstance(parsed, list):
        parsed = next((p for p in parsed if is_map(p)), None)
    if not is_map(parsed):
        return None
    err = _inner_error(parsed)
    if err is None:
        err = _top_level_error(parsed)
        if err is None:
            return None
    for _ in range(_MAX_NESTING):
        inner = _inner_error(err)
        if inner is None:
            break
        err = inner
    return err


def _inner_error(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the error object *obj* wraps, or None when it wraps none."""
    if type(obj) is dict and _WRAPPERS.isdisjoint(obj):
        return None
    err = obj.get("error")
    if is_map(err):
        return err
    if isinstance(err, list) and err and is_map(err[0]):
        return err[0]
    nested = obj.get("whatsappApiError")  # YCloud: Meta's error under the BSP's own
    if is_map(nested):
        return nested
    nested = obj.get("whatsappMessage")  # YCloud's whatsapp.message.updated event
    if is_map(nested):
        return nested
    errors = obj.get("errors")
    if isinstance(errors, list) and errors and is_map(errors[0]):
        return errors[0]
    data = obj.get("data")  # debug_token: HTTP 200 with the reason in data.error
    if is_map(data):
        nested = data.get("error")
        if is_map(nested):
            return nested
    meta = obj.get("meta")  # 360dialog: {"meta": {"httpCode": 403, "developerMessage": ...}}
    if is_map(meta) and ("developerMessage" in meta or "developer_message" in meta):
        return meta
    health = obj.get("health_status")
    if is_map(health):
        return _health_error(health)
    if isinstance(obj.get("entities"), list):
        return _health_error(obj)
    return None


def _health_error(health: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the first error of a BLOCKED entity of a health_status answer (else of any)."""
    entities = health.get("entities")
    if not isinstance(entities, list):
        return None
    fallback = None
    for entity in entities:
        if not is_map(entity):
            continue
        errors = entity.get("errors")
        if not isinstance(errors, list):
            continue
        first = next((e for e in errors if is_map(e)), None)
        if first is None:
            continue
        if entity.get("can_send_message") == "BLOCKED":
            return first
        if fallback is None:
            fallback = first
    return fallback


def _top_level_error(parsed: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return *parsed* itself (or its OAuth reading) when it is an error without a wrapper."""
    err = parsed.get("error")
    if isinstance(err, str):  # OAuth style: {"error": "invalid_token", "error_description": ...}
        return {
            "message": to_text(parsed.get("error_description")) or err,
            "code": _OAUTH_ERROR_CODES.get(err.lower()),
        }
    if not _ERROR_KEYS.isdisjoint(parsed):
        return parsed
    return None


class Fields:
    """The fields of one error object, each read on its own; an unreadable one is None."""

    __slots__ = (
        "code",
        "details",
        "error_type",
        "fbtrace_id",
        "is_transient",
        "message",
        "name",
        "subcode",
        "title",
        "user_message",
        "user_title",
    )

    code: int | None
    #: A BSP's symbolic code (YCloud's `PARAM_INVALID`), when `code` holds a name, not a number.
    name: str | None
    subcode: int | None
    message: str | None
    title: str | None
    details: str | None
    user_title: str | None
    user_message: str | None
    error_type: str | None
    fbtrace_id: str | None
    is_transient: bool

    def __init__(self, err: Mapping[str, Any] | None) -> None:
        if err is None:
            self.code = self.subcode = self.name = None
            self.message = self.title = self.details = self.user_title = None
            self.user_message = self.error_type = self.fbtrace_id = None
            self.is_transient = False
            return
        get = err.get
        # Meta's own key first, inline; the other spellings only when it gave nothing usable.
        value = get("code")
        code = to_int(value) if value is not None else None
        self.code = code if code is not None else _first_int(err, _CODE_KEYS)
        self.name = None if self.code is not None else _first_name(err)
        self.subcode = _first_int(err, _SUBCODE_KEYS)
        value = get("message")
        message = value if value and type(value) is str else _first_text(err, _MESSAGE_KEYS)
        self.message = utf8(message)
        error_data = get("error_data")
        if is_map(error_data):
            details = to_text(error_data.get("details"))
        elif isinstance(error_data, str):
            details = error_data
        else:
            details = to_text(get("details"))  # On-Premises style errors[].details
        self.details = utf8(details)
        # Inline `type(...) is str`: the common case skips the call to to_text.
        value = get("title")
        self.title = utf8(value if value is None or type(value) is str else to_text(value))
        value = get("error_user_title")
        self.user_title = utf8(value if value is None or type(value) is str else to_text(value))
        value = get("error_user_msg")
        self.user_message = utf8(value if value is None or type(value) is str else to_text(value))
        value = get("type")
        self.error_type = utf8(value if value is None or type(value) is str else to_text(value))
        value = get("fbtrace_id")
        self.fbtrace_id = utf8(value if value is None or type(value) is str else to_text(value))
        self.is_transient = get("is_transient") is True


def _first_int(err: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = err.get(key)
        if value is not None:
            number = to_int(value)
            if number is not None:
                return number
    return None


def _first_name(err: Mapping[str, Any]) -> str | None:
    for key in _CODE_KEYS:
        value = err.get(key)
        if type(value) is str and _NAME.fullmatch(value):
            return value
    return None


def _first_text(err: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = err.get(key)
        if value is not None:
            text = to_text(value)
            if text:
                return text
    return None


def code_in_text(text: str) -> int | None:
    """Return the code of a `(#131056) ...` message, or None."""
    found = _CODE_IN_TEXT.search(text)
    return to_int(found.group(1)) if found else None


def read_www_authenticate(value: str) -> tuple[int | None, str | None]:
    """Return the code and message Graph echoed in `OAuth "Facebook Platform" "<error>" "<msg>"`."""
    m = _WWW_AUTH.search(value)
    if not m:
        return None, None
    oauth_error, message = m.group(1).lower(), m.group(2)
    code = code_in_text(message)
    if code is not None:  # 'OAuth "Facebook Platform" "invalid_request" "(#100) Invalid parameter"'
        return code, message
    return _OAUTH_ERROR_CODES.get(oauth_error), message
