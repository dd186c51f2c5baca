"""`RedisRateLimiter`: Meta's per-number and per-pair limits kept by the fleet together.

The same reservations as `LocalRateLimiter` (GCRA: each acquire takes the next free slot and
says how long to wait for it, so nobody polls), computed by one Lua script per call inside
Redis on Redis's own clock (`TIME`), so skewed worker clocks cannot skew the limit. Keys:

- `<ns>:rate:{<phone number id>}`: a hash of the number's next slot (`tat`), Meta's hold
  (`hold`), the probe flag (`probe`) and its rate if set (`interval`, `set_rate`); kept, one per
  number.
- `<ns>:pair:{<phone number id>}:<digest>`: the same for one (number, recipient) pair, the
  recipient as a SHA-256 digest (a phone number is never a key); it expires after its slot.

The number in braces is a Redis Cluster hash tag: a number's keys share one slot. When Redis
does not answer, the limiter falls back to a `LocalRateLimiter` at *rate* / *expected_workers*
(a conservative share, never unlimited), logged as `fleet.fallback`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any, Final

from wa_auth.errors import ConfigurationError, StateUnavailableError
from wa_auth.events import Events
from wa_auth.fleet._batch import Batched
from wa_auth.fleet._connection import RedisConnection, digest, fell_back, in_child_after_fork
from wa_auth.pacing import (
    DEFAULT_PAIR_INTERVAL,
    DEFAULT_PROBE_GAP,
    DEFAULT_THROUGHPUT,
    LocalRateLimiter,
    check_rate,
)

__all__ = ["RedisRateLimiter"]

#: Meta's holds kept for Redis at most while it is down (one per number or pair held).
_MAX_UNTOLD: Final = 10_000


_NOW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function fmt(x) return string.format('%.6f', x) end
"""

#: KEYS: the number, then the pairs of its calls; ARGV: default interval, burst, pair interval,
#: probe gap, then per call the index of its pair in KEYS (0: none) and its max wait (-1: none).
#: Reserves the calls in order, as that many calls of one reservation would, and answers one
#: word per call: its wait, or '-' past its max wait (nothing reserved). The number's hash is
#: read and written once for all of them; a pair's hash is touched only when it exists or the
#: pair limit is on.
_ACQUIRE: Final = (
    _NOW
    + """
local number = KEYS[1]
local interval = tonumber(redis.call('HGET', number, 'interval') or ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local pair_gap, probe_gap = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('HGET', number, 'tat') or now)
local probe = redis.call('HEXISTS', number, 'probe') == 1
local probed = false
local reserved = false
local words = {}
for i = 5, #ARGV, 2 do
  local index = tonumber(ARGV[i])
  local pair = index > 0 and KEYS[index + 1] or false
  local exists = pair and redis.call('EXISTS', pair) == 1
  local slot = math.max(now, tat - tolerance)
  local send_at = slot
  if exists then send_at = math.max(slot, tonumber(redis.call('HGET', pair, 'tat') or now)) end
  local wait = send_at - now
  local max_wait = tonumber(ARGV[i + 1])
  if max_wait >= 0 and wait > max_wait then
    words[#words + 1] = '-'
  else
    if probe then
      tat = slot + math.max(interval, probe_gap) + tolerance
      probe = false
      probed = true
    else
      tat = math.max(tat, slot) + interval
    end
    reserved = true
    if pair then
      local gap = pair_gap
      local last = now
      if exists then
        if redis.call('HDEL', pair, 'probe') == 1 then gap = math.max(gap, probe_gap) end
        last = tonumber(redis.call('HGET', pair, 'hold') or now)
      end
      if gap > 0 then
        redis.call('HSET', pair, 'tat', fmt(send_at + gap))
        last = math.max(last, send_at + gap)
        exists = true
      end
      if exists then
        redis.call('PEXPIRE', pair, math.ceil((last - now) * 1000) + 1000)
      end
    end
    words[#words + 1] = fmt(wait)
  end
end
if reserved then redis.call('HSET', number, 'tat', fmt(tat)) end
if probed then redis.call('HDEL', number, 'probe') end
return table.concat(words, ' ')
"""
)

#: Reservation keys kept per limiter (number, recipient) before the cache starts again.
_MAX_KEYS: Final = 4096


