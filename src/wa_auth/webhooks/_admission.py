"""Exactly once, in order: the policy that decides whether a webhook event is applied.

Written once as a generator of ledger effects (`admission`, `revocation`) and driven twice
by the project's pair of drivers (`wa_auth._effects.run` / `arun`): `admit` blocks, `aadmit`
awaits. For each event:

1. `claim` its dedupe key: already claimed within the window means a redelivery,
   `duplicate`;
2. a status (`sent`, `delivered`, `read`, `failed`) then `advance`s its message: when the
   message already holds this order or a later one, the status is `stale`, recorded but not
   applied, so a status never goes back (a late `delivered` after `failed` changes nothing);
3. otherwise `apply`.

When applying fails, `release` (`arelease`) undoes the admission, so Meta's redelivery (it
retries what was not answered 200) is applied instead of being taken for a duplicate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import attrs

from wa_auth._effects import arun, run
from wa_auth.webhooks._observed import WebhookAccepted, WebhookDuplicate, WebhookStale

if TYPE_CHECKING:
    from wa_auth._effects import PolicyFlow
    from wa_auth.events import Event, Events
    from wa_auth.webhooks._ledger import WebhookLedger
    from wa_auth.webhooks._types import WebhookEvent

__all__ = [
    "APPLY",
    "DUPLICATE",
    "STALE",
    "VERDICTS",
    "Admission",
    "Advance",
    "Claim",
    "Release",
    "Retreat",
    "aadmit",
    "admission",
    "admit",
    "arelease",
    "release",
    "revocation",
]

#: Apply the event: first seen, and not outdated.
APPLY: Final = "apply"
#: A redelivery of an event seen within the window: do nothing.
DUPLICATE: Final = "duplicate"
#: A status older than its message's furthest one: recorded, not applied.
STALE: Final = "stale"
VERDICTS: Final = (APPLY, DUPLICATE, STALE)


@attrs.frozen
class Admission:
    """What the policy decided about one event, and what it changed in the ledger.

    `verdict` is `apply`, `duplicate` or `stale`; `previous` is the message's furthest order
    before this status (what `release` puts back) and `furthest` the order that made a
    status stale.
    """

    event: WebhookEvent
    verdict: str
    previous: int | None = None
    furthest: int | None = None
    #: Whether this admission advanced the message (so `release` must put it back).
    advanced: bool = False

    @property
    def apply(self) -> bool:
        """True when the event is to be applied."""
        return self.verdict == APPLY


# --- the ledger's effects ---------------------------------------------------------------------


@attrs.frozen
class Claim:
    """Record a key; the result is False for a key already recorded."""

    key: str

    def perform(self, ledger: WebhookLedger, /) -> bool:
        return ledger.claim(self.key)

    async def aperform(self, ledger: WebhookLedger, /) -> bool:
        return await ledger.aclaim(self.key)


@attrs.frozen
class Advance:
    """Raise a message's furthest order; the result is the order it held before."""

    message_id: str
    order: int

    def perform(self, ledger: WebhookLedger, /) -> int | None:
        return ledger.advance(self.message_id, self.order)

    async def aperform(self, ledger: WebhookLedger, /) -> int | None:
        return await ledger.aadvance(self.message_id, self.order)


@attrs.frozen
class Release:
    """Forget a key."""

    key: str

    def perform(self, ledger: WebhookLedger, /) -> None:
        ledger.release(self.key)

    async def aperform(self, ledger: WebhookLedger, /) -> None:
        await ledger.arelease(self.key)


@attrs.frozen
class Retreat:
    """Put a message back to *previous* if it still holds *order*."""

    message_id: str
    order: int
    previous: int | None

    def perform(self, ledger: WebhookLedger, /) -> None:
        ledger.retreat(self.message_id, self.order, self.previous)

    async def aperform(self, ledger: WebhookLedger, /) -> None:
        await ledger.aretreat(self.message_id, self.order, self.previous)


# --- the policy -------------------------------------------------------------------------------


def admission(event: WebhookEvent) -> PolicyFlow[Admission]:
    """Decide `apply`, `duplicate` or `stale` for *event* (see the module docstring)."""
    fresh = yield Claim(event.key)
    if not fresh:
        return Admission(event, DUPLICATE)
    order, message_id = event.order, event.message_id
    if order is None or message_id is None:
        return Admission(event, APPLY)
    previous = yield Advance(message_id, order)
    if previous is not None and previous >= order:
        return Admission(event, STALE, previous=previous, furthest=previous)
    return Admission(event, APPLY, previous=previous, advanced=True)


def revocation(admitted: Admission) -> PolicyFlow[None]:
    """Undo *admitted*: forget its key and put its message back, when it changed them."""
    if admitted.verdict == DUPLICATE:
        return
    yield Release(admitted.event.key)
    order, message_id = admitted.event.order, admitted.event.message_id
    if admitted.advanced and order is not None and message_id is not None:
        yield Retreat(message_id, order, admitted.previous)


# --- the two drivers --------------------------------------------------------------------------


def admit(event: WebhookEvent, ledger: WebhookLedger, *, events: Events | None = None) -> Admission:
    """Decide whether to apply *event*, recording it in *ledger*; emit the outcome to *events*.

    Raises:
        WhatsAppError: The ledger failed (an `OutboxUnavailableError` from a busy file, ...):
            nothing was decided, so answer Meta with an error and let it redeliver.
    """
    admitted = run(admission(event), ledger)
    _emit(events, admitted)
    return admitted


async def aadmit(
    event: WebhookEvent, ledger: WebhookLedger, *, events: Events | None = None
) -> Admission:
    """Decide whether to apply *event* without blocking the event loop; see `admit`.

    Raises:
        WhatsAppError: The ledger failed: nothing was decided.
    """
    admitted = await arun(admission(event), ledger)
    _emit(events, admitted)
    return admitted


def release(admitted: Admission, ledger: WebhookLedger) -> None:
    """Undo *admitted* after applying its event failed, so a redelivery is applied.

    Raises:
        WhatsAppError: The ledger failed.
    """
    run(revocation(admitted), ledger)


async def arelease(admitted: Admission, ledger: WebhookLedger) -> None:
    """Undo *admitted* without blocking the event loop; see `release`.

    Raises:
        WhatsAppError: The ledger failed.
    """
    await arun(revocation(admitted), ledger)


def _emit(events: Events | None, admitted: Admission) -> None:
    if events is None:
        return
    event = admitted.event
    fields: dict[str, Any] = {
        "type": event.type,
        "key": event.key,
        "message_id": event.message_id,
        "status": getattr(event, "status", None),
        "phone_number_id": event.phone_number_id,
        "business_account_id": event.business_account_id,
    }
    observed: Event
    if admitted.verdict == APPLY:
        observed = WebhookAccepted(category=event.category, **fields)
    elif admitted.verdict == STALE:
        observed = WebhookStale(furthest=admitted.furthest, **fields)
    else:
        observed = WebhookDuplicate(**fields)
    events.emit(observed)
