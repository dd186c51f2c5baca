"""`RedisWebhookLedger`: a redelivery reaching another webhook processor is still dropped.

The `WebhookLedger` protocol on Redis, each operation atomic per key: `claim` is
`SET <ns>:webhook:key:<key> 1 NX PX <window>`, `release` its `DEL`; a message's furthest
status is `<ns>:webhook:message:<message id>` (an integer order), raised by `advance` and put
back by `retreat` in one Lua script each. Keys are Meta's ids and the event keys' digests,
never a secret or message text; each expires after the window.

`owned(owner)` is the same ledger seen by one stored delivery (`wa-auth serve`), whose claims
and advances are idempotent for that owner: a claim holds the owner instead of `1` and is
accepted again for the same owner; an advance that raised the message also records its answer
(`<ns>:webhook:advanced:<message id>:<order>:<owner>`, the order held before), and the same
owner asking again for the same order gets that answer, whatever was advanced since. So a
delivery whose claims reached Redis but whose forwards were never committed (a kill between
the two stores) is decided the same way when it is processed again, and nobody else's
redelivery gets through.
"""

from __future__ import annotations

from typing import Final

from wa_auth.errors import ConfigurationError
from wa_auth.fleet._connection import RedisConnection
from wa_auth.webhooks._ledger import DEFAULT_WINDOW

__all__ = ["OwnedWebhookLedger", "RedisWebhookLedger"]

#: KEYS: the message; ARGV: order, window (ms). Returns the order held before, or nil.
_ADVANCE: Final = """
local held = redis.call('GET', KEYS[1])
local previous = held and tonumber(held) or nil
if previous == nil or tonumber(ARGV[1]) > previous then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if previous == nil then return false end
return previous
"""

#: KEYS: the message; ARGV: order, previous ('' for none). Only if it still holds *order*.
_RETREAT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
end
return 1
"""

#: KEYS: the key; ARGV: owner, window (ms). 1: claimed now or already by this owner.
_CLAIM_AS: Final = """
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if held == ARGV[1] then return 1 end
return 0
"""

#: KEYS: the message, the owner's answer for this order; ARGV: order, window (ms). Returns
#: the order held before (nil: none); an advance is recorded as its owner's answer, so the
#: same owner advancing to the same order again gets the same answer, whatever came since.
_ADVANCE_AS: Final = """
local mine = redis.call('GET', KEYS[2])
if mine then
  if mine == '' then return false end
  return tonumber(mine)
