"""The outbox's rules on every outbox (memory, SQLite in tmp_path, PostgreSQL) with a fake clock.

Every rule is checked on `MemoryOutbox` and `SqliteOutbox` alike: what `begin` refuses, what a
claim leases, what is replayable, what an operator may mark, what is listed, counted, purged
and exported. The SQLite-only tests cover the file: reopening, the typed errors of a missing,
locked, corrupt, foreign or newer file (nothing overwritten), forward migrations, group commit.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import sqlite3
import threading
import time
from typing import Any

import attrs
import pytest

from helpers import EPOCH, Clock, graph_error
from wa_auth import errors
from wa_auth._sqlite import Schema
from wa_auth.errors import ConfigurationError, OutboxError, RequestValidationError, WhatsAppError
from wa_auth.guards import DELIVERED, EXPIRED, FAILED, MAYBE_DELIVERED, QUEUED, Delivery
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.outbox import PENDING, SENDING, MemoryOutbox, Outbox, PostgresOutbox, SqliteOutbox
from wa_auth.outbox import _jobs as _outbox_jobs
from wa_auth.outbox import _sql as _outbox_sql

pytestmark = pytest.mark.anyio

TO = "+15551234567"
DEAD = "sha256:dead00000000"
LIVE = "sha256:1ive00000000"


def revoked() -> WhatsAppError:
    return graph_error(401, 190, 460, fingerprint=DEAD)


def intent(key: str, **kw: Any) -> Intent:
    kw.setdefault("created_at", EPOCH - 10)
    return Intent.text(TO, f"body of {key}", idempotency_key=key, **kw)


def delivered(i: Intent) -> Delivery:
    result = SendResult(
        message_id=f"wamid.{i.idempotency_key}", wa_id="15551234567", token_fingerprint=LIVE
    )
    return Delivery(state=DELIVERED, intent=i, result=result, attempts=1)


def failed(
    i: Intent, error: WhatsAppError, state: str = FAILED, not_before: float | None = None
) -> Delivery:
    return Delivery(
        state=state, intent=i, error=error, attempts=1, not_before=not_before, reason=error.category
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(EPOCH)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.real_component("postgresql")),
    ]
)
def make(request, tmp_path, clock):
    """Make an outbox of the parametrized kind (SQLite ones share one file in tmp_path,
    PostgreSQL ones a schema of this test's own in the session's server)."""
    opened: list[Any] = []
    schema = f"t_{secrets.token_hex(6)}"
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else ""

    def make(**kw: Any) -> Any:
        if request.param == "memory":
            return MemoryOutbox(clock=clock, **kw)
        if request.param == "postgres":
            box = PostgresOutbox(dsn, schema=schema, clock=clock, **kw)
        else:
            box = SqliteOutbox(tmp_path / "outbox.db", clock=clock, **kw)
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


@pytest.fixture
def box(make):
    return make()


def _states(box: Any) -> dict[str, str]:
    return {r.idempotency_key: r.state for r in box.list()}


# --- the guard's hand-off -------------------------------------------------------------------------


def test_both_outboxes_are_outboxes(box):
    """Both implement the whole protocol (sync and async methods)."""
    assert isinstance(box, Outbox)


def test_begin_then_settle_records_sending_then_the_outcome(box, clock):
    """`begin` leases the row as `sending`; `settle` records the message id and clears the lease."""
    i = intent("k1")
    box.begin(i)
    row = box.get("k1")
    assert (row.state, row.lease_owner, row.lease_until) == (
        SENDING,
        box.owner,
        clock.t + box.lease,
    )
    clock.t += 1
    box.settle(delivered(i))
    row = box.get("k1")
    assert (row.state, row.message_id, row.token_fingerprint, row.attempts) == (
        DELIVERED,
        "wamid.k1",
        LIVE,
        1,
    )
    assert (row.lease_owner, row.lease_until, row.updated_at) == (None, None, clock.t)
    assert row.delivery is not None
    assert row.delivery.result.message_id == "wamid.k1"
    assert row.intent == i


def test_a_settle_without_begin_adds_the_row(box):
    """An intent the guard held back (paused, expired) is settled without a begin: it is kept."""
    i = intent("held")
    box.settle(failed(i, graph_error(403, 131031), QUEUED, not_before=EPOCH + 60))
    row = box.get("held")
    assert (row.state, row.category, row.not_before, row.attempts) == (
        QUEUED,
        "account_state",
        EPOCH + 60,
        1,
    )
    assert row.error["code"] == 131031


def test_a_delivered_row_stays_delivered(box):
    """A later outcome never turns a delivered row back (a slow worker's failure, a fallback)."""
    i = intent("k")
    box.settle(delivered(i))
    box.settle(failed(i, graph_error(500, 131000), QUEUED))
    assert box.get("k").state == DELIVERED


def test_attempts_add_up_over_tries(box):
    """Attempts count every send over every try of the intent."""
    i = intent("k")
    box.begin(i)
    box.settle(failed(i, graph_error(500, 131000), QUEUED))
    box.begin(i)
    box.settle(attrs.evolve(delivered(i), attempts=2))
    assert box.get("k").attempts == 3


@pytest.mark.parametrize(
    ("before", "kind"),
    [
        ("sending", "busy"),
        (DELIVERED, "duplicate"),
        (MAYBE_DELIVERED, "duplicate"),
        (EXPIRED, "expired"),
    ],
    ids=["in-flight", "delivered", "maybe-delivered", "expired"],
)
def test_begin_refuses_what_a_second_send_could_duplicate(box, before, kind):
    """In flight, delivered, maybe delivered or expired: begin raises OutboxError, no change."""
    i = intent("k")
    if before == "sending":
        box.begin(i)
    elif before == DELIVERED:
        box.settle(delivered(i))
    else:
        box.settle(Delivery(state=before, intent=i, reason="test"))
    with pytest.raises(OutboxError) as caught:
        box.begin(i)
    assert caught.value.kind == kind
    assert caught.value.category == "invalid_request"
    assert "'k'" in str(caught.value)
    assert box.get("k").state == before


@pytest.mark.parametrize("before", [PENDING, QUEUED, FAILED], ids=str)
def test_begin_takes_a_waiting_or_failed_row(box, before):
    """A pending, queued or failed intent may be sent (again): it becomes sending."""
    i = intent("k")
    if before == PENDING:
        box.enqueue(i)
    else:
        box.settle(
            failed(
                i,
                graph_error(400, 131009) if before == FAILED else graph_error(500, 131000),
                before,
            )
        )
    box.begin(i)
    assert box.get("k").state == SENDING


def test_begin_after_the_send_lease_lapsed_is_refused_as_maybe_delivered(box, clock):
    """A row left in sending past its lease may have gone out: never sent again silently."""
    box.begin(intent("k"))
    clock.t += box.lease + 1
    with pytest.raises(OutboxError) as caught:
        box.begin(intent("k"))
    assert caught.value.kind == "duplicate"


# --- the queue --------------------------------------------------------------------------------


def test_enqueue_is_idempotent_by_key(box):
    """A key already in the outbox keeps its row; enqueue_many counts the new ones."""
    assert box.enqueue(intent("a")) is True
    assert box.enqueue(intent("a")) is False
    assert box.enqueue_many([intent("a"), intent("b"), intent("c")]) == 2
    assert _states(box) == {"a": PENDING, "b": PENDING, "c": PENDING}
    assert [r.id for r in box.list()] == sorted(r.id for r in box.list())


def test_enqueue_refuses_what_is_not_an_intent(box):
    """Only Intent values go in."""
    with pytest.raises(TypeError, match="Intent values, got dict"):
        box.enqueue_many([{"to": TO}])


def test_claim_leases_in_order_and_walks_on_with_after(box, clock):
    """Claims go by id, up to the limit, after the cursor, and lease each row."""
    box.enqueue_many([intent(f"k{n}") for n in range(5)])
    first = box.claim(2)
    assert [r.idempotency_key for r in first] == ["k0", "k1"]
    assert all((r.lease_owner, r.lease_until) == (box.owner, clock.t + box.lease) for r in first)
    rest = box.claim(10, after=first[-1].id)
    assert [r.idempotency_key for r in rest] == ["k2", "k3", "k4"]
    assert box.get("k0").lease_owner == box.owner


def test_release_gives_back_unsent_claims_only(box):
    """After a replay, what was claimed and not sent is free again; a send in flight is not."""
    box.enqueue_many([intent("a"), intent("b")])
    box.claim()
    box.begin(intent("a"))
    assert box.release() == 1
    assert box.get("b").lease_owner is None
    assert box.get("a").lease_owner == box.owner


@pytest.mark.parametrize(
    ("setup", "live", "maybe", "claimed"),
    [
        ("pending", None, False, True),
        ("queued-due", None, False, True),
        ("queued-later", None, False, False),
        ("queued-no-time", None, False, True),
        ("revoked", None, False, False),
        ("revoked", {DEAD}, False, False),
        ("revoked", {LIVE}, False, True),
        ("token-unavailable", None, False, True),
        ("invalid", {LIVE}, False, False),
        ("maybe", None, False, False),
        ("maybe", None, True, True),
        ("delivered", {LIVE}, True, False),
        ("expired", {LIVE}, True, False),
    ],
    ids=[
        "pending",
        "queued-due",
        "queued-not-yet",
        "queued-without-not-before",
        "token-failure-live-unknown",
        "token-failure-same-token",
        "token-failure-new-token",
        "token-unavailable",
        "dead-letter",
        "maybe-delivered-by-default",
        "maybe-delivered-asked",
        "delivered",
        "expired",
    ],
)
def test_what_a_claim_takes(box, setup, live, maybe, claimed):
    """The replay rules: waiting rows, token failures once the token changed, never dead letters."""
    i = intent("k")
    if setup == "pending":
        box.enqueue(i)
    elif setup.startswith("queued"):
        not_before = {"queued-due": EPOCH - 1, "queued-later": EPOCH + 60}.get(setup)
        box.settle(failed(i, graph_error(400, 130429), QUEUED, not_before=not_before))
    elif setup == "revoked":
        box.settle(failed(i, revoked()))
    elif setup == "token-unavailable":
        box.settle(failed(i, errors.TokenSourceMissingError("no token file", source="file:/x")))
    elif setup == "invalid":
        box.settle(failed(i, graph_error(400, 131009)))
    elif setup == "maybe":
        box.settle(failed(i, errors.TransportError("lost", maybe_delivered=True), MAYBE_DELIVERED))
    elif setup == "delivered":
        box.settle(delivered(i))
    else:
        box.settle(Delivery(state=EXPIRED, intent=i, reason="deadline"))
    rows = box.claim(live_fingerprints=live, include_maybe_delivered=maybe)
    assert [r.idempotency_key for r in rows] == (["k"] if claimed else [])


def test_a_lapsed_send_becomes_maybe_delivered_at_the_next_claim(box, clock):
    """A worker that died mid-send: its row is maybe_delivered, not replayed unless asked."""
    box.begin(intent("k"))
    assert box.claim() == []
    clock.t += box.lease + 1
    assert box.claim() == []
    row = box.get("k")
    assert (row.state, row.reason, row.lease_owner) == (MAYBE_DELIVERED, "lease_expired", None)
    assert [r.idempotency_key for r in box.claim(include_maybe_delivered=True)] == ["k"]


# --- operations -----------------------------------------------------------------------------


def test_mark_sets_an_operators_decision(box):
    """`pending` sends a row again (not_before cleared); `delivered` records a confirmed id."""
    i = intent("k")
    box.settle(failed(i, graph_error(400, 130429), QUEUED, not_before=EPOCH + 600))
    row = box.mark("k", PENDING)
    assert (row.state, row.not_before, row.reason) == (PENDING, None, "operator")
    row = box.mark("k", DELIVERED, message_id="wamid.checked", reason="webhook")
    assert (row.state, row.message_id, row.reason) == (DELIVERED, "wamid.checked", "webhook")


def test_mark_refuses_unknown_rows_states_and_rows_in_flight(box):
    """A typed error for each: no such row, a state mark() does not set, a send in flight."""
    with pytest.raises(OutboxError) as caught:
        box.mark("nope", PENDING)
    assert caught.value.kind == "not_found"
    box.begin(intent("k"))
    with pytest.raises(RequestValidationError, match="mark\\(\\) sets one of"):
        box.mark("k", SENDING)
    with pytest.raises(OutboxError) as caught:
        box.mark("k", PENDING)
    assert caught.value.kind == "busy"


def test_list_filters_by_state_category_consumer_and_dead_letters(box):
    """Each filter narrows the list; dead letters are the failures no replay retries."""
    box.settle(delivered(intent("d", consumer="orders")))
    box.settle(failed(intent("q", consumer="orders"), graph_error(400, 130429), QUEUED))
    box.settle(failed(intent("x", consumer="otp"), graph_error(400, 131009)))
    box.settle(failed(intent("t", consumer="otp"), revoked()))
    keys = lambda rows: [r.idempotency_key for r in rows]  # noqa: E731
    assert keys(box.list(QUEUED)) == ["q"]
    assert keys(box.list(category="invalid_request")) == ["x"]
    assert keys(box.list(consumer="otp")) == ["x", "t"]
    assert keys(box.list(dead_letters=True)) == ["x"] == keys(box.dead_letters())
    assert keys(box.list(limit=2)) == ["d", "q"]
    assert box.get("x").dead_letter
    assert not box.get("t").dead_letter
    with pytest.raises(RequestValidationError, match="state must be one of"):
        box.list("lost")
    with pytest.raises(RequestValidationError, match="limit must be a positive integer"):
        box.list(limit=0)


def test_stats_count_states_categories_and_dead_letters(box):
    """Counts per state (zeros too), per category of what is not delivered, and the oldest wait."""
    box.enqueue(intent("p", created_at=EPOCH - 100))
    box.settle(delivered(intent("d")))
    box.settle(failed(intent("x"), graph_error(400, 131009)))
    box.settle(failed(intent("q", created_at=EPOCH - 50), graph_error(400, 130429), QUEUED))
    stats = box.stats()
    assert stats.total == 4
    assert stats.by_state[PENDING] == stats.by_state[DELIVERED] == stats.by_state[QUEUED] == 1
    assert stats.by_state[SENDING] == 0
    assert dict(stats.by_category) == {"invalid_request": 1, "rate_limited": 1}
    assert stats.dead_letters == 1
    assert stats.oldest_waiting == EPOCH - 100
    assert json.loads(json.dumps(stats.to_dict()))["by_state"]["failed"] == 1


def test_purge_deletes_old_delivered_rows_only(box, clock):
    """`purge(delivered_older_than=...)` keeps recent deliveries and everything undelivered."""
    box.settle(delivered(intent("old")))
    box.settle(failed(intent("x"), graph_error(400, 131009)))
    clock.t += 3600
    box.settle(delivered(intent("new")))
    assert box.purge(delivered_older_than=1800) == 1
    assert sorted(_states(box)) == ["new", "x"]
    with pytest.raises(RequestValidationError, match="needs delivered_older_than"):
        box.purge()
    with pytest.raises(RequestValidationError, match="seconds >= 0"):
        box.purge(delivered_older_than=-1)


def test_dead_letters_export_as_json_lines(box, tmp_path):
    """One JSON object per dead letter, with the intent's own JSON and the error, no token."""
    box.settle(failed(intent("x"), graph_error(400, 131009)))
    box.settle(delivered(intent("d")))
    out = io.StringIO()
    assert box.export_dead_letters(out) == 1
    (line,) = out.getvalue().splitlines()
    data = json.loads(line)
    assert (data["idempotency_key"], data["state"], data["category"]) == (
        "x",
        FAILED,
        "invalid_request",
    )
    assert Intent.from_dict(data["intent"]) == intent("x")
    assert data["error"]["code"] == 131009
    path = tmp_path / "dead.jsonl"
    assert box.export_dead_letters(path) == 1
    assert path.read_text(encoding="utf-8") == out.getvalue()


def test_an_export_never_overwrites_a_file(box, tmp_path):
    """An existing export file is refused, not replaced."""
    path = tmp_path / "dead.jsonl"
    path.write_text("keep me\n", encoding="utf-8")
    with pytest.raises(OutboxError) as caught:
        box.export_dead_letters(path)
    assert (caught.value.kind, caught.value.path) == ("exists", str(path))
    assert path.read_text(encoding="utf-8") == "keep me\n"


async def test_the_async_forms_make_the_same_changes(box, clock):
    """Every a-method does what its blocking twin does."""
    i = intent("k")
    assert await box.aenqueue(i) is True
    assert await box.aenqueue_many([intent("j")]) == 1
    assert [r.idempotency_key for r in await box.aclaim(1)] == ["k"]
    assert await box.arelease() == 1
    await box.abegin(i)
    await box.asettle(delivered(i))
    assert (await box.aget("k")).state == DELIVERED
    assert (await box.amark("j", FAILED)).state == FAILED
    assert [r.idempotency_key for r in await box.alist(FAILED)] == ["j"]
    assert (await box.astats()).by_state[DELIVERED] == 1
    clock.t += 10
    assert await box.apurge(delivered_older_than=5) == 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"lease": 0}, "lease must be positive"),
        ({"lease": float("inf")}, "lease must be a finite"),
        ({"max_age": -1}, "max_age must be positive"),
        ({"max_age": "4h"}, "max_age must be a finite"),
    ],
    ids=["lease-zero", "lease-inf", "max-age-negative", "max-age-text"],
)
def test_settings_out_of_range_are_configuration_errors(make, kw, match):
    """A lease or max_age that cannot work is refused when the outbox is made."""
    with pytest.raises(ConfigurationError, match=match):
        make(**kw)


