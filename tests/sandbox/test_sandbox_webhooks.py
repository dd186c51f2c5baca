"""The sandbox's signed webhooks, delivered to a real receiver on 127.0.0.1 and read back with
`wa_auth.webhooks`: statuses for every send, late failures, duplicates, reordering, retries,
account and quality news, the admin API's twins, and a Graph API that never waits on them."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.request
from collections.abc import Iterator
from email.message import Message

import pytest

import wa_auth
from serving import PostServer
from wa_auth import webhooks
from wa_auth.errors import AccountStateError, InvalidRequestError, RateLimitError
from wa_auth.sandbox import (
    ACCOUNT_UPDATE_EVENTS,
    LATE_FAILURES,
    RecordedWebhook,
    Sandbox,
    WebhookSettings,
)

#: Every wait in this module is bounded by this many seconds (a hang fails, never blocks).
BOUND = 30.0
TO = "+15551234567"


class Receiver(PostServer):
    """A webhook endpoint on 127.0.0.1: records each POST, answers the statuses it is told."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        super().__init__("/whatsapp?tenant=a")

    def answer(self, path: str, headers: Message, body: bytes) -> int:
        self.entered.set()
        self.gate.wait(BOUND)
        self.posts.append((path, dict(headers), body))
        return self.answers.pop(0) if self.answers else 200

    def close(self) -> None:
        self.gate.set()
        super().close()

    def events(self, secret: str) -> list[webhooks.WebhookEvent]:
        """Verify every POST's signature, then parse it: what a real receiver does."""
        found: list[webhooks.WebhookEvent] = []
        for _, headers, body in self.posts:
            webhooks.verify_signature(body, headers["X-Hub-Signature-256"], secret)
            found.extend(webhooks.parse(body))
        return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def sb(receiver: Receiver) -> Iterator[Sandbox]:
    with Sandbox(seed=7, freeze_clock=True, webhook_url=receiver.url) as sandbox:
        yield sandbox


def send(sb: Sandbox, n: int = 1, *, key: str = "order") -> list[str]:
    with wa_auth.WhatsAppClient(
        base_url=sb.base_url, token=sb.issue_token(), phone_number_id=sb.phone_number_id
    ) as client:
        return [
            client.send_text(TO, f"hello {i}", idempotency_key=f"{key}-{i}").message_id
            for i in range(n)
        ]


def flushed(sb: Sandbox) -> tuple[RecordedWebhook, ...]:
    assert sb.flush_webhooks(BOUND)
    return sb.webhooks()


def test_every_send_gets_sent_delivered_read_signed(sb, receiver):
    """Each send's three statuses arrive signed with the app secret, over its exact bytes."""
    ids = send(sb, 2)
    records = flushed(sb)

    assert [(r.message_id, r.status) for r in records] == [
        (ids[0], "sent"),
        (ids[0], "delivered"),
        (ids[0], "read"),
        (ids[1], "sent"),
        (ids[1], "delivered"),
        (ids[1], "read"),
    ]
    assert all(r.outcome == "delivered" and r.attempts == 1 for r in records)
    for path, headers, body in receiver.posts:
        expected = hmac.new(sb.app_secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Hub-Signature-256"] == "sha256=" + expected
        assert headers["Content-Type"] == "application/json"
        assert path == "/whatsapp?tenant=a"
    events = receiver.events(sb.app_secret)
    assert all(isinstance(e, webhooks.MessageStatus) for e in events)
    assert [e.idempotency_key for e in events] == ["order-0"] * 3 + ["order-1"] * 3
    assert {e.phone_number_id for e in events} == {sb.phone_number_id}
    assert {e.business_account_id for e in events} == {sb.business_account_id}
    assert {e.recipient_id for e in events} == {"15551234567"}
    assert [r.body for r in records] == [body for _, _, body in receiver.posts]


def test_the_body_is_what_meta_writes(sb, receiver):
    """Compact JSON with non-ASCII escaped: parsed and dumped again, the signature fails."""
    with wa_auth.WhatsAppClient(
        base_url=sb.base_url, token=sb.issue_token(), phone_number_id=sb.phone_number_id
    ) as client:
        client.send_text(TO, "olá", idempotency_key="café-☕")
    flushed(sb)
    _, headers, body = receiver.posts[0]

    assert body.isascii()
    assert b"\\u2615" in body
    webhooks.verify_signature(body, headers["X-Hub-Signature-256"], sb.app_secret)
    redone = json.dumps(json.loads(body), ensure_ascii=False).encode()
    with pytest.raises(wa_auth.WebhookSignatureError):
        webhooks.verify_signature(redone, headers["X-Hub-Signature-256"], sb.app_secret)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (131026, InvalidRequestError),
        (131031, AccountStateError),
        (131047, InvalidRequestError),
        (131049, RateLimitError),
    ],
    ids=[str(c) for c in LATE_FAILURES],
)
def test_a_late_failure_arrives_only_by_webhook(sb, receiver, code, error):
    """The send is accepted; `sent` then `failed` arrive, classified like the sync error."""
    late = sb.fail_late(code)
    (message_id,) = send(sb)
    records = flushed(sb)

    assert [r.status for r in records] == ["sent", "failed"]
    assert records[1].late_failure == late.id
    _, failed = receiver.events(sb.app_secret)
    assert failed.message_id == message_id
    assert isinstance(failed.error, error)
    assert failed.error.code == code
    assert sb.late_failures() == ()
    assert sb.messages()[-1].id == message_id