end
local held = redis.call('GET', KEYS[1])
local previous = held and tonumber(held) or nil
if previous == nil or tonumber(ARGV[1]) > previous then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], previous and tostring(previous) or '', 'PX', ARGV[2])
end
if previous == nil then return false end
return previous
"""


def _owner(owner: object) -> str:
    if not isinstance(owner, str) or not owner or owner == "1" or any(c in owner for c in " :\n"):
        raise ConfigurationError(f"an owner is a word other than '1', without ':', got {owner!r}")
    return owner


def _order(order: object) -> int:
    if isinstance(order, bool) or not isinstance(order, int):
        raise ConfigurationError(f"a status order is an integer, got {order!r}")
    return order


class RedisWebhookLedger:
    """A `WebhookLedger` on Redis, shared by every webhook processor of the fleet.

    Args:
        connection: The Redis (`RedisState.connection`).
        window: Seconds a key and a message's furthest status are remembered
            (`DEFAULT_WINDOW`, 7 days: as long as Meta retries).

    Raises:
        ConfigurationError: *window* is not a positive number.

    Every method raises `StateUnavailableError` when Redis does not answer: a receiver then
    answers Meta with an error, and Meta delivers again (nothing is lost, nothing applied
    twice).
    """

    def __init__(self, connection: RedisConnection, *, window: float = DEFAULT_WINDOW) -> None:
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not window > 0:
            raise ConfigurationError("window must be a positive number of seconds")
        self.window = float(window)
        self._ms = max(int(self.window * 1000), 1)
        self._redis = connection

    def _key(self, key: str) -> str:
        return self._redis.key("webhook", "key", key)

    def _message(self, message_id: str) -> str:
        return self._redis.key("webhook", "message", message_id)

    def _advanced(self, message_id: str, order: int, owner: str) -> list[str]:
        """The keys of an owner's advance: the message, and the owner's answer for *order*."""
        answer = self._redis.key("webhook", "advanced", message_id, str(order), owner)
        return [self._message(message_id), answer]

    @staticmethod
    def _previous(answer: object) -> int | None:
        return None if answer is None else int(answer)  # type: ignore[call-overload]

    def claim(self, key: str) -> bool:
        """Record *key*; return False when it was recorded already, within the window."""
        with self._redis.calling("claiming a webhook key"):
            return bool(self._redis.client.set(self._key(key), b"1", nx=True, px=self._ms))

    def advance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        with self._redis.calling("advancing a message's status"):
            script = self._redis.script(_ADVANCE)
            answer = script([self._message(message_id)], [_order(order), self._ms])
        return self._previous(answer)

    def release(self, key: str) -> None:
        """Forget *key*, so that the next delivery of it is claimed again."""
        with self._redis.calling("releasing a webhook key"):
            self._redis.client.delete(self._key(key))

    def retreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        args = [_order(order), "" if previous is None else _order(previous)]
        with self._redis.calling("retreating a message's status"):
            self._redis.script(_RETREAT)([self._message(message_id)], args)

    async def aclaim(self, key: str) -> bool:
        """Record *key*; return False when it was recorded already, within the window."""
        with self._redis.calling("claiming a webhook key"):
            client = self._redis.aclient()
            return bool(await client.set(self._key(key), b"1", nx=True, px=self._ms))

    async def aadvance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        with self._redis.calling("advancing a message's status"):
            script = self._redis.ascript(_ADVANCE)
            answer = await script([self._message(message_id)], [_order(order), self._ms])
        return self._previous(answer)

    async def arelease(self, key: str) -> None:
        """Forget *key*."""
        with self._redis.calling("releasing a webhook key"):
            await self._redis.aclient().delete(self._key(key))

    async def aretreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        args = [_order(order), "" if previous is None else _order(previous)]
        with self._redis.calling("retreating a message's status"):
            script = self._redis.ascript(_RETREAT)
            await script([self._message(message_id)], args)

    def claim_as(self, key: str, owner: str) -> bool:
        """Record *key* for *owner*; False when another owner (or a plain claim) holds it."""
        with self._redis.calling("claiming a webhook key"):
            script = self._redis.script(_CLAIM_AS)
            return bool(script([self._key(key)], [_owner(owner), self._ms]))

    def advance_as(self, message_id: str, order: int, owner: str) -> int | None:
        """`advance` for *owner*: asked again for the same order, the same answer."""
        keys = self._advanced(message_id, _order(order), _owner(owner))
        with self._redis.calling("advancing a message's status"):
            answer = self._redis.script(_ADVANCE_AS)(keys, [order, self._ms])
        return self._previous(answer)

    async def aclaim_as(self, key: str, owner: str) -> bool:
        """Record *key* for *owner*; False when another owner (or a plain claim) holds it."""
        with self._redis.calling("claiming a webhook key"):
            script = self._redis.ascript(_CLAIM_AS)
            return bool(await script([self._key(key)], [_owner(owner), self._ms]))

    async def aadvance_as(self, message_id: str, order: int, owner: str) -> int | None:
        """`aadvance` for *owner*: asked again for the same order, the same answer."""
        keys = self._advanced(message_id, _order(order), _owner(owner))
        with self._redis.calling("advancing a message's status"):
            answer = await self._redis.ascript(_ADVANCE_AS)(keys, [order, self._ms])
        return self._previous(answer)

    def owned(self, owner: str) -> OwnedWebhookLedger:
        """Return this ledger as *owner* sees it (`OwnedWebhookLedger`).

        Raises:
            ConfigurationError: *owner* is empty, `1`, or holds `|`.
        """
        return OwnedWebhookLedger(self, _owner(owner))

    def __repr__(self) -> str:
        return f"RedisWebhookLedger({self._redis.address!r}, window={self.window:g})"


class OwnedWebhookLedger:
    """A `RedisWebhookLedger` seen by one owner: its claims and advances are idempotent.

    A claim of a key this owner holds is accepted again, and an advance to the order this
    owner set answers the order held before it, as the first time did (see the module
    docstring). `release` and `retreat` are the shared ledger's.
    """

    def __init__(self, ledger: RedisWebhookLedger, owner: str) -> None:
        self.ledger = ledger
        self.owner = owner

    def claim(self, key: str) -> bool:
        """Record *key* for this owner; False when another owner holds it."""
        return self.ledger.claim_as(key, self.owner)

    def advance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        return self.ledger.advance_as(message_id, order, self.owner)

    def release(self, key: str) -> None:
        """Forget *key*."""
        self.ledger.release(key)

    def retreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        self.ledger.retreat(message_id, order, previous)

    async def aclaim(self, key: str) -> bool:
        """Record *key* for this owner; False when another owner holds it."""
        return await self.ledger.aclaim_as(key, self.owner)

    async def aadvance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        return await self.ledger.aadvance_as(message_id, order, self.owner)

    async def arelease(self, key: str) -> None:
        """Forget *key*."""
        await self.ledger.arelease(key)

    async def aretreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        await self.ledger.aretreat(message_id, order, previous)

    def __repr__(self) -> str:
        return f"OwnedWebhookLedger({self.ledger!r}, owner={self.owner!r})"
