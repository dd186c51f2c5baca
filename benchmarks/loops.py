"""The timed loops every throughput variant shares, so all rows do the same work."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any


def peak_rss_kb() -> int:
    """Return this process's peak resident set size in KiB (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def sync_loop(n: int, send: Callable[[], Any], warmup: int = 50) -> dict[str, Any]:
    """Call *send* *n* times after a warm-up and return throughput and CPU per message."""
    for _ in range(min(warmup, n)):
        send()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        send()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return _figures(n, wall, cpu)


async def async_loop(
    n: int, concurrency: int, send: Callable[[], Awaitable[Any]], warmup: int | None = None
) -> dict[str, Any]:
    """Run *n* calls of *send* with *concurrency* in flight and return the figures.

    The warm-up opens the connections first (one round at full concurrency), so connection
    set-up is not timed.
    """
    await _run(min(n, warmup if warmup is not None else max(50, concurrency)), concurrency, send)
    cpu0, t0 = time.process_time(), time.perf_counter()
    await _run(n, concurrency, send)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return _figures(n, wall, cpu)


async def _run(n: int, concurrency: int, send: Callable[[], Awaitable[Any]]) -> None:
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await send()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))


def micro_loop(n: int, op: Callable[[], Any]) -> dict[str, Any]:
    """Time *n* calls of *op* (best of 5 batches) and return microseconds per call."""
    for _ in range(min(n, 1000)):
        op()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            op()
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "us_per_op": best / n * 1e6, "peak_rss_kb": peak_rss_kb()}


def _figures(n: int, wall: float, cpu: float) -> dict[str, Any]:
    return {
        "n": n,
        "seconds": wall,
        "msgs_per_s": n / wall if wall else 0.0,
        "cpu_us_per_msg": cpu / n * 1e6,
        "peak_rss_kb": peak_rss_kb(),
    }
