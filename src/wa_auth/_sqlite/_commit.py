"""The commit of a batch: one transaction, a failing job alone, each result to its waiter.

`Committing` is the part of `Database` that runs a batch of jobs in one `BEGIN IMMEDIATE`
transaction (group commit) and hands each caller its result once the commit is done. A job
that fails as no refusal does (text SQLite cannot store, a number too large, a bug) rolls the
transaction back; the batch then runs one job per transaction, so only that job's caller gets
an `OutboxError`. A failure of the file itself (full, locked, read-only, corrupt) is kept as
`problem` until a later write proves the file fine again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from wa_auth._sqlite._open import Bulk, Job, Opening, file_error
from wa_auth._sqlite._stored import printable
from wa_auth.errors import OutboxError, WhatsAppError

if TYPE_CHECKING:
    import asyncio

__all__ = ["Committing", "Entry", "Slot", "Waiter"]

_log = logging.getLogger("wa_auth.outbox")


class Slot:
    """Where the caller that commits a batch in its own thread finds its own job's result.

    No lock, no condition: it is filled by the thread that reads it, before it reads it.
    """

    __slots__ = ("answer",)

    def __init__(self) -> None:
        self.answer: tuple[bool, Any] | None = None


#: Who waits for a job: a blocking caller's future, the committing caller's own slot, or an
#: event loop's future; None: nobody. (Aliases as text: asyncio loads only where a loop awaits
#: a job, never in a blocking process.)
Waiter: TypeAlias = (
    "concurrent.futures.Future[Any] | Slot | tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]"
)
#: A queued job: the job, whether it writes, and who waits for its result.
Entry: TypeAlias = "tuple[Job | Bulk, bool, Waiter | None]"


class Committing(Opening):
    """Run batches of jobs in transactions on `_conn`; the subclass queues them (`Database`)."""

    _conn: sqlite3.Connection
    #: Transactions that changed the file.
    commits: int
    #: The last failure of a transaction for a reason of the file, or None.
    problem: OutboxError | None

    def _commit(self, batch: Sequence[Entry]) -> None:
        """Run *batch* in one transaction and hand each job its result after the commit.

        A job that fails as no refusal does (text SQLite cannot store, a number too large, a
        bug) rolls the transaction back; the batch then runs one job per transaction, so
        only that job fails, with an `OutboxError` naming the problem.
        """
        write = any(e[1] for e in batch)
        try:
            results = self._transaction(batch, write=write)
        except sqlite3.Error as exc:
            error = self._error(exc)
            if error.kind == "sqlite":  # a statement's failure, not the file's: one job's
                results = self._one_by_one(batch)
            else:
                self.problem = error
                results = [(False, error)] * len(batch)
        except Exception:  # noqa: BLE001 - a job's failure: find which, the others commit
            results = self._one_by_one(batch)
        self._hand_out(batch, results)

    def _transaction(self, batch: Sequence[Entry], *, write: bool) -> list[tuple[bool, Any]]:
        """Run *batch* in one transaction; roll it back (and raise) when a job fails."""
        conn = self._conn
        results: list[tuple[bool, Any]] = []
        changes = conn.total_changes
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            self._run_jobs(conn, batch, results)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        if write:
            self.commits += 1
            problem = self.problem
            # A write that changed rows proves the file can take changes; one that only took
            # the lock proves the lock is free.
            if problem is not None and (conn.total_changes > changes or problem.kind == "locked"):
                self.problem = None
        return results

    def _one_by_one(self, batch: Sequence[Entry]) -> list[tuple[bool, Any]]:
        """Run each job of *batch* in a transaction of its own; a failure stays its job's."""
        results: list[tuple[bool, Any]] = []
        for entry in batch:
            try:
                results.extend(self._transaction((entry,), write=entry[1]))
            except sqlite3.Error as exc:
                error = self._error(exc)
                if error.kind != "sqlite":
                    self.problem = error
                results.append((False, error))
            except Exception as exc:  # noqa: BLE001 - handed to the job's caller, typed
                results.append((False, self._job_error(exc)))
        return results

    @staticmethod
    def _run_jobs(
        conn: sqlite3.Connection, batch: Sequence[Entry], results: list[tuple[bool, Any]]
    ) -> None:
        """Run the jobs in order; neighbouring `Bulk` jobs run as one call per kind.

        A run of `Bulk` jobs about distinct rows (keys) is regrouped by kind: the begins and
        the outcomes of 64 sends in flight, interleaved as they came, become one multi-row
        INSERT and one multi-row UPDATE. A job about a row already in the run, a key-less
        `Bulk` or any other job ends the run, so the changes of one row keep their order.
        A job's refusal (a `WhatsAppError`, raised before it wrote) is its result; any other
        exception is raised: the transaction is rolled back.
        """
        i, n = 0, len(batch)
        while i < n:
            job = batch[i][0]
            if isinstance(job, Bulk):
                j = _run_end(batch, i)
                if j == i + 1:
                    results.extend(job.run(conn, [job.item]))
                else:
                    results.extend(_by_kind(conn, [e[0] for e in batch[i:j]]))  # type: ignore[misc]
                i = j
                continue
            try:
                results.append((True, job(conn)))
            except WhatsAppError as exc:  # a job's refusal, made before it wrote
                results.append((False, exc))
            i += 1

    def _job_error(self, exc: Exception) -> OutboxError:
        """The error of one job that failed as no refusal does; nothing of it was written."""
        if isinstance(exc, UnicodeError):
            kind = "unencodable"
            problem = "holds text SQLite cannot store (not valid Unicode, e.g. a lone \\ud800)"
        elif isinstance(exc, OverflowError):
            kind, problem = "invalid", "holds a number too large for SQLite (over 2**63 - 1)"
        else:
            kind, problem = "failed", "failed"
        detail = f"{type(exc).__name__}: {exc}"
        return file_error(
            self.path,
            kind,
            f"{self.schema.what} {self.path}: a change {problem}; nothing of it was written "
            f"({detail[:300]})",
        )

    def _stopped(self, exc: BaseException, how: str) -> OutboxError:
        """The error of the changes a writer held when it *how* (a bug, an interruption)."""
        detail = f"{type(exc).__name__}: {exc}"
        return file_error(
            self.path,
            "failed",
            f"{self.schema.what} {self.path}: its writer {how} ({detail[:300]}); a change it "
            "held may not have been written",
        )

    def _fail(self, batch: Sequence[Entry], error: OutboxError) -> None:
        """Fail every caller of *batch* still waiting (one already answered keeps its answer)."""
        if batch:
            self._hand_out(batch, [(False, error)] * len(batch))

    def _hand_out(self, batch: Sequence[Entry], results: Sequence[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        lost = 0
        last: Any = None
        for (_, _, waiter), (ok, value) in zip(batch, results, strict=True):
            if waiter is None:
                if not ok:
                    lost += 1
                    last = value
            elif isinstance(waiter, Slot):
                if waiter.answer is None:  # answered before a failure of the hand-out itself
                    waiter.answer = (ok, value)
            elif isinstance(waiter, concurrent.futures.Future):
                if waiter.done():  # answered before a failure of the hand-out itself
                    continue
                if ok:
                    waiter.set_result(value)
                else:
                    waiter.set_exception(value)
            else:
                by_loop.setdefault(waiter[0], []).append((waiter[1], ok, value))
        for loop, items in by_loop.items():
            # One wake-up per loop and batch, not one per job; a closed loop has nobody waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, items)
        if lost:
            _log.error(
                "%s %s: %d deferred change(s) were not written (%s); their rows keep their "
                "previous state (a row left in sending becomes maybe_delivered)",
                self.schema.what,
                self.path,
                lost,
                printable(str(last)),
            )


def _run_end(batch: Sequence[Entry], start: int) -> int:
    """The end of the run of `Bulk` jobs from *start*: each about another row (key)."""
    first = batch[start][0]
    assert isinstance(first, Bulk)
    if first.key is None:  # rows unknown: only the same kind next to it joins
        end = start + 1
        while end < len(batch) and _same_kind(batch[end][0], first):
            end += 1
        return end
    keys = {first.key}
    end = start + 1
    while end < len(batch):
        job = batch[end][0]
        if not isinstance(job, Bulk) or job.key is None or job.key in keys:
            break
        keys.add(job.key)
        end += 1
    return end


def _same_kind(job: object, first: Bulk) -> bool:
    return isinstance(job, Bulk) and job.run == first.run


def _by_kind(conn: sqlite3.Connection, jobs: Sequence[Bulk]) -> list[tuple[bool, Any]]:
    """Run a run's jobs as one call per kind (first come, first run); results in job order."""
    kinds: dict[Any, list[int]] = {}
    for n, job in enumerate(jobs):
        kinds.setdefault(job.run, []).append(n)
    if len(kinds) == 1:
        return jobs[0].run(conn, [job.item for job in jobs])
    out: list[tuple[bool, Any]] = [(False, None)] * len(jobs)
    for run, places in kinds.items():
        for place, result in zip(places, run(conn, [jobs[n].item for n in places]), strict=True):
            out[place] = result
    return out


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # the awaiting task was cancelled
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
