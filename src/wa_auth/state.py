"""What short-lived processes learn, kept in one SQLite file: the next process knows it too.

n8n starts a process per execution. Without a state file, each one learns again that a token
is dead (a request Meta refuses), that a number is paused (a request per intent until the
probe), that Meta asked for a minute's pause. `StateFile(path)` keeps all of that in one file
in WAL mode, behind the protocols the client and the guard already take:

- `state.verdicts`: a `VerdictStore` (`WhatsAppClient(..., verdicts=state.verdicts)`), so a
  token proved dead in one execution is refused without a request in the next;
- `state.pauses`: a `PauseStore` (`Guard(client, pauses=state.pauses)`): paused numbers and
  open circuits;
- `state.limiter()`: a `RateLimiter` that remembers Meta's `retry_after` penalties (130429,
  131056) across processes (`Guard(client, limiter=state.limiter())`);
- `state.health`: token-health reports by fingerprint, with a TTL.

Several processes may share the file: every change is one short transaction through the
file's writer thread (busy timeout, `BEGIN IMMEDIATE`); a read in a blocking call runs in the
caller's thread, and an async one in the writer thread, off the event loop. Times are wall
clock (Unix seconds), since processes share no monotonic clock.
"""

from __future__ import annotations

import builtins
import math
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Final

from wa_auth._closing import Closing
from wa_auth._exports import claim as _claim
from wa_auth._sqlite import (
    DEFAULT_BUSY_TIMEOUT,
    Database,
    Schema,
    dumps,
    error_from_dict,
    loads_object,
)
from wa_auth.errors import ApiError, ConfigurationError
from wa_auth.models import TokenHealth
from wa_auth.pacing import LocalRateLimiter, Pause, RateLimiter
from wa_auth.providers._verdicts import DEFAULT_MAX_ENTRIES, DEFAULT_VERDICT_TTL

__all__ = [
    "DEFAULT_HEALTH_TTL",
    "SqliteHealthCache",
    "SqlitePauseStore",
    "SqliteRateLimiter",
    "SqliteVerdictStore",
    "StateFile",
]

#: Seconds a stored token-health report is served (the client's own cache keeps 300 s).
DEFAULT_HEALTH_TTL: Final = 300.0

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
    ),
)


def _state_file(store: str, state: object) -> StateFile:
    """Return *state*, or refuse anything but a `StateFile` at construction (not at first use)."""
    if not isinstance(state, StateFile):
        what = f"{type(state).__name__} {state!r:.80}"
        raise ConfigurationError(
            f"{store} takes a StateFile, got {what}: open the file with StateFile(path) and use "
            f"its store (state.verdicts, state.pauses, state.limiter(), state.health)"
        )
    return state


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    return float(value)


class StateFile(Closing):
    """One state file: dead tokens, paused numbers, Meta's penalties and token health.

    Args:
        path: The file; created with its tables unless *create* is False. It may be the
            outbox's file too (each keeps its own tables and schema version).
        durability: `normal` (a change survives a killed process) or `full` (one fsync per
            change: survives a power loss too).
        busy_timeout: Seconds to wait for another process's write lock.
        create: Create the file when it does not exist.
        clock: Wall clock (TTLs, pauses, penalties).
        verdict_ttl: Seconds a verdict lasts (`DEFAULT_VERDICT_TTL`).
        health_ttl: Seconds a health report is served (`DEFAULT_HEALTH_TTL`).

    Raises:
        ConfigurationError: A setting is out of range.
        OutboxError: The file is missing (with *create* False), locked, corrupt, another
            program's database or written by a newer wa_auth; nothing is overwritten.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "normal",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        create: bool = True,
        clock: Callable[[], float] = time.time,
        verdict_ttl: float = DEFAULT_VERDICT_TTL,
        health_ttl: float = DEFAULT_HEALTH_TTL,
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
        self.verdicts = SqliteVerdictStore(self, ttl=verdict_ttl)
        self.pauses = SqlitePauseStore(self)
        self.health = SqliteHealthCache(self, ttl=health_ttl)

    @property
    def db(self) -> Database:
        """The file (for the stores of this module)."""
        return self._db

    def limiter(self, limiter: RateLimiter | None = None) -> SqliteRateLimiter:
        """Return a limiter that keeps Meta's penalties in this file (`SqliteRateLimiter`)."""
        return SqliteRateLimiter(self, limiter=limiter)

    def close(self) -> None:
        """Stop the writer thread and close the file; idempotent."""
        self._db.close()

    def __repr__(self) -> str:
        return f"StateFile({self.path!r}, durability={self._db.durability!r})"


