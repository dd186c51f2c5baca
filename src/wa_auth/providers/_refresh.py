"""The single-flight refresh engine every re-reading provider is built on.

One `Refresher` guards one cached token. Readers on the fast path read one immutable `CacheState`
without a lock; a refresh is one `Flight` that exactly one caller (thread or task) leads while
the others either keep the cached token (advisory window) or wait for the flight's outcome
(mandatory window). The small `threading.Lock` is held only to swap references: never across
I/O and never across an `await`. Async waiters wait on a future of their own loop, created
when they wait, so nothing is bound to the loop that happened to exist at construction time.
A flight led by a task whose event loop was closed under it can never finish: the next caller
abandons it and leads a new one, and every wait, sync or async, is bounded.
After `fork()` the child notices the new PID and starts with a fresh lock and no flight.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from wa_auth import _deadline
from wa_auth.errors import TokenUnavailableError, WhatsAppError
from wa_auth.providers._effects import Flow, Session, adrive, drive

if TYPE_CHECKING:
    import asyncio
    from typing import TypeAlias

    from wa_auth.providers._base import Token

    Load: TypeAlias = Callable[[Token | None, bool], "Fetched"]
    ALoad: TypeAlias = Callable[[Token | None, bool], Awaitable["Fetched"]]

from wa_auth.providers._refresh_state import (
    CacheState,
    Fetched,
    Flight,
    RefreshPolicy,
    TokenState,
    cached,
    settle,
)

__all__ = ["Fetched", "RefreshPolicy", "Refresher", "RefreshingTokenProvider", "TokenState"]

_log = logging.getLogger("wa_auth.providers")

# --- the refresh engine's own effects (see `providers/_effects.py`) -----------------------------


@attrs.frozen
class _Here:
    """The event loop this caller runs on: None for a thread."""

    def perform(self, session: Session, /) -> asyncio.AbstractEventLoop | None:  # noqa: ARG002
        return None

    async def aperform(self, session: Session, /) -> asyncio.AbstractEventLoop | None:  # noqa: ARG002
        import asyncio  # the async paths only: a blocking process never loads it

        return asyncio.get_running_loop()


@attrs.frozen
class _Lead:
    """Lead *flight* by running *refresh*; True when it ran here, to its end.

    A thread runs it at once. A task starts it as a task of its own and then waits like every
    other caller: a cancelled caller must not cancel everyone's refresh.
    """

    flight: Flight
    refresh: Flow[None]

    def perform(self, session: Session, /) -> bool:  # noqa: ARG002
        drive(self.refresh)
        return True

    async def aperform(self, session: Session, /) -> bool:  # noqa: ARG002
        import asyncio

        self.flight.task = asyncio.get_running_loop().create_task(adrive(self.refresh))
        return False


@attrs.frozen
class _Wait:
    """Wait for *flight*, led by another caller; False when it was abandoned (lead it again).

    The wait ends after *timeout* seconds or at the caller's deadline, whichever comes first.
    """

    flight: Flight
    timeout: float

    def perform(self, session: Session, /) -> bool:  # noqa: ARG002
        return self.flight.wait(*_bounded(self.timeout))

    async def aperform(self, session: Session, /) -> bool:  # noqa: ARG002
        return await self.flight.await_(*_bounded(self.timeout))


def _bounded(timeout: float) -> tuple[float, str | None]:
    """Return *timeout* cut to the caller's deadline, and the deadline's words when it was."""
    deadline = _deadline.current()
    if deadline is None:
        return timeout, None
    left = max(deadline.at - time.monotonic(), 0.0)
    return (timeout, None) if timeout <= left else (left, deadline.what)


@attrs.frozen
class _Load:
    """Read the source: the provider's blocking `load`, or its coroutine `aload`."""

    load: Load
    aload: ALoad
    current: Token | None
    forced: bool

    def perform(self, session: Session, /) -> Fetched:  # noqa: ARG002
        return self.load(self.current, self.forced)

    async def aperform(self, session: Session, /) -> Fetched:  # noqa: ARG002
        return await self.aload(self.current, self.forced)


