"""`PostgresState`: dead tokens and paused numbers in PostgreSQL, for a fleet without Redis.

Two stores on tables of the `wa_auth` schema (the outbox's schema, so a pause recorded here
also keeps the outbox's claims off the paused number): `verdicts` (a `VerdictStore`) and
`pauses` (a `PauseStore`). No rate limiter: a limiter decides before every request, and a
round trip to PostgreSQL (and a row lock every worker contends for) per request is the price
Redis avoids; docs/outbox.md says more.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any, Final

from wa_auth._closing import AsyncClosing, Closing
from wa_auth._postgres import PAUSES_TABLE, PgDatabase, PgSchema
from wa_auth._sqlite import dumps, error_from_dict, loads_object
from wa_auth.errors import ApiError
from wa_auth.pacing import Pause
from wa_auth.providers._verdicts import DEFAULT_VERDICT_TTL
from wa_auth.state._base import positive
from wa_auth.state._pauses import read_pause

__all__ = ["PostgresPauseStore", "PostgresState", "PostgresVerdictStore"]

#: Version 1. Never edit a released migration: append the next one.
SCHEMA: Final = PgSchema(
    component="state",
    what="state",
    migrations=(
        (
            """
            CREATE TABLE {schema}.verdicts (
                fingerprint TEXT PRIMARY KEY,
                error TEXT NOT NULL,
                recorded_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            )
            """,
            PAUSES_TABLE,
        ),
    ),
)


class PostgresState(Closing, AsyncClosing):
    """Dead tokens and paused numbers in PostgreSQL, shared by every worker of a fleet.

    `state.verdicts` is a `VerdictStore` (`WhatsAppClient(..., verdicts=state.verdicts)`) and
    `state.pauses` a `PauseStore` (`Guard(client, pauses=state.pauses)`). Every change is
    committed before the call returns.

    Args:
        dsn: `postgresql://user:password@host:port/database` (never shown).
        schema: The schema of wa_auth's tables (`wa_auth`: the outbox's own, so its claims
            skip the numbers paused here).
        create: Create (or migrate) the tables; False refuses a missing or older schema.
        clock: Wall clock (TTLs, pauses).
        verdict_ttl: Seconds a verdict lasts.
        connect_timeout: Seconds to wait for the server.

    Raises:
        ConfigurationError: A setting is out of range, or psycopg is not installed.
        OutboxError: As `PostgresOutbox` (`auth_failed`, `missing`, `newer_schema`, ...).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "wa_auth",
        create: bool = True,
        clock: Callable[[], float] = time.time,
        verdict_ttl: float = DEFAULT_VERDICT_TTL,
        connect_timeout: float = 10.0,
    ) -> None:
        ttl = positive("verdict_ttl", verdict_ttl)
        self.clock = clock
        self.db = PgDatabase(
            dsn,
            SCHEMA,
            name=schema,
            flush_interval=0.0,
            create=create,
            connect_timeout=connect_timeout,
        )
        self.path = self.db.where
        self.verdicts = PostgresVerdictStore(self, ttl=ttl)
        self.pauses = PostgresPauseStore(self)

    def close(self) -> None:
        """Close the connections; idempotent."""
        self.db.close()

    async def aclose(self) -> None:
        """Close the connections."""
        self.close()

    def __repr__(self) -> str:
        return f"PostgresState({self.db.target.safe_url!r}, schema={self.db.name!r})"


