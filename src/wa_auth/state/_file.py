"""`StateFile`: one state file and its four stores (verdicts, pauses, penalties, health)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from wa_auth._sqlite import DEFAULT_BUSY_TIMEOUT
from wa_auth.pacing import RateLimiter
from wa_auth.providers._verdicts import DEFAULT_VERDICT_TTL
from wa_auth.state._base import StateBase
from wa_auth.state._health import DEFAULT_HEALTH_TTL, SqliteHealthCache
from wa_auth.state._pauses import SqlitePauseStore
from wa_auth.state._penalties import SqliteRateLimiter
from wa_auth.state._verdicts import SqliteVerdictStore

__all__ = ["StateFile"]


class StateFile(StateBase):
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
        super().__init__(
            path, durability=durability, busy_timeout=busy_timeout, create=create, clock=clock
        )
        self.verdicts = SqliteVerdictStore(self, ttl=verdict_ttl)
        self.pauses = SqlitePauseStore(self)
        self.health = SqliteHealthCache(self, ttl=health_ttl)

    def limiter(self, limiter: RateLimiter | None = None) -> SqliteRateLimiter:
        """Return a limiter that keeps Meta's penalties in this file (`SqliteRateLimiter`)."""
        return SqliteRateLimiter(self, limiter=limiter)