# --- verdicts ----------------------------------------------------------------------------------


class SqliteVerdictStore:
    """A `VerdictStore` in a state file: a token proved dead stays dead for every process.

    The classified error is stored as its `to_dict()` (the token's fingerprint, never the
    token) and comes back as the same class with the same fields, so the next process raises
    exactly what the first one learned, without a request.

    Args:
        state: The state file.
        ttl: Seconds a verdict lasts.
        max_entries: Verdicts kept at most; the oldest go first.
    """

    def __init__(
        self,
        state: StateFile,
        *,
        ttl: float = DEFAULT_VERDICT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.ttl = _positive("ttl", ttl)
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(f"max_entries must be a positive integer, got {max_entries!r}")
        self._max = max_entries
        self._state = _state_file("SqliteVerdictStore", state)

    def _get(self, conn: sqlite3.Connection, fingerprint: str, now: float) -> ApiError | None:
        found = conn.execute(
            "SELECT error FROM wa_verdicts WHERE fingerprint = ? AND expires_at > ?",
            (fingerprint, now),
        ).fetchone()
        data = loads_object(found[0]) if found is not None else None
        error = error_from_dict(data) if data is not None else None
        return error if isinstance(error, ApiError) else None

    def _record(self, conn: sqlite3.Connection, fingerprint: str, text: str, now: float) -> None:
        conn.execute(
            "INSERT INTO wa_verdicts (fingerprint, error, recorded_at, expires_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET error = excluded.error, "
            "recorded_at = excluded.recorded_at, expires_at = excluded.expires_at",
            (fingerprint, text, now, now + self.ttl),
        )
        conn.execute("DELETE FROM wa_verdicts WHERE expires_at <= ?", (now,))
        conn.execute(
            "DELETE FROM wa_verdicts WHERE fingerprint IN (SELECT fingerprint FROM wa_verdicts "
            "ORDER BY recorded_at DESC LIMIT -1 OFFSET ?)",
            (self._max,),
        )

    def get(self, fingerprint: str) -> ApiError | None:
        """Return the classified error that proved the token dead, or None."""
        now = self._state.clock()
        return self._state.db.read(lambda c: self._get(c, fingerprint, now))

    def record(self, fingerprint: str, error: ApiError) -> None:
        """Remember, in the file, that the token with *fingerprint* is dead because of *error*."""
        text, now = dumps(error.to_dict()), self._state.clock()
        self._state.db.run(lambda c: self._record(c, fingerprint, text, now))

    def forget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint* (an operator knows better)."""
        self._state.db.run(lambda c: _delete(c, "wa_verdicts", fingerprint=fingerprint))

    async def aget(self, fingerprint: str) -> ApiError | None:
        """Return the verdict on *fingerprint*, or None (read off the event loop)."""
        now = self._state.clock()
        return await self._state.db.arun(lambda c: self._get(c, fingerprint, now), write=False)

    async def arecord(self, fingerprint: str, error: ApiError) -> None:
        """Remember that the token with *fingerprint* is dead because of *error*."""
        text, now = dumps(error.to_dict()), self._state.clock()
        await self._state.db.arun(lambda c: self._record(c, fingerprint, text, now))

    async def aforget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint*."""
        await self._state.db.arun(lambda c: _delete(c, "wa_verdicts", fingerprint=fingerprint))

    def _list(
        self, conn: sqlite3.Connection, now: float
    ) -> builtins.list[tuple[str, ApiError, float]]:
        rows = conn.execute(
            "SELECT fingerprint, error, expires_at FROM wa_verdicts WHERE expires_at > ? "
            "ORDER BY recorded_at DESC",
            (now,),
        ).fetchall()
        found = []
        for fingerprint, text, expires_at in rows:
            data = loads_object(text)
            error = error_from_dict(data) if data is not None else None
            if isinstance(error, ApiError):  # a hand-edited row blocks nothing (`get`): skipped
                found.append((fingerprint, error, expires_at))
        return found

    def list(self) -> builtins.list[tuple[str, ApiError, float]]:
        """Return every verdict in force as `(fingerprint, error, expires_at)`, newest first.

        For operators (`wa-auth state list`): what every process sharing the file refuses.
        """
        now = self._state.clock()
        return self._state.db.read(lambda c: self._list(c, now))

    async def alist(self) -> builtins.list[tuple[str, ApiError, float]]:
        """Return every verdict in force (see `list`; read off the event loop)."""
        now = self._state.clock()
        return await self._state.db.arun(lambda c: self._list(c, now), write=False)

    def __repr__(self) -> str:
        return f"SqliteVerdictStore({self._state.path!r}, ttl={self.ttl!r})"


def _delete(conn: sqlite3.Connection, table: str, **key: str) -> None:
    where = " AND ".join(f"{column} = ?" for column in key)
    conn.execute(f"DELETE FROM {table} WHERE {where}", tuple(key.values()))  # noqa: S608


# --- pauses ------------------------------------------------------------------------------------


_NUMBER: Final = (int, float)
#: A stored pause's fields and their JSON types (None: may be null).
_PAUSE_FIELDS: Final[dict[str, tuple[tuple[type, ...], bool]]] = {
    "kind": ((str,), False),
    "phone_number_id": ((str,), False),
    "category": ((str,), False),
    "since": (_NUMBER, False),
    "until": (_NUMBER, True),
    "error": ((dict,), True),
    "failures": ((int,), False),
    "opens": ((int,), False),
    "probing": ((bool,), False),
}
_PAUSE_REQUIRED: Final = ("kind", "phone_number_id", "category", "since")


def _typed(value: object, kinds: tuple[type, ...], *, nullable: bool = False) -> bool:
    if value is None:
        return nullable
    # A JSON `true` is an int to Python; it is not a number here.
    return isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))


