"""The single-flight refresh engine: windows, back-off, concurrency, cancellation and fork."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import pytest

from helpers import Clock
from wa_auth.errors import TokenSourceMissingError, TokenUnavailableError
from wa_auth.providers import Fetched, RefreshingTokenProvider, RefreshPolicy, Token

pytestmark = pytest.mark.anyio


class Source(RefreshingTokenProvider):
    """A counting source: each read returns the token of the current `value`."""

    def __init__(self, clock=None, *, policy=None, delay=0.0, expires_in=None) -> None:
        self.value = "tok-1"
        self.reads = 0
        self.fail: BaseException | None = None
        self.delay = delay
        self.expires_in = expires_in
        self.gate: threading.Event | None = None
        self._clock = clock or time.time
        kwargs = {"clock": clock, "monotonic": clock} if clock else {}
        super().__init__(policy=policy or RefreshPolicy(jitter=0.0), name="test", **kwargs)

    def _read(self):
        self.reads += 1
        if self.fail is not None:
            raise self.fail
        exp = None if self.expires_in is None else self._clock() + self.expires_in
        return Fetched(Token(self.value, expires_at=exp, source="test"))

    def _load(self, current, forced):
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        return self._read()

    async def _aload(self, current, forced):
        if self.gate is not None:
            await asyncio.to_thread(self.gate.wait, 10)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._read()


def test_hundred_threads_one_read():
    """A hundred threads asking at once for a token not yet read cause one read."""
    src = Source(delay=0.2)
    barrier = threading.Barrier(100)
    results: list[str] = []

    def worker():
        barrier.wait()
        results.append(src.get_token().fingerprint)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert src.reads == 1
    assert len(results) == 100
    assert len(set(results)) == 1


async def test_thousand_tasks_one_read():
    """A thousand tasks asking at once cause one read of the source."""
    src = Source(delay=0.1)
    tokens = await asyncio.gather(*(src.aget_token() for _ in range(1000)))
    assert src.reads == 1
    assert {t.fingerprint for t in tokens} == {tokens[0].fingerprint}


def test_expired_cache_one_read_under_threads():
    """An expired cache with a hundred waiting threads causes exactly one more read."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=3600, delay=0.1)
    src.get_token()
    clock.t += 3600  # past expiry: mandatory refresh
    src.value = "tok-2"
    barrier = threading.Barrier(100)
    seen: list[str] = []

    def worker():
        barrier.wait()
        seen.append(src.get_token().reveal())

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert src.reads == 2
    assert set(seen) == {"tok-2"}


async def test_expired_cache_one_read_under_tasks():
    """An expired cache with a thousand waiting tasks causes exactly one more read."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=3600, delay=0.05)
    await src.aget_token()
    clock.t += 3600
    src.value = "tok-2"
    tokens = await asyncio.gather(*(src.aget_token() for _ in range(1000)))
    assert src.reads == 2
    assert {t.reveal() for t in tokens} == {"tok-2"}


def test_fresh_token_is_served_without_reading():
    """A fresh token is served from the cache: no read per call."""
    src = Source()
    for _ in range(1000):
        src.get_token()
    assert src.reads == 1


def test_advisory_window_refreshes_once_and_serves_current():
    """Inside the advisory window one caller refreshes; a failure keeps the current token."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=3600)
    first = src.get_token()
    clock.t += 3600 - 300  # 5 min left: inside advisory (10 min), outside mandatory (1 min)
    src.fail = TokenSourceMissingError("gone", source="test")
    assert src.get_token() == first
    assert src.reads == 2
    # Backing off: no read on the next calls.
    assert src.get_token() == first
    assert src.reads == 2
    clock.t += 2  # past the 1 s back-off
    src.fail = None
    src.value = "tok-2"
    assert src.get_token().reveal() == "tok-2"


