"""TokenVerdicts and the client flow: fast-fail on a known-dead token, record, retry once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import threading

import httpx
import pytest

from helpers import Clock, graph_body, raised
from wa_auth import _context, _core, _endpoints
from wa_auth._client import AsyncWhatsAppClient, WhatsAppClient
from wa_auth.errors import (
    InsufficientPermissionError,
    RateLimitError,
    TokenExpiredError,
    TokenRevokedError,
    TokenUnavailableError,
    from_response,
)
from wa_auth.events import Counters, Events
from wa_auth.providers import (
    RoutingTokenProvider,
    StaticTokenProvider,
    Token,
    TokenVerdicts,
    VerdictStore,
)

pytestmark = pytest.mark.anyio

TOKEN = "EAAGverdicttoken0123456789abcdefABCDEF"
OTHER = "EAAGothertoken0123456789abcdefABCDEFGH"
PHONE = "106540352242922"
WAMID = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
OK = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "1555", "wa_id": "1555"}],
    "messages": [{"id": WAMID}],
}


EXPIRED = graph_body(
    190, 463, message="Error validating access token: Session has expired", fbtrace_id="Atrace"
)
REVOKED = graph_body(
    190, 460, message="Error validating access token: password changed", fbtrace_id="Atrace"
)
PERMISSION = graph_body(
    10, message="(#10) Application does not have permission for this action", fbtrace_id="Atrace"
)


def expired_error():
    return from_response(401, EXPIRED)


class Swappable(StaticTokenProvider):
    """A provider that yields `next_value` after an invalidation."""

    def __init__(self, value, next_value=None):
        super().__init__(value)
        self.next_value = next_value
        self.invalidations = 0

    def invalidate(self, token, reason):
        self.invalidations += 1
        if self.next_value and token == self._token:
            self._token = Token(self.next_value)


# --- the store ----------------------------------------------------------------------------------


def test_store_records_and_expires():
    """A verdict is found until its TTL passes."""
    clock = Clock()
    store = TokenVerdicts(ttl=10, monotonic=clock)
    err = expired_error()
    store.record("sha256:abc", err)
    found = store.get("sha256:abc")
    assert isinstance(found, TokenExpiredError)
    assert found is not err  # a copy without traceback is kept
    clock.t = 10.0
    assert store.get("sha256:abc") is None
    assert len(store) == 0


async def test_store_async_methods():
    """The async methods mirror the sync ones (a Redis store implements both)."""
    store = TokenVerdicts()
    assert isinstance(store, VerdictStore)
    await store.arecord("sha256:abc", expired_error())
    assert isinstance(await store.aget("sha256:abc"), TokenExpiredError)
    await store.aforget("sha256:abc")
    assert await store.aget("sha256:abc") is None


def test_store_bounded():
    """The store keeps at most `max_entries`, dropping the oldest."""
    store = TokenVerdicts(max_entries=3)
    for i in range(5):
        store.record(f"sha256:{i}", expired_error())
    assert store.get("sha256:0") is None
    assert store.get("sha256:4") is not None


def test_stored_error_pickles():
    """A verdict's stored error survives pickle (for the SQLite / Redis stores)."""
    store = TokenVerdicts()
    store.record("sha256:abc", expired_error())
    back = pickle.loads(pickle.dumps(store.get("sha256:abc")))
    assert back.category == "token_expired"


# --- the flow, driven directly ------------------------------------------------------------------


def _ctx(provider, verdicts):
    return _context.Context(
        provider=provider, events=Events(), phone_number_id=PHONE, verdicts=verdicts
    )


def test_flow_checks_the_verdict_before_sending():
    """After GetToken the flow asks for a verdict; with one it raises and yields no Send."""
    store = TokenVerdicts()
    token = Token(TOKEN)
    store.record(token.fingerprint, expired_error())
    ctx = _ctx(StaticTokenProvider(token), store)
    flow = _endpoints.send_text(ctx, "15551234567", "hi")
    effect = next(flow)
    assert isinstance(effect, _core.GetToken)
    effect = flow.send(token)
    assert effect == _core.CheckVerdict(token.fingerprint)
    verdict = store.get(token.fingerprint)
    effect = flow.send(verdict)
    assert isinstance(effect, _core.GetToken)  # the provider is asked for another token
    with pytest.raises(TokenExpiredError) as info:
        flow.send(token)  # the same one: fail fast
    assert info.value is not verdict


