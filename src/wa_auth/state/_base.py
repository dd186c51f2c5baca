"""What every store of a state file shares: the file itself, its schema, the checks.

`StateBase` is the opened file (its `Database`, clock and path); `StateFile` adds the stores.
Each store takes a `StateBase` (the narrowest thing it needs) and refuses anything else at
construction, so it never imports `StateFile`, which imports every store.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Final

from wa_auth._closing import Closing
from wa_auth._sqlite import DEFAULT_BUSY_TIMEOUT, Database, Schema
from wa_auth.errors import ConfigurationError

__all__ = ["NUMBER", "SCHEMA", "StateBase", "delete", "positive", "state_file", "typed"]

#: A JSON number, as Python reads it (a JSON `true` is an int too: see `typed`).
NUMBER: Final = (int, float)

#: Version 1, the first release. Never edit a released migration: append the next one.
SCHEMA: Final = Schema(
    component="state",
    what="state file",
    migrations=(
        (
            """
            CREATE TABLE wa_verdicts (
                fingerprint TEXT PRIMARY KEY,
                error TEXT NOT NULL,
                recorded_at REAL NOT NULL,
                expires_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE wa_pauses (
                kind TEXT NOT NULL,
                phone_number_id TEXT NOT NULL,
                pause TEXT NOT NULL,
                updated_at REAL NOT NULL,
                PRIMARY KEY (kind, phone_number_id)
            )
            """,
            # recipient '' is the number's own penalty; otherwise the (number, recipient) pair's.
            """
            CREATE TABLE wa_limits (
                phone_number_id TEXT NOT NULL,
                recipient TEXT NOT NULL,
                until REAL NOT NULL,
                PRIMARY KEY (phone_number_id, recipient)
            )
            """,
            """
            CREATE TABLE wa_health (
                fingerprint TEXT PRIMARY KEY,
                health TEXT NOT NULL,
                expires_at REAL NOT NULL
            )
            """,
        ),
        # Version 2: the rate `set_rate` gave a number (a throughput tier learned by webhook).
        (
            """
            CREATE TABLE wa_rates (
                phone_number_id TEXT PRIMARY KEY,
                per_second REAL NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
        ),
    ),
)


class StateBase(Closing):
    """One state file, opened: its `Database`, its clock and its path.

    Args:
        path: The file; created with its tables unless *create* is False.
        durability: `normal` or `full`.
        busy_timeout: Seconds to wait for another process's write lock.
        create: Create the file when it does not exist.
        clock: Wall clock (TTLs, pauses, penalties).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self._db = Database(
            path,
            SCHEMA,
            durability=durability,
            busy_timeout=busy_timeout,
            flush_interval=0.0,  # what was learned is committed before the call returns
            create=create,
        )
        self.path = self._db.path

    @property
    def db(self) -> Database:
        """The file (for the stores of this package)."""
        return self._db

    def close(self) -> None:
        """Stop the writer thread and close the file; idempotent."""
        self._db.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, durability={self._db.durability!r})"


def state_file(store: str, state: object) -> StateBase:
    """Return *state*, or refuse anything but a `StateFile` at construction (not at first use)."""
    if not isinstance(state, StateBase):
        what = f"{type(state).__name__} {state!r:.80}"
        raise ConfigurationError(
            f"{store} takes a StateFile, got {what}: open the file with StateFile(path) and use "
            f"its store (state.verdicts, state.pauses, state.limiter(), state.health)"
        )
    return state


def positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    return float(value)


def typed(value: object, kinds: tuple[type, ...], *, nullable: bool = False) -> bool:
    if value is None:
        return nullable
    # A JSON `true` is an int to Python; it is not a number here.
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def delete(conn: sqlite3.Connection, table: str, **key: str) -> None:
    where = " AND ".join(f"{column} = ?" for column in key)
    conn.execute(f"DELETE FROM {table} WHERE {where}", tuple(key.values()))  # noqa: S608
