"""Fleet mode: a guarded send with its stores on Redis, and the fleet limiter's accuracy.

`guard.async.fast.redis` runs `Guard.asend` on the fast client at 64 in flight with the
verdicts, pauses and limiter of a `RedisState` (a limiter whose rate never binds, so the row
measures the stores' cost, not the pacing), against the same guard on the in-memory stores
(`guard.async.fast.memory`). `fleet.limiter.4proc` runs four processes reserving slots of one
number at 50 msg/s on one Redis (2,000 reservations, 40 s) and reports the worst 2-second
window and the steady-state average, as ratios of the limit, with the CPU per message of the
workers and of the redis-server. The Redis row also reports what each send asked of Redis:
`redis_calls_per_msg` (script calls: round trips), `redis_commands_per_msg` (every command run,
inside the scripts too) and `redis_cpu_us_per_msg` (the redis-server's CPU). Each variant
starts its own `redis-server` (127.0.0.1, a random port, a temporary directory); without one
the rows are unavailable.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from loops import async_loop
from registry import Ctx, Goal, variant

from cases.common import TEXT, TOKEN, quiet_logging

FLEET_RATE = 50.0
FLEET_WORKERS = 4
FLEET_MESSAGES = 2_000


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a throw-away redis-server and yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise LookupError("no redis-server (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="wa-auth-bench-redis-")
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory]
    proc = subprocess.Popen([*args, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with redis.Redis.from_url(url) as client:
                    client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield url
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


async def _guarded(ctx: Ctx, *, on_redis: bool) -> dict[str, Any]:
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent
    from wa_auth.pacing import LocalRateLimiter, MemoryPauseStore
    from wa_auth.providers import TokenVerdicts

    quiet_logging()
    with contextlib.ExitStack() as stack:
        if on_redis:
            from wa_auth.fleet import RedisState

            state = stack.enter_context(RedisState(stack.enter_context(redis_server())))
            verdicts: Any = state.verdicts
            pauses: Any = state.pauses
            limiter: Any = state.limiter(rate=1e9, pair_interval=None)
        else:
            verdicts, pauses = TokenVerdicts(), MemoryPauseStore()
            limiter = LocalRateLimiter(rate=1e9, pair_interval=None)
        async with FastAsyncWhatsAppClient(
            token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url, verdicts=verdicts
        ) as client:
            guard = Guard(client, pauses=pauses, limiter=limiter)
            before = _redis_stats(state.connection.client) if on_redis else None
            figures = await async_loop(
                ctx.n, ctx.concurrency, lambda: guard.asend(Intent.text(ctx.to, TEXT))
            )
        if on_redis:
            assert before is not None
            after = _redis_stats(state.connection.client)
            # Counted over the warm-up too (async_loop's one round at full concurrency).
            sent = ctx.n + min(ctx.n, max(50, ctx.concurrency))
            figures.update({k: (after[k] - before[k]) / sent for k in after})
            figures["redis_cpu_us_per_msg"] *= 1e6
            await state.aclose()
        return figures


def _redis_stats(client: Any) -> dict[str, float]:
    """What the guard asked of Redis so far: script calls (round trips), every command run
    (inside the scripts too), and the redis-server's CPU seconds (`INFO`)."""
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    calls = {k: float(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"}
    return {
        "redis_calls_per_msg": calls.get("cmdstat_evalsha", 0.0) + calls.get("cmdstat_eval", 0.0),
        "redis_commands_per_msg": sum(calls.values()),
        "redis_cpu_us_per_msg": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
    }


@variant(
    "guard.async.fast.memory",
    label="Guard.asend, fast client, in-memory verdicts + pauses + limiter (fleet baseline)",
    group="fleet",
    concurrency=(64,),
    requires=("aiohttp",),
)
def guard_memory(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_guarded(ctx, on_redis=False))


@variant(
    "guard.async.fast.redis",
    label="Guard.asend, fast client, Redis verdicts + pauses + limiter (RedisState)",
    group="fleet",
    concurrency=(64,),
    baseline="guard.async.fast.memory",
    goal=Goal("min_ratio", 0.8),
    requires=("aiohttp", "redis"),
)
def guard_redis(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_guarded(ctx, on_redis=True))


_RESERVER = """
import json, sys, time
from wa_auth.fleet import RedisState
url, n, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with RedisState(url) as state:
    limiter = state.limiter(rate=rate, pair_interval=None)
    sys.stdin.readline()
    cpu0 = time.process_time()
    slots = []
    for _ in range(n):
        asked = time.time()
        wait = limiter.acquire("106540352242922", None)
        answered = time.time()
        # Redis's clock decided the slot between asking and the answer: take the middle.
        slots.append((asked + answered) / 2 + wait)
        time.sleep(max(answered + wait - time.time(), 0.0))
    cpu = time.process_time() - cpu0
print(json.dumps({"slots": slots, "fallbacks": limiter.fallbacks, "cpu": cpu}))
"""


def _redis_cpu(url: str) -> float:
    """Seconds of CPU the redis-server has used (user + system), from `INFO cpu`."""
    import redis

    with redis.Redis.from_url(url) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def window_figures(slots: list[float], rate: float) -> dict[str, float]:
    """The worst 2-second window and the steady-state average of sorted *slots*, per *rate*.

    The steady state leaves out the first and last second (processes starting and ending).
    """
    worst = max(bisect.bisect_left(slots, s + 2.0, lo=i) - i for i, s in enumerate(slots))
    lo = bisect.bisect_left(slots, slots[0] + 1.0)
    hi = bisect.bisect_left(slots, slots[-1] - 1.0) - 1
    average = (hi - lo) / (slots[hi] - slots[lo])
    return {"worst_2s_ratio": worst / 2.0 / rate, "average_ratio": average / rate}


@variant(
    "fleet.limiter.4proc",
    label="RedisRateLimiter: 4 processes, one number at 50 msg/s (2,000 reservations)",
    group="fleet",
    requires=("redis",),
    fixed_n=FLEET_MESSAGES,
    notes="worst_2s_ratio should be <= 1.05, average_ratio >= 0.95; cpu: the 4 workers, "
    "redis_cpu_us_per_msg: the redis-server",
)
def fleet_limiter(_ctx: Ctx) -> dict[str, Any]:
    per = FLEET_MESSAGES // FLEET_WORKERS
    with redis_server() as url:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _RESERVER, url, str(per), str(FLEET_RATE)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(FLEET_WORKERS)
        ]
        time.sleep(1.0)  # every process connected: they start together
        redis_cpu = _redis_cpu(url)
        t0 = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=FLEET_MESSAGES / FLEET_RATE * 3)[0] for p in procs]
        wall = time.perf_counter() - t0
        redis_cpu = _redis_cpu(url) - redis_cpu
    answers = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    slots = sorted(s for a in answers for s in a["slots"])
    n = len(slots)
    return {
        "n": n,
        "seconds": wall,
        "msgs_per_s": (n - 1) / (slots[-1] - slots[0]),
        "cpu_us_per_msg": sum(a["cpu"] for a in answers) / n * 1e6,
        "redis_cpu_us_per_msg": redis_cpu / n * 1e6,
        **window_figures(slots, FLEET_RATE),
        "fallbacks": float(sum(a["fallbacks"] for a in answers)),
    }


