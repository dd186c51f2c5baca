"""`wa-auth serve`'s `POST /webhook` (issue 20): the time to the 200, and forwards per second.

A real `wa-auth serve` process with the webhook endpoint on (an app secret, a queue file in a
temporary directory) and one route to a receiver in the worker (an aiohttp server answering
200). The worker's callers (16 keep-alive connections, the raw-socket client of `serve.py`)
POST distinct signed deliveries of one status each, as Meta does, one at a time per
connection:

- `serve.webhook`: deliveries answered 200 per second; `us/op` is the p99 time to the 200
  (goal: at most 50 ms here), `latency_p50_ms` / `latency_p99_ms` among the figures; its
  ratio is against `serve.webhook.bare`, an aiohttp process that only reads each POST and
  answers 200 (the HTTP cost alone), driven by the same callers.
- `serve.webhook.forwards`: forwards the route received per second, from the first POST to
  the last forward (each delivery stored, admitted, applied and forwarded, signed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from registry import Ctx, Goal, variant

from cases.serve import _env, _latencies, _wa_auth

APP_SECRET = "benchmark-app-secret-0123456789"
ROUTE_SECRET = "benchmark-route-secret-0123456789"


def _delivery(ctx: Ctx, i: int) -> bytes:
    status = {
        "id": f"wamid.bench{i}",
        "status": "delivered",
        "timestamp": "1700000000",
        "recipient_id": ctx.to,
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": ctx.phone_id},
        "statuses": [status],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


class _Poster:
    """One keep-alive connection that POSTs one signed delivery at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        head = (
            "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Hub-Signature-256: sha256={signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"serve answered {answer[:40]!r}")
        at = answer.lower().index(b"content-length:") + 15
        await self.reader.readexactly(int(answer[at : answer.index(b"\r\n", at)]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


#: The baseline: an aiohttp server in a process of its own that reads the body and answers
#: 200, verifying, storing and forwarding nothing: the HTTP cost alone.
_BARE = """
import asyncio, json, sys
from aiohttp import web

async def hook(request):
    await request.read()
    return web.json_response({"ok": True})

async def main():
    app = web.Application()
    app.router.add_post("/webhook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _drive(ctx: Ctx, port: int, samples: list[float]) -> float:
    """POST the warm-up, then *ctx.n* signed deliveries from *ctx.concurrency* connections;
    return the seconds the measured ones took (each one's time to the 200 in *samples*)."""
    posters = [_Poster(port) for _ in range(ctx.concurrency)]
    free = list(posters)
    bodies = iter([_delivery(ctx, i) for i in range(ctx.n + 50)])

    async def caller(count: int, record: bool) -> None:
        for _ in range(count):
            poster = free.pop()
            t0 = time.perf_counter()
            try:
                await poster.post(next(bodies))
            finally:
                free.append(poster)
            if record:
                samples.append(time.perf_counter() - t0)

    await caller(50, record=False)  # warm-up: the connections, the queue file
    per, extra = divmod(ctx.n, ctx.concurrency)
    t0 = time.perf_counter()
    await asyncio.gather(*(caller(per + (i < extra), record=True) for i in range(ctx.concurrency)))
    answered = time.perf_counter() - t0
    for poster in posters:
        poster.close()
    return answered


async def _bare(ctx: Ctx) -> dict[str, Any]:
    import sys

    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
        [sys.executable, "-c", _BARE], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        samples: list[float] = []
        answered = await _drive(ctx, json.loads(line)["port"], samples)
        latencies = _latencies(samples)
        return {
            "n": ctx.n,
            "seconds": answered,
            "msgs_per_s": ctx.n / answered,
            "us_per_op": latencies["latency_p99_ms"] * 1e3,
            **latencies,
        }
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 60)


async def _run(ctx: Ctx, directory: Path) -> dict[str, Any]:
    from aiohttp import web

    received: list[float] = []
    target = [1 << 62]
    reached = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        received.append(time.perf_counter())
        if len(received) >= target[0]:
            reached.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    routes = {"routes": [{"name": "bench", "url": f"http://127.0.0.1:{port}/hook"}]}
    routes["routes"][0]["secret"] = ROUTE_SECRET
    config = directory / "routes.json"
    config.write_text(json.dumps(routes), encoding="utf-8")
    env = {**_env(ctx), "WA_AUTH_WEBHOOK_APP_SECRET": APP_SECRET}
    cmd = [*_wa_auth(), "serve", "--port", "0", "--webhook-queue", str(directory / "q.db")]
    cmd += ["--webhook-config", str(config)]
    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError(f"wa-auth serve did not start (exit {proc.wait()})")
        info = json.loads(line)
        samples: list[float] = []
        answered = await _drive(ctx, info["port"], samples)
        t0 = time.perf_counter() - answered
        target[0] = ctx.n + 50
        if len(received) < target[0]:
            try:
                await asyncio.wait_for(reached.wait(), 300)
            except asyncio.TimeoutError:
                raise RuntimeError(f"{len(received)} forwards of {target[0]} in 300 s") from None
        # The forwards of the measured deliveries: those received since the first of them.
        since = [at for at in received if at >= t0]
        forwarded = received[-1] - t0
        latencies = _latencies(samples)
        return {
            "n": ctx.n,
            "seconds": answered,
            "msgs_per_s": ctx.n / answered,
            "us_per_op": latencies["latency_p99_ms"] * 1e3,
            "forwards_per_s": len(since) / forwarded,
            **latencies,
        }
    finally:
        proc.terminate()
        # In a thread: the receiver on this loop keeps answering the forwards in flight.
        await asyncio.to_thread(proc.wait, 60)
        await runner.cleanup()


def _bench(ctx: Ctx, metric: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        row = asyncio.run(_run(ctx, Path(directory)))
    if metric == "forwards":
        row["msgs_per_s"] = row["forwards_per_s"]
    return row


@variant(
    "serve.webhook.bare",
    label="aiohttp alone: POST read, 200 (us/op: p99 to the 200)",
    group="serve",
    concurrency=(16,),
    requires=("aiohttp",),
)
def serve_webhook_bare(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_bare(ctx))


@variant(
    "serve.webhook",
    label="wa-auth serve: POST /webhook verified+stored (us/op: p99 200)",
    group="serve",
    concurrency=(16,),
    baseline="serve.webhook.bare",
    goal=Goal("max_us", 50_000.0),
    requires=("aiohttp",),
)
def serve_webhook(ctx: Ctx) -> dict[str, Any]:
    return _bench(ctx, "answers")


@variant(
    "serve.webhook.forwards",
    label="wa-auth serve: webhook forwards to a route per second",
    group="serve",
    concurrency=(16,),
    requires=("aiohttp",),
)
def serve_webhook_forwards(ctx: Ctx) -> dict[str, Any]:
    return _bench(ctx, "forwards")
