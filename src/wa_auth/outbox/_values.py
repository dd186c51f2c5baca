"""The outbox's values and rules: its states, a row, its statistics, a replay's report.

The rules (may this row be sent now? is it replayable? is it a dead letter?) are written here
once as plain functions over a row's fields; `MemoryOutbox` applies them in Python and
`SqliteOutbox` states the same conditions in SQL, and the state-machine test holds the two to
the same model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from wa_auth import _table
from wa_auth._delivery import (
    DELIVERED,
    DELIVERY_STATES,
    EXPIRED,
    FAILED,
    MAYBE_DELIVERED,
    QUEUED,
    Delivery,
)
from wa_auth.intents import Intent

if TYPE_CHECKING:
    from wa_auth.webhooks import MessageStatus

__all__ = [
    "DEAD_LETTER_STATES",
    "DEFAULT_BATCH",
    "DEFAULT_LEASE",
    "MARKABLE_STATES",
    "OUTBOX_STATES",
    "PENDING",
    "REPLAYED_FAILURES",
    "SENDING",
    "STATUS_FAILABLE",
    "TOKEN_WAIT_CATEGORIES",
    "OutboxRow",
    "OutboxStats",
    "Replay",
    "begin_refusal",
    "head_run",
    "held_numbers",
    "is_dead_letter",
    "replayable",
    "status_failure",
]

#: Rows a replay claims at a time (one lease transaction per batch).
DEFAULT_BATCH: Final = 256
#: Enqueued and never tried: a replay sends it.
PENDING: Final = "pending"
#: The request is (or was, when its process died) on its way to Meta. Committed before the
#: request goes out; a row found here with its lease lapsed becomes `maybe_delivered`.
SENDING: Final = "sending"
#: Every state a row can be in.
OUTBOX_STATES: Final = (PENDING, SENDING, *DELIVERY_STATES)
#: The states an operator may set with `mark()`.
MARKABLE_STATES: Final = (PENDING, DELIVERED, FAILED, EXPIRED)
#: Failures a replay sends again once the provider hands out a different token: the token
#: that failed is dead (or lacks a permission a new token may have), the message is fine.
TOKEN_WAIT_CATEGORIES: Final = frozenset(
    {_table.TOKEN_EXPIRED, _table.TOKEN_REVOKED, _table.INSUFFICIENT_PERMISSION}
)
#: Every `failed` category a replay retries; any other failed row is a dead letter.
REPLAYED_FAILURES: Final = TOKEN_WAIT_CATEGORIES | {_table.TOKEN_UNAVAILABLE}
DEAD_LETTER_STATES: Final = (FAILED,)
#: Seconds a claim or a `sending` row stays leased to its worker: longer than a guard's
#: 30 s budget plus a request's timeouts, so a live worker's lease never lapses; a dead
#: worker's unsent claims go to the others, and its `sending` rows become `maybe_delivered`,
#: this long after it died.
DEFAULT_LEASE: Final = 300.0
#: The states a late `failed` status webhook turns into `failed`: Meta took the message (or
#: may have, or is being asked to), then reported that it failed. Any other state is left
#: alone: a failed or expired row is over, and a pending or queued one was never accepted.
STATUS_FAILABLE: Final = (DELIVERED, SENDING, MAYBE_DELIVERED)


@attrs.frozen(kw_only=True)
class OutboxRow:
    """One intent in an outbox and what is known about it.

    Args:
        intent: The intent, as enqueued.
        state: One of `OUTBOX_STATES`.
        delivery: The last outcome as a `Delivery` (None before any).
        updated_at: Unix seconds of the last change.
        id: The row's place in the outbox (claims go in this order).
        attempts: Sends made, over every try.
        category: The category of the last failure, or None.
        reason: Why it is not delivered: the failure's category, `paused`, `circuit_open`,
            `pacing`, `deadline`, `max_age`, `lease_expired`, `operator`...
        error: The last failure's `to_dict()` (never a token), or None.
        message_id: Meta's message id once delivered.
        token_fingerprint: The fingerprint of the token of the last send.
        not_before: Unix seconds before which a replay does not send it.
        lease_owner: The worker holding it (a claim or a send in flight), or None.
        lease_until: Unix seconds when that lease lapses.
        enqueued_at: Unix seconds when it entered the outbox.
    """

    intent: Intent
    state: str
    delivery: Delivery | None = attrs.field(default=None, eq=False)
    updated_at: float = 0.0
    id: int = 0
    attempts: int = 0
    category: str | None = None
    reason: str | None = None
    error: Mapping[str, Any] | None = attrs.field(default=None, eq=False, hash=False)
    message_id: str | None = None
    token_fingerprint: str | None = None
    not_before: float | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    enqueued_at: float = 0.0

    @property
    def idempotency_key(self) -> str:
        """The intent's key, the row's identity."""
        return self.intent.idempotency_key

    @property
    def dead_letter(self) -> bool:
        """True when no replay will send it: it failed for a reason no wait or token fixes."""
        return is_dead_letter(self.state, self.category)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data: the intent's own JSON and every field (a line of an export)."""
        return {
            "id": self.id,
            "idempotency_key": self.intent.idempotency_key,
            "state": self.state,
            "attempts": self.attempts,
            "category": self.category,
            "reason": self.reason,
            "error": dict(self.error) if self.error is not None else None,
            "message_id": self.message_id,
            "token_fingerprint": self.token_fingerprint,
            "not_before": self.not_before,
            "lease_owner": self.lease_owner,
            "lease_until": self.lease_until,
            "enqueued_at": self.enqueued_at,
            "updated_at": self.updated_at,
            "consumer": self.intent.consumer,
            "phone_number_id": self.intent.phone_number_id,
            "intent": self.intent.to_dict(),
        }


