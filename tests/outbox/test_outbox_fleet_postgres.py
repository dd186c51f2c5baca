"""A fleet on one PostgreSQL outbox: real worker processes, SIGKILL, pauses, the sandbox.

Each worker is `tests/outbox/pg_worker.py` in its own interpreter, claiming from one schema of
the session's real PostgreSQL and sending to the sandbox of this test process, which records
every message by idempotency key. What is checked is what the issue promises: four workers
replaying one outbox send every intent exactly once, across three numbers, and leave a paused
number's intents unclaimed; a worker SIGKILLed at a random point loses nothing (after the
lease, each intent delivered exactly once or `maybe_delivered`, never sent twice); a killed
worker's claims go to the others once its lease lapses. `WA_AUTH_CRASH_TRIALS` sets the number
of kill trials (5 here; 20 in the long form).
"""

from __future__ import annotations

import bisect
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import wa_auth
from helpers import LONG
from pgserver import PostgresServer, find_bin
from wa_auth.guards import DELIVERED, MAYBE_DELIVERED, Guard
from wa_auth.intents import Intent
from wa_auth.outbox import PostgresOutbox
from wa_auth.pacing import Pause
from wa_auth.sandbox import Sandbox
from wa_auth.state import PostgresState

pytestmark = [pytest.mark.real_component("postgresql"), pytest.mark.once]

TO = "+15551234567"
WORKER = Path(__file__).with_name("pg_worker.py")
TRIALS = int(os.environ.get("WA_AUTH_CRASH_TRIALS", "20" if LONG else "5"))
#: Messages per second per number in the fleet test with Redis (the shared limiter's rate).
RATE = 60.0
#: The big run: intents, and each number's rate (high: the limiter is not what bounds it).
BIG_RUN = 5_000
BIG_RATE = 400.0
#: An hour later: every lease of a killed worker has lapsed.
LATER = 3600.0


@pytest.fixture
def schema() -> str:
    return f"f_{secrets.token_hex(6)}"


