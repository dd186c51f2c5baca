"""Fleet mode: what many processes on many machines share, on Redis (the `redis` extra).

A team that outgrows one machine runs many workers against the same tokens and numbers.
`RedisState(url)` hands out the stores they share, behind the protocols the client, the
guard and the webhook receiver already take:

- `state.verdicts` (`RedisVerdictStore`): a token proved dead by one worker is refused by
  every worker before any request; each keeps a local copy kept by pub/sub;
- `state.pauses` (`RedisPauseStore`): a paused number is paused for the fleet, resumed
  anywhere; read from a local copy kept the same way;
- `state.limiter()` (`RedisRateLimiter`): Meta's per-number and per-pair limits as GCRA
  reservations in one Lua script on Redis's clock, with the penalties any worker received;
- `state.ledger()` (`RedisWebhookLedger`): a redelivery reaching another processor is dropped;
- `state.health` (`RedisHealthCache`, `WhatsAppClient(..., health_cache=state.health)`) and
  `state.rotation` (`RedisRotation`): token health once per fingerprint per TTL, and a
  rotation's active candidate by compare-and-set.

Keys start with the namespace (`wa_auth:` unless told); they and their values hold token
fingerprints, never a token, and recipients only as digests. docs/fleet.md lists them, the
failure semantics and a capacity model.

The package, by module: `_connection` (redis-py, imported on first use; errors translated to
`StateUnavailableError` naming host:port), `_batch` (an event loop's concurrent script calls
sent as one pipeline), `_mirror` (the pub/sub thread that keeps a store's local copy), one
store per module (`_verdicts`, `_pauses`, `_limiter`, `_ledger`, `_health`, `_rotation`) and
`_state` (`RedisState`).
"""

from __future__ import annotations

from wa_auth._exports import claim as _claim
from wa_auth.fleet._connection import DEFAULT_NAMESPACE, RedisConnection
from wa_auth.fleet._health import RedisHealthCache
from wa_auth.fleet._ledger import RedisWebhookLedger
from wa_auth.fleet._limiter import RedisRateLimiter
from wa_auth.fleet._pauses import RedisPauseStore
from wa_auth.fleet._rotation import RedisRotation, RotationRecord
from wa_auth.fleet._state import RedisState
from wa_auth.fleet._verdicts import RedisVerdictStore

__all__ = [
    "DEFAULT_NAMESPACE",
    "RedisConnection",
    "RedisHealthCache",
    "RedisPauseStore",
    "RedisRateLimiter",
    "RedisRotation",
    "RedisState",
    "RedisVerdictStore",
    "RedisWebhookLedger",
    "RotationRecord",
]

_claim(__name__, globals())
