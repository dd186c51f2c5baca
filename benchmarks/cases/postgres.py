"""The outbox on PostgreSQL: what a network database costs per send, and what a fleet gains.

The PostgreSQL rows start their own server (`tests/pgserver.py`: `initdb` in a temporary
directory, 127.0.0.1, a random port, `fsync = off` since a benchmark measures the protocol's
round trips, not this machine's disk) and need the `postgres` extra (psycopg).

- `outbox.fast.postgres`: `Guard.asend` on the fast client, 64 in flight, with a
  `PostgresOutbox` (group commit, `durability="full"`), against the same with a
  `SqliteOutbox` (goal >= 0.5x: a database round trip against a local file); the figures
  carry `commits_per_msg`.
- `outbox.fleet.*`: W worker processes replaying one outbox of N intents over 8 numbers, each
  sending one intent at a time to a peer that answers after 20 ms, so the run is bound by
  waiting and not by this machine's two cores; 4 workers on PostgreSQL against 1 (goal >= 3x:
  the claims must not serialise the workers; a worker holds one number at a time, for
  per-number order), and the same on one SQLite file side by side.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from loops import _figures, async_loop
from peer import SUCCESS_BODY
from registry import Ctx, Goal, variant

from cases.common import TEXT, TOKEN, quiet_logging

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "benchmarks" / "fleet_worker.py"
#: Intents of a one-worker fleet row (fixed: the run is bound by the peer's 20 ms, not by n):
#: 10,000 would take one worker over 300 s of waiting alone. The four-worker rows replay
#: FLEET_N_4; the ratio compares messages per second.
FLEET_N = 2_000
FLEET_N_4 = 10_000
#: The numbers a fleet row's intents are spread over (a worker holds one number at a time).
FLEET_NUMBERS = 8
PEER_LATENCY = 0.020


@contextmanager
def _postgres() -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import PostgresServer, find_bin

    bindir = find_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer(bindir).init()
    try:
        yield server.dsn
    finally:
        server.close()


@contextmanager
def _directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="wa-auth-bench-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- the guarded send on the fast client, 64 in flight ------------------------------------------


async def _fast(ctx: Ctx, dsn: str) -> dict[str, Any]:
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent
    from wa_auth.outbox import PostgresOutbox

    quiet_logging()
    async with FastAsyncWhatsAppClient(
        token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
    ) as client:
        box = PostgresOutbox(dsn)
        guard = Guard(client, outbox=box)
        send = lambda: guard.asend(Intent.text(ctx.to, TEXT))  # noqa: E731
        await async_loop(min(ctx.n, max(50, ctx.concurrency)), ctx.concurrency, send, warmup=0)
        before = box.commits
        figures = await async_loop(ctx.n, ctx.concurrency, send, warmup=0)
        await box.aclose()
        commits = box.commits - before
        return {
            **figures,
            "commits_per_msg": commits / ctx.n,
            "commits_per_s": commits / figures["seconds"] if figures["seconds"] else 0.0,
        }


@variant(
    "outbox.fast.postgres",
    label="Guard.asend + PostgresOutbox, group commit",
    group="outbox",
    concurrency=(64,),
    baseline="outbox.fast.sqlite",
    goal=Goal("min_ratio", 0.5),
    requires=("aiohttp", "psycopg"),
    notes="against SqliteOutbox: a server round trip per commit against a local file",
)
def fast_postgres(ctx: Ctx) -> dict[str, Any]:
    with _postgres() as dsn:
        return asyncio.run(_fast(ctx, dsn))


# --- a fleet of workers on one outbox -----------------------------------------------------------


_BODY = SUCCESS_BODY.encode()
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)


class _SlowPeer:
    """A loopback peer that answers every send after `PEER_LATENCY`, from any number.

    The sandbox knows two numbers; a fleet's workers hold a number each (per-number order),
    so the fleet rows spread their intents over `FLEET_NUMBERS` numbers, which this peer
    takes all. It counts the sends it answered.
    """

    def __init__(self) -> None:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                time.sleep(PEER_LATENCY)
                # One write: headers and body in two would meet Nagle and a delayed ACK (40 ms).
                self.wfile.write(_RESPONSE)
                with peer.lock:
                    peer.sends += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.sends = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _SlowPeer:  # noqa: PYI034 - a private helper, never subclassed
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fleet(n: int, workers: int, *, postgres: bool) -> dict[str, Any]:
    from wa_auth.intents import Intent
    from wa_auth.outbox import PostgresOutbox, SqliteOutbox

    quiet_logging()
    schema = f"bench_{secrets.token_hex(4)}"
    numbers = [f"1090000000001{k:02d}" for k in range(FLEET_NUMBERS)]
    with _directory() as tmp, _postgres() if postgres else _nothing() as dsn:
        target = dsn if postgres else str(tmp / "outbox.db")
        intents = [
            Intent.text(
                "+15551234567",
                TEXT,
                idempotency_key=f"f{k}",
                phone_number_id=numbers[k % FLEET_NUMBERS],
            )
            for k in range(n)
        ]
        box = PostgresOutbox(target, schema=schema) if postgres else SqliteOutbox(target)
        box.enqueue_many(intents)
        box.close()
        with _SlowPeer() as peer:
            args = {
                "outbox": target,
                "schema": schema,
                "base_url": peer.base_url,
                "token": TOKEN,
                "phone": numbers[0],
            }
            procs = [
                subprocess.Popen(
                    [sys.executable, str(WORKER), json.dumps(args)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(workers)
            ]
            for p in procs:
                assert p.stdout is not None
                assert p.stdout.readline().strip() == "ready"
            started, cpu = time.perf_counter(), time.process_time()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            sent = sum(
                json.loads(p.communicate(timeout=900)[0].splitlines()[-1])["sent"] for p in procs
            )
            wall = time.perf_counter() - started
            recorded = peer.sends
    if sent != n or recorded != n:
        raise RuntimeError(f"the fleet sent {sent} (peer: {recorded}) of {n} intents")
    return {
        **_figures(n, wall, time.process_time() - cpu),
        "workers": workers,
        "numbers": FLEET_NUMBERS,
    }


@contextmanager
def _nothing() -> Iterator[str]:
    yield ""


@variant(
    "outbox.fleet.postgres.1",
    label="1 worker replaying a PostgresOutbox, peer at 20 ms (fleet baseline)",
    group="outbox",
    fixed_n=FLEET_N,
    requires=("psycopg",),
)
def fleet_postgres_1(ctx: Ctx) -> dict[str, Any]:
    return _fleet(ctx.n, 1, postgres=True)


@variant(
    "outbox.fleet.postgres.4",
    label="4 workers replaying one PostgresOutbox, peer at 20 ms",
    group="outbox",
    baseline="outbox.fleet.postgres.1",
    goal=Goal("min_ratio", 3.0),
    fixed_n=FLEET_N_4,
    requires=("psycopg",),
    notes="SKIP LOCKED claims: the workers wait on the peer, not on each other",
)
def fleet_postgres_4(ctx: Ctx) -> dict[str, Any]:
    return _fleet(ctx.n, 4, postgres=True)


@variant(
    "outbox.fleet.sqlite.1",
    label="1 worker replaying a SqliteOutbox, peer at 20 ms",
    group="outbox",
    fixed_n=FLEET_N,
)
def fleet_sqlite_1(ctx: Ctx) -> dict[str, Any]:
    return _fleet(ctx.n, 1, postgres=False)


@variant(
    "outbox.fleet.sqlite.4",
    label="4 workers replaying one SqliteOutbox file, peer at 20 ms",
    group="outbox",
    baseline="outbox.fleet.sqlite.1",
    fixed_n=FLEET_N_4,
    notes="one machine's fleet, side by side with PostgreSQL's",
)
def fleet_sqlite_4(ctx: Ctx) -> dict[str, Any]:
    return _fleet(ctx.n, 4, postgres=False)
