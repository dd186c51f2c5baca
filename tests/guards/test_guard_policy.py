"""The guard's policy with a fake clock and a scripted client: no sockets, no sleeping.

`decide` is tested as a pure function (property tests: never a retry of a non-retryable
category, never a wait past the budget), and `Guard.send` / `Guard.asend` are driven over a
client whose answers are scripted, so every branch (retry, queue, pause, probe, circuit,
handlers, fallback, deadline, pacing) is checked without a server.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import EPOCH, Clock, graph_error
from wa_auth import errors
from wa_auth.errors import TransportError, WhatsAppError
from wa_auth.events import Counters, Events
from wa_auth.guards import (
    DELIVERED,
    EXPIRED,
    FAILED,
    MAYBE_DELIVERED,
    QUEUED,
    Guard,
    Handlers,
    RetryPolicy,
    decide,
    guarded,
)
from wa_auth.intents import Intent
from wa_auth.models import PhoneNumber, SendResult, TokenHealth
from wa_auth.outbox import MemoryOutbox
from wa_auth.pacing import LocalRateLimiter, MemoryPauseStore

PHONE = "106540352242922"
OTHER = "106540352242999"
TO = "+15551234567"


def rate() -> WhatsAppError:
    return graph_error(400, 130429)


def pair() -> WhatsAppError:
    return graph_error(400, 131056)


def cap() -> WhatsAppError:
    return graph_error(400, 131048)


def transient() -> WhatsAppError:
    return graph_error(500, 131000)


def expired_token() -> WhatsAppError:
    return graph_error(401, 190, 463)


def locked() -> WhatsAppError:
    return graph_error(403, 131031)


def invalid() -> WhatsAppError:
    return graph_error(400, 132001)


def lost() -> WhatsAppError:
    return TransportError("ReadTimeout: no answer", maybe_delivered=True)


class Script:
    """A client whose sends answer from a script: an exception to raise, or success."""

    def __init__(self, answers: Iterable[Any] = (), *, probes: Iterable[Any] = ()) -> None:
        self.answers = list(answers)
        self.probes = list(probes)
        self.sent: list[Intent] = []
        self.probed: list[str] = []
        self.events = Events()
        self.consumer = "tests"
        self.phone_number_id = PHONE
        self.scopes: tuple[str, ...] = (
            "whatsapp_business_messaging",
            "whatsapp_business_management",
        )

    def _answer(self, intent: Intent) -> SendResult:
        self.sent.append(intent)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, BaseException):
            raise answer
        return SendResult(
            message_id=f"wamid.{len(self.sent)}", wa_id=TO[1:], token_fingerprint="sha256:abc"
        )

    def send(self, intent: Intent) -> SendResult:
        return self._answer(intent)

    def get_phone_number(self, *, phone_number_id: str) -> PhoneNumber:
        self.probed.append(phone_number_id)
        answer = self.probes.pop(0) if self.probes else "AVAILABLE"
        if isinstance(answer, BaseException):
            raise answer
        return PhoneNumber(id=phone_number_id, can_send_message=answer)

    def token_health(self) -> TokenHealth:
        return TokenHealth(valid=True, token_fingerprint="sha256:abc", scopes=self.scopes)


class AsyncScript(Script):
    async def send(self, intent: Intent) -> SendResult:  # type: ignore[override]
        return self._answer(intent)

    async def get_phone_number(self, *, phone_number_id: str) -> PhoneNumber:  # type: ignore[override]
        return Script.get_phone_number(self, phone_number_id=phone_number_id)

    async def token_health(self) -> TokenHealth:  # type: ignore[override]
        return Script.token_health(self)


def _guard(client: Script, clock: Clock, **kw: Any) -> Guard:
    counters = kw.pop("counters", None)
    events = Events(counters) if counters is not None else Events()
    return Guard(
        client,
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        asleep=clock.asleep,
        seed=1,
        events=events,
        **kw,
    )


def _intent(**kw: Any) -> Intent:
    return Intent.text(TO, "hello", created_at=EPOCH, **kw)


# --- decide: the pure decision ------------------------------------------------------------------

CATEGORIES = [
    expired_token,
    lambda: graph_error(401, 190, 460),
    lambda: graph_error(403, 10),
    locked,
    invalid,
    rate,
    pair,
    cap,
    transient,
    lost,
    lambda: TransportError("ConnectError: not sent", maybe_delivered=False, max_attempts=3),
]


@given(
    make=st.sampled_from(CATEGORIES),
    attempt=st.integers(1, 10),
    elapsed=st.floats(0, 100),
    budget=st.floats(0, 60),
    seed=st.integers(0, 2**32),
    maybe=st.booleans(),
)
def test_decide_never_retries_what_cannot_succeed_nor_past_the_budget(
    make, attempt, elapsed, budget, seed, maybe
):
    """A retry only for transient / rate-limited failures, within attempts and the budget."""
    policy = RetryPolicy(budget=budget, retry_maybe_delivered=maybe)
    error = make()
    decision = decide(policy, error, attempt, elapsed, random.Random(seed))
    if decision.retry:
        assert error.category in {"transient", "rate_limited"}
        assert elapsed + decision.delay <= budget
        assert decision.delay >= (error.retry_after or 0)
        assert attempt < policy.max_attempts
        if getattr(error, "maybe_delivered", False):
            assert maybe
    else:
        assert decision.delay == 0


@given(attempt=st.integers(1, 20), seed=st.integers(0, 2**32))
def test_decide_backs_off_with_full_jitter_under_a_doubling_cap(attempt, seed):
    """The delay is random under min(max_backoff, backoff * 2**(attempt-1)), floored by retry_after."""
    policy = RetryPolicy(max_attempts=50, budget=1e9)
    decision = decide(policy, transient(), attempt, 0.0, random.Random(seed))
    error = transient()
    if attempt < min(policy.max_attempts, error.max_attempts):
        assert decision.retry
        ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
        floor = error.retry_after or 0.0
        assert floor <= decision.delay <= max(ceiling, floor)


# --- the guard over a scripted client -----------------------------------------------------------


def test_delivered_first_time():
    """A success is `delivered` with the SendResult, one attempt, nothing slept."""
    clock, client = Clock(), Script()
    delivery = _guard(client, clock).send(_intent())
    assert (delivery.state, delivery.attempts, clock.sleeps) == (DELIVERED, 1, [])
    assert delivery.result is not None
    assert delivery.ok
    assert delivery.raise_for_error() is delivery


def test_rate_limit_is_retried_after_its_retry_after_and_delivered():
    """130429 twice, then success: two waits of at least Retry-After, three attempts."""
    clock, client = Clock(), Script([rate(), rate()])
    counters = Counters()
    delivery = _guard(client, clock, counters=counters).send(_intent())
    assert (delivery.state, delivery.attempts) == (DELIVERED, 3)
    assert len(clock.sleeps) == 2
    assert all(s >= 1.0 for s in clock.sleeps)
    assert counters.get("guard.retrying", "rate_limited") == 2
    assert counters.get("guard.delivered") == 1


@pytest.mark.parametrize("outbox", [False, True], ids=["no-outbox", "outbox"])
def test_a_long_cap_is_not_retried_but_queued_with_its_not_before(outbox):
    """131048 (an hours-long cap): one attempt, no sleep; queued (or failed) with not_before."""
    clock, client = Clock(), Script([cap()])
    box = MemoryOutbox() if outbox else None
    delivery = _guard(client, clock, outbox=box).send(_intent())
    assert delivery.attempts == 1
    assert clock.sleeps == []
    assert delivery.state == (QUEUED if outbox else FAILED)
    assert delivery.category == "rate_limited"
    assert delivery.not_before is not None
    assert delivery.not_before >= EPOCH + 3600
    if box is not None:
        assert [r.state for r in box.rows()] == [QUEUED]


def test_transient_retries_stop_at_the_budget():
    """Transient failures forever: retries sleep, and never past the 30 s budget."""
    clock, client = Clock(), Script([transient() for _ in range(50)])
    delivery = _guard(client, clock, policy=RetryPolicy(max_attempts=50, budget=5.0)).send(
        _intent()
    )
    assert delivery.state == FAILED
    assert delivery.category == "transient"
    assert sum(clock.sleeps) <= 5.0


@pytest.mark.parametrize(
    "make",
    [expired_token, lambda: graph_error(401, 190, 460), lambda: graph_error(403, 10), invalid],
)
def test_never_retried_categories_fail_at_once(make):
    """Token, permission and invalid-request failures: one attempt, no sleep, failed."""
    clock, client = Clock(), Script([make(), make()])
    delivery = _guard(client, clock).send(_intent())
    assert (delivery.state, delivery.attempts, clock.sleeps) == (FAILED, 1, [])
    assert len(client.sent) == 1


def test_maybe_delivered_is_not_retried_by_default():
    """A lost answer is `maybe_delivered`, sent once; with the opt-in it is retried."""
    clock, client = Clock(), Script([lost()])
    delivery = _guard(client, clock).send(_intent())
    assert (delivery.state, len(client.sent)) == (MAYBE_DELIVERED, 1)

    clock, client = Clock(), Script([lost()])
    policy = RetryPolicy(retry_maybe_delivered=True)
    delivery = _guard(client, clock, policy=policy).send(_intent())
    assert (delivery.state, len(client.sent)) == (DELIVERED, 2)


def test_an_expired_intent_is_never_sent():
    """Past `not_after` an intent ends `expired` without a request."""
    clock, client = Clock(), Script()
    delivery = _guard(client, clock).send(_intent(not_after=EPOCH - 1))
    assert (delivery.state, client.sent) == (EXPIRED, [])


def test_an_intent_whose_deadline_passes_during_retries_expires():
    """Retries stop when the deadline passes in between: `expired`, not one more send."""
    clock, client = Clock(), Script([rate() for _ in range(5)])
    delivery = _guard(client, clock).send(_intent(not_after=EPOCH + 1.5))
    assert delivery.state == EXPIRED
    assert len(client.sent) == 2


def test_account_state_pauses_the_number_and_the_probe_resumes_it():
    """131031 pauses the number: later intents are held without a request; a probe resumes."""
    clock, client = Clock(), Script([locked()], probes=["BLOCKED", "AVAILABLE"])
    counters = Counters()
    box = MemoryOutbox()
    guard = _guard(client, clock, outbox=box, counters=counters)
    first = guard.send(_intent())
    assert (first.state, first.category, first.reason) == (QUEUED, "account_state", "account_state")
    held = guard.send(_intent())
    assert (held.state, held.reason, held.attempts) == (QUEUED, "paused", 0)
    assert len(client.sent) == 1  # no request while paused
    # Another number keeps sending.
    assert guard.send(_intent(phone_number_id=OTHER)).state == DELIVERED
    clock.t += guard.policy.probe_interval
    assert guard.send(_intent()).reason == "paused"  # the probe says BLOCKED
    assert client.probed == [PHONE]
    clock.t += guard.policy.probe_interval
    resumed = guard.send(_intent())
    assert resumed.state == DELIVERED
    assert client.probed == [PHONE, PHONE]
    assert counters.get("guard.sender_paused") == 1
    assert counters.get("guard.sender_resumed") == 1


def test_an_operator_resumes_a_paused_number():
    """`guard.resume()` lifts the pause at once, without waiting for the probe."""
    clock, client = Clock(), Script([locked()])
    guard = _guard(client, clock)
    assert guard.send(_intent()).state == FAILED
    assert guard.paused()
    guard.resume(PHONE)
    assert guard.paused() == []
    assert guard.send(_intent()).state == DELIVERED


def test_a_shared_pause_store_pauses_the_number_for_every_guard():
    """Two guards on one pause store: the second holds the number the first paused."""
    store = MemoryPauseStore()
    clock = Clock()
    first = _guard(Script([locked()]), clock, pauses=store)
    second_client = Script()
    second = _guard(second_client, clock, pauses=store)
    first.send(_intent())
    assert second.send(_intent()).reason == "paused"
    assert second_client.sent == []


def test_the_circuit_opens_after_consecutive_transient_failures_and_probes_half_open():
    """5 transient failures open the circuit: no request during the cool-down; one probe."""
    clock = Clock()
    client = Script([transient() for _ in range(5)])
    counters = Counters()
    policy = RetryPolicy(max_attempts=1, circuit_threshold=5, circuit_cooldown=30.0)
    guard = _guard(client, clock, policy=policy, counters=counters)
    for _ in range(5):
        assert guard.send(_intent()).state == FAILED
    assert counters.get("guard.circuit_opened") == 1
    held = guard.send(_intent())
    assert (held.reason, len(client.sent)) == ("circuit_open", 5)
    clock.t += 30.0
    probe = guard.send(_intent())  # half-open: this one goes through, and succeeds
    assert probe.state == DELIVERED
    assert counters.get("guard.circuit_closed") == 1
    assert guard.send(_intent()).state == DELIVERED


def test_a_failed_half_open_probe_reopens_the_circuit_for_longer():
    """The probe fails: the circuit opens again with a doubled cool-down."""
    clock = Clock()
    client = Script([transient() for _ in range(6)])
    policy = RetryPolicy(max_attempts=1, circuit_threshold=5, circuit_cooldown=10.0)
    guard = _guard(client, clock, policy=policy)
    for _ in range(5):
        guard.send(_intent())
    clock.t += 10.0
    assert guard.send(_intent()).state == FAILED  # the probe
    held = guard.send(_intent())
    assert held.reason == "circuit_open"
    assert held.not_before == pytest.approx(EPOCH + 10.0 + 20.0)


def test_handlers_and_fallback_are_called_once_per_final_failure():
    """Retries call no handler; the final failure calls its category's handler and on_auth once."""
    calls: list[tuple[str, str]] = []
    handlers = Handlers(
        on_token_expired=lambda i, e: calls.append(("expired", i.idempotency_key)),
        on_auth=lambda i, e: calls.append(("auth", e.category)),
        on_transient=lambda i, e: calls.append(("transient", e.category)),
    )
    clock = Clock()
    guard = _guard(Script([transient(), expired_token()]), clock, handlers=handlers)
    intent = _intent()
    delivery = guard.send(intent)
    assert delivery.state == FAILED
    assert calls == [("expired", intent.idempotency_key), ("auth", "token_expired")]