def test_flow_records_verdict_on_token_failure():
    """A token-class answer yields RecordVerdict before the provider is asked again."""
    ctx = _ctx(StaticTokenProvider(TOKEN), TokenVerdicts())
    token = Token(TOKEN)
    flow = _endpoints.send_text(ctx, "15551234567", "hi")
    next(flow)
    flow.send(token)  # -> CheckVerdict
    send = flow.send(None)
    assert isinstance(send, _core.Send)
    record = flow.send(_core.Response(401, {}, json.dumps(EXPIRED).encode()))
    assert isinstance(record, _core.RecordVerdict)
    assert record.fingerprint == token.fingerprint
    assert isinstance(record.error, TokenExpiredError)


# --- the clients --------------------------------------------------------------------------------


def _handler(answers, counter):
    def handle(request):
        counter.append(request.headers["authorization"].removeprefix("Bearer "))
        status, body = answers(request)
        return httpx.Response(status, json=body)

    return handle


def test_second_call_fails_fast_without_a_request():
    """Once a token is proved dead, the next call raises the same error and sends nothing."""
    sent: list[str] = []
    transport = httpx.MockTransport(_handler(lambda r: (401, EXPIRED), sent))
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE, transport=transport) as client:
        with pytest.raises(TokenExpiredError) as first:
            client.send_text("15551234567", "hi")
        with pytest.raises(TokenExpiredError) as second:
            client.send_text("15551234567", "hi")
    assert len(sent) == 1
    assert second.value.fbtrace_id == first.value.fbtrace_id == "Atrace"
    assert second.value.token_fingerprint == Token(TOKEN).fingerprint


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (PERMISSION, InsufficientPermissionError),
        (graph_body(4, message="(#4) rate", fbtrace_id="Atrace"), RateLimitError),
    ],
    ids=["permission", "rate-limit"],
)
def test_non_token_failures_record_no_verdict(body, error):
    """Permission and rate-limit failures do not mark the token dead."""
    sent: list[str] = []
    transport = httpx.MockTransport(_handler(lambda r: (400, body), sent))
    store = TokenVerdicts()
    with WhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, transport=transport, verdicts=store
    ) as client:
        for _ in range(2):
            raised(error, lambda: client.send_text("15551234567", "hi"))
    assert len(sent) == 2
    assert len(store) == 0


def test_token_failure_retries_once_with_a_new_token():
    """On 190 the provider is invalidated and the call is re-sent once with its new token."""
    sent: list[str] = []
    transport = httpx.MockTransport(
        _handler(
            lambda r: (401, EXPIRED) if r.headers["authorization"].endswith(TOKEN) else (200, OK),
            sent,
        )
    )
    provider = Swappable(TOKEN, OTHER)
    store = TokenVerdicts()
    with WhatsAppClient(
        token_provider=provider, phone_number_id=PHONE, transport=transport, verdicts=store
    ) as client:
        result = client.send_text("15551234567", "hi")
    assert result.message_id == WAMID
    assert sent == [TOKEN, OTHER]
    assert store.get(Token(TOKEN).fingerprint) is not None


def test_never_more_than_one_auth_retry():
    """When the new token is dead too, the second error rises, chained to the first."""
    sent: list[str] = []
    transport = httpx.MockTransport(_handler(lambda r: (401, REVOKED), sent))
    provider = Swappable(TOKEN, OTHER)
    with WhatsAppClient(
        token_provider=provider, phone_number_id=PHONE, transport=transport
    ) as client:
        with pytest.raises(TokenRevokedError) as info:
            client.send_text("15551234567", "hi")
        assert isinstance(info.value.__cause__, TokenRevokedError)
        assert len(client.verdicts) == 2
    assert sent == [TOKEN, OTHER]


def test_shared_store_fails_fast_in_another_client():
    """Two clients given one store: what one learns, the other uses without a request."""
    sent: list[str] = []
    transport = httpx.MockTransport(_handler(lambda r: (401, EXPIRED), sent))
    store = TokenVerdicts()
    with (
        WhatsAppClient(
            token=TOKEN, phone_number_id=PHONE, transport=transport, verdicts=store
        ) as a,
        WhatsAppClient(
            token=TOKEN, phone_number_id=PHONE, transport=transport, verdicts=store
        ) as b,
    ):
        with pytest.raises(TokenExpiredError):
            a.send_text("15551234567", "hi")
        with pytest.raises(TokenExpiredError):
            b.send_text("15551234567", "hi")
    assert len(sent) == 1


def test_clients_default_to_separate_stores():
    """Without `verdicts=` each client has a fresh in-memory store of its own."""
    with WhatsAppClient(token=TOKEN) as a, WhatsAppClient(token=TOKEN) as b:
        assert isinstance(a.verdicts, TokenVerdicts)
        assert a.verdicts is not b.verdicts


