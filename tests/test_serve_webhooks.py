"""`wa-auth serve`'s webhook endpoint and fan-out, end to end: a real serve process on
127.0.0.1, the sandbox delivering signed webhooks to it, real receivers behind the routes, a
SIGKILL between the 200 and the forward, a receiver down for a while, and no secret in any
output."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from running import env_for, text_intent, valid
from serving import (
    HARD,
    KEY,
    SECRET_A,
    SECRET_B,
    VERIFY_TOKEN,
    Receiver,
    Service,
    hook_env,
    send,
    start,
)
from wa_auth.sandbox import Sandbox


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    a, b = Receiver(), Receiver()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(seed=3, freeze_clock=True) as sandbox:
        yield sandbox


def config(path: Path, a: Receiver, b: Receiver, sb: Sandbox) -> Path:
    first, second = sb.phone_number_ids[:2]
    path.write_text(
        f"""# two workflows, one number each
[[routes]]
name = "a"
url = "{a.url}"
secret_env = "ROUTE_A_SECRET"
phone_number_ids = ["{first}"]

[[routes]]
name = "b"
url = "{b.url}"
secret_env = "ROUTE_B_SECRET"
phone_number_ids = ["{second}"]
types = ["status"]
""",
        encoding="utf-8",
    )
    return path


def order(forwards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["event"]["id"], f["event"]["status"]) for f in forwards]


def no_secret(service: Service, sb: Sandbox, *answers: httpx.Response) -> None:
    text = service.stdout + service.stderr + "".join(a.text for a in answers)
    for secret in (sb.app_secret, VERIFY_TOKEN, SECRET_A, SECRET_B):
        assert secret not in text


def test_signed_deliveries_fan_out_to_each_numbers_route(tmp_path, sb, receivers):
    """Two routes each get only their number's events, signed with their own secret, in the
    order Meta (the sandbox) delivered them; the handshake answers; nothing shows a secret."""
    a, b = receivers
    path = config(tmp_path / "routes.toml", a, b, sb)
    queue = str(tmp_path / "queue.db")
    service = start(hook_env(sb), "--webhook-queue", queue, "--webhook-config", str(path))
    try:
        assert service.info["webhook"] == {"queue": queue, "routes": 2, "ledger": "file"}
        sb.subscribe(service.url + "/webhook")
        challenge = service.call(
            "GET",
            "/webhook",
            key=None,
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
        assert challenge.status_code == 200
        assert challenge.text == "1158201444"
        wrong = service.call(
            "GET",
            "/webhook",
            key=None,
            params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
        )
        assert wrong.status_code == 403

        first, second = sb.phone_number_ids[:2]
        ids_a = send(sb, first, 2, "a")
        ids_b = send(sb, second, 2, "b")
        assert sb.flush_webhooks(HARD)
        got_a = a.wait_for(SECRET_A, 6)
        got_b = b.wait_for(SECRET_B, 6)
        time.sleep(0.3)  # nothing more comes
        assert len(a.forwards(SECRET_A)) == 6
        assert len(b.forwards(SECRET_B)) == 6

        assert {f["phone_number_id"] for f in got_a} == {first}
        assert {f["phone_number_id"] for f in got_b} == {second}
        delivered = [(r.message_id, r.status) for r in sb.webhooks()]
        assert order(got_a) == [d for d in delivered if d[0] in ids_a]
        assert order(got_b) == [d for d in delivered if d[0] in ids_b]
        one = got_a[0]
        assert set(one) == {
            "key",
            "type",
            "field",
            "phone_number_id",
            "business_account_id",
            "category",
            "event",
        }
        assert one["type"] == "status"
        assert one["field"] == "messages"
        assert one["event"]["idempotency_key"] == "a-0"
        assert one["event"]["raw"]["id"] == ids_a[0]

        unsigned = service.call("POST", "/webhook", key=None, content=b'{"object":"x"}', headers={})
        tampered = service.call(
            "POST",
            "/webhook",
            key=None,
            content=b'{"object":"whatsapp_business_account","entry":[]}',
            headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
        )
        assert unsigned.status_code == tampered.status_code == 401
        assert tampered.json()["error"]["category"] == "invalid_signature"
        metrics = service.call("GET", "/metrics")
        if metrics.status_code == 200:  # with the prometheus extra: every outcome counted
            for name in ("webhook.rejected", "webhook.verified", "webhook.accepted"):
                assert f'event="{name}"' in metrics.text
        no_secret(service, sb, challenge, wrong, unsigned, tampered, metrics)
    finally:
        assert service.stop() == 0
    no_secret(service, sb)


def test_the_routes_api_registers_replaces_lists_and_deletes(tmp_path, sb, receivers):
    """POST registers (the same URL keeps its id), GET lists without secrets, DELETE drops;
    a bad field is a 400 naming it; the API's routes survive a restart."""
    a, _ = receivers
    queue = str(tmp_path / "queue.db")
    env = hook_env(sb)
    service = start(env, "--webhook-queue", queue)
    try:
        body = {"url": a.url, "secret": SECRET_A, "name": "n8n", "types": ["status"]}
        created = service.call("POST", "/webhook/routes", json=body)
        assert created.status_code == 201
        route = created.json()
        assert route["url"] == a.url
        assert route["types"] == ["status"]
        assert SECRET_A not in created.text
        again = service.call("POST", "/webhook/routes", json={**body, "name": "renamed"})
        assert again.status_code == 201
        assert again.json()["id"] == route["id"]
        assert again.json()["name"] == "renamed"

        for bad, field in [
            ({"url": a.url, "secret": "short"}, "secret"),
            ({"url": "ftp://x", "secret": SECRET_A}, "url"),
            ({"url": a.url, "secret": SECRET_A, "types": ["nope"]}, "types"),
            ({"url": a.url, "secret": SECRET_A, "colour": 1}, "colour"),
        ]:
            refused = service.call("POST", "/webhook/routes", json=bad)
            assert refused.status_code == 400
            assert field in refused.json()["error"]["message"]
        no_key = service.call("GET", "/webhook/routes", key=None)
        assert no_key.status_code == 401
    finally:
        service.stop()

    service = start(env, "--webhook-queue", queue)
    try:
        listed = service.call("GET", "/webhook/routes").json()["routes"]
        assert [r["id"] for r in listed] == [route["id"]]
        assert listed[0]["name"] == "renamed"
        assert service.call("DELETE", f"/webhook/routes/{route['id']}").status_code == 204
        assert service.call("DELETE", f"/webhook/routes/{route['id']}").status_code == 404
        assert service.call("GET", "/webhook/routes").json() == {"routes": []}
    finally:
        service.stop()


