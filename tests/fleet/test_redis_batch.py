"""The limiter's batched reservations: a loop turn's calls in one script call, slots unchanged.

`Batched` sends the concurrent calls of one event-loop iteration as one `EVALSHA` of the
script's batch form. A batch across numbers and pairs, with Meta's holds and the probe after
them, must take the same slots as the same reservations made one by one (the single script,
through the blocking client). The rates are slow (a slot every 100 s, a pair every 250 s) so
that every slot is a whole multiple of 10 s from the first call: a wrong slot is off by 10 s at
least, while the two runs' own clocks differ by the milliseconds the calls take.
"""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wa_auth.fleet import RedisState

pytestmark = pytest.mark.real_component("redis")

NUMBERS = ("111", "222", "333")
RECIPIENTS = (None, "+15550001", "+15550002")
#: Slots are 100 k, 120 + 100 k, 250 k or 300 + 250 k seconds away: none within 10 s of these.
MAX_WAITS = (math.inf, 0.0, 150.0, 1010.0)
SETTINGS = {"rate": 0.01, "pair_interval": 250.0, "probe_gap": 30.0}

reservation = st.tuples(
    st.sampled_from(NUMBERS), st.sampled_from(RECIPIENTS), st.sampled_from(MAX_WAITS)
)
hold = st.tuples(st.sampled_from(NUMBERS), st.sampled_from(RECIPIENTS), st.sampled_from((120, 300)))
_namespaces = itertools.count()


def _evalsha_calls(state: RedisState) -> int:
    stats = state.connection.client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def _same(batched: list[float | None], one_by_one: list[float | None]) -> None:
    assert len(batched) == len(one_by_one)
    for b, o in zip(batched, one_by_one, strict=True):
        assert (b is None) == (o is None), (batched, one_by_one)
        if b is not None and o is not None:
            assert abs(b - o) < 5.0, (batched, one_by_one)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    holds=st.lists(hold, max_size=3),
    calls=st.lists(reservation, min_size=1, max_size=16),
)
def test_a_batch_takes_the_slots_of_one_by_one_reservations(redis_server, holds, calls):
    """Across numbers and pairs, after holds (and their probes), with and without a max wait."""
    run = next(_namespaces)
    with (
        RedisState(redis_server.url, namespace=f"batch{run}a") as one,
        RedisState(redis_server.url, namespace=f"batch{run}b") as many,
    ):
        single, batch = one.limiter(**SETTINGS), many.limiter(**SETTINGS)
        for number, recipient, seconds in holds:
            single.penalize(number, recipient, seconds)
            batch.penalize(number, recipient, seconds)

        one_by_one = [single.acquire(n, r, max_wait=w) for n, r, w in calls]

        async def together() -> tuple[list[float | None], int]:
            await batch.aacquire("warm-up", None)  # the batch script is loaded
            before = _evalsha_calls(many)
            waits = await asyncio.gather(*(batch.aacquire(n, r, max_wait=w) for n, r, w in calls))
            sent = _evalsha_calls(many) - before
            await many.aclose()
            return list(waits), sent

        batched, sent = asyncio.run(together())
        assert sent == 1  # one script call for the whole batch
        _same(batched, one_by_one)
        assert batch.fallbacks == single.fallbacks == 0


