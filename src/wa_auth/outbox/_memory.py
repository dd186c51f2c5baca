"""`MemoryOutbox`: the outbox's rules on rows held in memory (tests, scripts)."""

from __future__ import annotations

import builtins
import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs

from wa_auth._delivery import DELIVERED, EXPIRED, FAILED, MAYBE_DELIVERED
from wa_auth.errors import OutboxError
from wa_auth.intents import Intent
from wa_auth.outbox._common import (
    Replaying,
    check_after,
    check_ages,
    check_count,
    check_intent,
    check_listing,
    check_markable,
    check_seconds,
)
from wa_auth.outbox._values import (
    DEFAULT_BATCH,
    DEFAULT_LEASE,
    OUTBOX_STATES,
    PENDING,
    SENDING,
    OutboxRow,
    OutboxStats,
    begin_refusal,
    head_run,
    held_numbers,
    is_dead_letter,
    replayable,
    status_failure,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    from wa_auth._delivery import Delivery
    from wa_auth.webhooks import MessageStatus

__all__ = ["MemoryOutbox"]


class MemoryOutbox(Replaying):
    """An outbox in memory: one row per idempotency key, for tests and scripts.

    The same rules as `SqliteOutbox` (leases, refusals, replay), without a file: what it holds
    is gone with the process.

    Args:
        lease: Seconds a claim or a send stays leased.
        max_age: Seconds after an intent's `created_at` past which a replay expires it
            instead of sending it; None: no bound.
        clock: Wall clock.

    Raises:
        ConfigurationError: *lease* or *max_age* is not a positive number of seconds.
    """

    def __init__(
        self,
        *,
        lease: float = DEFAULT_LEASE,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lease = check_seconds("lease", lease, optional=False) or DEFAULT_LEASE
        self.max_age = check_seconds("max_age", max_age)
        self.clock = clock
        self.owner = f"memory:{os.getpid()}:{secrets.token_hex(4)}"
        self._rows: dict[str, OutboxRow] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _refused(self, key: str, kind: str, why: str) -> OutboxError:
        return OutboxError(
            f"intent {key!r} in the memory outbox {why}: not sent again",
            kind=kind,
            retryable=kind == "busy",
        )

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending`, leased to this outbox.

        Raises:
            OutboxError: It is in flight or claimed elsewhere, delivered, maybe delivered or
                expired.
        """
        now = self.clock()
        key = intent.idempotency_key
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                self._rows[key] = OutboxRow(
                    intent=intent,
                    state=SENDING,
                    id=next(self._ids),
                    lease_owner=self.owner,
                    lease_until=now + self.lease,
                    enqueued_at=now,
                    updated_at=now,
                )
                return
            refusal = begin_refusal(row.state, row.lease_owner, row.lease_until, self.owner, now)
            if refusal is not None:
                raise self._refused(key, *refusal)
            # A row enqueued without a sender gets the one it is sent from, as in SQLite.
            pinned = row.intent.phone_number_id is None and intent.phone_number_id is not None
            self._rows[key] = attrs.evolve(
                row,
                intent=intent if pinned else row.intent,
                state=SENDING,
                lease_owner=self.owner,
                lease_until=now + self.lease,
                updated_at=now,
            )

    def settle(self, delivery: Delivery) -> None:
        """Record what became of the intent; a delivered (or expired) row stays so."""
        now = self.clock()
        intent = delivery.intent
        result = delivery.result
        error = delivery.error
        fingerprint = result.token_fingerprint if result is not None else None
        if fingerprint is None and error is not None:
            fingerprint = getattr(error, "token_fingerprint", None)
        with self._lock:
            row = self._rows.get(intent.idempotency_key)
            if row is not None and (
                row.state == DELIVERED
                or (row.state == EXPIRED and delivery.state != DELIVERED)
                # A status webhook failed this very wamid before its send was settled.
                or (
                    row.state == FAILED
                    and row.message_id is not None
                    and result is not None
                    and row.message_id == result.message_id
                )
            ):
                return
            fields: dict[str, Any] = {
                "state": delivery.state,
                "delivery": delivery,
                "attempts": (row.attempts if row is not None else 0) + delivery.attempts,
                "category": delivery.category,
                "reason": delivery.reason,
                "error": error.to_dict() if error is not None else None,
                "not_before": delivery.not_before,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now,
            }
            if result is not None:
                fields["message_id"] = result.message_id
            if fingerprint is not None:
                fields["token_fingerprint"] = fingerprint
            if row is None:
                row = OutboxRow(
                    intent=intent, state=delivery.state, id=next(self._ids), enqueued_at=now
                )
            self._rows[intent.idempotency_key] = attrs.evolve(row, **fields)

    def enqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending`; False when its key is already here."""
        return self.enqueue_many((intent,)) == 1

    def enqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending`; return how many were new."""
        items = [check_intent(i) for i in intents]
        now = self.clock()
        added = 0
        with self._lock:
            for intent in items:
                if intent.idempotency_key in self._rows:
                    continue
                self._rows[intent.idempotency_key] = OutboxRow(
                    intent=intent,
                    state=PENDING,
                    id=next(self._ids),
                    enqueued_at=now,
                    updated_at=now,
                )
                added += 1
        return added

    def _recover(self, now: float) -> None:
        for key, row in self._rows.items():
            if row.state == SENDING and (row.lease_until is None or row.lease_until < now):
                self._rows[key] = attrs.evolve(
                    row,
                    state=MAYBE_DELIVERED,
                    reason="lease_expired",
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )

    def claim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
        numbers: int = 1,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows after id *after*, in id order.

        The rows of a number another worker holds, or with a row this claim's cursor passed
        over, are left alone (`held_numbers`), and a claim takes the leading rows of at most
        *numbers* numbers (`head_run`): each number's intents go out in order.
        """
        size = check_count("limit", limit) or DEFAULT_BATCH
        after = check_after(after)
        most = check_count("numbers", numbers) or 1
        now = self.clock()
        claimed: list[OutboxRow] = []
        with self._lock:
            self._recover(now)
            held = held_numbers(
                self._rows.values(),
                self.owner,
                now,
                after,
                live_fingerprints,
                include_maybe_delivered=include_maybe_delivered,
            )
            for row in self._rows.values():
                if len(claimed) >= size:
                    break
                if row.intent.phone_number_id in held:
                    continue
                free = (
                    row.lease_until is None
                    or row.lease_until < now
                    or row.lease_owner == self.owner
                )
                if (
                    row.id > after
                    and free
                    and replayable(
                        row, now, live_fingerprints, include_maybe_delivered=include_maybe_delivered
                    )
                ):
                    claimed.append(row)
            claimed = claimed[: head_run([r.intent.phone_number_id for r in claimed], most)]
            for n, row in enumerate(claimed):
                claimed[n] = leased = attrs.evolve(
                    row, lease_owner=self.owner, lease_until=now + self.lease
                )
                self._rows[row.idempotency_key] = leased
        return claimed

    def release(self) -> int:
        """Give back this outbox's claims that were not sent."""
        released = 0
        with self._lock:
            for key, row in self._rows.items():
                if row.lease_owner == self.owner and row.state != SENDING:
                    self._rows[key] = attrs.evolve(row, lease_owner=None, lease_until=None)
                    released += 1
        return released

    def mark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set the row's state by hand (`pending` to send it again, `delivered`, ...).

        Raises:
            RequestValidationError: *state* is not one of `MARKABLE_STATES`.
            OutboxError: No such row (`not_found`), or it is being sent (`busy`).
        """
        target = check_markable(state)
        now = self.clock()
        with self._lock:
            row = self._rows.get(idempotency_key)
            if row is None:
                raise OutboxError(
                    f"the memory outbox has no intent {idempotency_key!r}", kind="not_found"
                )
            if row.state == SENDING and row.lease_until is not None and row.lease_until >= now:
                raise self._refused(idempotency_key, "busy", "is being sent right now")
            row = attrs.evolve(
                row,
                state=target,
                reason=reason,
                message_id=message_id if message_id is not None else row.message_id,
                not_before=None if target == PENDING else row.not_before,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
            self._rows[idempotency_key] = row
        return row

    def apply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row it names; return that row, or None (see `Outbox`)."""
        key = event.idempotency_key
        if not key:
            return None
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                return None
            fields = status_failure(row.state, row.message_id, event)
            if fields is None:
                return row
            row = attrs.evolve(row, updated_at=self.clock(), **fields)
            self._rows[key] = row
        return row

    def get(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        return self._rows.get(idempotency_key)

    def list(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:
        """Return the rows that match every filter given, oldest first."""
        state, category, consumer, most = check_listing(state, category, consumer, limit)
        with self._lock:
            rows = builtins.list(self._rows.values())
        found = [
            r
            for r in rows
            if (state is None or r.state == state)
            and (category is None or r.category == category)
            and (consumer is None or r.intent.consumer == consumer)
            and (not dead_letters or r.dead_letter)
        ]
        return found[:most] if most is not None else found

    def rows(self, state: str | None = None) -> builtins.list[OutboxRow]:
        """Return the rows, oldest first, optionally only those in *state* (`list`)."""
        return self.list(state)

    def stats(self) -> OutboxStats:
        """Count the rows by state and category."""
        with self._lock:
            rows = builtins.list(self._rows.values())
        by_state = dict.fromkeys(OUTBOX_STATES, 0)
        by_category: dict[str, int] = {}
        for row in rows:
            by_state[row.state] = by_state.get(row.state, 0) + 1
            if row.state != DELIVERED and row.category is not None:
                by_category[row.category] = by_category.get(row.category, 0) + 1
        waiting = [r.intent.created_at for r in rows if r.state in (PENDING, "queued")]
        return OutboxStats(
            total=len(rows),
            by_state=by_state,
            by_category=dict(sorted(by_category.items())),
            dead_letters=sum(1 for r in rows if is_dead_letter(r.state, r.category)),
            oldest_waiting=min(waiting) if waiting else None,
        )

    def purge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete delivered (and expired) rows unchanged for that many seconds.

        Raises:
            RequestValidationError: Neither age is given, or one is negative.
        """
        pairs = dict(check_ages(delivered_older_than, expired_older_than, self.clock()))
        with self._lock:
            gone = [
                k
                for k, r in self._rows.items()
                if r.state in pairs and r.updated_at < pairs[r.state]
            ]
            for key in gone:
                del self._rows[key]
        return len(gone)

    # No I/O: the async forms run the same code.

    async def abegin(self, intent: Intent) -> None:
        """Record *intent* as `sending` (no I/O)."""
        self.begin(intent)

    async def asettle(self, delivery: Delivery) -> None:
        """Record what became of the intent (no I/O)."""
        self.settle(delivery)

    async def aenqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending` (no I/O)."""
        return self.enqueue(intent)

    async def aenqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` (no I/O)."""
        return self.enqueue_many(intents)

    async def aclaim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
        numbers: int = 1,
    ) -> builtins.list[OutboxRow]:
        """Lease replayable rows (no I/O)."""
        return self.claim(
            limit,
            after=after,
            live_fingerprints=live_fingerprints,
            include_maybe_delivered=include_maybe_delivered,
            numbers=numbers,
        )

    async def arelease(self) -> int:
        """Give back unsent claims (no I/O)."""
        return self.release()

    async def amark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set a row's state by hand (no I/O)."""
        return self.mark(idempotency_key, state, reason=reason, message_id=message_id)

    async def aapply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row it names (no I/O)."""
        return self.apply_status(event)

    async def aget(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key* (no I/O)."""
        return self.get(idempotency_key)

    async def alist(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:
        """Return the rows that match (no I/O)."""
        return self.list(
            state, category=category, consumer=consumer, dead_letters=dead_letters, limit=limit
        )

    async def astats(self) -> OutboxStats:
        """Count the rows (no I/O)."""
        return self.stats()

    async def apurge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete old delivered (and expired) rows (no I/O)."""
        return self.purge(
            delivered_older_than=delivered_older_than, expired_older_than=expired_older_than
        )

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"MemoryOutbox(rows={len(self._rows)})"