def test_a_raising_handler_never_breaks_the_send(caplog):
    """A handler that raises is logged; the Delivery still comes back."""

    def boom(intent: Intent | None, error: WhatsAppError) -> None:
        raise RuntimeError("alerting is down")

    guard = _guard(Script([invalid()]), Clock(), handlers=Handlers(on_invalid_request=boom))
    assert guard.send(_intent()).state == FAILED
    assert "alerting is down" in caplog.text


def test_the_fallback_routes_a_failed_intent_and_its_answer_is_the_delivery():
    """The fallback sends elsewhere: its SendResult makes the Delivery `delivered`."""
    seen: list[str] = []

    def fallback(intent: Intent, error: WhatsAppError) -> SendResult:
        seen.append(error.category)
        return SendResult(message_id="sms-1", wa_id=None)

    delivery = _guard(Script([expired_token()]), Clock(), fallback=fallback).send(_intent())
    assert (delivery.state, delivery.reason, seen) == (DELIVERED, "fallback", ["token_expired"])


def test_required_scopes_refuse_without_a_send():
    """A token without a required scope: InsufficientPermissionError naming it, no request."""
    client = Script()
    client.scopes = ("whatsapp_business_management",)
    guard = _guard(client, Clock(), required_scopes=["whatsapp_business_messaging"])
    delivery = guard.send(_intent())
    assert (delivery.state, delivery.category, client.sent) == (
        FAILED,
        "insufficient_permission",
        [],
    )
    assert "whatsapp_business_messaging" in str(delivery.error)