def _group(calls: list[tuple[Sequence[str], Sequence[Any]]]) -> tuple[list[str], list[Any]]:
    """Return the acquire script's KEYS and ARGV for *calls* on one number, in order.

    Each call's keys are its number and, if any, its pair; its args the limiter's four
    settings and its max wait (see `_ACQUIRE`).
    """
    keys: list[str] = [calls[0][0][0]]
    args: list[Any] = list(calls[0][1][:4])
    index: dict[str, int] = {}
    for call_keys, call_args in calls:
        if len(call_keys) > 1:
            pair = call_keys[1]
            found = index.get(pair)
            if found is None:
                keys.append(pair)
                found = index[pair] = len(keys) - 1
            args.append(found)
        else:
            args.append(0)
        args.append(call_args[4])
    return keys, args


class _Reservations(Batched):
    """The acquire script's batch: consecutive reservations on one number are one call.

    A turn's sixty-four reservations on one number then cost Redis one read and one write of
    the number's hash, and the caller one word each to read instead of a reply of its own.
    """

    def _calls(self, batch: list[Any]) -> list[Any]:
        joined: list[Any] = []
        run: list[tuple[Sequence[str], Sequence[Any]]] = []
        futures: list[asyncio.Future[Any]] = []
        for keys, args, future in batch:
            if run and (keys[0] != run[0][0][0] or args[:4] != run[0][1][:4]):
                joined.append((*_group(run), futures))
                run, futures = [], []
            run.append((keys, args))
            futures.append(future)
        if run:
            joined.append((*_group(run), futures))
        return joined

    def _settle(self, futures: list[asyncio.Future[Any]], answer: Any) -> None:
        if isinstance(answer, Exception):
            for future in futures:
                if not future.done():
                    future.set_exception(answer)
            return
        words = bytes(answer).split()
        if len(words) != len(futures):  # not this script's answer: a bug, never a hang
            from redis.exceptions import ResponseError

            self._settle(futures, ResponseError(f"{len(words)} waits for {len(futures)} calls"))
            return
        for future, word in zip(futures, words, strict=True):
            if not future.done():
                future.set_result(word)


#: KEYS: the number's or the pair's hash; ARGV: seconds, '1' for a number, default interval,
#: burst. The hold spends the burst: the next slot is its end (plus the burst's tolerance).
_PENALIZE: Final = (
    _NOW
    + """
local hold_until = now + tonumber(ARGV[1])
local start = hold_until
if ARGV[2] == '1' then
  local interval = tonumber(redis.call('HGET', KEYS[1], 'interval') or ARGV[3])
  start = hold_until + (tonumber(ARGV[4]) - 1) * interval
end
local tat = math.max(tonumber(redis.call('HGET', KEYS[1], 'tat') or now), start)
local hold = math.max(tonumber(redis.call('HGET', KEYS[1], 'hold') or now), hold_until)
redis.call('HSET', KEYS[1], 'tat', fmt(tat), 'hold', fmt(hold), 'probe', '1')
if ARGV[2] ~= '1' then
  redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, hold) - now) * 1000) + 1000)
end
return 1
"""
)

#: KEYS: number [, pair]. Returns the seconds the longest hold still runs, as text.
_HELD: Final = (
    _NOW
    + """
local left = 0
for _, key in ipairs(KEYS) do
  left = math.max(left, tonumber(redis.call('HGET', key, 'hold') or now) - now)
end
return fmt(left)
"""
)


