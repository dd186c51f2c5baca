"""The loop closed end to end: a guarded send, the sandbox's signed webhooks, a real receiver.

Everything is real and in this process: the sandbox's Graph API and its webhook deliverer, a
`WhatsAppClient` over HTTP, a `Guard` with a `SqliteOutbox` in tmp_path, and a receiver on
127.0.0.1 that does what a production endpoint does with each POST: `verify_signature` over
the raw bytes (401 otherwise), `parse`, `admit` against a ledger, then `guard.apply` (which
applies a status to the guard's outbox, `Outbox.apply_status`), releasing the admission and
answering 500 if applying fails. A late 131031 pauses the number and turns its row failed;
redeliveries and reordering apply each event once and no status goes backwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

import wa_auth
from serving import PostServer
from wa_auth import webhooks
from wa_auth.errors import WebhookSignatureError, WhatsAppError
from wa_auth.events import Counters, Events
from wa_auth.guards import DELIVERED, FAILED, QUEUED, Applied, Guard, Handlers
from wa_auth.intents import Intent
from wa_auth.outbox import SqliteOutbox
from wa_auth.pacing import ACCOUNT, LocalRateLimiter
from wa_auth.sandbox import Sandbox

#: Every wait in this module is bounded by this many seconds (a hang fails, never blocks).
BOUND = 30.0
TO = "+15551234567"
SECRET = "0123456789abcdef0123456789abcdef"


class Receiver(PostServer):
    """A webhook endpoint on 127.0.0.1: verify, parse, admit, apply; what it did, recorded."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.guard: Guard | None = None
        self.ledger = webhooks.MemoryWebhookLedger()
        self.hub = Events()
        self.counters = Counters()
        self.hub.subscribe(self.counters)
        self.applied: list[tuple[webhooks.WebhookEvent, Applied]] = []
        #: Display numbers (digits) to phone number ids: what a quality update names.
        self.numbers: dict[str, str] = {}
        self.lock = threading.Lock()
        super().__init__("/webhook")

    def answer(self, path: str, headers: Message, body: bytes) -> int:
        return self.handle(body, headers.get(webhooks.SIGNATURE_HEADER))

    def handle(self, body: bytes, header: str | None) -> int:
        try:
            webhooks.verify_signature(body, header, self.secret, events=self.hub)
        except WebhookSignatureError:
            return 401
        assert self.guard is not None
        for event in webhooks.parse(body, events=self.hub):
            admitted = webhooks.admit(event, self.ledger, events=self.hub)
            if admitted.verdict != webhooks.APPLY:
                continue
            try:
                number = None
                if isinstance(event, webhooks.QualityUpdate):
                    number = self.numbers.get(event.display_phone_number or "")
                applied = self.guard.apply(event, phone_number_id=number)
            except WhatsAppError:
                webhooks.release(admitted, self.ledger)
                return 500
            with self.lock:
                self.applied.append((event, applied))
        return 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    yield r
    r.close()


@pytest.fixture
def sb(receiver: Receiver) -> Iterator[Sandbox]:
    with Sandbox(seed=11, webhook_url=receiver.url, app_secret=SECRET) as sandbox:
        yield sandbox


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[SqliteOutbox]:
    with SqliteOutbox(tmp_path / "outbox.db") as box:
        yield box


def client_of(sb: Sandbox, **kw: Any) -> wa_auth.WhatsAppClient:
    return wa_auth.WhatsAppClient(
        base_url=sb.base_url,
        token=sb.issue_token(),
        phone_number_id=sb.phone_number_id,
        events=Events(),
        **kw,
    )


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str]] = []

    def __call__(self, intent: Intent | None, error: WhatsAppError) -> None:
        self.seen.append((intent.idempotency_key if intent else None, error.category))


def test_a_late_131031_pauses_the_number_and_fails_the_row(sb, receiver, outbox):
    """Accepted with a wamid, failed by webhook: row failed, handlers once, number paused."""
    sb.fail_late(131031)
    locked = Calls()
    with client_of(sb) as client:
        guard = Guard(client, outbox=outbox, handlers=Handlers(on_account_state=locked))
        receiver.guard = guard
        sent = guard.send(Intent.text(TO, "your order shipped", idempotency_key="order-1"))
        assert sent.state == DELIVERED
        assert sb.flush_webhooks(BOUND)

        row = outbox.get("order-1")
        assert row is not None
        assert (row.state, row.category, row.reason, row.message_id) == (
            FAILED,
            "account_state",
            "webhook:131031",
            sent.result.message_id,
        )
        assert row.dead_letter
        assert locked.seen == [("order-1", "account_state")]
        pause = guard.pauses.get(ACCOUNT, sb.phone_number_id)
        assert pause is not None
        assert pause.error["code"] == 131031
        # The number is paused exactly as after a send's 131031: the next intent waits.
        requests = len(sb.messages())
        held = guard.send(Intent.text(TO, "second", idempotency_key="order-2"))
        assert (held.state, held.reason) == (QUEUED, "paused")
        assert len(sb.messages()) == requests
    statuses = [(e.status, a.actions) for e, a in receiver.applied]
    assert statuses == [("sent", ()), ("failed", ("outbox", "handlers", "paused"))]
    snapshot = receiver.counters.snapshot()
    assert snapshot["webhook.verified"] == 2
    assert sum(n for k, n in snapshot.items() if k.startswith("webhook.accepted")) == 2