def _pause(text: str) -> Pause | None:
    """Return the stored pause, or None for a record that is not one (edited by hand)."""
    data = loads_object(text)
    if data is None or any(name not in data for name in _PAUSE_REQUIRED):
        return None
    fields: dict[str, Any] = {}
    for name, (kinds, nullable) in _PAUSE_FIELDS.items():
        if name in data:
            if not _typed(data[name], kinds, nullable=nullable):
                return None  # as if there were none: a guard must not trip over it
            fields[name] = data[name]
    return Pause(**fields)


class SqlitePauseStore:
    """A `PauseStore` in a state file: a paused number stays paused for every process.

    Args:
        state: The state file.
    """

    def __init__(self, state: StateFile) -> None:
        self._state = _state_file("SqlitePauseStore", state)

    @staticmethod
    def _get(conn: sqlite3.Connection, kind: str, phone_number_id: str) -> Pause | None:
        found = conn.execute(
            "SELECT pause FROM wa_pauses WHERE kind = ? AND phone_number_id = ?",
            (kind, phone_number_id),
        ).fetchone()
        return _pause(found[0]) if found is not None else None

    @staticmethod
    def _list(conn: sqlite3.Connection) -> builtins.list[Pause]:
        rows = conn.execute("SELECT pause FROM wa_pauses ORDER BY kind, phone_number_id")
        return [p for p in (_pause(r[0]) for r in rows) if p is not None]

    def _put_job(self, pause: Pause) -> Callable[[sqlite3.Connection], None]:
        if not isinstance(pause, Pause):
            raise TypeError(f"a pause store holds Pause values, got {type(pause).__name__}")
        values = (pause.kind, pause.phone_number_id, dumps(pause.to_dict()), self._state.clock())

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO wa_pauses (kind, phone_number_id, pause, updated_at) VALUES "
                "(?, ?, ?, ?) ON CONFLICT (kind, phone_number_id) DO UPDATE SET "
                "pause = excluded.pause, updated_at = excluded.updated_at",
                values,
            )

        return job

    def get(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        return self._state.db.read(lambda c: self._get(c, kind, phone_number_id))

    def put(self, pause: Pause) -> None:
        """Store *pause*, replacing the number's pause of the same kind."""
        self._state.db.run(self._put_job(pause))

    def clear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        self._state.db.run(
            lambda c: _delete(c, "wa_pauses", kind=kind, phone_number_id=phone_number_id)
        )

    def list(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        return self._state.db.read(self._list)

    async def aget(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number (read off the event loop)."""
        return await self._state.db.arun(lambda c: self._get(c, kind, phone_number_id), write=False)

    async def aput(self, pause: Pause) -> None:
        """Store *pause*."""
        await self._state.db.arun(self._put_job(pause))

    async def aclear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        await self._state.db.arun(
            lambda c: _delete(c, "wa_pauses", kind=kind, phone_number_id=phone_number_id)
        )

    async def alist(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        return await self._state.db.arun(self._list, write=False)

    def __repr__(self) -> str:
        return f"SqlitePauseStore({self._state.path!r})"


# --- learned rate-limit penalties ----------------------------------------------------------------


class SqliteRateLimiter:
    """A `RateLimiter` that remembers Meta's `retry_after` penalties in a state file.

    Pacing itself is *limiter*'s (a `LocalRateLimiter` by default). What Meta said (a 130429
    holding the number back, a 131056 holding one recipient back) is also written to the file
    as a wall-clock time; a limiter made later, in this process or the next, starts with every
    penalty still running, so the next n8n execution does not hit the limit again at once.
    `refresh()` reads again what other processes learned since.

    Args:
        state: The state file.
        limiter: The limiter that paces; default: a fresh `LocalRateLimiter()`.
    """

    def __init__(self, state: StateFile, *, limiter: RateLimiter | None = None) -> None:
        self._state = _state_file("SqliteRateLimiter", state)
        self.limiter: RateLimiter = limiter if limiter is not None else LocalRateLimiter()
        self.refresh()

    def _penalties(self, conn: sqlite3.Connection, now: float) -> builtins.list[tuple[Any, ...]]:
        return conn.execute(
            # A hand-edited row of another type is not a penalty (TEXT sorts above numbers).
            "SELECT phone_number_id, recipient, until FROM wa_limits WHERE until > ? "
            "AND typeof(until) IN ('integer', 'real') AND typeof(phone_number_id) = 'text' "
            "AND typeof(recipient) = 'text'",
            (now,),
        ).fetchall()

    def refresh(self) -> int:
        """Apply the penalties still running in the file to the limiter; return how many."""
        now = self._state.clock()
        rows = self._state.db.read(lambda c: self._penalties(c, now))
        for phone_number_id, recipient, until in rows:
            self.limiter.penalize(phone_number_id, recipient or None, until - now)
        return len(rows)

    def _penalize_job(
        self, phone_number_id: str, recipient: str | None, seconds: float
    ) -> Callable[[sqlite3.Connection], None] | None:
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
            return None
        now = self._state.clock()
        values = (phone_number_id, recipient or "", now + seconds)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM wa_limits WHERE until <= ?", (now,))
            conn.execute(
                "INSERT INTO wa_limits (phone_number_id, recipient, until) VALUES (?, ?, ?) "
                "ON CONFLICT (phone_number_id, recipient) DO UPDATE SET "
                "until = max(until, excluded.until)",
                values,
            )

        return job

    def acquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send (the wrapped limiter's answer)."""
        return self.limiter.acquire(phone_number_id, recipient, max_wait=max_wait)

    def penalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number (or the pair) back for *seconds*, here and in the file."""
        self.limiter.penalize(phone_number_id, recipient, seconds)
        job = self._penalize_job(phone_number_id, recipient, seconds)
        if job is not None:
            self._state.db.run(job)

    def held(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold still stops the number or the pair (the wrapped limiter's).

        The file's penalties were applied to the wrapped limiter (`refresh`), so it holds them;
        a wrapped limiter without `held` never holds (0).
        """
        held = getattr(self.limiter, "held", None)
        return 0.0 if held is None else float(held(phone_number_id, recipient))

    async def aacquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send (the wrapped limiter's answer)."""
        return await self.limiter.aacquire(phone_number_id, recipient, max_wait=max_wait)

    async def aheld(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold still stops the number or the pair (see `held`)."""
        aheld = getattr(self.limiter, "aheld", None)
        return 0.0 if aheld is None else float(await aheld(phone_number_id, recipient))

    async def apenalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number (or the pair) back, here and in the file."""
        await self.limiter.apenalize(phone_number_id, recipient, seconds)
        job = self._penalize_job(phone_number_id, recipient, seconds)
        if job is not None:
            await self._state.db.arun(job)

    def __repr__(self) -> str:
        return f"SqliteRateLimiter({self._state.path!r}, limiter={self.limiter!r})"


# --- token health -------------------------------------------------------------------------------

_HEALTH_TUPLES: Final = ("scopes", "missing_messaging_scopes", "missing_management_scopes")
#: A stored report's fields and their JSON types (`valid` is required).
_HEALTH_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "valid": (bool,),
    "token_fingerprint": (str,),
    "token_type": (str,),
    "app_id": (str,),
    "expires_at": (int,),
    "expires_in": _NUMBER,
    "data_access_expires_at": (int,),
    "waba_in_scope": (bool,),
    "error": (str,),
    "error_category": (str,),
    "checked_at": _NUMBER,
}


def _health(text: str) -> TokenHealth | None:
    """Return the stored report; a field of the wrong type is dropped (None without `valid`)."""
    data = loads_object(text)
    if data is None or not isinstance(data.get("valid"), bool):
        return None
    fields: dict[str, Any] = {
        name: data[name]
        for name, kinds in _HEALTH_FIELDS.items()
        if name in data and data[name] is not None and _typed(data[name], kinds)
    }
    for name in _HEALTH_TUPLES:
        value = data.get(name)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            fields[name] = tuple(value)
    return TokenHealth(**fields)


class SqliteHealthCache:
    """Token-health reports by token fingerprint, in a state file, each served for *ttl* s.

    The same `get` / `put` shape as the client's own in-memory cache, so one check of
    `debug_token` serves the next processes too.

    Args:
        state: The state file.
        ttl: Seconds a report is served.
    """

    def __init__(self, state: StateFile, *, ttl: float = DEFAULT_HEALTH_TTL) -> None:
        self.ttl = _positive("ttl", ttl)
        self._state = _state_file("SqliteHealthCache", state)

    @staticmethod
    def _get(conn: sqlite3.Connection, fingerprint: str, now: float) -> TokenHealth | None:
        found = conn.execute(
            "SELECT health FROM wa_health WHERE fingerprint = ? AND expires_at > ?",
            (fingerprint, now),
        ).fetchone()
        return _health(found[0]) if found is not None else None

    def _put_job(
        self, fingerprint: str, health: TokenHealth
    ) -> Callable[[sqlite3.Connection], None]:
        if not isinstance(health, TokenHealth):
            raise TypeError(
                f"the health cache holds TokenHealth values, got {type(health).__name__}"
            )
        now = self._state.clock()
        values = (fingerprint, dumps(health.to_dict()), now + self.ttl)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM wa_health WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO wa_health (fingerprint, health, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (fingerprint) DO UPDATE SET health = excluded.health, "
                "expires_at = excluded.expires_at",
                values,
            )

        return job

    def get(self, fingerprint: str) -> TokenHealth | None:
        """Return the report stored for *fingerprint* within its TTL, or None."""
        now = self._state.clock()
        return self._state.db.read(lambda c: self._get(c, fingerprint, now))

    def put(self, fingerprint: str, health: TokenHealth) -> None:
        """Store *health* for *fingerprint* for `ttl` seconds."""
        self._state.db.run(self._put_job(fingerprint, health))

    async def aget(self, fingerprint: str) -> TokenHealth | None:
        """Return the stored report (read off the event loop), or None."""
        now = self._state.clock()
        return await self._state.db.arun(lambda c: self._get(c, fingerprint, now), write=False)

    async def aput(self, fingerprint: str, health: TokenHealth) -> None:
        """Store *health* for *fingerprint*."""
        await self._state.db.arun(self._put_job(fingerprint, health))

    def __repr__(self) -> str:
        return f"SqliteHealthCache({self._state.path!r}, ttl={self.ttl!r})"


_claim(__name__, globals())
