"""Frozen values returned by the client: results, media, numbers, templates, token info, usage."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

import attrs

from wa_auth._convert import to_int
from wa_auth._exports import claim as _claim

__all__ = [
    "AppUsage",
    "BusinessProfile",
    "BusinessUsage",
    "GranularScope",
    "MediaContent",
    "MediaInfo",
    "MediaUpload",
    "MessageTemplate",
    "Page",
    "PhoneNumber",
    "SendResult",
    "SuccessResult",
    "TokenHealth",
    "TokenInfo",
    "TokenInfoError",
    "Usage",
]

T = TypeVar("T")


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


# --- results ---------------------------------------------------------------------------------


@attrs.frozen
class SendResult:
    """A message Meta accepted: its id (the wamid) and the recipient's WhatsApp id.

    Acceptance is not delivery: delivery failures arrive later in status webhooks.
    """

    message_id: str
    wa_id: str | None
    input: str | None = None
    message_status: str | None = None
    idempotency_key: str | None = None
    usage: Usage = EMPTY_USAGE
    #: The fingerprint of the token it was sent with (which token a workflow depends on).
    token_fingerprint: str | None = None


@attrs.frozen
class SuccessResult:
    """An operation that answers `{"success": true}` (mark as read, delete media)."""

    success: bool
    usage: Usage = EMPTY_USAGE


@attrs.frozen
class MediaUpload:
    """The id of an uploaded media object."""

    media_id: str
    usage: Usage = EMPTY_USAGE


@attrs.frozen
class MediaInfo:
    """A media object's short-lived download URL and metadata."""

    media_id: str
    url: str = attrs.field(repr=False)
    mime_type: str | None = None
    sha256: str | None = None
    file_size: int | None = None
    usage: Usage = EMPTY_USAGE


@attrs.frozen
class MediaContent:
    """Downloaded media bytes."""

    media_id: str
    content: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    mime_type: str | None = None
    sha256: str | None = None


@attrs.frozen
class PhoneNumber:
    """A business phone number of a WhatsApp Business Account."""

    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    code_verification_status: str | None = None
    platform_type: str | None = None
    throughput_level: str | None = None
    name_status: str | None = None
    usage: Usage = EMPTY_USAGE
    #: The number's `status` (`CONNECTED`, `FLAGGED`, `RESTRICTED`, `BANNED`, ...).
    status: str | None = None
    #: `health_status.can_send_message`: `AVAILABLE`, `LIMITED` or `BLOCKED` (every node on
    #: the send path: number, WABA, business, app), None when Meta did not say.
    can_send_message: str | None = None

    @property
    def blocked(self) -> bool:
        """True when Meta says this number cannot send messages now (its health status)."""
        return self.can_send_message == "BLOCKED"


@attrs.frozen
class Page(Generic[T]):
    """One page of a list endpoint, with the cursor of the next page when there is one."""

    items: tuple[T, ...]
    after: str | None = None
    usage: Usage = EMPTY_USAGE


@attrs.frozen
class BusinessProfile:
    """The WhatsApp business profile of a phone number."""

    about: str | None = None
    address: str | None = None
    description: str | None = None
    email: str | None = None
    profile_picture_url: str | None = None
    websites: tuple[str, ...] = ()
    vertical: str | None = None
    usage: Usage = EMPTY_USAGE


@attrs.frozen
class MessageTemplate:
    """A message template of the WABA."""

    id: str
    name: str
    language: str | None = None
    status: str | None = None
    category: str | None = None
    components: tuple[Mapping[str, Any], ...] = attrs.field(default=(), repr=False)


@attrs.frozen
class GranularScope:
    """A scope and the assets (WABA ids) it applies to; no targets means every asset."""

    scope: str
    target_ids: tuple[str, ...] = ()


@attrs.frozen
class TokenInfoError:
    """The error Meta embeds in `debug_token` when the inspected token is invalid."""

    code: int | None
    subcode: int | None
    message: str


