"""The public API used as a consumer would; checked by `mypy --strict`, never run."""

from __future__ import annotations

import wa_auth
from wa_auth import AsyncWhatsAppClient, SendResult, WhatsAppClient, errors
from wa_auth.providers import StaticTokenProvider, Token, TokenProvider


def sync_usage() -> str:
    with WhatsAppClient(token="t", phone_number_id="123") as client:
        result: SendResult = client.send_text("+15551234567", "hi", idempotency_key="k1")
        info = client.debug_token()
        expires: int = info.expires_at
        page = client.list_templates(limit=10)
        names = [t.name for t in page.items]
        return result.message_id + str(expires) + ",".join(names)


async def async_usage() -> str:
    provider: TokenProvider = StaticTokenProvider("t")
    async with AsyncWhatsAppClient(token_provider=provider, phone_number_id=1) as client:
        result = await client.send_template("+15551234567", "hello_world", "en_US")
        media = await client.download_media("42")
        data: bytes = media.content
        return result.message_id + str(len(data))


def classify(body: bytes) -> str:
    err = errors.from_response(401, body)
    if isinstance(err, wa_auth.TokenExpiredError):
        return err.operator_action
    category: str = err.category
    retry: float | None = err.retry_after
    return category + str(retry)


def token() -> str:
    t = Token("secret", expires_at=None, source="test")
    return t.fingerprint


async def fast_usage() -> str:
    from wa_auth import FastAsyncWhatsAppClient

    async with FastAsyncWhatsAppClient(token="t", phone_number_id="123", max_in_flight=8) as c:
        result = await c.send_text("+15551234567", "hi")
        gate: int = c.max_in_flight
        return result.message_id + str(gate)


def provider_usage(path: str) -> list[str]:
    from wa_auth.providers import (
        EnvTokenProvider,
        FileTokenProvider,
        RotatingTokenProvider,
        RoutingTokenProvider,
        TokenVerdicts,
    )

    rotating = RotatingTokenProvider([FileTokenProvider(path), EnvTokenProvider("WA_TOKEN")])
    routing = RoutingTokenProvider({"123": rotating, "456": "a-token-string"})
    verdicts = TokenVerdicts()
    with WhatsAppClient(token_provider=routing, verdicts=verdicts, phone_number_id="123") as c:
        health = c.token_health(refresh=True)
        return [health.error_category or "", rotating.get_token().fingerprint]


def event_usage() -> dict[str, int]:
    from wa_auth.events import Counters, Events, RotationWindow

    counters = Counters()
    events = Events(counters)
    events.subscribe(lambda e: None)
    windows: list[RotationWindow] = counters.rotation_report()
    return {**counters.dependents("sha256:0"), "windows": len(windows)}


def guard_usage() -> str:
    from wa_auth.guards import Delivery, Guard, Handlers, RetryPolicy
    from wa_auth.intents import Intent
    from wa_auth.outbox import MemoryOutbox
    from wa_auth.pacing import LocalRateLimiter

    with WhatsAppClient(token="t", phone_number_id="123") as client:
        guard = Guard(
            client,
            policy=RetryPolicy(budget=10.0),
            limiter=LocalRateLimiter(),
            outbox=MemoryOutbox(),
            handlers=Handlers(on_auth=lambda intent, error: None),
        )
        delivery: Delivery = guard.send(Intent.text("+15551234567", "hi"))
        return delivery.state


def _decorated() -> None:
    from wa_auth.guards import RetryPolicy, guarded, requires_scopes

    @guarded
    def notify(to: str, *, urgent: bool = False) -> int:
        return len(to) + urgent

    @guarded(policy=RetryPolicy(max_attempts=2))
    async def anotify(to: str) -> str:
        return to

    @requires_scopes("whatsapp_business_messaging")
    def scoped(client: WhatsAppClient, to: str) -> str:
        return client.send_text(to, "hi").message_id

    # The decorators keep the signatures: these are checked by mypy, never run.
    count: int = notify("+15551234567", urgent=True)
    pending = anotify("+15551234567")
    sent: str = scoped(WhatsAppClient(token="t"), "+15551234567")
    del count, pending, sent


