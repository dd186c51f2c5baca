"""`LocalRateLimiter` reservations and the pause store, with a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from helpers import Clock
from wa_auth.errors import ConfigurationError
from wa_auth.pacing import (
    DEFAULT_PAIR_INTERVAL,
    DEFAULT_THROUGHPUT,
    LocalRateLimiter,
    MemoryPauseStore,
    Pause,
    PauseStore,
    RateLimiter,
    check_rate,
)

PHONE = "106540352242922"


def test_defaults_are_metas_figures():
    """80 messages per second per number, one message every 6 s per pair."""
    assert (DEFAULT_THROUGHPUT, DEFAULT_PAIR_INTERVAL) == (80.0, 6.0)
    assert isinstance(LocalRateLimiter(), RateLimiter)
    assert isinstance(MemoryPauseStore(), PauseStore)


def test_reservations_space_sends_at_the_rate():
    """At 10/s, ten immediate acquires are told to wait 0, 0.1, ..., 0.9 s."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=10, pair_interval=None, monotonic=clock)
    waits = [limiter.acquire(PHONE, None) for _ in range(10)]
    assert waits == pytest.approx([i / 10 for i in range(10)])


def test_burst_lets_the_first_sends_go_at_once():
    """With burst=3 the first three go now; then the rate applies."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=10, burst=3, pair_interval=None, monotonic=clock)
    waits = [limiter.acquire(PHONE, None) for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_the_pair_interval_spaces_one_recipient_only():
    """Two sends to one user are 6 s apart; another user is not held back."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=1000, monotonic=clock)
    assert limiter.acquire(PHONE, "+1555") == 0
    assert limiter.acquire(PHONE, "+1555") == pytest.approx(6.0)
    assert limiter.acquire(PHONE, "+1666") < 0.01


def test_past_max_wait_nothing_is_reserved():
    """An acquire that would wait too long returns None and does not take the slot."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=1, pair_interval=None, monotonic=clock)
    assert limiter.acquire(PHONE, None) == 0
    assert limiter.acquire(PHONE, None, max_wait=0.5) is None
    assert limiter.acquire(PHONE, None) == pytest.approx(1.0)


def test_penalize_pushes_the_number_or_the_pair_back():
    """A Retry-After from Meta delays the number (or only the pair) by that much."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=1000, monotonic=clock)
    limiter.penalize(PHONE, None, 30.0)
    assert limiter.acquire(PHONE, None) == pytest.approx(30.0)
    limiter.penalize("2", "+1555", 6.0)
    assert limiter.acquire("2", "+1555") == pytest.approx(6.0)
    assert limiter.acquire("2", "+1666") < 0.01
    limiter.penalize(PHONE, None, math.nan)  # ignored, not poisoning the schedule


def test_per_number_rates():
    """A coexistence number at 20/s beside the default 80/s."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rates={"2": 20}, pair_interval=None, monotonic=clock)
    limiter.acquire("2", None)
    assert limiter.acquire("2", None) == pytest.approx(0.05)
    limiter.acquire(PHONE, None)
    assert limiter.acquire(PHONE, None) == pytest.approx(1 / 80)


def test_time_passing_frees_the_slots():
    """After the interval passes, the next send goes at once."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=2, pair_interval=None, monotonic=clock)
    limiter.acquire(PHONE, None)
    clock.t += 0.5
    assert limiter.acquire(PHONE, None) == 0


def test_threads_get_distinct_slots():
    """Concurrent acquires never share a slot: the waits are all different."""
    limiter = LocalRateLimiter(rate=1000, pair_interval=None, monotonic=lambda: 0.0)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(100):
            w = limiter.acquire(PHONE, None)
            assert w is not None
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({round(w, 9) for w in waits}) == 800