def test_pacing_waits_for_the_slot_and_queues_past_the_budget():
    """The limiter's wait is slept; a wait past the budget queues the intent (pacing)."""
    clock = Clock()
    limiter = LocalRateLimiter(rate=1.0, pair_interval=None, monotonic=clock.monotonic)
    guard = _guard(
        Script(), clock, limiter=limiter, outbox=MemoryOutbox(), policy=RetryPolicy(budget=2.5)
    )
    states = [guard.send(_intent()).state for _ in range(3)]
    assert states == [DELIVERED, DELIVERED, DELIVERED]
    assert clock.sleeps == [1.0, 1.0]
    # Reserve far ahead so the next wait exceeds the budget.
    limiter.penalize(PHONE, None, 100.0)
    held = guard.send(_intent())
    assert (held.state, held.reason) == (QUEUED, "pacing")


def test_a_pair_limit_answer_penalises_the_pair_only():
    """131056 pushes that recipient back; another recipient is not slowed."""
    clock = Clock()
    limiter = LocalRateLimiter(rate=1000.0, pair_interval=None, monotonic=clock.monotonic)
    client = Script([pair()])
    guard = _guard(client, clock, limiter=limiter)
    assert guard.send(_intent()).state == DELIVERED  # retried after the pair's 6 s
    assert max(clock.sleeps) >= 6.0
    assert limiter.acquire(PHONE, "+15550000000") < 0.01  # only the number's own 1 ms slot


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hold_that_begins_while_an_intent_waits_sends_it_back_for_a_new_slot(mode):
    """Another sender's 130429 holds the number while this intent sleeps for its slot: it takes
    a new slot after the hold, with no request in between and no attempt spent."""
    clock = Clock()
    limiter = LocalRateLimiter(rate=1.0, pair_interval=None, probe_gap=0, monotonic=clock.monotonic)
    sent_at: list[float] = []
    client = AsyncScript() if mode == "async" else Script()
    answer = client._answer

    def timed(intent: Intent) -> SendResult:
        sent_at.append(clock.t)
        return answer(intent)

    client._answer = timed  # type: ignore[method-assign]

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            limiter.penalize(PHONE, None, 5.0)  # Meta answered another sender with 130429

    async def asleep(seconds: float) -> None:
        sleep(seconds)

    guard = Guard(
        client,
        limiter=limiter,
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=sleep,
        asleep=asleep,
        seed=1,
    )

    def send(intent: Intent) -> Any:
        return asyncio.run(guard.asend(intent)) if mode == "async" else guard.send(intent)

    assert send(_intent()).ok  # takes the number's slot now
    delivery = send(_intent())
    assert (delivery.state, delivery.attempts) == (DELIVERED, 1)
    assert clock.sleeps == [1.0, 5.0]  # its slot, then the hold's rest
    assert sent_at == [0.0, 6.0]  # nothing went out during the hold


