"""The refresh engine's values: its policy, a fetched token, the cache's state, one flight.

The state the `Refresher` (in `providers/_refresh.py`) swaps under its lock: `CacheState` (one
immutable snapshot of the cached token and its deadlines) and `Flight` (one refresh in progress,
whose outcome every waiting thread and task receives).
"""

from __future__ import annotations

import contextlib
import copy
import enum
import math
import threading
import time
from typing import TYPE_CHECKING, Final

import attrs

from wa_auth.errors import TokenUnavailableError

if TYPE_CHECKING:
    import asyncio

    from wa_auth.providers._base import Token

__all__ = [
    "ABANDON_CHECK_INTERVAL",
    "FLIGHT_WAIT_TIMEOUT",
    "CacheState",
    "Fetched",
    "Flight",
    "RefreshPolicy",
    "TokenState",
    "cached",
    "copy_error",
    "gave_up",
    "resolve",
    "settle",
]


#: How long a caller waits for another caller's refresh before giving up. A refresh is a file
#: read or a few Vault round trips; 30 s is far beyond either and still bounds a wedged source.
FLIGHT_WAIT_TIMEOUT: Final = 30.0
#: How often a waiting caller looks whether the event loop leading its refresh was closed: no
#: loop has a "closed" callback, so waits are cut in slices this long.
ABANDON_CHECK_INTERVAL: Final = 0.5


@attrs.frozen(kw_only=True)
class RefreshPolicy:
    """When a cached token is re-read, in seconds; the defaults and their reasons are below.

    Args:
        advisory: Before expiry, one caller refreshes early while everyone keeps the current
            token; a failure keeps serving it and backs off. Ten minutes gives a failing source
            several attempts before the token is really in danger.
        advisory_fraction: The advisory window is at most this share of the token's remaining
            lifetime (a 15-minute token would otherwise refresh on every call:
            deadline-cloud #431). 0.2 means "refresh at about 80 % of the lifetime".
        mandatory: Before expiry, callers wait for a refresh and fail when it fails. One
            minute covers clock skew and a slow request, so a token is not sent to Meta only
            to expire on the way (google-auth #787).
        mandatory_fraction: The mandatory window is at most this share of the lifetime.
        jitter: Each token's advisory window is stretched by a random share up to this, and
            re-check intervals shortened by it, so a fleet does not refresh in lockstep
            (google-cloud-rust #1587).
        recheck_interval: Re-read a token after this long even when it has no expiry
            (googleworkspace/cli #904: a cache with no expiry must still go stale).
        min_retry_interval: After a refresh forced by `invalidate` returns the same token, more
            invalidations of it are ignored for this long: no refresh loop when the source
            has nothing newer (google-auth #863; Azure's 30 s refresh retry delay).
        retry_backoff: First pause after a failed advisory refresh; doubles per failure.
        max_retry_backoff: Cap of that pause.
        max_stale: How long past its re-check a token may be served while every refresh fails
            (the source is down); after that callers wait for the source and get
            `TokenUnavailableError`. None: until the token's own expiry.
        flight_timeout: How long a caller, thread or task, waits for a refresh that another
            caller leads before it gets `TokenUnavailableError` (`FLIGHT_WAIT_TIMEOUT`).
    """

    advisory: float = 600.0
    advisory_fraction: float = 0.2
    mandatory: float = 60.0
    mandatory_fraction: float = 0.1
    jitter: float = 0.1
    recheck_interval: float = 60.0
    min_retry_interval: float = 30.0
    retry_backoff: float = 1.0
    max_retry_backoff: float = 60.0
    max_stale: float | None = 3600.0
    flight_timeout: float = FLIGHT_WAIT_TIMEOUT


@attrs.frozen
class Fetched:
    """What a provider's load returns: the token, and optionally its own re-check interval.

    Args:
        token: The token read from the source.
        recheck_after: Seconds until the next re-read, overriding the policy (for example a
            KV v1 secret's `ttl`).
    """

    token: Token
    recheck_after: float | None = None


class TokenState(enum.Enum):
    """How usable the cached token is now (google-auth's `TokenState`)."""

    #: Serve it: no refresh and no re-check is due.
    FRESH = "fresh"
    #: Serve it, and let one caller refresh (advisory window, re-check due): a failed refresh
    #: keeps serving it.
    STALE = "stale"
    #: Do not serve it before a refresh: none yet, invalidated, in the mandatory window, or
    #: served too long past its re-check.
    INVALID = "invalid"


