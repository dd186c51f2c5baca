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


@attrs.frozen(kw_only=True)
class Delivery:
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


#: The slots' own setters, in field order: they write a frozen instance being made.
_SETTERS: Final = tuple(Delivery.__dict__[field.name].__set__ for field in attrs.fields(Delivery))


def accepted(intent: Intent, result: SendResult, attempts: int) -> Delivery:
    """Return `Delivery(state=DELIVERED, intent=intent, result=result, attempts=attempts)`.

    Made without attrs' `__init__`, a third of its cost: a guard makes one per message sent.
    """
    delivery = object.__new__(Delivery)
    set_state, set_intent, set_result, set_error, set_attempts, set_not_before, set_reason = (
        _SETTERS
    )
    set_state(delivery, DELIVERED)
    set_intent(delivery, intent)
    set_result(delivery, result)
    set_error(delivery, None)
    set_attempts(delivery, attempts)
    set_not_before(delivery, None)
    set_reason(delivery, None)
    return delivery