def test_a_hold_past_the_budget_queues_the_waiting_intent():
    """A hold that outlasts what the budget has left queues the intent (pacing), unsent."""
    clock = Clock()
    limiter = LocalRateLimiter(rate=1.0, pair_interval=None, monotonic=clock.monotonic)
    client = Script()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        limiter.penalize(PHONE, None, 60.0)

    guard = Guard(
        client,
        limiter=limiter,
        outbox=MemoryOutbox(),
        clock=clock.wall,
        monotonic=clock.monotonic,
        sleep=sleep,
        seed=1,
    )
    assert guard.send(_intent()).ok
    held = guard.send(_intent())
    assert (held.state, held.reason, held.attempts, len(client.sent)) == (QUEUED, "pacing", 0, 1)


def test_a_limiter_without_held_still_paces():
    """A limiter written before `held` existed (acquire and penalize only) never holds."""

    class Old:
        def __init__(self) -> None:
            self.inner = LocalRateLimiter(rate=1.0, pair_interval=None, monotonic=clock.monotonic)

        def acquire(self, *a: Any, **kw: Any) -> float | None:
            return self.inner.acquire(*a, **kw)

        def penalize(self, *a: Any) -> None:
            self.inner.penalize(*a)

        async def aacquire(self, *a: Any, **kw: Any) -> float | None:
            return self.inner.acquire(*a, **kw)

        async def apenalize(self, *a: Any) -> None:
            self.inner.penalize(*a)

    clock = Clock()
    client = AsyncScript()
    guard = _guard(client, clock, limiter=Old())
    deliveries = asyncio.run(guard.asend_many([_intent(), _intent()]))
    assert [d.ok for d in deliveries] == [True, True]
    assert clock.sleeps == [1.0]


