"""The outbox: every intent recorded before it is sent and settled after, so none is lost.

`Outbox` is the protocol. A `Guard` given one calls `begin(intent)` just before the intent's
first request (the row becomes `sending`, committed before the request goes out) and
`settle(delivery)` with what became of it. A queue worker uses the rest: `enqueue` intents,
`claim` the replayable ones (a lease: no other worker sends them meanwhile), `mark` a row by
hand, `list`, `stats`, `purge`, and `replay(guard)`, which sends what is replayable through a
guard by every rule of `docs/outbox.md`. Every method has an `a`-prefixed async form, so an
outbox doing I/O never blocks an event loop, and a fleet's Redis outbox fits unchanged.

`MemoryOutbox` keeps the rows in memory (tests, scripts). `SqliteOutbox(path)` keeps them in a
SQLite file in WAL mode that several processes may share (n8n starts one per execution): one
writer thread per outbox commits the changes of concurrent sends together (group commit),
off the event loop, and a row found in `sending` with its lease lapsed becomes
`maybe_delivered`, never sent twice without the operator's say.
"""

from __future__ import annotations

import builtins
import itertools
import json
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import attrs
from typing_extensions import Self

from wa_auth import _replay
from wa_auth._effects import arun, run
from wa_auth._exports import claim as _claim
from wa_auth._guard_values import DELIVERED, EXPIRED, MAYBE_DELIVERED
from wa_auth._outbox_sql import SCHEMA, Jobs, intent_row, settle_values
from wa_auth._outbox_values import (
    DEFAULT_LEASE,
    MARKABLE_STATES,
    OUTBOX_STATES,
    PENDING,
    REPLAYED_FAILURES,
    SENDING,
    OutboxRow,
    OutboxStats,
    Replay,
    begin_refusal,
    is_dead_letter,
    replayable,
)
from wa_auth._sqlite import DEFAULT_BUSY_TIMEOUT, DEFAULT_FLUSH_INTERVAL, Bulk, Database
from wa_auth.errors import ConfigurationError, OutboxError, RequestValidationError
from wa_auth.intents import Intent

if TYPE_CHECKING:
    from collections.abc import Collection
    from types import TracebackType

    from wa_auth.guards import Delivery, Guard

__all__ = [
    "DEFAULT_LEASE",
    "MARKABLE_STATES",
    "OUTBOX_STATES",
    "PENDING",
    "REPLAYED_FAILURES",
    "SENDING",
    "MemoryOutbox",
    "Outbox",
    "OutboxRow",
    "OutboxStats",
    "Replay",
    "SqliteOutbox",
]

#: Rows a replay claims at a time (one lease transaction per batch).
DEFAULT_BATCH: Final = 256


