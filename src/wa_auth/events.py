"""Typed events, the `Events` hub they are emitted to, and two subscribers: logging and counters.

Auth events (a token failed, was invalidated, was replaced) are kept apart from business
errors (rate limits, invalid requests, transient faults): they go to the `wa_auth.auth` logger,
the others to `wa_auth.http`. Events carry token fingerprints, never tokens. There is no global
hub: a client emits to the `Events` object it was given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from wa_auth._counters import Counters, RotationWindow, WindowStats
from wa_auth._event import Event, Subscriber
from wa_auth._exports import claim as _claim

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

_log = logging.getLogger("wa_auth")
# A library never prints: without the application configuring logging, records go nowhere.
_log.addHandler(logging.NullHandler())


@attrs.frozen(kw_only=True)
class AuthFailed(Event):
    """A call failed for an auth reason: token expired/revoked, permission, account state."""

    name: ClassVar[str] = "auth.failed"
    kind: ClassVar[str] = "auth"

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


class Events:
    """A hub that hands every event to its subscribers, in order.

    A subscriber that raises is logged and skipped: observability never breaks a send.
    """

    def __init__(self, *subscribers: Subscriber) -> None:
        self._subscribers: tuple[Subscriber, ...] = tuple(subscribers)
        self._lock = threading.Lock()
        #: Per event kind, the `wants` of the subscribers that have one, or None when a
        #: subscriber without one takes everything: learnt on first use, forgotten when the
        #: subscribers change. The answers themselves are asked each time (a logger's level
        #: may change).
        self._checks: dict[type[Event], tuple[Callable[[type[Event]], bool], ...] | None] = {}

    @classmethod
    def with_logging(cls) -> Events:
        """Return a hub whose only subscriber logs through the standard `logging` module."""
        return cls(LoggingSubscriber())

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add *subscriber*; return a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)
            self._checks = {}

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)
                self._checks = {}

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Deliver *event* to every subscriber."""
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # noqa: BLE001 - a subscriber must not break a send
                _log.exception("wa_auth event subscriber %r failed on %s", subscriber, event.name)

    def wants(self, kind: type[Event]) -> bool:
        """Whether any subscriber would do anything with an event of *kind*.

        An emitter on a hot path asks first and builds the event only then (a delivered
        message's event, with nobody listening, costs nothing). A subscriber tells with an
        optional `wants(kind)` method; one without it wants every event. Which subscribers
        have one is looked up once per kind (again after `subscribe` or its undo); their
        answers are asked each time, so a logger's level set later counts.
        """
        try:
            checks = self._checks[kind]
        except KeyError:
            checks = self._learn(kind)
        if checks is None:
            return True
        for wants in checks:  # noqa: SIM110 - any() would make a generator per call
            if wants(kind):
                return True
        return False

    def _learn(self, kind: type[Event]) -> tuple[Callable[[type[Event]], bool], ...] | None:
        """Return (and keep until the subscribers change) who must be asked about *kind*."""
        with self._lock:
            found: list[Callable[[type[Event]], bool]] = []
            for subscriber in self._subscribers:
                wants = getattr(subscriber, "wants", None)
                if wants is None:
                    checks = None
                    break
                found.append(wants)
            else:
                checks = tuple(found)
            self._checks[kind] = checks
            return checks

    def __repr__(self) -> str:
        return f"Events(subscribers={len(self._subscribers)})"


class LoggingSubscriber:
    """Log auth events to `wa_auth.auth` and other events to `wa_auth.http`.

    Structured fields go in `extra` under one `wa_auth` key, so a JSON formatter can pick them up.
    """

    def __init__(
        self,
        auth_logger: logging.Logger | None = None,
        http_logger: logging.Logger | None = None,
    ) -> None:
        self._auth = auth_logger or logging.getLogger("wa_auth.auth")
        self._http = http_logger or logging.getLogger("wa_auth.http")
        #: Per event kind, its logger and level (the logger's own cache tells if it logs).
        self._routes: dict[type[Event], tuple[logging.Logger, int]] = {}

    def _route(self, kind: type[Event]) -> tuple[logging.Logger, int]:
        level = logging.WARNING if issubclass(kind, (AuthFailed, ApiCallFailed)) else logging.INFO
        route = self._routes[kind] = (self._auth if kind.kind == "auth" else self._http, level)
        return route

    def wants(self, kind: type[Event]) -> bool:
        """Whether an event of *kind* would be logged: its logger is enabled for its level."""
        try:
            logger, level = self._routes[kind]
        except KeyError:
            logger, level = self._route(kind)
        return logger.isEnabledFor(level)

    def __call__(self, event: Event) -> None:
        """Log one event."""
        try:
            logger, level = self._routes[type(event)]
        except KeyError:
            logger, level = self._route(type(event))
        if not logger.isEnabledFor(level):
            return
        fields = event.to_dict()
        # `Logger.log` would walk the stack to find this very line; the record is built
        # directly with it instead, and the message's detail is only joined if a handler
        # formats it.
        record = logger.makeRecord(
            logger.name,
            level,
            __file__,
            _LOG_LINE,
            "%s %s",
            (event.name, _Detail(fields)),
            None,
            "__call__",
            {"wa_auth": fields},
        )
        logger.handle(record)


class _Detail:
    """The `key=value` tail of a log message, joined only when the message is formatted."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def __str__(self) -> str:
        return " ".join(
            f"{k}={v}"
            for k, v in self._fields.items()
            if k not in _UNLOGGED and v not in (None, "")
        )


_UNLOGGED = frozenset({"event", "at", "operator_action"})
_LOG_LINE = LoggingSubscriber.__call__.__code__.co_firstlineno

_claim(__name__, globals())
