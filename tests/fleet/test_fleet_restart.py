"""Fleet mode with real processes: Redis killed and restarted under them, and rotation races.

The workers are `tests/fleet_worker.py` processes (the `fleet` fixture of `conftest.py`) sending
to the embedded sandbox, which counts every request and the token it carried. Redis is the
session's real `redis-server`, killed (`SIGKILL`: its keys are gone) and started again on the
same port while the workers run.
"""

from __future__ import annotations

import itertools
import time

import pytest

from wa_auth.providers import Token
from wa_auth.sandbox import Sandbox

pytestmark = [pytest.mark.real_component("redis"), pytest.mark.once]

TO = "+15551234567"


def _with(sb: Sandbox, token: str) -> int:
    fingerprint = Token(token).fingerprint
    return sum(1 for r in sb.requests() if r.token_fingerprint == fingerprint)


def test_redis_killed_and_restarted_under_running_workers(fleet, redis_server):
    """Down: each worker falls back (local verdict, local pause, a share of the rate); back:
    what they learned meanwhile reaches every worker, and nothing is sent with the dead token.
    """
    sb, token, start = fleet
    a, b, c = start(3)
    number = sb.phone_number_id
    assert a.ask(op="send", to=TO)["state"] == "delivered"

    redis_server.stop()
    try:
        for worker in (a, b, c):
            assert worker.ask(op="wait_synced", synced=False) == {"ok": True}
        # C learns the account is locked: its guard pauses the number, for itself only.
        sb.set_account_state("locked")
        assert c.ask(op="send", to=TO)["error"] == "AccountStateError"
        sb.set_account_state("ok")
        # A learns the token is dead: its verdict stays in its own copy.
        sb.set_token_state(token, "revoked_password_changed")
        assert a.ask(op="send", to=TO)["error"] == "TokenRevokedError"
        dead_requests = _with(sb, token)
        assert a.ask(op="send", to=TO)["error"] == "TokenRevokedError"
        assert _with(sb, token) == dead_requests  # refused from its local copy
        assert a.ask(op="fallbacks")["verdicts"] >= 1
        assert c.ask(op="fallbacks")["pauses"] >= 1
        # B's limiter takes its share of the rate (10 / 2 workers), never unlimited.
        reserved = b.ask(
            op="reserve", n=4, rate=10.0, recipient=None, pair_interval=None, expected_workers=2
        )
        assert reserved["fallbacks"] == 4
        slots = sorted(tuple(slot) for slot in reserved["slots"])
        gaps = [later[1] - earlier[0] for earlier, later in itertools.pairwise(slots)]
        assert min(gaps) >= 0.2 - 0.01, gaps
    finally:
        redis_server.start()

    for worker in (a, b, c):
        assert worker.ask(op="wait_synced", synced=True) == {"ok": True}
    # What A and C learned while Redis was down is the fleet's now.
    fingerprint = Token(token).fingerprint
    for worker in (b, c):
        assert worker.ask(op="wait_verdict", fp=fingerprint) == {"seen": True}
    for worker in (a, b):
        assert worker.ask(op="wait_pause", number=number, present=True) == {"ok": True}
    assert b.ask(op="send", to=TO)["attempts"] == 0  # paused: nothing asked of Meta
    # B resumes for the fleet; the verdict still refuses the dead token everywhere.
    assert b.ask(op="resume", number=number) == {"ok": True}
    for worker in (a, c):
        cleared = worker.ask(op="wait_pause", number=number, present=False)
        assert cleared == {"ok": True}, [w.ask(op="fallbacks") for w in (a, b, c)]
    answers = [worker.ask(op="send", to=TO) for worker in (a, b, c)]
    assert all(answer["error"] == "TokenRevokedError" for answer in answers), answers
    assert _with(sb, token) == dead_requests  # not one request more with the dead token


def test_redis_killed_while_workers_send_nothing_is_lost_or_sent_twice(fleet, redis_server):
    """Two workers send 40 messages each, paced by the fleet's limiter, while Redis is killed
    and started again: every message is delivered once, the limiter fell back meanwhile."""
    sb, _token, start = fleet
    workers = start(2)
    before = len(sb.messages())
    for i, worker in enumerate(workers):
        worker.tell(op="send_many", n=40, rate=20.0, to=TO, key=f"w{i}")
    time.sleep(1.0)
    redis_server.stop()
    try:
        time.sleep(1.0)
    finally:
        redis_server.start()
    answers = [worker.read() for worker in workers]

    assert [answer["states"] for answer in answers] == [{"delivered": 40}] * 2, answers
    keys = [m.idempotency_key for m in sb.messages()[before:]]
    assert sorted(keys) == sorted(f"w{i}-{n}" for i in range(2) for n in range(40))
    assert sum(answer["fallbacks"] for answer in answers) > 0  # Redis died mid-run


def test_a_promotion_by_one_process_is_what_the_others_send_with(fleet):
    """A promotes candidate 1: B and C send their next message with it."""
    sb, _token, start = fleet
    tokens = [sb.issue_token() for _ in range(3)]
    a, b, c = start(3, tokens=tokens)
    assert b.ask(op="send", to=TO)["state"] == "delivered"
    assert _with(sb, tokens[0]) == 1

    assert a.ask(op="rotate", index=1, at=0) == {"fp": Token(tokens[1]).fingerprint}
    for worker in (b, c):
        assert worker.ask(op="wait_rotation", version=1) == {"ok": True}
        assert worker.ask(op="send", to=TO)["state"] == "delivered"
    assert _with(sb, tokens[1]) == 2
    assert _with(sb, tokens[0]) == 1


@pytest.mark.parametrize("round_", range(3))
def test_two_processes_racing_to_promote_end_with_one_winner(fleet, round_):
    """A promotes 1 while B promotes 2 at the same instant: both send with the one winner."""
    sb, _token, start = fleet
    tokens = [sb.issue_token() for _ in range(3)]
    a, b = start(2, tokens=tokens)
    at = time.time() + 0.5
    a.tell(op="rotate", index=1, at=at)
    b.tell(op="rotate", index=2, at=at)
    got = [a.read(), b.read()]

    assert got[0] == got[1], got  # the loser returns the winner's token
    winner = got[0]["fp"]
    assert winner in {Token(tokens[1]).fingerprint, Token(tokens[2]).fingerprint}
    before = len(sb.requests())
    assert a.ask(op="send", to=TO)["state"] == "delivered"
    assert b.ask(op="send", to=TO)["state"] == "delivered"
    sent = [r.token_fingerprint for r in sb.requests()[before:]]
    assert sent == [winner, winner]
