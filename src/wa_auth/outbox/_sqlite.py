"""`SqliteOutbox`: the outbox in one SQLite file in WAL mode that several processes may share."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from wa_auth._sqlite import DEFAULT_BUSY_TIMEOUT, DEFAULT_FLUSH_INTERVAL, Bulk, Database
from wa_auth.intents import Intent
from wa_auth.outbox._common import (
    check_ages,
    check_seconds,
    list_job,
)
from wa_auth.outbox._jobs import Jobs
from wa_auth.outbox._shell import DatabaseOutbox
from wa_auth.outbox._sql import SCHEMA, begin_insert, intent_row, plain_delivery, settle_values
from wa_auth.outbox._values import (
    DEFAULT_LEASE,
    SENDING,
    OutboxRow,
    OutboxStats,
)

if TYPE_CHECKING:
    from wa_auth._delivery import Delivery
    from wa_auth.errors import OutboxError

__all__ = ["DEFAULT_CHECK_TIMEOUT", "SqliteOutbox"]

#: Seconds `check()` waits for the writer: longer than the default busy timeout (5 s), so a
#: lock held by another process is reported as `locked`, not as a writer that is stuck.
DEFAULT_CHECK_TIMEOUT: Final = 6.0


class SqliteOutbox(DatabaseOutbox):
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
        read_only: Open an existing file for reading only (`get`, `list`, `stats`,
            `dead_letters`): it may sit on a read-only mount; every change raises
            `OutboxError(readonly)`.
        clock: Wall clock (leases, deadlines, timestamps).

    Raises:
        ConfigurationError: A setting is out of range.
        OutboxError: The file is missing (with *create* False), corrupt, read-only, another
            program's database or written by a newer wa_auth; nothing is overwritten.
            `OutboxUnavailableError` (`transient`): the disk is full, or the file locked.
    """

    _db: Database
    _jobs: Jobs

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
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lease = check_seconds("lease", lease, optional=False) or DEFAULT_LEASE
        self.max_age = check_seconds("max_age", max_age)
        self.clock = clock
        self._db = Database(
            path,
            SCHEMA,
            durability=durability,
            busy_timeout=busy_timeout,
            flush_interval=flush_interval,
            group_commit=group_commit,
            create=create and not read_only,
            read_only=read_only,
        )
        self.path = self._db.path
        self._jobs = Jobs(self.path)
        self._begin_many = self._jobs.begin_many
        self._owner_pid = -1
        self._owner = ""
        if read_only:
            return
        try:
            self._db.run(lambda c: self._jobs.recover(c, self.clock()))
        except BaseException:
            self._db.close()
            raise

    @property
    def read_only(self) -> bool:
        """True when opened with `read_only=True`: every change is refused."""
        return self._db.read_only

    # --- health ---------------------------------------------------------------------------------

    def check(self, timeout: float = DEFAULT_CHECK_TIMEOUT) -> OutboxError | None:
        """Return None when the outbox takes changes now, else the `OutboxError` saying why not.

        Its writer thread must answer within *timeout* seconds (`stuck` otherwise), and the
        last transaction must not have failed for a reason of the file: a full disk, a lock
        held past the busy timeout, a read-only or corrupt file, an I/O error. While such a
        problem is known, the check writes (one row of `wa_auth_meta`, unchanged): once that
        works, the problem is gone. A health probe's question (`wa-auth serve`'s `/healthz`).
        """
        return self._db.check(check_seconds("timeout", timeout) or DEFAULT_CHECK_TIMEOUT)

    async def acheck(self, timeout: float = DEFAULT_CHECK_TIMEOUT) -> OutboxError | None:
        """Return None when the outbox takes changes now (see `check`); the loop runs on."""
        return await self._db.acheck(check_seconds("timeout", timeout) or DEFAULT_CHECK_TIMEOUT)

    # --- the guard's hand-off -------------------------------------------------------------------

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending`; return once that is committed.

        A new intent is one INSERT committed by itself in the caller's thread (`Database.solo`)
        when nobody else is writing; the outcomes waiting then wait on for company. Anything
        else (a key the outbox holds, outcomes that are due, a writer at work) goes through
        the writer's batch, where the refusals are decided.

        Raises:
            OutboxError: It is in flight or claimed elsewhere (`busy`), delivered, maybe
                delivered (`duplicate`) or expired (`expired`), or the outbox cannot be used.
        """
        now = self.clock()
        owner, until = self.owner, now + self.lease
        values = intent_row(intent, SENDING, owner, until, now)
        key = values[0]
        if self._db.solo(*begin_insert(values), key) != 1:
            self._db.run(Bulk(self._begin_many, (values, owner, until, now), key=key, ahead=True))

    def _begin_job(self, intent: Intent) -> Bulk:
        now = self.clock()
        owner, until = self.owner, now + self.lease
        key = intent.idempotency_key
        return Bulk(
            self._begin_many,
            (intent_row(intent, SENDING, owner, until, now), owner, until, now),
            key=key,
            ahead=True,
        )

    def _settle_job(self, delivery: Delivery) -> Bulk:
        values = settle_values(delivery, self.clock())
        run = Jobs.settle_delivered_many if plain_delivery(delivery) else Jobs.settle_many
        return Bulk(run, (values, delivery), key=values[9])

    # --- reading --------------------------------------------------------------------------------

    def get(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None (what this outbox settled included)."""
        return self._db.run(lambda c: self._jobs.get(c, idempotency_key), write=False)

    async def aget(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        return await self._db.arun(lambda c: self._jobs.get(c, idempotency_key), write=False)

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
        job = list_job(self._jobs.select, state, category, consumer, dead_letters, limit)
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
        job = list_job(self._jobs.select, state, category, consumer, dead_letters, limit)
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
        pairs = check_ages(delivered_older_than, expired_older_than, self.clock())
        return self._db.run(lambda c: Jobs.purge(c, pairs))

    async def apurge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete old delivered (and expired) rows (see `purge`)."""
        pairs = check_ages(delivered_older_than, expired_older_than, self.clock())
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

    def __repr__(self) -> str:
        return (
            f"SqliteOutbox({self.path!r}, durability={self.durability!r}, lease={self.lease!r}, "
            f"max_age={self.max_age!r})"
        )
