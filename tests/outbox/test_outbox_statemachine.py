"""A rule-based state machine (hypothesis) over the outbox's transitions, on every outbox.

Each step (enqueue, begin, settle, claim, release, mark, a status webhook, purge, time passing)
is applied to a `MemoryOutbox`, a `SqliteOutbox` and a `PostgresOutbox` (a schema of each
example's own in the session's server) in lockstep: they must answer alike (the same rows, the
same refusals), and every row must obey the state machine of `docs/outbox.md` — a row changes
state only along its edges, a delivered row leaves `delivered` only by an operator's `mark` or a
late `failed` status of its own wamid (`apply_status`), and a row is `sending` only under a
lease.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from helpers import EPOCH, graph_error
from wa_auth import errors
from wa_auth.errors import OutboxError
from wa_auth.guards import DELIVERED, EXPIRED, FAILED, MAYBE_DELIVERED, QUEUED, Delivery
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.outbox import (
    MARKABLE_STATES,
    OUTBOX_STATES,
    PENDING,
    SENDING,
    MemoryOutbox,
    PostgresOutbox,
    SqliteOutbox,
)
from wa_auth.webhooks import MessageStatus

LEASE = 30.0
KEYS = ("a", "b", "c", "d")
DEAD, LIVE = "sha256:dead00000000", "sha256:1ive00000000"

#: The edges of the state machine, apart from an operator's `mark` (which may set any of
#: MARKABLE_STATES on a row that is not being sent).
EDGES = {
    None: {PENDING, SENDING, DELIVERED, QUEUED, FAILED, MAYBE_DELIVERED, EXPIRED},
    PENDING: {SENDING, DELIVERED, QUEUED, FAILED, MAYBE_DELIVERED, EXPIRED},
    QUEUED: {SENDING, DELIVERED, QUEUED, FAILED, MAYBE_DELIVERED, EXPIRED},
    FAILED: {SENDING, DELIVERED, QUEUED, FAILED, MAYBE_DELIVERED, EXPIRED},
    SENDING: {DELIVERED, QUEUED, FAILED, MAYBE_DELIVERED, EXPIRED},
    MAYBE_DELIVERED: {SENDING, DELIVERED, QUEUED, FAILED, MAYBE_DELIVERED, EXPIRED},
    EXPIRED: {DELIVERED},
    DELIVERED: set(),
}


def _error(kind: str) -> errors.WhatsAppError:
    if kind == "token_unavailable":
        return errors.TokenSourceMissingError("no token file", source="file:/x")
    code, status, sub = {
        "invalid": (131009, 400, None),
        "revoked": (190, 401, 460),
        "rate": (130429, 400, None),
    }[kind]
    fingerprint = DEAD if kind == "revoked" else None
    return graph_error(status, code, sub, message="x", fingerprint=fingerprint)


OUTCOMES = st.sampled_from(
    [
        "delivered",
        "queued-now",
        "queued-later",
        "invalid",
        "revoked",
        "token_unavailable",
        "maybe",
        "expired",
    ]
)


class OutboxMachine(RuleBasedStateMachine):
    """Every outbox, one fake clock, one set of intents."""

    #: The session's PostgreSQL URL (set by the test below before the machine runs).
    dsn = ""

    def __init__(self) -> None:
        super().__init__()
        self.t = EPOCH
        self.dir = Path(tempfile.mkdtemp(prefix="wa-outbox-sm-"))
        self.memory = MemoryOutbox(lease=LEASE, clock=self.clock)
        self.sqlite = SqliteOutbox(self.dir / "o.db", lease=LEASE, clock=self.clock)
        self.schema = f"sm_{secrets.token_hex(6)}"
        self.postgres = PostgresOutbox(self.dsn, schema=self.schema, lease=LEASE, clock=self.clock)
        self.intents = {
            k: Intent.text("+15551234567", k, idempotency_key=k, created_at=EPOCH) for k in KEYS
        }
        self.last: dict[str, str | None] = dict.fromkeys(KEYS)
        self.marked: set[str] = set()
        self.failed_late: set[str] = set()

    def clock(self) -> float:
        return self.t

    def teardown(self) -> None:
        self.sqlite.close()
        self.postgres._db.run(lambda c: c.execute(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.postgres.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def both(self, name: str, *args: Any, **kw: Any) -> Any:
        """Call *name* on each; return the common answer (an exception's kind compares too)."""
        answers = []
        for box in (self.memory, self.sqlite, self.postgres):
            try:
                answers.append(("ok", getattr(box, name)(*args, **kw)))
            except OutboxError as exc:
                answers.append(("refused", exc.kind))
        (a_kind, a), *others = answers
        for b_kind, b in others:
            assert a_kind == b_kind, (name, answers)
            if a_kind == "refused":
                assert a == b, (name, answers)
        return answers[0]

    @rule(key=st.sampled_from(KEYS))
    def enqueue(self, key: str) -> None:
        self.both("enqueue", self.intents[key])

    @rule(key=st.sampled_from(KEYS))
    def begin(self, key: str) -> None:
        self.both("begin", self.intents[key])

    @rule(key=st.sampled_from(KEYS), outcome=OUTCOMES)
    def settle(self, key: str, outcome: str) -> None:
        i = self.intents[key]
        if outcome == "delivered":
            delivery = Delivery(
                state=DELIVERED,
                intent=i,
                attempts=1,
                result=SendResult(message_id=f"wamid.{key}", wa_id=None, token_fingerprint=LIVE),
            )
        elif outcome.startswith("queued"):
            later = self.t + (600 if outcome == "queued-later" else -1)
            delivery = Delivery(
                state=QUEUED,
                intent=i,
                attempts=1,
                error=_error("rate"),
                not_before=later,
                reason="rate_limited",
            )
        elif outcome == "maybe":
            delivery = Delivery(
                state=MAYBE_DELIVERED,
                intent=i,
                attempts=1,
                error=errors.TransportError("lost", maybe_delivered=True),
            )
        elif outcome == "expired":
            delivery = Delivery(state=EXPIRED, intent=i, reason="deadline")
        else:
            error = _error(outcome)
            delivery = Delivery(
                state=FAILED, intent=i, attempts=1, error=error, reason=error.category
            )
        self.both("settle", delivery)

    @rule(
        limit=st.integers(1, 5),
        live=st.sampled_from([None, frozenset({DEAD}), frozenset({LIVE})]),
        maybe=st.booleans(),
    )
    def claim(self, limit: int, live: frozenset[str] | None, maybe: bool) -> None:
        _, rows = self.both("claim", limit, live_fingerprints=live, include_maybe_delivered=maybe)
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        assert all(r.lease_owner is not None for r in rows)

    @rule()
    def release(self) -> None:
        self.both("release")

    @rule(key=st.sampled_from(KEYS), state=st.sampled_from(MARKABLE_STATES))
    def mark(self, key: str, state: str) -> None:
        kind, _ = self.both("mark", key, state)
        if kind == "ok":
            self.marked.add(key)

    @rule(
        key=st.sampled_from(KEYS),
        state=st.sampled_from(["sent", "delivered", "read", "failed"]),
        own=st.booleans(),
    )
    def status(self, key: str, state: str, own: bool) -> None:
        wamid = f"wamid.{key}" if own else "wamid.other"
        errors_ = (errors.from_webhook_error({"code": 131031}),) if state == "failed" else ()
        event = MessageStatus(
            id=wamid, status=state, idempotency_key=key, errors=errors_, key=f"{wamid}:{state}"
        )
        before = self.memory.get(key)
        _, row = self.both("apply_status", event)
        if row is None:
            assert before is None
        elif row.state != before.state:
            assert (before.state, row.state, row.reason) in {
                (s, FAILED, "webhook:131031") for s in (DELIVERED, SENDING, MAYBE_DELIVERED)
            }
            self.failed_late.add(key)

    @rule(seconds=st.sampled_from([1.0, LEASE + 1, 700.0]))
    def wait(self, seconds: float) -> None:
        self.t += seconds

    @rule(age=st.sampled_from([0.0, 100.0]))
    def purge(self, age: float) -> None:
        self.both("purge", delivered_older_than=age)
        for key in KEYS:
            if self.memory.get(key) is None:
                self.last[key] = None

    @invariant()
    def rows_agree_and_follow_the_edges(self) -> None:
        def view(box: Any) -> list[tuple[Any, ...]]:
            return [
                (
                    r.idempotency_key,
                    r.state,
                    r.attempts,
                    r.category,
                    r.reason,
                    r.message_id,
                    r.token_fingerprint,
                    r.not_before,
                    r.lease_owner is not None,
                    r.lease_until,
                )
                for r in box.list()
            ]

        memory, sqlite = view(self.memory), view(self.sqlite)
        assert memory == sqlite
        assert memory == view(self.postgres)
        for key, state, *_, leased, until in memory:
            assert state in OUTBOX_STATES
            if state == SENDING:
                assert leased
                assert until is not None
            if not leased:
                assert until is None
            before = self.last[key]
            if before != state and key not in self.marked | self.failed_late:
                assert state in EDGES[before], (key, before, state)
            self.last[key] = state
        self.marked.clear()
        self.failed_late.clear()


OutboxMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)


@pytest.mark.real_component("postgresql")
def test_outbox_transitions(postgres_dsn):
    """Memory, SQLite and PostgreSQL answer every sequence of steps alike."""
    OutboxMachine.dsn = postgres_dsn
    OutboxMachine.TestCase().runTest()
