"""Guards end to end against the sandbox: real sockets, Meta's literal payloads, every intent
accounted for. The guard's clock and sleep are fakes where a wait would only slow the test
down: the sandbox does not time seeded faults, it answers them in order."""

from __future__ import annotations

import asyncio

import pytest

import wa_auth
from helpers import Clock
from wa_auth.events import Counters, Event, Events, MessageDelivered
from wa_auth.guards import (
    DELIVERED,
    FAILED,
    MAYBE_DELIVERED,
    QUEUED,
    Guard,
    Handlers,
    RetryPolicy,
)
from wa_auth.intents import Intent
from wa_auth.outbox import MemoryOutbox
from wa_auth.providers import Token
from wa_auth.sandbox import Sandbox

TO = "+15551234567"


@pytest.fixture
def sandbox():
    with Sandbox(seed=21) as sb:
        yield sb


def _sync(sb: Sandbox, token: str, **kw):
    return wa_auth.WhatsAppClient(
        base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id, **kw
    )


def _guard(client, clock: Clock, **kw) -> Guard:
    return Guard(
        client,
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        asleep=clock.asleep,
        seed=3,
        **kw,
    )


def _sent_with(sb: Sandbox, token: str) -> list[object]:
    fingerprint = Token(token).fingerprint
    return [r for r in sb.requests() if r.token_fingerprint == fingerprint]


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["AsyncWhatsAppClient", "FastAsyncWhatsAppClient"])
async def test_a_token_revoked_mid_batch_sends_nothing_more_with_it(sandbox, name):
    """Revoked after 20 deliveries with 32 guarded sends in flight: every intent has a
    Delivery, and the dead token goes out at most once per send that was already in flight."""
    token = sandbox.issue_token()
    sandbox.set_faults(latency=0.01)
    delivered = 0

    def revoke_after_twenty(event: Event) -> None:
        nonlocal delivered
        if isinstance(event, MessageDelivered):
            delivered += 1
            if delivered == 20:
                sandbox.set_token_state(token, "revoked_password_changed")

    client = getattr(wa_auth, name)(
        base_url=sandbox.base_url,
        token=token,
        phone_number_id=sandbox.phone_number_id,
        events=Events(revoke_after_twenty),
    )
    async with client:
        guard = Guard(client)
        intents = [Intent.text(TO, f"m{i}") for i in range(300)]
        deliveries = await guard.asend_many(intents, concurrency=32)
    assert [d.intent for d in deliveries] == intents  # none lost, in order
    states = {d.state for d in deliveries}
    assert states == {DELIVERED, FAILED}
    failed = [d for d in deliveries if d.state == FAILED]
    assert {d.category for d in failed} == {"token_revoked"}
    ok = sum(d.ok for d in deliveries)
    after_revocation = len(_sent_with(sandbox, token)) - ok
    # At most the sends in flight when the first 401 came back carried the dead token.
    assert 1 <= after_revocation <= 32
    assert len(failed) == 300 - ok


def test_a_seeded_rate_limit_is_retried_after_retry_after_and_delivered(sandbox):
    """130429 twice (Retry-After 2 s): the guard waits at least that, then delivers."""
    sandbox.fail_next(130429, times=2, retry_after=2)
    clock = Clock()
    with _sync(sandbox, sandbox.issue_token()) as client:
        delivery = _guard(client, clock).send(Intent.text(TO, "hi"))
    assert (delivery.state, delivery.attempts) == (DELIVERED, 3)
    assert len(clock.sleeps) == 2
    assert min(clock.sleeps) >= 2.0
    assert [r.outcome for r in sandbox.requests()] == ["fault", "fault", "accepted"]


@pytest.mark.parametrize("code", [131048, 131049, 80007])
def test_a_long_cap_queues_instead_of_retrying(sandbox, code):
    """131048/131049 (hours) and 80007 (minutes to regain access): one request, queued."""
    sandbox.fail_next(code, regain_access_minutes=30 if code == 80007 else None)
    clock = Clock()
    box = MemoryOutbox()
    with _sync(sandbox, sandbox.issue_token()) as client:
        delivery = _guard(client, clock, outbox=box).send(Intent.text(TO, "hi"))
    assert (delivery.state, delivery.category, delivery.attempts) == (QUEUED, "rate_limited", 1)
    assert clock.sleeps == []
    assert delivery.not_before is not None
    assert delivery.not_before - clock.wall() >= 60
    assert len(sandbox.requests()) == 1
    assert box.get(delivery.intent.idempotency_key).state == QUEUED


