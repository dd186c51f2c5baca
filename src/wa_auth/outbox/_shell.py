"""What `SqliteOutbox` and `PostgresOutbox` share: the methods over a writer and its jobs.

Each database outbox has a writer (`_db`: `run`/`arun` a job in its transaction, `defer`/
`adefer` one to the next group commit) and its jobs (`_jobs`: functions of a connection, with
the same names on both). The hand-off, the queue, claims, marks and status webhooks are
written here once; reads, health and closing, where the two differ, each outbox defines.
"""

from __future__ import annotations

import builtins
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from wa_auth._closing import AsyncClosing, Closing
from wa_auth.intents import Intent
from wa_auth.outbox._common import (
    Replaying,
    check_after,
    check_count,
    check_intent,
    check_markable,
)
from wa_auth.outbox._sql import intent_row
from wa_auth.outbox._values import DEFAULT_BATCH, PENDING, OutboxRow

if TYPE_CHECKING:
    from collections.abc import Collection

    from wa_auth._delivery import Delivery
    from wa_auth.webhooks import MessageStatus

__all__ = ["DatabaseOutbox"]


class DatabaseOutbox(Replaying, Closing, AsyncClosing):
    """The `Outbox` methods of a database outbox, over its `_db` and `_jobs`."""

    lease: float
    max_age: float | None
    clock: Callable[[], float]
    _db: Any
    _jobs: Any
    _owner_pid: int = -1
    _owner: str = ""

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
        return str(self._db.durability)

    @property
    def commits(self) -> int:
        """Transactions this outbox's writer committed (group commit makes it small)."""
        return int(self._db.commits)

    # --- the guard's hand-off -------------------------------------------------------------------

    def _begin_job(self, intent: Intent) -> Any:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    def _settle_job(self, delivery: Delivery) -> Any:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending`; return once that is committed.

        Raises:
            OutboxError: It is in flight or claimed elsewhere (`busy`), delivered, maybe
                delivered (`duplicate`) or expired (`expired`), or the outbox cannot be used.
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
        jobs = self._jobs
        return lambda c: int(jobs.enqueue(c, rows))

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
        numbers: int,
    ) -> Callable[[Any], builtins.list[OutboxRow]]:
        size = check_count("limit", limit) or DEFAULT_BATCH
        most = check_count("numbers", numbers) or 1
        start = check_after(after)
        live = tuple(sorted(live_fingerprints)) if live_fingerprints else None
        now = self.clock()
        owner = self.owner
        jobs = self._jobs
        until = now + self.lease

        def job(conn: Any) -> builtins.list[OutboxRow]:
            return cast(
                "builtins.list[OutboxRow]",
                jobs.claim(
                    conn,
                    owner=owner,
                    now=now,
                    lease_until=until,
                    limit=size,
                    after=start,
                    live=live,
                    include_maybe_delivered=bool(include_maybe_delivered),
                    numbers=most,
                ),
            )

        return job

    def claim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
        numbers: int = 1,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows after id *after* to this worker, in id order.

        Rows left in `sending` by a stopped worker become `maybe_delivered` first. A token
        failure is replayable only when its fingerprint is not among *live_fingerprints*
        (the tokens the provider hands out now; None: those rows are not claimed). Each
        number's intents go in order: a claim takes the leading rows of at most *numbers*
        numbers, and leaves alone a number another worker holds (`held_numbers`, `head_run`).
        """
        job = self._claim_job(limit, after, live_fingerprints, include_maybe_delivered, numbers)
        return cast("builtins.list[OutboxRow]", self._db.run(job))

    async def aclaim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
        numbers: int = 1,
    ) -> builtins.list[OutboxRow]:
        """Lease replayable rows (see `claim`)."""
        job = self._claim_job(limit, after, live_fingerprints, include_maybe_delivered, numbers)
        return cast("builtins.list[OutboxRow]", await self._db.arun(job))

    def release(self) -> int:
        """Give back this worker's claims that were not sent."""
        owner, jobs = self.owner, self._jobs
        return int(self._db.run(lambda c: jobs.release(c, owner)))

    async def arelease(self) -> int:
        """Give back this worker's unsent claims."""
        owner, jobs = self.owner, self._jobs
        return int(await self._db.arun(lambda c: jobs.release(c, owner)))

    def _mark_job(
        self, key: str, state: str, reason: str | None, message_id: str | None
    ) -> Callable[[Any], OutboxRow]:
        target = check_markable(state)
        now = self.clock()
        jobs = self._jobs
        return lambda c: cast("OutboxRow", jobs.mark(c, key, target, now, reason, message_id))

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
        job = self._mark_job(idempotency_key, state, reason, message_id)
        return cast("OutboxRow", self._db.run(job))

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
        return cast("OutboxRow", await self._db.arun(job))

    def _status_job(self, event: MessageStatus) -> Callable[[Any], OutboxRow | None]:
        now = self.clock()
        jobs = self._jobs
        return lambda c: cast("OutboxRow | None", jobs.apply_status(c, event, now))

    def apply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row it names; return that row, or None.

        A `failed` status turns a `delivered`, `sending` or `maybe_delivered` row `failed`
        with its category and the reason `webhook:<Graph code>` (see `Outbox.apply_status`);
        anything else changes nothing (idempotent). Committed before it returns.
        """
        return cast("OutboxRow | None", self._db.run(self._status_job(event)))

    async def aapply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row it names (see `apply_status`)."""
        return cast("OutboxRow | None", await self._db.arun(self._status_job(event)))
