"""The classifier: an error answer, read field by field, becomes an error of its row's class.

`classify` (behind `wa_auth.errors.from_response`), `classify_webhook` (`from_webhook_error`)
and `classify_token_info` (a debug_token `data.error`) are pure and never raise: an answer
they cannot read at all is classified by its HTTP status alone. They build the error with the
class that *classes* gives for the row's category (`wa_auth.errors.error_class_for`), so this
package needs nothing from `wa_auth.errors`: the imports go `_table` <- `_classify` <- `errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

from wa_auth import _table
from wa_auth._classify._body import TEXT_CUT, fallback_message, parse_body, salvage_truncated
from wa_auth._classify._fields import (
    Fields,
    code_in_text,
    find_error_object,
    read_www_authenticate,
)
from wa_auth._classify._rule import retry_after, rule_for
from wa_auth._usage import pick_headers, usage_from_picked

__all__ = ["Classes", "classify", "classify_token_info", "classify_webhook"]

E = TypeVar("E")
#: A row's category -> the class of its errors, called with the message and the fields.
Classes = Callable[[str], Callable[..., E]]

#: HTTP statuses are three digits; anything larger is not a status (and would be costly to print).
_MAX_STATUS: Final = 999


def classify(
    status_code: int | None,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    classes: Classes[E],
) -> E:
    """Classify an error answer of the Graph API (see `wa_auth.errors.from_response`)."""
    status = _status(status_code)
    try:
        return _build(status, body, headers, classes, status)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        what = f"Unclassifiable error answer (HTTP {status})"
        return _unreadable(status, what, exc, classes, status)


def classify_webhook(obj: Any, classes: Classes[E]) -> E:
    """Classify one error object of a webhook (see `wa_auth.errors.from_webhook_error`)."""
    try:
        body = {"error": obj} if isinstance(obj, Mapping) else obj
        return _build(None, body, None, classes, None)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return _unreadable(None, "Unclassifiable webhook error", exc, classes, None)


def classify_token_info(code: Any, subcode: Any, message: Any, classes: Classes[E]) -> E:
    """Classify the `data.error` of a debug_token answer as a 401 with that error would be.

    debug_token answers HTTP 200 and puts the reason an inspected token is invalid in
    `data.error` (`{"code": 190, "subcode": 463, "message": ...}`); token health uses this to
    give such a token the same category, rule and verdict as a failed call. The error carries
    no HTTP status, because none failed. Never raises.
    """
    obj = {"code": code, "error_subcode": subcode, "message": message}
    try:
        return _build(401, {"error": obj}, None, classes, None)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return _unreadable(401, "Unclassifiable debug_token error", exc, classes, None)


def _status(status_code: Any) -> int | None:
    if type(status_code) is int:
        return status_code if 0 <= status_code <= _MAX_STATUS else None
    if isinstance(status_code, int) and not isinstance(status_code, bool):  # HTTPStatus
        return int(status_code) if 0 <= status_code <= _MAX_STATUS else None
    return None


def _unreadable(
    status: int | None, what: str, exc: Exception, classes: Classes[E], http_status: int | None
) -> E:
    """Return the error for an answer that failed to classify: by HTTP status alone.

    *status* chooses the row; *http_status* is the error's (None when no call failed).
    """
    rule = _table.lookup(None, None, "", status)
    return classes(rule.category)(
        f"{what}: {type(exc).__name__}",
        http_status=http_status,
        rule=rule.id,
        retryable=rule.max_attempts > 1,
        retry_after=rule.retry_after,
        max_attempts=rule.max_attempts,
        ambiguous=rule.ambiguous,
        operator_action=rule.operator_action,
    )


def _build(
    status: int | None,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    classes: Classes[E],
    http_status: int | None,
) -> E:
    """Read *body* and *headers* field by field, choose the row, build its class's error.

    *status* chooses the row with the rest; *http_status* is the error's.
    """
    parsed, excerpt = parse_body(body)
    err = find_error_object(parsed)
    salvaged = text_cut = False
    if err is None and excerpt:
        # A body cut off mid-JSON (proxy limits, logging truncation) still names its code.
        err = salvage_truncated(excerpt)
        if err is not None:
            salvaged, text_cut = True, TEXT_CUT in err
    f = Fields(err)
    code, subcode, message = f.code, f.subcode, f.message
    picked = pick_headers(headers)

    if code is None and message:
        code = code_in_text(message)
    header_message = None
    if code is None:
        www_auth = picked.get("www-authenticate")
        if www_auth:
            # Graph echoes auth failures in WWW-Authenticate; the body's own text stays first.
            code, header_message = read_www_authenticate(www_auth)
            message = message or header_message

    title, details, user_message = f.title, f.details, f.user_message

    def text() -> str:
        texts = (message, title, details, user_message, header_message)
        return " ".join(t for t in texts if t).lower()

    code_lost = code is None and f.name is None
    subcode_lost = subcode is None
    code, subcode, rule = rule_for(
        code, subcode, text, status, is_transient=f.is_transient, name=f.name
    )
    ambiguous = rule.ambiguous
    if salvaged and not ambiguous:
        # What a cut body lost (its code, its subcode, the end of its message) may have chosen
        # another row: the reading of the part that survived stays open.
        ambiguous = code_lost or _table.lost_could_change(
            code,
            rule,
            subcode_lost=subcode_lost,
            text_lost=text_cut,
        )

    usage = usage_from_picked(picked)
    wait = retry_after(picked, usage, rule)

    if not message:
        message = title or details or fallback_message(status, excerpt)
    return classes(rule.category)(
        message,
        http_status=http_status,
        code=code,
        subcode=subcode,
        error_type=f.error_type,
        user_title=f.user_title,
        user_message=user_message,
        details=details,
        fbtrace_id=f.fbtrace_id,
        usage=usage,
        rule=rule.id,
        retryable=rule.max_attempts > 1,
        retry_after=wait,
        max_attempts=rule.max_attempts,
        ambiguous=ambiguous,
        operator_action=rule.operator_action,
    )