def test_a_number_state_pauses_that_number_only_and_the_probe_resumes_it(sandbox):
    """An unregistered number is paused: 0 requests to it while paused, the other number keeps
    sending; its probe sees health_status BLOCKED, then AVAILABLE once it is fixed."""
    first, second = sandbox.phone_number_ids[:2]
    sandbox.set_number_state(first, "not_registered")
    clock = Clock()
    counters = Counters()
    with _sync(sandbox, sandbox.issue_token(), events=Events(counters)) as client:
        guard = _guard(client, clock, outbox=MemoryOutbox())
        hit = guard.send(Intent.text(TO, "one", phone_number_id=first))
        assert (hit.state, hit.category) == (QUEUED, "account_state")
        before = len(sandbox.requests())
        for i in range(5):
            held = guard.send(Intent.text(TO, f"held {i}", phone_number_id=first))
            assert (held.state, held.reason, held.attempts) == (QUEUED, "paused", 0)
            assert guard.send(Intent.text(TO, f"other {i}", phone_number_id=second)).ok
        assert [r.phone_number_id for r in sandbox.requests()[before:]] == [second] * 5
        clock.t += guard.policy.probe_interval
        still = guard.send(Intent.text(TO, "probe sees BLOCKED", phone_number_id=first))
        assert still.reason == "paused"
        assert sandbox.requests()[-1].endpoint != "send_message"  # only the probe went out
        sandbox.set_number_state(first, "ok")
        clock.t += guard.policy.probe_interval
        resumed = guard.send(Intent.text(TO, "after the fix", phone_number_id=first))
    assert resumed.state == DELIVERED
    assert counters.get("guard.sender_paused") == 1
    assert counters.get("guard.sender_resumed") == 1


def test_an_account_lock_pauses_and_an_operator_resumes(sandbox):
    """131031 pauses the number; `resume()` lifts it without waiting for a probe."""
    sandbox.set_account_state("locked")
    with _sync(sandbox, sandbox.issue_token()) as client:
        guard = _guard(client, Clock())
        assert guard.send(Intent.text(TO, "locked")).category == "account_state"
        before = len(sandbox.requests())
        assert guard.send(Intent.text(TO, "held")).reason == "paused"
        assert len(sandbox.requests()) == before
        sandbox.set_account_state("ok")
        guard.resume(sandbox.phone_number_id)
        assert guard.send(Intent.text(TO, "resumed")).ok


def test_maybe_delivered_is_not_retried_by_default(sandbox):
    """The answer is lost after Meta accepted the message: one request, `maybe_delivered`."""
    sandbox.fail_next("drop_after_accept")
    with _sync(sandbox, sandbox.issue_token()) as client:
        delivery = _guard(client, Clock()).send(Intent.text(TO, "once"))
    assert delivery.state == MAYBE_DELIVERED
    assert len(sandbox.requests()) == 1
    assert len(sandbox.messages()) == 1  # Meta did accept it: a retry would duplicate it


def test_handlers_and_fallback_once_per_final_failure(sandbox):
    """A transient fault retried, then an invalid request: one handler call, one fallback call."""
    sandbox.fail_next(131000)
    sandbox.fail_next(131009)
    calls: list[str] = []

    def fallback(intent: Intent, error: wa_auth.WhatsAppError) -> None:
        calls.append(f"fallback:{error.category}")

    handlers = Handlers(
        on_transient=lambda i, e: calls.append("transient"),
        on_invalid_request=lambda i, e: calls.append(f"invalid:{e.code}"),
    )
    with _sync(sandbox, sandbox.issue_token()) as client:
        delivery = _guard(client, Clock(), handlers=handlers, fallback=fallback).send(
            Intent.text(TO, "hi")
        )
    assert (delivery.state, delivery.attempts) == (FAILED, 2)
    assert calls == ["invalid:131009", "fallback:invalid_request"]