def test_async_methods_match():
    """`aacquire` / `apenalize` / `aheld` do what the blocking ones do."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=10, pair_interval=None, probe_gap=0, monotonic=clock)

    async def main() -> list[float | None]:
        await limiter.apenalize(PHONE, None, 1.0)
        return [await limiter.aheld(PHONE, None)] + [
            await limiter.aacquire(PHONE, None) for _ in range(2)
        ]

    assert asyncio.run(main()) == pytest.approx([1.0, 1.0, 1.1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": -1},
        {"rates": {"1": math.inf * 0}},
        {"burst": 0},
        {"pair_interval": -1},
    ],
)
def test_bad_settings_fail_at_construction(kwargs):
    """Non-positive rates, a zero burst or a negative interval are refused."""
    with pytest.raises(ValueError):
        LocalRateLimiter(**kwargs)


def test_pause_store_round_trip():
    """Pauses by (kind, number): put, get, list, clear; `to_dict` / `from_dict` round trip."""
    store = MemoryPauseStore()
    pause = Pause(
        kind="account", phone_number_id=PHONE, category="account_state", since=1.0, until=61.0
    )
    store.put(pause)
    assert store.get("account", PHONE) == pause
    assert store.get("circuit", PHONE) is None
    assert store.list() == [pause]
    assert Pause.from_dict(pause.to_dict()) == pause
    assert pause.holds(60.0)
    assert not pause.holds(61.0)
    store.clear("account", PHONE)
    assert store.list() == []

    async def main() -> Pause | None:
        await store.aput(pause)
        got = await store.aget("account", PHONE)
        await store.aclear("account", PHONE)
        assert await store.alist() == []
        return got

    assert asyncio.run(main()) == pause


# --- holds: Meta's retry_after holds the number (or the pair) as one -----------------------------


def test_a_burst_does_not_undercut_a_hold():
    """With burst=5, a number held for 1 s still sends nothing before the second is over."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=10, burst=5, pair_interval=None, monotonic=clock)
    limiter.penalize(PHONE, None, 1.0)
    assert limiter.acquire(PHONE, None) == pytest.approx(1.0)


def test_after_a_hold_one_probe_goes_first_and_the_next_waits_the_probe_gap():
    """The first send after the hold is its probe; the next waits `probe_gap` for its answer."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=10, pair_interval=None, probe_gap=2.0, monotonic=clock)
    limiter.penalize(PHONE, None, 1.0)
    waits = [limiter.acquire(PHONE, None) for _ in range(3)]
    assert waits == pytest.approx([1.0, 3.0, 3.1])


def test_held_says_how_long_the_number_or_the_pair_is_still_held():
    """`held` is the hold's rest: the number's for every recipient, a pair's for that user."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(pair_interval=None, monotonic=clock)
    assert limiter.held(PHONE, None) == 0.0
    limiter.penalize(PHONE, "+1555", 6.0)
    assert (limiter.held(PHONE, "+1555"), limiter.held(PHONE, "+1666")) == (6.0, 0.0)
    limiter.penalize(PHONE, None, 2.0)
    clock.t += 1.5
    assert limiter.held(PHONE, "+1666") == pytest.approx(0.5)
    assert limiter.held(PHONE, "+1555") == pytest.approx(4.5)
    clock.t += 5
    assert limiter.held(PHONE, "+1555") == 0.0


def test_a_pair_hold_applies_with_the_pair_limit_off():
    """pair_interval=None turns pacing per user off, not Meta's 131056 for that user."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=1000, pair_interval=None, probe_gap=1.0, monotonic=clock)
    limiter.penalize(PHONE, "+1555", 6.0)
    assert limiter.acquire(PHONE, "+1555") == pytest.approx(6.0)  # the pair's probe
    assert limiter.acquire(PHONE, "+1555") == pytest.approx(7.0)  # after the probe gap
    assert limiter.acquire(PHONE, "+1666") < 0.01  # another user is not held


def test_a_holds_only_limiter_never_paces_but_holds():
    """rate=inf with the pair limit off: no pacing, yet a 130429's hold stops the number."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=math.inf, pair_interval=None, monotonic=clock)
    assert [limiter.acquire(PHONE, "+1555") for _ in range(3)] == [0.0, 0.0, 0.0]
    limiter.penalize(PHONE, None, 1.0)
    assert limiter.acquire(PHONE, None) == pytest.approx(1.0)
    assert "rate=inf" in repr(limiter)


