"""`Guard.apply` / `aapply`: a webhook's failure does what a raised error of its category does.

Real clients (no request is made: applying needs no Graph call), real outboxes and limiters,
Meta's payloads from `tests/payloads/webhooks/` parsed by `wa_auth.webhooks.parse`. A late
131031 pauses the number exactly like a 131031 answering a send (the same pause record, the
same `SenderPaused`, the next send held back); an uninstalled app's tokens get verdicts; a
throughput upgrade sets the limiter's rate; what changes nothing is reported as such.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from helpers import EPOCH, Clock, graph_error
from wa_auth import WhatsAppClient, errors
from wa_auth.events import Counters, Events
from wa_auth.guards import DELIVERED, FAILED, QUEUED, Applied, Delivery, Guard, Handlers
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.outbox import MemoryOutbox
from wa_auth.pacing import ACCOUNT, LocalRateLimiter
from wa_auth.providers import RoutingTokenProvider, Token
from wa_auth.webhooks import MessageStatus, parse

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "webhooks"
PHONE = "106540352242922"
WABA = "102290129340398"
TO = "+16505551234"
TOKEN = "EAAG" + "x" * 60
OTHER_TOKEN = "EAAG" + "y" * 60


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(data["payload"])


def event_of(name: str, **value: Any) -> Any:
    body = payload(name)
    body["entry"][0]["changes"][0]["value"].update(value)
    (event,) = parse(body)
    return event


def late_131031(key: str = "order-7", wamid: str = "wamid.order-7") -> MessageStatus:
    body = payload("status_failed_131031")
    status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    status.update(id=wamid, biz_opaque_callback_data=key)
    (event,) = parse(body)
    assert isinstance(event, MessageStatus)
    return event


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Intent | None, errors.WhatsAppError]] = []

    def __call__(self, intent: Intent | None, error: errors.WhatsAppError) -> None:
        self.calls.append((intent, error))


def client(**kw: Any) -> WhatsAppClient:
    kw.setdefault("token", TOKEN)
    kw.setdefault("phone_number_id", PHONE)
    kw.setdefault("events", Events())
    return WhatsAppClient(**kw)


def guard_for(c: Any, clock: Clock, **kw: Any) -> Guard:
    return Guard(c, clock=clock, monotonic=clock.monotonic, sleep=clock.sleep, seed=1, **kw)


def delivered_row(outbox: MemoryOutbox, key: str = "order-7") -> Intent:
    intent = Intent.text(TO, "the secret text", idempotency_key=key, phone_number_id=PHONE)
    result = SendResult(message_id=f"wamid.{key}", wa_id=None, token_fingerprint=None)
    outbox.settle(Delivery(state=DELIVERED, intent=intent, result=result, attempts=1))
    return intent


# --- a failed status -----------------------------------------------------------------------------


def test_a_late_131031_pauses_the_number_like_one_from_a_send():
    """The outbox row fails, the handlers run once with the intent, the number is paused."""
    clock = Clock(EPOCH)
    hub, counters = Events(), Counters()
    hub.subscribe(counters)
    seen: list[Any] = []
    hub.subscribe(seen.append)
    outbox = MemoryOutbox(clock=clock)
    intent = delivered_row(outbox)
    account, auth = Recorder(), Recorder()
    handlers = Handlers(on_account_state=account, on_auth=auth)
    guard = guard_for(client(events=hub), clock, outbox=outbox, handlers=handlers)

    applied = guard.apply(late_131031())

    assert isinstance(applied, Applied)
    assert applied.actions == ("outbox", "handlers", "paused")
    assert (applied.category, applied.phone_number_ids) == ("account_state", (PHONE,))
    assert applied.paused_until == clock.t + guard.policy.probe_interval
    assert applied.row is not None
    assert (applied.row.state, applied.row.reason) == (FAILED, "webhook:131031")
    assert [c[0] for c in account.calls] == [intent]
    assert isinstance(account.calls[0][1], errors.AccountStateError)
    assert len(auth.calls) == 1
    pause = guard.pauses.get(ACCOUNT, PHONE)
    assert pause is not None
    assert (pause.category, pause.until, pause.error["code"]) == (
        "account_state",
        applied.paused_until,
        131031,
    )
    names = [e.name for e in seen]
    assert names == ["guard.sender_paused", "webhook.applied"]
    assert seen[-1].actions == ("outbox", "handlers", "paused")
    assert "the secret text" not in repr(seen) + json.dumps(applied.to_dict())
    assert applied.to_dict()["outbox_state"] == FAILED
    # The next send is held back as after a send's 131031: nothing reaches Meta.
    held = guard.send(Intent.text(TO, "next", idempotency_key="next"))
    assert (held.state, held.reason) == (QUEUED, "paused")
    assert held.error.code == 131031


def test_the_pause_is_the_one_a_send_would_have_put():
    """Applying the webhook and a send answered 131031 leave equal pause records."""
    from wa_auth.guards._flows import learn
    from wa_auth.guards._values import Config, RetryPolicy

    clock = Clock(EPOCH)
    by_webhook = guard_for(client(), clock)
    by_webhook.apply(late_131031())
    cfg = Config(policy=RetryPolicy(), events=Events(), rng=random.Random(1))
    flow = learn(cfg, None, TO, PHONE, graph_error(403, 131031), clock.t)
    put = next(flow)
    webhook_pause = by_webhook.pauses.get(ACCOUNT, PHONE)
    assert (put.pause.kind, put.pause.category, put.pause.until) == (
        webhook_pause.kind,
        webhook_pause.category,
        webhook_pause.until,
    )


def test_without_an_outbox_the_number_still_pauses():
    """A guard without an outbox: no row, the same pause; the status's own number is used."""
    clock = Clock(EPOCH)
    guard = guard_for(client(phone_number_id=None), clock)
    applied = guard.apply(late_131031())
    assert applied.actions == ("paused",)
    assert applied.row is None
    assert guard.pauses.get(ACCOUNT, PHONE) is not None


