"""The outbox's fast paths write exactly the rows of its general ones (a review's tests).

A begin's NULLs written in SQL (`begin_insert`) and a plain delivery's settle
(`SETTLE_DELIVERED`, one row and many) were made for instruction counts: each test here
runs the same changes through the fast path and through the general statement (`INSERT`
with every value bound, `SETTLE`/`SETTLE_MANY_*`) on two files, and compares every column
of every row, for each state a row can be in when its delivery is settled.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from helpers import EPOCH, Clock
from wa_auth.guards import DELIVERED, Delivery
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.outbox import SqliteOutbox
from wa_auth.outbox import _jobs as _outbox_jobs
from wa_auth.outbox import _sql as _outbox_sql
from wa_auth.outbox import _sqlite as _outbox_sqlite

pytestmark = pytest.mark.anyio

TO = "+15551234567"
LIVE = "sha256:1ive00000000"

#: How a row stands when its delivery is settled: the SQL that puts it there after its begin
#: (None: no row at all, an intent the outbox does not know; "" the begin's row as it is).
PRE_STATES: dict[str, str | None] = {
    "unknown": None,
    "sending": "",
    "queued": (
        "UPDATE wa_outbox SET state = 'queued', attempts = 1, category = 'server', "
        "reason = 'server', error = '{\"code\":131000}', not_before = 9e9, "
        "lease_owner = NULL, lease_until = NULL"
    ),
    "expired": "UPDATE wa_outbox SET state = 'expired', reason = 'expired', attempts = 2",
    "failed-same-wamid": (
        "UPDATE wa_outbox SET state = 'failed', message_id = 'wamid.' || idempotency_key, "
        "category = 'recipient', reason = 'recipient', error = '{}'"
    ),
    "failed-other-wamid": (
        "UPDATE wa_outbox SET state = 'failed', message_id = 'wamid.other', "
        "category = 'recipient', reason = 'recipient', error = '{}'"
    ),
    "delivered": "UPDATE wa_outbox SET state = 'delivered', message_id = 'wamid.first'",
    "maybe_delivered": (
        "UPDATE wa_outbox SET state = 'maybe_delivered', category = 'transport', "
        "reason = 'transport', error = '{}'"
    ),
}


def intent(key: str, **kw: Any) -> Intent:
    kw.setdefault("created_at", EPOCH - 10)
    return Intent.text(TO, f"body of {key}", idempotency_key=key, **kw)


def delivered(i: Intent, fingerprint: str | None = LIVE, attempts: int = 1) -> Delivery:
    result = SendResult(
        message_id=f"wamid.{i.idempotency_key}", wa_id="15551234567", token_fingerprint=fingerprint
    )
    return Delivery(state=DELIVERED, intent=i, result=result, attempts=attempts)


def _rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        # The lease owner is each outbox's own id: whether there is one is what compares.
        return conn.execute(
            "SELECT id, idempotency_key, intent, state, attempts, category, reason, error, "
            "message_id, token_fingerprint, not_before, not_after, consumer, phone_number_id, "
            "lease_owner IS NOT NULL, lease_until, created_at, enqueued_at, updated_at "
            "FROM wa_outbox ORDER BY idempotency_key"
        ).fetchall()
    finally:
        conn.close()


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route every begin and every settle through the general statements (the old code)."""
    monkeypatch.setattr(_outbox_sqlite, "begin_insert", lambda values: (_outbox_sql.INSERT, values))
    monkeypatch.setattr(_outbox_sqlite, "plain_delivery", lambda delivery: False)


async def _in_one_batch(box: SqliteOutbox, *calls: Any) -> None:
    """Run the calls while the writer is held, so that they land in one transaction."""
    gate = threading.Event()
    blocked = asyncio.get_running_loop().run_in_executor(None, box._db.run, lambda c: gate.wait(5))
    await asyncio.sleep(0.05)
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)
    gate.set()
    await blocked
    await asyncio.gather(*tasks)
    await box.aflush()


async def _scenario(path: Path, mode: str) -> list[tuple[Any, ...]]:
    """Every pre-state, settled delivered one row at a time or many in one statement."""
    with SqliteOutbox(path, clock=Clock(EPOCH)) as box:
        deliveries = []
        for name, sql in PRE_STATES.items():
            kw: dict[str, Any] = {}
            if name in ("queued", "expired"):
                kw = {"consumer": "shop", "not_after": EPOCH + 3600}
            i = intent(name, **kw)
            if sql is not None:
                box.begin(i)
                box.flush()
            if sql:
                box._db.run(
                    lambda c, s=sql, k=name: c.execute(f"{s} WHERE idempotency_key = ?", (k,))
                )
            deliveries.append(delivered(i, fingerprint=None if name == "queued" else LIVE))
        if mode == "one":
            for d in deliveries:
                box.settle(d)
        else:
            await _in_one_batch(box, *(box.asettle(d) for d in deliveries))
    return _rows(path)


@pytest.mark.parametrize("many", [True, False], ids=["many-rows", "row-by-row"])
@pytest.mark.parametrize("mode", ["one", "batch"])
async def test_a_plain_delivery_writes_the_general_settles_row_from_every_state(
    tmp_path, monkeypatch, many, mode
):
    """Every column of every row, whatever state a delivered settle finds it in (unknown,
    sending, queued with an error, expired, failed by a webhook of this very wamid or of
    another, delivered, maybe delivered), is what the general `SETTLE` wrote."""
    monkeypatch.setattr(_outbox_jobs, "MANY", many)
    fast = await _scenario(tmp_path / "fast.db", mode)
    with monkeypatch.context() as m:
        _general(m)
        slow = await _scenario(tmp_path / "slow.db", mode)
    assert fast == slow
    states = {r[1]: r[3] for r in fast}
    assert states["failed-same-wamid"] == "failed"  # a webhook's failure of this wamid stays
    assert states["expired"] == DELIVERED  # Meta took it: the truth wins over the deadline


