"""Pacing and pauses: how fast a number may send, and which numbers may not send at all.

`RateLimiter` is the protocol of a limiter (blocking and `a`-prefixed async methods, so a
fleet's Redis limiter fits unchanged); `LocalRateLimiter` is the in-process one: Meta's
per-number throughput and per-(number, recipient) pair limit as reservations, so a sender
learns how long to wait instead of spinning. `PauseStore` holds `Pause` records (a number whose
account is locked, a number whose circuit is open after repeated transient failures);
`MemoryPauseStore` is the in-memory default, and the state file of short-lived processes or a
fleet's Redis hold the same records.

Meta's limits, from its throughput and error-code pages: 80 messages per second per business
number by default (up to 1,000 after an automatic upgrade; 20 for numbers also on the WhatsApp
Business app), answered with 130429 beyond; about one message every 6 seconds to the same user
(the pair rate limit, 131056).

A rate limit is the number's (or the pair's), not each message's: after a 130429 the limiter
holds the whole number for its `retry_after` (a 131056 holds the pair), and `held` tells a
sender that waited for a slot whether a hold began meanwhile, so it takes a new slot instead of
asking Meta again. After a hold, one send (the probe) goes first and the next waits
`probe_gap` for its answer: a storm costs about one request per hold, not one per sender.
"""

from __future__ import annotations

import builtins
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from wa_auth._exports import claim as _claim
from wa_auth.errors import ConfigurationError

__all__ = [
    "DEFAULT_PAIR_INTERVAL",
    "DEFAULT_PROBE_GAP",
    "DEFAULT_THROUGHPUT",
    "LocalRateLimiter",
    "MemoryPauseStore",
    "Pause",
    "PauseStore",
    "RateLimiter",
    "check_rate",
]

#: Meta's default throughput tier: messages per second per business phone number.
DEFAULT_THROUGHPUT: Final = 80.0
#: Meta's pair rate limit: about one message every 6 seconds to the same user (131056).
DEFAULT_PAIR_INTERVAL: Final = 6.0
#: Seconds between a held number's (or pair's) first send after the hold, its probe, and the
#: next one: longer than a Graph round trip, so a 130429 answering the probe renews the hold
#: before anyone else is sent.
DEFAULT_PROBE_GAP: Final = 1.0
#: Pair entries kept before the stale ones are dropped (one per recent recipient).
_MAX_PAIRS: Final = 100_000

#: A number's key (its id) or a pair's ((number id, recipient)) in the holds.
_Key = str | tuple[str, str]


def check_rate(per_second: object) -> float:
    """Return *per_second* as a float when it is a rate a limiter can pace at.

    A positive, finite number of messages per second (not a bool); what every limiter's
    `set_rate` checks before it changes anything.

    Raises:
        ConfigurationError: Anything else (zero, negative, NaN, infinity, a string, ...).
    """
    if (
        isinstance(per_second, bool)
        or not isinstance(per_second, (int, float))
        or not math.isfinite(per_second)
        or per_second <= 0
    ):
        raise ConfigurationError(
            f"a rate must be a positive, finite number of messages per second, got {per_second!r}"
        )
    return float(per_second)


