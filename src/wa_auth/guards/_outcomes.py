"""The outcomes of the guard's policy: what becomes of an intent, once, as effects.

`delivered`, `expired`, `held_back` (the guard kept it from Meta: a paused number, an open
circuit, pacing past the budget) and `final` (its last send failed: handlers once, the
fallback, one event, the outbox). `begin` hands the intent to the outbox before its first
send, and turns a key the outbox already delivered into that delivery (`duplicate`).
`_flows` decides; this module records.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import attrs

from wa_auth._delivery import (
    DELIVERED,
    EXPIRED,
    FAILED,
    MAYBE_DELIVERED,
    QUEUED,
    Delivery,
    accepted,
)
from wa_auth._effects import PolicyFlow
from wa_auth.errors import (
    AccountStateError,
    OutboxError,
    RateLimitError,
    TransientError,
    WhatsAppError,
)
from wa_auth.guards._effects import (
    NO_FALLBACK,
    Begin,
    ClearPause,
    Fallback,
    GetPause,
    Handle,
    Runtime,
    Settle,
)
from wa_auth.guards._values import LATER_CATEGORIES
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.pacing import ACCOUNT, CIRCUIT, Pause

if TYPE_CHECKING:
    from wa_auth.events import MessageDelivered
    from wa_auth.guards._values import Config
    from wa_auth.outbox._protocol import OutboxRow

__all__ = [
    "DUPLICATE",
    "Recorded",
    "begin",
    "delivered",
    "delivery_of",
    "event_fields",
    "expired",
    "fallback",
    "final",
    "fingerprint_of",
    "held_back",
]

_log = logging.getLogger("wa_auth.guards")

#: The `reason` of an intent the outbox had already delivered: its delivery, nothing sent.
DUPLICATE = "duplicate"


@attrs.frozen
class Recorded:
    """Read the outbox's row of an idempotency key (None: none)."""

    key: str

    def perform(self, env: Runtime, /) -> OutboxRow | None:
        assert env.outbox is not None
        return env.outbox.get(self.key)

    async def aperform(self, env: Runtime, /) -> OutboxRow | None:
        assert env.outbox is not None
        return await env.outbox.aget(self.key)


def begin(intent: Intent, route: str | None) -> PolicyFlow[Intent | Delivery]:
    """Record *intent* as `sending`; return the intent sent, or the delivery of a duplicate.

    An intent without a sender is recorded with the number it goes from (*route*), so a later
    replay sends it from there. A key the outbox holds as delivered is not sent again and is
    no failure: its delivery comes back with the original message id (reason `duplicate`,
    no event: nothing was sent). Any other refusal is raised.
    """
    if intent.phone_number_id is None and route is not None:
        intent = intent._routed(route)  # noqa: SLF001 - evolve without re-checking
    try:
        yield Begin(intent)
    except OutboxError as exc:
        if exc.kind != "duplicate":
            raise
        refusal = exc
    else:
        return intent
    row: OutboxRow | None = yield Recorded(intent.idempotency_key)
    if row is None or row.state != DELIVERED or not row.message_id:
        raise refusal  # maybe delivered, or being sent by a worker that stopped: not known
    result = SendResult(
        message_id=row.message_id,
        wa_id=None,
        idempotency_key=intent.idempotency_key,
        token_fingerprint=row.token_fingerprint,
    )
    return Delivery(state=DELIVERED, intent=row.intent, result=result, reason=DUPLICATE)


def event_fields(cfg: Config, intent: Intent, route: str | None, attempts: int) -> dict[str, Any]:
    return {
        "consumer": intent.consumer or cfg.consumer,
        "phone_number_id": route,
        "idempotency_key": intent.idempotency_key,
        "operation": intent.operation,
        "attempts": attempts,
    }


def delivered(
    cfg: Config,
    intent: Intent,
    route: str | None,
    result: SendResult,
    attempts: int,
    *,
    circuit: bool,
) -> PolicyFlow[Delivery]:
    """An accepted send: close the number's circuit if it has one, one event, the outbox."""
    if route is not None and circuit:
        yield from close_circuit(cfg, intent, route)
    delivery = delivery_of(cfg, intent, route, result, attempts)
    if cfg.outbox:
        yield Settle(delivery)
    return delivery


def delivery_of(
    cfg: Config, intent: Intent, route: str | None, result: SendResult, attempts: int
) -> Delivery:
    """An accepted send's event and Delivery (what `delivered` does with nothing to record)."""
    events = cfg.events
    # Every message's event: built (and its class made) for a listener only. An `Events`'
    # own tuple, not its `subscribers` property: a property call per message. A hub of
    # another type is asked (the send was accepted: nothing may raise here).
    try:
        listening = events._subscribers  # noqa: SLF001 - the package's own hub
    except AttributeError:
        listening = events.subscribers
    if listening:
        kind = _message_delivered()
        if events.wants(kind):
            events.emit(
                kind(
                    **event_fields(cfg, intent, route, attempts),
                    token_fingerprint=result.token_fingerprint,
                    message_id=result.message_id,
                )
            )
    return accepted(intent, result, attempts)


@functools.cache
def _message_delivered() -> type[MessageDelivered]:
    """`MessageDelivered`, imported on first use and kept.

    An import statement per message cost some 7,000 instructions (`__import__` and its
    from-list) whenever the hub has a subscriber, which a client's default hub (it logs) has.
    """
    from wa_auth.events import MessageDelivered

    return MessageDelivered