# --- SQLite: the file ---------------------------------------------------------------------------


@pytest.fixture
def path(tmp_path):
    return tmp_path / "outbox.db"


def test_rows_survive_a_reopen_with_every_field(path, clock):
    """What one SqliteOutbox wrote, the next one reads back: intent, error class, fields."""
    i = Intent.template(
        TO,
        "order_update",
        "en_US",
        [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}],
        idempotency_key="t",
        consumer="orders",
        not_after=EPOCH + 60,
    )
    with SqliteOutbox(path, clock=clock) as box:
        box.settle(failed(i, revoked()))
    with SqliteOutbox(path, clock=clock) as box:
        row = box.get("t")
    assert row.intent == i
    assert (row.state, row.category, row.token_fingerprint) == (FAILED, "token_revoked", DEAD)
    error = row.delivery.error
    assert isinstance(error, errors.TokenRevokedError)
    assert (error.code, error.subcode, error.token_fingerprint) == (190, 460, DEAD)


def test_a_lapsed_send_is_maybe_delivered_on_open(path, clock):
    """On open, a row left in sending past its lease becomes maybe_delivered."""
    with SqliteOutbox(path, clock=clock) as box:
        box.begin(intent("k"))
    clock.t += 1000
    with SqliteOutbox(path, clock=clock) as box:
        assert box.get("k").state == MAYBE_DELIVERED