@runtime_checkable
class RateLimiter(Protocol):
    """Where senders reserve their turn; in memory here, Redis for a fleet."""

    def acquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send; return the seconds to wait first, or None past *max_wait*.

        None reserves nothing: the caller queues the message instead of waiting that long.
        """
        ...

    def penalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number (or the pair, with *recipient*) back for *seconds*: Meta said so."""
        ...

    def held(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold (`penalize`) still stops the number or the pair; 0: none.

        A sender asks after waiting for its slot: a hold that began meanwhile voids the slot,
        and the sender acquires again instead of sending into Meta's rate limit.
        """
        ...

    def set_rate(self, phone_number_id: str, per_second: float) -> None:
        """Pace the number at *per_second* from now on (a new throughput tier, by webhook).

        Raises:
            ConfigurationError: *per_second* fails `check_rate`.
        """
        ...

    async def aacquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send (see `acquire`)."""
        ...

    async def apenalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number or the pair back (see `penalize`)."""
        ...

    async def aheld(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold still stops the number or the pair (see `held`)."""
        ...

    async def aset_rate(self, phone_number_id: str, per_second: float) -> None:
        """Pace the number at *per_second* from now on (see `set_rate`)."""
        ...


class LocalRateLimiter:
    """Per-number messages per second and a per-pair interval, as reservations (GCRA).

    Each acquire reserves the earliest slot both the number's rate and the pair's interval
    allow and returns how long to wait for it, so a thousand senders sleep for their turn
    instead of polling. A 130429 or 131056 answer's `retry_after` holds the whole number or
    the pair (`penalize`): no slot starts before the hold ends, the burst is spent, and the
    first send after it (the probe) is followed by the next only *probe_gap* later, so the
    probe's answer can renew the hold before anyone else asks Meta. A pair's hold applies even
    with the pair limit off.

    Args:
        rate: Messages per second per number (`DEFAULT_THROUGHPUT`, Meta's default tier).
        rates: Per-number overrides, by phone number id (a coexistence number: 20).
        pair_interval: Seconds between two messages to the same recipient from one number;
            None turns the pair limit off.
        burst: Messages a number may send at once before its rate applies.
        probe_gap: Seconds between the probe after a hold and the next send of that number
            or pair (`DEFAULT_PROBE_GAP`); 0 paces it at the rate alone.
        monotonic: The clock.
    """

    def __init__(
        self,
        *,
        rate: float = DEFAULT_THROUGHPUT,
        rates: Mapping[str, float] | None = None,
        pair_interval: float | None = DEFAULT_PAIR_INTERVAL,
        burst: int = 1,
        probe_gap: float = DEFAULT_PROBE_GAP,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        for value in (rate, *(rates or {}).values()):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"rates must be positive numbers, got {value!r}")
        if pair_interval is not None and not pair_interval >= 0:
            raise ConfigurationError(f"pair_interval must be None or >= 0, got {pair_interval!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigurationError(f"burst must be a positive integer, got {burst!r}")
        if (
            isinstance(probe_gap, bool)
            or not isinstance(probe_gap, (int, float))
            or not 0 <= probe_gap < math.inf
        ):
            raise ConfigurationError(
                f"probe_gap must be a finite number of seconds >= 0, got {probe_gap!r}"
            )
        self._interval = 1.0 / rate
        self._intervals = {str(k): 1.0 / v for k, v in (rates or {}).items()}
        self._pair_interval = pair_interval
        self._burst = burst
        self._probe_gap = float(probe_gap)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: Theoretical arrival times (monotonic): the next free slot of each number and pair.
        self._numbers: dict[str, float] = {}
        self._pairs: dict[tuple[str, str], float] = {}
        #: Where Meta's retry_after holds a number or a pair: the end of the hold (monotonic).
        self._holds: dict[_Key, float] = {}
        #: Numbers and pairs whose next reservation is the probe after a hold.
        self._probes: set[_Key] = set()

    def acquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send; return the seconds to wait first, or None past *max_wait*."""
        interval = self._intervals.get(phone_number_id, self._interval)
        tolerance = (self._burst - 1) * interval
        with self._lock:
            now = self._monotonic()
            tat = self._numbers.get(phone_number_id, now)
            slot = max(now, tat - tolerance)
            send_at = slot
            pair_key = None
            if recipient is not None and (self._pair_interval or self._pairs):
                pair_key = (phone_number_id, recipient)
                send_at = max(slot, self._pairs.get(pair_key, now))
            wait = send_at - now
            if wait > max_wait:
                return None
            # The number's own next slot is taken, not the one the pair pushed this send to: a
            # user waiting out the pair interval must not hold every other recipient back.
            if phone_number_id in self._probes:
                self._probes.discard(phone_number_id)
                after = slot + max(interval, self._probe_gap) + tolerance
            else:
                after = max(tat, slot) + interval
            self._numbers[phone_number_id] = after
            if pair_key is not None:
                gap = self._pair_interval or 0.0
                if pair_key in self._probes:
                    self._probes.discard(pair_key)
                    gap = max(gap, self._probe_gap)
                if gap:
                    self._pairs[pair_key] = send_at + gap
                    if len(self._pairs) > _MAX_PAIRS:
                        self._prune(now)
        return wait

    def penalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number (or the pair) back for *seconds* from now; its next send probes."""
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
            return
        with self._lock:
            now = self._monotonic()
            until = now + seconds
            key: _Key
            if recipient is None:
                key = phone_number_id
                interval = self._intervals.get(phone_number_id, self._interval)
                # The burst is spent: the first slot after the hold is its end, not before.
                start = until + (self._burst - 1) * interval
                self._numbers[key] = max(self._numbers.get(key, now), start)
            else:
                key = (phone_number_id, recipient)
                self._pairs[key] = max(self._pairs.get(key, now), until)
                if len(self._pairs) > _MAX_PAIRS:
                    self._prune(now)
            self._holds[key] = max(self._holds.get(key, now), until)
            self._probes.add(key)

    def held(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold still stops the number or the pair; 0 when none does."""
        with self._lock:
            now = self._monotonic()
            until = self._holds.get(phone_number_id, now)
            if recipient is not None and self._holds:
                until = max(until, self._holds.get((phone_number_id, recipient), now))
        return max(until - now, 0.0)

    def set_rate(self, phone_number_id: str, per_second: float) -> None:
        """Pace *phone_number_id* at *per_second* from now on (a slot already taken stays).

        Raises:
            ConfigurationError: *per_second* fails `check_rate`.
        """
        interval = 1.0 / check_rate(per_second)
        with self._lock:
            self._intervals[str(phone_number_id)] = interval

    def rate(self, phone_number_id: str) -> float:
        """Return the messages per second *phone_number_id* is paced at."""
        with self._lock:
            interval = self._intervals.get(phone_number_id, self._interval)
        return 1.0 / interval if interval else math.inf

    async def aset_rate(self, phone_number_id: str, per_second: float) -> None:
        """Pace the number at *per_second* from now on (no I/O)."""
        self.set_rate(phone_number_id, per_second)

    async def aacquire(
        self, phone_number_id: str, recipient: str | None, *, max_wait: float = math.inf
    ) -> float | None:
        """Reserve the next send (no I/O: the same as `acquire`)."""
        return self.acquire(phone_number_id, recipient, max_wait=max_wait)

    async def apenalize(self, phone_number_id: str, recipient: str | None, seconds: float) -> None:
        """Hold the number or the pair back (no I/O)."""
        self.penalize(phone_number_id, recipient, seconds)

    async def aheld(self, phone_number_id: str, recipient: str | None) -> float:
        """Return the seconds a hold still stops the number or the pair (no I/O)."""
        return self.held(phone_number_id, recipient)

    def _prune(self, now: float) -> None:
        self._pairs = {k: v for k, v in self._pairs.items() if v > now}
        self._holds = {k: v for k, v in self._holds.items() if v > now}
        self._probes = {k for k in self._probes if isinstance(k, str) or k in self._pairs}

    def __repr__(self) -> str:
        rate = 1.0 / self._interval if self._interval else math.inf
        return (
            f"LocalRateLimiter(rate={rate:g}, pair_interval={self._pair_interval!r}, "
            f"burst={self._burst}, probe_gap={self._probe_gap:g})"
        )


# --- pauses -------------------------------------------------------------------------------------

#: A number whose account or number state stops every send (131031, 368, ...).
ACCOUNT: Final = "account"
#: A number whose circuit counts, or stopped sends after, consecutive transient failures.
CIRCUIT: Final = "circuit"


@attrs.frozen(kw_only=True)
class Pause:
    """What a guard remembers about one phone number's ability to send.

    `kind` is `account` (an account-state failure: every send would fail the same way until a
    probe succeeds or an operator resumes it) or `circuit` (consecutive transient failures; it
    holds sends only while `until` is set and in the future).

    Args:
        kind: `account` or `circuit`.
        phone_number_id: The number.
        category: The category of the failure behind it (`account_state`, `transient`).
        since: Unix seconds when it began.
        until: Unix seconds before which no intent is sent to Meta from this number (the
            next probe of a paused account, the end of an open circuit's cool-down); None:
            not holding sends (a circuit still counting failures).
        error: The failure's `to_dict()`, for operators and the outbox.
        failures: Consecutive failures (transient sends, or failed probes).
        opens: How many times in a row the circuit opened (its cool-down doubles each time).
        probing: A half-open circuit has let its one probe through.
    """

    kind: str
    phone_number_id: str
    category: str
    since: float
    until: float | None = None
    error: Mapping[str, Any] | None = attrs.field(default=None, eq=False, hash=False)
    failures: int = 0
    opens: int = 0
    probing: bool = False

    def holds(self, now: float) -> bool:
        """Return True while this pause stops sends at *now* (Unix seconds)."""
        return self.until is not None and now < self.until

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data (for the state file, `serve` and the CLI)."""
        data = attrs.asdict(self)
        data["error"] = dict(self.error) if self.error is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pause:
        """Return the pause `to_dict()` described."""
        return cls(**{f.name: data[f.name] for f in attrs.fields(cls) if f.name in data})


@runtime_checkable
class PauseStore(Protocol):
    """Where pauses and circuits live, by (kind, phone number id): memory, SQLite or Redis."""

    def get(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        ...

    def put(self, pause: Pause) -> None:
        """Store *pause*, replacing the number's pause of the same kind."""
        ...

    def clear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        ...

    def list(self) -> list[Pause]:
        """Return every stored pause."""
        ...

    async def aget(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        ...

    async def aput(self, pause: Pause) -> None:
        """Store *pause*."""
        ...

    async def aclear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        ...

    async def alist(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        ...


_NO_RECORDS: Final[tuple[None, None]] = (None, None)


class MemoryPauseStore:
    """The in-memory pause store: one per process unless guards are given the same one."""

    def __init__(self) -> None:
        self._pauses: dict[tuple[str, str], Pause] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        return self._pauses.get((kind, phone_number_id))

    def get_records(self, phone_number_id: str) -> tuple[Pause | None, Pause | None]:
        """Return the number's account pause and its circuit (each or None), in one call.

        What a guard reads before every send: a store may offer this optional method of
        the `PauseStore` protocol to answer both in one call (a guard calls `get` twice for
        a store without it).
        """
        pauses = self._pauses
        if not pauses:  # no number paused: the common case
            return _NO_RECORDS
        return pauses.get((ACCOUNT, phone_number_id)), pauses.get((CIRCUIT, phone_number_id))

    def put(self, pause: Pause) -> None:
        """Store *pause*."""
        with self._lock:
            self._pauses[pause.kind, pause.phone_number_id] = pause

    def clear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        with self._lock:
            self._pauses.pop((kind, phone_number_id), None)

    def list(self) -> list[Pause]:
        """Return every stored pause."""
        return list(self._pauses.values())

    async def aget(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause (no I/O)."""
        return self.get(kind, phone_number_id)

    async def aput(self, pause: Pause) -> None:
        """Store *pause* (no I/O)."""
        self.put(pause)

    async def aclear(self, kind: str, phone_number_id: str) -> None:
        """Drop the pause (no I/O)."""
        self.clear(kind, phone_number_id)

    async def alist(self) -> builtins.list[Pause]:
        """Return every stored pause (no I/O)."""
        return self.list()

    def __repr__(self) -> str:
        return f"MemoryPauseStore(pauses={len(self._pauses)})"


_claim(__name__, globals())
