"""Storms against the sandbox: how many requests reach Meta when a number's sends all fail.

Three storms, each with many guarded intents in flight on the async clients, counted at the
sandbox (`sandbox.requests()`):

- `rate_limit_storm`: every send gets 130429 (Retry-After 1) for *storm* seconds. The limiter
  holds the whole number: the intents in flight each spend one request, then one probe per
  hold asks Meta, and the rest wait without spending attempts. Before issue 17 each intent
  retried alone: 4 requests per intent.
- `pair_storm`: the same with 131056 for one recipient; the other recipients are not held.
- `circuit_storm`: every send gets a 5xx (131000) and never recovers; the number's circuit
  opens after `circuit_threshold` consecutive failures and holds every later intent without a
  request.

Time is virtual (`VirtualTime`): it moves only when every sender is asleep, to the earliest
wake-up, so a 30-second budget costs no wall time, a request's round trip costs no virtual
time, and the figures depend on the policy alone, not on the machine's load.

    python benchmarks/reliability/storms.py            # every row, as JSON on stdout
    python benchmarks/reliability/storms.py --quick    # the short form the test suite runs
    python benchmarks/reliability/storms.py --out build/reliability/storms.json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import heapq
import json
import math
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import wa_auth
from wa_auth.guards import Delivery, Guard, RetryPolicy
from wa_auth.intents import Intent
from wa_auth.outbox import MemoryOutbox
from wa_auth.pacing import LocalRateLimiter
from wa_auth.sandbox import Sandbox

T = TypeVar("T")

#: The async clients a storm runs on, by the name a row reports.
CLIENTS = {"async": "AsyncWhatsAppClient", "fast": "FastAsyncWhatsAppClient"}
#: Seconds of wall time a whole storm may take before it counts as hung.
HARD_TIMEOUT = 120.0
#: The virtual wall clock's start (unix seconds), so `not_before` values read as dates.
EPOCH = 1_800_000_000.0


class VirtualTime:
    """A clock that moves only when every sender is asleep, to the earliest wake-up.

    `asleep` parks the caller on a heap; when the number of parked senders equals the number
    of live ones (none is running or waiting for an answer), the earliest is woken and the
    clock jumps to its time. Alarms (`at`) run when the clock passes their time: a storm ends
    there.
    """

    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._live = 0
        self._alarms: list[tuple[float, Callable[[], None]]] = []

    def monotonic(self) -> float:
        """Return the virtual seconds since the start."""
        return self.t

    def wall(self) -> float:
        """Return the virtual unix time."""
        return EPOCH + self.t

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run *action* once the clock reaches *when*."""
        self._alarms.append((when, action))

    async def asleep(self, seconds: float) -> None:
        """Sleep *seconds* of virtual time."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.t + max(seconds, 0.0), self._seq, future))
        self._wake()
        await future

    def _wake(self) -> None:
        if not self._sleepers or len(self._sleepers) < self._live:
            return
        when, _, future = heapq.heappop(self._sleepers)
        if when > self.t:
            self.t = when
            due = [a for a in self._alarms if a[0] <= when]
            self._alarms = [a for a in self._alarms if a[0] > when]
            for _, action in due:
                action()
        future.set_result(None)

    async def gather(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        """Run *calls* concurrently as the senders this clock waits for."""
        self._live = len(calls)

        async def one(call: Awaitable[T]) -> T:
            try:
                return await call
            finally:
                self._live -= 1
                self._wake()

        return list(await asyncio.gather(*(one(c) for c in calls)))


def _recipients(n: int) -> list[str]:
    return [f"+1555{i:07d}" for i in range(n)]


def _summary(deliveries: Sequence[Delivery]) -> dict[str, int]:
    states = Counter(d.state for d in deliveries)
    return dict(sorted(states.items()))


async def _run(
    sb: Sandbox,
    client: str,
    intents: Sequence[Intent],
    *,
    limiter: bool,
    policy: RetryPolicy | None = None,
    concurrency: int | None = None,
    burst: int = 64,
    vt: VirtualTime,
) -> tuple[Guard, list[Delivery]]:
    """Send *intents* through a guard on *client*, *concurrency* at a time (all by default)."""
    token = sb.issue_token()
    cls = getattr(wa_auth, CLIENTS[client])
    async with cls(base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id) as c:
        paced = None
        if limiter:
            # A burst as wide as the storm's in-flight intents: they all go out at once.
            paced = LocalRateLimiter(burst=burst, pair_interval=None, monotonic=vt.monotonic)
        guard = Guard(
            c,
            limiter=paced,
            policy=policy,
            outbox=MemoryOutbox(),
            clock=vt.wall,
            monotonic=vt.monotonic,
            asleep=vt.asleep,
            seed=17,
        )
        width = concurrency or len(intents)
        waves = [intents[i : i + width] for i in range(0, len(intents), width)]
        deliveries: list[Delivery] = []
        # One wave at a time keeps *width* intents in flight without a semaphore the clock
        # cannot see.
        for wave in waves:
            deliveries += await vt.gather([guard.asend(i) for i in wave])
        return guard, deliveries


def _requests(sb: Sandbox) -> dict[str, int]:
    sends = [r for r in sb.requests() if r.endpoint == "send_message"]
    outcomes = Counter(r.outcome for r in sends)
    return {"requests": len(sends), **dict(sorted(outcomes.items()))}


async def rate_limit_storm(
    client: str = "async",
    *,
    intents: int = 64,
    storm: float = 5.0,
    retry_after: int = 1,
    limiter: bool = True,
) -> dict[str, Any]:
    """Every send gets 130429 for *storm* virtual seconds, with *intents* in flight."""
    vt = VirtualTime()
    with Sandbox(seed=17) as sb:
        sb.fail_next(130429, times=None, retry_after=retry_after)
        vt.at(storm, sb.clear_seeded_faults)
        batch = [Intent.text(to, "storm") for to in _recipients(intents)]
        _, deliveries = await _run(sb, client, batch, limiter=limiter, burst=intents, vt=vt)
        counts = _requests(sb)
    return {
        "storm": "130429",
        "client": client,
        "limiter": limiter,
        "intents": intents,
        "storm_seconds": storm,
        "retry_after": retry_after,
        **counts,
        "per_intent": round(counts["requests"] / intents, 3),
        "holds": math.ceil(storm / retry_after),
        "max_attempts": max(d.attempts for d in deliveries),
        "deliveries": _summary(deliveries),
    }


async def pair_storm(
    client: str = "async",
    *,
    intents: int = 64,
    stormed: int = 32,
    storm: float = 12.0,
    limiter: bool = True,
) -> dict[str, Any]:
    """131056 for one recipient for *storm* seconds: *stormed* of the *intents* go to it."""
    vt = VirtualTime()
    with Sandbox(seed=17) as sb:
        victim, *others = _recipients(intents - stormed + 1)
        sb.fail_next(131056, times=None, recipient=victim)
        vt.at(storm, sb.clear_seeded_faults)
        batch = [Intent.text(victim, f"pair {i}") for i in range(stormed)]
        batch += [Intent.text(to, "other") for to in others]
        _, deliveries = await _run(sb, client, batch, limiter=limiter, burst=intents, vt=vt)
        counts = _requests(sb)
        digits = victim.lstrip("+")
        to_victim = [r for r in sb.requests() if r.outcome == "fault"]
        accepted = Counter(m.recipient.lstrip("+") == digits for m in sb.messages())
    return {
        "storm": "131056",
        "client": client,
        "limiter": limiter,
        "intents": intents,
        "stormed_intents": stormed,
        "storm_seconds": storm,
        **counts,
        "pair_requests": len(to_victim) + accepted[True],
        "pair_per_intent": round((len(to_victim) + accepted[True]) / stormed, 3),
        "other_requests": accepted[False],
        "deliveries": _summary(deliveries),
    }


async def circuit_storm(
    client: str = "async", *, intents: int = 300, concurrency: int = 64, code: int = 131000
) -> dict[str, Any]:
    """Every send gets a 5xx (*code*) for good: how many of *intents* reach the sandbox."""
    vt = VirtualTime()
    with Sandbox(seed=17) as sb:
        sb.fail_next(code, times=None)
        batch = [Intent.text(to, "5xx") for to in _recipients(intents)]
        guard, deliveries = await _run(
            sb, client, batch, limiter=False, concurrency=concurrency, vt=vt
        )
        counts = _requests(sb)
    reasons = Counter(d.reason for d in deliveries)
    policy = guard.policy
    circuit = guard.pauses.get("circuit", sb.phone_number_id)
    return {
        "storm": f"5xx ({code})",
        "client": client,
        "intents": intents,
        "concurrency": concurrency,
        "circuit_threshold": policy.circuit_threshold,
        **counts,
        "held_by_circuit": reasons.get("circuit_open", 0),
        # How often the circuit opened in a row, and the cool-down it holds now: one storm
        # opens it once, for `circuit_cooldown`.
        "circuit_opens": circuit.opens if circuit is not None else 0,
        "cooldown": (circuit.until or vt.wall()) - vt.wall() if circuit is not None else 0.0,
        "deliveries": _summary(deliveries),
    }


def _rows(quick: bool) -> list[Callable[[], Awaitable[dict[str, Any]]]]:
    clients = ["async"] if quick else list(CLIENTS)
    widths = (1, 16) if quick else (1, 8, 16, 64, 300)
    rows: list[Callable[[], Awaitable[dict[str, Any]]]] = []
    for client in clients:
        rows += [functools.partial(rate_limit_storm, client, limiter=on) for on in (True, False)]
        rows.append(functools.partial(pair_storm, client))
        rows += [functools.partial(circuit_storm, client, concurrency=w) for w in widths]
    return rows


async def _main(quick: bool) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(row(), HARD_TIMEOUT) for row in _rows(quick)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the storms and print (or write) their figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short form (async client)")
    parser.add_argument("--out", type=Path, help="write the JSON here as well")
    args = parser.parse_args(argv)
    report = {"rows": asyncio.run(_main(args.quick))}
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
