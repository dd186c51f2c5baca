"""Guards: a failed token, a locked account or a rate limit as a handled state, never a loop.

A `Guard` wraps a client and decides what happens to each `Intent` after a failure: retry a
transient or rate-limited failure with back-off inside a time budget; pace sends to Meta's
per-number and per-pair limits; pause a number whose account state fails every send until a
probe succeeds; open a circuit when a number's sends keep failing transiently; hand what cannot
be sent now to an outbox; call the category's handlers once; try the fallback. Every outcome
is a `Delivery` value: the guard never raises for an API failure.

The policy is written once, as generators of effects (`_flows`), and driven by the blocking
and the asyncio driver of `wa_auth._effects`: `guard.send` and `guard.asend` make the same
decisions. The guard remembers nothing about tokens: a dead token is refused by the
client's `TokenVerdicts` before any I/O, so guards sharing a verdict store never send with a
token another guard proved dead. `@guarded` puts the same retry policy, handlers and fallback
around a function of your own; `@requires_scopes` refuses a call whose token lacks a scope.

The package, by module: `_values` (`RetryPolicy`, `decide`, `Handlers`, the policy's
`Config`), `_effects` (each step of the policy, blocking or async, and the `Runtime` they act
on), `_outcomes` (what becomes of an intent: handlers once, the fallback, one event, the
outbox), `_flows` (the decisions: deadline, pause, circuit, scopes, pacing, retries) and
`_guard` (`Guard`, `@guarded`, `@requires_scopes`). `Delivery` and its states are
`wa_auth._delivery`'s, shared with the outbox; of the outbox the guards import only its
protocol (`wa_auth.outbox._protocol`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wa_auth._delivery import (
    DELIVERED,
    DELIVERY_STATES,
    EXPIRED,
    FAILED,
    MAYBE_DELIVERED,
    QUEUED,
    Delivery,
)
from wa_auth._exports import claim as _claim
from wa_auth.guards._guard import Guard, guarded, requires_scopes
from wa_auth.guards._values import Handlers, RetryPolicy, decide

if TYPE_CHECKING:
    from wa_auth.guards._apply import Applied

__all__ = [
    "DELIVERED",
    "DELIVERY_STATES",
    "EXPIRED",
    "FAILED",
    "MAYBE_DELIVERED",
    "QUEUED",
    "Applied",
    "Delivery",
    "Guard",
    "Handlers",
    "RetryPolicy",
    "decide",
    "guarded",
    "requires_scopes",
]

_claim(__name__, globals())


def __getattr__(name: str) -> Any:
    # `Applied` loads the webhooks' classes: on first use, not for a process that only sends.
    if name != "Applied":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from wa_auth.guards._apply import Applied

    _claim(__name__, {"Applied": Applied})
    globals()["Applied"] = Applied
    return Applied
