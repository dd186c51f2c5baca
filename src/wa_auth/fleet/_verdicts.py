"""`RedisVerdictStore`: a token proved dead by one worker is refused by every worker, locally.

Each verdict is a key `<ns>:verdict:<fingerprint>` (the error's `to_dict()`, which holds the
fingerprint and never the token) with the TTL as its expiry, and a message on the channel
`<ns>:verdicts`. Every store keeps a local copy, loaded when its listener thread subscribes
and kept by the channel's messages, so `get` (the client's check before each request) costs no
round trip. A listener that loses Redis reloads everything when it is back; meanwhile the
local copy still refuses what it knew, and a verdict recorded while Redis is down is kept
locally (logged as `fleet.fallback`) and written to Redis for the fleet when it is back.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from wa_auth._sqlite import dumps, error_from_dict
from wa_auth.errors import ApiError, StateUnavailableError
from wa_auth.events import Events
from wa_auth.fleet._connection import RedisConnection, fell_back, in_child_after_fork
from wa_auth.fleet._mirror import Mirror
from wa_auth.providers._verdicts import DEFAULT_VERDICT_TTL
from wa_auth.state._base import positive

__all__ = ["RedisVerdictStore"]


def _error(data: object) -> ApiError | None:
    error = error_from_dict(data) if isinstance(data, dict) else None
    return error if isinstance(error, ApiError) else None


class RedisVerdictStore:
    """A `VerdictStore` on Redis with a local copy: `get` and `aget` do no I/O.

    Args:
        connection: The Redis (`RedisState.connection`).
        ttl: Seconds a verdict lasts, in Redis and in every copy (`DEFAULT_VERDICT_TTL`).
        clock: Wall clock of the local copy's expiries.
        wait: Seconds the constructor waits for the first load (0: not at all).
        events: Where a fall-back is told (`StateFellBack`); None: logged.
    """

    def __init__(
        self,
        connection: RedisConnection,
        *,
        ttl: float = DEFAULT_VERDICT_TTL,
        clock: Callable[[], float] = time.time,
        wait: float | None = None,
        events: Events | None = None,
    ) -> None:
        self.ttl = positive("ttl", ttl)
        self.events = events
        self._redis = connection
        self._clock = clock
        self._channel = connection.key("verdicts")
        self._prefix = connection.key("verdict", "")
        self._local: dict[str, tuple[float, ApiError]] = {}
        self._lock = threading.Lock()
        #: Verdicts recorded while Redis was down (kept locally until it is back).
        self.fallbacks = 0
        self._mirror = Mirror(
            connection,
            self._channel,
            reload=self._reload,
            apply=self._apply,
            name="wa_auth-verdicts",
            wait=wait,
        )
        in_child_after_fork(self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a lock the parent's listener held stays held here

    # --- the local copy ---------------------------------------------------------------------

    def _keep(self, fingerprint: str, error: ApiError, expires_at: float) -> None:
        kept = copy.copy(error)
        kept.__traceback__ = None
        with self._lock:
            self._local[fingerprint] = (expires_at, kept)

    def get(self, fingerprint: str) -> ApiError | None:
        """Return the classified error that proved the token dead, or None (no I/O)."""
        self._mirror.revive()
        entry = self._local.get(fingerprint)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            with self._lock:
                self._local.pop(fingerprint, None)
            return None
        return entry[1]

    async def aget(self, fingerprint: str) -> ApiError | None:
        """Return the verdict on *fingerprint*, or None (no I/O: the local copy)."""
        return self.get(fingerprint)

    def list(self) -> builtins.list[tuple[str, ApiError, float]]:
        """Return every verdict in force as `(fingerprint, error, expires_at)`, newest last."""
        self._mirror.revive()
        now = self._clock()
        with self._lock:
            entries = list(self._local.items())
        return [(fp, error, until) for fp, (until, error) in entries if until > now]

    async def alist(self) -> builtins.list[tuple[str, ApiError, float]]:
        """Return every verdict in force (see `list`; no I/O)."""
        return self.list()

    # --- writes -------------------------------------------------------------------------------

    def _message(self, fingerprint: str, error: ApiError | None) -> str:
        op: dict[str, Any] = {"op": "forget", "fp": fingerprint}
        if error is not None:
            op = {"op": "record", "fp": fingerprint, "error": error.to_dict(), "ttl": self.ttl}
        return dumps(op)

    def _fell_back(self, exc: StateUnavailableError) -> None:
        self.fallbacks += 1
        fell_back(self.events, "verdicts", exc, self.fallbacks)
        self._mirror.resync()  # the next load writes the verdict for the fleet

    def record(self, fingerprint: str, error: ApiError) -> None:
        """Remember, for the fleet, that the token with *fingerprint* is dead because of *error*.

        The local copy refuses it at once; Redis down, the verdict stays local (logged).
        """
        self._mirror.revive()
        self._keep(fingerprint, error, self._clock() + self.ttl)
        text = dumps(error.to_dict())
        try:
            with self._redis.calling("recording a verdict"):
                pipe = self._redis.client.pipeline(transaction=True)
                pipe.set(self._prefix + fingerprint, text, px=int(self.ttl * 1000))
                pipe.publish(self._channel, self._message(fingerprint, error))
                pipe.execute()
        except StateUnavailableError as exc:
            self._fell_back(exc)

    async def arecord(self, fingerprint: str, error: ApiError) -> None:
        """Remember, for the fleet, that the token with *fingerprint* is dead (see `record`)."""
        self._mirror.revive()
        self._keep(fingerprint, error, self._clock() + self.ttl)
        text = dumps(error.to_dict())
        try:
            with self._redis.calling("recording a verdict"):
                pipe = self._redis.aclient().pipeline(transaction=True)
                pipe.set(self._prefix + fingerprint, text, px=int(self.ttl * 1000))
                pipe.publish(self._channel, self._message(fingerprint, error))
                await pipe.execute()
        except StateUnavailableError as exc:
            self._fell_back(exc)

    def forget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint* for the fleet (an operator knows better).

        Raises:
            StateUnavailableError: Redis did not answer (the other workers still refuse it).
        """
        self._mirror.revive()
        with self._lock:
            self._local.pop(fingerprint, None)
        with self._redis.calling("forgetting a verdict"):
            pipe = self._redis.client.pipeline(transaction=True)
            pipe.delete(self._prefix + fingerprint)
            pipe.publish(self._channel, self._message(fingerprint, None))
            pipe.execute()

    async def aforget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint* for the fleet (see `forget`)."""
        self._mirror.revive()
        with self._lock:
            self._local.pop(fingerprint, None)
        with self._redis.calling("forgetting a verdict"):
            pipe = self._redis.aclient().pipeline(transaction=True)
            pipe.delete(self._prefix + fingerprint)
            pipe.publish(self._channel, self._message(fingerprint, None))
            await pipe.execute()

    # --- the listener ------------------------------------------------------------------------

    def _apply(self, raw: bytes) -> None:
        try:
            op = json.loads(raw)
        except ValueError:
            return
        if not isinstance(op, dict) or not isinstance(op.get("fp"), str):
            return
        fingerprint = op["fp"]
        if op.get("op") == "forget":
            with self._lock:
                self._local.pop(fingerprint, None)
            return
        error, ttl = _error(op.get("error")), op.get("ttl")
        if op.get("op") == "record" and error is not None and isinstance(ttl, (int, float)):
            self._keep(fingerprint, error, self._clock() + float(ttl))

    def _reload(self) -> None:
        """Replace the copy with what Redis holds (after subscribing: nothing falls between)."""
        client = self._redis.client
        keys = list(client.scan_iter(match=self._prefix + "*", count=1000))
        found: dict[str, tuple[float, ApiError]] = {}
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            answers = pipe.execute()
            now = self._clock()
            for key, text, pttl in zip(keys, answers[::2], answers[1::2], strict=True):
                data: Any = None
                with contextlib.suppress(ValueError, TypeError):
                    data = json.loads(text)
                error = _error(data)
                if error is not None and isinstance(pttl, int) and pttl > 0:
                    found[key.decode()[len(self._prefix) :]] = (now + pttl / 1000, error)
        with self._lock:
            # What this process recorded while Redis was down stays until its TTL...
            now = self._clock()
            pending = {fp: e for fp, e in self._local.items() if fp not in found and e[0] > now}
            self._local = {**pending, **found}
        # ... and reaches the fleet now that Redis is back: the states converge.
        if pending:
            pipe = client.pipeline(transaction=False)
            for fingerprint, (until, error) in pending.items():
                left = until - now
                pipe.set(self._prefix + fingerprint, dumps(error.to_dict()), px=int(left * 1000))
                op = {"op": "record", "fp": fingerprint, "error": error.to_dict(), "ttl": left}
                pipe.publish(self._channel, dumps(op))
            pipe.execute()

    @property
    def synced(self) -> threading.Event:
        """Set while the copy is kept by Redis; cleared while Redis is lost."""
        self._mirror.revive()
        return self._mirror.synced

    def close(self) -> None:
        """Stop the listener thread; idempotent."""
        self._mirror.close()

    def __repr__(self) -> str:
        return f"RedisVerdictStore({self._redis.address!r}, ttl={self.ttl!r})"