def test_each_caller_gets_its_own_answer_or_error(redis_server):
    """An error in one call of a batch is that caller's; the others get their answers."""
    redis_server.flush()
    script = """
if ARGV[1] == 'bad' then return redis.call('INCR', KEYS[1]) end
if ARGV[1] == 'none' then return nil end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
    with RedisState(redis_server.url) as state:
        connection = state.connection
        connection.client.set("t:text", "not a number")

        async def calls() -> list[object]:
            call = connection.ascript(script)
            answers = await asyncio.gather(
                call(["t:a"], ["one"]),
                call(["t:text"], ["bad"]),
                call([], ["none"]),
                call(["t:b"], ["two"]),
                return_exceptions=True,
            )
            await state.aclose()
            return answers

        first, failed, nothing, last = asyncio.run(calls())
        assert (first, nothing, last) == (b"one", None, b"two")
        assert isinstance(failed, Exception)
        assert "not an integer" in str(failed.args[0])
        assert connection.client.mget("t:a", "t:b") == [b"one", b"two"]

        connection.client.script_flush()  # a restarted Redis: the batch script is loaded again

        async def again() -> object:
            answer = await connection.ascript(script)(["t:c"], ["three"])
            await state.aclose()
            return answer

        assert asyncio.run(again()) == b"three"


def _commands(state: RedisState) -> dict[str, int]:
    stats = state.connection.client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def test_a_turns_reservations_on_one_number_read_and_write_its_hash_once(redis_server):
    """Sixty-four reservations on one number: one script call, one `TIME`, one `HSET`."""
    run = next(_namespaces)
    with RedisState(redis_server.url, namespace=f"group{run}") as state:
        limiter = state.limiter(rate=1000.0, pair_interval=None)

        async def together() -> tuple[list[float | None], dict[str, int]]:
            await limiter.aacquire("111", "+15550001")  # the batch script is loaded
            before = _commands(state)
            waits = await asyncio.gather(
                *(limiter.aacquire("111", f"+1555000{i % 4}") for i in range(64))
            )
            after = _commands(state)
            await state.aclose()
            return list(waits), {k: after[k] - before.get(k, 0) for k in after}

        waits, ran = asyncio.run(together())
    assert ran["evalsha"] == 1
    assert ran["time"] == 1
    assert ran["hset"] == 1  # the number's next slot, once for all 64
    assert ran["exists"] == 64  # each pair's hash: held by Meta? (none is)
    assert ran.get("hdel", 0) == 0
    # The slots are the ones 64 calls made one by one take: a millisecond apart, in order.
    assert all(w is not None for w in waits)
    gaps = [b - a for a, b in itertools.pairwise(w for w in waits if w is not None)]
    assert all(abs(gap - 0.001) < 1e-5 for gap in gaps), gaps


def test_an_answer_a_batch_cannot_read_fails_its_callers_never_hangs(redis_server):
    """A joined reservation answered with nil (a proxy, a wrong script) is an error, not a hang.

    The reservations' batch reads one word per caller from its answer; reading `None` raised
    inside the sending task, after which every caller of that batch waited forever.
    """
    from wa_auth.fleet._limiter import _Reservations

    redis_server.flush()
    with RedisState(redis_server.url) as state:
        connection = state.connection

        async def calls() -> list[object]:
            call = connection.ascript("return nil", _Reservations)
            args = ["1", "0.01", "0", "1", "inf"]
            answers = await asyncio.wait_for(
                asyncio.gather(
                    call(["n:111"], args), call(["n:111"], args), return_exceptions=True
                ),
                timeout=10,
            )
            await state.aclose()
            return answers

        answers = asyncio.run(calls())
        assert len(answers) == 2
        for answer in answers:
            assert isinstance(answer, Exception)
            assert "could not be read" in str(answer)


def test_a_group_that_fails_partway_keeps_the_numbers_probe(redis_server):
    """A Lua error after the probe's slot was taken leaves the number's hash as it was.

    Redis keeps a script's writes made before an error. The number's `probe` is therefore
    deleted only beside the final write of its `tat`: a group that fails partway (here a pair
    key holding foreign data) leaves the probe for the next reservation to take.
    """
    from wa_auth.fleet._limiter import _ACQUIRE, _group

    redis_server.flush()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.hset("n:111", mapping={"tat": "0", "hold": "0", "probe": "1"})
        client.set("n:111:pair", "foreign data")
        keys, args = _group(
            [
                (["n:111"], [0.01, 1, 250.0, 30.0, -1]),
                (["n:111", "n:111:pair"], [0.01, 1, 250.0, 30.0, -1]),
            ]
        )
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            client.eval(_ACQUIRE, len(keys), *keys, *args)
        assert client.hget("n:111", "probe") == b"1"
        assert client.hget("n:111", "tat") == b"0"
    finally:
        client.close()