class Refresher:
    """A cached token with advisory/mandatory windows and a single-flight refresh.

    Args:
        load: Blocking read of the source: `load(current, forced) -> Fetched`; *forced* is True
            when the current token was invalidated. It raises `TokenUnavailableError`.
        aload: The same read as a coroutine function; it must not block the event loop.
        policy: The windows and intervals.
        name: The provider's non-secret name, for logs.
        clock: Wall clock (Unix seconds), compared with token expiry.
        monotonic: Clock for intervals and back-off.
    """

    def __init__(
        self,
        load: Load,
        aload: ALoad,
        *,
        policy: RefreshPolicy | None = None,
        name: str = "provider",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._aload = aload
        self.policy = policy if policy is not None else RefreshPolicy()
        self.name = name
        self._clock = clock
        self._monotonic = monotonic
        self._state = CacheState()
        self._flight: Flight | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        #: How many times the source was read (for tests and diagnostics).
        self.loads = 0

    # --- fork -----------------------------------------------------------------------------------

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            # The parent's threads do not exist here: a lock one of them held would stay held
            # forever, and their flight would never finish (bpo-40089, posthog-python #811).
            self._lock = threading.Lock()
            self._flight = None
            self._pid = pid

    # --- state ----------------------------------------------------------------------------------

    def _freshness(self, st: CacheState) -> TokenState:
        if st.token is None or st.invalidated:
            return TokenState.INVALID
        mono = self._monotonic()
        wall = self._clock()
        if wall >= st.mandatory_at or mono >= st.stale_limit:
            return TokenState.INVALID
        if (wall >= st.advisory_at or mono >= st.recheck_at) and mono >= st.backoff_until:
            return TokenState.STALE
        return TokenState.FRESH

    def renew(self, token: Token) -> bool:
        """Keep serving *token* for another re-check interval: the source is known unchanged.

        Only when the re-check interval is the one reason the token is due (not invalidated,
        outside both expiry windows, not past the stale limit); otherwise the caller refreshes.
        No I/O, so a cheap "has it changed?" probe (a file's stat) can skip a whole flight.
        """
        self._check_fork()
        with self._lock:
            st = self._state
            if st.token is not token or st.invalidated:
                return False
            mono = self._monotonic()
            wall = self._clock()
            if wall >= st.advisory_at or wall >= st.mandatory_at or mono >= st.stale_limit:
                return False
            policy = self.policy
            recheck_at = mono + policy.recheck_interval
            stale_limit = math.inf if policy.max_stale is None else recheck_at + policy.max_stale
            self._state = st.rechecked(recheck_at, stale_limit)
        return True

    def fresh(self) -> Token | None:
        """Return the cached token if it needs no refresh and no re-check, else None; no I/O."""
        st = self._state
        if st.token is not None and self._freshness(st) is TokenState.FRESH:
            return st.token
        return None

    def peek(self) -> Token | None:
        """Return the cached token without refreshing, or None."""
        return self._state.token

    def invalidate(self, token: Token, changed: Callable[[], bool] | None = None) -> bool:
        """Mark *token* dead if it is the cached one; return whether that changed anything.

        No I/O of its own: the next caller refreshes. Invalidations of a token that a forced
        refresh just returned again are ignored for `min_retry_interval`, so a burst of
        failures or a source with nothing newer causes one re-read, not a loop; unless
        *changed*, a cheap probe of the source (a file's `stat`, run outside the lock), says
        the source is no longer what that refresh read: then its new content is used at once.
        """
        self._check_fork()
        with self._lock:
            st = self._state
            if st.token is None or st.token.fingerprint != token.fingerprint or st.invalidated:
                return False
            quiet = st.rejected == token.fingerprint and self._monotonic() < st.quiet_until
            if not quiet:
                self._state = attrs.evolve(st, invalidated=True)
                return True
        if changed is None or not changed():
            return False
        with self._lock:
            if self._state is not st:
                return False  # someone else refreshed or invalidated meanwhile
            self._state = attrs.evolve(st, invalidated=True)
            return True

    def _begin(
        self, loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[TokenState, CacheState, Flight | None, bool]:
        """Decide under the lock: freshness, and the flight to lead or to join.

        A flight whose loop was closed under it is dropped here and led again by this caller.
        """
        with self._lock:
            st = self._state
            fresh = self._freshness(st)
            if fresh is TokenState.FRESH:
                return fresh, st, None, False
            abandoned = self._flight
            if abandoned is not None and not abandoned.abandoned():
                return fresh, st, abandoned, False
            flight = self._flight = Flight(st.invalidated, loop)
        if abandoned is not None:
            _log.warning(
                "token source %s: the event loop that led its refresh was closed before the "
                "refresh finished; refreshing again",
                self.name,
            )
        return fresh, st, flight, True

    # --- the refresh, written once ----------------------------------------------------------------

    def get(self) -> Token:
        """Return the cached token, refreshing it first when needed (blocking)."""
        self._check_fork()
        token = self.fresh()
        return token if token is not None else drive(self._get_flow())

    async def aget(self) -> Token:
        """Return the cached token, refreshing it first when needed, without blocking the loop."""
        self._check_fork()
        token = self.fresh()
        return token if token is not None else await adrive(self._get_flow())

    def _get_flow(self) -> Flow[Token]:
        """Serve the cached token, or lead or join the refresh flight and return its outcome."""
        loop: asyncio.AbstractEventLoop | None = yield _Here()
        while True:
            fresh, st, flight, leader = self._begin(loop)
            if flight is None or (fresh is TokenState.STALE and not leader):
                return cached(st)
            if leader and (yield _Lead(flight, self._refresh_flow(flight, st))):
                # The refresh ran in this thread: its error is raised as it is, not a copy.
                return settle(fresh, st, flight, leader=True)
            if (yield _Wait(flight, self.policy.flight_timeout)):
                # A refresh task's error is everyone's, its starter's too: each gets a copy.
                return settle(fresh, st, flight, leader=False)

    def _refresh_flow(self, flight: Flight, st: CacheState) -> Flow[None]:
        """Read the source once and hand the outcome to *flight*; never raises."""
        token: Token | None = None
        error: BaseException | None = None
        collected = False
        try:
            self.loads += 1
            fetched: Fetched = yield _Load(self._load, self._aload, st.token, flight.forced)
            token = self._publish(st, fetched)
        except GeneratorExit:
            # The refresh task is being collected, pending on a closed loop, maybe by the
            # garbage collector inside this thread's `with self._lock`: touch nothing. Its
            # flight is abandoned, and the next caller leads a new one.
            collected = True
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the flight, raised by its callers
            error = self._failed(st, exc)
        finally:
            if not collected:
                self._end(flight, token, error)

    # --- publication ----------------------------------------------------------------------------

    def _end(self, flight: Flight, token: Token | None, error: BaseException | None) -> None:
        with self._lock:
            if self._flight is flight:
                self._flight = None
        flight.finish(token, error)

    def _publish(self, old: CacheState, fetched: Fetched) -> Token:
        policy = self.policy
        token = fetched.token
        mono = self._monotonic()
        wall = self._clock()
        advisory_at, mandatory_at = self._windows(token, wall)
        interval = (
            policy.recheck_interval if fetched.recheck_after is None else fetched.recheck_after
        )
        recheck_at = mono + interval * (1.0 - policy.jitter * random.random())  # noqa: S311 - jitter
        rejected: str | None = None
        quiet_until = 0.0
        backoff_until = 0.0
        same = old.token is not None and old.token.fingerprint == token.fingerprint
        if old.invalidated and same:
            # Nothing newer at the source: serve what there is, and do not loop (google-auth #863).
            rejected = token.fingerprint
            quiet_until = mono + policy.min_retry_interval
        if wall >= mandatory_at:
            # The source only has a token that is (nearly) expired: serve it, re-read it at most
            # every min_retry_interval instead of on every call.
            mandatory_at = wall + policy.min_retry_interval
            advisory_at = wall
            backoff_until = mono + policy.min_retry_interval
        stale_limit = math.inf if policy.max_stale is None else recheck_at + policy.max_stale
        new = CacheState(
            token=token,
            recheck_at=recheck_at,
            stale_limit=stale_limit,
            advisory_at=advisory_at,
            mandatory_at=mandatory_at,
            rejected=rejected,
            quiet_until=quiet_until,
            backoff_until=backoff_until,
        )
        with self._lock:
            self._state = new
        if old.failures:
            _log.info(
                "token source %s is readable again after %d failed refreshes",
                self.name,
                old.failures,
            )
        return token

    def _windows(self, token: Token, wall: float) -> tuple[float, float]:
        if token.expires_at is None:
            return math.inf, math.inf
        policy = self.policy
        lifetime = max(token.expires_at - wall, 0.0)
        advisory = min(policy.advisory, policy.advisory_fraction * lifetime)
        advisory *= 1.0 + policy.jitter * random.random()  # noqa: S311 - jitter, not crypto
        mandatory = min(policy.mandatory, policy.mandatory_fraction * lifetime)
        return token.expires_at - advisory, token.expires_at - mandatory

    def _failed(self, old: CacheState, exc: BaseException) -> BaseException:
        asyncio = sys.modules.get("asyncio")  # without it loaded, nothing was cancelled
        if asyncio is not None and isinstance(exc, asyncio.CancelledError):
            exc = TokenUnavailableError(f"{self.name}: the refresh was cancelled")
        elif not isinstance(exc, (WhatsAppError, KeyboardInterrupt, SystemExit)):
            wrapped = TokenUnavailableError(
                f"{self.name}: unexpected {type(exc).__name__} while reading the token"
            )
            wrapped.__cause__ = exc
            exc = wrapped
        policy = self.policy
        failures = old.failures + 1
        delay = min(policy.max_retry_backoff, policy.retry_backoff * 2 ** (failures - 1))
        delay *= 1.0 - policy.jitter * random.random()  # noqa: S311 - jitter, not crypto
        with self._lock:
            current = self._state
            if current.token is old.token:
                self._state = attrs.evolve(
                    current, backoff_until=self._monotonic() + delay, failures=failures
                )
        if failures == 1 and old.token is not None and isinstance(exc, WhatsAppError):
            # Once per outage, not per request.
            _log.warning(
                "token source %s failed (%s: %s); serving the cached token %s while it lasts",
                self.name,
                type(exc).__name__,
                exc,
                old.token.fingerprint,
            )
        return exc


class RefreshingTokenProvider:
    """Base of the providers that re-read a source: a `Refresher` behind the provider protocol.

    Subclasses implement `_load(current, forced)` (blocking) and may override `_aload`, which
    by default runs `_load` in a worker thread so the event loop never blocks on the source.
    """

    def __init__(
        self,
        *,
        policy: RefreshPolicy | None = None,
        name: str,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresher = Refresher(
            self._load, self._aload, policy=policy, name=name, clock=clock, monotonic=monotonic
        )

    @property
    def policy(self) -> RefreshPolicy:
        """The refresh policy in force."""
        return self._refresher.policy

    @property
    def loads(self) -> int:
        """How many times the source was read so far."""
        return self._refresher.loads

    def _load(self, current: Token | None, forced: bool) -> Fetched:
        raise NotImplementedError

    def _source_changed(self) -> bool:
        """Return whether the source changed since the last read, if that is cheap to know.

        Asked by `invalidate` while a re-read that found nothing newer holds further
        invalidations off, so a fixed source is used at once instead of after
        `min_retry_interval`. The default (False) suits sources where asking costs a round
        trip; a file overrides it with a `stat`.
        """
        return False

    async def _aload(self, current: Token | None, forced: bool) -> Fetched:
        import asyncio

        return await asyncio.to_thread(self._load, current, forced)

    def get_token(self) -> Token:
        """Return the current token, re-reading the source first when needed.

        Raises:
            TokenUnavailableError: The source could not be read (a subclass names why) and no
                cached token may be served.
        """
        return self._refresher.get()

    async def aget_token(self) -> Token:
        """Return the current token without blocking the event loop.

        Raises:
            TokenUnavailableError: As `get_token`.
        """
        return await self._refresher.aget()

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Force a re-read on the next call if *token* is the current token.

        No I/O beyond `_source_changed` (a file's `stat`), asked only while a re-read that
        returned this same token holds invalidations off.
        """
        if self._refresher.invalidate(token, self._source_changed):
            _log.info(
                "token %s of %s invalidated (%s); the source will be re-read",
                token.fingerprint,
                self._refresher.name,
                getattr(reason, "category", reason),
            )
