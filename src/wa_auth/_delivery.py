"""`Delivery`: what became of one intent, and the states it can end in.

A guard returns one for every intent it is given; an outbox records it (`settle`) and a
replay reports one per intent it sent. Both the guards and the outbox use it, so it lives
below both: nothing in `wa_auth.outbox` imports `wa_auth.guards`. Public as
`wa_auth.guards.Delivery` (and `wa_auth.Delivery`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from wa_auth.errors import WhatsAppError
from wa_auth.intents import Intent

if TYPE_CHECKING:
    from wa_auth.models import SendResult

__all__ = [
    "DELIVERED",
    "DELIVERY_STATES",
    "EXPIRED",
    "FAILED",
    "MAYBE_DELIVERED",
    "QUEUED",
    "Delivery",
    "accepted",
]

DELIVERED: Final = "delivered"
QUEUED: Final = "queued"
FAILED: Final = "failed"
MAYBE_DELIVERED: Final = "maybe_delivered"
EXPIRED: Final = "expired"
DELIVERY_STATES: Final = (DELIVERED, QUEUED, FAILED, MAYBE_DELIVERED, EXPIRED)


class _DeliverySlots:
    """`Delivery`'s slots, in a base of their own so that `accepted` can fill them cheaply.

    The same arrangement as `wa_auth.intents._IntentSlots`: `accepted` stores the fields on an
    `_Unfrozen` and assigns it the class `Delivery`, a plain store per field where a slot
    descriptor's `__set__` costs a method-wrapper call each.
    """

    __slots__ = (
        "__weakref__",
        "attempts",
        "error",
        "intent",
        "not_before",
        "reason",
        "result",
        "state",
    )


@attrs.frozen(kw_only=True)
class Delivery(_DeliverySlots):
    """What became of one intent: delivered, queued, failed, maybe delivered or expired.

    Args:
        state: One of `DELIVERY_STATES`.
        intent: The intent.
        result: Meta's `SendResult` when delivered (accepted), else None.
        error: The classified error of the last failure, or None.
        attempts: Sends made (0 when the guard held it back without asking Meta).
        not_before: Unix seconds before which a retry cannot work (queued intents).
        reason: Why it is not delivered: the failure's category, or `paused`,
            `circuit_open`, `pacing`, `deadline`, `fallback`, `outbox` (the outbox refused it, in
            `asend_many`); `duplicate` for a delivered intent the outbox already held.
    """

    state: str
    intent: Intent
    result: SendResult | None = None
    error: WhatsAppError | None = attrs.field(default=None, eq=False)
    attempts: int = 0
    not_before: float | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when Meta accepted the message."""
        return self.state == DELIVERED

    @property
    def category(self) -> str | None:
        """The category of the failure, or None when delivered."""
        return self.error.category if self.error is not None else None

    def raise_for_error(self) -> Delivery:
        """Raise the classified error of an undelivered intent; return self when delivered.

        Raises:
            WhatsAppError: The error of the last failure (a subclass says which).
        """
        if self.error is not None:
            raise self.error
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data: the state, the intent's key, the result or the error."""
        result = self.result
        return {
            "state": self.state,
            "ok": self.ok,
            "idempotency_key": self.intent.idempotency_key,
            "to": self.intent.to,
            "phone_number_id": self.intent.phone_number_id,
            "consumer": self.intent.consumer,
            "message_id": result.message_id if result is not None else None,
            "token_fingerprint": result.token_fingerprint if result is not None else None,
            "category": self.category,
            "reason": self.reason,
            "attempts": self.attempts,
            "not_before": self.not_before,
            "error": self.error.to_dict() if self.error is not None else None,
        }


class _Unfrozen(_DeliverySlots):
    """A `Delivery` being made by `accepted`: its fields are stored, then its class changes."""

    __slots__ = ()
    state: str
    intent: Intent
    result: SendResult | None
    error: WhatsAppError | None
    attempts: int
    not_before: float | None
    reason: str | None


def accepted(intent: Intent, result: SendResult, attempts: int) -> Delivery:
    """Return `Delivery(state=DELIVERED, intent=intent, result=result, attempts=attempts)`.

    Made without attrs' `__init__` (a third of its cost) and without the slot descriptors'
    `__set__` (see `_DeliverySlots`): a guard makes one per message sent.
    """
    delivery = object.__new__(_Unfrozen)
    delivery.state = DELIVERED
    delivery.intent = intent
    delivery.result = result
    delivery.error = None
    delivery.attempts = attempts
    delivery.not_before = None
    delivery.reason = None
    delivery.__class__ = Delivery  # type: ignore[assignment]
    return delivery  # type: ignore[return-value]
