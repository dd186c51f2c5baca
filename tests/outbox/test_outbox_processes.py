"""Real processes on one outbox file: SIGKILL at random points, four workers, a dead lease.

Each worker is `tests/outbox/worker.py` in its own interpreter, sending to the sandbox of this
test process. What is checked is what the issue promises: after a kill and a replay every
intent is delivered exactly once (the sandbox's record by idempotency key) or reported
`maybe_delivered`, never lost and never silently sent twice; four workers claiming from one
file never send the same intent twice; a killed worker's leases lapse and its intents are
delivered by the others. `WA_AUTH_CRASH_TRIALS` sets the number of kill trials (5 here; the
long form is 20 or more).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import wa_auth
from helpers import LONG, record_reliability
from wa_auth.guards import DELIVERED, MAYBE_DELIVERED, Guard
from wa_auth.intents import Intent
from wa_auth.outbox import SENDING, SqliteOutbox
from wa_auth.sandbox import Sandbox

TO = "+15551234567"
WORKER = Path(__file__).with_name("worker.py")
TRIALS = int(os.environ.get("WA_AUTH_CRASH_TRIALS", "20" if LONG else "5"))
#: An hour later: every lease of a killed worker has lapsed.
LATER = 3600.0


def _start(args: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out


def _args(sb: Sandbox, token: str, db: Path, mode: str, **kw: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "db": str(db),
        "base_url": sb.base_url,
        "token": token,
        "phone": sb.phone_number_id,
        "to": TO,
        **kw,
    }


def _sent(sb: Sandbox) -> Counter[str | None]:
    return Counter(m.idempotency_key for m in sb.messages())


def _replay_later(sb: Sandbox, token: str, db: Path) -> None:
    """Reopen the file an hour later (leases lapsed) and replay what is replayable."""
    later = lambda: time.time() + LATER  # noqa: E731
    with (
        SqliteOutbox(db, clock=later) as box,
        wa_auth.WhatsAppClient(
            base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id
        ) as client,
    ):
        box.replay(Guard(client, outbox=box, clock=later))


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_worker_killed_at_a_random_point_never_loses_nor_duplicates(tmp_path, trial):
    """SIGKILL during a batch, then a replay: each intent delivered once or maybe_delivered
    (a kill between its `sending` commit and its outcome's), none lost, none sent twice."""
    rng = random.Random(trial)
    db = tmp_path / "outbox.db"
    keys = [f"t{trial}-{n}" for n in range(60)]
    with Sandbox(seed=trial) as sb:
        sb.set_faults(latency=0.004)
        token = sb.issue_token()
        with SqliteOutbox(db) as box:
            box.enqueue_many(Intent.text(TO, key, idempotency_key=key) for key in keys)
        proc = _start(_args(sb, token, db, "replay", lease=5.0))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        kill_after = rng.uniform(0.0, 0.3)
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        _replay_later(sb, token, db)
        sent = _sent(sb)
        with SqliteOutbox(db, clock=lambda: time.time() + LATER) as box:
            rows = {r.idempotency_key: r for r in box.list()}
    assert sorted(rows) == sorted(keys)  # none lost
    assert max(sent.values()) == 1  # none sent twice
    states = Counter(r.state for r in rows.values())
    record_reliability(
        "crash",
        {
            "intents": len(keys),
            "killed_after_s": round(kill_after, 3),
            "states": dict(states),
            "lost": len(set(keys) - set(rows)),
            "duplicated": sum(1 for count in sent.values() if count > 1),
            "maybe_delivered_reached_meta": sum(
                1 for k, r in rows.items() if r.state == MAYBE_DELIVERED and sent[k]
            ),
        },
    )
    assert set(states) <= {DELIVERED, MAYBE_DELIVERED}, states
    for key, row in rows.items():
        if row.state == DELIVERED:
            assert sent[key] == 1
            assert row.message_id is not None
        else:  # the kill fell between this row's `sending` and its outcome's commit
            assert row.reason == "lease_expired"
            # 1: Meta accepted it and the kill came before its outcome was committed; 0: the
            # kill came before the request reached Meta. Never 2: the replay left it alone.
            assert sent[key] <= 1


def test_four_workers_on_one_file_never_send_an_intent_twice(tmp_path):
    """Four processes replaying 200 intents from one file (small claims, so they interleave):
    every intent delivered exactly once."""
    db = tmp_path / "outbox.db"
    keys = [f"c{n}" for n in range(200)]
    with Sandbox(seed=4) as sb:
        sb.set_faults(latency=0.002)
        token = sb.issue_token()
        with SqliteOutbox(db) as box:
            box.enqueue_many(Intent.text(TO, key, idempotency_key=key) for key in keys)
        procs = [_start(_args(sb, token, db, "replay", batch=5)) for _ in range(4)]
        reports = [json.loads(_finish(p).splitlines()[-1]) for p in procs]
        sent = _sent(sb)
        with SqliteOutbox(db) as box:
            stats = box.stats()
    assert sorted(sent) == sorted(keys)
    assert set(sent.values()) == {1}
    assert sum(r["by_state"]["delivered"] for r in reports) == 200
    assert stats.by_state[DELIVERED] == 200


def test_a_killed_workers_leases_lapse_and_the_others_deliver_its_intents(tmp_path):
    """A worker claims 30 rows and is killed: nobody may take them until the lease lapses;
    then two other workers deliver every intent exactly once."""
    db = tmp_path / "outbox.db"
    keys = [f"l{n}" for n in range(50)]
    with Sandbox(seed=5) as sb:
        token = sb.issue_token()
        with SqliteOutbox(db) as box:
            box.enqueue_many(Intent.text(TO, key, idempotency_key=key) for key in keys)
        holder = _start(_args(sb, token, db, "claim-and-hang", lease=30.0, limit=30))
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
        assert held == keys[:30]
        with SqliteOutbox(db) as box:  # now: the dead worker's leases still hold
            # ... and hold the number: its later intents wait (per-number order)
            assert box.claim(100) == []
        workers = [
            _start(_args(sb, token, db, "replay", batch=5, clock_offset=60.0)) for _ in range(2)
        ]
        for proc in workers:
            _finish(proc)
        sent = _sent(sb)
    assert sorted(sent) == sorted(keys)
    assert set(sent.values()) == {1}


def test_a_plain_exit_commits_the_outcomes_still_waiting(tmp_path):
    """Outcomes deferred for 30 s and a process that ends without close(): the writer thread
    commits them at the interpreter's exit, so no delivered row is left in sending."""
    db = tmp_path / "outbox.db"
    keys = [f"e{n}" for n in range(5)]
    with Sandbox(seed=6) as sb:
        token = sb.issue_token()
        proc = _start(_args(sb, token, db, "send-and-exit", keys=keys, flush_interval=30.0))
        assert _finish(proc).strip() == "sent"
        assert _sent(sb) == dict.fromkeys(keys, 1)
    with SqliteOutbox(db) as box:
        assert {r.idempotency_key: r.state for r in box.list()} == dict.fromkeys(keys, DELIVERED)


def test_a_kill_between_the_answers_and_the_deferred_outcomes_loses_nothing(tmp_path):
    """SIGKILL after Meta answered but before the deferred outcomes were committed.

    Each intent's `sending` was committed by itself before its request went out; its outcome
    waited for company (30 s here) and died with the process. Recovery treats those rows as
    it treats any worker that died mid-send: once the lease lapses they are
    `maybe_delivered` (`lease_expired`), and a replay leaves them alone, so nothing Meta
    accepted is sent twice; only `include_maybe_delivered=True` would send them again.
    """
    db = tmp_path / "outbox.db"
    keys = [f"h{n}" for n in range(5)]
    with Sandbox(seed=7) as sb:
        token = sb.issue_token()
        proc = _start(_args(sb, token, db, "send-and-hang", keys=keys, flush_interval=30.0))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "sent"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert _sent(sb) == dict.fromkeys(keys, 1)  # Meta accepted each once
        with SqliteOutbox(db) as box:  # the lease is still running: left to its worker
            assert {r.idempotency_key: r.state for r in box.list()} == dict.fromkeys(keys, SENDING)
        _replay_later(sb, token, db)  # an hour later: the lease lapsed
        with SqliteOutbox(db, clock=lambda: time.time() + LATER) as box:
            rows = {r.idempotency_key: r for r in box.list()}
        assert _sent(sb) == dict.fromkeys(keys, 1)  # the replay sent none of them again
    assert {k: (r.state, r.reason) for k, r in rows.items()} == dict.fromkeys(
        keys, (MAYBE_DELIVERED, "lease_expired")
    )


def test_a_forked_child_uses_the_file_with_its_own_connection_and_owner(tmp_path):
    """After fork(), the child's outbox opens its own connection and leases under its own name."""
    db = tmp_path / "outbox.db"
    with SqliteOutbox(db) as box:
        box.enqueue(Intent.text(TO, "parent", idempotency_key="p"))
        parent_owner = box.owner
        read, write = os.pipe()
        with warnings.catch_warnings():  # 3.12+ warns of fork() with threads; this is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            try:
                box.enqueue(Intent.text(TO, "child", idempotency_key="c"))
                claimed = [r.idempotency_key for r in box.claim()]
                os.write(write, json.dumps([box.owner, claimed]).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            child_owner, claimed = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert child_owner != parent_owner
        assert claimed == ["p", "c"]
        assert box.claim() == []  # leased to the child
        assert {r.idempotency_key for r in box.list()} == {"p", "c"}
