"""`SqliteWebhookLedger`: the webhook ledger in a SQLite file that several processes share.

Its two tables live in their own schema component (`webhooks`), so the ledger can sit in the
state file, in the outbox's file, or in a file of its own: each component records its version
in the file's `wa_auth_meta`, and none touches another's tables. Every operation is one job of
the file's writer (`wa_auth._sqlite.Database`): one `BEGIN IMMEDIATE` transaction, so a claim,
an advance, a release or a retreat is atomic against every other process using the file.

The SQL is written once, as functions of a connection (`claim`, `advance`, `release`,
`retreat`), so a caller already inside a transaction of the same file (`wa-auth serve`, which
admits an event and queues its forwards in one commit) runs exactly the same statements.
Each table keeps its row count in `wa_webhook_counts`, so the size bound costs an index step,
not a count of the table.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import Final

import attrs

from wa_auth._closing import Closing
from wa_auth._sqlite import DEFAULT_BUSY_TIMEOUT, Database, Schema
from wa_auth.webhooks._ledger import DEFAULT_MAX_KEYS, DEFAULT_WINDOW, check_bounds

__all__ = [
    "LEDGER_TABLES",
    "SCHEMA",
    "Bounds",
    "SqliteWebhookLedger",
    "advance",
    "claim",
    "release",
    "retreat",
]

_KEYS: Final = "wa_webhook_keys"
_MESSAGES: Final = "wa_webhook_messages"

#: The ledger's tables; `IF NOT EXISTS`, so another component of the same file (serve's
#: webhook queue) may declare them too and share them.
LEDGER_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS wa_webhook_keys (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS wa_webhook_keys_expiry ON wa_webhook_keys (expires_at)",
    (
        "CREATE TABLE IF NOT EXISTS wa_webhook_messages "
        "(message_id TEXT PRIMARY KEY, furthest INTEGER NOT NULL, expires_at REAL NOT NULL)"
    ),
    "CREATE INDEX IF NOT EXISTS wa_webhook_messages_expiry ON wa_webhook_messages (expires_at)",
    "CREATE TABLE IF NOT EXISTS wa_webhook_counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL)",
)

#: Version 1. Never edit a released migration: append the next one.
SCHEMA: Final = Schema(
    component="webhooks", what="webhook ledger file", migrations=(LEDGER_TABLES,)
)


@attrs.frozen
class Bounds:
    """The ledger's window (seconds) and size bound, and the time of the operation."""

    now: float
    window: float
    max_keys: int


