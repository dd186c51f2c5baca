"""The answers of the Graph API's calls other than a send: media, numbers, templates, tokens.

`wa_auth.models` re-exports each of them and creates them on first use: a one-message send
needs none of these classes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

import attrs

from wa_auth._usage import EMPTY_USAGE, Usage

__all__ = [
    "MANAGEMENT_SCOPES",
    "MESSAGING_SCOPES",
    "BusinessProfile",
    "GranularScope",
    "MediaContent",
    "MediaInfo",
    "MediaUpload",
    "MessageTemplate",
    "Page",
    "PhoneNumber",
    "SuccessResult",
    "TokenHealth",
    "TokenInfo",
    "TokenInfoError",
]

T = TypeVar("T")


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


# Documented, and pickled, where users import them.
for _cls in (
    BusinessProfile,
    GranularScope,
    MediaContent,
    MediaInfo,
    MediaUpload,
    MessageTemplate,
    Page,
    PhoneNumber,
    SuccessResult,
    TokenHealth,
    TokenInfo,
    TokenInfoError,
):
    _cls.__module__ = "wa_auth.models"
