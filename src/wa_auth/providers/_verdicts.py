"""`TokenVerdicts`: the one place a dead token is remembered, per fingerprint, with a TTL."""

from __future__ import annotations

import builtins
import copy
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

from wa_auth.errors import ApiError, ConfigurationError

__all__ = ["DEFAULT_VERDICT_TTL", "TokenVerdicts", "VerdictStore"]

#: How long a verdict lasts. Meta never revives an expired or revoked token, so the TTL only
#: bounds how long a misclassified answer can block a token (and the store's memory): an hour
#: is short enough to self-heal after an incident and long enough to spare Meta thousands of
#: doomed calls.
DEFAULT_VERDICT_TTL: Final = 3600.0
#: Entries kept at most; the oldest verdict is dropped first.
DEFAULT_MAX_ENTRIES: Final = 10_000


@runtime_checkable
class VerdictStore(Protocol):
    """The interface of a verdict store: memory here, SQLite for the CLI, Redis for a fleet.

    Every method has a blocking form and an `a`-prefixed coroutine form, so a store doing
    network I/O never blocks an event loop. Keys are token fingerprints, never tokens.
    """

    def get(self, fingerprint: str) -> ApiError | None:
        """Return the classified error that proved the token dead, or None."""
        ...

    def record(self, fingerprint: str, error: ApiError) -> None:
        """Remember that the token with *fingerprint* is dead because of *error*."""
        ...

    def forget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint* (an operator knows better)."""
        ...

    async def aget(self, fingerprint: str) -> ApiError | None:
        """Return the classified error that proved the token dead, or None."""
        ...

    async def arecord(self, fingerprint: str, error: ApiError) -> None:
        """Remember that the token with *fingerprint* is dead because of *error*."""
        ...

    async def aforget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint*."""
        ...


class TokenVerdicts:
    """An in-memory verdict store, shared by the clients and guards that are given it.

    Args:
        ttl: Seconds a verdict lasts (`DEFAULT_VERDICT_TTL`).
        max_entries: Most verdicts kept; the oldest goes first.
        monotonic: The clock of the TTL.
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_VERDICT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ConfigurationError("ttl must be positive")
        self.ttl = ttl
        self._max = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[float, ApiError]] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _locked(self) -> threading.Lock:
        if self._pid != os.getpid():  # a lock held by a parent's thread at fork stays held
            self._lock = threading.Lock()
            self._pid = os.getpid()
        return self._lock

    def get(self, fingerprint: str) -> ApiError | None:
        """Return the classified error that proved the token dead, or None."""
        if not self._entries:  # the common case, without taking the lock
            return None
        with self._locked():
            entry = self._entries.get(fingerprint)
            if entry is None:
                return None
            until, error = entry
            if self._monotonic() >= until:
                del self._entries[fingerprint]
                return None
            return error

    def record(self, fingerprint: str, error: ApiError) -> None:
        """Remember that the token with *fingerprint* is dead because of *error*.

        A traceback-free copy is kept, so the store holds no frames (and no request objects).
        """
        kept = copy.copy(error)
        kept.__traceback__ = None
        with self._locked():
            self._entries.pop(fingerprint, None)
            self._entries[fingerprint] = (self._monotonic() + self.ttl, kept)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, fingerprint: str) -> None:
        """Drop the verdict on *fingerprint*."""
        with self._locked():
            self._entries.pop(fingerprint, None)

    async def aget(self, fingerprint: str) -> ApiError | None:
        """Return the classified error that proved the token dead, or None (no I/O)."""
        return self.get(fingerprint)

    async def arecord(self, fingerprint: str, error: ApiError) -> None:
        """Remember a verdict (no I/O)."""
        self.record(fingerprint, error)

    async def aforget(self, fingerprint: str) -> None:
        """Drop a verdict (no I/O)."""
        self.forget(fingerprint)

    def list(self) -> builtins.list[tuple[str, ApiError, float]]:
        """Return every verdict in force as `(fingerprint, error, expires_at)`, newest first.

        *expires_at* is Unix seconds (the TTL runs on the monotonic clock; this is its end
        as of now), for operators: `wa-auth serve`'s `POST /state/clear` lists what it drops.
        """
        with self._locked():
            now = self._monotonic()
            live = [(fp, until, error) for fp, (until, error) in self._entries.items()]
        wall = time.time()
        return [
            (fp, error, wall + until - now) for fp, until, error in reversed(live) if until > now
        ]

    async def alist(self) -> builtins.list[tuple[str, ApiError, float]]:
        """Return every verdict in force (see `list`; no I/O)."""
        return self.list()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TokenVerdicts(entries={len(self._entries)}, ttl={self.ttl!r})"