def _count(conn: sqlite3.Connection, table: str, delta: int) -> int:
    if delta:
        conn.execute(
            "INSERT INTO wa_webhook_counts (name, n) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET n = MAX(0, n + excluded.n)",
            (table, delta),
        )
    row = conn.execute("SELECT n FROM wa_webhook_counts WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row is not None else 0


def _expire(conn: sqlite3.Connection, table: str, bounds: Bounds) -> None:
    gone = conn.execute(
        f"DELETE FROM {table} WHERE expires_at <= ?",  # noqa: S608 - a constant
        (bounds.now,),
    ).rowcount
    _count(conn, table, -gone)


def _trim(conn: sqlite3.Connection, table: str, column: str, bounds: Bounds) -> None:
    """Forget the oldest rows past the size bound (the window is the same for all rows)."""
    over = _count(conn, table, 1) - bounds.max_keys
    if over > 0:
        gone = conn.execute(
            f"DELETE FROM {table} WHERE {column} IN (SELECT {column} FROM {table} "  # noqa: S608
            "ORDER BY expires_at, rowid LIMIT ?)",
            (over,),
        ).rowcount
        _count(conn, table, -gone)


def claim(conn: sqlite3.Connection, key: str, bounds: Bounds) -> bool:
    """Record *key*; False when it is recorded and has not expired (see `WebhookLedger`)."""
    _expire(conn, _KEYS, bounds)
    if conn.execute("SELECT 1 FROM wa_webhook_keys WHERE key = ?", (key,)).fetchone():
        return False
    conn.execute(
        "INSERT INTO wa_webhook_keys (key, expires_at) VALUES (?, ?)",
        (key, bounds.now + bounds.window),
    )
    _trim(conn, _KEYS, "key", bounds)
    return True


def advance(conn: sqlite3.Connection, message_id: str, order: int, bounds: Bounds) -> int | None:
    """Raise the message's furthest order to *order* if higher; return the one before."""
    _expire(conn, _MESSAGES, bounds)
    row = conn.execute(
        "SELECT furthest FROM wa_webhook_messages WHERE message_id = ?", (message_id,)
    ).fetchone()
    previous = None if row is None else int(row[0])
    if previous is None or order > previous:
        # Delete and insert: the row takes the newest rowid, so the size bound forgets the
        # message updated longest ago, as the memory ledger does.
        conn.execute("DELETE FROM wa_webhook_messages WHERE message_id = ?", (message_id,))
        conn.execute(
            "INSERT INTO wa_webhook_messages (message_id, furthest, expires_at) VALUES (?, ?, ?)",
            (message_id, order, bounds.now + bounds.window),
        )
        if previous is None:
            _trim(conn, _MESSAGES, "message_id", bounds)
    return previous


def release(conn: sqlite3.Connection, key: str) -> None:
    """Forget *key*."""
    gone = conn.execute("DELETE FROM wa_webhook_keys WHERE key = ?", (key,)).rowcount
    _count(conn, _KEYS, -gone)


def retreat(conn: sqlite3.Connection, message_id: str, order: int, previous: int | None) -> None:
    """Put the message back to *previous*, only if it still holds *order*."""
    if previous is None:
        gone = conn.execute(
            "DELETE FROM wa_webhook_messages WHERE message_id = ? AND furthest = ?",
            (message_id, order),
        ).rowcount
        _count(conn, _MESSAGES, -gone)
    else:
        conn.execute(
            "UPDATE wa_webhook_messages SET furthest = ? WHERE message_id = ? AND furthest = ?",
            (previous, message_id, order),
        )


class SqliteWebhookLedger(Closing):
    """The webhook ledger in a SQLite file: durable, shared by every process that opens it.

    Point it at the state file, at the outbox's file or at a file of its own: its tables are
    a component of their own. A key and a message's furthest status are remembered for the
    window, by the wall clock, so they outlive a restart.

    Args:
        path: The file; created (with the ledger's tables) unless *create* is False.
        window: Seconds a key (and a message's furthest status) is remembered
            (`DEFAULT_WINDOW`, 7 days: as long as Meta retries).
        max_keys: Most keys remembered, and most messages; past it the oldest go first
            (`DEFAULT_MAX_KEYS`).
        clock: The wall clock of the window, in seconds (shared by processes: not monotonic).
        durability: `normal` (a commit survives a killed process) or `full` (also a power cut).
        busy_timeout: Seconds to wait for another process's write lock.
        create: Create the file when it does not exist.

    Raises:
        ConfigurationError: *window* or *max_keys* is out of range.
        OutboxError: The file cannot be opened (missing, corrupt, another program's, newer).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        window: float = DEFAULT_WINDOW,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.time,
        durability: str = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
    ) -> None:
        self.window, self.max_keys = check_bounds(window, max_keys)
        self._clock = clock
        self._db = Database(
            path,
            SCHEMA,
            durability=durability,
            busy_timeout=busy_timeout,
            flush_interval=0.0,  # a claim is committed before it returns
            create=create,
        )
        self.path = self._db.path

    def _bounds(self) -> Bounds:
        return Bounds(self._clock(), self.window, self.max_keys)

    def claim(self, key: str) -> bool:
        """Record *key*; return False when it was recorded already, within the window."""
        bounds = self._bounds()
        return self._db.run(lambda c: claim(c, key, bounds))

    def advance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        bounds = self._bounds()
        return self._db.run(lambda c: advance(c, message_id, order, bounds))

    def release(self, key: str) -> None:
        """Forget *key*, so that the next delivery of it is claimed again."""
        self._db.run(lambda c: release(c, key))

    def retreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        self._db.run(lambda c: retreat(c, message_id, order, previous))

    async def aclaim(self, key: str) -> bool:
        """Record *key* (committed by the file's writer; the event loop runs on meanwhile)."""
        bounds = self._bounds()
        return await self._db.arun(lambda c: claim(c, key, bounds))

    async def aadvance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order (see `advance`)."""
        bounds = self._bounds()
        return await self._db.arun(lambda c: advance(c, message_id, order, bounds))

    async def arelease(self, key: str) -> None:
        """Forget *key*."""
        await self._db.arun(lambda c: release(c, key))

    async def aretreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous* if it still holds *order*."""
        await self._db.arun(lambda c: retreat(c, message_id, order, previous))

    def __len__(self) -> int:
        """Return how many keys are remembered (expired ones included until the next claim)."""
        return self._db.read(lambda c: _count(c, _KEYS, 0))

    def close(self) -> None:
        """Commit what waits, stop the writer thread and close the file; idempotent."""
        self._db.close()

    def __repr__(self) -> str:
        return f"SqliteWebhookLedger({self.path!r}, window={self.window:g})"