def test_a_late_failure_can_target_one_recipient_and_repeat(sb, receiver):
    """fail_late(recipient=..., times=None) fails that user's sends only, until reset."""
    sb.fail_late(131026, times=None, recipient="15550000000")
    send(sb, 2)

    assert {r.status for r in flushed(sb)} == {"sent", "delivered", "read"}
    assert sb.late_failures()[0].remaining is None


def test_duplicates_come_twice_and_the_ledger_applies_once(sb, receiver):
    """duplicate_rate=1: every status twice; admit() applies each once."""
    sb.set_webhooks(duplicate_rate=1.0)
    send(sb)
    records = flushed(sb)

    assert [r.duplicate for r in records] == [False, True] * 3
    ledger = webhooks.MemoryWebhookLedger()
    verdicts = [webhooks.admit(e, ledger).verdict for e in receiver.events(sb.app_secret)]
    assert verdicts == ["apply", "duplicate"] * 3


def test_reordered_statuses_never_go_back(sb, receiver):
    """reorder_rate=1: read, delivered, sent arrive in that order; only read applies."""
    sb.set_webhooks(reorder_rate=1.0)
    send(sb)

    assert [r.status for r in flushed(sb)] == ["read", "delivered", "sent"]
    ledger = webhooks.MemoryWebhookLedger()
    verdicts = [webhooks.admit(e, ledger).verdict for e in receiver.events(sb.app_secret)]
    assert verdicts == ["apply", "stale", "stale"]


def test_a_delivery_not_answered_200_is_retried(sb, receiver):
    """A 500 and a 404 are retried; the third attempt's 200 delivers it."""
    sb.set_webhooks(statuses=["sent"], retry_delay=0.0)
    receiver.answers = [500, 404]
    send(sb)
    (record,) = flushed(sb)

    assert (record.outcome, record.attempts, record.http_status) == ("delivered", 3, 200)
    assert len(receiver.posts) == 3
    assert len({body for _, _, body in receiver.posts}) == 1


def test_retries_are_bounded(sb, receiver):
    """A receiver that never answers 200 gets max_attempts tries, then the webhook is failed."""
    sb.set_webhooks(statuses=["sent"], max_attempts=2, retry_delay=0.0)
    receiver.answers = [503] * 5
    send(sb)
    (record,) = flushed(sb)

    assert (record.outcome, record.attempts, record.http_status) == ("failed", 2, 503)


def test_an_unreachable_receiver_is_a_failed_delivery():
    """Nothing listening: each attempt fails without an answer; the Graph API still answers."""
    with Sandbox(seed=1, webhook_url="http://127.0.0.1:9/nobody") as sb:
        sb.set_webhooks(statuses=["sent"], max_attempts=2, retry_delay=0.0, timeout=2.0)
        send(sb)
        (record,) = flushed(sb)

    assert (record.outcome, record.attempts, record.http_status) == ("failed", 2, None)


def test_a_slow_receiver_never_blocks_the_graph_api(sb, receiver):
    """While the receiver holds the first webhook, sends keep being answered at once."""
    receiver.gate.clear()
    first = send(sb, 1, key="a")
    assert receiver.entered.wait(BOUND)

    more = send(sb, 3, key="b")

    assert len(more) == 3
    assert len(sb.messages()) == 4
    receiver.gate.set()
    assert len(flushed(sb)) == 12
    assert flushed(sb)[0].message_id == first[0]


