"""One SQLite file that several processes share: its schema, one writer thread, group commit.

`Database` opens (or creates) the file in WAL mode, so readers never wait for the writer and
several processes can use one file, and migrates its schema forward in one transaction: each
component (`outbox`, `state`) records its version in `wa_auth_meta`, and a file written by a
newer wa_auth is refused, not touched.

Every change goes through one writer thread per `Database`. The thread takes whatever jobs are
waiting and runs them in one `BEGIN IMMEDIATE` transaction (group commit): sixty-four
concurrent sends pay one commit, not sixty-four, and the event loop never waits on SQLite. A
caller of `run` / `arun` returns when its change is committed; a `defer`red change (an
outcome whose loss only turns a row into `maybe_delivered`) rides with the next commit, at
most `flush_interval` later. `BEGIN IMMEDIATE` takes the write lock up front, so a busy file
is waited for (the busy timeout) instead of failing a read-then-write upgrade with
SQLITE_BUSY.

Every `sqlite3` error is translated at the one boundary (`_open.translate`) into an
`OutboxError` naming the file and the problem. The writer never dies of a job (`_commit`: a
failing job fails alone, its batch commits without it); a writer that ends for any reason
fails or hands on what it held, so nobody waits on a thread that is gone.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from wa_auth._sqlite._commit import Committing, Entry, Slot
from wa_auth._sqlite._open import (
    AHEAD_OF,
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_FLUSH_INTERVAL,
    DURABILITY,
    IDLE_EXIT,
    IDLE_POLL,
    MAX_BATCH,
    Bulk,
    Job,
    Schema,
)
from wa_auth.errors import ConfigurationError, OutboxError

if TYPE_CHECKING:
    import asyncio

__all__ = ["Database"]

T = TypeVar("T")


class Database(Committing):
    """One SQLite file: its schema, its writer thread and a connection for quick reads.

    Args:
        path: The file.
        schema: The component's tables and migrations.
        durability: `normal` or `full` (`DURABILITY`).
        busy_timeout: Seconds to wait for another process's write lock.
        flush_interval: Seconds a deferred change waits to share a commit; 0 commits each
            deferred change before `defer` returns.
        group_commit: Run the waiting jobs in one transaction; False runs one transaction per
            job (the measured alternative).
        create: Create the file (and its tables) when it does not exist.
        read_only: Open the file for reading only (never created nor migrated): it may be
            on a read-only mount; every change is refused (`readonly`).

    Raises:
        ConfigurationError: A setting is out of range.
        OutboxError: The file is missing (with *create* False), corrupt, another program's
            database, read-only or of a newer schema; `OutboxUnavailableError` when the disk
            is full or the file locked.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Schema,
        *,
        durability: str = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        group_commit: bool = True,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        if durability not in DURABILITY:
            raise ConfigurationError(
                f"durability must be one of {', '.join(DURABILITY)}, got {durability!r}"
            )
        for name, value in (("busy_timeout", busy_timeout), ("flush_interval", flush_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigurationError(f"{name} must be seconds >= 0, got {value!r}")
        self.path = os.fspath(path)
        self.schema = schema
        self.durability = durability
        self.busy_timeout = float(busy_timeout)
        self.flush_interval = float(flush_interval)
        self.group_commit = bool(group_commit)
        self.read_only = bool(read_only)
        #: Transactions that changed the file, committed by this object's writer.
        self.commits = 0
        #: The last failure of a transaction for a reason of the file (full, locked,
        #: read-only, corrupt, I/O), or None; a later transaction that writes clears it.
        self.problem: OutboxError | None = None
        self._probed = -_PROBE_EVERY
        self._closed = False
        self._orphans: list[sqlite3.Connection] = []
        self._reset()
        self._conn = self._open(create=create)

    def _reset(self) -> None:
        """Start without a writer thread, queue or reader (a new object, or a forked child)."""
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._entries: collections.deque[Entry] = collections.deque()
        #: The keys (`Bulk.key`) of the changes in `_entries`: what `_may_wait` asks about.
        self._keys: set[str] = set()
        #: Entries someone waits for (a deferred one waits for company, up to `_due`).
        self._urgent = 0
        self._due = 0.0
        #: Someone (the writer thread, or a blocking caller) is running a batch.
        self._busy = False
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        #: The event loops with a wake-up of the writer scheduled (`arun`), one per loop turn.
        self._kicking: set[asyncio.AbstractEventLoop] = set()

    def _forked(self) -> None:
        # A connection must not be used across fork(), nor closed in the child (closing may
        # checkpoint and unlink the parent's log): the child keeps it, unused, and opens its own.
        self._orphans.extend(c for c in (self._conn, self._reader) if c is not None)
        self._reset()
        self._conn = self._connect(create=False)

    # --- reads in the caller's thread -----------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run the read-only *fn* on this thread's reader connection (no thread hop).

        It sees what was committed, not the deferred changes still waiting in the writer.
        """
        if self._pid != os.getpid():
            self._forked()
        with self._reader_lock:
            if self._closed:
                raise self._refuse("closed", "was closed")
            try:
                if self._reader is None:
                    self._reader = self._connect(create=False)
                    self._reader.execute("PRAGMA query_only = 1")
                return fn(self._reader)
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    # --- the writer -----------------------------------------------------------------------------

    def run(self, fn: Callable[[sqlite3.Connection], T] | Bulk, *, write: bool = True) -> T:
        """Run *fn* in the next transaction and return its result once committed.

        A blocking caller that finds nobody writing commits the batch itself, in its own
        thread (what waits is committed with it): a thread hop costs more than a commit. When
        the writer thread (or another caller) is busy, the job joins the next batch.
        """
        mine = self._take_if_idle(fn, write)
        if mine is not None:
            own, slot = mine
            self._commit_then_hand_on(own)
            assert slot.answer is not None  # every job of a committed batch is answered
            ok, value = slot.answer
            if ok:
                return value  # type: ignore[no-any-return]
            raise value
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        batch = self._put((fn, write, future), combine=True)
        if batch is not None:
            self._commit_then_hand_on(batch)
        return future.result()

    def solo(self, statement: str, values: Sequence[Any], key: str | None) -> int | None:
        """Run one writing *statement* as a transaction of its own, in the caller's thread.

        A blocking caller's shortcut for a change that is one statement (a begin's INSERT):
        when nobody is writing and the deferred changes waiting may wait behind it
        (`_may_wait`, as for a change made ahead), SQLite commits the statement by itself
        (autocommit), with no `BEGIN` and `COMMIT` statements and no batch around it. It is
        committed, as a `run` job is, when this returns.

        Returns:
            The rows the statement changed, or None when it did not run: someone is writing,
            a change waiting is due, or the statement failed as no problem of the file does
            (nothing of it was written). The caller then goes through `run`, which commits
            what waits with it and types any failure.

        Raises:
            OutboxError: A problem of the file (locked past the busy timeout, full, read-only,
                corrupt), as `run` would raise it.
        """
        if self._pid != os.getpid():
            self._forked()
        if not self.group_commit or self.read_only:
            return None
        with self._cond:
            if self._closed or self._busy or (self._entries and not self._may_wait(key)):
                return None
            self._busy = True
        try:
            changed: int = self._conn.execute(statement, values).rowcount
        except sqlite3.Error as exc:
            error = self._error(exc)
            if error.kind == "sqlite":  # a statement's failure, not the file's: `run` types it
                return None
            self.problem = error
            raise error from None
        except Exception:  # noqa: BLE001 - text or a number SQLite cannot store: `run` types it
            return None
        finally:
            self._hand_on()
        problem = self.problem
        if changed:
            self.commits += 1
        if problem is not None and (changed or problem.kind == "locked"):
            self.problem = None  # as `_transaction`: the file took a change, or the lock is free
        return changed

    def _take_if_idle(
        self, fn: Callable[[sqlite3.Connection], Any] | Bulk, write: bool
    ) -> tuple[list[Entry], Slot] | None:
        """When nobody is writing, the batch this caller commits (what waits, then its job).

        Its own job waits in a `Slot`, not a future: the answer is read by the thread that
        wrote it. None when someone is writing (the job then joins the next batch).
        """
        if self._pid != os.getpid():
            self._forked()
        if not self.group_commit or (self.read_only and write):
            return None  # `_put` commits one job at a time, or refuses
        with self._cond:
            if self._closed or self._busy:
                return None
            self._busy = True
            entries = self._entries
            if entries and isinstance(fn, Bulk) and fn.ahead and self._may_wait(fn.key):
                batch = []
            else:
                batch = [entries.popleft() for _ in range(min(len(entries), MAX_BATCH - 1))]
                self._rekey()
                if self._urgent:
                    self._urgent -= sum(1 for e in batch if e[2] is not None)
        slot = Slot()
        batch.append((fn, write, slot))
        return batch, slot

    def _may_wait(self, key: str | None) -> bool:
        """True when the deferred changes waiting may wait behind a change of *key*.

        Only deferred ones (nobody waits for them), fewer than `AHEAD_OF`, for at most half
        the flush interval (the writer thread takes them at its end), and none about *key*:
        the changes of one row keep their order.
        """
        entries = self._entries
        if self._urgent or len(entries) >= AHEAD_OF:
            return False
        if time.monotonic() >= self._due - self.flush_interval / 2:
            return False
        if key is None:  # a change of rows unknown: behind none of those either
            return not any(getattr(e[0], "key", None) is None for e in entries)
        return key not in self._keys

    def _rekey(self) -> None:
        """Recount `_keys` after changes left `_entries` (with the condition held)."""
        self._keys = {k for e in self._entries if (k := getattr(e[0], "key", None)) is not None}

    async def arun(self, fn: Callable[[sqlite3.Connection], T] | Bulk, *, write: bool = True) -> T:
        """Run *fn* in the writer's next transaction; the loop runs on while it commits."""
        import asyncio  # loaded where a loop awaits: a blocking process never does

        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._put((fn, write, (loop, future)), kick=loop) is not None:
            loop.call_soon(self._kick, loop)
        return await future

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the writer for what this loop's last turn queued: one batch, not one per job.

        A job queued by a coroutine wakes nobody at once: the writer would take it alone, as
        soon as the loop's next socket call let go of the GIL, and 64 sends in flight would
        pay a commit for every two of them. The first job of a turn schedules this instead,
        which runs after the turn's other callbacks (each of which may queue a job too).
        """
        with self._cond:
            self._kicking.discard(loop)
            if self._urgent:
                self._cond.notify()

    def defer(self, fn: Job | Bulk) -> None:
        """Run *fn* with the next commit, at most `flush_interval` from now; do not wait.

        A failure is logged on `wa_auth.outbox` (nobody waits for it). With a flush interval
        of 0, or without group commit, this waits for the commit, like `run`.
        """
        if self.flush_interval == 0 or not self.group_commit:
            self.run(fn)
        else:
            self._put((fn, True, None))

    async def adefer(self, fn: Job | Bulk) -> None:
        """Run *fn* with the next commit (see `defer`)."""
        if self.flush_interval == 0 or not self.group_commit:
            await self.arun(fn)
        else:
            self._put((fn, True, None))

    def flush(self) -> None:
        """Return once every change submitted so far is committed."""
        self.run(_nothing, write=not self.read_only)

    async def aflush(self) -> None:
        """Return once every change submitted so far is committed."""
        await self.arun(_nothing, write=not self.read_only)

    def _put(
        self,
        entry: Entry,
        *,
        combine: bool = False,
        kick: asyncio.AbstractEventLoop | None = None,
    ) -> list[Entry] | None:
        """Queue *entry*; with *combine*, return the batch to commit when nobody is writing.

        With *kick* (the caller's event loop), an urgent entry does not wake the writer: the
        return is `[]` when the caller must schedule `_kick` on that loop (none is yet).
        """
        if self._pid != os.getpid():
            self._forked()
        urgent = entry[2] is not None
        if self.read_only and entry[1]:
            raise self._refuse("readonly", "was opened read-only: it takes no change")
        with self._cond:
            if self._closed:
                raise self._refuse("closed", "was closed")
            entries = self._entries
            if not entries:
                self._due = time.monotonic() + self.flush_interval
            entries.append(entry)
            key = getattr(entry[0], "key", None)
            if key is not None:
                self._keys.add(key)
            if urgent:
                self._urgent += 1
            if combine and self.group_commit and not self._busy:
                self._busy = True
                return self._take()
            if self._thread is None or not self._thread.is_alive():
                self._start_writer()
            elif urgent and kick is not None:
                if kick not in self._kicking:
                    self._kicking.add(kick)
                    return []
            elif urgent:
                # A deferred change wakes nobody (a futex call each): the writer looks at least
                # every flush interval.
                self._cond.notify()
        return None

    def _start_writer(self) -> None:
        """Start a writer thread (with the condition held), or fail what waits for one."""
        # Not a daemon: at the interpreter's exit it commits what is deferred, then ends (it
        # watches the main thread), so an outcome is not lost to a plain exit.
        thread = threading.Thread(
            target=self._write_loop, name=f"wa-auth-sqlite:{Path(self.path).name}"
        )
        try:
            thread.start()
        except RuntimeError as exc:  # at the interpreter's shutdown, or out of threads
            self._thread = None
            stranded = [self._entries.popleft() for _ in range(len(self._entries))]
            self._keys.clear()
            self._urgent = 0
            self._fail(stranded, self._stopped(exc, "could not start"))
            return
        self._thread = thread

    def _take(self) -> list[Entry]:
        """Pop the next batch (with the condition held)."""
        entries = self._entries
        size = min(len(entries), MAX_BATCH) if self.group_commit else 1
        batch = [entries.popleft() for _ in range(size)]
        self._rekey()
        self._urgent -= sum(1 for e in batch if e[2] is not None)
        return batch

    def _commit_then_hand_on(self, batch: list[Entry]) -> None:
        """Commit a caller's batch in its thread; leave what came meanwhile to the writer."""
        try:
            self._commit(batch)
        except BaseException as exc:
            # Interrupted (Ctrl-C) in the middle: the other callers of the batch must not wait.
            self._fail(batch, self._stopped(exc, "was interrupted"))
            raise
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        """End a caller's turn at the connection: the writer takes what came meanwhile."""
        with self._cond:
            self._busy = False
            if self._entries:
                if self._thread is None or not self._thread.is_alive():
                    self._start_writer()
                if self._urgent or self._closed:
                    self._cond.notify_all()
                # Deferred changes only (left waiting by a change made ahead): the writer
                # looks at them by itself when they are due; no wake-up per message.
            elif self._closed:
                self._cond.notify_all()

    def _write_loop(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._cond:
                    batch = self._next_batch()
                    if batch is None:
                        self._thread = None  # with the lock: a change queued next starts another
                        self._cond.notify_all()
                        return
                    self._busy = True
                try:
                    self._commit(batch)
                except BaseException as exc:  # noqa: BLE001 - the writer outlives any job
                    self._fail(batch, self._stopped(exc, "failed"))
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - a bug of the loop: nobody may wait on it
            with self._cond:
                if self._thread is me:
                    self._thread = None
                stranded = [self._entries.popleft() for _ in range(len(self._entries))]
                self._keys.clear()
                self._urgent = 0
                self._cond.notify_all()
            self._fail(stranded, self._stopped(exc, "stopped"))

    def _next_batch(self) -> list[Entry] | None:
        """Wait for what is due (with the condition held); None when the writer should end."""
        idle = 0.0
        entries = self._entries
        poll = min(IDLE_POLL, self.flush_interval or IDLE_POLL)
        while True:
            ending = self._closed or not threading.main_thread().is_alive()
            now = time.monotonic()
            if (
                not self._busy
                and entries
                and (
                    self._urgent
                    or ending
                    or not self.group_commit
                    or len(entries) >= MAX_BATCH
                    or now >= self._due
                )
            ):
                return self._take()
            if not entries and not self._busy and (ending or idle >= IDLE_EXIT):
                return None
            timeout = min(max(self._due - now, 0.0), poll) if entries else poll
            if not self._cond.wait(timeout) and not entries:
                idle += timeout

    # --- health ---------------------------------------------------------------------------------

    def _probe(self) -> tuple[Job, bool]:
        """A read through the writer, or, while a problem is known, a write that may clear it.

        At most one such write a second: a flood of health probes (`/healthz` needs no key)
        must not keep the writer waiting on a lock or a full disk instead of sending.
        """
        if self.problem is None or self.read_only:
            return _nothing, False
        now = time.monotonic()
        if now - self._probed < _PROBE_EVERY:
            return _nothing, False
        self._probed = now
        return _touch, True

    def check(self, timeout: float) -> OutboxError | None:
        """Return None when the file takes changes, else the problem (see `acheck`)."""
        if self._closed:
            return self._refuse("closed", "was closed")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        job, write = self._probe()
        try:
            self._put((job, write, future))
            future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return self.problem or self._unanswered(timeout)
        except OutboxError as exc:
            return exc
        return self.problem

    async def acheck(self, timeout: float) -> OutboxError | None:
        """Return None when the writer answers and no change failed for a reason of the file.

        The writer must answer a read (a write while a problem is known: one that succeeds
        clears it) within *timeout* seconds; the problem is the last failure of the file
        (full, locked, read-only, corrupt, I/O), or `stuck` for a writer that did not answer.
        """
        if self._closed:
            return self._refuse("closed", "was closed")
        import asyncio

        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        job, write = self._probe()
        try:
            self._put((job, write, (asyncio.get_running_loop(), future)))
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return self.problem or self._unanswered(timeout)
        except OutboxError as exc:
            return exc
        return self.problem

    def _unanswered(self, timeout: float) -> OutboxError:
        return self._refuse("stuck", f"did not answer within {timeout:g} s (its writer is stuck)")

    # --- closing --------------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is waiting, stop the writer and close the connections; idempotent."""
        if self._pid != os.getpid():
            self._forked()
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            while self._busy and self._thread is None:  # a blocking caller's batch
                self._cond.wait(IDLE_POLL)
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._conn.close()

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed


def _nothing(_conn: sqlite3.Connection) -> None:
    return None


#: Bytes of the change `check()` makes while a problem is known: a few rows' worth.
_PROBE_BYTES: Final = 65536
#: Seconds between two such changes, however often `check()` is asked.
_PROBE_EVERY: Final = 1.0


def _touch(conn: sqlite3.Connection) -> None:
    """Make and undo, in one transaction, a change the size of a few rows.

    It needs what a send's change needs (free pages, log space at the commit) and leaves
    nothing behind: once it commits, the file takes changes again.
    """
    conn.execute(
        "INSERT INTO wa_auth_meta (component, version) VALUES ('~probe', zeroblob(?))",
        (_PROBE_BYTES,),
    )
    conn.execute("DELETE FROM wa_auth_meta WHERE component = '~probe'")
