"""`SqliteRateLimiter`: Meta's `retry_after` penalties kept in a state file across processes."""

from __future__ import annotations

import builtins
import math
import sqlite3
from collections.abc import Callable
from typing import Any

from wa_auth.errors import ConfigurationError
from wa_auth.pacing import LocalRateLimiter, RateLimiter, check_rate
from wa_auth.state._base import StateBase, state_file

__all__ = ["SqliteRateLimiter"]


class SqliteRateLimiter:
    """A `RateLimiter` that remembers Meta's `retry_after` penalties in a state file.

    Pacing itself is *limiter*'s (a `LocalRateLimiter` by default). What Meta said (a 130429
    holding the number back, a 131056 holding one recipient back) is also written to the file
    as a wall-clock time; a limiter made later, in this process or the next, starts with every
    penalty still running, so the next n8n execution does not hit the limit again at once.
    A rate `set_rate` gives a number (a new throughput tier, learned by webhook) is kept in the
    file too, and a later limiter paces the number at it. `refresh()` reads again what other
    processes learned since.

    Args:
        state: The state file.
        limiter: The limiter that paces; default: a fresh `LocalRateLimiter()`.
    """

    def __init__(self, state: StateBase, *, limiter: RateLimiter | None = None) -> None:
        self._state = state_file("SqliteRateLimiter", state)
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
        """Apply the file's rates and its penalties still running to the limiter.

        Returns:
            How many penalties were applied.
        """
        now = self._state.clock()
        rows, rates = self._state.db.read(lambda c: (self._penalties(c, now), _rates(c)))
        set_rate = getattr(self.limiter, "set_rate", None)
        if set_rate is not None:
            for phone_number_id, per_second in rates:
                set_rate(phone_number_id, per_second)
        for phone_number_id, recipient, until in rows:
            self.limiter.penalize(phone_number_id, recipient or None, until - now)
        return len(rows)

    def _rate_job(self, phone_number_id: str, rate: float) -> Callable[[sqlite3.Connection], None]:
        values = (phone_number_id, rate, self._state.clock())

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO wa_rates (phone_number_id, per_second, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (phone_number_id) DO UPDATE SET per_second = excluded.per_second, "
                "updated_at = excluded.updated_at",
                values,
            )

        return job

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

    def set_rate(self, phone_number_id: str, per_second: float) -> None:
        """Pace the number at *per_second*, here and in the file (a later limiter starts at it).

        Raises:
            ConfigurationError: *per_second* fails `check_rate`, or *phone_number_id* is not a
                non-blank string.
        """
        rate = check_rate(per_second)
        job = self._rate_job(_phone(phone_number_id), rate)
        set_rate = getattr(self.limiter, "set_rate", None)
        if set_rate is not None:
            set_rate(phone_number_id, rate)
        self._state.db.run(job)

    async def aset_rate(self, phone_number_id: str, per_second: float) -> None:
        """Pace the number at *per_second*, here and in the file (see `set_rate`)."""
        rate = check_rate(per_second)
        job = self._rate_job(_phone(phone_number_id), rate)
        aset_rate = getattr(self.limiter, "aset_rate", None)
        if aset_rate is not None:
            await aset_rate(phone_number_id, rate)
        await self._state.db.arun(job)

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


def _phone(phone_number_id: object) -> str:
    if not isinstance(phone_number_id, str) or not phone_number_id.strip():
        raise ConfigurationError(
            f"phone_number_id must be a non-blank string, got a {type(phone_number_id).__name__}"
        )
    return phone_number_id


def _rates(conn: sqlite3.Connection) -> builtins.list[tuple[str, float]]:
    # A hand-edited row that is not a positive finite rate is not a rate.
    return [
        (str(phone), float(rate))
        for phone, rate in conn.execute(
            "SELECT phone_number_id, per_second FROM wa_rates WHERE typeof(phone_number_id) = "
            "'text' AND typeof(per_second) IN ('integer', 'real') AND per_second > 0"
        )
        if math.isfinite(rate)
    ]
