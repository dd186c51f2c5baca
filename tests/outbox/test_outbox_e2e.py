"""The outbox end to end: a guard and a SqliteOutbox file against the sandbox (real sockets).

Replays follow every rule (not_before, a new token for token failures, dead letters, deadlines,
max_age, maybe_delivered only when asked), each intent is delivered at most once (the sandbox
records every accepted message by its idempotency key), and no token reaches a row, a log or
an export. The guard's and the outbox's wall clock is one fake clock, so hours pass at once.
"""

from __future__ import annotations

import io
import logging
from collections import Counter as Tally

import pytest

import wa_auth
from helpers import Clock
from wa_auth.events import Events, MessageDelivered, MessageExpired
from wa_auth.guards import DELIVERED, EXPIRED, FAILED, MAYBE_DELIVERED, QUEUED, Guard
from wa_auth.intents import Intent
from wa_auth.outbox import PENDING, SqliteOutbox
from wa_auth.providers import Token
from wa_auth.sandbox import Sandbox

TO = "+15551234567"


class Swappable:
    """A provider whose token an operator replaces (a rotation), as a file provider would."""

    def __init__(self, value: str) -> None:
        self.token = Token(value)

    def get_token(self) -> Token:
        return self.token

    async def aget_token(self) -> Token:
        return self.token

    def invalidate(self, token: Token, reason: object) -> None:
        """A dead token stays until the operator rotates it."""


@pytest.fixture
def sandbox():
    with Sandbox(seed=12) as sb:
        yield sb


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(tmp_path, clock):
    with SqliteOutbox(tmp_path / "outbox.db", clock=clock.wall) as outbox:
        yield outbox


def _client(sb: Sandbox, token: str | Swappable, **kw):
    key = "token" if isinstance(token, str) else "token_provider"
    return wa_auth.WhatsAppClient(
        base_url=sb.base_url, phone_number_id=sb.phone_number_id, **{key: token}, **kw
    )


def _guard(client, clock: Clock, box: SqliteOutbox, **kw) -> Guard:
    return Guard(
        client,
        outbox=box,
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        asleep=clock.asleep,
        seed=5,
        **kw,
    )


def _sent(sb: Sandbox) -> Tally[str | None]:
    """Accepted messages per idempotency key."""
    return Tally(m.idempotency_key for m in sb.messages())


def test_a_queued_intent_is_replayed_after_its_not_before_only(sandbox, clock, box):
    """131048 (hours): queued with not_before; a replay before it sends nothing, after it delivers."""
    sandbox.fail_next(131048)
    with _client(sandbox, sandbox.issue_token()) as client:
        guard = _guard(client, clock, box)
        first = guard.send(Intent.text(TO, "capped", idempotency_key="cap-1"))
        assert (first.state, box.get("cap-1").state) == (QUEUED, QUEUED)
        assert box.replay(guard).deliveries == ()
        assert len(sandbox.requests()) == 1
        clock.t = first.not_before - clock.wall() + clock.t + 1
        report = box.replay(guard)
    assert [d.state for d in report.deliveries] == [DELIVERED]
    row = box.get("cap-1")
    assert (row.state, row.attempts) == (DELIVERED, 2)
    assert row.message_id == sandbox.messages()[0].id
    assert _sent(sandbox) == {"cap-1": 1}