def _status_delivery(i: int) -> bytes:
    value = {
        "metadata": {"phone_number_id": "111"},
        "statuses": [
            {"id": f"wamid.{i}", "status": "sent", "timestamp": "1700000000", "recipient_id": "1"}
        ],
    }
    change = {"field": "messages", "value": value}
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "w", "changes": [change]}]}
    return json.dumps(payload).encode()


async def _admitting(ctx: Ctx, *, on_redis: bool) -> dict[str, Any]:
    """serve's admission of stored deliveries (one status each), in the process: the queue
    file's ledger alone, or the fleet's Redis ledger first (`--redis`)."""
    from loops import peak_rss_kb

    from wa_auth._cli._serve._fanout import Fanout
    from wa_auth._cli._serve._hooks_settings import HookSettings
    from wa_auth._cli._serve._queue import WebhookQueue
    from wa_auth._cli._serve._routes import Route
    from wa_auth._cli._serve._shared import SharedLedger
    from wa_auth.webhooks import DEFAULT_MAX_KEYS, DEFAULT_WINDOW

    quiet_logging()
    route = Route(id="r", url="http://127.0.0.1:9/hook", secret="bench-route-secret-0123456789")
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory())
        queue = WebhookQueue(
            f"{directory}/queue.db", window=DEFAULT_WINDOW, max_keys=DEFAULT_MAX_KEYS
        )
        stack.callback(queue.close)
        shared = None
        if on_redis:
            from wa_auth.fleet import RedisState

            state = stack.enter_context(RedisState(stack.enter_context(redis_server())))
            shared = SharedLedger(state.ledger())
        settings = HookSettings(app_secret="x" * 20, queue=queue.path)
        fanout = Fanout(settings, queue, [route], shared=shared)
        for i in range(ctx.n):
            await queue.astore(_status_delivery(i))
        cpu0, t0 = time.process_time(), time.perf_counter()
        while batch := queue.due():
            await fanout._batch(batch)  # the admission alone, no HTTP
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if on_redis:
            await state.aclose()
    n = ctx.n
    return {
        "n": n,
        "seconds": wall,
        "msgs_per_s": n / wall if wall else 0.0,
        "cpu_us_per_msg": cpu / n * 1e6,
        "peak_rss_kb": peak_rss_kb(),
    }


@variant(
    "serve.webhook.admit.file",
    label="serve's webhook admission (one status per delivery), the queue file's ledger",
    group="fleet",
    requires=("aiohttp",),
)
def admit_file(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_admitting(ctx, on_redis=False))


@variant(
    "serve.webhook.admit.redis",
    label="serve's webhook admission (one status per delivery), the fleet's Redis first",
    group="fleet",
    baseline="serve.webhook.admit.file",
    requires=("aiohttp", "redis"),
)
def admit_redis(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_admitting(ctx, on_redis=True))
