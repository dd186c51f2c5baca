"""`apply_status`: a status webhook applied to the row its echoed key names, on both outboxes.

Meta echoes `biz_opaque_callback_data`, which a guard sets to the intent's idempotency key. A
late `failed` status (a 131031 after a 200 and a wamid) turns the row `failed` with the
category a synchronous 131031 has; `sent`, `delivered` and `read` add nothing; a row already
over stays as it is; the same event twice changes nothing the second time; a status of another
wamid (a row sent again since) is left alone; and the send's own `settle`, when it comes after
the webhook, does not turn the row back to delivered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import EPOCH, Clock, graph_error
from wa_auth.errors import from_webhook_error
from wa_auth.guards import DELIVERED, EXPIRED, FAILED, MAYBE_DELIVERED, QUEUED, Delivery
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.outbox import PENDING, SENDING, MemoryOutbox, Outbox, SqliteOutbox
from wa_auth.webhooks import MessageStatus

TO = "+15551234567"
LOCKED = {
    "code": 131031,
    "title": "Business Account locked",
    "message": "Business Account locked",
    "error_data": {"details": "Business account has been locked."},
}


def intent(key: str) -> Intent:
    return Intent.text(TO, f"secret text of {key}", idempotency_key=key, created_at=EPOCH - 10)


def delivered(i: Intent, wamid: str | None = None) -> Delivery:
    result = SendResult(
        message_id=wamid or f"wamid.{i.idempotency_key}", wa_id=None, token_fingerprint=None
    )
    return Delivery(state=DELIVERED, intent=i, result=result, attempts=1)


def status(key: str | None, state: str = "failed", wamid: str | None = None, **kw: Any) -> Any:
    errors = (from_webhook_error(kw.pop("error", LOCKED)),) if state == "failed" else ()
    return MessageStatus(
        id=wamid or f"wamid.{key}",
        status=state,
        idempotency_key=key,
        errors=errors,
        key=f"{wamid or key}:{state}",
        **kw,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(EPOCH)


@pytest.fixture(params=["memory", "sqlite"])
def box(request, tmp_path, clock):
    if request.param == "memory":
        yield MemoryOutbox(clock=clock)
        return
    outbox = SqliteOutbox(tmp_path / "outbox.db", clock=clock)
    yield outbox
    outbox.close()


def test_both_outboxes_have_apply_status(box):
    """The protocol's new methods are on both outboxes."""
    assert isinstance(box, Outbox)
    assert callable(box.apply_status)
    assert callable(box.aapply_status)


def test_a_late_failure_turns_a_delivered_row_failed(box, clock):
    """A 131031 by webhook: failed, `account_state`, the reason names the code, no text."""
    i = intent("k")
    box.begin(i)
    box.settle(delivered(i))
    clock.t += 5
    row = box.apply_status(status("k"))
    assert (row.state, row.category, row.reason, row.message_id) == (
        FAILED,
        "account_state",
        "webhook:131031",
        "wamid.k",
    )
    assert row.updated_at == clock.t
    assert row.error["code"] == 131031
    assert row.dead_letter
    assert "secret text" not in repr(row.to_dict()["error"])
    assert box.get("k") == row


@pytest.mark.parametrize("before", [SENDING, MAYBE_DELIVERED])
def test_a_late_failure_turns_a_sending_or_maybe_delivered_row_failed(box, clock, before):
    """A row in flight, or one whose worker stopped, fails by webhook too."""
    i = intent("k")
    box.begin(i)
    if before == MAYBE_DELIVERED:
        box.settle(Delivery(state=MAYBE_DELIVERED, intent=i, attempts=1))
    assert box.get("k").state == before
    row = box.apply_status(status("k"))
    assert (row.state, row.category, row.lease_owner, row.lease_until) == (
        FAILED,
        "account_state",
        None,
        None,
    )


def test_the_same_event_twice_changes_nothing_the_second_time(box, clock):
    """Idempotent: the second application returns the same row, not touched again."""
    i = intent("k")
    box.settle(delivered(i))
    first = box.apply_status(status("k"))
    clock.t += 60
    second = box.apply_status(status("k"))
    assert second == first
    assert second.updated_at == first.updated_at


@pytest.mark.parametrize("state", ["sent", "delivered", "read", "deleted"])
def test_other_statuses_record_nothing(box, state):
    """`sent`, `delivered`, `read` (or a status Meta adds later) return the row unchanged."""
    i = intent("k")
    box.settle(delivered(i))
    before = box.get("k")
    assert box.apply_status(status("k", state)) == before