@pytest.mark.anyio
async def test_a_token_revoked_mid_batch_is_replayed_once_after_rotation(sandbox, clock, box):
    """Revoked after 20 of 100: the rest are failed/token_revoked in the file; a replay with the
    same token sends nothing, and after rotation it delivers each of them exactly once."""
    dead, fresh = sandbox.issue_token(), sandbox.issue_token()
    provider = Swappable(dead)
    delivered = 0

    def revoke_after_twenty(event: object) -> None:
        nonlocal delivered
        if isinstance(event, MessageDelivered):
            delivered += 1
            if delivered == 20:
                sandbox.set_token_state(dead, "revoked_password_changed")

    async with wa_auth.FastAsyncWhatsAppClient(
        base_url=sandbox.base_url,
        token_provider=provider,
        phone_number_id=sandbox.phone_number_id,
        events=Events(revoke_after_twenty),
    ) as client:
        guard = _guard(client, clock, box)
        intents = [Intent.text(TO, f"m{n}", idempotency_key=f"m{n}") for n in range(100)]
        deliveries = await guard.asend_many(intents, concurrency=8)
        failed = {d.intent.idempotency_key for d in deliveries if d.state == FAILED}
        assert failed
        assert len(failed) + sum(d.ok for d in deliveries) == 100
        rows = [box.get(key) for key in failed]
        assert {(r.state, r.category, r.token_fingerprint) for r in rows} == {
            (FAILED, "token_revoked", Token(dead).fingerprint)
        }
        before = len(sandbox.requests())
        assert (await box.areplay(guard)).deliveries == ()  # the provider still hands out `dead`
        assert len(sandbox.requests()) == before
        provider.token = Token(fresh)
        report = await box.areplay(guard, concurrency=16)
    assert {d.intent.idempotency_key for d in report.deliveries} == failed
    assert report.count(DELIVERED) == len(failed)
    assert set(_sent(sandbox).values()) == {1}
    assert set(_sent(sandbox)) == {f"m{n}" for n in range(100)}
    assert box.stats().by_state[DELIVERED] == 100


def test_an_invalid_request_is_a_dead_letter_never_replayed(sandbox, clock, box):
    """131009: failed/invalid_request, listed and exported for an operator, never sent again."""
    sandbox.fail_next(131009)
    with _client(sandbox, sandbox.issue_token()) as client:
        guard = _guard(client, clock, box)
        assert guard.send(Intent.text(TO, "bad", idempotency_key="bad-1")).state == FAILED
        before = len(sandbox.requests())
        assert box.replay(guard).deliveries == ()
        assert len(sandbox.requests()) == before
    assert [r.idempotency_key for r in box.dead_letters()] == ["bad-1"]
    out = io.StringIO()
    assert box.export_dead_letters(out) == 1
    assert '"code":131009' in out.getvalue()


def test_past_its_deadline_or_max_age_an_intent_expires_unsent(tmp_path, sandbox, clock):
    """not_after passed, or older than the outbox's max_age: expired, an event, no request."""
    expired_events: list[MessageExpired] = []
    with SqliteOutbox(tmp_path / "o.db", clock=clock.wall, max_age=4 * 3600) as box:
        now = clock.wall()
        box.enqueue(Intent.text(TO, "code 1234", idempotency_key="otp", not_after=now + 60))
        box.enqueue(Intent.text(TO, "old news", idempotency_key="old", created_at=now - 5 * 3600))
        box.enqueue(Intent.text(TO, "fine", idempotency_key="ok", created_at=now))
        clock.t += 120
        events = Events(
            lambda e: expired_events.append(e) if isinstance(e, MessageExpired) else None
        )
        with _client(sandbox, sandbox.issue_token(), events=events) as client:
            report = box.replay(_guard(client, clock, box))
        states = {d.intent.idempotency_key: (d.state, d.reason) for d in report.deliveries}
        assert states == {
            "otp": (EXPIRED, "deadline"),
            "old": (EXPIRED, "max_age"),
            "ok": (DELIVERED, None),
        }
        assert box.get("otp").state == box.get("old").state == EXPIRED
    assert sorted(e.idempotency_key for e in expired_events) == ["old", "otp"]
    assert _sent(sandbox) == {"ok": 1}