@pytest.mark.parametrize("state", ["sent", "delivered", "read"])
def test_statuses_that_are_no_failure_change_nothing(state):
    """`sent`, `delivered`, `read`: no action, the row as it was, still one `webhook.applied`."""
    clock = Clock(EPOCH)
    hub, counters = Events(), Counters()
    hub.subscribe(counters)
    outbox = MemoryOutbox(clock=clock)
    delivered_row(outbox)
    guard = guard_for(client(events=hub), clock, outbox=outbox)
    body = payload(f"status_{state}")
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = "order-7"
    (event,) = parse(body)
    applied = guard.apply(event)
    assert (applied.actions, applied.category) == ((), None)
    assert outbox.get("order-7").state == DELIVERED
    assert guard.pauses.list() == []
    assert counters.snapshot() == {"webhook.applied": 1}


def test_a_late_transient_failure_counts_towards_the_circuit():
    """A late 131000 counts like a send's: enough of them open the number's circuit."""
    clock = Clock(EPOCH)
    guard = guard_for(client(), clock)
    for n in range(guard.policy.circuit_threshold):
        body = payload("status_failed_131031")
        status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
        status.update(id=f"wamid.{n}", errors=[{"code": 131000, "title": "Something went wrong"}])
        (event,) = parse(body)
        guard.apply(event)
    assert [p.kind for p in guard.paused()] == ["circuit"]


def test_the_async_form_does_the_same():
    """`aapply` over an async outbox call: the same row, pause and actions."""
    clock = Clock(EPOCH)
    outbox = MemoryOutbox(clock=clock)
    delivered_row(outbox)
    guard = guard_for(client(), clock, outbox=outbox)
    applied = asyncio.run(guard.aapply(late_131031()))
    assert applied.actions == ("outbox", "paused")
    assert outbox.get("order-7").state == FAILED
    assert guard.pauses.get(ACCOUNT, PHONE) is not None


def test_a_value_that_is_no_event_is_a_type_error():
    """apply() takes what parse returns."""
    guard = guard_for(client(), Clock(EPOCH))
    with pytest.raises(TypeError, match="takes a webhook event"):
        guard.apply({"status": "failed"})  # type: ignore[arg-type]


