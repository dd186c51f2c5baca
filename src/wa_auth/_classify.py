"""The parsing half of the classifier: body, error object, fields, rule and Retry-After.

`wa_auth.errors.from_response` turns whatever Meta, a proxy or a BSP answered into an
`ApiError` with these helpers. Each one is total: a field it cannot read (a 5,000-digit code,
a body nested too deep for `json`, a usage number beyond any float) is dropped or clamped, and
the fields around it still classify. Imports go `_table` <- `_classify` <- `errors`; nothing
here knows about HTTP clients, shells or providers.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from wa_auth import _table
from wa_auth._convert import to_int, well_formed

if TYPE_CHECKING:
    from wa_auth._table import Rule
    from wa_auth.models import Usage

#: Longest `retry_after` the classifier reports; a larger Retry-After is clamped to it.
MAX_RETRY_AFTER: Final = 7 * 24 * 3600.0
#: How much of a non-JSON body is kept (redacted) for diagnostics.
BODY_EXCERPT_CHARS: Final = 300

_CODE_IN_TEXT: Final = re.compile(r"\(#(-?\d+)\)")
_WWW_AUTH: Final = re.compile(r'"([a-z_]+)"\s*"(.*)"\s*$', re.IGNORECASE)
#: OAuth error names (WWW-Authenticate, `{"error": "invalid_token"}`) that imply a Graph code.
_OAUTH_ERROR_CODES: Final = {"invalid_token": 190, "insufficient_scope": 10}
#: Texts that name an auth failure when the code is missing (legacy and re-wrapped shapes).
_TOKEN_TEXTS: Final = (
    "error validating access token",
    "error processing access token",
    "invalid oauth access token",
    "invalid oauth 2.0 access token",
    "malformed access token",
    "cannot parse access token",
)
#: 100/33 without its code: only the WWW-Authenticate header or a re-wrapped message survived.
_NO_OBJECT_RE: Final = re.compile(r"unsupported (?:get|post|delete) request\. object with id")
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


def is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """Return True for a mapping; JSON gives plain dicts, the ABC check is the slow fallback."""
    return type(value) is dict or isinstance(value, Mapping)


# --- the body ------------------------------------------------------------------------------


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
        stripped = _utf8(stripped) or ""
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


# --- the error object ------------------------------------------------------------------------


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
        self.message = _utf8(message)
        error_data = get("error_data")
        if is_map(error_data):
            details = to_text(error_data.get("details"))
        elif isinstance(error_data, str):
            details = error_data
        else:
            details = to_text(get("details"))  # On-Premises style errors[].details
        self.details = _utf8(details)
        # Inline `type(...) is str`: the common case skips the call to to_text.
        value = get("title")
        self.title = _utf8(value if value is None or type(value) is str else to_text(value))
        value = get("error_user_title")
        self.user_title = _utf8(value if value is None or type(value) is str else to_text(value))
        value = get("error_user_msg")
        self.user_message = _utf8(value if value is None or type(value) is str else to_text(value))
        value = get("type")
        self.error_type = _utf8(value if value is None or type(value) is str else to_text(value))
        value = get("fbtrace_id")
        self.fbtrace_id = _utf8(value if value is None or type(value) is str else to_text(value))
        self.is_transient = get("is_transient") is True


def _first_int(err: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = err.get(key)
        if value is not None:
            number = to_int(value)
            if number is not None:
                return number
    return None


def _utf8(value: str | None) -> str | None:
    """Return *value* with each half of a surrogate pair replaced by U+FFFD (`well_formed`).

    JSON allows a lone surrogate escape (half an emoji), which no UTF-8 file, log or terminal
    can write: the CLI failed with an internal error on such a message.
    """
    return None if value is None else well_formed(value)


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


def fallback_message(status: int | None, excerpt: str) -> str:
    """Return the message of an error whose body says nothing readable."""
    head = f"HTTP {status}" if status is not None else "Error"
    if not excerpt:
        return f"{head} with no error body"
    snippet = " ".join(excerpt[:BODY_EXCERPT_CHARS].split())
    return f"{head} with a non-JSON body: {snippet}"


# --- the rule --------------------------------------------------------------------------------


def _infer_code(text: str, subcode: int | None) -> tuple[int | None, int | None]:
    """Guess the Graph code of an error object that has none, from its text alone."""
    if any(t in text for t in _TOKEN_TEXTS) or "session has expired" in text:
        return 190, subcode
    if _NO_OBJECT_RE.search(text):
        return 100, 33 if subcode is None else subcode
    return None, subcode


def rule_for(
    code: int | None,
    subcode: int | None,
    text: Callable[[], str],
    status: int | None,
    *,
    is_transient: bool,
    name: str | None = None,
) -> tuple[int | None, int | None, Rule]:
    """Return the code and subcode (inferred from *text* when absent) and the matching rule.

    Without a code, a BSP's symbolic code *name* is tried before the text.
    """
    if code is None:
        lowered = text()
        if lowered and (name is None or name.upper() not in _table.BY_NAME):
            code, subcode = _infer_code(lowered, subcode)
        rule = _table.lookup(code, subcode, lowered, None, name)
    else:
        # Most errors are decided by code and subcode: the text is only built when asked for.
        rule = _table.lookup(code, subcode, text, None)
    if rule is _table.UNKNOWN_RULE:
        if is_transient:
            rule = _table.TRANSIENT_FLAG_RULE
        elif status is not None:
            rule = _table.lookup(None, None, "", status)
    return code, subcode, rule


# --- retry_after -----------------------------------------------------------------------------


def retry_after(headers: Mapping[str, str] | None, usage: Usage, rule: Rule) -> float | None:
    """Return the seconds to wait: Retry-After, else the usage header's estimate, else the row's."""
    raw = headers.get("retry-after") if headers else None
    if raw:
        seconds = parse_retry_after(raw)
        if seconds is not None:
            return seconds
    regain = usage.regain_access_seconds
    if regain is not None:
        return min(regain, MAX_RETRY_AFTER)
    return rule.retry_after


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Parse a Retry-After value (seconds or an HTTP date), clamped to [0, MAX_RETRY_AFTER].

    RFC 9110 §10.2.3: `Retry-After = HTTP-date / delay-seconds`. A date is turned into the
    seconds from *now* (the current time by default); a date in the past gives 0. Fractional
    or negative seconds are tolerated (and clamped) because proxies send them; anything else,
    NaN included, gives None.
    """
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000" parses naive; RFC 9110 dates are always UTC
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN  # noqa: PLR0124
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))