def test_maybe_delivered_is_replayed_only_when_asked(sandbox, clock, box):
    """The answer was lost after Meta accepted: not replayed by default; when asked, it is sent
    again and Meta has it twice (why it is opt-in)."""
    sandbox.fail_next("drop_after_accept")
    with _client(sandbox, sandbox.issue_token()) as client:
        guard = _guard(client, clock, box)
        assert guard.send(Intent.text(TO, "once?", idempotency_key="lost")).state == MAYBE_DELIVERED
        assert box.replay(guard).deliveries == ()
        assert _sent(sandbox) == {"lost": 1}
        report = box.replay(guard, include_maybe_delivered=True)
    assert [d.state for d in report.deliveries] == [DELIVERED]
    assert _sent(sandbox) == {"lost": 2}


def test_a_paused_number_holds_a_replay_without_a_request(sandbox, clock, box):
    """A number paused by its account state: the replayed intent is queued again, not sent."""
    sandbox.set_account_state("locked")
    with _client(sandbox, sandbox.issue_token()) as client:
        guard = _guard(client, clock, box)
        assert (
            guard.send(Intent.text(TO, "locked", idempotency_key="a")).category == "account_state"
        )
        box.enqueue(Intent.text(TO, "later", idempotency_key="b"))
        before = len(sandbox.requests())
        report = box.replay(guard)
    assert [(d.intent.idempotency_key, d.reason) for d in report.deliveries] == [("b", "paused")]
    assert len(sandbox.requests()) == before
    assert box.get("b").state == QUEUED


def test_replay_needs_the_guard_of_this_outbox(sandbox, clock, box, tmp_path):
    """A guard with another outbox (or none) would not record the sends: refused."""
    with (
        _client(sandbox, sandbox.issue_token()) as client,
        SqliteOutbox(tmp_path / "x.db") as other,
    ):
        with pytest.raises(wa_auth.ConfigurationError, match="outbox= this outbox"):
            box.replay(_guard(client, clock, other))
        with pytest.raises(wa_auth.ConfigurationError):
            box.replay(Guard(client))


def test_replay_limit_and_a_second_replay_pick_up_the_rest(sandbox, clock, box):
    """`limit=` stops early; what it left is replayed next time; nothing twice."""
    box.enqueue_many([Intent.text(TO, f"n{n}", idempotency_key=f"n{n}") for n in range(10)])
    with _client(sandbox, sandbox.issue_token()) as client:
        guard = _guard(client, clock, box)
        assert len(box.replay(guard, limit=4, batch=3).deliveries) == 4
        assert box.stats().by_state[PENDING] == 6
        assert box.replay(guard).count(DELIVERED) == 6
    assert set(_sent(sandbox).values()) == {1}
    assert len(_sent(sandbox)) == 10


def test_no_token_in_any_row_log_or_export(sandbox, clock, box, tmp_path, caplog):
    """The canary: a revoked token and a delivered one; the file (and its WAL), every log
    record of wa_auth and the dead-letter export hold fingerprints only."""
    caplog.set_level(logging.DEBUG)
    dead, good = sandbox.issue_token(), sandbox.issue_token()
    sandbox.set_token_state(dead, "revoked_password_changed")
    with _client(sandbox, dead) as client:
        guard = _guard(client, clock, box)
        assert guard.send(Intent.text(TO, "a", idempotency_key="a")).category == "token_revoked"
    sandbox.fail_next(131009)
    with _client(sandbox, good) as client:
        guard = _guard(client, clock, box)
        guard.send(Intent.text(TO, "b", idempotency_key="b"))
        guard.send(Intent.text(TO, "c", idempotency_key="c"))
        box.replay(guard, include_maybe_delivered=True)
    box.flush()
    out = io.StringIO()
    box.export_dead_letters(out)
    rows = "\n".join(str(r.to_dict()) + repr(r) for r in box.list())
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("outbox.db"))
    for token in (dead, good):
        assert token.encode() not in blob
        assert token not in out.getvalue()
        assert token not in rows
        assert token not in caplog.text
    assert Token(dead).fingerprint.encode() in blob
