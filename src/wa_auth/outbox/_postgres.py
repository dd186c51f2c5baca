"""`PostgresOutbox`: the outbox in PostgreSQL, shared by every worker of a fleet on many hosts."""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wa_auth._postgres import Many, PgDatabase
from wa_auth.errors import OutboxError
from wa_auth.intents import Intent
from wa_auth.outbox._common import (
    check_ages,
    check_intent,
    check_seconds,
    list_job,
)
from wa_auth.outbox._pg import SCHEMA, PgJobs
from wa_auth.outbox._pg_wait import Waiting
from wa_auth.outbox._shell import DatabaseOutbox
from wa_auth.outbox._sql import intent_row, settle_values
from wa_auth.outbox._values import (
    DEFAULT_LEASE,
    SENDING,
    OutboxRow,
    OutboxStats,
)

if TYPE_CHECKING:
    from wa_auth._delivery import Delivery

__all__ = ["PostgresOutbox"]


class PostgresOutbox(Waiting, DatabaseOutbox):
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

    # --- the guard's hand-off -------------------------------------------------------------------

    def _begin_job(self, intent: Intent) -> Many:
        now = self.clock()
        owner, until = self.owner, now + self.lease
        values = intent_row(check_intent(intent), SENDING, owner, until, now)
        return Many(self._jobs.begin_many, (values, owner, until, now))

    def _settle_job(self, delivery: Delivery) -> Many:
        return Many(self._jobs.settle_many, (settle_values(delivery, self.clock()), delivery))

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
