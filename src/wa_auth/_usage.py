"""Meta's usage headers, parsed: what every answer carries (`wa_auth.models` re-exports them).

Apart from the other models so that a send, which needs only these and `SendResult`, does not
create the classes of every other answer at import.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from wa_auth._convert import to_int

__all__ = [
    "EMPTY_USAGE",
    "MAX_REGAIN_MINUTES",
    "WANTED_HEADERS",
    "AppUsage",
    "BusinessUsage",
    "Usage",
    "pick_headers",
    "usage_from_picked",
]


# --- usage headers ---------------------------------------------------------------------------


@attrs.frozen
class AppUsage:
    """`X-App-Usage`: percentages of the app's hourly platform budget."""

    call_count: int = 0
    total_time: int = 0
    total_cputime: int = 0


@attrs.frozen
class BusinessUsage:
    """One entry of `X-Business-Use-Case-Usage` (per business object and use-case type)."""

    business_id: str
    type: str
    call_count: int = 0
    total_time: int = 0
    total_cputime: int = 0
    #: Minutes until access returns; 0 when not throttled.
    estimated_time_to_regain_access: int = 0


@attrs.frozen
class Usage:
    """Meta's usage headers of one response, parsed; empty when the headers are absent."""

    app: AppUsage | None = None
    business: tuple[BusinessUsage, ...] = ()

    @property
    def regain_access_seconds(self) -> float | None:
        """Return the longest `estimated_time_to_regain_access` in seconds, or None; never raises.

        A value beyond `MAX_REGAIN_MINUTES` counts as that many minutes, and a value that is
        not a number is skipped, so a `Usage` built by hand cannot overflow `float()` here.
        """
        longest = 0.0
        for entry in self.business:
            minutes = getattr(entry, "estimated_time_to_regain_access", None)
            if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
                continue
            if not (isinstance(minutes, float) and math.isnan(minutes)):
                longest = max(longest, minutes)
        return min(longest, MAX_REGAIN_MINUTES) * 60.0 if longest > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data (lists, not tuples, so it equals its own JSON round trip)."""
        return {
            "app": attrs.asdict(self.app) if self.app is not None else None,
            "business": [attrs.asdict(b) for b in self.business],
        }

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> Usage:
        """Parse the usage headers of a response; malformed values are ignored, never raised."""
        return usage_from_picked(pick_headers(headers))


EMPTY_USAGE = Usage()
#: Longest wait `Usage.regain_access_seconds` reports, in minutes: Meta's estimates are minutes
#: to hours, so a year is already no estimate at all.
MAX_REGAIN_MINUTES: Final = 366 * 24 * 60


def usage_from_picked(picked: Mapping[str, str]) -> Usage:
    """Return the `Usage` of headers already passed through `pick_headers`."""
    app_raw = picked.get("x-app-usage")
    buc_raw = picked.get("x-business-use-case-usage")
    if app_raw is None and buc_raw is None:
        return EMPTY_USAGE
    return _parse_usage(app_raw, buc_raw)


# A memo of a pure function over two header strings, like `re`'s pattern cache: Meta repeats
# the same usage values across many answers, and `Usage` is frozen, so sharing is safe.
@functools.lru_cache(maxsize=128)
def _parse_usage(app_raw: str | None, buc_raw: str | None) -> Usage:
    # Each header and each field stands alone: a bad one is dropped (0), the rest is kept.
    app = None
    data = _loads(app_raw)
    if isinstance(data, dict):
        app = AppUsage(
            call_count=_int(data.get("call_count")),
            total_time=_int(data.get("total_time")),
            total_cputime=_int(data.get("total_cputime")),
        )
    business: list[BusinessUsage] = []
    data = _loads(buc_raw)
    if isinstance(data, dict):
        for biz_id, entries in data.items():
            entries_list = entries if isinstance(entries, list) else [entries]
            business.extend(
                BusinessUsage(
                    business_id=str(biz_id),
                    type=_label(entry.get("type")),
                    call_count=_int(entry.get("call_count")),
                    total_time=_int(entry.get("total_time")),
                    total_cputime=_int(entry.get("total_cputime")),
                    estimated_time_to_regain_access=_int(
                        entry.get("estimated_time_to_regain_access")
                    ),
                )
                for entry in entries_list
                if isinstance(entry, dict)
            )
    return Usage(app=app, business=tuple(business))


#: The response headers wa_auth reads; everything else is left alone.
WANTED_HEADERS = frozenset(
    {"www-authenticate", "x-app-usage", "x-business-use-case-usage", "retry-after"}
)
_WANTED_RAW = frozenset(h.encode() for h in WANTED_HEADERS)


def pick_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Return the few headers wa_auth reads, with lowercase names, in one pass.

    httpx's `Headers.get` lowercases and scans every header on each call, so its raw pairs
    are read once instead; aiohttp's case-insensitive mapping is asked directly.
    """
    if not headers:
        return {}
    if type(headers) is dict:
        return {
            k.lower(): v
            for k, v in headers.items()
            if isinstance(k, str) and isinstance(v, str) and k.lower() in WANTED_HEADERS
        }
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):
        return {
            k.lower().decode("latin-1"): v.decode("latin-1")
            for k, v in raw
            if k.lower() in _WANTED_RAW
        }
    picked = {}
    for name in WANTED_HEADERS:
        value = headers.get(name)
        if isinstance(value, str):
            picked[name] = value
    return picked


def _loads(raw: str | None) -> Any:
    """Parse a usage header's JSON; None when it is not JSON or nested too deep to parse."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except RecursionError:
        return None
    except ValueError:
        # Python refuses integers of more than 4,300 digits; drop such a number, keep the rest.
        try:
            return json.loads(raw, parse_int=to_int)
        except (ValueError, RecursionError):
            return None


def _int(value: Any) -> int:
    return to_int(value) or 0


def _label(value: Any) -> str:
    """Return a usage entry's `type` as text; "" for anything but a string or a number."""
    if isinstance(value, str):
        return value
    number = to_int(value)
    return "" if number is None else str(number)


# Documented, and pickled, where users import them.
for _cls in (AppUsage, BusinessUsage, Usage):
    _cls.__module__ = "wa_auth.models"
