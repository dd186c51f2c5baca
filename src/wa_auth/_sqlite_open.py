"""Opening a shared SQLite file: its pragmas, its schema versions, the translation of errors.

`Opening` is the part of `wa_auth._sqlite.Database` that opens (or creates) the file in WAL
mode and migrates its schema forward in one transaction; `translate` turns any `sqlite3` error
into an `OutboxError` naming the file and the problem.
"""

from __future__ import annotations

import logging
import sqlite3
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs

from wa_auth.errors import OutboxError

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_FLUSH_INTERVAL",
    "DURABILITY",
    "IDLE_EXIT",
    "IDLE_POLL",
    "MAX_BATCH",
    "Bulk",
    "Job",
    "Opening",
    "Schema",
    "same_bulk",
    "translate",
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


def translate(exc: sqlite3.Error, path: str, what: str) -> OutboxError:
    """Return the `OutboxError` that names the file and the problem of a `sqlite3` error."""
    text = str(exc)
    low = text.lower()
    retryable = False
    if "locked" in low or "busy" in low:
        kind, problem = "locked", "is locked by another process (longer than the busy timeout)"
        retryable = True
    elif "not a database" in low or "malformed" in low or "corrupt" in low:
        kind, problem = "corrupt", "is not a readable SQLite database (corrupt or another file)"
    elif "unable to open" in low:
        kind, problem = "missing", "cannot be opened (missing, a directory, or no permission)"
    elif "readonly" in low or "read-only" in low:
        kind, problem = "readonly", "is read-only for this process"
    elif "full" in low:
        kind, problem = "full", "cannot grow: the disk or the quota is full"
    else:
        kind, problem = "sqlite", "failed"
    return OutboxError(
        f"{what} {path} {problem}: {text}", path=path, kind=kind, retryable=retryable
    )


@attrs.frozen
class Bulk:
    """A change that runs together with the changes of the same kind next to it in a batch.

    *run* gets the items of every such change in order and returns one `(ok, value)` per item
    (a refusal is `(False, OutboxError)`); one multi-row statement then does the work of many,
    with one release of the GIL instead of one per row.
    """

    run: Callable[[sqlite3.Connection, list[Any]], list[tuple[bool, Any]]]
    item: Any


def same_bulk(job: object, first: Bulk) -> bool:
    return isinstance(job, Bulk) and job.run == first.run


class Opening:
    """The opening half of `Database`: connect, check and migrate the schema, refuse a file.

    The subclass sets `path`, `schema`, `durability` and `busy_timeout` before opening.
    """

    path: str
    schema: Schema
    durability: str
    busy_timeout: float

    # --- opening ------------------------------------------------------------------------------

    def _error(self, exc: sqlite3.Error) -> OutboxError:
        return translate(exc, self.path, self.schema.what)

    def _refuse(self, kind: str, problem: str) -> OutboxError:
        return OutboxError(f"{self.schema.what} {self.path} {problem}", path=self.path, kind=kind)

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        absolute = Path(self.path).absolute()
        if absolute.is_dir():
            raise self._refuse("missing", "is a directory, not a file")
        if not absolute.parent.is_dir():
            raise self._refuse("missing", "cannot be created: its directory does not exist")
        if not create and not absolute.exists():
            raise self._refuse("missing", "does not exist")
        uri = f"file:{urllib.parse.quote(str(absolute))}?mode={'rwc' if create else 'rw'}"
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
                for statements in schema.migrations[current:]:
                    for statement in statements:
                        conn.execute(statement)
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
            current = int(row[0]) if row is not None else 0
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