def late_token_failure(code: int = 190, phone: str = PHONE) -> MessageStatus:
    body = payload("status_failed_131031")
    value = body["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = phone
    value["statuses"][0]["errors"] = [
        {"code": code, "title": "Error validating access token", "message": "expired"}
    ]
    (event,) = parse(body)
    assert isinstance(event, MessageStatus)
    return event


def test_a_late_token_failure_gives_the_numbers_token_a_verdict():
    """A 190 in a failed status: the token the provider hands out for that number is dead."""
    clock = Clock(EPOCH)
    hub, seen = Events(), []
    hub.subscribe(seen.append)
    c = client(events=hub)
    guard = guard_for(c, clock)
    event = late_token_failure()
    assert event.category in errors.TOKEN_CLASS
    applied = guard.apply(event)
    fingerprint = Token(TOKEN).fingerprint
    assert applied.actions == ("verdicts",)
    assert applied.token_fingerprints == (fingerprint,)
    assert isinstance(c.verdicts.get(fingerprint), errors.AuthError)
    assert "auth.token_invalidated" in [e.name for e in seen]
    assert TOKEN not in repr(seen) + json.dumps(applied.to_dict())
    delivery = guard.send(Intent.text(TO, "hi", idempotency_key="after-190"))
    assert delivery.state == FAILED
    assert delivery.category in errors.TOKEN_CLASS


def test_a_late_token_failure_reaches_the_numbers_route_only():
    """A routing provider: the route of the number that sent gets the verdict, not another's."""
    routes = {PHONE: TOKEN, "106540352242999": OTHER_TOKEN}
    c = client(token=None, token_provider=RoutingTokenProvider(routes))
    applied = guard_for(c, Clock(EPOCH)).apply(late_token_failure())
    assert applied.token_fingerprints == (Token(TOKEN).fingerprint,)
    assert c.verdicts.get(Token(OTHER_TOKEN).fingerprint) is None


def test_a_late_token_failure_of_a_number_the_client_does_not_know_records_nothing():
    """Another number, a plain provider: nothing says the client's token sent it."""
    c = client()
    applied = guard_for(c, Clock(EPOCH)).apply(late_token_failure(phone="106540352242999"))
    assert (applied.actions, applied.token_fingerprints) == ((), ())
    assert c.verdicts.get(Token(TOKEN).fingerprint) is None


def test_a_late_permission_failure_records_no_verdict():
    """A 131005 (permission) is not a dead token, as from a send: no verdict."""
    c = client()
    applied = guard_for(c, Clock(EPOCH)).apply(late_token_failure(code=131005))
    assert applied.category not in errors.TOKEN_CLASS
    assert applied.token_fingerprints == ()
    assert c.verdicts.get(Token(TOKEN).fingerprint) is None


# --- account updates -----------------------------------------------------------------------------


def test_an_uninstalled_app_gives_the_wabas_tokens_a_verdict():
    """PARTNER_APP_UNINSTALLED for the client's WABA: its token is known dead, before any send."""
    clock = Clock(EPOCH)
    hub, seen = Events(), []
    hub.subscribe(seen.append)
    revoked = Recorder()
    c = client(business_account_id="184943124712545", events=hub)
    guard = guard_for(c, clock, handlers=Handlers(on_token_revoked=revoked))
    applied = guard.apply(event_of("account_update_partner_app_uninstalled"))
    fingerprint = Token(TOKEN).fingerprint
    assert applied.actions == ("handlers", "verdicts")
    assert (applied.category, applied.token_fingerprints) == ("token_revoked", (fingerprint,))
    verdict = c.verdicts.get(fingerprint)
    assert isinstance(verdict, errors.TokenRevokedError)
    assert verdict.token_fingerprint == fingerprint
    assert verdict.rule == "webhook/PARTNER_APP_UNINSTALLED"
    assert [e.name for e in seen] == ["auth.token_invalidated", "webhook.applied"]
    assert TOKEN not in repr(seen) + repr(verdict.to_dict()) + json.dumps(applied.to_dict())
    assert revoked.calls[0][0] is None
    # The next send fails fast on the verdict: nothing reaches Meta (no server here at all).
    delivery = guard.send(Intent.text(TO, "hi", idempotency_key="after"))
    assert (delivery.state, delivery.category) == (FAILED, "token_revoked")


def test_a_routing_provider_gives_a_verdict_to_the_wabas_route_only():
    """A route keyed by the WABA id is that WABA's token; another WABA's route is left alone."""
    routes = {"184943124712545": TOKEN, "999": OTHER_TOKEN}
    c = client(token=None, token_provider=RoutingTokenProvider(routes))
    guard = guard_for(c, Clock(EPOCH))
    applied = guard.apply(event_of("account_update_partner_app_uninstalled"))
    assert applied.token_fingerprints == (Token(TOKEN).fingerprint,)
    assert c.verdicts.get(Token(OTHER_TOKEN).fingerprint) is None


def test_an_uninstall_for_a_waba_the_client_does_not_know_records_nothing():
    """A client made for another WABA (or for none): no token is known to be that WABA's."""
    for waba in (None, "111"):
        c = client(business_account_id=waba)
        applied = guard_for(c, Clock(EPOCH)).apply(
            event_of("account_update_partner_app_uninstalled")
        )
        assert (applied.actions, applied.token_fingerprints) == ((), ())
        assert c.verdicts.get(Token(TOKEN).fingerprint) is None


def test_a_restriction_pauses_the_wabas_number_and_a_reinstatement_resumes_it():
    """ACCOUNT_RESTRICTION pauses the client's number; ACCOUNT_RECONNECTED clears the pause."""
    clock = Clock(EPOCH)
    hub, seen = Events(), []
    hub.subscribe(seen.append)
    guard = guard_for(client(business_account_id=WABA, events=hub), clock)
    applied = guard.apply(event_of("account_update_account_restriction"))
    assert (applied.actions, applied.phone_number_ids) == (("paused",), (PHONE,))
    assert guard.pauses.get(ACCOUNT, PHONE) is not None
    resumed = guard.apply(event_of("account_update_account_reconnected"))
    assert (resumed.actions, resumed.phone_number_ids) == (("resumed",), (PHONE,))
    assert guard.pauses.get(ACCOUNT, PHONE) is None
    assert [e.name for e in seen] == [
        "guard.sender_paused",
        "webhook.applied",
        "guard.sender_resumed",
        "webhook.applied",
    ]
    assert seen[2].by == "webhook"
    # A resume with nothing paused does nothing.
    assert guard.apply(event_of("account_update_disabled_reinstate")).actions == ()


def test_a_restriction_of_a_waba_the_guard_does_not_know_pauses_nothing():
    """Without the client's WABA id the guard cannot tell which numbers are the WABA's."""
    guard = guard_for(client(), Clock(EPOCH))
    applied = guard.apply(event_of("account_update_account_restriction"))
    assert (applied.actions, applied.category) == ((), "account_state")
    assert guard.pauses.list() == []
    named = guard.apply(
        event_of("account_update_account_restriction"), phone_number_id="106540352242999"
    )
    assert named.phone_number_ids == ("106540352242999",)


# --- throughput ------------------------------------------------------------------------------------


def test_a_throughput_upgrade_sets_the_limiters_rate():
    """THROUGHPUT_UPGRADE: the number is paced at 1000/s from now on."""
    clock = Clock(EPOCH)
    limiter = LocalRateLimiter(rate=80, monotonic=clock.monotonic)
    guard = guard_for(client(), clock, limiter=limiter)
    event = event_of("phone_number_quality_update_throughput")
    with pytest.raises(errors.ConfigurationError, match=r"phone_number_id=") as caught:
        guard.apply(event)  # it names a display number only
    assert "16505551234" in str(caught.value) or "display number" in str(caught.value)
    assert limiter.rate(PHONE) == 80.0
    applied = guard.apply(event, phone_number_id=PHONE)
    assert (applied.actions, applied.rate, applied.phone_number_ids) == (
        ("rate",),
        1000.0,
        (PHONE,),
    )
    assert limiter.rate(PHONE) == 1000.0
    applied = asyncio.run(guard.aapply(event, phone_number_id="106540352242999"))
    assert limiter.rate("106540352242999") == 1000.0


def test_a_messaging_limit_change_leaves_the_pacing_alone():
    """A DOWNGRADE of the daily messaging limit is no per-second rate; no limiter: no action."""
    clock = Clock(EPOCH)
    limiter = LocalRateLimiter(rate=80, monotonic=clock.monotonic)
    guard = guard_for(client(), clock, limiter=limiter)
    applied = guard.apply(event_of("phone_number_quality_update_downgrade"), phone_number_id=PHONE)
    assert (applied.actions, limiter.rate(PHONE)) == ((), 80.0)
    no_limiter = guard_for(client(), clock)
    event = event_of("phone_number_quality_update_throughput")
    assert no_limiter.apply(event, phone_number_id=PHONE).actions == ()


@pytest.mark.parametrize(
    "name",
    [
        "message_text",
        "security_pin_reset_request",
        "message_template_status_update_rejected",
        "business_capability_update",
        "unknown_template_quality_update",
    ],
)
def test_events_that_stop_nothing_change_nothing(name):
    """Inbound messages, security and template news, capability and unknown changes."""
    clock = Clock(EPOCH)
    guard = guard_for(client(business_account_id=WABA), clock)
    for event in parse(payload(name)):
        applied = guard.apply(event)
        assert applied.actions == ()
        assert applied.key == event.key
    assert guard.pauses.list() == []


def test_webhook_applied_reaches_logging_and_prometheus(caplog):
    """`webhook.applied` is logged and exported like every event: ids and actions, no text."""
    import logging

    prometheus = pytest.importorskip("prometheus_client")
    from wa_auth.events import LoggingSubscriber
    from wa_auth.prometheus import PrometheusSubscriber

    subscriber = PrometheusSubscriber()
    hub = Events(subscriber, LoggingSubscriber())
    clock = Clock(EPOCH)
    outbox = MemoryOutbox(clock=clock)
    delivered_row(outbox)
    guard = guard_for(client(events=hub), clock, outbox=outbox)
    with caplog.at_level(logging.INFO, logger="wa_auth"):
        guard.apply(late_131031())
    text = prometheus.generate_latest(subscriber.registry).decode()
    assert 'wa_auth_events_total{category="account_state",event="webhook.applied"} 1.0' in text
    (applied,) = [r.wa_auth for r in caplog.records if r.wa_auth["event"] == "webhook.applied"]
    assert applied["actions"] == ("outbox", "paused")
    assert applied["key"].startswith("status:wamid.order-7")
    assert "the secret text" not in caplog.text + repr([r.wa_auth for r in caplog.records])


def test_aapply_with_a_sqlite_outbox_and_an_async_client(tmp_path):
    """On the loop: an async client, a SqliteOutbox (committed before aapply returns)."""
    from wa_auth import AsyncWhatsAppClient
    from wa_auth.outbox import SqliteOutbox

    async def main() -> tuple[Any, Any]:
        clock = Clock(EPOCH)
        async with AsyncWhatsAppClient(token=TOKEN, phone_number_id=PHONE, events=Events()) as c:
            with SqliteOutbox(tmp_path / "o.db", clock=clock) as box:
                intent = Intent.text(TO, "text", idempotency_key="order-7", phone_number_id=PHONE)
                result = SendResult(message_id="wamid.order-7", wa_id=None, token_fingerprint=None)
                await box.asettle(Delivery(state=DELIVERED, intent=intent, result=result))
                guard = guard_for(c, clock, outbox=box)
                applied = await guard.aapply(late_131031())
                return applied, await box.aget("order-7")

    applied, row = asyncio.run(main())
    assert applied.actions == ("outbox", "paused")
    assert (row.state, row.reason) == (FAILED, "webhook:131031")


def test_a_messages_error_goes_through_the_same_steps():
    """`value.errors[]` (no status): handlers once, and the number's circuit counts it."""
    transient = Recorder()
    guard = guard_for(client(), Clock(EPOCH), handlers=Handlers(on_transient=transient))
    (event,) = parse(payload("messages_value_errors"))
    applied = guard.apply(event)
    assert (applied.type, applied.category, applied.actions) == (
        "error",
        "transient",
        ("handlers",),
    )
    assert len(transient.calls) == 1
    assert transient.calls[0][0] is None


def test_a_removed_partner_calls_its_handlers_and_records_no_verdict():
    """PARTNER_REMOVED (insufficient_permission): the handlers, no verdict (as a raised 200)."""
    permission = Recorder()
    c = client(business_account_id="980198427658004")
    guard = guard_for(c, Clock(EPOCH), handlers=Handlers(on_permission=permission))
    applied = guard.apply(event_of("account_update_partner_removed"))
    assert (applied.category, applied.actions) == ("insufficient_permission", ("handlers",))
    assert isinstance(permission.calls[0][1], errors.InsufficientPermissionError)
    assert c.verdicts.get(Token(TOKEN).fingerprint) is None
    assert guard.pauses.list() == []


def test_a_rejected_review_pauses_the_wabas_number():
    """account_review_update REJECTED: account_state, the client's number paused."""
    guard = guard_for(client(business_account_id=WABA), Clock(EPOCH))
    applied = guard.apply(event_of("account_review_update_rejected"))
    assert (applied.category, applied.actions) == ("account_state", ("paused",))
    assert guard.pauses.get(ACCOUNT, PHONE).error["rule"] == "webhook/REJECTED"