def test_verdict_invalidates_and_uses_the_replacement():
    """A token with a verdict is invalidated; a different token from the provider is used."""
    sent: list[str] = []
    transport = httpx.MockTransport(_handler(lambda r: (200, OK), sent))
    store = TokenVerdicts()
    store.record(Token(TOKEN).fingerprint, expired_error())
    provider = Swappable(TOKEN, OTHER)
    with WhatsAppClient(
        token_provider=provider, phone_number_id=PHONE, transport=transport, verdicts=store
    ) as client:
        client.send_text("15551234567", "hi")
    assert sent == [OTHER]


async def test_fast_fail_with_32_sends_in_flight():
    """With ≥32 sends in flight, no request starts after the verdict is recorded."""
    store = TokenVerdicts()
    fp = Token(TOKEN).fingerprint
    started_after_verdict = 0
    started = 0
    release = asyncio.Event()
    in_flight = 0

    async def handle(request):
        nonlocal started, started_after_verdict, in_flight
        if store.get(fp) is not None:
            started_after_verdict += 1
        started += 1
        in_flight += 1
        await release.wait()
        in_flight -= 1
        return httpx.Response(401, json=EXPIRED)

    transport = httpx.MockTransport(handle)
    async with AsyncWhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, transport=transport, verdicts=store
    ) as client:

        async def one():
            with pytest.raises(TokenExpiredError):
                await client.send_text("15551234567", "hi")

        wave = [asyncio.ensure_future(one()) for _ in range(40)]
        while started < 40:  # noqa: ASYNC110 - polling the handler's counter
            await asyncio.sleep(0.005)
        assert in_flight >= 32
        release.set()
        late = []
        for _ in range(20):  # more sends keep arriving while the answers come back
            late.append(asyncio.ensure_future(one()))
            await asyncio.sleep(0)
        await asyncio.gather(*wave, *late)
        after = [asyncio.ensure_future(one()) for _ in range(200)]
        await asyncio.gather(*after)
    assert started_after_verdict == 0
    assert started <= 60


def test_fast_fail_with_threads():
    """Threads racing a dead token: no request starts after the verdict is recorded."""
    store = TokenVerdicts()
    fp = Token(TOKEN).fingerprint
    late = []
    gate = threading.Event()

    def handle(request):
        if store.get(fp) is not None:
            late.append(1)
        gate.wait(5)
        return httpx.Response(401, json=EXPIRED)

    transport = httpx.MockTransport(handle)
    with WhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, transport=transport, verdicts=store
    ) as client:

        def one():
            with contextlib.suppress(TokenExpiredError):
                client.send_text("15551234567", "hi")

        threads = [threading.Thread(target=one) for _ in range(32)]
        for t in threads:
            t.start()
        gate.set()
        for t in threads:
            t.join()
        for _ in range(50):
            one()
    assert late == []


def test_routing_picks_the_provider_by_phone_number():
    """A RoutingTokenProvider gives each call the token of its phone_number_id."""
    sent: list[str] = []
    transport = httpx.MockTransport(_handler(lambda r: (200, OK), sent))
    routing = RoutingTokenProvider(
        {PHONE: StaticTokenProvider(TOKEN), "222222222": StaticTokenProvider(OTHER)}
    )
    with WhatsAppClient(
        token_provider=routing, phone_number_id=PHONE, transport=transport
    ) as client:
        client.send_text("15551234567", "hi")
        client.send_text("15551234567", "hi", phone_number_id="222222222")
        with pytest.raises(TokenUnavailableError, match="no token provider is routed"):
            client.send_text("15551234567", "hi", phone_number_id="333333333")
    assert sent == [TOKEN, OTHER]


async def test_routing_async_and_invalidation_goes_to_the_routed_provider():
    """The async client routes too, and invalidates only the routed provider's token."""
    sent: list[str] = []

    def answers(r):
        return (401, EXPIRED) if r.headers["authorization"].endswith(TOKEN) else (200, OK)

    transport = httpx.MockTransport(_handler(answers, sent))
    first = Swappable(TOKEN, "EAAGreplacement0123456789abcdefABCDEF")
    second = Swappable(OTHER)
    routing = RoutingTokenProvider({PHONE: first}, default=second)
    counters = Counters()
    async with AsyncWhatsAppClient(
        token_provider=routing, phone_number_id=PHONE, transport=transport, events=Events(counters)
    ) as client:
        await client.send_text("15551234567", "hi")
        await client.send_text("15551234567", "hi", phone_number_id="999999999")
    assert sent == [TOKEN, "EAAGreplacement0123456789abcdefABCDEF", OTHER]
    assert counters.get("auth.retried") == 1
