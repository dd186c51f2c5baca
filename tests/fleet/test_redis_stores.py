"""wa_auth.fleet's stores on a real redis-server: each protocol, sync and async, and the errors.

Two `RedisState`s on one Redis stand for two workers. Redis unreachable is a closed port on
127.0.0.1, and Redis going away mid-run is the session's server killed and restarted.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from helpers import Clock
from wa_auth.errors import ConfigurationError, StateUnavailableError, from_response
from wa_auth.events import Counters, Events, StateFellBack
from wa_auth.fleet import (
    RedisConnection,
    RedisState,
    RedisVerdictStore,
    RedisWebhookLedger,
)
from wa_auth.models import TokenHealth
from wa_auth.pacing import Pause, PauseStore, RateLimiter, check_rate
from wa_auth.providers import VerdictStore
from wa_auth.webhooks import (
    APPLY,
    DUPLICATE,
    STALE,
    MessageStatus,
    WebhookLedger,
    aadmit,
    admit,
)

pytestmark = pytest.mark.real_component("redis")

FP = "sha256:0123456789ab"
REVOKED = {"error": {"code": 190, "error_subcode": 460, "message": "Session invalidated"}}


def _eventually(check, seconds: float = 5.0) -> bool:
    """Poll *check* until true (a pub/sub message crossing processes); False after *seconds*."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


async def _aclose(states) -> None:
    """Close the asyncio clients too (an async test's states)."""
    for state in states:
        await state.aclose()


@pytest.fixture
def two(redis_server):
    """Two workers' `RedisState`s on a flushed Redis."""
    redis_server.flush()
    with RedisState(redis_server.url) as a, RedisState(redis_server.url) as b:
        yield a, b


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_stores_implement_the_protocols(two):
    """Each store is the protocol the client, the guard and the receiver take."""
    a, _ = two
    assert isinstance(a.verdicts, VerdictStore)
    assert isinstance(a.pauses, PauseStore)
    assert isinstance(a.limiter(), RateLimiter)
    assert isinstance(a.ledger(), WebhookLedger)


# --- verdicts ----------------------------------------------------------------------------------


def test_a_verdict_reaches_the_other_workers_local_copy(two):
    """A's verdict is in B's copy (read with no I/O); another fingerprint is never refused."""
    a, b = two
    error = from_response(401, REVOKED)
    a.verdicts.record(FP, error)

    assert a.verdicts.get(FP) is not None  # at once, locally
    assert _eventually(lambda: b.verdicts.get(FP) is not None)
    seen = b.verdicts.get(FP)
    assert type(seen) is type(error)
    assert seen.code == 190
    assert b.verdicts.get("sha256:another0000") is None


def test_a_verdict_has_the_ttl_in_redis_and_in_the_copy(redis_server):
    """The key expires after the TTL, and so does the local copy (by its clock)."""
    redis_server.flush()
    clock = Clock(1000.0)
    with RedisConnection(redis_server.url) as conn:
        store = RedisVerdictStore(conn, ttl=60, clock=clock)
        try:
            store.record(FP, from_response(401, REVOKED))
            assert 0 < conn.client.pttl(conn.key("verdict", FP)) <= 60_000
            clock.t += 59
            assert store.get(FP) is not None
            clock.t += 2
            assert store.get(FP) is None
        finally:
            store.close()


def test_forget_drops_the_verdict_for_the_fleet(two):
    """`forget` in one worker clears the other's copy too."""
    a, b = two
    a.verdicts.record(FP, from_response(401, REVOKED))
    assert _eventually(lambda: b.verdicts.get(FP) is not None)
    b.verdicts.forget(FP)
    assert _eventually(lambda: a.verdicts.get(FP) is None)
    assert a.verdicts.list() == []


def test_a_new_worker_loads_the_verdicts_in_force(two, redis_server):
    """A worker started after the verdict refuses the token from its first call."""
    a, _ = two
    a.verdicts.record(FP, from_response(401, REVOKED))
    with RedisState(redis_server.url) as late:
        assert late.verdicts.get(FP) is not None
        assert [fp for fp, _, _ in late.verdicts.list()] == [FP]