class PostgresVerdictStore:
    """A `VerdictStore` on a table: a token proved dead stays dead for every worker."""

    def __init__(self, state: PostgresState, *, ttl: float = DEFAULT_VERDICT_TTL) -> None:
        self._state = state
        self.ttl = positive("ttl", ttl)

    def _get(self, conn: Any, fingerprint: str, now: float) -> ApiError | None:
        found = conn.execute(
            self._state.db.q(
                "SELECT error FROM {schema}.verdicts WHERE fingerprint = %s AND expires_at > %s"
            ),
            (fingerprint, now),
        ).fetchone()
        data = loads_object(found[0]) if found is not None else None
        error = error_from_dict(data) if data is not None else None
        return error if isinstance(error, ApiError) else None

    def _record(self, fingerprint: str, error: ApiError) -> Callable[[Any], None]:
        text, now = dumps(error.to_dict()), self._state.clock()
        q = self._state.db.q

        def job(conn: Any) -> None:
            conn.execute(
                q(
                    "INSERT INTO {schema}.verdicts (fingerprint, error, recorded_at, expires_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (fingerprint) DO UPDATE SET "
                    "error = excluded.error, recorded_at = excluded.recorded_at, "
                    "expires_at = excluded.expires_at"
                ),
                (fingerprint, text, now, now + self.ttl),
            )
            conn.execute(q("DELETE FROM {schema}.verdicts WHERE expires_at <= %s"), (now,))

        return job

    def _forget(self, fingerprint: str) -> Callable[[Any], None]:
        sql = self._state.db.q("DELETE FROM {schema}.verdicts WHERE fingerprint = %s")
        return lambda conn: conn.execute(sql, (fingerprint,))

    def get(self, fingerprint: str) -> ApiError | None:
        """Return the classified error that proved the token dead, or None."""
        now = self._state.clock()
        return self._state.db.read(lambda c: self._get(c, fingerprint, now))  # type: ignore[no-any-return]

    def record(self, fingerprint: str, error: ApiError) -> None:
        """Remember that the token with *fingerprint* is dead because of *error*."""
        self._state.db.run(self._record(fingerprint, error))

    def forget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint*."""
        self._state.db.run(self._forget(fingerprint))

    async def aget(self, fingerprint: str) -> ApiError | None:
        """Return the verdict on *fingerprint*, or None (read off the event loop)."""
        now = self._state.clock()
        job = lambda c: self._get(c, fingerprint, now)  # noqa: E731
        return await self._state.db.arun(job, write=False)  # type: ignore[no-any-return]

    async def arecord(self, fingerprint: str, error: ApiError) -> None:
        """Remember that the token with *fingerprint* is dead because of *error*."""
        await self._state.db.arun(self._record(fingerprint, error))

    async def aforget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint*."""
        await self._state.db.arun(self._forget(fingerprint))

    def __repr__(self) -> str:
        return f"PostgresVerdictStore({self._state.path!r}, ttl={self.ttl!r})"


class PostgresPauseStore:
    """A `PauseStore` on a table: a paused number stays paused for every worker.

    A pause with an end (`until`) also keeps `PostgresOutbox` claims (same schema) off the
    number until then.
    """

    def __init__(self, state: PostgresState) -> None:
        self._state = state

    def _get(self, conn: Any, kind: str, phone_number_id: str) -> Pause | None:
        found = conn.execute(
            self._state.db.q(
                "SELECT pause FROM {schema}.pauses WHERE kind = %s AND phone_number_id = %s"
            ),
            (kind, phone_number_id),
        ).fetchone()
        return read_pause(found[0]) if found is not None else None

    def _list(self, conn: Any) -> builtins.list[Pause]:
        rows = conn.execute(
            self._state.db.q("SELECT pause FROM {schema}.pauses ORDER BY kind, phone_number_id")
        )
        return [p for p in (read_pause(r[0]) for r in rows) if p is not None]

    def _put(self, pause: Pause) -> Callable[[Any], None]:
        if not isinstance(pause, Pause):
            raise TypeError(f"a pause store holds Pause values, got {type(pause).__name__}")
        values = (
            pause.kind,
            pause.phone_number_id,
            dumps(pause.to_dict()),
            pause.until,
            self._state.clock(),
        )
        sql = self._state.db.q(
            "INSERT INTO {schema}.pauses (kind, phone_number_id, pause, until, updated_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, phone_number_id) DO UPDATE SET "
            "pause = excluded.pause, until = excluded.until, updated_at = excluded.updated_at"
        )
        return lambda conn: conn.execute(sql, values)

    def _clear(self, kind: str, phone_number_id: str) -> Callable[[Any], None]:
        sql = self._state.db.q(
            "DELETE FROM {schema}.pauses WHERE kind = %s AND phone_number_id = %s"
        )
        return lambda conn: conn.execute(sql, (kind, phone_number_id))

    def get(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        return self._state.db.read(lambda c: self._get(c, kind, phone_number_id))  # type: ignore[no-any-return]

    def put(self, pause: Pause) -> None:
        """Store *pause*, replacing the number's pause of the same kind."""
        self._state.db.run(self._put(pause))

    def clear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        self._state.db.run(self._clear(kind, phone_number_id))

    def list(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        return self._state.db.read(self._list)  # type: ignore[no-any-return]

    async def aget(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number (read off the event loop)."""
        job = lambda c: self._get(c, kind, phone_number_id)  # noqa: E731
        return await self._state.db.arun(job, write=False)  # type: ignore[no-any-return]

    async def aput(self, pause: Pause) -> None:
        """Store *pause*."""
        await self._state.db.arun(self._put(pause))

    async def aclear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        await self._state.db.arun(self._clear(kind, phone_number_id))

    async def alist(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        return await self._state.db.arun(self._list, write=False)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"PostgresPauseStore({self._state.path!r})"
