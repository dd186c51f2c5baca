"""`Events`, the hub a client, a guard or a provider emits its events to.

Apart from the event types (`wa_auth.events`, which re-exports the hub): what emits needs only
the hub, and builds an event type when a subscriber wants it, so a process that nobody listens
to (a one-message `wa-auth send`) never creates the event classes.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wa_auth._event import Event, Subscriber

__all__ = ["Events", "LoggingSubscriber"]

_log = logging.getLogger("wa_auth")
# A library never prints: without the application configuring logging, records go nowhere.
_log.addHandler(logging.NullHandler())


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
        self._checks: dict[type[Event], tuple[Callable[[], bool], ...] | None] = {}

    @classmethod
    def with_logging(cls) -> Events:
        """Return a hub whose only subscriber logs through the standard `logging` module."""
        return cls(LoggingSubscriber())

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """The subscribers, in order (empty: nothing listens, and an emitter may skip its work)."""
        return self._subscribers

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
            if wants():
                return True
        return False

    def _learn(self, kind: type[Event]) -> tuple[Callable[[], bool], ...] | None:
        """Return (and keep until the subscribers change) who must be asked about *kind*.

        Each is asked with no argument: the subscriber's `wants` bound to *kind*, or, for a
        `LoggingSubscriber`, its logger's `isEnabledFor` bound to the kind's level (the same
        answer, a call fewer per question; the logger's level is still read each time).
        """
        with self._lock:
            found: list[Callable[[], bool]] = []
            checks: tuple[Callable[[], bool], ...] | None
            for subscriber in self._subscribers:
                if type(subscriber) is LoggingSubscriber:
                    found.append(subscriber._check(kind))  # noqa: SLF001 - this module's own
                    continue
                wants = getattr(subscriber, "wants", None)
                if wants is None:
                    checks = None
                    break
                found.append(functools.partial(wants, kind))
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

    def wants(self, kind: type[Event]) -> bool:
        """Whether an event of *kind* would be logged: its logger is enabled for its level."""
        logger = self._auth if kind.kind == "auth" else self._http
        return logger.isEnabledFor(kind.level)

    def _check(self, kind: type[Event]) -> Callable[[], bool]:
        """`wants(kind)` as a call of no argument, for the hub to keep per kind."""
        logger = self._auth if kind.kind == "auth" else self._http
        return functools.partial(logger.isEnabledFor, kind.level)

    def __call__(self, event: Event) -> None:
        """Log one event."""
        logger = self._auth if event.kind == "auth" else self._http
        level = event.level
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


# Both are documented where users import them: `wa_auth.Events`, `wa_auth.events.LoggingSubscriber`.
Events.__module__ = "wa_auth"
LoggingSubscriber.__module__ = "wa_auth.events"
