"""`RedisPauseStore`: a number paused by one worker is paused for the fleet; resumed anywhere.

Every pause is a field `<kind>:<phone number id>` of the hash `<ns>:pauses` (the `Pause`'s
`to_dict()`, which holds the failure's fields, never a token), and each change a message on
the channel of the same name. Like the verdicts, every store keeps a local copy kept by the
channel (`Mirror`), so the guard's check before each send costs no round trip. A change made
while Redis does not answer is kept in the copy (logged as `fleet.fallback`) and written for
the fleet when Redis is back.
"""

from __future__ import annotations

import builtins
import json
import threading
from typing import Any

from wa_auth._sqlite import dumps
from wa_auth.errors import StateUnavailableError
from wa_auth.events import Events
from wa_auth.fleet._connection import RedisConnection, fell_back, in_child_after_fork, text
from wa_auth.fleet._mirror import Mirror
from wa_auth.pacing import Pause
from wa_auth.state._pauses import read_pause

__all__ = ["RedisPauseStore"]


_Key = tuple[str, str]


class RedisPauseStore:
    """A `PauseStore` on Redis with a local copy: `get` and `list` do no I/O.

    Args:
        connection: The Redis (`RedisState.connection`).
        wait: Seconds the constructor waits for the first load (None: the timeout).
        events: Where a fall-back is told (`StateFellBack`); None: logged.
    """

    def __init__(
        self,
        connection: RedisConnection,
        *,
        wait: float | None = None,
        events: Events | None = None,
    ) -> None:
        self._redis = connection
        self.events = events
        self._hash = connection.key("pauses")
        self._local: dict[_Key, Pause] = {}
        #: Changes Redis has not taken yet (None: a clear), written when it is back.
        self._dirty: dict[_Key, Pause | None] = {}
        self._lock = threading.Lock()
        #: Changes kept in this process only because Redis did not answer.
        self.fallbacks = 0
        self._mirror = Mirror(
            connection,
            self._hash,
            reload=self._reload,
            apply=self._apply,
            name="wa_auth-pauses",
            wait=wait,
        )
        in_child_after_fork(self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a lock the parent's listener held stays held here

    @property
    def synced(self) -> threading.Event:
        """Set while the copy is kept by Redis; cleared while Redis is lost."""
        self._mirror.revive()
        return self._mirror.synced

    # --- reads: the local copy ----------------------------------------------------------------

    def get(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None (no I/O)."""
        self._mirror.revive()
        return self._local.get((kind, phone_number_id))

    def list(self) -> builtins.list[Pause]:
        """Return every stored pause (no I/O)."""
        self._mirror.revive()
        with self._lock:
            pauses = list(self._local.values())
        return sorted(pauses, key=lambda p: (p.kind, p.phone_number_id))

    async def aget(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None (no I/O)."""
        return self.get(kind, phone_number_id)

    async def alist(self) -> builtins.list[Pause]:
        """Return every stored pause (no I/O)."""
        return self.list()

    # --- writes: the copy at once, then Redis and the channel ---------------------------------

    @staticmethod
    def _checked(pause: Pause) -> Pause:
        if not isinstance(pause, Pause):
            raise TypeError(f"a pause store holds Pause values, got {type(pause).__name__}")
        return pause

    def _keep(self, key: _Key, pause: Pause | None) -> None:
        with self._lock:
            if pause is None:
                self._local.pop(key, None)
            else:
                self._local[key] = pause

    @staticmethod
    def _field(key: _Key) -> str:
        return f"{key[0]}:{key[1]}"

    def _message(self, key: _Key, pause: Pause | None) -> str:
        if pause is None:
            return dumps({"op": "clear", "kind": key[0], "phone_number_id": key[1]})
        return dumps({"op": "put", "pause": pause.to_dict()})

    def _queue(self, pipe: Any, key: _Key, pause: Pause | None) -> None:
        if pause is None:
            pipe.hdel(self._hash, self._field(key))
        else:
            pipe.hset(self._hash, self._field(key), dumps(pause.to_dict()))
        pipe.publish(self._hash, self._message(key, pause))

    def _fell_back(self, exc: StateUnavailableError, key: _Key, pause: Pause | None) -> None:
        with self._lock:
            self._dirty[key] = pause
        self.fallbacks += 1
        fell_back(self.events, "pauses", exc, self.fallbacks)
        self._mirror.resync()  # the next load writes the change for the fleet

    def _write(self, key: _Key, pause: Pause | None) -> None:
        self._mirror.revive()
        self._keep(key, pause)
        try:
            with self._redis.calling("storing a pause"):
                pipe = self._redis.client.pipeline(transaction=True)
                self._queue(pipe, key, pause)
                pipe.execute()
        except StateUnavailableError as exc:
            self._fell_back(exc, key, pause)

    async def _awrite(self, key: _Key, pause: Pause | None) -> None:
        self._mirror.revive()
        self._keep(key, pause)
        try:
            with self._redis.calling("storing a pause"):
                pipe = self._redis.aclient().pipeline(transaction=True)
                self._queue(pipe, key, pause)
                await pipe.execute()
        except StateUnavailableError as exc:
            self._fell_back(exc, key, pause)

    def put(self, pause: Pause) -> None:
        """Store *pause* for the fleet, replacing the number's pause of the same kind."""
        self._write((self._checked(pause).kind, pause.phone_number_id), pause)

    def clear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind, for the fleet (`resume()` anywhere)."""
        self._write((kind, phone_number_id), None)

    async def aput(self, pause: Pause) -> None:
        """Store *pause* for the fleet."""
        await self._awrite((self._checked(pause).kind, pause.phone_number_id), pause)

    async def aclear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind, for the fleet."""
        await self._awrite((kind, phone_number_id), None)

    # --- the mirror ---------------------------------------------------------------------------

    def _apply(self, raw: bytes) -> None:
        try:
            op = json.loads(raw)
        except ValueError:
            return
        if not isinstance(op, dict):
            return
        if op.get("op") == "clear":
            kind, number = op.get("kind"), op.get("phone_number_id")
            if isinstance(kind, str) and isinstance(number, str):
                self._keep((kind, number), None)
        elif op.get("op") == "put":
            pause = read_pause(dumps(op.get("pause")))
            if pause is not None:
                self._keep((pause.kind, pause.phone_number_id), pause)

    def _reload(self) -> None:
        client = self._redis.client
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        if dirty:  # what this process changed while Redis was down reaches the fleet first
            pipe = client.pipeline(transaction=True)
            for key, pause in dirty.items():
                self._queue(pipe, key, pause)
            try:
                pipe.execute()
            except Exception:
                with self._lock:  # kept for the next load (a newer change wins)
                    self._dirty = {**dirty, **self._dirty}
                raise
        found: dict[_Key, Pause] = {}
        for value in client.hvals(self._hash):
            raw = text(value)
            pause = read_pause(raw) if raw is not None else None
            if pause is not None:
                found[pause.kind, pause.phone_number_id] = pause
        with self._lock:
            self._local = found

    def close(self) -> None:
        """Stop the listener thread; idempotent."""
        self._mirror.close()

    def __repr__(self) -> str:
        return f"RedisPauseStore({self._redis.address!r}, pauses={len(self._local)})"