def test_account_updates_and_quality_changes_on_demand(sb, receiver):
    """Account updates, a ban state, a quality change and any other change, parsed as typed."""
    sb.deliver_account_update("PARTNER_APP_UNINSTALLED")
    sb.deliver_account_update("DISABLED_UPDATE", ban_state="SCHEDULE_FOR_DISABLE")
    sb.set_quality(
        sb.phone_number_id, event="DOWNGRADE", current_limit="TIER_250", old_limit="TIER_2K"
    )
    sb.deliver_webhook("security", {"display_phone_number": "15550100001", "event": "PIN_CHANGED"})
    flushed(sb)

    uninstalled, disabled, quality, security = receiver.events(sb.app_secret)
    assert (uninstalled.category, uninstalled.effect) == ("token_revoked", "stops")
    assert uninstalled.business_account_id == sb.business_account_id
    assert (disabled.ban_state, disabled.effect) == ("SCHEDULE_FOR_DISABLE", "warns")
    assert (quality.messaging_limit, quality.old_messaging_limit, quality.effect) == (
        250,
        2000,
        "warns",
    )
    assert isinstance(security, webhooks.SecurityEvent)


@pytest.mark.parametrize("event", ACCOUNT_UPDATE_EVENTS)
def test_every_account_update_event_parses(sb, receiver, event):
    """Each account_update the sandbox sends parses to an AccountUpdate of that event."""
    sb.deliver_account_update(event)
    flushed(sb)

    (parsed,) = receiver.events(sb.app_secret)
    assert isinstance(parsed, webhooks.AccountUpdate)
    assert parsed.event == event


def test_app_secret_and_rotation(receiver):
    """Sandbox(app_secret=...) signs with it; a receiver's rotation window accepts it."""
    with Sandbox(seed=1, webhook_url=receiver.url, app_secret="new-secret") as sb:
        sb.deliver_account_update("ACCOUNT_RECONNECTED")
        flushed(sb)
        assert sb.app_secret == "new-secret"
    _, headers, body = receiver.posts[0]
    webhooks.verify_signature(body, headers["X-Hub-Signature-256"], ["new-secret", "old-secret"])
    with pytest.raises(wa_auth.WebhookSignatureError):
        webhooks.verify_signature(body, headers["X-Hub-Signature-256"], "old-secret")


def test_subscribe_later_and_unsubscribe(receiver):
    """No URL: sends deliver nothing; subscribe() starts, subscribe(None) stops; reset restores."""
    with Sandbox(seed=1) as sb:
        send(sb)
        assert flushed(sb) == ()
        sb.subscribe(receiver.url)
        send(sb, key="b")
        assert len(flushed(sb)) == 3
        sb.subscribe(None)
        send(sb, key="c")
        assert len(flushed(sb)) == 3
        sb.subscribe(receiver.url)
        sb.reset()
        assert sb.webhook_url is None
        assert sb.webhooks() == ()