@pytest.mark.anyio
async def test_async_verdicts(two):
    """`arecord`, `aget`, `aforget`, `alist` on the asyncio client."""
    a, b = two
    await a.verdicts.arecord(FP, from_response(401, REVOKED))
    assert _eventually(lambda: b.verdicts.get(FP) is not None)
    assert await b.verdicts.aget(FP) is not None
    assert len(await b.verdicts.alist()) == 1
    await b.verdicts.aforget(FP)
    assert _eventually(lambda: a.verdicts.get(FP) is None)
    await _aclose(two)


# --- pauses ------------------------------------------------------------------------------------


def _pause(number: str = "109") -> Pause:
    return Pause(
        kind="account", phone_number_id=number, category="account_state", since=1.0, until=9e9
    )


def test_a_pause_is_the_fleets_and_a_resume_anywhere_clears_it(two):
    """A's pause reaches B's copy; B's clear reaches A's; reads do no I/O."""
    a, b = two
    a.pauses.put(_pause())
    assert a.pauses.get("account", "109") == _pause()  # at once, locally
    assert _eventually(lambda: b.pauses.get("account", "109") == _pause())
    assert b.pauses.list() == [_pause()]
    b.pauses.clear("account", "109")
    assert _eventually(lambda: a.pauses.get("account", "109") is None)
    assert a.pauses.list() == []
    with pytest.raises(TypeError):
        a.pauses.put("not a pause")  # type: ignore[arg-type]


def test_a_new_worker_loads_the_pauses_in_force(two, redis_server):
    """A worker started after the pause holds the number from its first send."""
    a, _ = two
    a.pauses.put(_pause("5"))
    with RedisState(redis_server.url) as late:
        assert late.pauses.get("account", "5") == _pause("5")


@pytest.mark.anyio
async def test_async_pauses(two):
    """`aput`, `aget`, `alist`, `aclear`."""
    a, b = two
    await a.pauses.aput(_pause("7"))
    assert _eventually(lambda: b.pauses.get("account", "7") is not None)
    assert await b.pauses.aget("account", "7") == _pause("7")
    assert await b.pauses.alist() == [_pause("7")]
    await b.pauses.aclear("account", "7")
    assert _eventually(lambda: a.pauses.get("account", "7") is None)
    assert await a.pauses.aget("account", "7") is None
    await _aclose(two)


def test_a_hand_edited_pause_is_no_pause(two, redis_server):
    """A value that is not a pause's JSON loads as none (a guard must not trip over it)."""
    a, _ = two
    a.connection.client.hset(a.connection.key("pauses"), "account:1", b"{not json")
    a.connection.client.publish(a.connection.key("pauses"), b"{not json either")
    with RedisState(redis_server.url) as late:
        assert late.pauses.get("account", "1") is None
        assert late.pauses.list() == []


# --- the limiter -------------------------------------------------------------------------------


def test_reservations_are_spaced_by_the_rate_across_workers(two):
    """Two workers' limiters take consecutive slots of one number: 1/rate apart."""
    a, b = two
    la, lb = a.limiter(rate=10, pair_interval=None), b.limiter(rate=10, pair_interval=None)
    waits = [la.acquire("1", None), lb.acquire("1", None), la.acquire("1", None)]
    assert waits[0] == pytest.approx(0.0, abs=0.02)
    assert waits[1] == pytest.approx(0.1, abs=0.02)
    assert waits[2] == pytest.approx(0.2, abs=0.02)
    assert lb.acquire("2", None) == pytest.approx(0.0, abs=0.02)  # another number is free


def test_past_max_wait_nothing_is_reserved(two):
    """`max_wait` exceeded: None, and the next caller gets the slot that was not taken."""
    a, _ = two
    limiter = a.limiter(rate=1, pair_interval=None)
    assert limiter.acquire("1", None) == pytest.approx(0.0, abs=0.02)
    assert limiter.acquire("1", None, max_wait=0.5) is None
    assert limiter.acquire("1", None) == pytest.approx(1.0, abs=0.05)