@attrs.frozen(kw_only=True)
class OutboxStats:
    """How many rows an outbox holds, by state and by failure category.

    Args:
        total: Every row.
        by_state: Rows per state (every state, zeros included).
        by_category: Rows not delivered, per category of their last failure.
        dead_letters: Failed rows no replay sends (`invalid_request`, `unknown`, ...).
        oldest_waiting: `created_at` of the oldest `pending` or `queued` intent, or None.
    """

    total: int
    by_state: Mapping[str, int]
    by_category: Mapping[str, int]
    dead_letters: int
    oldest_waiting: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        return {
            "total": self.total,
            "by_state": dict(self.by_state),
            "by_category": dict(self.by_category),
            "dead_letters": self.dead_letters,
            "oldest_waiting": self.oldest_waiting,
        }


@attrs.frozen
class Replay:
    """What a replay did: one `Delivery` per intent it claimed, in claim order.

    Args:
        deliveries: The outcomes (intents past their deadline are `expired`, never sent).
        skipped: Claimed intents another worker began sending first (nothing was sent).
    """

    deliveries: tuple[Delivery, ...] = ()
    skipped: int = 0

    def count(self, state: str) -> int:
        """Return how many deliveries ended in *state*."""
        return sum(1 for d in self.deliveries if d.state == state)

    @property
    def delivered(self) -> int:
        """How many intents Meta accepted."""
        return self.count(DELIVERED)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe counts: replayed, per state, skipped."""
        by_state = Counter(d.state for d in self.deliveries)
        return {
            "replayed": len(self.deliveries),
            "by_state": {s: by_state.get(s, 0) for s in DELIVERY_STATES},
            "skipped": self.skipped,
        }


def is_dead_letter(state: str, category: str | None) -> bool:
    """Return True for a failed row whose category no replay retries."""
    return state == FAILED and category not in REPLAYED_FAILURES


def replayable(
    row: OutboxRow,
    now: float,
    live_fingerprints: Collection[str] | None,
    *,
    include_maybe_delivered: bool = False,
) -> bool:
    """Return True when a replay may send *row* now (its lease aside).

    `pending`; `queued` past its `not_before`; `failed` for want of a token
    (`token_unavailable`), or for a dead token once the provider hands out another
    (*live_fingerprints*, the tokens it hands out now; None when unknown);
    `maybe_delivered` only when asked.
    """
    state = row.state
    if state == PENDING:
        return True
    if state == QUEUED:
        return row.not_before is None or row.not_before <= now
    if state == FAILED:
        if row.category == _table.TOKEN_UNAVAILABLE:
            return True
        if row.category in TOKEN_WAIT_CATEGORIES and live_fingerprints:
            return row.token_fingerprint is None or row.token_fingerprint not in live_fingerprints
        return False
    return state == MAYBE_DELIVERED and include_maybe_delivered


def held_numbers(
    rows: Collection[OutboxRow],
    owner: str,
    now: float,
    after: int,
    live_fingerprints: Collection[str] | None,
    *,
    include_maybe_delivered: bool = False,
) -> set[str | None]:
    """Return the phone numbers whose rows a claim by *owner* must leave alone now.

    The rule that keeps each number's intents in order across the workers of a fleet (every
    outbox states it: here in Python, in `_jobs` and `_pg` in SQL). A number is held while
    another worker has a live lease on one of its rows (a claim, or a send in flight), or
    while one of its replayable rows at or before the claim's cursor *after* is not this
    worker's (passed over: a later row of the number must not go out before it).
    """
    held: set[str | None] = set()
    for row in rows:
        if leased_elsewhere(row.lease_owner, row.lease_until, owner, now) or (
            row.id <= after
            and row.lease_owner != owner
            and (row.lease_until is None or row.lease_until < now)
            and replayable(
                row, now, live_fingerprints, include_maybe_delivered=include_maybe_delivered
            )
        ):
            held.add(row.intent.phone_number_id)
    return held


def head_run(numbers: Sequence[str | None], most: int = 1) -> int:
    """Return how many of a claim's candidate rows it takes: the leading rows of *most* numbers.

    *numbers* are the phone numbers of the replayable rows a claim may take, in id order. A
    claim takes the leading rows of its first *most* numbers and stops at the first row of
    another, so that the workers of a fleet hold a few numbers each (and a cursor passes over
    no row of a number it did not take).
    """
    seen: set[str | None] = set()
    for n, number in enumerate(numbers):
        if number not in seen:
            if len(seen) >= most:
                return n
            seen.add(number)
    return len(numbers)


def leased_elsewhere(
    lease_owner: str | None, lease_until: float | None, owner: str, now: float
) -> bool:
    """Return True while another worker holds the row's lease."""
    return (
        lease_owner is not None
        and lease_owner != owner
        and lease_until is not None
        and lease_until >= now
    )


