"""`WebhookLedger`: what a receiver remembers to apply each webhook event once, in order.

Meta delivers at least once (a redelivery for up to 7 days while the endpoint fails) and not
in order, so a receiver keeps two things: the dedupe keys it has seen, for a window, and the
furthest status of each message. Both are kept through compare-and-set operations, each
atomic per key, so a store shared by processes needs no lock around them:

- `claim(key)`: record *key*; False when it was already recorded and has not expired. In SQL,
  `INSERT ... ON CONFLICT (key) DO UPDATE SET seen_at = :now WHERE seen_at <= :now - :window`
  and the count of changed rows; in Redis, `SET key 1 NX PX window`.
- `advance(message_id, order)`: raise the message's furthest order to *order* when it is
  higher; return the order held before (None: none). In SQL, one transaction of `SELECT` and
  an upsert with `MAX(order, :order)`; in Redis, a Lua script (`GET`, compare, `SET ... PX`).
- `release(key)` and `retreat(message_id, order, previous)` undo them when applying failed:
  forget the key (so Meta's redelivery is applied), and put the message back to *previous*
  only if it still holds *order* (a later status recorded meanwhile stays).

Every method has a blocking form and an `a`-prefixed coroutine form, like the project's other
stores. `MemoryWebhookLedger` is the one in this process's memory; `SqliteWebhookLedger`
(`_sqlite_ledger`) the one in a SQLite file that processes share.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

from wa_auth.errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_KEYS",
    "DEFAULT_WINDOW",
    "MemoryWebhookLedger",
    "WebhookLedger",
    "check_bounds",
]

#: Meta retries a webhook for up to 7 days: a key remembered that long catches every
#: redelivery.
DEFAULT_WINDOW: Final = 7 * 24 * 3600.0
#: Most keys (and, separately, most messages) remembered; the oldest go first.
DEFAULT_MAX_KEYS: Final = 100_000


def check_bounds(window: object, max_keys: object) -> tuple[float, int]:
    """Return *window* and *max_keys* checked, as every ledger takes them.

    Raises:
        ConfigurationError: *window* is not a positive finite number or *max_keys* not a
            positive integer.
    """
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, float))
        or not 0 < window < float("inf")
    ):
        raise ConfigurationError("window must be a positive number of seconds")
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
        raise ConfigurationError("max_keys must be a positive integer")
    return float(window), max_keys


@runtime_checkable
class WebhookLedger(Protocol):
    """The store of seen webhook keys and of each message's furthest status.

    Each operation is atomic per key; see the module docstring for its SQL and Redis forms.
    Keys and message ids are Meta's ids and digests, never secrets or message text.
    """

    def claim(self, key: str) -> bool:
        """Record *key*; return False when it was recorded already, within the window."""
        ...

    def advance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        ...

    def release(self, key: str) -> None:
        """Forget *key*, so that the next delivery of it is claimed again."""
        ...

    def retreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        ...

    async def aclaim(self, key: str) -> bool:
        """Record *key*; return False when it was recorded already, within the window."""
        ...

    async def aadvance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        ...

    async def arelease(self, key: str) -> None:
        """Forget *key*."""
        ...

    async def aretreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        ...


class MemoryWebhookLedger:
    """The webhook ledger in this process's memory, bounded in time and in size.

    Args:
        window: Seconds a key (and a message's furthest status) is remembered
            (`DEFAULT_WINDOW`, 7 days: as long as Meta retries).
        max_keys: Most keys remembered, and most messages; past it the oldest is forgotten
            first, so a redelivery of it older than the last *max_keys* events would be
            applied again (`DEFAULT_MAX_KEYS`).
        clock: The clock of the window, in seconds.

    Raises:
        ConfigurationError: *window* is not a positive number or *max_keys* not a positive
            integer.
    """

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.max_keys = check_bounds(window, max_keys)
        self._clock = clock
        #: key -> when it expires; in expiry order, since the window is the same for all.
        self._keys: OrderedDict[str, float] = OrderedDict()
        #: message id -> (its furthest order, when that expires).
        self._furthest: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _locked(self) -> threading.Lock:
        if self._pid != os.getpid():  # a lock held by a parent's thread at fork stays held
            self._lock = threading.Lock()
            self._pid = os.getpid()
        return self._lock

    def _expire(self, now: float) -> None:
        keys, furthest = self._keys, self._furthest
        while keys and next(iter(keys.values())) <= now:
            keys.popitem(last=False)
        while furthest and next(iter(furthest.values()))[1] <= now:
            furthest.popitem(last=False)

    def claim(self, key: str) -> bool:
        """Record *key*; return False when it was recorded already, within the window."""
        with self._locked():
            now = self._clock()
            self._expire(now)
            if key in self._keys:
                return False
            self._keys[key] = now + self.window
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return True

    def advance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order to *order* if higher; return the one before."""
        with self._locked():
            now = self._clock()
            self._expire(now)
            held = self._furthest.get(message_id)
            previous = None if held is None else held[0]
            if previous is None or order > previous:
                self._furthest.pop(message_id, None)
                self._furthest[message_id] = (order, now + self.window)
                if len(self._furthest) > self.max_keys:
                    self._furthest.popitem(last=False)
            return previous

    def release(self, key: str) -> None:
        """Forget *key*, so that the next delivery of it is claimed again."""
        with self._locked():
            self._keys.pop(key, None)

    def retreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous*, only if it still holds *order*."""
        with self._locked():
            held = self._furthest.get(message_id)
            if held is None or held[0] != order:
                return
            if previous is None:
                del self._furthest[message_id]
            else:
                self._furthest[message_id] = (previous, held[1])

    async def aclaim(self, key: str) -> bool:
        """Record *key* (no I/O)."""
        return self.claim(key)

    async def aadvance(self, message_id: str, order: int) -> int | None:
        """Raise the message's furthest order (no I/O)."""
        return self.advance(message_id, order)

    async def arelease(self, key: str) -> None:
        """Forget *key* (no I/O)."""
        self.release(key)

    async def aretreat(self, message_id: str, order: int, previous: int | None) -> None:
        """Put the message back to *previous* if it still holds *order* (no I/O)."""
        self.retreat(message_id, order, previous)

    def __len__(self) -> int:
        """Return how many keys are remembered (expired ones included until the next call)."""
        return len(self._keys)

    def __repr__(self) -> str:
        return (
            f"MemoryWebhookLedger(keys={len(self._keys)}, messages={len(self._furthest)}, "
            f"window={self.window:g})"
        )