def test_the_pair_limit_and_its_hold(two):
    """One recipient waits the pair interval; Meta's hold on the pair is seen by all."""
    a, b = two
    la, lb = a.limiter(rate=100, pair_interval=6.0), b.limiter(rate=100, pair_interval=6.0)
    assert la.acquire("1", "+100") == pytest.approx(0.0, abs=0.02)
    assert lb.acquire("1", "+100") == pytest.approx(6.0, abs=0.05)
    assert lb.acquire("1", "+200") < 0.1  # another recipient is not held back
    la.penalize("1", "+300", 30)
    assert lb.held("1", "+300") == pytest.approx(30, abs=0.1)
    assert lb.held("1", "+200") == 0.0


def test_a_number_penalty_holds_every_worker_and_probes_first(two):
    """A 130429's retry_after in one worker holds the number in all; the probe goes first."""
    a, b = two
    la, lb = a.limiter(rate=100, pair_interval=None), b.limiter(rate=100, pair_interval=None)
    la.penalize("1", None, 5)
    assert lb.held("1", None) == pytest.approx(5, abs=0.1)
    assert lb.acquire("1", None) == pytest.approx(5, abs=0.1)  # the probe, at the hold's end
    assert la.acquire("1", None) == pytest.approx(6, abs=0.1)  # then the probe gap
    la.penalize("1", None, float("nan"))  # not a penalty: ignored
    la.penalize("1", None, -1)


def test_set_rate_changes_the_numbers_rate_for_the_fleet(two):
    """`set_rate` in one worker paces the number at the new rate in the other."""
    a, b = two
    a.limiter().set_rate("1", 2.0)
    lb = b.limiter(pair_interval=None)
    lb.acquire("1", None)
    assert lb.acquire("1", None) == pytest.approx(0.5, abs=0.02)
    for bad in (0, -1, float("inf"), float("nan"), True, "80"):
        with pytest.raises(ConfigurationError):
            a.limiter().set_rate("1", bad)  # type: ignore[arg-type]
    assert check_rate(80) == 80.0


@pytest.mark.anyio
async def test_async_limiter(two):
    """`aacquire`, `apenalize`, `aheld`, `aset_rate`."""
    a, b = two
    la, lb = a.limiter(pair_interval=None), b.limiter(pair_interval=None)
    await la.aset_rate("9", 4.0)
    assert await la.aacquire("9", None) == pytest.approx(0.0, abs=0.02)
    assert await lb.aacquire("9", None) == pytest.approx(0.25, abs=0.02)
    await la.apenalize("9", None, 3)
    assert await lb.aheld("9", None) == pytest.approx(3, abs=0.1)
    await _aclose(two)


def test_limiter_settings_are_checked(two):
    """A bad rate or worker count is a ConfigurationError at construction."""
    a, _ = two
    with pytest.raises(ConfigurationError):
        a.limiter(rate=0)
    with pytest.raises(ConfigurationError):
        a.limiter(expected_workers=0)


# --- the webhook ledger ------------------------------------------------------------------------


def test_the_ledger_claims_once_across_processors(two):
    """A key claimed by one processor is refused by the other; release frees it."""
    a, b = two
    la, lb = a.ledger(window=60), b.ledger(window=60)
    assert la.claim("k1") is True
    assert lb.claim("k1") is False
    assert 0 < a.connection.client.pttl(a.connection.key("webhook", "key", "k1")) <= 60_000
    lb.release("k1")
    assert la.claim("k1") is True


def test_the_ledger_advances_and_retreats(two):
    """The furthest order only rises; retreat puts it back only if it still holds the order."""
    a, b = two
    la, lb = a.ledger(), b.ledger()
    assert la.advance("wamid.1", 2) is None
    assert lb.advance("wamid.1", 1) == 2  # stale: nothing changes
    assert lb.advance("wamid.1", 3) == 2
    la.retreat("wamid.1", 2, None)  # it holds 3, not 2: left alone
    assert la.advance("wamid.1", 0) == 3
    la.retreat("wamid.1", 3, 2)
    assert la.advance("wamid.1", 0) == 2
    la.retreat("wamid.1", 2, None)
    assert la.advance("wamid.1", 1) is None
    with pytest.raises(ConfigurationError):
        la.advance("wamid.1", "2")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        RedisWebhookLedger(a.connection, window=0)


