"""serve's webhook pipeline after the 200, on a real queue file: a delivery whose events the
guard could not apply is retried later without being admitted (or forwarded) twice, and a
delivery admitted before a kill is applied by the next process without a second admission."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import Clock
from wa_auth._cli._serve._fanout import Fanout
from wa_auth._cli._serve._hooks_settings import HookSettings
from wa_auth._cli._serve._queue import WebhookQueue
from wa_auth._cli._serve._routes import Route
from wa_auth.errors import OutboxUnavailableError
from wa_auth.webhooks import DEFAULT_MAX_KEYS, DEFAULT_WINDOW, parse

pytestmark = pytest.mark.anyio

ROUTE = Route(id="r", url="http://127.0.0.1:9/hook", secret="a-route-secret-0123456789")


def delivery(*statuses: str) -> bytes:
    value = {
        "metadata": {"phone_number_id": "111"},
        "statuses": [
            {"id": "wamid.1", "status": s, "timestamp": "1700000000", "recipient_id": "1"}
            for s in statuses
        ],
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(payload).encode()


class Guard:
    """Records what it applied; fails the first *failures* calls as a locked outbox would."""

    def __init__(self, failures: int = 0) -> None:
        self.applied: list[str] = []
        self.failures = failures

    async def aapply(self, event: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise OutboxUnavailableError("the outbox file is locked", kind="locked")
        self.applied.append(event.key)


def open_queue(path: Path, clock: Clock) -> WebhookQueue:
    return WebhookQueue(path, window=DEFAULT_WINDOW, max_keys=DEFAULT_MAX_KEYS, clock=clock)


def fanout(queue: WebhookQueue, guard: Guard, clock: Clock) -> Fanout:
    settings = HookSettings(app_secret="x" * 20, queue=queue.path, forward_backoff=1.0)
    return Fanout(settings, queue, [ROUTE], guard=guard, clock=clock)


async def test_a_failed_apply_is_retried_without_a_second_admission(tmp_path):
    """The guard fails once: the delivery waits its back-off, then is applied; each event is
    admitted and forwarded once."""
    clock = Clock()
    clock.t = 1_000.0
    queue = open_queue(tmp_path / "q.db", clock)
    guard = Guard(failures=1)
    pipeline = fanout(queue, guard, clock)
    try:
        await pipeline.received(delivery("sent", "delivered"))
        await pipeline._batch(queue.due())
        assert guard.applied == []
        assert queue.due() == []  # waiting for its back-off
        (waiting,) = queue.db.read(
            lambda c: c.execute("SELECT state, attempts FROM wa_serve_deliveries").fetchall()
        )
        assert tuple(waiting) == ("admitted", 1)

        clock.t += 5
        await pipeline._batch(queue.due())
        assert guard.applied == ["status:wamid.1:sent", "status:wamid.1:delivered"]
        assert queue.due() == []
        assert [f.key for f in queue.forwards()] == guard.applied
    finally:
        queue.close()


async def test_a_delivery_admitted_before_a_kill_is_applied_once_after(tmp_path):
    """Admitted (its forwards queued) and then the process died: the next one applies its
    events without admitting them again, so they are not taken for redeliveries."""
    clock = Clock()
    path = tmp_path / "q.db"
    first = open_queue(path, clock)
    body = delivery("read")
    await first.astore(body)
    (stored,) = first.due()
    await first.aadmit([(stored, parse(body))], [ROUTE])
    first.close()  # the kill: nothing after the admission's commit happened

    queue = open_queue(path, clock)
    guard = Guard()
    try:
        await fanout(queue, guard, clock)._batch(queue.due())
        assert guard.applied == ["status:wamid.1:read"]
        assert [f.key for f in queue.forwards()] == ["status:wamid.1:read"]
        assert queue.due() == []
    finally:
        queue.close()


async def test_a_throughput_change_serve_cannot_place_is_logged_not_retried(caplog):
    """A THROUGHPUT_UPGRADE named by display number only: a warning, no error, no retry."""
    from wa_auth import WhatsAppClient
    from wa_auth._cli._serve._fanout import apply_event
    from wa_auth.guards import Guard as RealGuard
    from wa_auth.pacing import LocalRateLimiter

    fixture = Path(__file__).parent / "payloads" / "webhooks"
    body = json.loads((fixture / "phone_number_quality_update_throughput.json").read_text())
    (event,) = parse(body["payload"])
    limiter = LocalRateLimiter()
    client = WhatsAppClient(token="EAAG" + "x" * 60, phone_number_id="111")
    with caplog.at_level("WARNING", logger="wa_auth.serve"):
        await apply_event(RealGuard(client, limiter=limiter), event)
    assert "phone_number_id=" in caplog.text
    assert limiter.rate("111") == 80.0
    with pytest.raises(TypeError):  # anything else still raises
        await apply_event(RealGuard(client, limiter=limiter), {"not": "an event"})


async def test_a_forward_resent_after_its_2xx_was_not_noted_carries_the_same_key_and_bytes(
    tmp_path,
):
    """The route answered 2xx but serve could not note it (a kill, a locked file): the forward
    goes again, byte for byte, with the same X-Wa-Auth-Event-Key, for the receiver to dedupe."""
    import asyncio

    from aiohttp import web

    from wa_auth._cli._serve._routes import KEY_HEADER
    from wa_auth.errors import OutboxError

    posts: list[tuple[str, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append((request.headers[KEY_HEADER], await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    route = Route(
        id="r",
        url=f"http://127.0.0.1:{runner.addresses[0][1]}/hook",
        secret="a-route-secret-0123456789",
    )
    clock = Clock()
    queue = open_queue(tmp_path / "q.db", clock)
    noted = queue.adelivered
    fails = [1]

    async def adelivered(forward: Any) -> None:
        if fails[0]:
            fails[0] -= 1
            raise OutboxError("the queue file is locked", kind="locked")
        await noted(forward)

    queue.adelivered = adelivered  # type: ignore[method-assign]
    settings = HookSettings(app_secret="x" * 20, queue=queue.path, forward_backoff=1.0)
    pipeline = Fanout(settings, queue, [route], guard=Guard(), clock=clock)
    try:
        await pipeline.start()
        await pipeline.received(delivery("read"))
        for _ in range(200):
            if len(posts) >= 2 and not queue.forwards():
                break
            await asyncio.sleep(0.05)
        await pipeline.stop()
        assert [key for key, _ in posts] == ["status:wamid.1:read"] * 2
        assert posts[0][1] == posts[1][1]
        assert queue.forwards() == []
    finally:
        queue.close()
        await runner.cleanup()


async def test_a_queue_file_of_version_1_gives_each_stored_delivery_an_owner(tmp_path):
    """A queue file written before the owners: its stored deliveries get one each, at the
    migration, and keep it; a new delivery gets its own."""
    from wa_auth._cli._serve._queue import SCHEMA
    from wa_auth._sqlite import Database, Schema

    path = tmp_path / "q.db"
    old = Database(path, Schema(SCHEMA.component, SCHEMA.what, SCHEMA.migrations[:1]))
    old.run(
        lambda c: c.execute(
            "INSERT INTO wa_serve_deliveries (body, received_at) VALUES (?, ?)", (b"{}", 1.0)
        )
    )
    old.close()
    clock = Clock()
    clock.t = 10.0
    queue = open_queue(path, clock)
    try:
        (stored,) = queue.due()
        assert len(stored.owner) == 24
        int(stored.owner, 16)
        assert queue.due()[0].owner == stored.owner
        await queue.astore(b"{}")
        assert len({d.owner for d in queue.due()}) == 2
    finally:
        queue.close()


async def test_redis_unreachable_admits_in_the_queue_files_ledger_and_says_so(tmp_path):
    """`--redis` on a Redis that does not answer: the batch is admitted (and forwarded) by the
    queue file's ledger, and a `StateFellBack` of store `webhooks` is emitted."""
    import socket

    from wa_auth._cli._serve._shared import SharedLedger
    from wa_auth.events import Events, StateFellBack
    from wa_auth.fleet import RedisConnection, RedisWebhookLedger

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    seen: list[Any] = []
    connection = RedisConnection(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    shared = SharedLedger(RedisWebhookLedger(connection), Events(seen.append))
    clock = Clock()
    queue = open_queue(tmp_path / "q.db", clock)
    guard = Guard()
    pipeline = fanout(queue, guard, clock)
    pipeline.shared = shared
    try:
        await pipeline.received(delivery("sent"))
        await pipeline.received(delivery("sent"))  # a redelivery to this host
        await pipeline._batch(queue.due())
        assert guard.applied == ["status:wamid.1:sent"]
        assert [f.key for f in queue.forwards()] == ["status:wamid.1:sent"]
        fell = [e for e in seen if isinstance(e, StateFellBack)]
        assert [e.store for e in fell] == ["webhooks"]
        assert fell[0].address == f"127.0.0.1:{port}"
    finally:
        queue.close()
        connection.close()


async def test_stop_ends_even_a_task_whose_nap_swallowed_the_cancellation(tmp_path):
    """asyncio.wait_for may swallow a cancellation (3.11 and older): stop() still returns, and
    the task ends at its next turn instead of looping forever (serve hung on SIGTERM)."""
    import asyncio

    clock = Clock()
    queue = open_queue(tmp_path / "q.db", clock)
    pipeline = fanout(queue, Guard(), clock)
    nap = pipeline._nap
    swallowed = []

    async def swallowing_nap(name: str, seconds: float) -> None:
        try:
            await nap(name, seconds)
        except asyncio.CancelledError:
            swallowed.append(name)  # as wait_for does when its wait ends with the cancel

    pipeline._nap = swallowing_nap  # type: ignore[method-assign]
    tasks = []
    try:
        await pipeline.start()
        tasks = list(pipeline._tasks.values())
        await asyncio.sleep(0.1)  # every task is napping
        stopping = asyncio.ensure_future(pipeline.stop())
        await asyncio.wait({stopping}, timeout=10)
        assert stopping.done()
        assert all(task.done() for task in tasks)
    finally:
        pipeline._nap = nap  # type: ignore[method-assign]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5)
        queue.close()