def test_async_guard_makes_the_same_decisions():
    """`asend` over an async client: the same retries and outcome as `send`."""
    clock = Clock()
    client = AsyncScript([rate(), rate()])
    guard = _guard(client, clock)
    delivery = asyncio.run(guard.asend(_intent()))
    assert (delivery.state, delivery.attempts) == (DELIVERED, 3)


def test_asend_many_keeps_input_order():
    """`asend_many` returns one Delivery per intent, in input order."""
    client = AsyncScript([None, invalid(), None])
    guard = _guard(client, Clock())
    intents = [_intent(idempotency_key=f"k{i}") for i in range(3)]
    deliveries = asyncio.run(guard.asend_many(intents, concurrency=2))
    assert [d.intent.idempotency_key for d in deliveries] == ["k0", "k1", "k2"]
    assert [d.state for d in deliveries].count(FAILED) == 1


def test_wrong_client_kind_is_a_type_error():
    """`send` on an async client (or `asend` on a sync one) says which to use."""
    with pytest.raises(TypeError, match="asend"):
        _guard(AsyncScript(), Clock()).send(_intent())
    with pytest.raises(TypeError, match="send"):
        asyncio.run(_guard(Script(), Clock()).asend(_intent()))
    with pytest.raises(TypeError, match="Intent"):
        _guard(Script(), Clock()).send("hello")  # type: ignore[arg-type]


