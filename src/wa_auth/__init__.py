"""wa_auth: WhatsApp Business Cloud API access tokens as a managed, observable state.

The public surface is the sorted `__all__` below. Modules are imported on first use (PEP 562),
so `python -m wa_auth --version` does not import httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wa_auth._client import AsyncWhatsAppClient, WhatsAppClient
    from wa_auth.errors import (
        AccountStateError,
        ApiError,
        AuthError,
        InsufficientPermissionError,
        InvalidRequestError,
        RateLimitError,
        RequestValidationError,
        TokenExpiredError,
        TokenRevokedError,
        TokenUnavailableError,
        TransientError,
        TransportError,
        UnknownApiError,
        WebhookSignatureError,
        WhatsAppError,
        from_response,
        from_webhook_error,
    )
    from wa_auth.events import Events
    from wa_auth.models import (
        BusinessProfile,
        MediaContent,
        MediaInfo,
        MediaUpload,
        MessageTemplate,
        Page,
        PhoneNumber,
        SendResult,
        SuccessResult,
        TokenInfo,
        Usage,
    )
    from wa_auth.providers import StaticTokenProvider, Token, TokenProvider

__all__ = [
    "AccountStateError",
    "ApiError",
    "AsyncWhatsAppClient",
    "AuthError",
    "BusinessProfile",
    "Events",
    "InsufficientPermissionError",
    "InvalidRequestError",
    "MediaContent",
    "MediaInfo",
    "MediaUpload",
    "MessageTemplate",
    "Page",
    "PhoneNumber",
    "RateLimitError",
    "RequestValidationError",
    "SendResult",
    "StaticTokenProvider",
    "SuccessResult",
    "Token",
    "TokenExpiredError",
    "TokenInfo",
    "TokenProvider",
    "TokenRevokedError",
    "TokenUnavailableError",
    "TransientError",
    "TransportError",
    "UnknownApiError",
    "Usage",
    "WebhookSignatureError",
    "WhatsAppClient",
    "WhatsAppError",
    "__version__",
    "from_response",
    "from_webhook_error",
]

_ERRORS = (
    "AccountStateError ApiError AuthError InsufficientPermissionError InvalidRequestError "
    "RateLimitError RequestValidationError TokenExpiredError TokenRevokedError "
    "TokenUnavailableError TransientError TransportError UnknownApiError "
    "WebhookSignatureError WhatsAppError from_response from_webhook_error"
)
_MODELS = (
    "BusinessProfile MediaContent MediaInfo MediaUpload MessageTemplate Page PhoneNumber "
    "SendResult SuccessResult TokenInfo Usage"
)
#: Where each public name lives; imported on first access.
_LAZY: dict[str, str] = {
    **dict.fromkeys(_ERRORS.split(), "wa_auth.errors"),
    **dict.fromkeys(_MODELS.split(), "wa_auth.models"),
    "AsyncWhatsAppClient": "wa_auth._client",
    "WhatsAppClient": "wa_auth._client",
    "Events": "wa_auth.events",
    "StaticTokenProvider": "wa_auth.providers",
    "Token": "wa_auth.providers",
    "TokenProvider": "wa_auth.providers",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("wa-auth")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wa_auth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