class RedisRateLimiter:
    """A `RateLimiter` on Redis: every worker of the fleet reserves its slots in one place.

    Args:
        connection: The Redis (`RedisState.connection`).
        rate: Messages per second per number (`DEFAULT_THROUGHPUT`, Meta's default tier);
            `set_rate` changes one number's for the fleet.
        pair_interval: Seconds between two messages to one recipient from one number; None
            turns the pair limit off (Meta's holds on a pair still apply).
        burst: Messages a number may send at once before its rate applies.
        probe_gap: Seconds between the probe after a hold and the next send (see
            `LocalRateLimiter`).
        expected_workers: How many processes share the limit: with Redis down, each falls
            back to *rate* / *expected_workers* on its own.
        events: Where a fall-back is told (`StateFellBack`, one per call); None: logged.

    Raises:
        ConfigurationError: A setting is out of range.
    """

    def __init__(
        self,
        connection: RedisConnection,
        *,
        rate: float = DEFAULT_THROUGHPUT,
        pair_interval: float | None = DEFAULT_PAIR_INTERVAL,
        burst: int = 1,
        probe_gap: float = DEFAULT_PROBE_GAP,
        expected_workers: int = 1,
        events: Events | None = None,
    ) -> None:
        self.rate = check_rate(rate)
        self.events = events
        if (
            isinstance(expected_workers, bool)
            or not isinstance(expected_workers, int)
            or (expected_workers < 1)
        ):
            raise ConfigurationError(
                f"expected_workers must be a positive integer, got {expected_workers!r}"
            )
        self.expected_workers = expected_workers
        # The local limiter checks the other settings, and is the fall-back's shape.
        self.fallback = LocalRateLimiter(
            rate=self.rate / expected_workers,
            pair_interval=pair_interval,
            burst=burst,
            probe_gap=probe_gap,
        )
        self._redis = connection
        self._pair_interval = float(pair_interval or 0.0)
        self._burst = burst
        self._probe_gap = float(probe_gap)
        self._interval = 1.0 / self.rate
        #: Calls answered by the local fall-back because Redis did not answer.
        self.fallbacks = 0
        #: Meta's holds Redis did not take (number, recipient, wall-clock end): told to the
        #: fleet with the next reservation that reaches Redis, so the states converge.
        self._untold: list[tuple[str, str | None, float]] = []
        #: (number, recipient) -> the keys of its reservations (a SHA-256 each, so kept).
        self._key_cache: dict[tuple[str, str | None], tuple[str, ...]] = {}
        in_child_after_fork(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: a fall-back of its own, empty (the parent's lock may be held)."""
        self.fallback = LocalRateLimiter(
            rate=self.rate / self.expected_workers,
            pair_interval=self._pair_interval or None,
            burst=self._burst,
            probe_gap=self._probe_gap,
        )

    def _keys(self, phone_number_id: str, recipient: str | None) -> tuple[str, ...]:
        found = self._key_cache.get((phone_number_id, recipient))
        if found is not None:
            return found
        number = self._redis.key("rate", "{" + phone_number_id + "}")
        if recipient is None:
            found = (number,)
        else:
            pair = self._redis.key("pair", "{" + phone_number_id + "}", digest(recipient))
            found = (number, pair)
        if len(self._key_cache) >= _MAX_KEYS:
            self._key_cache = {}
        self._key_cache[phone_number_id, recipient] = found
        return found

    def _acquire_args(self, max_wait: float) -> list[Any]:
        limit = -1.0 if math.isinf(max_wait) else max(float(max_wait), 0.0)
        return [self._interval, self._burst, self._pair_interval, self._probe_gap, limit]

    def _fell_back(self, exc: StateUnavailableError) -> None:
        self.fallbacks += 1
        fell_back(self.events, "limiter", exc, self.fallbacks)

    @staticmethod
    def _wait(answer: object) -> float | None:
        if answer is None or answer in {b"-", "-"}:
            return None
        return max(float(answer.decode() if isinstance(answer, bytes) else str(answer)), 0.0)

    def _untold_penalties(self) -> list[tuple[str, str | None, float, tuple[list[str], list[Any]]]]:
        """The holds Redis has not heard of yet, with their penalize script's arguments now."""
        now = time.time()
        found = []
        for number, recipient, until in list(self._untold):
            penalty = self._penalty(number, recipient, until - now)
            if penalty is None:  # over already
                self._forget_untold((number, recipient, until))
            else:
                found.append((number, recipient, until, penalty))
        return found

    def _tell(self) -> None:
        for number, recipient, until, penalty in self._untold_penalties():
            self._redis.script(_PENALIZE)(*penalty)
            self._forget_untold((number, recipient, until))

    async def _atell(self) -> None:
        for number, recipient, until, penalty in self._untold_penalties():
            await self._redis.ascript(_PENALIZE)(*penalty)
            self._forget_untold((number, recipient, until))

    def _forget_untold(self, entry: tuple[str, str | None, float]) -> None:
        with contextlib.suppress(ValueError):  # another sender told it first
            self._untold.remove(entry)

    def _keep_untold(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        if len(self._untold) < _MAX_UNTOLD:
            self._untold.append((phone_number_id, recipient, time.time() + seconds))

    def acquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send for the fleet; return the seconds to wait, or None past max."""
        try:
            with self._redis.calling("reserving a send"):
                if self._untold:
                    self._tell()
                keys = self._keys(phone_number_id, recipient)
                answer = self._redis.script(_ACQUIRE)(
                    *_group([(keys, self._acquire_args(max_wait))])
                )
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.fallback.acquire(phone_number_id, recipient, max_wait=max_wait)
        return self._wait(answer)

    async def aacquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send for the fleet (see `acquire`)."""
        try:
            with self._redis.calling("reserving a send"):
                if self._untold:
                    await self._atell()
                reservations = self._redis.ascript(_ACQUIRE, _Reservations)
                keys = self._keys(phone_number_id, recipient)
                answer = await reservations(keys, self._acquire_args(max_wait))
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.fallback.acquire(phone_number_id, recipient, max_wait=max_wait)
        return self._wait(answer)

    def _penalty(
        self, phone_number_id: str, recipient: str | None, seconds: float
    ) -> tuple[list[str], list[Any]] | None:
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
            return None
        keys = list(self._keys(phone_number_id, recipient)[-1:])
        return keys, [
            float(seconds),
            "1" if recipient is None else "0",
            self._interval,
            self._burst,
        ]

    def penalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number (or the pair) back for *seconds*, for the fleet: Meta said so."""
        penalty = self._penalty(phone_number_id, recipient, seconds)
        if penalty is None:
            return
        self.fallback.penalize(phone_number_id, recipient, seconds)
        try:
            with self._redis.calling("holding a number back"):
                self._redis.script(_PENALIZE)(*penalty)
        except StateUnavailableError as exc:
            self._keep_untold(phone_number_id, recipient, seconds)
            self._fell_back(exc)

    async def apenalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number (or the pair) back for *seconds*, for the fleet."""
        penalty = self._penalty(phone_number_id, recipient, seconds)
        if penalty is None:
            return
        self.fallback.penalize(phone_number_id, recipient, seconds)
        try:
            with self._redis.calling("holding a number back"):
                await self._redis.ascript(_PENALIZE)(*penalty)
        except StateUnavailableError as exc:
            self._keep_untold(phone_number_id, recipient, seconds)
            self._fell_back(exc)

    def held(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold still stops the number or the pair, fleet-wide; 0: none."""
        try:
            with self._redis.calling("reading a hold"):
                script = self._redis.script(_HELD)
                return self._wait(script(self._keys(phone_number_id, recipient), [])) or 0.0
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.fallback.held(phone_number_id, recipient)

    async def aheld(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold still stops the number or the pair (see `held`)."""
        try:
            with self._redis.calling("reading a hold"):
                script = self._redis.ascript(_HELD)
                answer = await script(self._keys(phone_number_id, recipient), [])
        except StateUnavailableError as exc:
            self._fell_back(exc)
            return self.fallback.held(phone_number_id, recipient)
        return self._wait(answer) or 0.0

    def set_rate(self, phone_number_id: str, per_second: float) -> None:
        """Set the number's messages per second for the fleet (a tier change Meta announced).

        Raises:
            ConfigurationError: *per_second* is not a positive finite number.
            StateUnavailableError: Redis did not answer; nothing changed.
        """
        interval = 1.0 / check_rate(per_second)
        self.fallback.set_rate(phone_number_id, per_second / self.expected_workers)
        with self._redis.calling("setting a rate"):
            self._redis.client.hset(self._keys(phone_number_id, None)[0], "interval", interval)

    async def aset_rate(self, phone_number_id: str, per_second: float) -> None:
        """Set the number's messages per second for the fleet (see `set_rate`)."""
        interval = 1.0 / check_rate(per_second)
        self.fallback.set_rate(phone_number_id, per_second / self.expected_workers)
        with self._redis.calling("setting a rate"):
            key = self._keys(phone_number_id, None)[0]
            await self._redis.aclient().hset(key, "interval", interval)

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter({self._redis.address!r}, rate={self.rate:g}, "
            f"pair_interval={self._pair_interval:g}, expected_workers={self.expected_workers})"
        )