def test_an_owned_ledger_is_idempotent_for_its_owner_only(two):
    """An owner's claim and advance, asked again (a delivery processed again after a kill),
    answer as the first time; another owner, or a plain claim, is refused as before."""
    a, b = two
    first, other = a.ledger().owned("delivery-1"), b.ledger().owned("delivery-2")
    assert isinstance(first, WebhookLedger)
    assert first.claim("k") is True
    assert first.claim("k") is True  # its own claim, again
    assert other.claim("k") is False
    assert b.ledger().claim("k") is False
    assert b.ledger().claim("plain") is True
    assert first.claim("plain") is False  # a plain claim is nobody's to take back
    assert first.advance("m", 2) is None
    assert first.advance("m", 2) is None  # the same answer: not stale by itself
    assert other.advance("m", 1) == 2  # older: stale, nothing changes
    assert other.advance("m", 3) == 2
    assert other.advance("m", 3) == 2
    assert first.advance("m", 2) is None  # its own answer, though 3 was decided since
    assert a.ledger().owned("late").advance("m", 2) == 3  # anybody else: stale
    plain = a.ledger()
    assert plain.advance("m", 1) == 3
    plain.retreat("m", 3, 2)
    assert plain.advance("m", 0) == 2
    for bad in ("", "1", "a:b"):
        with pytest.raises(ConfigurationError):
            a.ledger().owned(bad)


@pytest.mark.anyio
async def test_async_owned_ledger(two):
    """`aclaim` and `aadvance` of an owned ledger."""
    a, _ = two
    owned = a.ledger().owned("d1")
    assert await owned.aclaim("k") is True
    assert await owned.aclaim("k") is True
    assert await a.ledger().owned("d2").aclaim("k") is False
    assert await owned.aadvance("m", 1) is None
    assert await owned.aadvance("m", 1) is None
    assert await a.ledger().owned("d2").aadvance("m", 2) == 1
    await owned.arelease("k")
    await owned.aretreat("m", 2, 1)
    assert await a.ledger().aadvance("m", 0) == 1
    await _aclose(two)


@pytest.mark.anyio
async def test_async_ledger(two):
    """`aclaim`, `aadvance`, `arelease`, `aretreat`."""
    a, _ = two
    ledger = a.ledger()
    assert await ledger.aclaim("k") is True
    assert await ledger.aclaim("k") is False
    await ledger.arelease("k")
    assert await ledger.aclaim("k") is True
    assert await ledger.aadvance("m", 1) is None
    assert await ledger.aadvance("m", 2) == 1
    await ledger.aretreat("m", 2, 1)
    assert await ledger.aadvance("m", 1) == 1
    await _aclose(two)


# --- health and rotation -----------------------------------------------------------------------


def test_health_is_shared_with_its_ttl(two):
    """One worker's report serves the other, for the TTL."""
    a, b = two
    health = TokenHealth(valid=True, token_fingerprint=FP, scopes=("whatsapp_business_messaging",))
    a.health.put(FP, health)
    assert b.health.get(FP) == health
    assert 0 < a.connection.client.pttl(a.connection.key("health", FP)) <= 300_000
    assert b.health.get("sha256:none") is None
    with pytest.raises(TypeError):
        a.health.put(FP, "healthy")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_async_health(two):
    """`aput` and `aget`."""
    a, b = two
    health = TokenHealth(valid=False, token_fingerprint=FP, error="revoked")
    await a.health.aput(FP, health)
    assert await b.health.aget(FP) == health
    await _aclose(two)