def begin_refusal(
    state: str,
    lease_owner: str | None,
    lease_until: float | None,
    owner: str,
    now: float,
) -> tuple[str, str] | None:
    """Return (kind, why) when an intent in *state* must not be sent now by *owner*, or None.

    Sending is refused while the intent is in flight (here or elsewhere) or leased to another
    worker, and once it is delivered, maybe delivered (unless this worker claimed it for a
    replay that asked for those) or expired: a second send could deliver it twice.
    """
    if state == SENDING:
        if lease_until is not None and lease_until >= now:
            return "busy", "is being sent right now"
        return "duplicate", "was being sent by a worker that stopped: it may have been delivered"
    if state == DELIVERED:
        return "duplicate", "was already delivered"
    if state == EXPIRED:
        return "expired", "is past its deadline: it must not be sent"
    if state == MAYBE_DELIVERED and lease_owner != owner:
        return "duplicate", "may have been delivered already (maybe_delivered)"
    if leased_elsewhere(lease_owner, lease_until, owner, now):
        return "busy", "is claimed by another worker"
    return None


def status_failure(
    state: str, message_id: str | None, event: MessageStatus
) -> dict[str, Any] | None:
    """Return the fields a status webhook *event* changes on a row, or None for no change.

    Only a `failed` status changes anything, and only a row in `STATUS_FAILABLE` whose
    message id (when it has one) is the event's wamid: a row sent again since (another wamid)
    keeps what its last send learned. The row becomes `failed` with the event's category and
    the reason `webhook:<Graph code>` (never Meta's text, never the message's); `sent`,
    `delivered` and `read` add nothing the send did not already record. Applying the same
    event again finds the row failed, so it changes nothing: it is idempotent.
    """
    if event.status != FAILED or state not in STATUS_FAILABLE:
        return None
    if message_id is not None and event.id != message_id:
        return None
    error = event.error
    code = error.code if error is not None else None
    return {
        "state": FAILED,
        "category": event.category or _table.UNKNOWN,
        "reason": f"webhook:{code}" if code is not None else "webhook",
        "error": error.to_dict() if error is not None else None,
        "message_id": event.id,
        "not_before": None,
        "lease_owner": None,
        "lease_until": None,
    }
