"""Three gaps of the guard's policy found while writing docs/guards.md, and now closed: a
half-open probe answered otherwise than transiently, a per-user cap, a scope check that cannot
reach Meta."""

from __future__ import annotations

import pytest

import wa_auth
from helpers import EPOCH, Clock
from wa_auth import Guard, Intent, LocalRateLimiter, MemoryOutbox, RetryPolicy
from wa_auth.sandbox import Sandbox

TO = "+15551234567"
OTHER = "+15557654321"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=13, freeze_clock=True) as sb:
        yield sb


def _client(sb: Sandbox, **kw):
    return wa_auth.WhatsAppClient(
        base_url=sb.base_url, token=sb.issue_token(), phone_number_id=sb.phone_number_id, **kw
    )


def test_a_half_open_probe_that_fails_otherwise_does_not_wedge_the_circuit(sandbox):
    """After a probe that fails with an invalid request, a later intent is sent, not held."""
    clock = Clock(EPOCH)  # one time for the wall and the monotonic clock
    with _client(sandbox) as client:
        guard = Guard(
            client,
            policy=RetryPolicy(max_attempts=1, circuit_threshold=3, circuit_cooldown=30.0),
            clock=clock,
            monotonic=clock,
            sleep=clock.sleep,
        )
        sandbox.fail_next(131000, times=3)
        for _ in range(3):
            guard.send(Intent.text(TO, "x", created_at=clock.t))
        clock.sleep(30.0)
        sandbox.fail_next(131008)  # the half-open probe: Meta refuses the request itself
        assert guard.send(Intent.text(TO, "probe", created_at=clock.t)).reason == "invalid_request"
        clock.sleep(3600.0)
        later = guard.send(Intent.text(TO, "an hour later", created_at=clock.t))
    assert later.reason != "circuit_open"


def test_one_users_marketing_cap_does_not_hold_other_recipients(sandbox):
    """A 131049 to one user does not queue an intent to another user of the same number."""
    with _client(sandbox) as client:
        guard = Guard(client, limiter=LocalRateLimiter(), outbox=MemoryOutbox())
        sandbox.fail_next(131049, recipient=TO)
        assert guard.send(Intent.text(TO, "20% off")).state == "queued"
        other = guard.send(Intent.text(OTHER, "Your code is 1234"))
    assert other.ok, (other.state, other.reason)


def test_required_scopes_health_check_failure_is_a_delivery():
    """`guard.send` returns a Delivery when the scope check cannot reach Meta; it never raises."""
    client = wa_auth.WhatsAppClient(
        token="EAAGnot-a-real-token-0000", phone_number_id="123", base_url="http://127.0.0.1:9"
    )
    guard = Guard(client, required_scopes=["whatsapp_business_messaging"], sleep=lambda s: None)
    with client:
        delivery = guard.send(Intent.text(TO, "hello"))
    assert delivery.state == "failed"


def test_an_accepted_delivery_is_what_init_makes():
    """The guard's quick `Delivery` of a sent intent equals, hashes and prints like one made
    through `Delivery(...)`, and is as frozen."""
    import attrs

    from wa_auth._delivery import DELIVERED, Delivery, accepted
    from wa_auth.intents import Intent
    from wa_auth.models import SendResult

    intent = Intent.text("+15551234567", "hi")
    result = SendResult(message_id="wamid.1", wa_id=None)
    quick = accepted(intent, result, 2)
    made = Delivery(state=DELIVERED, intent=intent, result=result, attempts=2)
    assert quick == made
    assert hash(quick) == hash(made)
    assert repr(quick) == repr(made)
    assert quick.to_dict() == made.to_dict()
    assert (quick.ok, quick.error, quick.not_before, quick.reason) == (True, None, None, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        quick.state = "failed"  # type: ignore[misc]
