"""wa_auth: WhatsApp Business Cloud API access tokens as a managed, observable state.

The public surface is the sorted `__all__` below. Modules are imported on first use (PEP 562),
so `python -m wa_auth --version` does not import httpx. `wa_auth.sandbox`, `wa_auth.testing`
and `wa_auth.webhooks` are public modules imported directly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wa_auth._client import (
        AsyncWhatsAppClient,
        WhatsAppClient,
    )
    from wa_auth._fast import (
        FastAsyncWhatsAppClient,
    )
    from wa_auth.errors import (
        AccountStateError,
        AllCandidatesRejectedError,
        ApiError,
        AuthError,
        InsufficientPermissionError,
        InvalidRequestError,
        RateLimitError,
        RequestValidationError,
        TokenExpiredError,
        TokenRevokedError,
        TokenSourceMalformedError,
        TokenSourceMissingError,
        TokenUnavailableError,
        TransientError,
        TransportError,
        UnknownApiError,
        VaultCredentialError,
        VaultDeniedError,
        VaultPolicyError,
        VaultSealedError,
        VaultSecretNotFoundError,
        VaultUnreachableError,
        WebhookSignatureError,
        WhatsAppError,
        from_response,
        from_webhook_error,
    )
    from wa_auth.events import (
        ApiCallFailed,
        AuthFailed,
        AuthRetried,
        Counters,
        Events,
        TokenInvalidated,
    )
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
        TokenHealth,
        TokenInfo,
        Usage,
    )
    from wa_auth.providers import (
        EnvTokenProvider,
        FbTokenExchanger,
        FileTokenProvider,
        RefreshingTokenProvider,
        RefreshPolicy,
        RotatingTokenProvider,
        RotationConfirmed,
        RotationRolledBack,
        RoutingTokenProvider,
        StaticTokenProvider,
        Token,
        TokenActivated,
        TokenExchanged,
        TokenFailedOver,
        TokenProvider,
        TokenVerdicts,
        VaultAppRole,
        VaultTokenProvider,
        VerdictStore,
    )

__all__ = [
    "AccountStateError",
    "AllCandidatesRejectedError",
    "ApiCallFailed",
    "ApiError",
    "AsyncWhatsAppClient",
    "AuthError",
    "AuthFailed",
    "AuthRetried",
    "BusinessProfile",
    "Counters",
    "EnvTokenProvider",
    "Events",
    "FastAsyncWhatsAppClient",
    "FbTokenExchanger",
    "FileTokenProvider",
    "InsufficientPermissionError",
    "InvalidRequestError",
    "MediaContent",
    "MediaInfo",
    "MediaUpload",
    "MessageTemplate",
    "Page",
    "PhoneNumber",
    "RateLimitError",
    "RefreshPolicy",
    "RefreshingTokenProvider",
    "RequestValidationError",
    "RotatingTokenProvider",
    "RotationConfirmed",
    "RotationRolledBack",
    "RoutingTokenProvider",
    "SendResult",
    "StaticTokenProvider",
    "SuccessResult",
    "Token",
    "TokenActivated",
    "TokenExchanged",
    "TokenExpiredError",
    "TokenFailedOver",
    "TokenHealth",
    "TokenInfo",
    "TokenInvalidated",
    "TokenProvider",
    "TokenRevokedError",
    "TokenSourceMalformedError",
    "TokenSourceMissingError",
    "TokenUnavailableError",
    "TokenVerdicts",
    "TransientError",
    "TransportError",
    "UnknownApiError",
    "Usage",
    "VaultAppRole",
    "VaultCredentialError",
    "VaultDeniedError",
    "VaultPolicyError",
    "VaultSealedError",
    "VaultSecretNotFoundError",
    "VaultTokenProvider",
    "VaultUnreachableError",
    "VerdictStore",
    "WebhookSignatureError",
    "WhatsAppClient",
    "WhatsAppError",
    "__version__",
    "from_response",
    "from_webhook_error",
]

#: Where each public name lives; imported on first access.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ["AsyncWhatsAppClient", "WhatsAppClient"],
        "wa_auth._client",
    ),
    **dict.fromkeys(
        ["FastAsyncWhatsAppClient"],
        "wa_auth._fast",
    ),
    **dict.fromkeys(
        [
            "AccountStateError",
            "AllCandidatesRejectedError",
            "ApiError",
            "AuthError",
            "InsufficientPermissionError",
            "InvalidRequestError",
            "RateLimitError",
            "RequestValidationError",
            "TokenExpiredError",
            "TokenRevokedError",
            "TokenSourceMalformedError",
            "TokenSourceMissingError",
            "TokenUnavailableError",
            "TransientError",
            "TransportError",
            "UnknownApiError",
            "VaultCredentialError",
            "VaultDeniedError",
            "VaultPolicyError",
            "VaultSealedError",
            "VaultSecretNotFoundError",
            "VaultUnreachableError",
            "WebhookSignatureError",
            "WhatsAppError",
            "from_response",
            "from_webhook_error",
        ],
        "wa_auth.errors",
    ),
    **dict.fromkeys(
        ["ApiCallFailed", "AuthFailed", "AuthRetried", "Counters", "Events", "TokenInvalidated"],
        "wa_auth.events",
    ),
    **dict.fromkeys(
        [
            "BusinessProfile",
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
            "Usage",
        ],
        "wa_auth.models",
    ),
    **dict.fromkeys(
        [
            "EnvTokenProvider",
            "FbTokenExchanger",
            "FileTokenProvider",
            "RefreshPolicy",
            "RefreshingTokenProvider",
            "RotatingTokenProvider",
            "RotationConfirmed",
            "RotationRolledBack",
            "RoutingTokenProvider",
            "StaticTokenProvider",
            "Token",
            "TokenActivated",
            "TokenExchanged",
            "TokenFailedOver",
            "TokenProvider",
            "TokenVerdicts",
            "VaultAppRole",
            "VaultTokenProvider",
            "VerdictStore",
        ],
        "wa_auth.providers",
    ),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from wa_auth._version import package_version

        return package_version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wa_auth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