def test_delivery_to_dict_is_json_safe_and_has_no_message_text():
    """`to_dict()` carries the state, key and error, never the message text."""
    import json

    delivery = _guard(Script([invalid()]), Clock()).send(_intent())
    data = json.loads(json.dumps(delivery.to_dict()))
    assert data["state"] == FAILED
    assert data["category"] == "invalid_request"
    assert "hello" not in json.dumps(data)
    with pytest.raises(errors.InvalidRequestError):
        delivery.raise_for_error()


# --- the decorator ------------------------------------------------------------------------------


def test_guarded_retries_a_sync_function_and_returns_its_value():
    """`@guarded` retries transient failures of your function, then returns its value."""
    clock = Clock()
    answers = [transient(), rate(), "ok"]

    @guarded(sleep=clock.sleep, monotonic=clock.monotonic, seed=1)
    def notify(to: str) -> str:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return f"{answer}:{to}"

    assert notify(TO) == f"ok:{TO}"
    assert len(clock.sleeps) == 2


def test_guarded_async_function_reraises_after_handlers_or_uses_the_fallback():
    """Coroutine functions too: the final error is re-raised after handlers; fallback wins."""
    clock = Clock()
    seen: list[str] = []

    @guarded(
        asleep=clock.asleep,
        monotonic=clock.monotonic,
        handlers=Handlers(on_token_expired=lambda i, e: seen.append(e.category)),
    )
    async def send() -> str:
        raise expired_token()

    with pytest.raises(errors.TokenExpiredError):
        asyncio.run(send())
    assert seen == ["token_expired"]

    @guarded(fallback=lambda intent, error: "queued-elsewhere")
    async def send_with_fallback() -> str:
        raise invalid()

    assert asyncio.run(send_with_fallback()) == "queued-elsewhere"


def test_guarded_keeps_the_signature():
    """The decorated function keeps its name, docstring and signature."""
    import inspect

    @guarded
    def notify(to: str, *, urgent: bool = False) -> str:
        """Notify someone."""
        return to

    assert notify.__name__ == "notify"
    assert notify.__doc__ == "Notify someone."
    assert str(inspect.signature(notify)) == "(to: 'str', *, urgent: 'bool' = False) -> 'str'"


def test_policy_rejects_nonsense():
    """A policy with a negative budget or zero attempts fails at construction."""
    with pytest.raises(ValueError, match="budget"):
        RetryPolicy(budget=-1)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    assert attrs.evolve(RetryPolicy(), budget=1.0).budget == 1.0


# --- the policy's steps, driven by hand ---------------------------------------------------------


def _steps(guard: Guard, intent: Intent) -> tuple[list[str], Any]:
    """Drive `deliver` with `next()` / `.send()` / `.throw()`, recording each effect's class."""
    from wa_auth.guards._flows import deliver

    flow = deliver(guard._cfg, intent)
    steps: list[str] = []
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return steps, stop.value
        steps.append(type(effect).__name__)
        value = error = None
        try:
            value = effect.perform(guard._runtime)
        except WhatsAppError as exc:
            error = exc


def test_the_common_intent_takes_two_steps_and_a_retry_stays_in_one_flow():
    """No record, no deadline: `Look`, then the send. A transient failure is learnt from, slept
    on and sent again within the same flow, the clock read afresh before the second send."""
    clock, client = Clock(), Script()
    steps, delivery = _steps(_guard(client, clock), _intent())
    assert steps == ["Look", "SendIntent"]
    assert (delivery.state, delivery.attempts) == (DELIVERED, 1)

    clock, client = Clock(), Script([transient()])
    steps, delivery = _steps(_guard(client, clock), _intent())
    assert steps[:2] == ["Look", "SendIntent"]
    assert steps.count("SendIntent") == 2
    assert steps[steps.index("Sleep") + 1 :][:2] == ["Now", "SendIntent"]
    assert (delivery.state, delivery.attempts, len(clock.sleeps)) == (DELIVERED, 2, 1)
    assert len(client.sent) == 2