def test_mandatory_window_raises_when_refresh_fails():
    """Inside the mandatory window callers wait for the refresh and get its error."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=3600)
    src.get_token()
    clock.t += 3600 - 30
    src.fail = TokenSourceMissingError("gone", source="test")
    with pytest.raises(TokenSourceMissingError):
        src.get_token()


def test_failed_refresh_does_not_wedge_later_callers():
    """After a failed mandatory refresh the next caller reads again and succeeds."""
    src = Source()
    src.fail = TokenSourceMissingError("gone", source="test")
    with pytest.raises(TokenSourceMissingError):
        src.get_token()
    src.fail = None
    assert src.get_token().reveal() == "tok-1"
    assert src.reads == 2


def test_windows_clamp_to_a_fraction_of_short_lifetimes():
    """A 5-minute token is not refreshed on every call: the windows shrink with its lifetime."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=300, policy=RefreshPolicy(recheck_interval=3600, jitter=0.0))
    src.get_token()
    clock.t += 200  # 100 s left: advisory is min(600, 0.2 * 300) = 60 s
    src.get_token()
    assert src.reads == 1
    clock.t += 45  # 55 s left: inside the advisory window now
    src.get_token()
    assert src.reads == 2


def test_token_without_expiry_is_rechecked_periodically():
    """A token without expiry is re-read after the re-check interval."""
    clock = Clock(1_000_000.0)
    src = Source(clock, policy=RefreshPolicy(recheck_interval=60, jitter=0.0))
    src.get_token()
    clock.t += 59
    src.get_token()
    assert src.reads == 1
    clock.t += 2
    src.value = "tok-2"
    src.get_token()  # the caller that notices refreshes
    assert src.reads == 2
    assert src.get_token().reveal() == "tok-2"


def test_invalidate_acts_only_on_the_current_token():
    """`invalidate` of an old token does nothing; of the current one forces one re-read."""
    src = Source()
    tok = src.get_token()
    src.invalidate(Token("someone-else"), "test")
    src.get_token()
    assert src.reads == 1
    for _ in range(50):  # a burst of failures on one token
        src.invalidate(tok, "test")
    src.value = "tok-2"
    assert src.get_token().reveal() == "tok-2"
    assert src.reads == 2


def test_same_token_after_forced_refresh_backs_off():
    """A forced re-read returning the same token ignores more invalidations for a while."""
    clock = Clock(1_000_000.0)
    src = Source(clock, policy=RefreshPolicy(min_retry_interval=30, jitter=0.0))
    tok = src.get_token()
    src.invalidate(tok, "test")
    assert src.get_token() == tok
    assert src.reads == 2
    for _ in range(20):
        src.invalidate(tok, "test")
        src.get_token()
    assert src.reads == 2
    clock.t += 31
    src.invalidate(tok, "test")
    src.get_token()
    assert src.reads == 3


def test_expired_token_at_source_is_not_reread_per_call():
    """A source that only holds an already-expired token is re-read at most per interval."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=-10)
    src.get_token()
    for _ in range(100):
        src.get_token()
    assert src.reads == 1


def test_max_stale_bounds_serving_while_the_source_is_down():
    """While the source fails the cached token is served, up to `max_stale`, then an error."""
    clock = Clock(1_000_000.0)
    policy = RefreshPolicy(recheck_interval=10, max_stale=100, jitter=0.0)
    src = Source(clock, policy=policy)
    tok = src.get_token()
    src.fail = TokenSourceMissingError("gone", source="test")
    clock.t += 50
    assert src.get_token() == tok
    clock.t += 61  # 10 + 100 past the last good read
    with pytest.raises(TokenSourceMissingError):
        src.get_token()


def test_unexpected_exception_is_wrapped():
    """A bug in a source surfaces as TokenUnavailableError with the original as cause."""
    src = Source()
    src.fail = KeyError("boom")
    with pytest.raises(TokenUnavailableError) as info:
        src.get_token()
    assert isinstance(info.value.__cause__, KeyError)


async def test_cancelled_waiter_does_not_cancel_the_refresh():
    """Cancelling the task that started a refresh leaves the refresh running for the others."""
    src = Source(delay=0.2)
    first = asyncio.ensure_future(src.aget_token())
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(src.aget_token())
    await asyncio.sleep(0.01)
    first.cancel()
    assert (await second).reveal() == "tok-1"
    assert src.reads == 1


def test_two_event_loops_share_one_provider():
    """One provider serves two consecutive `asyncio.run()` loops (nothing bound to a loop)."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=3600)
    assert asyncio.run(src.aget_token()).reveal() == "tok-1"
    clock.t += 3600
    src.value = "tok-2"
    assert asyncio.run(src.aget_token()).reveal() == "tok-2"


