"""Typed events, the `Events` hub they are emitted to, and two subscribers: logging and counters.

Auth events (a token failed, was invalidated, was replaced) are kept apart from business
errors (rate limits, invalid requests, transient faults): they go to the `wa_auth.auth` logger,
the others to `wa_auth.http`. Events carry token fingerprints, never tokens. There is no global
hub: a client emits to the `Events` object it was given.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import attrs

from wa_auth._counters import Counters, RotationWindow, WindowStats
from wa_auth._event import Event
from wa_auth._exports import claim as _claim
from wa_auth._hub import Events, LoggingSubscriber

__all__ = [
    "ApiCallFailed",
    "AuthFailed",
    "AuthRetried",
    "CircuitClosed",
    "CircuitOpened",
    "Counters",
    "Event",
    "Events",
    "LoggingSubscriber",
    "MessageDelivered",
    "MessageExpired",
    "MessageFailed",
    "MessageMaybeDelivered",
    "MessageQueued",
    "MessageRetrying",
    "RotationConfirmed",
    "RotationRolledBack",
    "RotationWindow",
    "SenderPaused",
    "SenderResumed",
    "StateFellBack",
    "TokenActivated",
    "TokenExchanged",
    "TokenFailedOver",
    "TokenHealthWarning",
    "TokenInvalidated",
    "WindowStats",
]


@attrs.frozen(kw_only=True)
class AuthFailed(Event):
    """A call failed for an auth reason: token expired/revoked, permission, account state."""

    name: ClassVar[str] = "auth.failed"
    kind: ClassVar[str] = "auth"
    level: ClassVar[int] = logging.WARNING

    category: str
    operation: str
    code: int | None = None
    subcode: int | None = None
    fbtrace_id: str | None = None
    rule: str | None = None
    operator_action: str = ""
    #: The phone number id (or WABA id) the call was routed by.
    phone_number_id: str | None = None


@attrs.frozen(kw_only=True)
class TokenInvalidated(Event):
    """The client told its provider that a token is dead."""

    name: ClassVar[str] = "auth.token_invalidated"
    kind: ClassVar[str] = "auth"

    category: str


@attrs.frozen(kw_only=True)
class AuthRetried(Event):
    """The provider produced a different token; the call is being sent once more with it."""

    name: ClassVar[str] = "auth.retried"
    kind: ClassVar[str] = "auth"

    new_token_fingerprint: str
    operation: str


@attrs.frozen(kw_only=True)
class ApiCallFailed(Event):
    """A call failed for a reason that is not auth: rate limit, transient, invalid, unknown."""

    name: ClassVar[str] = "api.failed"
    level: ClassVar[int] = logging.WARNING

    category: str
    operation: str
    code: int | None = None
    http_status: int | None = None
    fbtrace_id: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    maybe_delivered: bool = False
    #: The phone number id (or WABA id) the call was routed by.
    phone_number_id: str | None = None


# --- the guard's events -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _GuardEvent(Event):
    """Base of what a guard reports about one intent: its sender, its key, its attempts."""

    phone_number_id: str | None = None
    idempotency_key: str | None = None
    operation: str | None = None
    attempts: int = 0


@attrs.frozen(kw_only=True)
class MessageDelivered(_GuardEvent):
    """Meta accepted a guarded intent (acceptance; delivery is reported by webhooks)."""

    name: ClassVar[str] = "guard.delivered"

    message_id: str | None = None


@attrs.frozen(kw_only=True)
class MessageRetrying(_GuardEvent):
    """A guarded intent failed with a retryable error and is sent again after *delay* seconds."""

    name: ClassVar[str] = "guard.retrying"

    category: str
    delay: float
    code: int | None = None


@attrs.frozen(kw_only=True)
class MessageQueued(_GuardEvent):
    """A guarded intent cannot be sent now and was handed to the outbox (or failed without one).

    *reason* is the failure's category, or `paused` / `circuit_open` / `pacing` when the guard
    held it back without asking Meta; *not_before* is the earliest retry (Unix seconds).
    """

    name: ClassVar[str] = "guard.queued"

    category: str
    reason: str
    not_before: float | None = None


@attrs.frozen(kw_only=True)
class MessageFailed(_GuardEvent):
    """A guarded intent failed for good (or for now, without an outbox): its category says why."""

    name: ClassVar[str] = "guard.failed"

    category: str
    code: int | None = None


@attrs.frozen(kw_only=True)
class MessageMaybeDelivered(_GuardEvent):
    """The answer to a guarded send was lost: Meta may have accepted it; it is not re-sent."""

    name: ClassVar[str] = "guard.maybe_delivered"

    category: str = "transient"


@attrs.frozen(kw_only=True)
class MessageExpired(_GuardEvent):
    """A guarded intent passed its `not_after` deadline before it could be sent: never sent."""

    name: ClassVar[str] = "guard.expired"


@attrs.frozen(kw_only=True)
class SenderPaused(Event):
    """A phone number stopped sending: its account or number state fails every send."""

    name: ClassVar[str] = "guard.sender_paused"
    kind: ClassVar[str] = "auth"

    phone_number_id: str
    category: str
    code: int | None = None
    until: float | None = None


@attrs.frozen(kw_only=True)
class SenderResumed(Event):
    """A paused phone number sends again: a probe succeeded (`by="probe"`) or an operator said."""

    name: ClassVar[str] = "guard.sender_resumed"
    kind: ClassVar[str] = "auth"

    phone_number_id: str
    by: str


@attrs.frozen(kw_only=True)
class CircuitOpened(Event):
    """Consecutive transient failures stopped a number's sends for a cool-down (Meta is down)."""

    name: ClassVar[str] = "guard.circuit_opened"

    phone_number_id: str
    failures: int
    until: float