@pytest.mark.parametrize("setup", [PENDING, QUEUED, FAILED, EXPIRED])
def test_rows_not_accepted_or_already_over_are_left_alone(box, setup):
    """Pending and queued rows were never accepted; failed and expired rows are over."""
    i = intent("k")
    if setup == PENDING:
        box.enqueue(i)
    elif setup == QUEUED:
        error = graph_error(400, 130429)
        box.settle(Delivery(state=QUEUED, intent=i, error=error, attempts=1, not_before=EPOCH + 60))
    elif setup == FAILED:
        error = graph_error(400, 131009)
        box.settle(Delivery(state=FAILED, intent=i, error=error, attempts=1, reason="x"))
    else:
        box.settle(Delivery(state=EXPIRED, intent=i, reason="deadline"))
    before = box.get("k")
    after = box.apply_status(status("k"))
    assert after == before
    assert after.state == setup


def test_no_key_or_an_unknown_key_is_none(box):
    """A status without `biz_opaque_callback_data`, or one for a key not here: None."""
    box.settle(delivered(intent("k")))
    assert box.apply_status(status(None, wamid="wamid.k")) is None
    assert box.apply_status(status("other")) is None
    assert box.get("k").state == DELIVERED


def test_a_status_of_another_wamid_is_left_alone(box):
    """A row sent again since (a new wamid) keeps what its last send learned."""
    i = intent("k")
    box.settle(delivered(i, "wamid.second"))
    row = box.apply_status(status("k", wamid="wamid.first"))
    assert (row.state, row.message_id) == (DELIVERED, "wamid.second")


def test_a_settle_after_the_webhook_keeps_the_row_failed(box):
    """The webhook came before the send's outcome was recorded: delivered does not win."""
    i = intent("k")
    box.begin(i)
    box.apply_status(status("k"))
    box.settle(delivered(i))
    row = box.get("k")
    assert (row.state, row.category, row.message_id) == (FAILED, "account_state", "wamid.k")


def test_a_failed_row_is_sent_again_with_a_new_wamid(box):
    """Sending a late-failed row again and delivering it records the new delivery."""
    i = intent("k")
    box.settle(delivered(i))
    box.apply_status(status("k"))
    box.begin(i)
    box.settle(delivered(i, "wamid.again"))
    assert (box.get("k").state, box.get("k").message_id) == (DELIVERED, "wamid.again")


def test_a_status_without_errors_fails_the_row_as_unknown(box):
    """A failed status Meta sent without an error object: failed, `unknown`, reason `webhook`."""
    box.settle(delivered(intent("k")))
    event = MessageStatus(id="wamid.k", status="failed", idempotency_key="k", key="k:failed")
    row = box.apply_status(event)
    assert (row.state, row.category, row.reason, row.error) == (FAILED, "unknown", "webhook", None)


def test_the_async_form_does_the_same(box):
    """`aapply_status` applies the event like `apply_status`."""
    i = intent("k")
    box.settle(delivered(i))

    async def main() -> Any:
        first = await box.aapply_status(status("k"))
        return first, await box.aapply_status(status("k")), await box.aapply_status(status(None))

    first, second, none = asyncio.run(main())
    assert (first.state, second, none) == (FAILED, first, None)


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["sent", "delivered", "read", "failed"]),
            st.sampled_from(["wamid.k", "wamid.other"]),
        ),
        max_size=8,
    )
)
def test_any_sequence_agrees_on_both_outboxes_and_never_goes_back(tmp_path_factory, events):
    """Any order of statuses: both outboxes end alike, and a failed row never leaves failed."""
    clock = Clock(EPOCH)
    memory = MemoryOutbox(clock=clock)
    path = tmp_path_factory.mktemp("status") / "o.db"
    with SqliteOutbox(path, clock=clock) as sqlite:
        for outbox in (memory, sqlite):
            outbox.settle(delivered(intent("k")))
        seen_failed = False
        for state, wamid in events:
            a = memory.apply_status(status("k", state, wamid=wamid))
            b = sqlite.apply_status(status("k", state, wamid=wamid))
            assert (a.state, a.category, a.reason, a.message_id) == (
                b.state,
                b.category,
                b.reason,
                b.message_id,
            )
            seen_failed = seen_failed or a.state == FAILED
            if seen_failed:
                assert a.state == FAILED
        expect = FAILED if ("failed", "wamid.k") in events else DELIVERED
        assert memory.get("k").state == expect
