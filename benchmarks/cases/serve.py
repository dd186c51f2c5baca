"""`wa-auth serve`: per-item latency and throughput over HTTP, against its two baselines (issue 14).

Every row sends the same text intent, one per item, to the harness's nginx peer:

- `serve.http`: a real `wa-auth serve` process; the worker is its callers (1, 16 or 64
  keep-alive connections, one `POST /send` of one intent at a time each, a minimal raw-socket
  HTTP/1.1 client so the callers cost little). Against the per-process CLI (goal: at least 50x
  at 16 callers) and, as `serve.http.same`, against the guarded in-process client (goal: at
  least 0.7x at 64 callers: the HTTP hop is the only difference).
- `serve.cpu`: the same service at 16 callers, one intent per request, its CPU per item (the
  service's and the callers') against `serve.inprocess`'s (goal: at most 1.8x).
- `serve.list`: 16 callers, each request a list of 50 intents, against `serve.inprocess.list`
  (the same lists through the guarded client in-process): msg/s, goal at least 0.8x.
- `serve.inprocess`: the same work in the worker itself: the intent's JSON parsed, `Guard.asend`
  on a `FastAsyncWhatsAppClient`, the result line built and serialised.
- `serve.inprocess.list`: the list form in the worker itself: a list of 50 intents parsed, sent
  by `Guard.asend` 16 at a time, the list's answer (`batch_line`) built and serialised.
- `serve.cli`: `wa-auth send --to ... --text ...`, one process per item, 1 or 16 at a time.
- `serve.memory.*`: the service's peak RSS (VmHWM) after 1,000 and after 20,000 requests
  (goal: at most 1.2x: no growth per request).

The service and the in-process baselines send over the same client transport, `TRANSPORT`
(serve's default, `raw`), so the HTTP hop to the service is the only difference between them.

The CPU figure of the serve rows adds the service's CPU to the callers'; the figure
`serve_cpu_us_per_msg` is the service's own. `latency_p50_ms` and `latency_p99_ms` are per
request, from the caller's side.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from loops import peak_rss_kb
from registry import Ctx, Goal, variant

from cases.common import TEXT, TOKEN, quiet_logging

KEY = "benchmark-api-key-0123456789abcdef"
LEVELS = (1, 16, 64)
#: Intents per request of the list rows (an n8n node's batch).
LIST = 50
#: The client transport of the service (`--transport`) and of the in-process baselines alike.
TRANSPORT: Final = "raw"


def _intent(ctx: Ctx) -> dict[str, Any]:
    return {"to": ctx.to, "type": "text", "text": {"body": TEXT}}


def _env(ctx: Ctx) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update(
        WA_BASE_URL=ctx.base_url,
        WA_PHONE_NUMBER_ID=ctx.phone_id,
        WA_API_VERSION=ctx.api_version,
        WA_ACCESS_TOKEN=TOKEN,
        WA_AUTH_API_KEY=KEY,
    )
    return env


def _wa_auth() -> list[str]:
    script = Path(sys.executable).parent / "wa-auth"
    return [str(script)] if script.exists() else [sys.executable, "-m", "wa_auth"]


def _latencies(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "latency_p50_ms": statistics.median(ordered) * 1e3,
        "latency_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
    }


async def _callers(
    n: int, concurrency: int, one: Callable[[], Awaitable[Any]], samples: list[float] | None
) -> None:
    remaining = n

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await one()
            if samples is not None:
                samples.append(time.perf_counter() - t0)

    await asyncio.gather(*(caller() for _ in range(min(concurrency, n))))


# --- the service and its callers -----------------------------------------------------------------


class _Service:
    """A `wa-auth serve` process on a free loopback port, its access log discarded."""

    def __init__(self, ctx: Ctx, concurrency: int) -> None:
        cmd = [*_wa_auth(), "serve", "--port", "0", "--concurrency", str(max(64, concurrency))]
        cmd += ["--transport", TRANSPORT]
        self.proc = subprocess.Popen(
            cmd, env=_env(ctx), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError(f"wa-auth serve did not start (exit {self.proc.wait()})")
        self.info = json.loads(line)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc/PID/status")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class _Caller:
    """One keep-alive connection that POSTs one intent at a time (what one n8n item does)."""

    def __init__(self, port: int, body: bytes, intents: int = 1) -> None:
        self.port = port
        self.intents = intents
        head = (
            "POST /send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"serve answered {head[:40]!r}")
        at = head.lower().index(b"content-length:") + 15
        body = await self.reader.readexactly(int(head[at : head.index(b"\r\n", at)]))
        if body.count(b'"delivered"') < self.intents:
            raise RuntimeError(f"not delivered: {body[:300]!r}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _drive_service(
    ctx: Ctx, service: _Service, n: int, concurrency: int, per: int = 1
) -> dict[str, Any]:
    """Send *n* intents, *per* in each request (one object, or a list of *per*)."""
    body = json.dumps(_intent(ctx) if per == 1 else [_intent(ctx)] * per).encode()
    pool = [_Caller(service.info["port"], body, per) for _ in range(concurrency)]
    free = list(pool)

    async def one() -> None:
        caller = free.pop()
        try:
            await caller.send()
        finally:
            free.append(caller)

    # The warm-up opens every connection (callers to serve, serve to the peer) first.
    await _callers(max(50 // per, 2 * concurrency), concurrency, one, None)
    requests = max(1, n // per)
    n = requests * per
    samples: list[float] = []
    cpu0, scpu0, t0 = time.process_time(), service.cpu_seconds(), time.perf_counter()
    await _callers(requests, concurrency, one, samples)
    wall = time.perf_counter() - t0
    scpu = service.cpu_seconds() - scpu0
    cpu = time.process_time() - cpu0 + scpu
    for caller in pool:
        caller.close()
    return {
        "n": n,
        "seconds": wall,
        "msgs_per_s": n / wall,
        "cpu_us_per_msg": cpu / n * 1e6,
        "serve_cpu_us_per_msg": scpu / n * 1e6,
        "peak_rss_kb": service.peak_rss_kb(),
        **_latencies(samples),
    }


def _serve(ctx: Ctx, n: int | None = None, per: int = 1) -> dict[str, Any]:
    service = _Service(ctx, ctx.concurrency)
    try:
        return asyncio.run(_drive_service(ctx, service, n or ctx.n, ctx.concurrency, per))
    finally:
        service.close()


@variant(
    "serve.http",
    label="wa-auth serve: POST /send, one intent per request (vs per-process CLI)",
    group="serve",
    concurrency=LEVELS,
    baseline="serve.cli",
    goal=Goal("min_ratio", 50.0),
    requires=("aiohttp",),
)
def serve_http(ctx: Ctx) -> dict[str, Any]:
    return _serve(ctx)


@variant(
    "serve.http.same",
    label="wa-auth serve: POST /send (vs the guarded client in-process)",
    group="serve",
    concurrency=(64,),
    baseline="serve.inprocess",
    goal=Goal("min_ratio", 0.7),
    requires=("aiohttp",),
)
def serve_http_same(ctx: Ctx) -> dict[str, Any]:
    return _serve(ctx)


@variant(
    "serve.cpu",
    label="wa-auth serve: CPU us per item, one intent per request (vs in-process)",
    group="serve",
    kind="cpu",
    concurrency=(16,),
    baseline="serve.inprocess",
    goal=Goal("max_ratio", 1.8),
    requires=("aiohttp",),
)
def serve_cpu(ctx: Ctx) -> dict[str, Any]:
    return _serve(ctx)


@variant(
    "serve.list",
    label=f"wa-auth serve: POST /send, lists of {LIST} intents (vs in-process)",
    group="serve",
    concurrency=(16,),
    fixed_n=10_000,
    baseline="serve.inprocess.list",
    goal=Goal("min_ratio", 0.8),
    requires=("aiohttp",),
)
def serve_list(ctx: Ctx) -> dict[str, Any]:
    return _serve(ctx, per=LIST)


# --- the baselines -------------------------------------------------------------------------------


async def _inprocess(ctx: Ctx, per: int = 1) -> dict[str, Any]:
    from wa_auth._cli._output import batch_line, delivery_line
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent

    quiet_logging()
    body = json.dumps(_intent(ctx) if per == 1 else [_intent(ctx)] * per).encode()
    requests = max(1, ctx.n // per)
    n = requests * per
    async with FastAsyncWhatsAppClient(
        token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url, transport=TRANSPORT
    ) as client:
        guard = Guard(client)

        async def one() -> None:
            delivery = await guard.asend(Intent.from_dict(json.loads(body)))
            line = json.dumps(delivery_line(delivery, 1), ensure_ascii=False).encode()
            if b'"delivered"' not in line:
                raise RuntimeError(line[:300])

        async def many() -> None:
            started = time.monotonic()
            intents = [Intent.from_dict(value) for value in json.loads(body)]
            slots = asyncio.Semaphore(ctx.concurrency)

            async def item(number: int, intent: Intent) -> dict[str, Any]:
                async with slots:
                    return delivery_line(await guard.asend(intent), number)

            lines = await asyncio.gather(*(item(i, x) for i, x in enumerate(intents, 1)))
            answer = batch_line(list(lines), time.monotonic() - started, interrupted=False)
            out = json.dumps(answer, ensure_ascii=False).encode()
            if out.count(b'"delivered"') < per:
                raise RuntimeError(out[:300])

        call = one if per == 1 else many
        await _callers(max(50 // per, 2 * ctx.concurrency), ctx.concurrency, call, None)
        samples: list[float] = []
        cpu0, t0 = time.process_time(), time.perf_counter()
        await _callers(requests, ctx.concurrency, call, samples)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "n": n,
        "seconds": wall,
        "msgs_per_s": n / wall,
        "cpu_us_per_msg": cpu / n * 1e6,
        "peak_rss_kb": peak_rss_kb(),
        **_latencies(samples),
    }


@variant(
    "serve.inprocess",
    label="in-process: JSON -> Guard.asend on FastAsyncWhatsAppClient -> JSON",
    group="serve",
    concurrency=LEVELS,
    requires=("aiohttp",),
)
def inprocess(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_inprocess(ctx))


@variant(
    "serve.inprocess.list",
    label=f"in-process: a list of {LIST} intents -> Guard.asend, 16 at a time -> JSON",
    group="serve",
    concurrency=(16,),
    fixed_n=10_000,
    requires=("aiohttp",),
)
def inprocess_list(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_inprocess(ctx, LIST))


async def _processes(ctx: Ctx, n: int) -> dict[str, Any]:
    cmd = [*_wa_auth(), "send", "--to", ctx.to, "--text", TEXT]
    env = _env(ctx)

    async def one() -> None:
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0 or b'"delivered"' not in out:
            raise RuntimeError(f"wa-auth send exit {proc.returncode}: {out[:300]!r}")

    await _callers(ctx.concurrency, ctx.concurrency, one, None)  # warm the page cache
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    samples: list[float] = []
    t0 = time.perf_counter()
    await _callers(n, ctx.concurrency, one, samples)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "n": n,
        "seconds": wall,
        "msgs_per_s": n / wall,
        "cpu_us_per_msg": cpu / n * 1e6,
        "peak_rss_kb": peak_rss_kb(),
        **_latencies(samples),
    }


@variant(
    "serve.cli",
    label="wa-auth send --to ... --text ..., one process per item (msg/s)",
    group="serve",
    concurrency=(1, 16),
    scale=0.02,
)
def cli_per_process(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_processes(ctx, max(ctx.n, ctx.concurrency)))


# --- memory --------------------------------------------------------------------------------------


@variant(
    "serve.memory.1k",
    label="wa-auth serve: peak RSS after 1,000 requests @16",
    group="serve",
    kind="memory",
    concurrency=(16,),
    requires=("aiohttp",),
)
def memory_1k(ctx: Ctx) -> dict[str, Any]:
    return _serve(ctx, 1_000)


@variant(
    "serve.memory.20k",
    label="wa-auth serve: peak RSS after 20,000 requests @16",
    group="serve",
    kind="memory",
    concurrency=(16,),
    baseline="serve.memory.1k",
    goal=Goal("max_ratio", 1.2),
    requires=("aiohttp",),
)
def memory_20k(ctx: Ctx) -> dict[str, Any]:
    return _serve(ctx, 20_000)
