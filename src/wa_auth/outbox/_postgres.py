"""`PostgresOutbox`: the outbox in PostgreSQL, shared by every worker of a fleet on many hosts."""

from __future__ import annotations

import builtins
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from wa_auth._closing import AsyncClosing, Closing
from wa_auth._postgres import Many, PgDatabase
from wa_auth.errors import OutboxError
from wa_auth.intents import Intent
from wa_auth.outbox._common import (
    Replaying,
    check_after,
    check_ages,
    check_count,
    check_intent,
    check_markable,
    check_seconds,
    list_job,
)
from wa_auth.outbox._pg import SCHEMA, PgJobs
from wa_auth.outbox._pg_wait import Waiting
from wa_auth.outbox._sql import intent_row, settle_values
from wa_auth.outbox._values import (
    DEFAULT_BATCH,
    DEFAULT_LEASE,
    PENDING,
    SENDING,
    OutboxRow,
    OutboxStats,
)

if TYPE_CHECKING:
    from collections.abc import Collection

    from wa_auth._delivery import Delivery
    from wa_auth.webhooks import MessageStatus

__all__ = ["PostgresOutbox"]


class PostgresOutbox(Waiting, Replaying, Closing, AsyncClosing):
    """A durable outbox in PostgreSQL that any number of workers on any number of hosts share.

    The same rows, states and rules as `SqliteOutbox`: an intent's `sending` is committed
    before its request goes out; a claim is a lease (`FOR UPDATE SKIP LOCKED`: workers never
    wait for each other, never take the same row) and a dead worker's lease lapses; a row it
    left in `sending` then becomes `maybe_delivered`, sent again only by a replay that asks.
    Rows of a number paused until later in the schema's `pauses` table (`PostgresState`'s
    pause store) are not claimed. Enqueues, releases and retryable outcomes `NOTIFY` the idle
    workers (`wait_for_work`).

    One writer thread per outbox commits whatever changes are waiting in one transaction
    (group commit). Use it as a context manager, or call `close()`, so the last outcomes are
    committed before the process ends. Leases and deadlines are the workers' wall clocks:
    keep the hosts' clocks in sync (NTP) well within the lease.

    Args:
        dsn: `postgresql://user:password@host:port/database` (never shown: messages name
            the server and database only).
        schema: The schema of wa_auth's tables (`wa_auth`), created and migrated unless
            *create* is False.
        lease: Seconds a claim or a send stays leased (`DEFAULT_LEASE`).
        max_age: Seconds after `created_at` past which a replay expires an intent; None: none.
        durability: `full` (`synchronous_commit = on`: a commit survives a crash of the
            server) or `normal` (`off`: a crash of the server may lose its last commits).
        flush_interval: Seconds an outcome may wait to share a commit; 0 commits it before
            `settle` returns.
        group_commit: Commit concurrent changes together; False: one transaction per change.
        create: Create (or migrate) the schema; False refuses a missing or older one.
        connect_timeout: Seconds to wait for the server.
        clock: Wall clock (leases, deadlines, timestamps).

    Raises:
        ConfigurationError: A setting is out of range, *dsn* is no PostgreSQL URL, or psycopg
            (the `postgres` extra) is not installed.
        OutboxError: The password is refused (`auth_failed`), the database or schema is
            missing (`missing`), or the schema was written by a newer wa_auth
            (`newer_schema`); `OutboxUnavailableError` when the server cannot be reached.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "wa_auth",
        lease: float = DEFAULT_LEASE,
        max_age: float | None = None,
        durability: str = "full",
        flush_interval: float = 0.005,
        group_commit: bool = True,
        create: bool = True,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lease = check_seconds("lease", lease, optional=False) or DEFAULT_LEASE
        self.max_age = check_seconds("max_age", max_age)
        self.clock = clock
        self._db = PgDatabase(
            dsn,
            SCHEMA,
            name=schema,
            durability=durability,
            flush_interval=flush_interval,
            group_commit=group_commit,
            create=create,
            connect_timeout=connect_timeout,
        )
        #: How messages name it: server, database and schema.
        self.path = self._db.where
        self.schema = self._db.name
        self._jobs = PgJobs(
            self._db.where, self._db.target.where, self._db.q, f"wa_auth_{self.schema}"
        )
        self._owner_pid = -1
        self._owner = ""
        self._listener: Any = None
        self._db.run(lambda c: self._jobs.recover(c, self.clock()))

    @property
    def owner(self) -> str:
        """This worker's lease name: host, process id and a random part (new after a fork)."""
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            self._owner = f"{socket.gethostname()}:{self._owner_pid}:{secrets.token_hex(4)}"
        return self._owner

    @property
    def durability(self) -> str:
        """`full` or `normal`."""
        return self._db.durability

    @property
    def commits(self) -> int:
        """Transactions this outbox's writer committed (group commit makes it small)."""
        return self._db.commits

    # --- the guard's hand-off -------------------------------------------------------------------

    def _begin_job(self, intent: Intent) -> Many:
        now = self.clock()
        owner, until = self.owner, now + self.lease
        values = intent_row(check_intent(intent), SENDING, owner, until, now)
        return Many(self._jobs.begin_many, (values, owner, until, now))

    def _settle_job(self, delivery: Delivery) -> Many:
        return Many(self._jobs.settle_many, (settle_values(delivery, self.clock()), delivery))

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending`; return once that is committed.

        Raises:
            OutboxError: It is in flight or claimed elsewhere (`busy`), delivered, maybe
                delivered (`duplicate`) or expired (`expired`), or the database cannot be used.
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
        rows = [intent_row(check_intent(i), PENDING, None, None, now) for i in intents]
        return lambda c: self._jobs.enqueue(c, rows)

    def enqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending`; False when its key is already in the outbox."""
        return bool(self._db.run(self._enqueue_job((intent,))) == 1)

    async def aenqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending` (see `enqueue`)."""
        return bool(await self._db.arun(self._enqueue_job((intent,))) == 1)

    def enqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction; return how many were new."""
        return int(self._db.run(self._enqueue_job(intents)))

    async def aenqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction (see `enqueue_many`)."""
        return int(await self._db.arun(self._enqueue_job(intents)))

    def _claim_job(
        self,
        limit: int,
        after: int,
        live_fingerprints: Collection[str] | None,
        include_maybe_delivered: bool,
    ) -> Callable[[Any], builtins.list[OutboxRow]]:
        size = check_count("limit", limit) or DEFAULT_BATCH
        start = check_after(after)
        live = tuple(sorted(live_fingerprints)) if live_fingerprints else None
        now = self.clock()
        owner = self.owner
        return lambda c: self._jobs.claim(
            c,
            owner=owner,
            now=now,
            lease_until=now + self.lease,
            limit=size,
            after=start,
            live=live,
            include_maybe_delivered=bool(include_maybe_delivered),
        )

    def claim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows after id *after* to this worker, in id order.

        Rows locked by another worker's claim are skipped, not waited for; rows left in
        `sending` by a stopped worker become `maybe_delivered` first (see `SqliteOutbox.claim`).
        """
        job = self._claim_job(limit, after, live_fingerprints, include_maybe_delivered)
        return self._db.run(job)  # type: ignore[no-any-return]

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
        return await self._db.arun(job)  # type: ignore[no-any-return]

    def release(self) -> int:
        """Give back this worker's claims that were not sent."""
        owner = self.owner
        return int(self._db.run(lambda c: self._jobs.release(c, owner)))

    async def arelease(self) -> int:
        """Give back this worker's unsent claims."""
        owner = self.owner
        return int(await self._db.arun(lambda c: self._jobs.release(c, owner)))

    def _mark_job(
        self, key: str, state: str, reason: str | None, message_id: str | None
    ) -> Callable[[Any], OutboxRow]:
        target = check_markable(state)
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
        """Set the row's state by hand: an operator's decision (see `SqliteOutbox.mark`).

        Raises:
            RequestValidationError: *state* is not one of `MARKABLE_STATES`.
            OutboxError: No such row (`not_found`), or it is being sent (`busy`).
        """
        return self._db.run(self._mark_job(idempotency_key, state, reason, message_id))  # type: ignore[no-any-return]

    async def amark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set the row's state by hand (see `mark`)."""
        job = self._mark_job(idempotency_key, state, reason, message_id)
        return await self._db.arun(job)  # type: ignore[no-any-return]

    def _status_job(self, event: MessageStatus) -> Callable[[Any], OutboxRow | None]:
        now = self.clock()
        return lambda c: self._jobs.apply_status(c, event, now)

    def apply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row it names; return that row, or None.

        A `failed` status turns a `delivered`, `sending` or `maybe_delivered` row `failed`
        with its category and the reason `webhook:<Graph code>`; anything else changes
        nothing (idempotent). Committed before it returns.
        """
        return self._db.run(self._status_job(event))  # type: ignore[no-any-return]

    async def aapply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row it names (see `apply_status`)."""
        return await self._db.arun(self._status_job(event))  # type: ignore[no-any-return]

    # --- reading --------------------------------------------------------------------------------

    def get(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        if self._db.pending:  # this outbox's own outcomes first
            self._db.flush()
        return self._db.read(lambda c: self._jobs.get(c, idempotency_key))  # type: ignore[no-any-return]

    async def aget(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        job = lambda c: self._jobs.get(c, idempotency_key)  # noqa: E731
        return await self._db.arun(job, write=False)  # type: ignore[no-any-return]

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
        """
        job = list_job(self._jobs.select, state, category, consumer, dead_letters, limit)
        if self._db.pending:  # this outbox's own outcomes first
            self._db.flush()
        return self._db.read(job)  # type: ignore[no-any-return]

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
        job = list_job(self._jobs.select, state, category, consumer, dead_letters, limit)
        return await self._db.arun(job, write=False)  # type: ignore[no-any-return]

    def stats(self) -> OutboxStats:
        """Count the rows by state and category."""
        if self._db.pending:
            self._db.flush()
        return self._db.read(self._jobs.stats)  # type: ignore[no-any-return]

    async def astats(self) -> OutboxStats:
        """Count the rows by state and category."""
        return await self._db.arun(self._jobs.stats, write=False)  # type: ignore[no-any-return]

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
        pairs = check_ages(delivered_older_than, expired_older_than, self.clock())
        return int(self._db.run(lambda c: self._jobs.purge(c, pairs)))

    async def apurge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete old delivered (and expired) rows (see `purge`)."""
        pairs = check_ages(delivered_older_than, expired_older_than, self.clock())
        return int(await self._db.arun(lambda c: self._jobs.purge(c, pairs)))

    # --- lifetime -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Return once every outcome settled so far is committed."""
        self._db.flush()

    async def aflush(self) -> None:
        """Return once every outcome settled so far is committed."""
        await self._db.aflush()

    def close(self) -> None:
        """Commit what is waiting, stop the writer thread and close the connections; idempotent."""
        self._close_listener()
        self._db.close()

    async def aclose(self) -> None:
        """Commit what is waiting (without blocking the loop), then close; idempotent.

        A server that cannot take the last outcomes now leaves their rows `sending` (later
        `maybe_delivered`); the outbox closes all the same.
        """
        if not self._db.closed:
            with contextlib.suppress(OutboxError):
                await self._db.aflush()
        self.close()

    def __repr__(self) -> str:
        return (
            f"PostgresOutbox({self._db.target.safe_url!r}, schema={self.schema!r}, "
            f"durability={self.durability!r}, lease={self.lease!r}, max_age={self.max_age!r})"
        )