async def test_sync_and_async_callers_share_one_flight():
    """A thread and tasks asking together during one slow read share that read."""
    src = Source()
    src.gate = threading.Event()
    thread_result: list[str] = []
    t = threading.Thread(target=lambda: thread_result.append(src.get_token().reveal()))
    t.start()
    await asyncio.sleep(0.05)
    tasks = [asyncio.ensure_future(src.aget_token()) for _ in range(50)]
    await asyncio.sleep(0.05)
    src.gate.set()
    tokens = await asyncio.gather(*tasks)
    await asyncio.to_thread(t.join)
    assert src.reads == 1
    assert {x.reveal() for x in tokens} == {"tok-1"} == set(thread_result)


async def test_waiting_tasks_do_not_block_the_loop():
    """While a slow async read is in flight the event loop keeps running other work."""
    src = Source(delay=0.3)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.ensure_future(ticker())
    await asyncio.gather(*(src.aget_token() for _ in range(100)))
    tick_task.cancel()
    assert ticks >= 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads
def test_child_after_fork_gets_a_token_within_a_second():
    """After fork, the child's get_token works within 1 s though a parent thread held the lock."""
    src = Source()
    src.gate = threading.Event()
    t = threading.Thread(target=src.get_token)  # leads a flight that blocks on the gate
    t.start()
    time.sleep(0.1)
    src._refresher._lock.acquire()  # and the lock itself is held at the fork
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        code = 1
        try:
            src.gate = None
            started = time.monotonic()
            token = src.get_token()
            elapsed = time.monotonic() - started
            os.write(write_fd, f"{token.reveal()} {elapsed:.3f}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        deadline = time.monotonic() + 5
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read_fd) as f:
            out = f.read()
    finally:
        src._refresher._lock.release()
        src.gate.set()
        t.join()
    assert time.monotonic() < deadline
    assert os.waitstatus_to_exitcode(status) == 0
    value, elapsed = out.split()
    assert value == "tok-1"
    assert float(elapsed) < 1.0
    print(f"child get_token() after fork: {float(elapsed) * 1000:.1f} ms")


def test_rechecked_state_keeps_every_other_field():
    """`CacheState.rechecked` (a hand-written evolve on the hot path) copies every field."""
    import attrs

    from wa_auth.providers._refresh_state import CacheState

    values = {f.name: float(i + 1) for i, f in enumerate(attrs.fields(CacheState))}
    values.update(token=None, invalidated=True, rejected="sha256:abc", failures=3)
    state = CacheState(**values)
    assert state.rechecked(100.0, 200.0) == attrs.evolve(state, recheck_at=100.0, stale_limit=200.0)


@pytest.mark.anyio
async def test_advisory_window_failure_serves_current_async():
    """The async path keeps the current token when an advisory refresh fails, like the sync one."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=3600)
    first = await src.aget_token()
    clock.t += 3600 - 300  # inside the advisory window, outside the mandatory one
    src.fail = TokenSourceMissingError("gone", source="test")
    assert await src.aget_token() == first
    assert src.reads == 2
    assert await src.aget_token() == first  # backing off: no read
    assert src.reads == 2


@pytest.mark.anyio
async def test_mandatory_window_raises_when_refresh_fails_async():
    """Inside the mandatory window async callers get the refresh's error too."""
    clock = Clock(1_000_000.0)
    src = Source(clock, expires_in=3600)
    await src.aget_token()
    clock.t += 3600 - 30
    src.fail = TokenSourceMissingError("gone", source="test")
    with pytest.raises(TokenSourceMissingError):
        await src.aget_token()


# --- flights whose event loop is gone; bounded waits (issue 9) ------------------------------------