@pytest.mark.parametrize("gap", [-1, math.inf, math.nan, "1", True], ids=repr)
def test_a_bad_probe_gap_is_refused(gap):
    """A negative, infinite, NaN or non-number probe gap fails at construction, naming it."""
    with pytest.raises(ValueError, match="probe_gap"):
        LocalRateLimiter(probe_gap=gap)


def test_threads_waiting_out_a_hold_send_one_probe_first():
    """Eight threads acquire during a hold: exactly one slot is the hold's end."""
    limiter = LocalRateLimiter(rate=1000, pair_interval=None, monotonic=lambda: 0.0)
    limiter.penalize(PHONE, None, 5.0)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        w = limiter.acquire(PHONE, None)
        assert w is not None
        with lock:
            waits.append(w)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(waits)[:2] == pytest.approx([5.0, 6.0])


def test_the_state_files_limiter_holds_what_another_process_learned(tmp_path):
    """A 130429 / 131056 written to the state file holds the number / the pair in a limiter
    made later (the next n8n execution): `held` and `aheld` report it, `acquire` waits it out."""
    from wa_auth.state import StateFile

    with StateFile(tmp_path / "s.db") as first:
        first.limiter().penalize(PHONE, None, 60.0)
        first.limiter().penalize("2", "+1555", 30.0)
    with StateFile(tmp_path / "s.db") as later:
        limiter = later.limiter(LocalRateLimiter(pair_interval=None))
        assert 59.0 < limiter.held(PHONE, "+1666") <= 60.0
        assert 29.0 < asyncio.run(limiter.aheld("2", "+1555")) <= 30.0
        assert limiter.held("2", "+1666") == 0.0  # the pair's hold is that user's only
        assert 29.0 < limiter.acquire("2", "+1555") <= 30.0  # the pair limit off: still held


# --- set_rate: a new throughput tier -------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 0.0, math.nan, math.inf, -math.inf, True, "80", None])
def test_check_rate_refuses_what_no_limiter_can_pace_at(value):
    """Zero, negative, NaN, infinite, a bool or a string: `ConfigurationError` naming it."""
    with pytest.raises(ConfigurationError, match="positive, finite number of messages"):
        check_rate(value)


@pytest.mark.parametrize("value", [1, 80, 1000.0, 0.5])
def test_check_rate_returns_a_float(value):
    """A positive finite number comes back as a float."""
    assert check_rate(value) == float(value)
    assert type(check_rate(value)) is float


def test_set_rate_paces_that_number_only_from_now_on():
    """After `set_rate(1000)` one number's sends are 1 ms apart; another keeps the default."""
    clock = Clock(100.0)
    limiter = LocalRateLimiter(rate=10, pair_interval=None, monotonic=clock)
    assert limiter.acquire(PHONE, None) == 0
    limiter.set_rate(PHONE, 1000)
    assert limiter.rate(PHONE) == 1000
    assert limiter.rate("other") == 10
    # The slot the old rate reserved stays taken; the ones after it follow the new rate.
    waits = [limiter.acquire(PHONE, None) for _ in range(3)]
    assert waits == pytest.approx([0.1, 0.101, 0.102])
    assert [limiter.acquire("other", None) for _ in range(2)] == pytest.approx([0, 0.1])


def test_set_rate_refuses_a_bad_rate_and_changes_nothing():
    """A bad rate raises before anything changes."""
    limiter = LocalRateLimiter(rate=10)
    with pytest.raises(ConfigurationError):
        limiter.set_rate(PHONE, 0)
    assert limiter.rate(PHONE) == 10


def test_aset_rate_is_the_same():
    """The async form sets the same rate."""
    limiter = LocalRateLimiter(rate=10)
    asyncio.run(limiter.aset_rate(PHONE, 20))
    assert limiter.rate(PHONE) == 20
    with pytest.raises(ConfigurationError):
        asyncio.run(limiter.aset_rate(PHONE, math.nan))