def test_racing_promotions_have_one_winner(two):
    """Eight threads of two workers promote different candidates at version 0: one wins."""
    a, b = two
    results: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def promote(i: int) -> None:
        state = (a, b)[i % 2]
        start.wait()
        result = state.rotation.compare_and_set("main", 0, f"sha256:{i:012d}")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert b.rotation.get("main") == winners[0]
    rolled = a.rotation.compare_and_set("main", 1, "sha256:000000000099")
    assert rolled is not None
    assert rolled.previous == winners[0].active
    with pytest.raises(ConfigurationError):
        a.rotation.compare_and_set("main", 2, "EAAtoken")  # a candidate is named by fingerprint


@pytest.mark.anyio
async def test_async_rotation(two):
    """`aget` and `acompare_and_set`."""
    a, _ = two
    won = await a.rotation.acompare_and_set("r", 0, FP)
    assert won is not None
    assert won.version == 1
    assert await a.rotation.acompare_and_set("r", 0, FP) is None
    assert (await a.rotation.aget("r")).active == FP
    await _aclose(two)


# --- Redis unreachable, missing, or going away -------------------------------------------------


def test_unreachable_redis_is_a_typed_error_naming_host_port_not_the_password(closed_port):
    """Nothing listens: StateUnavailableError with 127.0.0.1:PORT, never the password."""
    url = f"redis://:hunter2-secret@127.0.0.1:{closed_port}/0"
    with RedisState(url, timeout=0.5) as state:
        for call in (
            state.ping,
            lambda: state.ledger().claim("k"),
            lambda: state.health.get(FP),
            lambda: state.rotation.get("r"),
            lambda: state.verdicts.forget(FP),
        ):
            with pytest.raises(StateUnavailableError) as caught:
                call()
            error = caught.value
            assert f"127.0.0.1:{closed_port}" in str(error)
            assert error.address == f"127.0.0.1:{closed_port}"
            assert "hunter2" not in repr(error.to_dict())
            assert error.__cause__ is None
            assert error.retryable
        assert "hunter2" not in repr(state)


def test_unreachable_redis_falls_back_for_verdicts_pauses_and_the_limiter(closed_port, caplog):
    """Verdicts and pauses keep working locally, the limiter at rate / expected_workers."""
    with RedisState(f"redis://127.0.0.1:{closed_port}/0", timeout=0.3) as state:
        state.verdicts.record(FP, from_response(401, REVOKED))
        assert state.verdicts.get(FP) is not None
        assert state.verdicts.fallbacks == 1
        state.pauses.put(_pause())
        assert state.pauses.get("account", "109") == _pause()
        assert state.pauses.list() == [_pause()]
        assert state.pauses.fallbacks == 1
        limiter = state.limiter(rate=10, pair_interval=None, expected_workers=4)
        assert limiter.acquire("1", None) == 0.0
        assert limiter.acquire("1", None) == pytest.approx(0.4, abs=0.05)  # 10/4 per second
        assert limiter.fallbacks == 2
    assert any(getattr(r, "event", None) == "fleet.fallback" for r in caplog.records)


def test_a_fall_back_is_an_event_and_a_count(closed_port):
    """With `events=`, each fall-back is a `StateFellBack` that `Counters` counts."""
    counters = Counters()
    url = f"redis://:pw-canary@127.0.0.1:{closed_port}/0"
    with RedisState(url, timeout=0.3, events=Events(counters)) as state:
        state.verdicts.record(FP, from_response(401, REVOKED))
        state.pauses.put(_pause())
        limiter = state.limiter(rate=10, expected_workers=2)
        limiter.acquire("1", None)
        limiter.acquire("1", None)
    assert counters.get("fleet.fallback") == 4
    assert counters.get("fleet.fallback", "transient") == 4
    seen: list[StateFellBack] = []
    with RedisState(url, timeout=0.3, events=Events(seen.append)) as state:
        state.limiter().acquire("1", None)
    (event,) = seen
    assert (event.store, event.address) == ("limiter", f"127.0.0.1:{closed_port}")
    assert "pw-canary" not in repr(event.to_dict())


