"""The rule of an error: its code (inferred from its text when it has none), its row, its wait.

`rule_for` picks the row of `wa_auth._table` an error's code, subcode, BSP name or text
matches, with the HTTP status as the last resort; `retry_after` reads how long to wait from
the headers, the usage header or the row.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from wa_auth import _table

if TYPE_CHECKING:
    from wa_auth._table import Rule
    from wa_auth.models import Usage

__all__ = ["MAX_RETRY_AFTER", "parse_retry_after", "retry_after", "rule_for"]

#: Longest `retry_after` the classifier reports; a larger Retry-After is clamped to it.
MAX_RETRY_AFTER: Final = 7 * 24 * 3600.0
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
