"""`wa-auth serve --redis URL`: two serve processes (two hosts, a queue file each) on one Redis
admit webhook events together.

The sandbox delivers signed status webhooks to a collector; the test then posts those exact
signed bodies to the two serve processes in the order it chooses (Meta's redelivery reaching
the other host, a late status reaching the other host), with one route behind both. A serve
SIGKILLed between its claims in Redis and its commit forwards the event once after its restart;
Redis stopped, serve still answers 200 and forwards (its queue file's ledger).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from serving import HARD, Receiver, Service, hook_env, send, start
from wa_auth.sandbox import Sandbox
from wa_auth.webhooks import parse

pytestmark = [pytest.mark.real_component("redis"), pytest.mark.once]

SECRET = "route-a-secret-canary-8f2d4c1a"  # hook_env's ROUTE_A_SECRET

#: serve, SIGKILLed by itself once its first batch was claimed in Redis, before its commit.
KILLED_AFTER_CLAIMS = """
import os, signal, sys
from wa_auth._cli._serve import _shared

original = _shared.SharedLedger.adecide

async def adecide(self, batch):
    found = await original(self, batch)
    if found is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return found

_shared.SharedLedger.adecide = adecide
from wa_auth._cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(seed=5, freeze_clock=True) as sandbox:
        yield sandbox


@pytest.fixture
def route() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def collected(sb: Sandbox) -> Iterator[Receiver]:
    """Where the sandbox delivers: the signed bodies the test posts to the serve processes."""
    receiver = Receiver()
    sb.subscribe(receiver.url)
    yield receiver
    receiver.close()


def statuses(sb: Sandbox, collected: Receiver, key: str) -> dict[str, tuple[bytes, str]]:
    """Send one message; return its status webhooks (signed bodies) by status."""
    (message_id,) = send(sb, sb.phone_number_ids[0], 1, key)
    assert sb.flush_webhooks(HARD)
    found = {}
    with collected.lock:
        posts = list(collected.posts)
    for headers, body in posts:
        (event,) = parse(body)
        if event.message_id == message_id:
            found[event.status] = (body, headers["X-Hub-Signature-256"])
    return found


def config(path: Path, route: Receiver) -> str:
    path.write_text(
        f'[[routes]]\nname = "a"\nurl = "{route.url}"\nsecret_env = "ROUTE_A_SECRET"\n',
        encoding="utf-8",
    )
    return str(path)


def serve(sb: Sandbox, url: str, queue: Path, routes: str, **kwargs: Any) -> Service:
    args = ("--redis", url, "--webhook-queue", str(queue), "--webhook-config", routes)
    return start(hook_env(sb), *args, "--forward-backoff", "0.05", **kwargs)


def post(service: Service, signed: tuple[bytes, str]) -> None:
    body, signature = signed
    headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}
    answer = service.call("POST", "/webhook", key=None, content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def settled(queue: Path) -> None:
    """Wait until the serve of *queue* processed every delivery it stored."""
    deadline = time.monotonic() + HARD
    while True:
        with sqlite3.connect(queue) as conn:
            left = conn.execute("SELECT count(*) FROM wa_serve_deliveries").fetchone()[0]
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} deliveries left in {queue}"
        time.sleep(0.05)


def forwarded(route: Receiver) -> list[tuple[str, str]]:
    return [(f["event"]["id"], f["event"]["status"]) for f in route.forwards(SECRET)]


def test_two_serve_processes_forward_each_event_once_and_never_backwards(
    tmp_path, sb, route, collected, redis_server
):
    """Each status posted to both processes (and again) is forwarded once in total; a status
    older than one the other process applied is stale there, not forwarded."""
    redis_server.flush()
    routes = config(tmp_path / "routes.toml", route)
    a = serve(sb, redis_server.url, tmp_path / "a.db", routes)
    b = serve(sb, redis_server.url, tmp_path / "b.db", routes)
    assert a.info["webhook"]["ledger"] == b.info["webhook"]["ledger"] == "redis"
    try:
        first = statuses(sb, collected, "m1")
        assert set(first) >= {"sent", "delivered"}
        for status in ("sent", "delivered"):
            for service in (a, b, a):
                post(service, first[status])
                settled(tmp_path / ("a.db" if service is a else "b.db"))
        got = route.wait_for(SECRET, 2)
        assert sorted(forwarded(route)) == sorted(
            (parse(first[s][0])[0].message_id, s) for s in ("sent", "delivered")
        )

        second = statuses(sb, collected, "m2")
        late = "read" if "read" in second else "delivered"
        post(a, second[late])
        route.wait_for(SECRET, 3)
        for status in {"sent", "delivered"} - {late}:
            post(b, second[status])
        settled(tmp_path / "b.db")
        settled(tmp_path / "a.db")
        got = forwarded(route)
        assert len(got) == 3, got
        assert got[-1] == (parse(second[late][0])[0].message_id, late)
    finally:
        a.stop()
        b.stop()


