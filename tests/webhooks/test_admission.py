"""Exactly once, in order: the admission policy (driven by hand and by both drivers) and the
memory ledger (its window and size bound), with a hypothesis state machine over redeliveries,
reordering and the clock."""

from __future__ import annotations

import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from helpers import Clock
from wa_auth.errors import ConfigurationError, OutboxUnavailableError
from wa_auth.events import Events
from wa_auth.webhooks import (
    APPLY,
    DUPLICATE,
    STALE,
    AccountUpdate,
    MemoryWebhookLedger,
    MessageStatus,
    WebhookAccepted,
    WebhookDuplicate,
    WebhookLedger,
    WebhookStale,
    aadmit,
    admission,
    admit,
    arelease,
    release,
)
from wa_auth.webhooks._admission import Advance, Claim, Release, Retreat

WINDOW = 100.0


def status(message: str, name: str, key: str | None = None) -> MessageStatus:
    return MessageStatus(id=message, status=name, key=key or f"status:{message}:{name}")


def test_the_flow_claims_then_advances():
    """Driven by hand: Claim the key, then Advance the message; no ledger needed."""
    flow = admission(status("m", "delivered"))

    assert next(flow) == Claim("status:m:delivered")
    assert flow.send(True) == Advance("m", 2)
    with pytest.raises(StopIteration) as done:
        flow.send(3)
    assert done.value.value.verdict == STALE
    assert done.value.value.furthest == 3


def test_a_claimed_key_is_a_duplicate_without_advancing():
    """A key already claimed ends the flow at once: duplicate, the message untouched."""
    flow = admission(status("m", "read"))
    next(flow)
    with pytest.raises(StopIteration) as done:
        flow.send(False)
    assert done.value.value.verdict == DUPLICATE


def test_an_event_without_order_is_applied_once():
    """An account update is deduped by its key and applied, never ordered."""
    ledger = MemoryWebhookLedger()
    event = AccountUpdate(key="sha256:abc", event="DISABLED_UPDATE")

    assert admit(event, ledger).verdict == APPLY
    assert admit(event, ledger).verdict == DUPLICATE


def test_statuses_out_of_order_never_go_back():
    """read, then delivered, then sent: only read applies; a late failed still applies (final)."""
    ledger = MemoryWebhookLedger()
    verdicts = [admit(status("m", s), ledger).verdict for s in ("read", "delivered", "sent")]

    assert verdicts == [APPLY, STALE, STALE]
    assert admit(status("m", "failed"), ledger).verdict == APPLY
    assert admit(status("m", "read"), ledger).verdict == DUPLICATE


def test_a_late_delivered_after_failed_is_recorded_not_applied():
    """failed is final: a delivered after it is stale, and its redelivery a duplicate."""
    ledger = MemoryWebhookLedger()
    admit(status("m", "sent"), ledger)
    admit(status("m", "failed"), ledger)

    assert admit(status("m", "delivered"), ledger).verdict == STALE
    assert admit(status("m", "delivered"), ledger).verdict == DUPLICATE


def test_an_unknown_status_is_deduped_but_not_ordered():
    """A status outside sent/delivered/read/failed is applied once and leaves the order alone."""
    ledger = MemoryWebhookLedger()
    admit(status("m", "read"), ledger)

    assert admit(status("m", "deleted"), ledger).verdict == APPLY
    assert admit(status("m", "deleted"), ledger).verdict == DUPLICATE
    assert admit(status("m", "delivered"), ledger).verdict == STALE


def test_release_lets_the_redelivery_apply():
    """When applying failed, release() forgets the key and puts the message back."""
    ledger = MemoryWebhookLedger()
    admit(status("m", "sent"), ledger)
    admitted = admit(status("m", "delivered"), ledger)

    release(admitted, ledger)

    assert admit(status("m", "delivered"), ledger).verdict == APPLY


def test_release_keeps_a_later_status_recorded_meanwhile():
    """Putting a message back is compare-and-set: a read recorded since stays."""
    ledger = MemoryWebhookLedger()
    delivered = admit(status("m", "delivered"), ledger)
    admit(status("m", "read"), ledger)

    release(delivered, ledger)

    assert ledger.advance("m", 3) == 3
    assert admit(status("m", "delivered"), ledger).verdict == STALE


def test_release_of_a_duplicate_changes_nothing():
    """Undoing a duplicate must not forget the first delivery's key."""
    ledger = MemoryWebhookLedger()
    admit(status("m", "sent"), ledger)
    duplicate = admit(status("m", "sent"), ledger)

    release(duplicate, ledger)

    assert admit(status("m", "sent"), ledger).verdict == DUPLICATE


def test_each_verdict_emits_its_event(counters):
    """accepted, duplicate and stale are events, counted by name (and category when failed)."""
    events = Events(counters)
    seen = []
    events.subscribe(seen.append)
    ledger = MemoryWebhookLedger()
    failed = MessageStatus(id="m", status="failed", key="status:m:failed", phone_number_id="9")

    admit(failed, ledger, events=events)
    admit(failed, ledger, events=events)
    admit(status("m", "read"), ledger, events=events)

    assert [type(e) for e in seen] == [WebhookAccepted, WebhookDuplicate, WebhookStale]
    assert (seen[0].type, seen[0].message_id, seen[0].status, seen[0].phone_number_id) == (
        "status",
        "m",
        "failed",
        "9",
    )
    assert seen[2].furthest == 4
    assert counters.snapshot() == {
        "webhook.accepted": 1,
        "webhook.duplicate": 1,
        "webhook.stale": 1,
    }


