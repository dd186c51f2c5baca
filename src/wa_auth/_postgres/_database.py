"""One PostgreSQL database that every worker of a fleet shares: its schema, one writer thread.

`PgDatabase` connects (psycopg 3, lazily imported), creates or migrates its component's tables
in a schema of its own name (`wa_auth` by default) under an advisory lock, so two workers
starting together migrate once, and refuses a schema written by a newer wa_auth.

Every change goes through one writer thread per `PgDatabase`, which runs whatever jobs are
waiting in one transaction (group commit): sixty-four concurrent settles pay one commit. A
caller of `run` / `arun` returns once its change is committed; a `defer`red change (an outcome
whose loss only leaves a row `sending`, later `maybe_delivered`) rides with the next commit, at
most `flush_interval` later. Reads of a blocking caller run in its own thread on a reader
connection; an async read runs in the writer thread, off the event loop.

A transaction whose `BEGIN` fails on a dead connection (the server restarted) is run again on
a new one: nothing of it was sent. A connection lost later fails the batch's callers with an
`OutboxUnavailableError` (nothing acknowledged that may not be committed); a deadlock or
serialisation failure between workers rolls back and runs the batch again. Any other failing
job fails alone: the batch runs again one job per transaction.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from wa_auth._postgres._connect import (
    Target,
    connect_kwargs,
    password_of,
    psycopg,
    schema_name,
    translate,
)
from wa_auth._postgres._schema import PgSchema, migrate
from wa_auth.errors import ConfigurationError, OutboxError, WhatsAppError

__all__ = ["DURABILITY", "Many", "PgDatabase"]

_log = logging.getLogger("wa_auth.outbox")

#: `durability=` -> `synchronous_commit`: `full` waits for the commit's WAL flush on the
#: server (survives a crash of the server); `normal` does not (a crash of the *server* may
#: lose its last ~0.6 s of commits; a killed worker loses nothing).
DURABILITY: Final = {"full": "on", "normal": "off"}
#: Jobs in one transaction at most.
MAX_BATCH: Final = 512
#: Times a batch runs again after a deadlock or serialisation failure between workers.
_CONFLICT_RETRIES: Final = 5


@attrs.frozen
class Many:
    """A change that runs in one call with the changes of the same *fn* next to it."""

    fn: Callable[[Any, list[Any]], list[tuple[bool, Any]]]
    item: Any


Job = Callable[[Any], Any] | Many
#: Who waits: a blocking caller's future, a loop's future, or nobody (deferred).
Waiter = concurrent.futures.Future[Any] | tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class _Begin(Exception):  # noqa: N818 - internal signal: BEGIN failed, nothing was sent
    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


class PgDatabase:
    """A schema in one PostgreSQL database: its migrations, its writer thread, its readers."""

    def __init__(
        self,
        dsn: str,
        schema: PgSchema,
        *,
        name: str = "wa_auth",
        durability: str = "full",
        flush_interval: float = 0.005,
        group_commit: bool = True,
        create: bool = True,
        connect_timeout: float = 10.0,
    ) -> None:
        if durability not in DURABILITY:
            raise ConfigurationError(
                f"durability must be one of {', '.join(DURABILITY)}, got {durability!r}"
            )
        for label, value in (
            ("flush_interval", flush_interval),
            ("connect_timeout", connect_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigurationError(f"{label} must be seconds >= 0, got {value!r}")
        self.pg = psycopg()
        self.target = Target.parse(dsn)
        self.schema = schema
        self.name = schema_name(name)
        self.durability = durability
        self.flush_interval = float(flush_interval)
        self.group_commit = bool(group_commit)
        self.connect_timeout = float(connect_timeout)
        self._secret = password_of(self.target)
        #: Transactions that changed the database, committed by this object's writer.
        self.commits = 0
        self.closed = False
        self._cond = threading.Condition(threading.Lock())
        self._entries: collections.deque[tuple[Job, bool, Waiter | None]] = collections.deque()
        self._urgent = 0
        #: Deferred changes not yet committed (queued, or in the writer's batch).
        self._deferred = 0
        self._due = 0.0
        self._idle_until = 0.0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._conn: Any = None
        conn = self.connect()
        try:
            migrate(self, conn, create=create)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @property
    def where(self) -> str:
        """The server, database and schema, as messages name them (never the password)."""
        return f"{self.target.where} schema {self.name}"

    def q(self, sql: str) -> str:
        """*sql* with `{schema}` replaced by the quoted schema name."""
        return sql.replace("{schema}", f'"{self.name}"')

    def error(self, exc: BaseException) -> OutboxError:
        return translate(exc, self.target, self._secret)

    def connect(self) -> Any:
        """A new autocommit connection with this database's settings, or a typed error."""
        try:
            conn = self.pg.connect(
                self.target.url, autocommit=True, **connect_kwargs(self.connect_timeout)
            )
            conn.execute(f"SET synchronous_commit = {DURABILITY[self.durability]}")
        except self.pg.Error as exc:
            raise self.error(exc) from None
        return conn

    # --- running jobs ---------------------------------------------------------------------------

    def _put(self, job: Job, *, write: bool, waiter: Waiter | None) -> None:
        if self._pid != os.getpid():  # a forked child: its own connections and thread
            self._pid = os.getpid()
            self._conn, self._readers, self._thread = None, [], None
            self._cond = threading.Condition(threading.Lock())
            self._entries = collections.deque()
            self._urgent = self._deferred = 0
        with self._cond:
            if self.closed:
                raise OutboxError(
                    f"{self.schema.what} in {self.where} was closed",
                    path=self.target.where,
                    kind="closed",
                )
            self._entries.append((job, write, waiter))
            if waiter is not None:
                self._urgent += 1
            else:
                self._deferred += 1
                if len(self._entries) == 1 or self._due == 0.0:
                    self._due = time.monotonic() + self.flush_interval
            self._idle_until = time.monotonic() + 1.0
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="wa-auth-postgres-writer")
                self._thread.start()
            self._cond.notify()

    def run(self, job: Job, *, write: bool = True, timeout: float | None = None) -> Any:
        """Run *job* in the writer's next transaction; return its result once committed.

        Raises:
            TimeoutError: No answer within *timeout* seconds (the job may still run).
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(job, write=write, waiter=future)
        return future.result(timeout)

    async def arun(self, job: Job, *, write: bool = True) -> Any:
        """Run *job* (see `run`) while the event loop runs on."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._put(job, write=write, waiter=(loop, future))
        return await future

    def defer(self, job: Job) -> None:
        """Queue *job* to ride with the next commit (at most `flush_interval` later)."""
        if self.flush_interval == 0:
            self.run(job)
        else:
            self._put(job, write=True, waiter=None)

    async def adefer(self, job: Job) -> None:
        if self.flush_interval == 0:
            await self.arun(job)
        else:
            self._put(job, write=True, waiter=None)

    @property
    def pending(self) -> bool:
        """True while a deferred change is not committed yet (a read should `flush` first)."""
        return self._deferred > 0

    def flush(self) -> None:
        """Return once every deferred change so far is committed."""
        self.run(_nothing, write=False)

    async def aflush(self) -> None:
        await self.arun(_nothing, write=False)

    def _loop(self) -> None:
        # Not a daemon: when the main thread ends, the writer commits what waits, then ends.
        main = threading.main_thread()
        while True:
            with self._cond:
                while True:
                    ending = self.closed or not main.is_alive()
                    if not self._entries:
                        idle = not ending and not self._cond.wait(0.2) and not self._entries
                        if ending or (idle and time.monotonic() > self._idle_until):
                            self._thread = None
                            return
                        continue
                    wait = self._due - time.monotonic()
                    if self._urgent or ending or wait <= 0:
                        break
                    self._cond.wait(min(wait, 0.2))
                most = MAX_BATCH if self.group_commit else 1
                batch = [self._entries.popleft() for _ in range(min(most, len(self._entries)))]
                self._urgent -= sum(1 for e in batch if e[2] is not None)
                self._due = 0.0 if not self._entries else self._due
                self._idle_until = time.monotonic() + 1.0
            try:
                self._commit(batch)
            except BaseException as exc:  # noqa: BLE001 - nobody may wait on a dead writer
                self._hand_out(batch, [(False, self._stopped(exc))] * len(batch))

    def _stopped(self, exc: BaseException) -> OutboxError:
        return OutboxError(
            f"{self.schema.what} in {self.where}: its writer failed ({type(exc).__name__}: "
            f"{str(exc)[:200]}); a change it held may not have been written",
            path=self.target.where,
            kind="failed",
        )

    def _writer(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _commit(self, batch: Sequence[tuple[Job, bool, Waiter | None]]) -> None:
        conflicts = 0
        while True:
            try:
                results = self._transaction(batch)
            except _Begin as begin:  # nothing was sent: a new connection, once
                self._drop()
                try:
                    results = self._transaction(batch)
                except _Begin as again:
                    self._drop()
                    results = [(False, self.error(again.exc))] * len(batch)
                except OutboxError as exc:
                    results = [(False, exc)] * len(batch)
                except self.pg.Error as exc:
                    results = self._failed(batch, exc)
                del begin
            except OutboxError as exc:  # could not connect
                results = [(False, exc)] * len(batch)
            except (self.pg.errors.SerializationFailure, self.pg.errors.DeadlockDetected):
                conflicts += 1
                if conflicts <= _CONFLICT_RETRIES:
                    time.sleep(0.001 * conflicts)
                    continue
                results = [(False, self.error(_conflict()))] * len(batch)
            except self.pg.Error as exc:
                results = self._failed(batch, exc)
            except Exception:  # noqa: BLE001 - a job's bug or bad value: find which, alone
                results = self._one_by_one(batch)
            break
        self._hand_out(batch, results)

    def _failed(self, batch: Sequence[Any], exc: BaseException) -> list[tuple[bool, Any]]:
        if isinstance(exc, (self.pg.OperationalError, self.pg.InterfaceError)):
            self._drop()  # the connection (or the server) is gone: nothing more on it
            return [(False, self.error(exc))] * len(batch)
        return self._one_by_one(batch)

    def _one_by_one(self, batch: Sequence[Any]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        for entry in batch:
            try:
                results.extend(self._transaction((entry,)))
            except _Begin as begin:
                self._drop()
                results.append((False, self.error(begin.exc)))
            except OutboxError as exc:
                results.append((False, exc))
            except self.pg.Error as exc:
                if isinstance(exc, (self.pg.OperationalError, self.pg.InterfaceError)):
                    self._drop()
                results.append((False, self.error(exc)))
            except Exception as exc:  # noqa: BLE001 - handed to the job's caller, typed
                results.append((False, self._job_error(exc)))
        return results

    def _job_error(self, exc: Exception) -> OutboxError:
        kind = "unencodable" if isinstance(exc, UnicodeError) else "invalid"
        return OutboxError(
            f"{self.schema.what} in {self.where}: a change failed; nothing of it was written "
            f"({type(exc).__name__}: {str(exc)[:300]})",
            path=self.target.where,
            kind=kind,
        )

    def _transaction(
        self, batch: Sequence[tuple[Job, bool, Waiter | None]]
    ) -> list[tuple[bool, Any]]:
        conn = self._writer()
        try:
            conn.execute("BEGIN")
        except self.pg.Error as exc:
            raise _Begin(exc) from None
        results: list[tuple[bool, Any]] = []
        try:
            i = 0
            while i < len(batch):
                job = batch[i][0]
                if isinstance(job, Many):
                    j = i + 1
                    while j < len(batch) and _same(batch[j][0], job):
                        j += 1
                    items = [e[0].item for e in batch[i:j] if isinstance(e[0], Many)]
                    results.extend(job.fn(conn, items))
                    i = j
                    continue
                try:
                    results.append((True, job(conn)))
                except WhatsAppError as exc:  # a refusal, made before the job wrote
                    results.append((False, exc))
                i += 1
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                if not conn.closed:
                    conn.execute("ROLLBACK")
            raise
        if any(e[1] for e in batch):
            self.commits += 1
        return results

    def _hand_out(
        self, batch: Sequence[tuple[Job, bool, Waiter | None]], results: Sequence[tuple[bool, Any]]
    ) -> None:
        lost: list[Any] = []
        done = sum(1 for e in batch if e[2] is None)
        if done:
            with self._cond:
                self._deferred -= done
        for (_, _, waiter), (ok, value) in zip(batch, results, strict=True):
            if waiter is None:
                if not ok:
                    lost.append(value)
            elif isinstance(waiter, concurrent.futures.Future):
                if not waiter.done():
                    waiter.set_result(value) if ok else waiter.set_exception(value)
            else:
                loop, future = waiter
                with contextlib.suppress(RuntimeError):  # a closed loop waits for nothing
                    loop.call_soon_threadsafe(_resolve, future, ok, value)
        if lost:
            _log.error(
                "%s: %d deferred change(s) were not written (%s); their rows keep their previous "
                "state (a row left in sending becomes maybe_delivered)",
                self.where,
                len(lost),
                lost[-1],
            )

    # --- reads in the caller's thread -----------------------------------------------------------

    def read(self, fn: Callable[[Any], Any]) -> Any:
        """Run the read-only *fn* on a reader connection of this thread's own taking."""
        if self.closed:
            raise OutboxError(
                f"{self.schema.what} in {self.where} was closed",
                path=self.target.where,
                kind="closed",
            )
        with self._readers_lock:
            conn = self._readers.pop() if self._readers else None
        try:
            if conn is None or conn.closed:
                conn = self.connect()
            with conn.transaction():
                result = fn(conn)
        except self.pg.Error as exc:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            raise self.error(exc) from None
        with self._readers_lock:
            if self.closed or len(self._readers) >= 4:
                conn.close()
            else:
                self._readers.append(conn)
        return result

    # --- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is waiting, stop the writer and close every connection; idempotent."""
        if self.closed:
            return
        with contextlib.suppress(OutboxError):
            if self._entries:
                self.flush()
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
        self._drop()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            with contextlib.suppress(Exception):
                conn.close()


def _nothing(conn: Any) -> None:  # noqa: ARG001 - a flush: the jobs before it are committed
    return None


def _same(job: Job, first: Many) -> bool:
    return isinstance(job, Many) and job.fn == first.fn


def _conflict() -> Exception:
    return RuntimeError("a deadlock or serialisation failure persisted over retries")


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
