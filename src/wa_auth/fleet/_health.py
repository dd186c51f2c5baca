"""`RedisHealthCache`: one `debug_token` per fingerprint per TTL for the whole fleet.

A report is the key `<ns>:health:<fingerprint>` (the `TokenHealth`'s `to_dict()`: scopes,
expiry and the fingerprint, never the token), expiring after the TTL.
"""

from __future__ import annotations

from wa_auth._sqlite import dumps
from wa_auth.fleet._connection import RedisConnection, text
from wa_auth.models import TokenHealth
from wa_auth.state._base import positive
from wa_auth.state._health import DEFAULT_HEALTH_TTL, read_health

__all__ = ["RedisHealthCache"]


class RedisHealthCache:
    """Token-health reports by fingerprint on Redis, each served for *ttl* seconds.

    A `HealthCache`, as `SqliteHealthCache` is: give it to `WhatsAppClient(...,
    health_cache=...)`. Every method raises `StateUnavailableError` when Redis does not answer
    (the client then asks Meta itself and says so in a `StateFellBack`).

    Args:
        connection: The Redis (`RedisState.connection`).
        ttl: Seconds a report is served (`DEFAULT_HEALTH_TTL`).
    """

    def __init__(self, connection: RedisConnection, *, ttl: float = DEFAULT_HEALTH_TTL) -> None:
        self.ttl = positive("ttl", ttl)
        self._redis = connection

    def _key(self, fingerprint: str) -> str:
        return self._redis.key("health", fingerprint)

    @staticmethod
    def _value(health: TokenHealth) -> str:
        if not isinstance(health, TokenHealth):
            raise TypeError(
                f"the health cache holds TokenHealth values, got {type(health).__name__}"
            )
        return dumps(health.to_dict())

    @staticmethod
    def _parsed(answer: bytes | str | None) -> TokenHealth | None:
        found = text(answer)
        return read_health(found) if found is not None else None

    def get(self, fingerprint: str) -> TokenHealth | None:
        """Return the report stored for *fingerprint* within its TTL, or None."""
        with self._redis.calling("reading token health"):
            return self._parsed(self._redis.client.get(self._key(fingerprint)))

    def put(self, fingerprint: str, health: TokenHealth) -> None:
        """Store *health* for *fingerprint* for `ttl` seconds, for the fleet."""
        value = self._value(health)
        with self._redis.calling("storing token health"):
            self._redis.client.set(self._key(fingerprint), value, px=int(self.ttl * 1000))

    async def aget(self, fingerprint: str) -> TokenHealth | None:
        """Return the report stored for *fingerprint* within its TTL, or None."""
        with self._redis.calling("reading token health"):
            return self._parsed(await self._redis.aclient().get(self._key(fingerprint)))

    async def aput(self, fingerprint: str, health: TokenHealth) -> None:
        """Store *health* for *fingerprint* for `ttl` seconds, for the fleet."""
        value = self._value(health)
        with self._redis.calling("storing token health"):
            await self._redis.aclient().set(self._key(fingerprint), value, px=int(self.ttl * 1000))

    def __repr__(self) -> str:
        return f"RedisHealthCache({self._redis.address!r}, ttl={self.ttl!r})"
