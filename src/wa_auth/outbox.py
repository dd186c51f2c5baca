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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from wa_auth._exports import claim as _claim
from wa_auth._outbox_common import DEFAULT_BATCH
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
)
from wa_auth.intents import Intent

if TYPE_CHECKING:
    from collections.abc import Collection

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


# The implementations live in modules of their own; they are part of this module's API.
from wa_auth._outbox_memory import MemoryOutbox  # noqa: E402
from wa_auth._outbox_sqlite import SqliteOutbox  # noqa: E402

_claim(__name__, globals())