@attrs.frozen(kw_only=True)
class CircuitClosed(Event):
    """A half-open circuit's probe succeeded: the number sends again."""

    name: ClassVar[str] = "guard.circuit_closed"

    phone_number_id: str


@attrs.frozen(kw_only=True)
class TokenHealthWarning(Event):
    """The token expires soon or lacks scopes a guard requires: act before sends fail."""

    name: ClassVar[str] = "auth.token_health_warning"
    kind: ClassVar[str] = "auth"

    expires_in: float | None = None
    missing_scopes: tuple[str, ...] = ()


# --- the rotating provider's events -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TokenActivated(Event):
    """A planned rotation made a new token the active one; it is now being watched."""

    name: ClassVar[str] = "auth.token_activated"
    kind: ClassVar[str] = "auth"

    previous_fingerprint: str | None = None
    #: The rotating provider's defaults (`DEFAULT_ROLLBACK_WINDOW`, `DEFAULT_ROLLBACK_FAILURES`).
    window: int = 10
    max_failures: int = 3


@attrs.frozen(kw_only=True)
class RotationConfirmed(Event):
    """The rotated-in token served a full window of calls without too many token failures."""

    name: ClassVar[str] = "auth.rotation_confirmed"
    kind: ClassVar[str] = "auth"

    calls: int
    failures: int


@attrs.frozen(kw_only=True)
class RotationRolledBack(Event):
    """The rotated-in token failed too often; the previous token is active again."""

    name: ClassVar[str] = "auth.rotation_rolled_back"
    kind: ClassVar[str] = "auth"

    restored_fingerprint: str | None
    calls: int
    failures: int


@attrs.frozen(kw_only=True)
class TokenFailedOver(Event):
    """The active token proved dead; the next candidate takes over."""

    name: ClassVar[str] = "auth.token_failover"
    kind: ClassVar[str] = "auth"

    category: str


@attrs.frozen(kw_only=True)
class TokenExchanged(Event):
    """A long-lived user token was exchanged for a new one through `fb_exchange_token`."""

    name: ClassVar[str] = "auth.token_exchanged"
    kind: ClassVar[str] = "auth"

    new_token_fingerprint: str
    expires_at: float | None = None
    persisted: bool = False


@attrs.frozen(kw_only=True)
class StateFellBack(Event):
    """A fleet's shared store (Redis) did not answer; this process answered on its own.

    `store` is `verdicts`, `pauses`, `limiter`, `webhooks` (`wa-auth serve --redis` admitted
    webhook events in its queue file's ledger) or `health` (a client's `token_health()` asked
    Meta without the shared cache); `address` is Redis's `host:port`; `reason`
    the error's message (never a password). Counted per `store` as a metric by `Counters` and
    the Prometheus subscriber (`fleet.fallback` events).
    """

    name: ClassVar[str] = "fleet.fallback"

    store: str
    address: str
    reason: str
    category: str = "transient"


_claim(__name__, globals())