def webhook_receiver(raw_body: bytes, signature: str | None) -> list[str]:
    from wa_auth import webhooks
    from wa_auth.events import Counters, Events

    hub = Events(Counters())
    webhooks.verify_signature(raw_body, signature, ["new", StaticTokenProvider("old")], events=hub)
    ledger: webhooks.WebhookLedger = webhooks.MemoryWebhookLedger(window=3600.0)
    applied: list[str] = []
    for event in webhooks.parse(raw_body, events=hub):
        admitted: webhooks.Admission = webhooks.admit(event, ledger, events=hub)
        if admitted.verdict == webhooks.APPLY and isinstance(event, webhooks.MessageStatus):
            error: errors.ApiError | None = event.error
            order: int | None = event.order
            applied.append(f"{event.id}:{event.status}:{order}:{error}")
        elif isinstance(event, webhooks.AccountUpdate) and event.effect == webhooks.STOPS:
            category: str | None = event.category
            applied.append(str(category))
    challenge: str = webhooks.handle_verification({"hub.mode": "subscribe"}, "token")
    return [*applied, challenge]


async def awebhook_receiver(raw_body: bytes, signature: str | None) -> bool:
    from wa_auth import webhooks

    await webhooks.averify_signature(raw_body, signature, StaticTokenProvider("secret"))
    ledger = webhooks.MemoryWebhookLedger()
    verdicts = [(await webhooks.aadmit(e, ledger)).apply for e in webhooks.parse(raw_body)]
    return all(verdicts)


def fleet_worker(url: str) -> float | None:
    from wa_auth import Guard, RedisState, StateUnavailableError
    from wa_auth.fleet import RedisRateLimiter, RotationRecord
    from wa_auth.pacing import PauseStore, RateLimiter
    from wa_auth.providers import VerdictStore
    from wa_auth.state import HealthCache
    from wa_auth.webhooks import WebhookLedger

    with RedisState(url, namespace="team", timeout=1.0) as state:
        verdicts: VerdictStore = state.verdicts
        pauses: PauseStore = state.pauses
        limiter: RateLimiter = state.limiter(rate=80.0, expected_workers=4)
        ledger: WebhookLedger = state.ledger(window=3600.0)
        health: HealthCache = state.health
        client = WhatsAppClient(
            token="t", phone_number_id="1", verdicts=verdicts, health_cache=health
        )
        Guard(client, pauses=pauses, limiter=limiter)
        fleet_limiter: RedisRateLimiter = state.limiter()
        fleet_limiter.set_rate("1", 1000.0)
        won: RotationRecord | None = state.rotation.compare_and_set("main", 0, "sha256:0")
        del ledger, won
        try:
            state.ping()
        except StateUnavailableError as exc:
            address: str = exc.address
            del address
        return limiter.acquire("1", None, max_wait=1.0)


def closing_the_loop(body: bytes, header: str | None) -> list[str]:
    from wa_auth import webhooks
    from wa_auth.guards import Applied, Guard
    from wa_auth.outbox import OutboxRow, SqliteOutbox
    from wa_auth.pacing import LocalRateLimiter, check_rate

    webhooks.verify_signature(body, header, ["old-secret", "new-secret"])
    ledger = webhooks.MemoryWebhookLedger()
    limiter = LocalRateLimiter()
    limiter.set_rate("123", check_rate(1000))
    done: list[str] = []
    with WhatsAppClient(token="t", phone_number_id="123") as client, SqliteOutbox("o.db") as box:
        guard = Guard(client, outbox=box, limiter=limiter)
        for event in webhooks.parse(body):
            if webhooks.admit(event, ledger).verdict != webhooks.APPLY:
                continue
            applied: Applied = guard.apply(event, phone_number_id="123")
            done.extend(applied.actions)
            if isinstance(event, webhooks.MessageStatus):
                row: OutboxRow | None = box.apply_status(event)
                done.append(row.state if row is not None else "none")
    return done
