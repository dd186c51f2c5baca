"""Frozen values returned by the client: results, media, numbers, templates, token info, usage.

A send's result and the usage headers are defined on import; the other answers' classes
(`wa_auth._answers`) on first use (PEP 562), so a one-message `wa-auth send` does not create
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from wa_auth._exports import claim as _claim
from wa_auth._exports import lazy_attributes as _lazy_attributes
from wa_auth._usage import EMPTY_USAGE, AppUsage, BusinessUsage, Usage

if TYPE_CHECKING:
    from wa_auth._answers import (
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
    )

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


_claim(__name__, globals())

#: The names defined elsewhere, made (or looked up) on first use: every other answer's class
#: (`wa_auth._answers`), and what the rest of wa_auth reads from `wa_auth._usage` directly.
_LAZY: Final = {
    **dict.fromkeys(
        (
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
        ),
        "wa_auth._answers",
    ),
    **dict.fromkeys(
        ("MAX_REGAIN_MINUTES", "WANTED_HEADERS", "pick_headers", "usage_from_picked"),
        "wa_auth._usage",
    ),
}


__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, globals())
