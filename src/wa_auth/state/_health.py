"""`SqliteHealthCache`: token-health reports by fingerprint in a state file, each with a TTL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Final

from wa_auth._sqlite import dumps, loads_object
from wa_auth.models import TokenHealth
from wa_auth.state._base import NUMBER, StateBase, positive, state_file, typed

__all__ = ["DEFAULT_HEALTH_TTL", "SqliteHealthCache", "read_health"]


#: Seconds a stored token-health report is served (the client's own cache keeps 300 s).
DEFAULT_HEALTH_TTL: Final = 300.0

_HEALTH_TUPLES: Final = ("scopes", "missing_messaging_scopes", "missing_management_scopes")
#: A stored report's fields and their JSON types (`valid` is required).
_HEALTH_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "valid": (bool,),
    "token_fingerprint": (str,),
    "token_type": (str,),
    "app_id": (str,),
    "expires_at": (int,),
    "expires_in": NUMBER,
    "data_access_expires_at": (int,),
    "waba_in_scope": (bool,),
    "error": (str,),
    "error_category": (str,),
    "checked_at": NUMBER,
}


def read_health(text: str) -> TokenHealth | None:
    """Return the stored report; a field of the wrong type is dropped (None without `valid`)."""
    data = loads_object(text)
    if data is None or not isinstance(data.get("valid"), bool):
        return None
    fields: dict[str, Any] = {
        name: data[name]
        for name, kinds in _HEALTH_FIELDS.items()
        if name in data and data[name] is not None and typed(data[name], kinds)
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

    def __init__(self, state: StateBase, *, ttl: float = DEFAULT_HEALTH_TTL) -> None:
        self.ttl = positive("ttl", ttl)
        self._state = state_file("SqliteHealthCache", state)

    @staticmethod
    def _get(conn: sqlite3.Connection, fingerprint: str, now: float) -> TokenHealth | None:
        found = conn.execute(
            "SELECT health FROM wa_health WHERE fingerprint = ? AND expires_at > ?",
            (fingerprint, now),
        ).fetchone()
        return read_health(found[0]) if found is not None else None

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