class StuckOnce(Source):
    """Its first async read never finishes: it waits on its loop until that loop is closed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stuck = True

    async def _aload(self, current, forced):
        if self.stuck:
            self.stuck = False
            await asyncio.get_running_loop().create_future()  # nobody will ever set it
        return await super()._aload(current, forced)


def _lead_on_a_loop_then_close_it(src: Source) -> None:
    """Start a refresh led by a task of a new loop, then close the loop without cancelling."""
    loop = asyncio.new_event_loop()
    try:
        leader = loop.create_task(src.aget_token())
        loop.run_until_complete(asyncio.sleep(0.05))
        assert not leader.done()
    finally:
        loop.close()
    del leader
    gc.collect()  # the pending tasks are collected: that must neither raise nor end the flight


def _wait_for_waiters(src: Source, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(src._refresher._flight._waiters) < count:  # an async waiter has joined
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_flight_of_a_closed_loop_is_led_again_by_a_sync_caller():
    """A refresh whose loop was closed under it does not wedge `get_token`: it is led again."""
    src = StuckOnce()
    _lead_on_a_loop_then_close_it(src)
    assert src.get_token().reveal() == "tok-1"
    assert src.reads == 1
    gc.collect()  # now the abandoned flight's task is garbage: collecting it changes nothing
    assert src._refresher._flight is None
    assert src._refresher._state.failures == 0


def test_flight_of_a_closed_loop_is_led_again_by_an_async_caller():
    """`aget_token` on a new loop returns although an earlier loop died leading the refresh."""
    src = StuckOnce()
    _lead_on_a_loop_then_close_it(src)

    async def main():
        return await asyncio.wait_for(src.aget_token(), 20)  # a hang guard, not a timing claim

    assert asyncio.run(main()).reveal() == "tok-1"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_waiters_of_a_flight_whose_loop_closes_lead_it_again(mode):
    """Callers already waiting when the leading loop is closed notice it and refresh again."""
    src = StuckOnce()
    loop = asyncio.new_event_loop()
    results: list[str] = []
    try:
        leader = loop.create_task(src.aget_token())
        loop.run_until_complete(asyncio.sleep(0.05))
        assert not leader.done()
        if mode == "sync":
            waiter = threading.Thread(target=lambda: results.append(src.get_token().reveal()))
        else:
            waiter = threading.Thread(
                target=lambda: results.append(asyncio.run(src.aget_token()).reveal())
            )
        waiter.start()
        if mode == "async":
            _wait_for_waiters(src, 1)
        else:
            time.sleep(0.1)  # let it start waiting; either way it must end with a token
    finally:
        loop.close()
    waiter.join(20)
    assert results == ["tok-1"]


async def test_async_waits_are_bounded():
    """A task waiting on a refresh another thread leads gives up after `flight_timeout`."""
    src = Source(policy=RefreshPolicy(jitter=0.0, flight_timeout=0.2))
    src.gate = threading.Event()
    leader = threading.Thread(target=src.get_token)
    leader.start()
    try:
        await asyncio.sleep(0.05)
        with pytest.raises(TokenUnavailableError, match=r"gave up after 0\.2 s"):
            await src.aget_token()
        with pytest.raises(TokenUnavailableError, match=r"gave up after 0\.2 s"):
            await asyncio.to_thread(src.get_token)
    finally:
        src.gate.set()
        await asyncio.to_thread(leader.join)
    assert (await src.aget_token()).reveal() == "tok-1"


def test_freshness_is_a_token_state():
    """The engine's freshness is google-auth's three states: INVALID, FRESH, then STALE."""
    from wa_auth.providers._refresh import TokenState

    clock = Clock(1_000_000.0)
    src = Source(clock, policy=RefreshPolicy(jitter=0.0, recheck_interval=60))
    refresher = src._refresher
    assert refresher._freshness(refresher._state) is TokenState.INVALID
    src.get_token()
    assert refresher._freshness(refresher._state) is TokenState.FRESH
    clock.t += 61
    assert refresher._freshness(refresher._state) is TokenState.STALE
