"""Opening a shared SQLite file: its pragmas, its schema versions, the translation of errors.

`Opening` is the part of `wa_auth._sqlite.Database` that opens (or creates) the file in WAL
mode and migrates its schema forward in one transaction; `translate` turns any `sqlite3` error
into an `OutboxError` naming the file and the problem.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs

from wa_auth._sqlite._stored import printable
from wa_auth.errors import OutboxError, OutboxUnavailableError

__all__ = [
    "AHEAD_OF",
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_FLUSH_INTERVAL",
    "DURABILITY",
    "IDLE_EXIT",
    "IDLE_POLL",
    "MAX_BATCH",
    "UNAVAILABLE",
    "Bulk",
    "Job",
    "Opening",
    "Schema",
    "file_error",
    "translate",
    "writable",
]

#: `durability=` -> `PRAGMA synchronous`. In WAL mode NORMAL syncs only at checkpoints: a
#: commit survives a killed process but may be lost with the machine's power; FULL syncs the
#: log at every commit and survives that too, at the price of one fsync per transaction.
DURABILITY: Final = {"normal": "NORMAL", "full": "FULL"}
#: Seconds a transaction waits for another process's write lock before `OutboxError(locked)`.
DEFAULT_BUSY_TIMEOUT: Final = 5.0
#: Seconds a deferred change may wait for company before it is committed alone.
DEFAULT_FLUSH_INTERVAL: Final = 0.05
#: Jobs in one transaction at most (a bound on how long the write lock is held).
MAX_BATCH: Final = 512
#: Deferred changes a blocking caller's change made *ahead* lets wait (`Bulk`): what waits is
#: then committed in statements of that many rows (up to half the flush interval later).
AHEAD_OF: Final = 64
#: How often an idle writer looks up (the main thread's end, its own idleness).
IDLE_POLL: Final = 0.1
#: An idle writer thread ends after this long; the next change starts another.
IDLE_EXIT: Final = 1.0
_META: Final = "wa_auth_meta"

_log = logging.getLogger("wa_auth.outbox")

Job = Callable[[sqlite3.Connection], Any]


@attrs.frozen
class Schema:
    """A component's tables: *migrations[i]* takes the schema from version i to i + 1.

    Versions only go forward; a released migration is never edited, a new one is appended.
    """

    component: str
    #: How messages name the file ("outbox file", "state file").
    what: str
    migrations: tuple[tuple[str, ...], ...]

    @property
    def version(self) -> int:
        """The version this wa_auth writes."""
        return len(self.migrations)


#: SQLite's primary result codes that name a problem of the file (`sqlite3.Error.sqlite_errorcode
#: & 0xFF`, Python 3.11+; the message text decides on older Pythons).
_CODES: Final = {5: "locked", 6: "locked", 8: "readonly", 10: "io", 11: "corrupt", 13: "full"}
_CODES.update({14: "missing", 26: "corrupt"})
_PROBLEMS: Final = {
    "locked": "is locked by another process (longer than the busy timeout)",
    "corrupt": "is not a readable SQLite database (corrupt or another file)",
    "missing": "cannot be opened (missing, a directory, or no permission)",
    "readonly": "is read-only for this process",
    "full": "cannot grow: the disk or the quota is full",
    "io": "could not be read or written (an I/O error of the disk or the file system)",
    "sqlite": "failed",
}
#: The kinds of a file that is fine but cannot take a change now: `OutboxUnavailableError`.
UNAVAILABLE: Final = frozenset({"locked", "full"})


def _kind_of(exc: sqlite3.Error, low: str) -> str:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _CODES:
        return _CODES[code & 0xFF]
    if "locked" in low or "busy" in low:
        return "locked"
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return "corrupt"
    if "unable to open" in low:
        return "missing"
    if "readonly" in low or "read-only" in low:
        return "readonly"
    if "full" in low:
        return "full"
    if "disk i/o error" in low:
        return "io"
    return "sqlite"


def file_error(path: str, kind: str, message: str) -> OutboxError:
    """Return the error of *kind* (an `OutboxUnavailableError` for a full or locked file)."""
    cls = OutboxUnavailableError if kind in UNAVAILABLE else OutboxError
    return cls(printable(message), path=path, kind=kind)


def translate(exc: sqlite3.Error, path: str, what: str) -> OutboxError:
    """Return the `OutboxError` that names the file and the problem of a `sqlite3` error.

    A full disk or a lock held past the busy timeout is an `OutboxUnavailableError`
    (`transient`, `retryable`): the file is fine, the same change works later.
    """
    text = str(exc)
    kind = _kind_of(exc, text.lower())
    return file_error(path, kind, f"{what} {path} {_PROBLEMS[kind]}: {text}")


def writable(path: Path) -> bool:
    """Return True when this process may write *path* (False on a read-only mount, chattr +i)."""
    return os.access(path, os.W_OK)


@attrs.frozen
class Bulk:
    """A change that runs together with the changes of the same kind next to it in a batch.

    *run* gets the items of every such change in order and returns one `(ok, value)` per item
    (a refusal is `(False, OutboxError)`); one multi-row statement then does the work of many,
    with one release of the GIL instead of one per row.

    *key* names the row the change is about (an idempotency key). A blocking caller's change
    made *ahead* may be committed before the deferred changes waiting (`Database.run`), so
    that they pile up into one multi-row statement, unless one of them is about the same key.
    """

    run: Callable[[sqlite3.Connection, list[Any]], list[tuple[bool, Any]]]
    item: Any
    key: str | None = None
    ahead: bool = False


class Opening:
    """The opening half of `Database`: connect, check and migrate the schema, refuse a file.

    The subclass sets `path`, `schema`, `durability`, `busy_timeout` and `read_only` before
    opening. A read-only file opens with *read_only*: no migration, no change, every write
    refused (`readonly`), so an operator can still list and count what it holds.
    """

    path: str
    schema: Schema
    durability: str
    busy_timeout: float
    read_only: bool = False

    # --- opening ------------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> OutboxError:
        error = translate(exc, self.path, self.schema.what)
        if error.kind == "missing" and Path(self.path).is_file() and not self._can_write():
            # SQLite cannot create the `-shm` of a WAL file in a read-only directory and says
            # "unable to open": the file is there, it is the directory that cannot be written.
            return self._readonly(str(exc))
        if error.kind == "io" and self._no_room():
            # A full disk fails the `-shm` file's growth as an I/O error (SQLITE_IOERR_SHMSIZE).
            return self._refuse("full", f"{_PROBLEMS['full']}: {exc}")
        return error

    def _no_room(self) -> bool:
        try:
            return os.statvfs(Path(self.path).absolute().parent).f_bavail == 0
        except OSError:
            return False

    def _can_write(self) -> bool:
        absolute = Path(self.path).absolute()
        return writable(absolute) and writable(absolute.parent)

    def _readonly(self, detail: str) -> OutboxError:
        return self._refuse(
            "readonly",
            "is read-only for this process (the file or its directory cannot be written: "
            "a read-only mount, its permissions, or chattr +i); reading it needs a read-only "
            f"open: {detail}",
        )

    def _refuse(self, kind: str, problem: str) -> OutboxError:
        return file_error(self.path, kind, f"{self.schema.what} {self.path} {problem}")

    def _uri(self, absolute: Path, *, create: bool) -> str:
        quoted = urllib.parse.quote(str(absolute))
        if not self.read_only:
            return f"file:{quoted}?mode={'rwc' if create else 'rw'}"
        shm = absolute.with_name(absolute.name + "-shm")
        wal = absolute.with_name(absolute.name + "-wal")
        if shm.exists() or writable(absolute.parent):
            return f"file:{quoted}?mode=ro"
        # A WAL file in a read-only directory without its -shm: SQLite can read it only as
        # immutable, which is safe when no log holds changes the file does not have yet.
        if wal.exists() and wal.stat().st_size > 0:
            raise self._readonly(
                "its write-ahead log holds changes that cannot be read without its -shm file"
            )
        return f"file:{quoted}?mode=ro&immutable=1"

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        absolute = Path(self.path).absolute()
        if absolute.is_dir():
            raise self._refuse("missing", "is a directory, not a file")
        if not absolute.parent.is_dir():
            raise self._refuse("missing", "cannot be created: its directory does not exist")
        if (not create or self.read_only) and not absolute.exists():
            raise self._refuse("missing", "does not exist")
        uri = self._uri(absolute, create=create)
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=self.busy_timeout,
                # Multi-row statements come in up to 64 lengths per kind: keep them all prepared.
                cached_statements=256,
                isolation_level=None,  # transactions are begun explicitly (BEGIN IMMEDIATE)
                check_same_thread=False,  # the writer thread may be restarted; one at a time
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            conn.execute(f"PRAGMA synchronous={DURABILITY[self.durability]}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc) from exc
        return conn

    def _open(self, *, create: bool) -> sqlite3.Connection:
        conn = self._connect(create=create)
        try:
            if self.read_only:
                self._check_read_only(conn)
                return conn
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                _log.warning(
                    "%s %s cannot use WAL (journal mode %s): writers will block readers",
                    self.schema.what,
                    self.path,
                    mode,
                )
            self._migrate(conn, create=create)
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_read_only(self, conn: sqlite3.Connection) -> None:
        """Refuse a file this wa_auth cannot read as it is (it may not migrate it)."""
        conn.execute("BEGIN")
        try:
            current = self._version(conn, create=False)
        finally:
            conn.execute("COMMIT")
        if current < self.schema.version:
            raise self._refuse(
                "readonly",
                f"has {self.schema.component} schema version {current}, older than this "
                f"wa_auth's ({self.schema.version}), and cannot be migrated read-only",
            )

    def _migrate(self, conn: sqlite3.Connection, *, create: bool) -> None:
        """Bring the component's tables to this version, in one transaction, or refuse."""
        schema = self.schema
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = self._version(conn, create=create)
            if current < schema.version:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_META} "
                    "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
                )
                try:
                    for statements in schema.migrations[current:]:
                        for statement in statements:
                            conn.execute(statement)
                except sqlite3.Error as exc:
                    if translate(exc, self.path, schema.what).kind != "sqlite":
                        raise  # a full disk, a lock: the file's state, not its schema
                    raise self._refuse(
                        "corrupt",
                        f"cannot be migrated from {schema.component} schema version {current} "
                        f"({exc}): its version does not match its tables (edited by hand?); "
                        "not touched",
                    ) from None
                conn.execute(
                    f"INSERT INTO {_META} (component, version) VALUES (?, ?) "  # noqa: S608
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    (schema.component, schema.version),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _version(self, conn: sqlite3.Connection, *, create: bool) -> int:
        """Return the file's version of the component (0: none yet), or refuse the file."""
        schema = self.schema
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        current = 0
        if _META in tables:
            row = conn.execute(
                f"SELECT version FROM {_META} WHERE component = ?",  # noqa: S608 - a constant
                (schema.component,),
            ).fetchone()
            value = row[0] if row is not None else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise self._refuse(
                    "corrupt",
                    f"has an unreadable {schema.component} schema version {value!r:.40} in "
                    f"{_META} (edited by hand?): not touched",
                )
            current = value
        elif tables:
            raise self._refuse(
                "foreign",
                f"is a SQLite database of another program (tables: "
                f"{', '.join(sorted(tables)[:5])}): not touched",
            )
        if current > schema.version:
            raise self._refuse(
                "newer_schema",
                f"has {schema.component} schema version {current}, newer than this wa_auth "
                f"reads ({schema.version}): upgrade wa_auth; the file was not changed",
            )
        if current == 0 and not create:
            raise self._refuse("missing", f"holds no wa_auth {schema.component}")
        return current