def test_a_serve_killed_between_its_claims_and_its_commit_forwards_once(
    tmp_path, sb, route, collected, redis_server
):
    """SIGKILL after the claims reached Redis, before the forwards were committed: the other
    process takes a redelivery for a duplicate; the restarted one forwards the event once."""
    redis_server.flush()
    routes = config(tmp_path / "routes.toml", route)
    signed = statuses(sb, collected, "k1")["sent"]
    (event,) = parse(signed[0])
    killed = serve(
        sb, redis_server.url, tmp_path / "a.db", routes, python=("-c", KILLED_AFTER_CLAIMS)
    )
    post(killed, signed)
    assert killed.proc.wait(HARD) == -signal.SIGKILL
    killed.http.close()
    with redis.Redis.from_url(redis_server.url) as client:
        owner = client.get(f"wa_auth:webhook:key:{event.key}")
    assert owner not in (None, b"1")  # claimed by the stored delivery, not committed

    other = serve(sb, redis_server.url, tmp_path / "b.db", routes)
    try:
        post(other, signed)  # Meta's redelivery, to the other host
        settled(tmp_path / "b.db")
    finally:
        other.stop()
    assert route.forwards(SECRET) == []

    again = serve(sb, redis_server.url, tmp_path / "a.db", routes)
    try:
        route.wait_for(SECRET, 1)
        settled(tmp_path / "a.db")
        assert forwarded(route) == [(event.message_id, "sent")]
    finally:
        again.stop()


def test_redis_stopped_serve_answers_200_and_forwards_on_its_own(
    tmp_path, sb, route, collected, redis_server
):
    """Redis down (serve told by WA_AUTH_REDIS_URL): the POST is answered 200 and the event
    forwarded (the queue file's ledger), told as a fall-back; a redelivery to the same process
    is still a duplicate."""
    routes = config(tmp_path / "routes.toml", route)
    signed = statuses(sb, collected, "down")["sent"]
    args = ("--webhook-queue", str(tmp_path / "a.db"), "--webhook-config", routes)
    service = start(hook_env(sb, WA_AUTH_REDIS_URL=redis_server.url), *args)
    assert service.info["webhook"]["ledger"] == "redis"  # from WA_AUTH_REDIS_URL
    redis_server.stop()
    try:
        post(service, signed)
        route.wait_for(SECRET, 1)
        post(service, signed)
        settled(tmp_path / "a.db")
        assert len(route.forwards(SECRET)) == 1
    finally:
        redis_server.start()
        service.stop()
    said = [json.loads(line).get("message", "") for line in service.stderr.splitlines()]
    assert any("admitted in this queue file's ledger" in line for line in said), said


@pytest.mark.anyio
async def test_a_batch_decided_again_by_its_owners_gets_the_same_verdicts(redis_server):
    """One batch: two statuses of one message (in order) and a redelivery of the first by
    another delivery; decided again (processed again after a kill), the same verdicts; the
    message's statuses never go back, whichever delivery asks."""
    from wa_auth._cli._serve._queue import Delivery
    from wa_auth._cli._serve._shared import SharedLedger
    from wa_auth.fleet import RedisState

    redis_server.flush()

    def status(status: str) -> bytes:
        value = {
            "metadata": {"phone_number_id": "111"},
            "statuses": [
                {"id": "wamid.b", "status": status, "timestamp": "1700000000", "recipient_id": "1"}
            ],
        }
        change = {"field": "messages", "value": value}
        entry = {"id": "waba", "changes": [change]}
        return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()

    bodies = [status("sent"), status("delivered"), status("sent")]
    batch = [
        (Delivery(i, body, "received", None, 0, f"owner{i}"), parse(body))
        for i, body in enumerate(bodies)
    ]
    with RedisState(redis_server.url) as state:
        shared = SharedLedger(state.ledger())
        first = await shared.adecide(batch)
        again = await shared.adecide(batch)
        late = await shared.adecide(
            [(Delivery(9, bodies[0], "received", None, 0, "owner9"), parse(bodies[0]))]
        )
        await state.aclose()
    assert first is not None
    assert again is not None
    assert late is not None
    verdicts = [[a.verdict for a in admitted] for admitted in first]
    assert verdicts == [["apply"], ["apply"], ["duplicate"]]
    assert [[a.verdict for a in admitted] for admitted in again] == verdicts
    assert [a.verdict for a in late[0]] == ["duplicate"]