def test_a_sigkill_after_the_200_forwards_after_the_restart_once(tmp_path, sb, receivers):
    """Deliveries answered 200 while the route is down, then serve SIGKILLed: the next serve
    on the same file forwards every event once, in order."""
    a, b = receivers
    path = config(tmp_path / "routes.toml", a, b, sb)
    queue = str(tmp_path / "queue.db")
    a.status = 503
    args = ("--webhook-queue", queue, "--webhook-config", str(path), "--forward-backoff", "0.05")
    service = start(hook_env(sb), *args)
    sb.subscribe(service.url + "/webhook")
    ids = send(sb, sb.phone_number_ids[0], 3, "k")
    assert sb.flush_webhooks(HARD)
    assert {r.outcome for r in sb.webhooks()} == {"delivered"}  # every POST answered 200
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(HARD)
    service.http.close()

    a.status = 200
    service = start(hook_env(sb), *args)
    try:
        got = a.wait_for(SECRET_A, 9)
        time.sleep(0.3)
        assert len(a.forwards(SECRET_A)) == 9
        assert len({f["key"] for f in got}) == 9
        delivered = [(r.message_id, r.status) for r in sb.webhooks()]
        assert order(got) == [d for d in delivered if d[0] in ids]
    finally:
        service.stop()


def test_a_route_down_for_a_while_loses_nothing_and_blocks_no_other(tmp_path, sb, receivers):
    """Route a answers 503 while route b receives all its events; once a is back, it gets
    every one of its own, in order; `wa-auth webhook list` showed them pending meanwhile."""
    a, b = receivers
    path = config(tmp_path / "routes.toml", a, b, sb)
    queue = str(tmp_path / "queue.db")
    a.status = 503
    args = ("--webhook-queue", queue, "--webhook-config", str(path), "--forward-backoff", "0.05")
    service = start(hook_env(sb), *args)
    try:
        sb.subscribe(service.url + "/webhook")
        first, second = sb.phone_number_ids[:2]
        ids_a = send(sb, first, 3, "a")
        send(sb, second, 3, "b")
        assert sb.flush_webhooks(HARD)
        b.wait_for(SECRET_B, 9)
        assert a.forwards(SECRET_A) == []
        listing = subprocess.run(
            [sys.executable, "-m", "wa_auth", "webhook", "list", "--queue", queue],
            env=env_for(None),
            capture_output=True,
            text=True,
            timeout=HARD,
            check=False,
        )
        assert listing.returncode == 0, listing.stderr
        rows = [json.loads(line) for line in listing.stdout.splitlines()]
        pending = [row for row in rows if row.get("route_id") == "config:a"]
        assert pending
        assert all(row["state"] == "pending" for row in pending)

        a.status = 200
        got = a.wait_for(SECRET_A, 9)
        delivered = [(r.message_id, r.status) for r in sb.webhooks()]
        assert order(got) == [d for d in delivered if d[0] in ids_a]
    finally:
        service.stop()