@pytest.mark.parametrize("many", [True, False], ids=["many-rows", "row-by-row"])
def test_a_batch_with_one_key_twice_settles_as_the_general_statements_do(
    tmp_path, monkeypatch, many
):
    """`settle_delivered_many` given one key twice in its items (its chunks split them) and
    a key it does not know ends with the rows `settle_many` leaves."""
    monkeypatch.setattr(_outbox_jobs, "MANY", many)
    a, b, c = intent("a"), intent("b", consumer="shop"), intent("c")
    items_of = [delivered(a), delivered(b, attempts=2), delivered(a, attempts=3), delivered(c)]
    results = []
    for name, run in (
        ("fast", _outbox_jobs.Jobs.settle_delivered_many),
        ("slow", _outbox_jobs.Jobs.settle_many),
    ):
        path = tmp_path / f"{name}.db"
        with SqliteOutbox(path, clock=Clock(EPOCH)) as box:
            box.begin(a)
            box.begin(b)
            box.flush()
            items = [(_outbox_sql.settle_values(d, EPOCH + 5), d) for d in items_of]
            assert box._db.run(lambda conn, i=items, r=run: r(conn, i)) == [(True, None)] * 4
        results.append(_rows(path))
    assert results[0] == results[1]


def test_every_begin_form_writes_the_bound_inserts_row(tmp_path, monkeypatch):
    """The eight `INSERT` forms (each of consumer, sender and deadline given or None) write
    what the statement with every value bound writes, column for column."""

    def scenario(path: Path) -> list[tuple[Any, ...]]:
        with SqliteOutbox(path, clock=Clock(EPOCH)) as box:
            for n in range(8):
                kw: dict[str, Any] = {}
                if n & 1:
                    kw["consumer"] = "shop"
                if n & 2:
                    kw["phone_number_id"] = "106540352242922"
                if n & 4:
                    kw["not_after"] = EPOCH + 3600
                box.begin(intent(f"k{n}", **kw))
        return _rows(path)

    fast = scenario(tmp_path / "fast.db")
    with monkeypatch.context() as m:
        _general(m)
        slow = scenario(tmp_path / "slow.db")
    assert fast == slow
    assert len({sql for sql, _ in _outbox_sql._INSERTS}) == 8


#: Text JSON writes with escapes, or that a hand-written encoder could get wrong.
NASTY = 'a "quoted" \\ back\\slash \u2028\u2029 \x01\x1f\x7f \t\n\r é 中文 👍🏽 </script>'


def _nasty_intents() -> list[Intent]:
    long = ("0123456789" * 410)[:4096]
    opts: dict[str, Any] = {"consumer": NASTY[:200], "phone_number_id": "106540352242922"}
    return [
        Intent.text(TO, NASTY, idempotency_key="t1"),
        Intent.text(TO, long, preview_url=True, idempotency_key="t2", not_after=EPOCH + 0.1),
        Intent.text(TO, NASTY, idempotency_key='k "\\ \u2028 é', created_at=EPOCH + 1 / 3, **opts),
        Intent.template(
            TO,
            "order_update",
            "en_US",
            [
                {"type": "header", "parameters": [{"type": "text", "text": NASTY}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "42"},
                        {
                            "type": "currency",
                            "currency": {
                                "fallback_value": "$1.50",
                                "code": "USD",
                                "amount_1000": 1500,
                            },
                        },
                    ],
                },
            ],
            idempotency_key="t3",
        ),
        Intent.buttons(TO, NASTY, [("yes", "Yes é"), ("no", 'N"o')], idempotency_key="t4"),
        Intent.list(
            TO,
            NASTY,
            "Slots",
            [{"title": "T\u2028", "rows": [{"id": "a", "title": "A", "description": NASTY[:72]}]}],
            idempotency_key="t5",
        ),
        Intent.location(TO, -33.8688, 151.2093, name=NASTY[:100], idempotency_key="t6"),
        Intent.reaction(TO, "wamid.abc", "👍🏽", idempotency_key="t7"),
        Intent.media(
            TO,
            "document",
            link="https://example.com/a é.pdf",
            filename=NASTY[:200],
            idempotency_key="t8",
        ),
    ]


def test_a_stored_intent_is_the_encoders_json_and_reads_back_equal(tmp_path):
    """The row's intent JSON of each kind, with text that needs escapes (quotes, backslashes,
    control characters, U+2028, astral characters, 4,096 characters), is byte for byte what
    the encoder writes of `to_dict()`, and the intent a claim or a listing reads back from it
    is the one given."""
    intents = _nasty_intents()
    for i in intents:
        assert _outbox_sql.intent_json(i) == _outbox_sql._ENCODE_INTENT(i.to_dict())
    with SqliteOutbox(tmp_path / "outbox.db", clock=Clock(EPOCH)) as box:
        box.enqueue_many(intents[:5])
        for i in intents[5:]:
            box.begin(i)
        claimed = {r.idempotency_key: r.intent for r in box.claim(numbers=10, limit=10)}
        listed = {r.idempotency_key: r.intent for r in box.list()}
        stored = dict(
            box._db.run(
                lambda c: c.execute("SELECT idempotency_key, intent FROM wa_outbox").fetchall()
            )
        )
    for i in intents:
        key = i.idempotency_key
        assert listed[key] == i
        assert stored[key] == json.dumps(i.to_dict(), separators=(",", ":"), ensure_ascii=False)
        if key in claimed:
            assert claimed[key] == i
    assert set(claimed) == {i.idempotency_key for i in intents[:5]}
