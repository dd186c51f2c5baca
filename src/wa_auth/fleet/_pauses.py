"""`RedisPauseStore`: a number paused by one worker is paused for the fleet; resumed anywhere.

Every pause is a field `<kind>:<phone number id>` of the hash `<ns>:pauses` (the `Pause`'s
`to_dict()`, which holds the failure's fields, never a token). A write goes to Redis and to a
local `MemoryPauseStore`; when Redis does not answer, reads and writes use the local one
(logged as `fleet.fallback`), so a guard keeps pausing what this process learned.
"""

from __future__ import annotations

import builtins
import logging

from wa_auth._sqlite import dumps
from wa_auth.errors import StateUnavailableError
from wa_auth.fleet._connection import RedisConnection, text
from wa_auth.pacing import MemoryPauseStore, Pause
from wa_auth.state._pauses import read_pause

__all__ = ["RedisPauseStore"]

_log = logging.getLogger("wa_auth")


class RedisPauseStore:
    """A `PauseStore` on Redis, with this process's copy as the fall-back when Redis is down.

    Args:
        connection: The Redis (`RedisState.connection`).
    """

    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._hash = connection.key("pauses")
        self.local = MemoryPauseStore()
        #: Calls answered from the local copy because Redis did not answer.
        self.fallbacks = 0

    def _fell_back(self, exc: StateUnavailableError) -> None:
        self.fallbacks += 1
        _log.warning(
            "fleet.fallback: pauses answered by this process only: %s",
            exc.message,
            extra={"event": "fleet.fallback", "store": "pauses", "category": exc.category},
        )

    @staticmethod
    def _checked(pause: Pause) -> Pause:
        if not isinstance(pause, Pause):
            raise TypeError(f"a pause store holds Pause values, got {type(pause).__name__}")
        return pause

    @staticmethod
    def _parsed(answer: bytes | str | None) -> Pause | None:
        found = text(answer)
        return read_pause(found) if found is not None else None

    def get(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        try:
            with self._redis.calling("reading a pause"):
                text = self._redis.client.hget(self._hash, f"{kind}:{phone_number_id}")
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.local.get(kind, phone_number_id)
        return self._parsed(text)

    def put(self, pause: Pause) -> None:
        """Store *pause* for the fleet, replacing the number's pause of the same kind."""
        self.local.put(self._checked(pause))
        try:
            with self._redis.calling("storing a pause"):
                field = f"{pause.kind}:{pause.phone_number_id}"
                self._redis.client.hset(self._hash, field, dumps(pause.to_dict()))
        except StateUnavailableError as exc:
            self._fell_back(exc)

    def clear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind, for the fleet (`resume()` anywhere)."""
        self.local.clear(kind, phone_number_id)
        try:
            with self._redis.calling("clearing a pause"):
                self._redis.client.hdel(self._hash, f"{kind}:{phone_number_id}")
        except StateUnavailableError as exc:
            self._fell_back(exc)

    def list(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        try:
            with self._redis.calling("listing pauses"):
                values = self._redis.client.hvals(self._hash)
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.local.list()
        return sorted(
            (p for p in map(self._parsed, values) if p is not None),
            key=lambda p: (p.kind, p.phone_number_id),
        )

    async def aget(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        try:
            with self._redis.calling("reading a pause"):
                text = await self._redis.aclient().hget(self._hash, f"{kind}:{phone_number_id}")
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.local.get(kind, phone_number_id)
        return self._parsed(text)

    async def aput(self, pause: Pause) -> None:
        """Store *pause* for the fleet."""
        self.local.put(self._checked(pause))
        try:
            with self._redis.calling("storing a pause"):
                field = f"{pause.kind}:{pause.phone_number_id}"
                await self._redis.aclient().hset(self._hash, field, dumps(pause.to_dict()))
        except StateUnavailableError as exc:
            self._fell_back(exc)

    async def aclear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind, for the fleet."""
        self.local.clear(kind, phone_number_id)
        try:
            with self._redis.calling("clearing a pause"):
                await self._redis.aclient().hdel(self._hash, f"{kind}:{phone_number_id}")
        except StateUnavailableError as exc:
            self._fell_back(exc)

    async def alist(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        try:
            with self._redis.calling("listing pauses"):
                values = await self._redis.aclient().hvals(self._hash)
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.local.list()
        return sorted(
            (p for p in map(self._parsed, values) if p is not None),
            key=lambda p: (p.kind, p.phone_number_id),
        )

    def __repr__(self) -> str:
        return f"RedisPauseStore({self._redis.address!r})"
