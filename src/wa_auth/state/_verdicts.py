"""`SqliteVerdictStore`: dead tokens in a state file, refused by every process sharing it."""

from __future__ import annotations

import builtins
import sqlite3

from wa_auth._sqlite import dumps, error_from_dict, loads_object
from wa_auth.errors import ApiError, ConfigurationError
from wa_auth.providers._verdicts import DEFAULT_MAX_ENTRIES, DEFAULT_VERDICT_TTL
from wa_auth.state._base import StateBase, delete, positive, state_file

__all__ = ["SqliteVerdictStore"]


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
        state: StateBase,
        *,
        ttl: float = DEFAULT_VERDICT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.ttl = positive("ttl", ttl)
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigurationError(f"max_entries must be a positive integer, got {max_entries!r}")
        self._max = max_entries
        self._state = state_file("SqliteVerdictStore", state)

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
        self._state.db.run(lambda c: delete(c, "wa_verdicts", fingerprint=fingerprint))

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
        await self._state.db.arun(lambda c: delete(c, "wa_verdicts", fingerprint=fingerprint))

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