def test_a_tampered_delivery_is_refused_and_applies_nothing(sb, receiver, outbox):
    """A body signed with another secret: 401, nothing parsed, nothing applied."""
    with client_of(sb) as client:
        receiver.guard = Guard(client, outbox=outbox)
        receiver.secret = "another secret, not the app's"
        sb.fail_late(131031)
        sent = receiver.guard.send(Intent.text(TO, "hi", idempotency_key="order-1"))
        sb.set_webhooks(max_attempts=1)
        assert sb.flush_webhooks(BOUND)
    assert sent.state == DELIVERED
    assert receiver.applied == []
    assert outbox.get("order-1").state == DELIVERED
    assert receiver.guard.pauses.list() == []
    rejected = receiver.counters.snapshot()
    assert sum(n for k, n in rejected.items() if k.startswith("webhook.rejected")) >= 1


def test_redeliveries_and_reordering_apply_each_event_once_and_never_backwards(
    sb, receiver, outbox
):
    """Every status duplicated, half reordered, late failures among them: each applied once."""
    sb.set_webhooks(duplicate_rate=1.0, reorder_rate=0.5)
    sb.fail_late(131026, times=3)
    sb.fail_late(131049, times=2)
    invalid = Calls()
    with client_of(sb) as client:
        limiter = LocalRateLimiter(pair_interval=None)
        handlers = Handlers(on_invalid_request=invalid)
        guard = Guard(client, outbox=outbox, limiter=limiter, handlers=handlers)
        receiver.guard = guard
        deliveries = [
            guard.send(Intent.text(f"+1555123450{n}", f"m{n}", idempotency_key=f"k{n}"))
            for n in range(10)
        ]
        assert [d.state for d in deliveries] == [DELIVERED] * 10
        assert sb.flush_webhooks(BOUND)

    records = sb.webhooks()
    assert any(r.duplicate for r in records)
    applied_keys = [e.key for e, _ in receiver.applied]
    assert len(applied_keys) == len(set(applied_keys))  # each event once
    assert receiver.counters.snapshot()["webhook.duplicate"] >= len(applied_keys)
    # Per message, the applied statuses only go forward (a late `sent` after `failed` is stale).
    by_message: dict[str, list[int]] = {}
    for event, _ in receiver.applied:
        by_message.setdefault(event.message_id, []).append(event.order)
    assert all(orders == sorted(set(orders)) for orders in by_message.values())
    failed = {e.idempotency_key for e, _ in receiver.applied if e.status == "failed"}
    assert len(failed) == 5
    rows = {r.idempotency_key: r for r in outbox.list()}
    assert {k for k, r in rows.items() if r.state == FAILED} == failed
    assert {k for k, r in rows.items() if r.state == DELIVERED} == set(rows) - failed
    assert (
        sorted(r.reason for r in rows.values() if r.state == FAILED)
        == ["webhook:131026"] * 3 + ["webhook:131049"] * 2
    )
    # Handlers ran once per late failure of their category, with the intent.
    assert sorted(k for k, _ in invalid.seen) == sorted(
        k for k, r in rows.items() if r.reason == "webhook:131026"
    )
    # The 131049 held the pair (number, that recipient) back, as a send's 131049 would.
    capped = [r.intent.to for k, r in rows.items() if r.reason == "webhook:131049"]
    assert all(limiter.held(sb.phone_number_id, to) > 0 for to in capped)


def test_account_news_from_the_sandbox_reaches_the_guard(sb, receiver):
    """An uninstalled app's token gets a verdict; a throughput upgrade sets the number's rate."""
    with client_of(sb, business_account_id=sb.business_account_id) as client:
        limiter = LocalRateLimiter()
        guard = Guard(client, limiter=limiter)
        receiver.guard = guard
        # A quality update names its number by the display number: the receiver maps it.
        number = client.get_phone_number()
        digits = "".join(c for c in number.display_phone_number or "" if c.isdigit())
        receiver.numbers[digits] = number.id
        sb.set_quality(sb.phone_number_id, event="THROUGHPUT_UPGRADE", current_limit="TIER_10K")
        sb.deliver_account_update("PARTNER_APP_UNINSTALLED")
        assert sb.flush_webhooks(BOUND)
        token = client.token_provider.get_token()
        (quality, upgraded), (uninstall, revoked) = receiver.applied
        assert (quality.type, upgraded.actions, upgraded.rate) == (
            "phone_number_quality_update",
            ("rate",),
            1000.0,
        )
        assert limiter.rate(sb.phone_number_id) == 1000.0
        assert (uninstall.type, uninstall.business_account_id) == (
            "account_update",
            sb.business_account_id,
        )
        assert (revoked.actions, revoked.token_fingerprints) == (
            ("verdicts",),
            (token.fingerprint,),
        )
        assert client.verdicts.get(token.fingerprint) is not None