@attrs.frozen
class TokenInfo:
    """What `debug_token` says about a token.

    `expires_at` and `data_access_expires_at` are Unix seconds; 0 means never.
    """

    is_valid: bool
    app_id: str | None = None
    application: str | None = None
    type: str | None = None
    user_id: str | None = None
    expires_at: int = 0
    data_access_expires_at: int = 0
    issued_at: int | None = None
    scopes: tuple[str, ...] = ()
    granular_scopes: tuple[GranularScope, ...] = ()
    error: TokenInfoError | None = None
    usage: Usage = EMPTY_USAGE

    @property
    def never_expires(self) -> bool:
        """Return True when Meta reports no expiry (`expires_at == 0`)."""
        return self.expires_at == 0


#: The scope a token needs to send messages.
MESSAGING_SCOPES: Final = ("whatsapp_business_messaging",)
#: The scope a token needs to manage templates, numbers and the business account.
MANAGEMENT_SCOPES: Final = ("whatsapp_business_management",)


@attrs.frozen(kw_only=True)
class TokenHealth:
    """A token's health as `client.token_health()` reports it from `debug_token`.

    `expires_at` and `data_access_expires_at` are Unix seconds, None when Meta reports none;
    `expires_in` is the time left when checked. `waba_in_scope` says whether the client's
    `business_account_id` is among the token's granular scope targets (None when unknown).
    """

    valid: bool
    token_fingerprint: str | None = None
    token_type: str | None = None
    app_id: str | None = None
    expires_at: int | None = None
    expires_in: float | None = None
    data_access_expires_at: int | None = None
    scopes: tuple[str, ...] = ()
    missing_messaging_scopes: tuple[str, ...] = ()
    missing_management_scopes: tuple[str, ...] = ()
    waba_in_scope: bool | None = None
    error: str | None = None
    error_category: str | None = None
    checked_at: float = 0.0

    @property
    def can_message(self) -> bool:
        """Return True when the token is valid and has the messaging scope."""
        return self.valid and not self.missing_messaging_scopes and self.waba_in_scope is not False

    @property
    def can_manage(self) -> bool:
        """Return True when the token is valid and has the management scope."""
        return self.valid and not self.missing_management_scopes and self.waba_in_scope is not False

    @classmethod
    def from_info(
        cls,
        info: TokenInfo,
        fingerprint: str | None,
        waba_id: str | None,
        now: float | None = None,
    ) -> TokenHealth:
        """Build the health report from a `debug_token` answer."""
        now = time.time() if now is None else now
        scopes = info.scopes
        waba_in_scope: bool | None = None
        relevant = [
            g for g in info.granular_scopes if g.scope in MESSAGING_SCOPES + MANAGEMENT_SCOPES
        ]
        if waba_id is not None and relevant:
            waba_in_scope = all(not g.target_ids or waba_id in g.target_ids for g in relevant)
        expires_at = info.expires_at or None
        return cls(
            valid=info.is_valid,
            token_fingerprint=fingerprint,
            token_type=info.type,
            app_id=info.app_id,
            expires_at=expires_at,
            expires_in=None if expires_at is None else expires_at - now,
            data_access_expires_at=info.data_access_expires_at or None,
            scopes=scopes,
            missing_messaging_scopes=tuple(s for s in MESSAGING_SCOPES if s not in scopes),
            missing_management_scopes=tuple(s for s in MANAGEMENT_SCOPES if s not in scopes),
            waba_in_scope=waba_in_scope,
            error=info.error.message if info.error is not None else None,
            checked_at=now,
        )

    @classmethod
    def from_error(
        cls, error: Exception, fingerprint: str | None, now: float | None = None
    ) -> TokenHealth:
        """Build the report of a token Meta rejected (or that has a verdict).

        `error` is Meta's message without `str()`'s "Request <trace id>: " prefix: the report
        is read by people (`wa-auth check`), and the trace id belongs to the one request.
        """
        message = getattr(error, "message", None)
        return cls(
            valid=False,
            token_fingerprint=fingerprint,
            error=message if isinstance(message, str) and message else str(error),
            error_category=getattr(error, "category", None),
            checked_at=time.time() if now is None else now,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        data = attrs.asdict(self)
        data["scopes"] = list(self.scopes)
        data["missing_messaging_scopes"] = list(self.missing_messaging_scopes)
        data["missing_management_scopes"] = list(self.missing_management_scopes)
        data["can_message"] = self.can_message
        data["can_manage"] = self.can_manage
        return data


_claim(__name__, globals())
