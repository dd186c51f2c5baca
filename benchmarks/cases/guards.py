"""Guards: the cost of `guard.send` / `guard.asend` on the success path, and the limiter.

Each guarded row makes an `Intent` per message inside the timed loop (as a caller does) and
compares with the same client's `send_text`. The pacing row runs a limiter at 200 msg/s on one
number and reports the rate it held and the CPU per message (no busy loop: the CPU per message
stays that of a send, however long the waits).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loops import async_loop, micro_loop, peak_rss_kb, sync_loop
from registry import Ctx, Goal, variant

from cases.async_send import _fast
from cases.common import TEXT, TOKEN, quiet_logging

PACED_RATE = 200.0


@variant(
    "guard.sync.send",
    label="Guard.send(Intent.text(...)) on WhatsAppClient",
    group="guard",
    baseline="sync.wa_auth",
    goal=Goal("min_ratio", 0.97),
)
def guard_sync(ctx: Ctx) -> dict[str, Any]:
    import wa_auth
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent

    quiet_logging()
    with wa_auth.WhatsAppClient(
        token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
    ) as client:
        guard = Guard(client)
        return sync_loop(ctx.n, lambda: guard.send(Intent.text(ctx.to, TEXT)))


async def _guard_fast(ctx: Ctx) -> dict[str, Any]:
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent

    quiet_logging()
    async with FastAsyncWhatsAppClient(
        token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
    ) as client:
        guard = Guard(client)
        return await async_loop(
            ctx.n, ctx.concurrency, lambda: guard.asend(Intent.text(ctx.to, TEXT))
        )


@variant(
    "async.wa_auth.fast.same",
    label="wa_auth FastAsyncWhatsAppClient.send_text (guard baseline)",
    group="guard",
    concurrency=(64,),
    requires=("aiohttp",),
)
def fast_baseline(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_fast(ctx))


@variant(
    "guard.async.fast",
    label="Guard.asend(Intent.text(...)) on FastAsyncWhatsAppClient",
    group="guard",
    concurrency=(64,),
    baseline="async.wa_auth.fast.same",
    goal=Goal("min_ratio", 0.95),
    requires=("aiohttp",),
)
def guard_fast(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_guard_fast(ctx))


@variant(
    "micro.limiter.acquire",
    label="LocalRateLimiter.acquire, uncontended",
    group="micro",
    kind="micro",
    goal=Goal("max_us", 2),
)
def limiter_acquire(ctx: Ctx) -> dict[str, Any]:
    from wa_auth.pacing import LocalRateLimiter

    # A rate so high that the reservations never run ahead of the clock during the loop.
    limiter = LocalRateLimiter(rate=1e12, pair_interval=None)
    return micro_loop(ctx.n, lambda: limiter.acquire("106540352242922", "15551234567"))


async def _paced(ctx: Ctx) -> dict[str, Any]:
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent
    from wa_auth.pacing import LocalRateLimiter

    quiet_logging()
    n = 2_000
    async with FastAsyncWhatsAppClient(
        token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
    ) as client:
        guard = Guard(client, limiter=LocalRateLimiter(rate=PACED_RATE, pair_interval=None))
        intents = [Intent.text(ctx.to, TEXT) for _ in range(n)]
        # The limiter spaces the sends from the first one on: the whole run is steady state.
        cpu0, t0 = time.process_time(), time.perf_counter()
        deliveries = await guard.asend_many(intents, concurrency=64)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert all(d.ok for d in deliveries), {d.state for d in deliveries}
    return {
        "n": n,
        "seconds": wall,
        "msgs_per_s": n / wall,
        "cpu_us_per_msg": cpu / n * 1e6,
        "peak_rss_kb": peak_rss_kb(),
        "pace_error": (n / wall) / PACED_RATE - 1.0,
    }


@variant(
    "guard.pacing.200",
    label="Guard.asend_many paced at 200 msg/s (2,000 sends)",
    group="guard",
    concurrency=(64,),
    requires=("aiohttp",),
    fixed_n=2_000,
    notes="msgs_per_s should be 200 +/- 5 %; pace_error in latest.json",
)
def paced(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_paced(ctx))