@pytest.mark.anyio
async def test_the_async_driver_decides_the_same():
    """aadmit / arelease run the same flow with the ledger's a-methods."""
    ledger = MemoryWebhookLedger()
    first = await aadmit(status("m", "delivered"), ledger)
    assert first.verdict == APPLY
    assert (await aadmit(status("m", "sent"), ledger)).verdict == STALE
    await arelease(first, ledger)
    assert (await aadmit(status("m", "delivered"), ledger)).verdict == APPLY


class _FailingLedger(MemoryWebhookLedger):
    def advance(self, message_id: str, order: int) -> int | None:
        raise OutboxUnavailableError("the ledger's file is locked", kind="locked")


def test_a_ledger_failure_is_raised_typed():
    """A ledger that fails raises its WhatsAppError out of admit: nothing is decided."""
    with pytest.raises(OutboxUnavailableError):
        admit(status("m", "sent"), _FailingLedger())


def test_the_memory_ledger_is_a_webhook_ledger():
    """MemoryWebhookLedger implements the protocol (both forms of every method)."""
    assert isinstance(MemoryWebhookLedger(), WebhookLedger)


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 0}, {"window": -1}, {"window": "7d"}, {"max_keys": 0}, {"max_keys": 1.5}],
    ids=["zero-window", "negative-window", "text-window", "zero-keys", "float-keys"],
)
def test_bad_bounds_are_configuration_errors(kwargs):
    """A window or size bound that cannot work is refused by name."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        MemoryWebhookLedger(**kwargs)


def test_a_key_is_forgotten_after_the_window():
    """Past the window a key is new again (Meta retries for 7 days; the default covers it)."""
    clock = Clock()
    ledger = MemoryWebhookLedger(window=WINDOW, clock=clock)
    assert ledger.claim("k")
    clock.t = WINDOW - 1
    assert not ledger.claim("k")
    clock.t = WINDOW + 1
    assert ledger.claim("k")


def test_the_size_bound_forgets_the_oldest_first():
    """Past max_keys the oldest key goes first, and the ledger never grows beyond it."""
    ledger = MemoryWebhookLedger(max_keys=3)
    for key in "abcd":
        assert ledger.claim(key)

    assert len(ledger) == 3
    assert ledger.claim("a")
    assert not ledger.claim("d")


def test_claims_from_many_threads_admit_each_key_once():
    """Twenty threads deliver the same 200 events: no key is applied twice, every key is
    decided once (applied, or stale when a faster thread already moved its message on), and
    each message's final status, `failed`, is applied exactly once."""
    ledger = MemoryWebhookLedger()
    events = [
        status(f"m{i}", s) for i in range(50) for s in ("sent", "delivered", "read", "failed")
    ]
    decided: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def deliver() -> None:
        barrier.wait(timeout=30)
        for event in events:
            verdict = admit(event, ledger).verdict
            if verdict != DUPLICATE:
                with lock:
                    decided.append((event.key, verdict))

    threads = [threading.Thread(target=deliver) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    keys = [key for key, _ in decided]
    assert sorted(keys) == sorted({e.key for e in events})
    applied = {key for key, verdict in decided if verdict == APPLY}
    assert {f"status:m{i}:failed" for i in range(50)} <= applied
    assert {verdict for _, verdict in decided} <= {APPLY, STALE}


_MESSAGES = ("m1", "m2", "m3")
_STATUSES = ("sent", "delivered", "read", "failed", "deleted")


class LedgerMachine(RuleBasedStateMachine):
    """Deliveries in any order, redelivered at any time, with the clock moving: the verdicts
    match a model in which a key is remembered for the window and a message only moves on."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.ledger = MemoryWebhookLedger(window=WINDOW, max_keys=1000, clock=self.clock)
        #: key -> when it was claimed
        self.claimed: dict[str, float] = {}
        #: message -> (furthest order, when it was set)
        self.furthest: dict[str, tuple[int, float]] = {}

    def _live(self, when: float) -> bool:
        return self.clock.t < when + WINDOW

    @rule(message=st.sampled_from(_MESSAGES), name=st.sampled_from(_STATUSES))
    def deliver(self, message: str, name: str) -> None:
        event = status(message, name)
        verdict = admit(event, self.ledger).verdict
        seen = event.key in self.claimed and self._live(self.claimed[event.key])
        if seen:
            assert verdict == DUPLICATE
            return
        self.claimed[event.key] = self.clock.t
        order = event.order
        held = self.furthest.get(message)
        previous = held[0] if held is not None and self._live(held[1]) else None
        if order is None:
            assert verdict == APPLY
        elif previous is not None and previous >= order:
            assert verdict == STALE
        else:
            assert verdict == APPLY
            assert previous is None or order > previous
            self.furthest[message] = (order, self.clock.t)

    @rule(seconds=st.sampled_from([1.0, 30.0, WINDOW / 2, WINDOW + 1]))
    def wait(self, seconds: float) -> None:
        self.clock.t += seconds

    @invariant()
    def bounded(self) -> None:
        assert len(self.ledger) <= 1000


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLedger = LedgerMachine.TestCase


def test_release_and_retreat_are_effects_too():
    """The undo flow yields Release, then Retreat with the order it put there."""
    from wa_auth.webhooks import revocation

    ledger = MemoryWebhookLedger()
    admitted = admit(status("m", "read"), ledger)
    flow = revocation(admitted)

    assert next(flow) == Release("status:m:read")
    assert flow.send(None) == Retreat("m", 3, None)