def test_reset_drops_what_is_queued(sb, receiver):
    """reset() forgets records, settings and seeds; webhooks queued before it are not sent."""
    receiver.gate.clear()
    sb.fail_late(131026, times=None)
    sb.set_webhooks(duplicate_rate=1.0)
    send(sb, 3)
    assert receiver.entered.wait(BOUND)
    sb.reset()
    receiver.gate.set()

    assert flushed(sb) == ()
    assert len(receiver.posts) <= 1
    assert sb.late_failures() == ()
    assert sb.webhook_url == receiver.url
    info = sb.info()
    assert info["webhook_settings"] == WebhookSettings().to_dict()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda sb: sb.fail_late(131000), "code"),
        (lambda sb: sb.fail_late(131026, times=0), "times"),
        (lambda sb: sb.fail_late(131026, recipient="abc"), "recipient"),
        (lambda sb: sb.set_webhooks(duplicate_rate=2), "duplicate_rate"),
        (lambda sb: sb.set_webhooks(statuses=["failed"]), "statuses"),
        (lambda sb: sb.set_webhooks(statuses="sent"), "statuses"),
        (lambda sb: sb.set_webhooks(max_attempts=0), "max_attempts"),
        (lambda sb: sb.set_webhooks(timeout=0), "timeout"),
        (lambda sb: sb.deliver_account_update("NOPE"), "event"),
        (lambda sb: sb.deliver_account_update("PARTNER_REMOVED", ban_state="DISABLE"), "ban_state"),
        (lambda sb: sb.set_quality("1", event="DOWNGRADE"), "phone number"),
        (lambda sb: sb.set_quality(sb.phone_number_id, event="WORSE"), "event"),
        (lambda sb: sb.deliver_webhook("security", ["x"]), "value"),
        (lambda sb: sb.subscribe("ftp://example.com/x"), "url"),
        (lambda sb: sb.subscribe("http://"), "url"),
        (lambda sb: sb.subscribe("http://h:99999/x"), "port"),
    ],
    ids=[
        "unknown-code",
        "zero-times",
        "bad-recipient",
        "rate-above-1",
        "failed-status",
        "status-string",
        "zero-attempts",
        "zero-timeout",
        "unknown-event",
        "ban-state-elsewhere",
        "unknown-number",
        "unknown-quality-event",
        "value-not-object",
        "ftp-url",
        "no-host",
        "bad-port",
    ],
)
def test_bad_arguments_are_named(sb, call, match):
    """Every bad argument is a ValueError naming it; nothing is queued."""
    with pytest.raises(ValueError, match=match):
        call(sb)
    assert flushed(sb) == ()


def test_on_demand_without_a_url_says_so():
    """Asking for a webhook with no URL subscribed is refused with what to do."""
    with Sandbox(seed=1) as sb, pytest.raises(ValueError, match="subscribe"):
        sb.deliver_account_update("ACCOUNT_OFFBOARDED")


def test_constructor_arguments_are_checked():
    """A bad webhook_url or a blank app_secret fails before anything is bound."""
    with pytest.raises(ValueError, match="url"):
        Sandbox(webhook_url="not a url")
    with pytest.raises(ValueError, match="app_secret"):
        Sandbox(app_secret=" ")


def _admin(sb: Sandbox, operation: str, body: dict | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{sb.admin_url}/{operation}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=BOUND) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_admin_api_has_every_webhook_operation(receiver):
    """subscribe, set_webhooks, fail_late, deliver_*, set_quality, flush, and the records."""
    with Sandbox(seed=3) as sb:
        assert _admin(sb, "subscribe", {"url": receiver.url})[1]["webhook_url"] == receiver.url
        assert _admin(sb, "set_webhooks", {"statuses": ["sent"]})[1]["statuses"] == ["sent"]
        assert _admin(sb, "fail_late", {"code": 131049})[1]["code"] == 131049
        assert _admin(sb, "late_failures")[1][0]["id"] == "late_1"
        send(sb)
        assert _admin(sb, "deliver_account_update", {"event": "PARTNER_REMOVED"})[0] == 200
        assert _admin(sb, "set_quality", {"phone_number_id": sb.phone_number_id})[0] == 200
        assert _admin(sb, "deliver_webhook", {"field": "x", "value": {}})[0] == 200
        assert _admin(sb, "flush_webhooks", {"timeout": BOUND})[1] == {"flushed": True}
        status, records = _admin(sb, "webhooks")
        assert status == 200
        assert [r["status"] for r in records][:2] == ["sent", "failed"]
        assert (
            records[1]["body"]["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0][
                "code"
            ]
            == 131049
        )
        assert [r["field"] for r in records][2:] == [
            "account_update",
            "phone_number_quality_update",
            "x",
        ]
        assert _admin(sb, "")[1]["webhook_url"] == receiver.url
        status, error = _admin(sb, "fail_late", {"code": 1})
        assert status == 400
        assert "code" in error["error"]["message"]
        status, error = _admin(sb, "set_webhooks", {"retries": 3})
        assert status == 400
        assert "retries" in error["error"]["message"]


def test_the_sandbox_never_imports_the_parser_or_the_classifier():
    """The sandbox writes Meta's payloads itself, so a test against it can catch a wrong parse."""
    import subprocess
    import sys

    code = (
        "import sys, wa_auth.sandbox; "
        "print(sorted(m for m in sys.modules if m.startswith('wa_auth.') "
        "and not m.startswith('wa_auth.sandbox')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "['wa_auth._closing', 'wa_auth._exports', 'wa_auth._redact']"