def test_guards_sharing_a_verdict_store_send_nothing_with_a_token_proved_dead(sandbox):
    """A second guard (another client, same verdicts) refuses the dead token before any I/O."""
    token = sandbox.issue_token()
    sandbox.set_token_state(token, "expired")
    verdicts = wa_auth.TokenVerdicts()
    with (
        _sync(sandbox, token, verdicts=verdicts) as one,
        _sync(sandbox, token, verdicts=verdicts) as two,
    ):
        assert _guard(one, Clock()).send(Intent.text(TO, "a")).category == "token_expired"
        before = len(sandbox.requests())
        assert _guard(two, Clock()).send(Intent.text(TO, "b")).category == "token_expired"
        assert len(sandbox.requests()) == before


def test_required_scopes_refuse_a_token_without_messaging(sandbox):
    """A token without whatsapp_business_messaging: refused by its health, no send."""
    token = sandbox.issue_token(scopes=["whatsapp_business_management"])
    with _sync(sandbox, token, app_token_provider=sandbox.app_token) as client:
        guard = _guard(client, Clock(), required_scopes=["whatsapp_business_messaging"])
        delivery = guard.send(Intent.text(TO, "hi"))
    assert delivery.category == "insufficient_permission"
    assert not [r for r in sandbox.requests() if r.endpoint == "send_message"]


def test_async_fast_guard_paces_and_retries_against_the_sandbox(sandbox):
    """The fast client under a guard: a seeded 131056 for one recipient is retried after 6 s."""
    sandbox.fail_next(131056, recipient=TO)
    clock = Clock()

    async def main() -> list[wa_auth.guards.Delivery]:
        async with wa_auth.FastAsyncWhatsAppClient(
            base_url=sandbox.base_url,
            token=sandbox.issue_token(),
            phone_number_id=sandbox.phone_number_id,
        ) as client:
            guard = _guard(client, clock, policy=RetryPolicy(budget=10.0))
            return await guard.asend_many(
                [Intent.text(TO, "a"), Intent.text("+15557654321", "b")], concurrency=2
            )

    first, second = asyncio.run(main())
    assert (first.state, first.attempts) == (DELIVERED, 2)
    assert (second.state, second.attempts) == (DELIVERED, 1)
    assert max(clock.sleeps) >= 6.0


@pytest.mark.parametrize("rate", [80.0, float("inf")])
def test_a_zero_budget_with_a_limiter_still_sends_once(sandbox, rate):
    """`budget=0` is one attempt with no waiting, limiter or not: time passing between the
    start and the pacing step must not turn the free slot into "pacing allows no send"."""
    from wa_auth.pacing import LocalRateLimiter

    with _sync(sandbox, sandbox.issue_token()) as client:
        guard = Guard(
            client,
            policy=RetryPolicy(budget=0),
            limiter=LocalRateLimiter(rate=rate, pair_interval=None),
        )
        deliveries = [guard.send(Intent.text(TO, f"hi {n}")) for n in range(5)]
    assert deliveries[0].state == DELIVERED
    if rate == float("inf"):  # nothing to wait for: every one goes
        assert [d.state for d in deliveries] == [DELIVERED] * 5
    else:  # the next slot is 12.5 ms away, past a budget of 0: queued unsent, never failed
        assert {d.reason for d in deliveries[1:]} <= {None, "pacing"}
    assert len(sandbox.requests()) == sum(d.state == DELIVERED for d in deliveries)


@pytest.mark.anyio
async def test_asend_many_gives_an_intent_the_outbox_refuses_its_own_delivery(sandbox):
    """One intent already being sent by another worker (`busy`) does not take the batch down:
    it is `failed` with reason `outbox`, and every other intent is delivered and reported."""
    from wa_auth.errors import OutboxError

    outbox = MemoryOutbox()
    intents = [Intent.text(TO, f"hi {n}", idempotency_key=f"k{n}") for n in range(5)]
    outbox.begin(intents[2])  # another worker is sending k2 right now
    async with wa_auth.AsyncWhatsAppClient(
        base_url=sandbox.base_url,
        token=sandbox.issue_token(),
        phone_number_id=sandbox.phone_number_id,
    ) as client:
        deliveries = await Guard(client, outbox=outbox).asend_many(intents)
    assert [d.state for d in deliveries] == [DELIVERED, DELIVERED, "failed", DELIVERED, DELIVERED]
    assert deliveries[2].reason == "outbox"
    assert isinstance(deliveries[2].error, OutboxError)
    assert deliveries[2].error.kind == "busy"
    assert len(sandbox.messages()) == 4