def test_two_workers_on_one_file_never_claim_the_same_row(path, clock):
    """A claim is a lease: the second worker gets only the rest, and the first's after it lapses."""
    with SqliteOutbox(path, clock=clock, lease=30) as one, SqliteOutbox(path, clock=clock) as two:
        assert one.owner != two.owner
        one.enqueue_many([intent(f"k{n}", phone_number_id="12"[n // 2]) for n in range(4)])
        mine = {r.idempotency_key for r in one.claim(2)}
        theirs = {r.idempotency_key for r in two.claim()}
        assert mine.isdisjoint(theirs)
        assert mine | theirs == {"k0", "k1", "k2", "k3"}
        with pytest.raises(OutboxError) as caught:
            two.begin(intent(min(mine)))
        assert caught.value.kind == "busy"
        two.release()
        clock.t += 31
        assert [r.idempotency_key for r in two.claim()] == ["k0", "k1"]  # one number's run
        assert [r.idempotency_key for r in two.claim(after=2)] == ["k2", "k3"]


def test_a_number_another_worker_holds_is_left_alone_so_its_intents_go_in_order(path, clock):
    """Per-number order: while one worker holds a number's row, no other claims that number."""
    with SqliteOutbox(path, clock=clock, lease=30) as one, SqliteOutbox(path, clock=clock) as two:
        one.enqueue_many(
            [intent(f"k{n}", phone_number_id=p) for n, p in enumerate(["1", "2", "1", "2", "3"])]
        )
        assert [r.idempotency_key for r in one.claim(1)] == ["k0"]  # holds number 1
        assert [r.idempotency_key for r in two.claim(10)] == ["k1", "k3"]  # number 2's run
        one.begin(intent("k0", phone_number_id="1"))  # in flight: still held
        assert [r.idempotency_key for r in two.claim(10, after=4)] == ["k4"]  # k2 waits
        one.settle(delivered(intent("k0", phone_number_id="1")))
        one.flush()
        assert [r.idempotency_key for r in two.claim(10)] == ["k1"]  # its own, then k2
        assert [r.idempotency_key for r in two.claim(10, after=2)] == ["k2"]


def test_a_claim_leaves_a_number_whose_older_row_its_cursor_passed(path, clock):
    """A row the cursor passed over (given back by another worker) holds its number's later rows."""
    with SqliteOutbox(path, clock=clock, lease=30) as one, SqliteOutbox(path, clock=clock) as two:
        one.enqueue_many([intent(f"k{n}", phone_number_id=p) for n, p in enumerate("1213")])
        assert [r.idempotency_key for r in one.claim(1)] == ["k0"]
        first = two.claim(1)
        assert [r.idempotency_key for r in first] == ["k1"]
        one.release()  # k0 is free again, before two's cursor
        assert [r.idempotency_key for r in two.claim(10, after=first[-1].id)] == ["k3"]
        assert [r.idempotency_key for r in two.claim(10)] == ["k0"]  # a new pass: from the top


def test_a_claim_takes_the_leading_run_of_one_number(box):
    """One number per claim: its leading rows, up to the next number's row."""
    box.enqueue_many([intent(f"k{n}", phone_number_id=p) for n, p in enumerate("11211")])
    first = box.claim(10)
    assert [r.idempotency_key for r in first] == ["k0", "k1"]
    second = box.claim(10, after=first[-1].id)
    assert [r.idempotency_key for r in second] == ["k2"]
    assert [r.idempotency_key for r in box.claim(10, after=second[-1].id)] == ["k3", "k4"]


def test_a_claim_takes_the_leading_rows_of_as_many_numbers_as_asked(box):
    """`numbers=2`: the leading rows of two numbers, up to the first row of a third."""
    box.enqueue_many([intent(f"k{n}", phone_number_id=p) for n, p in enumerate("121231")])
    assert [r.idempotency_key for r in box.claim(10, numbers=2)] == ["k0", "k1", "k2", "k3"]


async def test_an_async_replay_claims_as_many_numbers_as_it_sends_at_once(box, clock):
    """`areplay(concurrency=N)` claims from N numbers at a time: intents of interleaved numbers
    are still sent N at a time, not one claim per intent."""
    claims: list[int] = []
    claim = box.aclaim

    async def counting(*args, **kw):
        rows = await claim(*args, **kw)
        claims.append(len(rows))
        return rows

    box.aclaim = counting
    box.enqueue_many([intent(f"k{n}", phone_number_id=str(n % 4)) for n in range(40)])
    report = await box.areplay(_Sender(box), concurrency=4)
    assert report.delivered == 40
    assert max(claims) == 40  # the four numbers' rows in one claim, not one row a claim


class _Sender:
    """The least a replay needs of a guard: an outbox, a token provider, `asend`."""

    class client:  # noqa: N801 - stands for a client object
        consumer = None

        class token_provider:  # noqa: N801 - stands for a provider object
            @staticmethod
            async def aget_token() -> Any:
                return type("Token", (), {"fingerprint": LIVE})()

    def __init__(self, outbox: Any) -> None:
        self.outbox = outbox

    async def asend(self, i: Intent) -> Delivery:
        await self.outbox.abegin(i)
        outcome = delivered(i)
        await self.outbox.asettle(outcome)
        return outcome


def test_a_missing_file_is_an_error_without_create(path):
    """`create=False` on a missing file: OutboxError(missing) naming it; nothing is created."""
    with pytest.raises(OutboxError) as caught:
        SqliteOutbox(path, create=False)
    assert (caught.value.kind, caught.value.path) == ("missing", str(path))
    assert str(path) in str(caught.value)
    assert not path.exists()


def test_a_missing_directory_and_a_directory_are_errors(tmp_path):
    """The file's directory must exist; a directory is not a file."""
    with pytest.raises(OutboxError, match="its directory does not exist") as caught:
        SqliteOutbox(tmp_path / "no" / "outbox.db")
    assert caught.value.kind == "missing"
    with pytest.raises(OutboxError, match="is a directory"):
        SqliteOutbox(tmp_path)


def test_a_corrupt_file_is_refused_and_left_alone(path):
    """Bytes that are not SQLite: OutboxError(corrupt), the file unchanged."""
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError) as caught:
        SqliteOutbox(path)
    assert caught.value.kind == "corrupt"
    assert str(path) in str(caught.value)
    assert path.read_bytes() == b"this is not a database" * 100


def test_another_programs_database_is_refused_and_left_alone(path):
    """A SQLite file with tables of its own: OutboxError(foreign), no table added."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError) as caught:
        SqliteOutbox(path)
    assert caught.value.kind == "foreign"
    assert "invoices" in str(caught.value)
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["invoices"]
    conn.close()


def test_a_newer_schema_is_refused_and_the_file_not_changed(path):
    """A file a newer wa_auth wrote: OutboxError(newer_schema) naming both versions; untouched."""
    SqliteOutbox(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE wa_auth_meta SET version = 99 WHERE component = 'outbox'")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(OutboxError) as caught:
        SqliteOutbox(path)
    assert caught.value.kind == "newer_schema"
    assert "version 99" in str(caught.value)
    assert f"reads ({_outbox_sql.SCHEMA.version})" in str(caught.value)
    assert path.read_bytes() == before


def test_a_file_locked_past_the_busy_timeout_is_a_retryable_error(path):
    """Another process holding the write lock longer than busy_timeout: OutboxError(locked)."""
    box = SqliteOutbox(path, busy_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OutboxError) as caught:
            box.enqueue(intent("k"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (caught.value.kind, caught.value.retryable) == ("locked", True)
    assert str(path) in str(caught.value)
    assert box.enqueue(intent("k")) is True
    box.close()


def test_a_closed_outbox_says_so(path):
    """After close(), every call is OutboxError(closed); close() is idempotent."""
    box = SqliteOutbox(path)
    box.close()
    box.close()
    with pytest.raises(OutboxError) as caught:
        box.enqueue(intent("k"))
    assert caught.value.kind == "closed"


def test_schema_migrations_go_forward_and_keep_the_rows(path, monkeypatch):
    """A file opened by a wa_auth with one migration more is migrated in place."""
    with SqliteOutbox(path) as box:
        box.enqueue(intent("k"))
    v2 = Schema(
        component="outbox",
        what="outbox file",
        migrations=(
            *_outbox_sql.SCHEMA.migrations,
            ("ALTER TABLE wa_outbox ADD COLUMN note TEXT",),
        ),
    )
    monkeypatch.setattr("wa_auth.outbox._sqlite.SCHEMA", v2)
    with SqliteOutbox(path) as box:
        assert box.get("k").state == PENDING
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM wa_auth_meta").fetchall() == [(v2.version,)]
    assert "note" in [r[1] for r in conn.execute("PRAGMA table_info(wa_outbox)")]
    conn.close()
    monkeypatch.setattr("wa_auth.outbox._sqlite.SCHEMA", _outbox_sql.SCHEMA)
    with pytest.raises(OutboxError) as caught:
        SqliteOutbox(path)
    assert caught.value.kind == "newer_schema"


def _version_1_file(path: Any, clock: Clock) -> None:
    """Write *path* as the first release did: schema version 1, its open index, one row a state."""
    v1 = Schema(
        component="outbox", what="outbox file", migrations=_outbox_sql.SCHEMA.migrations[:1]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("wa_auth.outbox._sqlite.SCHEMA", v1)
        with SqliteOutbox(path, clock=clock) as box:
            box.enqueue(intent("pending"))
            box.begin(intent("sending", phone_number_id="2222"))  # another number's
            for key in ("delivered", "queued", "lapsed"):
                box.begin(intent(key))
            box.settle(delivered(intent("delivered")))
            box.settle(failed(intent("queued"), graph_error(429, 130429), state=QUEUED))
    conn = sqlite3.connect(path)
    # "lapsed": its worker stopped while it was being sent (its lease is long over).
    conn.execute("UPDATE wa_outbox SET lease_until = 0 WHERE idempotency_key = 'lapsed'")
    conn.commit()
    (index,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'wa_outbox_open'"
    ).fetchone()
    assert conn.execute("SELECT version FROM wa_auth_meta").fetchall() == [(1,)]
    assert f"state IN {_outbox_sql.OPEN_STATES}" in index
    conn.close()


def test_a_version_1_file_is_migrated_and_its_open_rows_stay_open(path, clock):
    """A file of the first release opens: its open index is rebuilt (version 2), every row kept.

    The rebuilt index holds the same rows (every state but delivered and expired), and the
    claims and lease checks that read it find them: the pending row and the queued one are
    claimed, the row whose worker stopped while sending becomes maybe_delivered.
    """
    _version_1_file(path, clock)
    with SqliteOutbox(path, clock=clock) as box:
        states = _states(box)
        assert states == {
            "pending": PENDING,
            "sending": SENDING,  # its lease runs on
            "delivered": DELIVERED,
            "queued": QUEUED,
            "lapsed": MAYBE_DELIVERED,
        }
        assert {r.idempotency_key for r in box.claim(10)} == {"pending", "queued"}
        box.begin(intent("new"))
        box.settle(delivered(intent("new")))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM wa_auth_meta").fetchall() == [(2,)]
    (index,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'wa_outbox_open'"
    ).fetchone()
    assert _outbox_sql.OPEN in index
    indexed = conn.execute(
        "SELECT idempotency_key FROM wa_outbox INDEXED BY wa_outbox_open "
        f"WHERE {_outbox_sql.OPEN} ORDER BY id"
    ).fetchall()
    assert [k for (k,) in indexed] == ["pending", "sending", "queued", "lapsed"]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_claims_and_lease_checks_read_the_open_index(path):
    """The queries repeat the open index's condition word for word, so SQLite uses the index.

    Were they to drift apart, every claim would scan the delivered majority of the table.
    """
    with SqliteOutbox(path) as box:
        box.enqueue(intent("k"))
        plans: list[str] = []

        def trace(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(plans.append)

        box._db.run(trace)
        box.claim(10)
        box._db.run(lambda c: c.set_trace_callback(None))
    statements = [s for s in plans if "wa_outbox" in s and "state NOT IN" in s]
    assert len(statements) >= 2  # the lease check (recover) and the claim itself
    conn = sqlite3.connect(path)
    for statement in statements:
        plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {statement}"))
        assert "wa_outbox_open" in plan, (statement, plan)
    conn.close()


def test_the_file_is_in_wal_mode_with_the_chosen_durability(path):
    """WAL, and `durability="full"` means synchronous=FULL on the writer's connection."""
    with SqliteOutbox(path, durability="full") as box:
        assert box.durability == "full"
        assert box._db.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with pytest.raises(ConfigurationError, match="durability must be one of normal, full"):
        SqliteOutbox(path, durability="fast")
    with pytest.raises(ConfigurationError, match="busy_timeout must be seconds"):
        SqliteOutbox(path, busy_timeout=-1)


async def test_concurrent_changes_share_one_commit(path):
    """64 begins waiting for the writer go out in one transaction (group commit)."""
    with SqliteOutbox(path) as box:
        gate = threading.Event()
        blocked = asyncio.get_running_loop().run_in_executor(
            None, box._db.run, lambda c: gate.wait(5)
        )
        await asyncio.sleep(0.05)  # the writer is inside the blocking job
        before = box.commits
        begins = asyncio.gather(*(box.abegin(intent(f"k{n}")) for n in range(64)))
        await asyncio.sleep(0)  # every begin is queued behind the blocking job
        gate.set()
        await begins
        await blocked
        assert box.commits - before == 2  # the blocking job's, then the 64 begins'
        assert box.stats().by_state[SENDING] == 64


async def test_begins_of_one_loop_turn_wake_the_writer_once(path):
    """64 begins made in one turn of the loop go out together, the writer idle or not.

    The first begin of a turn does not wake the writer at once (it would take that begin
    alone, as soon as the loop let go of the GIL): the turn's end does, once.
    """
    with SqliteOutbox(path) as box:
        await box.abegin(intent("first"))  # the writer thread is started, and idle

        async def begin(key: str) -> None:
            time.sleep(0.0002)  # noqa: ASYNC251 - as a socket call, it lets go of the GIL
            await box.abegin(intent(key))

        before = box.commits
        await asyncio.gather(*(begin(f"k{n}") for n in range(64)))
        # One batch; more only when the writer looked up on its own (every flush interval).
        assert box.commits - before <= 4
        assert box.stats().by_state[SENDING] == 65


async def test_without_group_commit_each_change_is_a_transaction(path):
    """`group_commit=False`: one commit per begin, the measured alternative."""
    with SqliteOutbox(path, group_commit=False) as box:
        before = box.commits
        await asyncio.gather(*(box.abegin(intent(f"k{n}")) for n in range(16)))
        assert box.commits - before == 16


def test_an_outcome_is_read_back_at_once_and_seen_by_others_after_flush(path):
    """A deferred settle: another connection sees it after `flush()`; this outbox at once."""
    with SqliteOutbox(path, flush_interval=30) as box, SqliteOutbox(path) as other:
        box.begin(intent("k"))
        box.settle(delivered(intent("k")))
        assert other.get("k").state == SENDING
        box.flush()
        assert other.get("k").state == DELIVERED
        box.settle(delivered(intent("j")))
        assert box.get("j").state == DELIVERED  # a read of this outbox commits what waits


def test_a_blocking_senders_outcomes_wait_for_company(path):
    """A begin goes ahead of the outcomes waiting: they are committed 64 at a time.

    One multi-row statement then settles them, not one statement per message; a read of
    this outbox, a flush or the 64th outcome commits them.
    """
    with SqliteOutbox(path, flush_interval=30) as box, SqliteOutbox(path) as other:
        before = box.commits
        for n in range(63):
            box.begin(intent(f"k{n}"))
            box.settle(delivered(intent(f"k{n}")))
        box.begin(intent("last"))
        assert box.commits - before == 64  # one per begin: the outcomes wait
        assert {r.state for r in other.list()} == {SENDING}
        box.settle(delivered(intent("last")))
        box.begin(intent("next"))  # 64 outcomes wait: they go with this begin
        assert box.commits - before == 65
        assert other.stats().by_state[DELIVERED] == 64
        box.settle(delivered(intent("next")))
        assert box.get("next").state == DELIVERED  # a read commits what waits


def test_a_begin_never_goes_ahead_of_an_outcome_of_its_own_intent(path):
    """The outcome of a key waiting is committed before that key's next begin, in order."""
    with SqliteOutbox(path, flush_interval=30) as box:
        box.begin(intent("k"))
        box.settle(delivered(intent("k")))
        with pytest.raises(OutboxError) as caught:
            box.begin(intent("k"))
        assert caught.value.kind == "duplicate"  # it saw `delivered`, not its own `sending`
        box.begin(intent("q"))
        box.settle(attrs.evolve(delivered(intent("q")), state=QUEUED, result=None))
        box.mark("q", "pending")
        box.begin(intent("q"))  # the queued outcome, then the mark, then this begin
        assert box.get("q").state == SENDING


def test_outcomes_left_waiting_by_begins_are_due_within_the_flush_interval(path):
    """Half the flush interval on, a begin takes the outcomes waiting with it."""
    with SqliteOutbox(path, flush_interval=0.2) as box, SqliteOutbox(path) as other:
        box.begin(intent("a"))
        box.settle(delivered(intent("a")))
        time.sleep(0.12)
        box.begin(intent("b"))
        assert other.get("a").state == DELIVERED


def test_an_outcome_left_waiting_is_committed_by_the_writer_without_another_send(path):
    """No next send, no flush, no read: the writer thread commits a waiting outcome itself
    (at most the flush interval later; waited for here without a bound on the time)."""
    with SqliteOutbox(path, flush_interval=0.05) as box, SqliteOutbox(path) as other:
        box.begin(intent("only"))
        box.settle(delivered(intent("only")))
        for _ in range(2000):  # 20 s at most on a busy machine, 50 ms on a quiet one
            if other.get("only").state == DELIVERED:
                break
            time.sleep(0.01)
        assert other.get("only").state == DELIVERED


def test_a_blocking_begin_of_a_new_intent_is_one_statement_committed_by_itself(path):
    """A new intent's begin is one INSERT (no BEGIN, no COMMIT statement), committed by
    itself: another process's connection sees it `sending` as soon as `begin` returns."""
    with SqliteOutbox(path, flush_interval=30) as box, SqliteOutbox(path) as other:
        box.begin(intent("a"))
        box.settle(delivered(intent("a")))
        statements: list[str] = []
        box._db._conn.set_trace_callback(statements.append)
        before = box.commits
        box.begin(intent("b"))
        box._db._conn.set_trace_callback(None)
        assert [s.split()[0] for s in statements] == ["INSERT"]
        assert box.commits - before == 1
        assert other.get("b").state == SENDING  # durable before the request goes out
        assert other.get("a").state == SENDING  # the outcome still waits for company
        box.flush()
        assert other.get("a").state == DELIVERED


def test_a_blocking_begin_of_a_known_key_still_refuses_as_before(path):
    """A key the outbox holds takes the transaction of the writer's batch: its refusals."""
    with SqliteOutbox(path, flush_interval=30) as box:
        box.enqueue(intent("p"))
        box.begin(intent("p"))  # a pending row: claimed by this begin
        assert box.get("p").state == SENDING
        with pytest.raises(OutboxError) as caught:
            box.begin(intent("p"))
        assert caught.value.kind == "busy"
        box.settle(delivered(intent("p")))
        with pytest.raises(OutboxError) as caught:
            box.begin(intent("p"))
        assert caught.value.kind == "duplicate"


def test_a_blocking_begin_on_a_locked_file_is_an_unavailable_error(path):
    """A write lock held by another process past the busy timeout: `OutboxUnavailableError`
    (locked), nothing recorded; once the lock is free the same begin goes through."""
    with SqliteOutbox(path, busy_timeout=0.05) as box:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(errors.OutboxUnavailableError) as caught:
            box.begin(intent("k"))
        assert caught.value.kind == "locked"
        assert box.check() is not None  # the problem is known
        holder.execute("ROLLBACK")
        holder.close()
        box.begin(intent("k"))
        assert box.get("k").state == SENDING
        assert box.check() is None  # the begin proved the file fine again


def test_a_row_with_an_unreadable_intent_becomes_a_dead_letter(path):
    """A hand-edited row that is no longer an intent does not stall replays: it is listed."""
    with SqliteOutbox(path) as box:
        box.enqueue(intent("k"))
    conn = sqlite3.connect(path)
    conn.execute('UPDATE wa_outbox SET intent = \'{"type": "text"}\'')
    conn.commit()
    conn.close()
    with SqliteOutbox(path) as box:
        assert box.claim() == []
        assert box.list() == []
        assert box.stats().dead_letters == 1
        with pytest.raises(OutboxError, match="holds an intent that cannot be read") as caught:
            box.get("k")
        assert caught.value.kind == "corrupt"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT state, category, reason FROM wa_outbox").fetchall() == [
        ("failed", "invalid_request", "unreadable")
    ]
    conn.close()


def test_repr_names_the_file_and_the_choices(path):
    """The repr says which file and how durable."""
    with SqliteOutbox(path, max_age=14400) as box:
        assert (
            repr(box)
            == f"SqliteOutbox({str(path)!r}, durability='normal', lease=300.0, max_age=14400.0)"
        )


@pytest.fixture(params=[True, False], ids=["many-rows", "row-by-row"])
def batched(request, path, monkeypatch):
    """A SqliteOutbox whose batches use multi-row statements, or (an old SQLite) single rows."""
    monkeypatch.setattr(_outbox_jobs, "MANY", request.param)
    with SqliteOutbox(path) as box:
        yield box


async def _in_one_batch(box: SqliteOutbox, *calls: Any) -> list[Any]:
    """Run the calls while the writer is held, so that they all land in one transaction."""
    gate = threading.Event()
    blocked = asyncio.get_running_loop().run_in_executor(None, box._db.run, lambda c: gate.wait(5))
    await asyncio.sleep(0.05)
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)
    before = box.commits
    gate.set()
    await blocked
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await box.aflush()
    assert box.commits - before <= 3  # the blocking job's, the batch's (and the flush's)
    return results


async def test_interleaved_begins_and_outcomes_of_one_batch_are_one_statement_each(path):
    """64 sends in flight queue begins and outcomes interleaved: one INSERT, one UPDATE."""
    with SqliteOutbox(path) as box:
        for n in range(32):
            box.begin(intent(f"old{n}"))
        box.flush()
        statements: list[str] = []
        box._db._conn.set_trace_callback(statements.append)
        calls: list[Any] = []
        for n in range(32):
            calls += [box.abegin(intent(f"new{n}")), box.asettle(delivered(intent(f"old{n}")))]
        await _in_one_batch(box, *calls)
        box._db._conn.set_trace_callback(None)
        changes = [s for s in statements if s.startswith(("INSERT", "UPDATE"))]
        assert len(changes) == 2, changes
        assert set(_states(box).values()) == {SENDING, DELIVERED}
        assert sum(state == DELIVERED for state in _states(box).values()) == 32


async def test_a_batch_keeps_the_order_of_one_intents_changes(batched):
    """Begin, outcome, begin of one key in one batch: the second begin sees the outcome."""
    box = batched
    results = await _in_one_batch(
        box,
        box.abegin(intent("a")),
        box.abegin(intent("k")),
        box.asettle(delivered(intent("k"))),
        box.abegin(intent("b")),
        box.abegin(intent("k")),
    )
    assert results[:4] == [None] * 4
    assert isinstance(results[4], OutboxError)
    assert results[4].kind == "duplicate"  # not `busy`: the outcome was committed first
    assert _states(box) == {"a": SENDING, "k": DELIVERED, "b": SENDING}


async def test_one_batch_lets_one_begin_of_an_intent_through(batched):
    """Two begins of one intent in one transaction: the first is sending, the second is busy."""
    box = batched
    results = await _in_one_batch(
        box, box.abegin(intent("a")), box.abegin(intent("k")), box.abegin(intent("k"))
    )
    assert results[:2] == [None, None]
    assert isinstance(results[2], OutboxError)
    assert results[2].kind == "busy"
    assert _states(box) == {"a": SENDING, "k": SENDING}


async def test_one_batch_of_begins_takes_claimed_rows_and_refuses_the_rest(batched, clock):
    """Claimed rows become sending; a delivered one is refused; a fresh one is added."""
    box = batched
    box.enqueue_many([intent("p"), intent("q")])
    box.settle(delivered(intent("d")))
    assert [r.idempotency_key for r in box.claim()] == ["p", "q"]
    results = await _in_one_batch(
        box,
        box.abegin(intent("p")),
        box.abegin(intent("d")),
        box.abegin(intent("q")),
        box.abegin(intent("n")),
    )
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "OutboxError",
        "NoneType",
        "NoneType",
    ]
    assert results[1].kind == "duplicate"
    assert _states(box) == {"p": SENDING, "q": SENDING, "d": DELIVERED, "n": SENDING}