def test_a_bad_route_file_is_refused_at_start_naming_the_line(tmp_path, sb):
    """A route without a secret stops serve before it listens, naming the file's line."""
    path = tmp_path / "routes.toml"
    path.write_text(
        '[[routes]]\nname = "a"\nurl = "http://127.0.0.1:1/x"\n\n'
        '[[routes]]\nname = "b"\nurl = "ftp://nope"\nsecret_env = "ROUTE_B_SECRET"\n',
        encoding="utf-8",
    )
    run = subprocess.run(
        [sys.executable, "-m", "wa_auth", "serve", "--port", "0", "--webhook-config", str(path)],
        env=hook_env(sb, WA_AUTH_WEBHOOK_QUEUE=str(tmp_path / "q.db")),
        capture_output=True,
        text=True,
        timeout=HARD,
        check=False,
    )
    assert run.returncode != 0
    assert "line 1" in run.stdout + run.stderr
    assert "secret" in run.stdout + run.stderr
    assert KEY not in run.stdout + run.stderr


def signed(sb: Sandbox, body: bytes) -> dict[str, str]:
    digest = hmac.new(sb.app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def webhook_cli(*args: str) -> list[dict[str, Any]]:
    run = subprocess.run(
        [sys.executable, "-m", "wa_auth", "webhook", *args],
        env=env_for(None),
        capture_output=True,
        text=True,
        timeout=HARD,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return [valid(json.loads(line)) for line in run.stdout.splitlines()]


def test_dead_letters_are_listed_and_replayed(tmp_path, sb, receivers):
    """A forward whose last attempt failed is a dead letter (`list --failed`); `replay` puts
    it back and the running serve delivers it once the route is up."""
    a, b = receivers
    path = config(tmp_path / "routes.toml", a, b, sb)
    queue = str(tmp_path / "queue.db")
    a.status = 500
    args = ("--webhook-config", str(path), "--forward-attempts", "2", "--forward-backoff", "0.05")
    service = start(hook_env(sb, WA_AUTH_WEBHOOK_QUEUE=queue), *args)
    try:
        sb.subscribe(service.url + "/webhook")
        send(sb, sb.phone_number_ids[0], 1, "dead")
        assert sb.flush_webhooks(HARD)
        deadline = time.monotonic() + HARD
        while len(dead := webhook_cli("list", "--queue", queue, "--failed")) < 3:
            assert time.monotonic() < deadline, dead
            time.sleep(0.1)
        assert {row["route_id"] for row in dead} == {"config:a"}
        assert {row["attempts"] for row in dead} == {2}
        assert {row["last_error"] for row in dead} == {"the route answered HTTP 500"}

        a.status = 200
        (replayed,) = webhook_cli("replay", "--queue", queue)
        assert replayed["replayed"] == 3
        assert len(a.wait_for(SECRET_A, 3)) == 3
        assert webhook_cli("list", "--queue", queue, "--failed") == []
    finally:
        service.stop()


def test_a_delivery_that_cannot_be_stored_is_a_503(tmp_path, sb):
    """While another process holds the queue file's write lock past the busy timeout, a
    signed POST gets 503 (Meta delivers it again), never a 200; then 200 once it is free."""
    import sqlite3

    queue = str(tmp_path / "queue.db")
    service = start(hook_env(sb), "--webhook-queue", queue)
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    try:
        holder = sqlite3.connect(queue, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            refused = service.call(
                "POST", "/webhook", key=None, content=body, headers=signed(sb, body)
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert refused.status_code == 503
        assert refused.json()["error"]["category"] == "transient"
        stored = service.call("POST", "/webhook", key=None, content=body, headers=signed(sb, body))
        assert stored.status_code == 200
        assert stored.json()["ok"] is True
    finally:
        service.stop()


def test_a_late_131031_by_webhook_fails_the_row_and_pauses_the_number(tmp_path, sb):
    """A send through serve is accepted; the sandbox's late 131031 arrives signed at
    /webhook; serve applies it: the outbox row turns failed (account_state) and the number is
    paused, so the next send is refused without a request."""
    outbox = str(tmp_path / "outbox.db")
    service = start(hook_env(sb), "--outbox", outbox)
    try:
        sb.subscribe(service.url + "/webhook")
        sb.fail_late(131031)
        sent = service.call("POST", "/send", json={**text_intent("hi"), "idempotency_key": "o-1"})
        assert sent.json()["ok"] is True, sent.json()
        assert sb.flush_webhooks(HARD)
        deadline = time.monotonic() + HARD
        while True:
            rows = service.call("GET", "/outbox").json()["rows"]
            if rows[0]["state"] == "failed":
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.05)
        assert rows[0]["category"] == "account_state"
        before = len(sb.messages())
        paused = service.call(
            "POST", "/send", json={**text_intent("again"), "idempotency_key": "o-2"}
        )
        assert paused.json()["category"] == "account_state"
        assert len(sb.messages()) == before
        no_secret(service, sb, sent, paused)
    finally:
        service.stop()
