"""The public surface of `wa_auth`, written once: each public name and the module it lives in.

`wa_auth/__init__.py` imports each name from here on first use (PEP 562), and its
`TYPE_CHECKING` imports and `__all__` are generated from this table by
`scripts/gen_init.py` (a test checks that they agree). Each public module calls `claim()` at
its end, so its exported classes and functions report `__module__ == "wa_auth"`: tracebacks
say `wa_auth.TokenRevokedError`, and pickles point at the name users import. Stdlib only: the
CLI's `--version` reads this without importing httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["PUBLIC", "claim", "lazy_attributes", "lazy_map"]

#: Public module -> the names `wa_auth` re-exports from it, sorted.
PUBLIC: Final[dict[str, tuple[str, ...]]] = {
    "wa_auth._client": ("AsyncWhatsAppClient", "FastAsyncWhatsAppClient", "WhatsAppClient"),
    "wa_auth.errors": (
        "AccountStateError",
        "AllCandidatesRejectedError",
        "ApiError",
        "AuthError",
        "ConfigurationError",
        "InsufficientPermissionError",
        "InvalidRequestError",
        "OutboxError",
        "OutboxUnavailableError",
        "RateLimitError",
        "RequestValidationError",
        "StateUnavailableError",
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
    ),
    "wa_auth.events": (
        "ApiCallFailed",
        "AuthFailed",
        "AuthRetried",
        "CircuitClosed",
        "CircuitOpened",
        "Counters",
        "Events",
        "MessageDelivered",
        "MessageExpired",
        "MessageFailed",
        "MessageMaybeDelivered",
        "MessageQueued",
        "MessageRetrying",
        "RotationConfirmed",
        "RotationRolledBack",
        "SenderPaused",
        "SenderResumed",
        "StateFellBack",
        "TokenActivated",
        "TokenExchanged",
        "TokenFailedOver",
        "TokenHealthWarning",
        "TokenInvalidated",
    ),
    "wa_auth.fleet": ("RedisState",),
    "wa_auth.guards": (
        "Delivery",
        "Guard",
        "Handlers",
        "RetryPolicy",
        "guarded",
        "requires_scopes",
    ),
    "wa_auth.intents": ("Intent",),
    "wa_auth.models": (
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
    ),
    "wa_auth.outbox": ("MemoryOutbox", "Outbox", "PostgresOutbox", "SqliteOutbox"),
    "wa_auth.pacing": (
        "LocalRateLimiter",
        "MemoryPauseStore",
        "Pause",
        "PauseStore",
        "RateLimiter",
    ),
    "wa_auth.prometheus": ("PrometheusSubscriber",),
    "wa_auth.providers": (
        "EnvTokenProvider",
        "FbTokenExchanger",
        "FileTokenProvider",
        "RefreshPolicy",
        "RefreshingTokenProvider",
        "RotatingTokenProvider",
        "RoutingTokenProvider",
        "StaticTokenProvider",
        "Token",
        "TokenProvider",
        "TokenVerdicts",
        "VaultAppRole",
        "VaultTokenProvider",
        "VerdictStore",
    ),
    "wa_auth.state": (
        "HealthCache",
        "PostgresPauseStore",
        "PostgresState",
        "PostgresVerdictStore",
        "SqlitePauseStore",
        "SqliteRateLimiter",
        "SqliteVerdictStore",
        "StateFile",
    ),
}


def lazy_map() -> dict[str, str]:
    """Return public name -> the module to import it from."""
    return {name: module for module, names in PUBLIC.items() for name in names}


def claim(module: str, namespace: dict[str, Any]) -> None:
    """Make the public names *module* defines report `__module__ == "wa_auth"`.

    Only classes and functions defined in wa_auth are renamed; a name another public module
    re-exports is claimed by the module that defines it too, which changes nothing.
    """
    for name in PUBLIC.get(module, ()):
        value = namespace.get(name)
        origin = getattr(value, "__module__", "")
        if (
            isinstance(origin, str)
            and origin.startswith("wa_auth")
            and hasattr(value, "__qualname__")
        ):
            value.__module__ = "wa_auth"


def lazy_attributes(
    module: str, table: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a public module's PEP 562 `__getattr__` and `__dir__` over *table*.

    *table* maps each name the module loads on first use to the module that defines it; the
    value found is claimed (see `claim`) and kept in *namespace*, the module's globals, so it
    is looked up once. `__dir__` lists the globals and the module's `__all__`.
    """

    def lookup(name: str) -> Any:
        origin = table.get(name)
        if origin is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(origin), name)
        claim(module, {name: value})
        namespace[name] = value
        return value

    def listing() -> list[str]:
        return sorted({*namespace, *namespace["__all__"]})

    return lookup, listing
