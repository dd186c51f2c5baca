"""`RedisRotation`: which candidate a rotating provider uses, decided once for the fleet.

A rotation is the hash `<ns>:rotation:<name>` of `version` (an integer, 0: never set),
`active` (the candidate's token fingerprint, never the token) and `previous` (the one before:
where a rollback goes). `compare_and_set` changes it only if the version is the one the caller
read, in one Lua script: of two workers racing to promote, one wins and the other reads the
winner's choice (no split brain).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from wa_auth.errors import ConfigurationError
from wa_auth.fleet._connection import RedisConnection, text
from wa_auth.fleet._mirror import Mirror

__all__ = ["RedisRotation", "RotationRecord"]

#: KEYS: the rotation; ARGV: expected version, new active fingerprint, channel, name.
#: Returns the new version, or 0 when another worker changed it first; tells the channel.
_CAS: Final = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[1]) then return 0 end
local active = redis.call('HGET', KEYS[1], 'active') or ''
redis.call('HSET', KEYS[1], 'version', version + 1, 'active', ARGV[2], 'previous', active)
redis.call('PUBLISH', ARGV[3], cjson.encode({name = ARGV[4], version = version + 1,
  active = ARGV[2], previous = active}))
return version + 1
"""


@attrs.frozen
class RotationRecord:
    """A rotation's state: its version, the active candidate's fingerprint, the one before."""

    version: int
    active: str | None
    previous: str | None


_NEVER: Final = RotationRecord(0, None, None)


def _record(answer: Mapping[Any, Any]) -> RotationRecord:
    found = {text(k): text(v) for k, v in answer.items()}
    raw = found.get("version") or "0"
    return RotationRecord(
        int(raw) if raw.isascii() and raw.isdigit() else 0,
        found.get("active") or None,
        found.get("previous") or None,
    )


class RedisRotation:
    """The active candidate of rotating providers, shared by the fleet, changed by CAS.

    Give it to `RotatingTokenProvider(..., shared=state.rotation)`: `peek` reads a local
    copy kept by the channel `<ns>:rotation` (no I/O on the provider's `get_token`).

    Args:
        connection: The Redis (`RedisState.connection`).
        wait: Seconds the constructor waits for the first load (None: the timeout).

    Every method but `peek` raises `StateUnavailableError` when Redis does not answer.
    """

    def __init__(self, connection: RedisConnection, *, wait: float | None = None) -> None:
        self._redis = connection
        self._channel = connection.key("rotation")
        self._local: dict[str, RotationRecord] = {}
        self._mirror = Mirror(
            connection,
            self._channel,
            reload=self._reload,
            apply=self._apply,
            name="wa_auth-rotation",
            wait=wait,
        )

    def peek(self, name: str) -> RotationRecord:
        """Return the rotation *name* as this process last heard it (no I/O)."""
        self._mirror.revive()
        return self._local.get(name, _NEVER)

    def _keep(self, name: str, record: RotationRecord) -> None:
        held = self._local.get(name, _NEVER)
        if record.version > held.version:
            self._local = {**self._local, name: record}

    def _apply(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            found = {k.encode(): str(v).encode() for k, v in data.items() if v is not None}
            self._keep(data["name"], _record(found))

    def _reload(self) -> None:
        client = self._redis.client
        prefix = self._redis.key("rotation", "")
        for key in client.scan_iter(match=prefix + "*", count=1000):
            name = key.decode("utf-8", "replace")[len(prefix) :]
            self._keep(name, _record(client.hgetall(key)))

    def close(self) -> None:
        """Stop the listener thread; idempotent."""
        self._mirror.close()

    def _key(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a rotation's name is a non-empty string, got {name!r}")
        return self._redis.key("rotation", name)

    @staticmethod
    def _checked(version: int, active: str) -> list[int | str]:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ConfigurationError(f"a rotation's version is an integer >= 0, got {version!r}")
        if not isinstance(active, str) or not active.startswith("sha256:"):
            raise ConfigurationError("a rotation names a candidate by its token fingerprint")
        return [version, active]

    def get(self, name: str) -> RotationRecord:
        """Return the rotation *name* (version 0 and no active candidate: never set)."""
        with self._redis.calling("reading a rotation"):
            return _record(self._redis.client.hgetall(self._key(name)))

    def compare_and_set(self, name: str, version: int, active: str) -> RotationRecord | None:
        """Make *active* (a fingerprint) the rotation's candidate if it is still at *version*.

        Returns:
            The new record, or None when another worker changed it first (read it again).
        """
        args = self._checked(version, active)
        with self._redis.calling("changing a rotation"):
            script = self._redis.script(_CAS)
            won = int(script([self._key(name)], [*args, self._channel, name]))
            if not won:
                return None
            record = _record(self._redis.client.hgetall(self._key(name)))
        self._keep(name, record)
        return record

    async def aget(self, name: str) -> RotationRecord:
        """Return the rotation *name* (see `get`)."""
        with self._redis.calling("reading a rotation"):
            return _record(await self._redis.aclient().hgetall(self._key(name)))

    async def acompare_and_set(self, name: str, version: int, active: str) -> RotationRecord | None:
        """Make *active* the rotation's candidate if it is still at *version* (see above)."""
        args = self._checked(version, active)
        with self._redis.calling("changing a rotation"):
            client = self._redis.aclient()
            won = int(
                await self._redis.ascript(_CAS)([self._key(name)], [*args, self._channel, name])
            )
            if not won:
                return None
            record = _record(await client.hgetall(self._key(name)))
        self._keep(name, record)
        return record

    def __repr__(self) -> str:
        return f"RedisRotation({self._redis.address!r})"