@attrs.frozen
class CacheState:
    token: Token | None = None
    #: monotonic: after this, re-read (STALE).
    recheck_at: float = 0.0
    #: monotonic: after this, the cached token may no longer be served without the source.
    stale_limit: float = math.inf
    #: wall clock: inside the advisory window (STALE) from here.
    advisory_at: float = math.inf
    #: wall clock: inside the mandatory window (INVALID) from here.
    mandatory_at: float = math.inf
    invalidated: bool = False
    #: A forced refresh returned this fingerprint again: ignore invalidations until `quiet_until`.
    rejected: str | None = None
    quiet_until: float = 0.0
    #: monotonic: no advisory refresh before this (after failures).
    backoff_until: float = 0.0
    failures: int = 0

    def rechecked(self, recheck_at: float, stale_limit: float) -> CacheState:
        """Return this state with new re-check deadlines (`attrs.evolve` costs 2 µs here)."""
        return CacheState(
            self.token,
            recheck_at,
            stale_limit,
            self.advisory_at,
            self.mandatory_at,
            self.invalidated,
            self.rejected,
            self.quiet_until,
            self.backoff_until,
            self.failures,
        )


class Flight:
    """One refresh in progress; its outcome is handed to every thread and task waiting on it.

    *loop* is the event loop of the task that leads it (None for a thread). When that loop is
    closed with the task still pending, the flight is `abandoned`: nothing will ever finish it.
    """

    def __init__(self, forced: bool, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.forced = forced
        self.loop = loop
        self.done = threading.Event()
        self.token: Token | None = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def abandoned(self) -> bool:
        """Return True when the leading task's loop is closed and the flight not finished."""
        return self.loop is not None and self.loop.is_closed() and not self.done.is_set()

    def finish(self, token: Token | None, error: BaseException | None) -> None:
        with self._lock:
            if self.done.is_set():
                return  # a collected task of an abandoned flight: its outcome went first
            self.token, self.error = token, error
            self.done.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(resolve, fut)

    def outcome(self, *, leader: bool = False) -> Token:
        if self.error is not None:
            raise self.error if leader else copy_error(self.error)
        assert self.token is not None
        return self.token

    def wait(self, timeout: float, why: str | None = None) -> bool:
        """Block until the flight has finished (another thread or loop leads it).

        *why* names what set *timeout*, when it is not `flight_timeout` (a caller's deadline).

        Returns:
            True when it finished; False when it was abandoned (lead it again).

        Raises:
            TokenUnavailableError: It did not finish within *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self.done.wait(max(0.0, min(ABANDON_CHECK_INTERVAL, left))):
                return True
            if self.abandoned():
                return False
            if left <= 0:
                raise gave_up(timeout, why)

    async def await_(self, timeout: float, why: str | None = None) -> bool:
        """Wait on the running loop until the flight has finished; as `wait`, without blocking.

        Raises:
            TokenUnavailableError: It did not finish within *timeout* seconds.
        """
        import asyncio  # the async paths only: a blocking process never loads it

        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self.done.is_set():
                self._waiters.append((loop, fut))
            else:
                fut.set_result(None)
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            await asyncio.wait((fut,), timeout=max(0.0, min(ABANDON_CHECK_INTERVAL, left)))
            if fut.done():
                return True
            if self.abandoned():
                return False
            if left <= 0:
                raise gave_up(timeout, why)


def gave_up(timeout: float, why: str | None = None) -> TokenUnavailableError:
    return TokenUnavailableError(
        f"gave up after {timeout:g} s waiting for another caller's refresh"
        + ("" if why is None else f": {why} passed")
    )


def cached(st: CacheState) -> Token:
    """The cached token of *st*, served without waiting for a refresh."""
    assert st.token is not None
    return st.token


def settle(fresh: TokenState, st: CacheState, flight: Flight, *, leader: bool) -> Token:
    """Return what a caller gets once *flight* is done.

    A failed refresh of a token that was only stale (advisory window, re-check) keeps serving
    it; otherwise the flight's outcome (its token, or its error).
    """
    if fresh is TokenState.STALE and flight.error is not None:
        return cached(st)
    return flight.outcome(leader=leader)


def resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def copy_error(error: BaseException) -> BaseException:
    """Return a copy of *error* for one more waiter: a shared exception's traceback would mix."""
    try:
        clone = copy.copy(error)
    except Exception:  # noqa: BLE001 - an uncopyable exception is re-raised as it is
        return error
    clone.__cause__ = error.__cause__
    clone.__suppress_context__ = True
    return clone