def test_the_missing_extra_names_it(monkeypatch):
    """Without redis-py, a ConfigurationError names the `redis` extra."""
    monkeypatch.setitem(__import__("sys").modules, "redis", None)
    with pytest.raises(ConfigurationError, match=r"'redis' extra"):
        RedisState("redis://127.0.0.1:6379/0")


@pytest.mark.parametrize(
    "url", ["", "http://127.0.0.1:6379", "redis://127.0.0.1:notaport/0", 42], ids=repr
)
def test_a_bad_url_is_a_configuration_error(url):
    """A URL that is not Redis's is refused at construction."""
    with pytest.raises(ConfigurationError):
        RedisState(url)  # type: ignore[arg-type]


def test_redis_killed_and_restarted_the_fleet_converges(redis_server):
    """Redis down: verdicts recorded meanwhile stay local; back: they reach every worker."""
    redis_server.flush()
    with RedisState(redis_server.url, timeout=0.5) as a, RedisState(redis_server.url) as b:
        redis_server.stop()
        try:
            assert _eventually(lambda: not a.verdicts.synced.is_set())
            a.verdicts.record(FP, from_response(401, REVOKED))
            assert a.verdicts.fallbacks == 1
            assert a.verdicts.get(FP) is not None
            a.pauses.put(_pause())
            assert a.pauses.fallbacks == 1
            limiter = a.limiter(rate=10, pair_interval=None, expected_workers=2)
            assert limiter.acquire("1", None) is not None
            assert limiter.fallbacks == 1
            limiter.penalize("7", None, 60)  # Meta's hold, learned while Redis is down
        finally:
            redis_server.start()
        assert _eventually(lambda: b.verdicts.get(FP) is not None, 15)
        assert a.connection.client.exists(a.connection.key("verdict", FP))
        assert _eventually(lambda: b.pauses.get("account", "109") is not None, 15)

        def on_redis_again() -> bool:
            before = limiter.fallbacks
            limiter.acquire("1", None)
            return limiter.fallbacks == before

        assert _eventually(on_redis_again, 15)
        assert b.limiter().held("7", None) > 50  # told to the fleet by the next reservation


def test_a_write_that_fell_back_while_the_listener_stayed_reaches_the_fleet(two):
    """A's command call fails (here: within a second of a failure) while its listener stays
    connected: no reconnection will ever reload, so the fall-back asks for a load itself."""
    a, b = two
    a.connection._down_until = time.monotonic() + 60  # every call of A fails at once
    a.verdicts.record(FP, from_response(401, REVOKED))
    a.pauses.put(_pause("110"))
    assert (a.verdicts.fallbacks, a.pauses.fallbacks) == (1, 1)
    assert a.verdicts.synced.is_set()  # the listener never lost Redis

    assert _eventually(lambda: b.verdicts.get(FP) is not None)
    assert _eventually(lambda: b.pauses.get("account", "110") is not None)
    a.connection._down_until = time.monotonic() + 60
    a.pauses.clear("account", "110")  # a resume that fell back reaches the fleet too
    assert _eventually(lambda: b.pauses.get("account", "110") is None)


def _status(message: str, name: str) -> MessageStatus:
    return MessageStatus(id=message, status=name, key=f"status:{message}:{name}")


def test_a_redelivery_to_another_processor_is_dropped(two):
    """`admit` on two processors' ledgers: a duplicate and a stale status are refused by either."""
    a, b = two
    la, lb = a.ledger(), b.ledger()
    assert admit(_status("m", "read"), la).verdict == APPLY
    assert admit(_status("m", "read"), lb).verdict == DUPLICATE
    assert admit(_status("m", "delivered"), lb).verdict == STALE
    assert admit(_status("m", "failed"), lb).verdict == APPLY


@pytest.mark.anyio
async def test_async_admission_on_redis(two):
    """`aadmit` decides the same on the asyncio client."""
    a, b = two
    assert (await aadmit(_status("x", "sent"), a.ledger())).verdict == APPLY
    assert (await aadmit(_status("x", "sent"), b.ledger())).verdict == DUPLICATE
    await _aclose(two)