def close_circuit(cfg: Config, intent: Intent, route: str) -> PolicyFlow[None]:
    """Forget the number's circuit (Meta answered); an open one emits `CircuitClosed`."""
    record: Pause | None = yield GetPause(CIRCUIT, route)
    if record is not None:
        yield ClearPause(CIRCUIT, route)
        if record.until is not None:
            from wa_auth.events import CircuitClosed

            cfg.events.emit(
                CircuitClosed(consumer=intent.consumer or cfg.consumer, phone_number_id=route)
            )


def expired(cfg: Config, intent: Intent, route: str | None, attempts: int) -> PolicyFlow[Delivery]:
    from wa_auth.events import MessageExpired

    cfg.events.emit(MessageExpired(**event_fields(cfg, intent, route, attempts)))
    delivery = Delivery(state=EXPIRED, intent=intent, attempts=attempts, reason="deadline")
    if cfg.outbox:
        yield Settle(delivery)
    return delivery


def held_back(
    cfg: Config,
    intent: Intent,
    route: str,
    attempts: int,
    reason: str,
    until: float | None,
) -> PolicyFlow[Delivery]:
    """The outcome of an intent the guard held back without an answer from Meta."""
    pause: Pause | None = None
    if reason in {"paused", "circuit_open"}:
        pause = yield GetPause(ACCOUNT if reason == "paused" else CIRCUIT, route)
    error = _held_error(reason, route, pause)
    state = QUEUED if cfg.outbox else FAILED
    delivery = Delivery(
        state=state,
        intent=intent,
        error=error,
        attempts=attempts,
        not_before=until,
        reason=reason,
    )
    if cfg.fallback is not None:
        routed = yield from fallback(cfg, intent, error, delivery)
        if routed is not None:
            return routed
    from wa_auth.events import MessageFailed, MessageQueued

    cfg.events.emit(
        MessageQueued(
            **event_fields(cfg, intent, route, attempts),
            category=error.category,
            reason=reason,
            not_before=until,
        )
        if cfg.outbox
        else MessageFailed(**event_fields(cfg, intent, route, attempts), category=error.category)
    )
    if cfg.outbox:
        yield Settle(delivery)
    return delivery


def _held_error(reason: str, route: str, pause: Pause | None) -> WhatsAppError:
    """The error a held-back intent carries: the one that paused the number, when known."""
    if reason == "paused":
        code = (pause.error or {}).get("code") if pause is not None else None
        return AccountStateError(
            f"phone number {route} is paused after an account-state failure "
            f"({code if code is not None else 'account_state'}): not sent until a probe "
            "succeeds or an operator resumes it",
            code=code if isinstance(code, int) else None,
            rule="guard/paused",
        )
    if reason == "circuit_open":
        return TransientError(
            f"phone number {route}'s circuit is open after repeated transient failures: "
            "not sent during the cool-down",
            rule="guard/circuit_open",
            retryable=True,
        )
    return RateLimitError(
        f"phone number {route}'s pacing allows no send within the time budget",
        rule="guard/pacing",
        retryable=True,
    )


def final(
    cfg: Config,
    intent: Intent,
    route: str | None,
    error: WhatsAppError,
    attempts: int,
    not_before: float | None,
) -> PolicyFlow[Delivery]:
    """The outcome of an intent whose last send failed: handlers once, fallback, outbox."""
    category = error.category
    fields = event_fields(cfg, intent, route, attempts)
    maybe = bool(getattr(error, "maybe_delivered", False))
    if maybe:
        state = MAYBE_DELIVERED
    elif cfg.outbox and category in LATER_CATEGORIES:
        state = QUEUED
    else:
        state = FAILED
    delivery = Delivery(
        state=state,
        intent=intent,
        error=error,
        attempts=attempts,
        not_before=not_before,
        reason=category,
    )
    if cfg.handlers is not None:
        handlers = tuple(cfg.handlers.for_category(category))
        if handlers:
            yield Handle(handlers, intent, error)
    if state != MAYBE_DELIVERED and cfg.fallback is not None:
        routed = yield from fallback(cfg, intent, error, delivery)
        if routed is not None:
            return routed
    from wa_auth.events import MessageFailed, MessageMaybeDelivered, MessageQueued

    fingerprint = fingerprint_of(error)
    code = getattr(error, "code", None)
    if state == MAYBE_DELIVERED:
        cfg.events.emit(MessageMaybeDelivered(**fields, token_fingerprint=fingerprint))
    elif state == QUEUED:
        cfg.events.emit(
            MessageQueued(
                **fields,
                token_fingerprint=fingerprint,
                category=category,
                reason=category,
                not_before=not_before,
            )
        )
    else:
        cfg.events.emit(
            MessageFailed(**fields, token_fingerprint=fingerprint, category=category, code=code)
        )
    if cfg.outbox:
        yield Settle(delivery)
    return delivery


def fallback(
    cfg: Config, intent: Intent, error: WhatsAppError, delivery: Delivery
) -> PolicyFlow[Delivery | None]:
    """Return the fallback's outcome for *delivery*, or None to keep it."""
    assert cfg.fallback is not None
    answer = yield Fallback(cfg.fallback, intent, error)
    if answer is None or answer is NO_FALLBACK:
        return None
    if isinstance(answer, Delivery):
        routed = answer
    elif hasattr(answer, "message_id"):  # a SendResult: delivered by the other route
        routed = Delivery(
            state=DELIVERED,
            intent=intent,
            result=answer,
            attempts=delivery.attempts,
            reason="fallback",
        )
    else:
        _log.error(
            "guard fallback returned %s; expected a Delivery, a SendResult or None",
            type(answer).__name__,
        )
        return None
    if cfg.outbox:
        yield Settle(routed)
    return routed


def fingerprint_of(error: WhatsAppError) -> str | None:
    return getattr(error, "token_fingerprint", None)