def _start(args: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


def _args(sb: Sandbox, token: str, dsn: str, schema: str, mode: str, **kw: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "dsn": dsn,
        "schema": schema,
        "base_url": sb.base_url,
        "token": token,
        "phone": sb.phone_number_id,
        **kw,
    }


def _sent(sb: Sandbox) -> Counter[str | None]:
    return Counter(m.idempotency_key for m in sb.messages())


def test_four_workers_send_every_intent_once_and_leave_a_paused_number_alone(postgres_dsn, schema):
    """Four worker processes drain 300 intents: each once, each number's in enqueue order, and
    none of the number paused until an operator lifts it (a pause without an end)."""
    with Sandbox(seed=41) as sb:
        sb.set_faults(latency=0.002)
        token = sb.issue_token()
        numbers = list(sb.phone_number_ids)[:2]
        paused = "999000111"  # a third number, paused until long after the run
        keys = {f"n{n}": [*numbers, paused][n % 3] for n in range(300)}
        with PostgresState(postgres_dsn, schema=schema) as state:
            state.pauses.put(
                Pause(
                    kind="pause",
                    phone_number_id=paused,
                    category="account_state",
                    since=time.time(),
                    until=None,
                )
            )
        with PostgresOutbox(postgres_dsn, schema=schema) as box:
            box.enqueue_many(
                Intent.text(TO, key, idempotency_key=key, phone_number_id=phone)
                for key, phone in keys.items()
            )
        leave = sum(1 for phone in keys.values() if phone == paused)
        procs = [
            _start(_args(sb, token, postgres_dsn, schema, "drain", batch=8, leave=leave))
            for _ in range(4)
        ]
        reports = [json.loads(_finish(p).splitlines()[-1]) for p in procs]
        sent = _sent(sb)
        by_number = Counter(m.phone_number_id for m in sb.messages())
        with PostgresOutbox(postgres_dsn, schema=schema) as box:
            rows = {r.idempotency_key: r for r in box.list()}
    expected = sorted(k for k, phone in keys.items() if phone != paused)
    assert sorted(sent) == expected  # every intent of a free number, none of the paused one
    assert set(sent.values()) == {1}  # none twice
    assert sum(r["delivered"] for r in reports) == len(expected)
    assert sum(1 for r in reports if r["delivered"]) >= 2  # the claims did not serialise
    assert set(by_number) == set(numbers)
    assert {rows[k].state for k in expected} == {DELIVERED}
    assert {r.state for k, r in rows.items() if keys[k] == paused} == {"pending"}
    for number in numbers:  # each number's intents reached the peer in enqueue order
        order = [int(m.idempotency_key[1:]) for m in sb.messages() if m.phone_number_id == number]
        assert order == sorted(order)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_worker_killed_at_a_random_point_never_loses_nor_duplicates(postgres_dsn, schema, trial):
    """SIGKILL during a replay, then a replay after the lease: each intent delivered once or
    maybe_delivered (a kill between its `sending` commit and its outcome's), none lost."""
    rng = random.Random(trial)
    keys = [f"t{trial}-{n}" for n in range(60)]
    later = lambda: time.time() + LATER  # noqa: E731
    with Sandbox(seed=trial) as sb:
        sb.set_faults(latency=0.004)
        token = sb.issue_token()
        with PostgresOutbox(postgres_dsn, schema=schema) as box:
            box.enqueue_many(Intent.text(TO, key, idempotency_key=key) for key in keys)
        proc = _start(_args(sb, token, postgres_dsn, schema, "replay", lease=5.0))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        with (
            PostgresOutbox(postgres_dsn, schema=schema, clock=later) as box,
            wa_auth.WhatsAppClient(
                base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id
            ) as client,
        ):
            box.replay(Guard(client, outbox=box, clock=later))
            rows = {r.idempotency_key: r for r in box.list()}
        sent = _sent(sb)
    assert sorted(rows) == sorted(keys)  # none lost
    assert max(sent.values()) == 1  # none sent twice
    assert {r.state for r in rows.values()} <= {DELIVERED, MAYBE_DELIVERED}
    for key, row in rows.items():
        if row.state == DELIVERED:
            assert sent[key] == 1
        else:  # the kill fell between this row's `sending` and its outcome's commit
            assert row.reason == "lease_expired"
            assert sent[key] <= 1


def test_a_killed_workers_claims_lapse_and_the_others_deliver_them(postgres_dsn, schema):
    keys = [f"l{n}" for n in range(50)]
    with Sandbox(seed=5) as sb:
        token = sb.issue_token()
        with PostgresOutbox(postgres_dsn, schema=schema) as box:
            box.enqueue_many(Intent.text(TO, key, idempotency_key=key) for key in keys)
        holder = _start(
            _args(sb, token, postgres_dsn, schema, "claim-and-hang", lease=30.0, limit=30)
        )
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
        assert held == keys[:30]
        with PostgresOutbox(postgres_dsn, schema=schema) as box:  # the dead worker's leases hold
            assert box.claim(100) == []  # ... and its number: the later intents wait (order)
        workers = [
            _start(_args(sb, token, postgres_dsn, schema, "drain", batch=5, clock_offset=60.0))
            for _ in range(2)
        ]
        for proc in workers:
            _finish(proc)
        sent = _sent(sb)
    assert sorted(sent) == sorted(keys)
    assert set(sent.values()) == {1}


def test_a_plain_exit_commits_the_outcomes_still_waiting(postgres_dsn, schema):
    """Outcomes deferred for 30 s and a process that ends without close(): the writer thread
    commits them at the interpreter's exit, so no delivered row is left in sending."""
    keys = [f"e{n}" for n in range(5)]
    with Sandbox(seed=6) as sb:
        token = sb.issue_token()
        args = _args(sb, token, postgres_dsn, schema, "send-and-exit", keys=keys)
        proc = _start({**args, "flush_interval": 30.0})
        assert _finish(proc).strip() == "sent"
        assert _sent(sb) == dict.fromkeys(keys, 1)
    with PostgresOutbox(postgres_dsn, schema=schema) as box:
        assert {r.idempotency_key: r.state for r in box.list()} == dict.fromkeys(keys, DELIVERED)


@pytest.fixture
def own_server(require_component):
    bindir = find_bin()
    if bindir is None:
        require_component("postgresql", "initdb/pg_ctl not found (apt-get install postgresql)")
    server = PostgresServer(bindir).init()
    yield server
    server.close()


def test_a_server_restart_mid_run_loses_nothing_and_sends_nothing_twice(own_server):
    """Four workers drain 300 intents; the server stops and starts again under them. After
    the lease, every intent is delivered exactly once or `maybe_delivered` (its outcome was
    lost with the connection), none lost, none sent twice."""
    dsn, schema = own_server.dsn, "wa_auth"
    keys = [f"r{n}" for n in range(300)]
    later = lambda: time.time() + LATER  # noqa: E731
    with Sandbox(seed=9) as sb:
        sb.set_faults(latency=0.01)
        token = sb.issue_token()
        with PostgresOutbox(dsn, schema=schema) as box:
            box.enqueue_many(Intent.text(TO, key, idempotency_key=key) for key in keys)
        procs = [
            _start(_args(sb, token, dsn, schema, "drain", batch=4, lease=5.0)) for _ in range(4)
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        while len(sb.messages()) < 40:
            time.sleep(0.02)
        own_server.stop()
        time.sleep(0.5)
        own_server.start()
        reports = [json.loads(_finish(p).splitlines()[-1]) for p in procs]
        with (
            PostgresOutbox(dsn, schema=schema, clock=later) as box,
            wa_auth.WhatsAppClient(
                base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id
            ) as client,
        ):
            box.replay(Guard(client, outbox=box, clock=later))  # what the outage left
            rows = {r.idempotency_key: r for r in box.list()}
        sent = _sent(sb)
    assert sum(r["outages"] for r in reports) >= 1  # the workers did see the outage
    assert sorted(rows) == sorted(keys)  # none lost
    assert max(sent.values()) == 1  # none sent twice
    assert {r.state for r in rows.values()} <= {DELIVERED, MAYBE_DELIVERED}
    for key, row in rows.items():
        if row.state == DELIVERED:
            assert sent[key] == 1


@pytest.mark.real_component("redis")
def test_the_fleet_with_redis_a_revoked_token_and_a_rotation(
    postgres_dsn, schema, redis_url, tmp_path
):
    """Four workers on one PostgreSQL outbox with the Redis stores, 400 intents over two
    numbers; the token is revoked mid-run and a fresh one written to the token file: every
    intent delivered exactly once, after the first refusal of the dead token at most one more
    request with it per worker (the shared verdict stops the others), and no number sent more
    than its rate in any second (the shared limiter)."""
    from wa_auth._redact import fingerprint

    with Sandbox(seed=11) as sb:
        sb.set_faults(latency=0.003)
        numbers = list(sb.phone_number_ids)[:2]
        keys = {f"z{n}": numbers[n % 2] for n in range(400)}
        old = sb.issue_token()
        token_file = tmp_path / "token"
        token_file.write_text(old, encoding="utf-8")
        with PostgresOutbox(postgres_dsn, schema=schema) as box:
            box.enqueue_many(
                Intent.text(TO, key, idempotency_key=key, phone_number_id=phone)
                for key, phone in keys.items()
            )
        args = {
            "mode": "fleet",
            "dsn": postgres_dsn,
            "schema": schema,
            "redis": redis_url,
            "base_url": sb.base_url,
            "phone": sb.phone_number_id,
            "token_file": str(token_file),
            "rate": RATE,
            "expect": len(keys),
        }
        procs = [_start(args) for _ in range(4)]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        while len(sb.messages()) < 100:
            time.sleep(0.02)
        sb.set_token_state(old, "revoked_deauthorized")
        time.sleep(0.5)  # the workers learn it: one refusal, a verdict on Redis
        fresh = sb.issue_token()
        replacement = tmp_path / "token.new"
        replacement.write_text(fresh, encoding="utf-8")
        replacement.replace(token_file)  # an atomic rotation
        reports = [json.loads(_finish(p).splitlines()[-1]) for p in procs]
        sent = _sent(sb)
        arrivals = {
            n: sorted(m.at for m in sb.messages() if m.phone_number_id == n) for n in numbers
        }
        dead = fingerprint(old)
        refused = [r for r in sb.requests() if r.token_fingerprint == dead and r.outcome == "error"]
        with PostgresOutbox(postgres_dsn, schema=schema) as box:
            states = Counter(r.state for r in box.list())
    assert sorted(sent) == sorted(keys)  # none lost
    assert set(sent.values()) == {1}  # none twice
    assert states == {DELIVERED: len(keys)}
    assert sum(r["delivered"] for r in reports) == len(keys)
    assert refused, "the revocation was never seen"
    after_first = [
        r for r in sb.requests() if r.token_fingerprint == dead and r.seq > refused[0].seq
    ]
    assert len(after_first) <= 4  # one per worker at most, in flight when the verdict came
    for times in arrivals.values():  # no number over its limit: the four workers share it
        busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
        assert busiest <= RATE * 1.1 + 3, busiest


@pytest.mark.real_component("redis")
def test_the_fleet_through_a_kill_a_restart_and_a_rotation(own_server, redis_url, tmp_path):
    """The big run: four workers with the Redis stores drain 5,000 intents over three phone
    numbers (a sandbox with `phone_numbers=3`; each intent names its number) while one worker
    is SIGKILLed, PostgreSQL restarts, and the token is revoked and a fresh one rotated in.
    Afterwards none lost, none sent twice (a `maybe_delivered` row, cut off by the kill or the
    restart, at most once), each number's deliveries in enqueue order up to the revocation,
    no number over its rate in any second, and after the first refusal of the dead token at
    most one more request with it per worker."""
    from wa_auth._redact import fingerprint

    with Sandbox(seed=12, phone_numbers=3) as sb:
        sb.set_faults(latency=0.002)
        numbers = list(sb.phone_number_ids)
        assert len(numbers) == 3
        keys = {f"k{n}": numbers[n % len(numbers)] for n in range(BIG_RUN)}
        old = sb.issue_token()
        token_file = tmp_path / "token"
        token_file.write_text(old, encoding="utf-8")
        with PostgresOutbox(own_server.dsn) as box:
            box.enqueue_many(
                Intent.text(TO, key, idempotency_key=key, phone_number_id=phone)
                for key, phone in keys.items()
            )
        args = {
            "mode": "fleet",
            "dsn": own_server.dsn,
            "schema": "wa_auth",
            "redis": redis_url,
            "base_url": sb.base_url,
            "phone": sb.phone_number_id,
            "token_file": str(token_file),
            "rate": BIG_RATE,
            "expect": len(keys),
            "lease": 3.0,
        }
        procs = [_start(args) for _ in range(4)]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"

        def wait_for(count: int) -> None:
            while len(sb.messages()) < count:
                time.sleep(0.02)

        wait_for(BIG_RUN // 5)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].communicate(timeout=60)
        wait_for(2 * BIG_RUN // 5)
        own_server.stop()
        time.sleep(0.5)
        own_server.start()
        wait_for(3 * BIG_RUN // 5)
        sb.set_token_state(old, "revoked_deauthorized")
        time.sleep(0.5)  # the workers learn it: one refusal, a verdict on Redis
        fresh = tmp_path / "token.new"
        fresh.write_text(sb.issue_token(), encoding="utf-8")
        fresh.replace(token_file)  # an atomic rotation
        for proc in procs[1:]:
            _finish(proc)
        sent = _sent(sb)
        messages = sb.messages()
        dead = fingerprint(old)
        refused = [r for r in sb.requests() if r.token_fingerprint == dead and r.outcome == "error"]
        after_first = [
            r
            for r in sb.requests()
            if r.token_fingerprint == dead and refused and r.seq > refused[0].seq
        ]
        with PostgresOutbox(own_server.dsn) as box:
            rows = {r.idempotency_key: r for r in box.list()}
    assert sorted(rows) == sorted(keys)  # none lost
    assert max(sent.values()) == 1  # none sent twice
    assert {r.state for r in rows.values()} <= {DELIVERED, MAYBE_DELIVERED}
    for key, row in rows.items():
        assert sent[key] == (1 if row.state == DELIVERED else sent[key])
    maybe = sum(1 for r in rows.values() if r.state == MAYBE_DELIVERED)
    assert maybe <= 12  # one per worker at the kill and the restart, and a few in flight
    assert refused, "the revocation was never seen"
    assert len(after_first) <= 4  # one per worker at most, in flight when the verdict came
    revoked_at = refused[0].at
    assert Counter(m.phone_number_id for m in messages).keys() == set(numbers)
    for number in numbers:
        # Each number's intents in enqueue order through the kill and the restart. (From the
        # revocation on, an intent the dead token failed goes out after those behind it.)
        order = [
            int(m.idempotency_key[1:])
            for m in messages
            if m.phone_number_id == number and m.at < revoked_at
        ]
        assert order == sorted(order)
        times = sorted(m.at for m in messages if m.phone_number_id == number)
        busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
        assert busiest <= BIG_RATE * 1.1 + 3, busiest  # the shared limiter held