@runtime_checkable
class Outbox(Protocol):
    """Where intents wait, and where a guard records each send before and after it."""

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending` before its request goes out (committed on return).

        Raises:
            OutboxError: The intent is being sent by another worker (`busy`), or was
                delivered, may have been, or expired (`duplicate`, `expired`).
        """
        ...

    def settle(self, delivery: Delivery) -> None:
        """Record what became of the intent of *delivery*.

        A delivered row stays delivered, and an expired one expired (unless a slow worker
        reports that it was delivered after all).
        """
        ...

    def enqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending`; return False when its key is already in the outbox."""
        ...

    def enqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction; return how many were new."""
        ...

    def claim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows (id greater than *after*) to this outbox."""
        ...

    def release(self) -> int:
        """Give back this outbox's claims that were not sent; return how many."""
        ...

    def mark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set a row's state by hand (`MARKABLE_STATES`): an operator's decision."""
        ...

    def get(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        ...

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
        ...

    def stats(self) -> OutboxStats:
        """Count the rows by state and category."""
        ...

    def purge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete delivered (and expired) rows unchanged for that many seconds; return how many."""
        ...

    def replay(
        self,
        guard: Guard,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> Replay:
        """Send what is replayable through *guard* (whose outbox this is)."""
        ...

    async def abegin(self, intent: Intent) -> None:
        """Record *intent* as `sending` (see `begin`)."""
        ...

    async def asettle(self, delivery: Delivery) -> None:
        """Record what became of the intent of *delivery*."""
        ...

    async def aenqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending` (see `enqueue`)."""
        ...

    async def aenqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction."""
        ...

    async def aclaim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows (see `claim`)."""
        ...

    async def arelease(self) -> int:
        """Give back this outbox's unsent claims."""
        ...

    async def amark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set a row's state by hand (see `mark`)."""
        ...

    async def aget(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        ...

    async def alist(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:
        """Return the rows that match (see `list`)."""
        ...

    async def astats(self) -> OutboxStats:
        """Count the rows by state and category."""
        ...

    async def apurge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete old delivered (and expired) rows (see `purge`)."""
        ...

    async def areplay(
        self,
        guard: Guard,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
        concurrency: int = 16,
    ) -> Replay:
        """Send what is replayable through *guard*, *concurrency* at a time."""
        ...


# --- checks shared by both outboxes --------------------------------------------------------------


def _seconds(name: str, value: object, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return float(value)


def _count(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestValidationError(f"{name} must be a positive integer, got {value!r}")
    return value


def _intent(value: object) -> Intent:
    if not isinstance(value, Intent):
        raise TypeError(f"an outbox holds Intent values, got {type(value).__name__}")
    return value


def _markable(state: object) -> str:
    if state not in MARKABLE_STATES:
        raise RequestValidationError(
            f"mark() sets one of {', '.join(MARKABLE_STATES)}, got {state!r}"
        )
    return str(state)


def _filter(name: str, value: object, allowed: tuple[str, ...] | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        known = f"one of {', '.join(allowed)}" if allowed else "a string"
        raise RequestValidationError(f"{name} must be {known}, got {value!r}")
    return value


def _ages(delivered: object, expired: object, now: float) -> list[tuple[str, float]]:
    pairs: list[tuple[str, float]] = []
    for state, age in ((DELIVERED, delivered), (EXPIRED, expired)):
        if age is None:
            continue
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not age >= 0:
            raise RequestValidationError(f"{state}_older_than must be seconds >= 0, got {age!r}")
        pairs.append((state, now - float(age)))
    if not pairs:
        raise RequestValidationError(
            "purge() needs delivered_older_than= or expired_older_than= (seconds)"
        )
    return pairs


class _Replaying:
    """Replay and the dead-letter export, written once over the protocol's methods."""

    clock: Callable[[], float]
    max_age: float | None

    def _replay_config(
        self, guard: Guard, include_maybe_delivered: bool, limit: int | None, batch: int
    ) -> _replay.Config:
        if getattr(guard, "outbox", None) is not self:
            raise ConfigurationError(
                "replay() needs a guard made with outbox= this outbox: it records each send there"
            )
        return _replay.Config(
            batch=_count("batch", batch) or DEFAULT_BATCH,
            limit=_count("limit", limit, optional=True),
            include_maybe_delivered=bool(include_maybe_delivered),
            max_age=self.max_age,
        )

    def replay(
        self,
        guard: Guard,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> Replay:
        """Send what is replayable through *guard*, one at a time, and report it.

        Replayable: `pending`; `queued` past its `not_before`; `failed` for want of a token,
        or for a dead token once the provider hands out one with another fingerprint;
        `maybe_delivered` only with *include_maybe_delivered* (Meta may have it already).
        Never: dead letters (`invalid_request` and other failures no wait fixes) and rows
        another worker holds. An intent past its `not_after`, or older than the outbox's
        `max_age`, is settled `expired` and never sent.

        Args:
            guard: The guard to send with; its `outbox` must be this outbox.
            include_maybe_delivered: Send `maybe_delivered` rows again (may duplicate them).
            limit: Replay at most this many intents.
            batch: Rows claimed (leased) at a time.

        Raises:
            ConfigurationError: The guard's outbox is another one.
            OutboxError: The file cannot be used.
        """
        cfg = self._replay_config(guard, include_maybe_delivered, limit, batch)
        try:
            return run(_replay.replay(cfg, guard), _replay.Env(self, guard, self.clock))  # type: ignore[arg-type]
        finally:
            self.release()

    async def areplay(
        self,
        guard: Guard,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
        concurrency: int = 16,
    ) -> Replay:
        """Send what is replayable through *guard*, *concurrency* at a time (see `replay`).

        Raises:
            ConfigurationError: The guard's outbox is another one.
            OutboxError: The file cannot be used.
        """
        slots = _count("concurrency", concurrency) or 1
        # A batch's tail runs below *concurrency*: claim enough to keep that tail short.
        cfg = self._replay_config(guard, include_maybe_delivered, limit, max(batch, 8 * slots))
        env = _replay.Env(self, guard, self.clock, slots)  # type: ignore[arg-type]
        try:
            return await arun(_replay.replay(cfg, guard), env)
        finally:
            await self.arelease()

    def release(self) -> int:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    async def arelease(self) -> int:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    def list(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    def dead_letters(self) -> builtins.list[OutboxRow]:
        """Return the failed rows no replay sends, for an operator (`invalid_request`, ...)."""
        return self.list(dead_letters=True)

    def export_dead_letters(self, dest: str | os.PathLike[str] | IO[str]) -> int:
        """Write the dead letters as JSON lines (one `OutboxRow.to_dict()` each); return how many.

        Args:
            dest: A text stream, or a path to create (an existing file is not overwritten).

        Raises:
            OutboxError: *dest* exists (`exists`) or cannot be written (`unwritable`).
        """
        rows = self.dead_letters()
        if not isinstance(dest, (str, os.PathLike)):
            _write_lines(dest, rows)
            return len(rows)
        path = os.fspath(dest)
        try:
            with open(path, "x", encoding="utf-8") as out:  # noqa: PTH123 - a str or PathLike
                _write_lines(out, rows)
        except FileExistsError:
            raise OutboxError(
                f"dead-letter export {path} already exists: not overwritten",
                path=path,
                kind="exists",
            ) from None
        except OSError as exc:
            raise OutboxError(
                f"dead-letter export {path} cannot be written: {exc.strerror}",
                path=path,
                kind="unwritable",
            ) from exc
        return len(rows)


def _write_lines(out: IO[str], rows: Iterable[OutboxRow]) -> None:
    for row in rows:
        out.write(json.dumps(row.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")


# --- in memory -----------------------------------------------------------------------------------


class MemoryOutbox(_Replaying):
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
        self.lease = _seconds("lease", lease, optional=False) or DEFAULT_LEASE
        self.max_age = _seconds("max_age", max_age)
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
            self._rows[key] = attrs.evolve(
                row,
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
                row.state == DELIVERED or (row.state == EXPIRED and delivery.state != DELIVERED)
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
        items = [_intent(i) for i in intents]
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
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows after id *after*, in id order."""
        size = _count("limit", limit) or DEFAULT_BATCH
        now = self.clock()
        claimed: list[OutboxRow] = []
        with self._lock:
            self._recover(now)
            for key, row in self._rows.items():
                if len(claimed) >= size:
                    break
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
                    leased = attrs.evolve(row, lease_owner=self.owner, lease_until=now + self.lease)
                    self._rows[key] = leased
                    claimed.append(leased)
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
        target = _markable(state)
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
        state = _filter("state", state, OUTBOX_STATES)
        category = _filter("category", category)
        consumer = _filter("consumer", consumer)
        most = _count("limit", limit, optional=True)
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
        pairs = dict(_ages(delivered_older_than, expired_older_than, self.clock()))
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
    ) -> builtins.list[OutboxRow]:
        """Lease replayable rows (no I/O)."""
        return self.claim(
            limit,
            after=after,
            live_fingerprints=live_fingerprints,
            include_maybe_delivered=include_maybe_delivered,
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


# --- SQLite --------------------------------------------------------------------------------------


class SqliteOutbox(_Replaying):
    """A durable outbox in one SQLite file (WAL mode) that several processes may share.

    One row per intent: its JSON (`Intent.to_dict()`), state, attempts, the category and
    error of the last failure, the message id, the token fingerprint, `not_before`, the lease
    (owner and expiry) and timestamps. A claim is an atomic lease, so two workers never send
    the same intent at once, and a dead worker's lease lapses; a row it left in `sending` is
    then `maybe_delivered`, and is only sent again by a replay that asks for it.

    Changes go through one writer thread that commits whatever is waiting in one transaction:
    an intent's `sending` is committed before `begin` returns (before its request goes out);
    an outcome is committed with the next change, at most *flush_interval* later. Use it as a
    context manager, or call `close()`, to commit the last outcomes before the process ends.

    Args:
        path: The file; created with its tables unless *create* is False.
        lease: Seconds a claim or a send stays leased (`DEFAULT_LEASE`).
        max_age: Seconds after an intent's `created_at` past which a replay expires it
            instead of sending it (Twilio keeps a WhatsApp message queued 4 h at most:
            `max_age=4 * 3600`); None: no bound.
        durability: `normal` (a commit survives a killed process; the last ones may be lost
            with the machine's power) or `full` (one fsync per commit: survives that too).
        busy_timeout: Seconds to wait for another process's write lock.
        flush_interval: Seconds an outcome may wait to share a commit; 0 commits it before
            `settle` returns.
        group_commit: Commit concurrent changes together; False: one transaction per change.
        create: Create the file when it does not exist.
        clock: Wall clock (leases, deadlines, timestamps).

    Raises:
        ConfigurationError: A setting is out of range.
        OutboxError: The file is missing (with *create* False), locked, corrupt, another
            program's database or written by a newer wa_auth; nothing is overwritten.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease: float = DEFAULT_LEASE,
        max_age: float | None = None,
        durability: str = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        group_commit: bool = True,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lease = _seconds("lease", lease, optional=False) or DEFAULT_LEASE
        self.max_age = _seconds("max_age", max_age)
        self.clock = clock
        self._db = Database(
            path,
            SCHEMA,
            durability=durability,
            busy_timeout=busy_timeout,
            flush_interval=flush_interval,
            group_commit=group_commit,
            create=create,
        )
        self.path = self._db.path
        self._jobs = Jobs(self.path)
        self._begin_many = self._jobs.begin_many
        self._owner_pid = -1
        self._owner = ""
        try:
            self._db.run(lambda c: self._jobs.recover(c, self.clock()))
        except BaseException:
            self._db.close()
            raise

    @property
    def owner(self) -> str:
        """This worker's lease name: host, process id and a random part (new after a fork)."""
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            self._owner = f"{socket.gethostname()}:{self._owner_pid}:{secrets.token_hex(4)}"
        return self._owner

    @property
    def durability(self) -> str:
        """`normal` or `full`."""
        return self._db.durability

    @property
    def commits(self) -> int:
        """Transactions this outbox's writer committed (group commit makes it small)."""
        return self._db.commits

    # --- the guard's hand-off -------------------------------------------------------------------

    def _begin_job(self, intent: Intent) -> Bulk:
        now = self.clock()
        owner, until = self.owner, now + self.lease
        return Bulk(
            self._begin_many, (intent_row(intent, SENDING, owner, until, now), owner, until, now)
        )

    def _settle_job(self, delivery: Delivery) -> Bulk:
        return Bulk(Jobs.settle_many, (settle_values(delivery, self.clock()), delivery))

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending`; return once that is committed.

        Raises:
            OutboxError: It is in flight or claimed elsewhere (`busy`), delivered, maybe
                delivered (`duplicate`) or expired (`expired`), or the file cannot be used.
        """
        self._db.run(self._begin_job(intent))

    async def abegin(self, intent: Intent) -> None:
        """Record *intent* as `sending` (see `begin`); the loop runs on while it commits."""
        await self._db.arun(self._begin_job(intent))

    def settle(self, delivery: Delivery) -> None:
        """Record what became of the intent, with the next commit (see *flush_interval*)."""
        self._db.defer(self._settle_job(delivery))

    async def asettle(self, delivery: Delivery) -> None:
        """Record what became of the intent (see `settle`)."""
        await self._db.adefer(self._settle_job(delivery))

    # --- the queue ------------------------------------------------------------------------------

    def _enqueue_job(self, intents: Iterable[Intent]) -> Callable[[Any], int]:
        now = self.clock()
        rows = [intent_row(_intent(i), PENDING, None, None, now) for i in intents]
        return lambda c: Jobs.enqueue(c, rows)

    def enqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending`; False when its key is already in the outbox."""
        return self._db.run(self._enqueue_job((intent,))) == 1

    async def aenqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending` (see `enqueue`)."""
        return await self._db.arun(self._enqueue_job((intent,))) == 1

    def enqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction; return how many were new."""
        return self._db.run(self._enqueue_job(intents))

    async def aenqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction (see `enqueue_many`)."""
        return await self._db.arun(self._enqueue_job(intents))

    def _claim_job(
        self,
        limit: int,
        after: int,
        live_fingerprints: Collection[str] | None,
        include_maybe_delivered: bool,
    ) -> Callable[[Any], builtins.list[OutboxRow]]:
        size = _count("limit", limit) or DEFAULT_BATCH
        live = tuple(sorted(live_fingerprints)) if live_fingerprints else None
        now = self.clock()
        owner = self.owner

        def job(conn: Any) -> builtins.list[OutboxRow]:
            return self._jobs.claim(
                conn,
                owner=owner,
                now=now,
                lease_until=now + self.lease,
                limit=size,
                after=int(after),
                live=live,
                include_maybe_delivered=bool(include_maybe_delivered),
            )

        return job

    def claim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows after id *after* to this worker, in id order.

        Rows left in `sending` by a stopped worker become `maybe_delivered` first. A token
        failure is replayable only when its fingerprint is not among *live_fingerprints*
        (the tokens the provider hands out now; None: those rows are not claimed).
        """
        job = self._claim_job(limit, after, live_fingerprints, include_maybe_delivered)
        return self._db.run(job)

    async def aclaim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
    ) -> builtins.list[OutboxRow]:
        """Lease replayable rows (see `claim`)."""
        job = self._claim_job(limit, after, live_fingerprints, include_maybe_delivered)
        return await self._db.arun(job)

    def release(self) -> int:
        """Give back this worker's claims that were not sent."""
        owner = self.owner
        return self._db.run(lambda c: Jobs.release(c, owner))

    async def arelease(self) -> int:
        """Give back this worker's unsent claims."""
        owner = self.owner
        return await self._db.arun(lambda c: Jobs.release(c, owner))

    def _mark_job(
        self, key: str, state: str, reason: str | None, message_id: str | None
    ) -> Callable[[Any], OutboxRow]:
        target = _markable(state)
        now = self.clock()
        return lambda c: self._jobs.mark(c, key, target, now, reason, message_id)

    def mark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set the row's state by hand: an operator's decision after checking.

        `pending` sends it again at the next replay, `delivered` records a delivery confirmed
        elsewhere (a status webhook), `failed` or `expired` gives up on it.

        Raises:
            RequestValidationError: *state* is not one of `MARKABLE_STATES`.
            OutboxError: No such row (`not_found`), or it is being sent (`busy`).
        """
        return self._db.run(self._mark_job(idempotency_key, state, reason, message_id))

    async def amark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set the row's state by hand (see `mark`)."""
        return await self._db.arun(self._mark_job(idempotency_key, state, reason, message_id))

    # --- reading --------------------------------------------------------------------------------

    def get(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None (what this outbox settled included)."""
        return self._db.run(lambda c: self._jobs.get(c, idempotency_key), write=False)

    async def aget(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        return await self._db.arun(lambda c: self._jobs.get(c, idempotency_key), write=False)

    def _list_job(
        self,
        state: str | None,
        category: str | None,
        consumer: str | None,
        dead_letters: bool,
        limit: int | None,
    ) -> Callable[[Any], builtins.list[OutboxRow]]:
        state = _filter("state", state, OUTBOX_STATES)
        category = _filter("category", category)
        consumer = _filter("consumer", consumer)
        most = _count("limit", limit, optional=True)
        return lambda c: self._jobs.select(
            c,
            state=state,
            category=category,
            consumer=consumer,
            dead_letters=bool(dead_letters),
            limit=most,
        )

    def list(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:
        """Return the rows that match every filter given, oldest first.

        Raises:
            RequestValidationError: An unknown state, or a limit that is not positive.
            OutboxError: A row's intent cannot be read (`corrupt`), or the file cannot be used.
        """
        job = self._list_job(state, category, consumer, dead_letters, limit)
        return self._db.run(job, write=False)

    async def alist(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:
        """Return the rows that match (see `list`)."""
        job = self._list_job(state, category, consumer, dead_letters, limit)
        return await self._db.arun(job, write=False)

    def stats(self) -> OutboxStats:
        """Count the rows by state and category."""
        return self._db.run(Jobs.stats, write=False)

    async def astats(self) -> OutboxStats:
        """Count the rows by state and category."""
        return await self._db.arun(Jobs.stats, write=False)

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
        pairs = _ages(delivered_older_than, expired_older_than, self.clock())
        return self._db.run(lambda c: Jobs.purge(c, pairs))

    async def apurge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete old delivered (and expired) rows (see `purge`)."""
        pairs = _ages(delivered_older_than, expired_older_than, self.clock())
        return await self._db.arun(lambda c: Jobs.purge(c, pairs))

    # --- lifetime -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Return once every outcome settled so far is committed."""
        self._db.flush()

    async def aflush(self) -> None:
        """Return once every outcome settled so far is committed."""
        await self._db.aflush()

    def close(self) -> None:
        """Commit what is waiting, stop the writer thread and close the file; idempotent."""
        self._db.close()

    async def aclose(self) -> None:
        """Commit what is waiting (without blocking the loop), then close."""
        if not self._db.closed:
            await self._db.aflush()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"SqliteOutbox({self.path!r}, durability={self.durability!r}, lease={self.lease!r}, "
            f"max_age={self.max_age!r})"
        )


_claim(__name__, globals())
