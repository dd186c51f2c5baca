"""The outbox: what recording every send in a SqliteOutbox file costs, and what group commit saves.

Each guarded row makes an `Intent` per message in the timed loop and compares with the same
guard without an outbox (its own baseline rows, so `--only 'outbox.*'` runs alone). The
outbox file is in a fresh temporary directory. Besides throughput, each outbox row reports
`commits_per_msg` and `commits_per_s` (in `figures` of latest.json): with
`durability="full"` every commit is one fsync of the log, so commits per message are fsyncs
per message; with `normal` the log is synced only at checkpoints. The per-change row is the
same outbox with `group_commit=False`, side by side with group commit in one run.

`enqueue_many` is compared with a bare `sqlite3` `executemany` of the same rows into the same
table (rows per second as msg/s), and a replay of queued intents with sending as many fresh
intents through the same guarded outbox.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loops import _figures, async_loop, sync_loop
from registry import Ctx, Goal, variant

from cases.common import TEXT, TOKEN, quiet_logging


@contextmanager
def _directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="wa-auth-bench-outbox-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _commits(figures: dict[str, Any], commits: int, n: int) -> dict[str, Any]:
    return {
        **figures,
        "commits_per_msg": commits / n,
        "commits_per_s": commits / figures["seconds"] if figures["seconds"] else 0.0,
    }


# --- the guarded send, blocking -----------------------------------------------------------------


def _sync(ctx: Ctx, *, use: bool = True, **outbox: Any) -> dict[str, Any]:
    import wa_auth
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent
    from wa_auth.outbox import SqliteOutbox

    quiet_logging()
    with (
        _directory() as tmp,
        wa_auth.WhatsAppClient(
            token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
        ) as client,
    ):
        box = SqliteOutbox(tmp / "outbox.db", **outbox) if use else None
        guard = Guard(client, outbox=box)
        send = lambda: guard.send(Intent.text(ctx.to, TEXT))  # noqa: E731
        sync_loop(min(50, ctx.n), send, warmup=0)
        before = box.commits if box is not None else 0
        figures = sync_loop(ctx.n, send, warmup=0)
        if box is None:
            return figures
        box.close()
        return _commits(figures, box.commits - before, ctx.n)


@variant(
    "outbox.sync.none",
    label="Guard.send, no outbox (outbox baseline)",
    group="outbox",
)
def sync_none(ctx: Ctx) -> dict[str, Any]:
    return _sync(ctx, use=False)


@variant(
    "outbox.sync.sqlite",
    label="Guard.send with SqliteOutbox (normal)",
    group="outbox",
    baseline="outbox.sync.none",
    goal=Goal("min_ratio", 0.90),
)
def sync_sqlite(ctx: Ctx) -> dict[str, Any]:
    return _sync(ctx)


@variant(
    "outbox.sync.sqlite.full",
    label="Guard.send with SqliteOutbox (full: fsync per commit)",
    group="outbox",
    baseline="outbox.sync.none",
    scale=0.25,
    notes="durability='full': commits_per_msg is fsyncs per message",
)
def sync_sqlite_full(ctx: Ctx) -> dict[str, Any]:
    return _sync(ctx, durability="full")


# --- the guarded send on the fast client, 64 in flight ------------------------------------------


async def _fast(ctx: Ctx, *, use: bool = True, **outbox: Any) -> dict[str, Any]:
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent
    from wa_auth.outbox import SqliteOutbox

    quiet_logging()
    with _directory() as tmp:
        async with FastAsyncWhatsAppClient(
            token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
        ) as client:
            box = SqliteOutbox(tmp / "outbox.db", **outbox) if use else None
            guard = Guard(client, outbox=box)
            send = lambda: guard.asend(Intent.text(ctx.to, TEXT))  # noqa: E731
            # The warm-up opens the connections, as async_loop's own does; it is not counted.
            await async_loop(min(ctx.n, max(50, ctx.concurrency)), ctx.concurrency, send, warmup=0)
            before = box.commits if box is not None else 0
            figures = await async_loop(ctx.n, ctx.concurrency, send, warmup=0)
            if box is None:
                return figures
            await box.aclose()
            return _commits(figures, box.commits - before, ctx.n)


@variant(
    "outbox.fast.none",
    label="Guard.asend on the fast client, no outbox (baseline)",
    group="outbox",
    concurrency=(64,),
    requires=("aiohttp",),
)
def fast_none(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_fast(ctx, use=False))


@variant(
    "outbox.fast.sqlite",
    label="Guard.asend + SqliteOutbox, group commit",
    group="outbox",
    concurrency=(64,),
    baseline="outbox.fast.none",
    goal=Goal("min_ratio", 0.80),
    requires=("aiohttp",),
)
def fast_sqlite(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_fast(ctx))


@variant(
    "outbox.fast.sqlite.per_change",
    label="Guard.asend + SqliteOutbox, one commit per change",
    group="outbox",
    concurrency=(64,),
    baseline="outbox.fast.none",
    requires=("aiohttp",),
    notes="group_commit=False: the alternative group commit is measured against",
)
def fast_per_change(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_fast(ctx, group_commit=False))


@variant(
    "outbox.fast.sqlite.full",
    label="Guard.asend + SqliteOutbox (full), group commit",
    group="outbox",
    concurrency=(64,),
    baseline="outbox.fast.none",
    requires=("aiohttp",),
    notes="durability='full': commits_per_msg is fsyncs per message",
)
def fast_full(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_fast(ctx, durability="full"))


# --- enqueue_many against a bare executemany ----------------------------------------------------


def _intents(n: int) -> list[Any]:
    from wa_auth.intents import Intent

    return [Intent.text("+15551234567", TEXT) for _ in range(n)]


def _rows_per_s(n: int, run: Callable[[], object]) -> dict[str, Any]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    run()
    return _figures(n, time.perf_counter() - t0, time.process_time() - cpu0)


@variant(
    "outbox.executemany",
    label="sqlite3 executemany of the same rows (enqueue baseline)",
    group="outbox",
    scale=50,
    notes="rows/s as msg/s; 100,000 rows in the full run",
)
def executemany(ctx: Ctx) -> dict[str, Any]:
    # The baseline names nothing private of wa_auth: the table and the statement are spelled
    # out here, as SqliteOutbox makes them, and the rows come from the public `Intent.to_dict`.
    now = time.time()
    rows = [
        (
            i.idempotency_key,
            json.dumps(i.to_dict(), separators=(",", ":"), ensure_ascii=False),
            "pending",
            i.consumer,
            i.phone_number_id,
            i.created_at,
            i.not_after,
            None,
            None,
            now,
            now,
        )
        for i in _intents(ctx.n)
    ]
    with _directory() as tmp:
        conn = sqlite3.connect(tmp / "bare.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _BARE_SCHEMA:
            conn.execute(statement)

        def insert() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_BARE_INSERT, rows)
            conn.execute("COMMIT")

        figures = _rows_per_s(ctx.n, insert)
        conn.close()
        return figures


#: SqliteOutbox's table and its insert, written out for the bare baseline.
_BARE_SCHEMA = (
    (
        "CREATE TABLE wa_outbox (id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, "
        "intent TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "category TEXT, reason TEXT, error TEXT, message_id TEXT, token_fingerprint TEXT, "
        "not_before REAL, not_after REAL, consumer TEXT, phone_number_id TEXT, lease_owner TEXT, "
        "lease_until REAL, created_at REAL NOT NULL, enqueued_at REAL NOT NULL, "
        "updated_at REAL NOT NULL)"
    ),
    ("CREATE INDEX wa_outbox_open ON wa_outbox (id) WHERE state NOT IN ('delivered', 'expired')"),
)
_BARE_INSERT = (
    "INSERT INTO wa_outbox (idempotency_key, intent, state, consumer, phone_number_id, "
    "created_at, not_after, lease_owner, lease_until, enqueued_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING"
)


@variant(
    "outbox.enqueue_many",
    label="SqliteOutbox.enqueue_many of Intents",
    group="outbox",
    scale=50,
    baseline="outbox.executemany",
    goal=Goal("min_ratio", 0.5),
    notes="rows/s as msg/s; the Intent -> JSON row is in the timed part",
)
def enqueue_many(ctx: Ctx) -> dict[str, Any]:
    from wa_auth.outbox import SqliteOutbox

    intents = _intents(ctx.n)
    with _directory() as tmp, SqliteOutbox(tmp / "outbox.db") as box:
        return _rows_per_s(ctx.n, lambda: box.enqueue_many(intents))


# --- a replay against fresh sends ----------------------------------------------------------------


async def _replay(ctx: Ctx, *, replay: bool) -> dict[str, Any]:
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import QUEUED, Delivery, Guard
    from wa_auth.outbox import SqliteOutbox

    quiet_logging()
    intents = _intents(ctx.n)
    with _directory() as tmp:
        async with FastAsyncWhatsAppClient(
            token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
        ) as client:
            box = SqliteOutbox(tmp / "outbox.db")
            guard = Guard(client, outbox=box)
            # Warm the connections (not timed), as async_loop does.
            await guard.asend_many(_intents(ctx.concurrency), concurrency=ctx.concurrency)
            if replay:
                for intent in intents:
                    box.settle(Delivery(state=QUEUED, intent=intent, reason="rate_limited"))
                await box.aflush()
            cpu0, t0 = time.process_time(), time.perf_counter()
            if replay:
                report = await box.areplay(guard, concurrency=ctx.concurrency)
                assert report.delivered == ctx.n, report.to_dict()
            else:
                done = await guard.asend_many(intents, concurrency=ctx.concurrency)
                assert all(d.ok for d in done)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            await box.aclose()
    return _figures(ctx.n, wall, cpu)


@variant(
    "outbox.fresh.fast",
    label="Guard.asend_many + SqliteOutbox, fresh intents (replay baseline)",
    group="outbox",
    concurrency=(64,),
    scale=5,
    requires=("aiohttp",),
    notes="10,000 intents in the full run",
)
def fresh(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_replay(ctx, replay=False))


@variant(
    "outbox.replay.fast",
    label="SqliteOutbox.areplay of queued intents",
    group="outbox",
    concurrency=(64,),
    scale=5,
    baseline="outbox.fresh.fast",
    goal=Goal("min_ratio", 0.83),
    requires=("aiohttp",),
    notes="within 1.2x of fresh sends: ratio >= 0.83; 10,000 intents in the full run",
)
def replayed(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_replay(ctx, replay=True))