async def test_one_batch_of_outcomes_keeps_their_order_and_the_delivered_rule(batched):
    """Outcomes of known, unknown and delivered intents, one intent twice: as if one by one."""
    box = batched
    box.begin(intent("a"))
    box.begin(intent("b"))
    box.settle(delivered(intent("d")))
    await _in_one_batch(
        box,
        box.asettle(delivered(intent("a"))),
        box.asettle(failed(intent("new"), graph_error(400, 131009))),
        box.asettle(failed(intent("d"), graph_error(500, 131000), QUEUED)),
        box.asettle(failed(intent("b"), graph_error(500, 131000), QUEUED)),
        box.asettle(attrs.evolve(delivered(intent("b")), attempts=2)),
    )
    assert _states(box) == {"a": DELIVERED, "b": DELIVERED, "d": DELIVERED, "new": FAILED}
    assert box.get("b").attempts == 3
    assert box.get("new").intent == intent("new")


def test_the_stored_intent_is_its_to_dict(path):
    """The row's JSON is exactly `Intent.to_dict()` for every kind (the fast encoder agrees)."""
    kinds = [
        Intent.text(TO, "héllo ✓", preview_url=True, idempotency_key="t", not_after=EPOCH),
        Intent.template(
            TO,
            "order_update",
            "en_US",
            [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}],
            idempotency_key="tp",
        ),
        Intent.media(
            TO, "document", link="https://example.com/a.pdf", filename="a.pdf", idempotency_key="m"
        ),
        Intent.buttons(TO, "Pick", [("y", "Yes"), ("n", "No")], idempotency_key="b", consumer="c"),
        Intent.reaction(TO, "wamid.x", "👍", idempotency_key="r"),
        Intent.location(
            TO, 52.5, 13.4, name="Here", idempotency_key="l", phone_number_id="106540352242922"
        ),
    ]
    for i in kinds:
        assert json.loads(_outbox_sql.intent_json(i)) == i.to_dict()
        # Byte for byte what `json.dumps` writes with the same options (its C encoder, reused).
        assert _outbox_sql.intent_json(i) == json.dumps(
            i.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    with SqliteOutbox(path) as box:
        box.enqueue_many(kinds)
        assert [r.intent for r in box.list()] == kinds


@pytest.mark.parametrize("many", [True, False], ids=["many-rows", "row-by-row"])
async def test_a_plain_delivery_clears_what_a_failed_attempt_left(path, clock, monkeypatch, many):
    """A delivered outcome writes NULL for the category, reason, error and not_before a failure
    recorded (the plain delivery's statements write them, not bind them), row by row and many
    rows at once, and adds up the attempts."""
    monkeypatch.setattr(_outbox_jobs, "MANY", many)
    box = SqliteOutbox(path, clock=clock)
    keys = ["a", "b", "c"]
    for key in keys:
        box.settle(failed(intent(key), graph_error(500, 131000), QUEUED, not_before=EPOCH + 60))
    clock.t = EPOCH + 61
    assert sorted(r.idempotency_key for r in box.claim(numbers=3)) == keys
    for key in keys:
        box.begin(intent(key))
    box.settle(delivered(intent("a")))  # alone: the single-row statement
    await _in_one_batch(box, *(box.asettle(delivered(intent(k))) for k in ("b", "c")))
    for key in keys:
        row = box.get(key)
        assert (row.state, row.message_id, row.token_fingerprint, row.attempts) == (
            DELIVERED,
            f"wamid.{key}",
            LIVE,
            2,
        )
        assert (row.category, row.reason, row.error, row.not_before) == (None, None, None, None)
        assert (row.lease_owner, row.lease_until) == (None, None)
    box.close()


def test_a_begin_records_each_optional_value_or_null(path):
    """The begin's INSERT writes NULL in SQL for the values an intent has none of: every
    combination of consumer, sender and deadline reads back as it was given."""
    with SqliteOutbox(path) as box:
        statements: list[str] = []
        box._db._conn.set_trace_callback(statements.append)
        for n in range(8):
            kw: dict[str, Any] = {}
            if n & 1:
                kw["consumer"] = "shop"
            if n & 2:
                kw["phone_number_id"] = "106540352242922"
            if n & 4:
                kw["not_after"] = EPOCH + 3600
            i = intent(f"k{n}", **kw)
            box.begin(i)
            assert box.get(f"k{n}").intent == i
        box._db._conn.set_trace_callback(None)
        # Each begin was one statement committed by itself: a form SQLite refused would have
        # gone through the writer's batch (`BEGIN IMMEDIATE`) with the values bound.
        assert sum(s.startswith("INSERT") for s in statements) == 8
        assert "BEGIN IMMEDIATE" not in statements
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT consumer, phone_number_id, not_after FROM wa_outbox ORDER BY id"
        ).fetchall()
        conn.close()
    assert rows == [
        (
            "shop" if n & 1 else None,
            "106540352242922" if n & 2 else None,
            EPOCH + 3600 if n & 4 else None,
        )
        for n in range(8)
    ]
