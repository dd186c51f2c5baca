"""`RedisState`: one Redis and every store a fleet shares on it (`StateFile`'s counterpart)."""

from __future__ import annotations

from wa_auth._closing import AsyncClosing, Closing
from wa_auth.events import Events
from wa_auth.fleet._connection import (
    DEFAULT_NAMESPACE,
    DEFAULT_TIMEOUT,
    RedisConnection,
)
from wa_auth.fleet._health import RedisHealthCache
from wa_auth.fleet._ledger import RedisWebhookLedger
from wa_auth.fleet._limiter import RedisRateLimiter
from wa_auth.fleet._pauses import RedisPauseStore
from wa_auth.fleet._rotation import RedisRotation
from wa_auth.fleet._verdicts import RedisVerdictStore
from wa_auth.pacing import DEFAULT_PAIR_INTERVAL, DEFAULT_PROBE_GAP, DEFAULT_THROUGHPUT
from wa_auth.providers._verdicts import DEFAULT_VERDICT_TTL
from wa_auth.state._health import DEFAULT_HEALTH_TTL
from wa_auth.webhooks._ledger import DEFAULT_WINDOW

__all__ = ["RedisState"]


class RedisState(Closing, AsyncClosing):
    """A fleet's shared state on one Redis: the counterpart of `StateFile`.

    - `verdicts`: a `VerdictStore` with a local copy kept by pub/sub (`WhatsAppClient(...,
      verdicts=state.verdicts)`): a token proved dead anywhere is refused everywhere, with no
      round trip;
    - `pauses`: a `PauseStore` with a local copy kept the same way (`Guard(client,
      pauses=state.pauses)`);
    - `limiter()`: a `RateLimiter` (`Guard(client, limiter=state.limiter())`);
    - `health`: token-health reports by fingerprint (`WhatsAppClient(...,
      health_cache=state.health)`: one `debug_token` per token per TTL for the fleet);
      `rotation`: rotating providers' active candidate by compare-and-set
      (`RotatingTokenProvider(..., shared=state.rotation)`); `ledger()`: the webhook dedupe
      store.

    A state made before `fork()` serves the child too: its listeners start again on first
    use there (`wa_auth.fleet._mirror`).

    Args:
        url: `redis://[:password@]host:port/db` (the password never appears in an error).
        namespace: The prefix of every key (`wa_auth`), so one Redis serves n8n's queue too.
        timeout: Seconds to connect and to wait for each answer.
        verdict_ttl: Seconds a verdict lasts (`DEFAULT_VERDICT_TTL`).
        health_ttl: Seconds a health report is served (`DEFAULT_HEALTH_TTL`).
        events: Where the stores tell a fall-back (`StateFellBack`, counted by `Counters`
            and the Prometheus subscriber); None: a log warning.

    Raises:
        ConfigurationError: The URL cannot be read, a setting is out of range, or the `redis`
            extra is missing.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = DEFAULT_TIMEOUT,
        verdict_ttl: float = DEFAULT_VERDICT_TTL,
        health_ttl: float = DEFAULT_HEALTH_TTL,
        events: Events | None = None,
    ) -> None:
        self.connection = RedisConnection(url, namespace=namespace, timeout=timeout)
        self.address = self.connection.address
        self.events = events
        self.verdicts = RedisVerdictStore(self.connection, ttl=verdict_ttl, events=events)
        # Redis down: the verdicts waited for it already; the pauses do not wait again.
        wait = None if self.verdicts.synced.is_set() else 0.0
        self.pauses = RedisPauseStore(self.connection, wait=wait, events=events)
        self.health = RedisHealthCache(self.connection, ttl=health_ttl)
        self.rotation = RedisRotation(self.connection, wait=wait)

    def ping(self) -> None:
        """Ask Redis for an answer.

        Raises:
            StateUnavailableError: Redis did not answer (the message names host:port).
        """
        with self.connection.calling("connecting"):
            self.connection.client.ping()

    def limiter(
        self,
        *,
        rate: float = DEFAULT_THROUGHPUT,
        pair_interval: float | None = DEFAULT_PAIR_INTERVAL,
        burst: int = 1,
        probe_gap: float = DEFAULT_PROBE_GAP,
        expected_workers: int = 1,
    ) -> RedisRateLimiter:
        """Return a limiter whose reservations the fleet shares (`RedisRateLimiter`)."""
        return RedisRateLimiter(
            self.connection,
            rate=rate,
            pair_interval=pair_interval,
            burst=burst,
            probe_gap=probe_gap,
            expected_workers=expected_workers,
            events=self.events,
        )

    def ledger(self, *, window: float = DEFAULT_WINDOW) -> RedisWebhookLedger:
        """Return the fleet's webhook ledger (`RedisWebhookLedger`)."""
        return RedisWebhookLedger(self.connection, window=window)

    def close(self) -> None:
        """Stop the listeners and close the connections; idempotent."""
        self.verdicts.close()
        self.pauses.close()
        self.rotation.close()
        self.connection.close()

    async def aclose(self) -> None:
        """Close, the asyncio connections too."""
        self.verdicts.close()
        self.pauses.close()
        self.rotation.close()
        await self.connection.aclose()

    def __repr__(self) -> str:
        return f"RedisState({self.address!r}, namespace={self.connection.namespace!r})"
