"""The asyncio clients over respx: the tables of `tests/cases/client.py`, awaited.

Each test that sends runs over both of `make_client`'s clients: `AsyncWhatsAppClient` (httpx,
mocked by respx) and `FastAsyncWhatsAppClient(transport="raw")`, whose real sockets reach the
same respx routes through `bridge` (as the stdlib transport's do in `test_client.py`). httpx's
own exceptions and `http_client=` are httpx's only; the raw transport's socket failures are
`test_raw.py`'s.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bridge import reroute_raw, respx_bridge
from cases import case_id
from cases.client import (
    AUTH_CATEGORIES,
    BASE,
    ENDPOINTS,
    ERROR_ANSWERS,
    EXPIRED,
    INVALID_CALLS,
    MEDIA_ID,
    MEDIA_URL,
    NEW_TOKEN,
    NOT_SENT,
    OTHER_ANSWERS,
    OTHER_PHONE,
    OVERRIDE_ENDPOINTS,
    PHONE,
    SEND_OK,
    SENDS,
    TOKEN,
    TOKEN_ANSWERS,
    TRANSPORT_ERRORS,
    USAGE_HEADERS,
    WABA,
    WAMID,
    FlipProvider,
    no_token_leak,
    override_url,
)
from helpers import araised, graph_body
from wa_auth import (
    AsyncWhatsAppClient,
    FastAsyncWhatsAppClient,
    RequestValidationError,
    Token,
    TokenExpiredError,
    TokenRevokedError,
    TransportError,
    UnknownApiError,
    WhatsAppError,
)
from wa_auth.events import Events
from wa_auth.models import MediaContent

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["httpx", "raw"])
async def make_client(request, respx_mock) -> AsyncIterator[Callable[..., Any]]:
    """Make asyncio clients over one transport, each answered by `respx_mock`'s routes."""
    made: list[Any] = []
    with contextlib.ExitStack() as stack:
        bridge = stack.enter_context(respx_bridge(respx_mock)) if request.param == "raw" else None

        def make(**options: Any) -> Any:
            if bridge is None:
                c: Any = AsyncWhatsAppClient(**options)
            else:
                c = FastAsyncWhatsAppClient(transport="raw", **options)
                reroute_raw(c, bridge)
            made.append(c)
            return c

        yield make
        for c in made:
            await c.aclose()


@pytest.fixture
async def client(counters, make_client):
    async with make_client(
        token=TOKEN, phone_number_id=PHONE, business_account_id=WABA, events=Events(counters)
    ) as c:
        yield c


@pytest.fixture
async def httpx_client(counters):
    """The httpx client only: for httpx's own exceptions."""
    async with AsyncWhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, business_account_id=WABA, events=Events(counters)
    ) as c:
        yield c


def _content(body):
    return {"json": body} if isinstance(body, dict) else {"text": body}


@pytest.mark.parametrize("case", ENDPOINTS, ids=case_id)
async def test_endpoint_request_and_model(case, client, respx_mock):
    """Each endpoint sends Meta's documented request and parses the answer into its model."""
    route = respx_mock.route(method=case.http_method, url=case.url).respond(
        200, json=case.answer, headers=USAGE_HEADERS
    )

    result = await getattr(client, case.method)(*case.args, **case.kwargs)

    request = route.calls.last.request
    assert route.call_count == 1
    assert str(request.url) == case.url
    if callable(case.body):
        case.body(request)
    elif case.body is not None:
        assert case.body == json.loads(request.content)
    no_token_leak(request, TOKEN)
    case.check(result)
    if hasattr(result, "usage"):
        assert result.usage.app.call_count == 28


async def test_download_media(client, respx_mock):
    """download_media looks up the URL, then fetches the bytes with the same token."""
    respx_mock.get(f"{BASE}/{MEDIA_ID}").respond(200, json={"url": MEDIA_URL, "id": MEDIA_ID})
    blob = respx_mock.get(MEDIA_URL).respond(200, content=b"\x89PNG")

    result = await client.download_media(MEDIA_ID)

    assert isinstance(result, MediaContent)
    assert result.content == b"\x89PNG"
    assert blob.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("case", OVERRIDE_ENDPOINTS, ids=case_id)
async def test_per_call_phone_number_id(case, client, respx_mock):
    """phone_number_id= on a call overrides the client's sender."""
    route = respx_mock.route(method=case.http_method, url=override_url(case)).respond(
        200, json=case.answer
    )

    await getattr(client, case.method)(*case.args, phone_number_id=OTHER_PHONE, **case.kwargs)

    assert route.call_count == 1


@pytest.mark.parametrize("case", SENDS, ids=case_id)
async def test_idempotency_key_is_biz_opaque_callback_data(case, client, respx_mock):
    """idempotency_key= goes out as biz_opaque_callback_data and comes back on the result."""
    route = respx_mock.route(method=case.http_method, url=case.url).respond(200, json=case.answer)

    result = await getattr(client, case.method)(
        *case.args, idempotency_key="order-42", **case.kwargs
    )

    sent = json.loads(route.calls.last.request.content)
    assert sent == {**case.body, "biz_opaque_callback_data": "order-42"}
    assert result.idempotency_key == "order-42"


@pytest.mark.parametrize("case", INVALID_CALLS, ids=case_id)
async def test_local_validation_sends_nothing(case, client, respx_mock):
    """Bad arguments raise RequestValidationError (a ValueError) and send nothing."""
    with pytest.raises(RequestValidationError, match=re.escape(case.match)) as info:
        await getattr(client, case.method)(*case.args, **case.kwargs)

    assert isinstance(info.value, ValueError)
    assert not respx_mock.calls


@pytest.mark.parametrize("case", ERROR_ANSWERS, ids=case_id)
async def test_error_answers_raise_classified_errors(case, client, counters, respx_mock):
    """An error answer raises its class with usage, fingerprint and the right event."""
    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(
        case.status, headers=USAGE_HEADERS, **_content(case.body)
    )

    err = await araised(case.cls, lambda: client.send_text("+16505076520", "hi"))

    assert err.category == case.category
    assert err.usage.app.call_count == 28
    assert err.token_fingerprint == Token(TOKEN).fingerprint
    event = "auth.failed" if case.category in AUTH_CATEGORIES else "api.failed"
    assert counters.get(event, case.category) == 1


@pytest.mark.parametrize("case", TOKEN_ANSWERS, ids=case_id)
async def test_token_error_retried_once_with_new_token(case, counters, respx_mock, make_client):
    """A token-class failure invalidates the token and retries exactly once with the new one."""
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").mock(
        side_effect=[httpx.Response(case.status, json=case.body), httpx.Response(200, json=SEND_OK)]
    )

    async with make_client(
        token_provider=provider, phone_number_id=PHONE, events=Events(counters)
    ) as c:
        result = await c.send_text("+16505076520", "hi")

    assert result.message_id == WAMID
    assert route.call_count == 2
    no_token_leak(route.calls[1].request, NEW_TOKEN, TOKEN)
    assert provider.invalidated == [(Token(TOKEN).fingerprint, case.category)]
    assert counters.get("auth.retried") == 1


async def test_second_token_failure_is_not_retried_again(respx_mock, make_client):
    """If the new token fails too, the second error rises, caused by the first."""
    provider = FlipProvider(TOKEN, NEW_TOKEN, "EAAGthirdtoken00000000000000000")
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=EXPIRED.body)

    async with make_client(token_provider=provider, phone_number_id=PHONE) as c:
        with pytest.raises(TokenExpiredError) as info:
            await c.send_text("+16505076520", "hi")

    assert route.call_count == 2
    assert isinstance(info.value.__cause__, TokenExpiredError)


@pytest.mark.parametrize("case", OTHER_ANSWERS, ids=case_id)
async def test_no_auth_retry_for_other_categories(case, respx_mock, make_client):
    """Permission, account, rate, transient, invalid and unknown failures are never auth-retried."""
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(case.status, **_content(case.body))

    async with make_client(token_provider=provider, phone_number_id=PHONE) as c:
        await araised(case.cls, lambda: c.send_text("+16505076520", "hi"))

    assert route.call_count == 1
    assert provider.invalidated == []


async def test_no_retry_when_provider_returns_same_token(counters, respx_mock, make_client):
    """A provider that hands back the same token after invalidate gets no retry."""
    provider = FlipProvider(TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=EXPIRED.body)

    async with make_client(
        token_provider=provider, phone_number_id=PHONE, events=Events(counters)
    ) as c:
        with pytest.raises(TokenExpiredError):
            await c.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert counters.get("auth.token_invalidated") == 1
    assert counters.get("auth.retried") == 0


async def test_debug_token_of_own_token_is_not_retried(respx_mock, make_client):
    """Inspecting the client's own token is not re-sent with another token."""
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.get(f"{BASE}/debug_token").respond(
        400, json=graph_body(190, message="Invalid OAuth access token.")
    )

    async with make_client(token_provider=provider, phone_number_id=PHONE) as c:
        with pytest.raises(TokenRevokedError):
            await c.debug_token()

    assert route.call_count == 1


@pytest.mark.parametrize(
    "content", [b"", b"[]", b"{}", b"<html/>"], ids=["empty", "list", "object", "html"]
)
async def test_unexpected_2xx_body_on_send_may_be_delivered(content, client, respx_mock):
    """A 2xx answer a send cannot parse is UnknownApiError with maybe_delivered."""
    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(200, content=content)

    with pytest.raises(UnknownApiError) as info:
        await client.send_text("+16505076520", "hi")

    assert info.value.maybe_delivered
    assert not info.value.retryable


@pytest.mark.parametrize("exc", TRANSPORT_ERRORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("operation", ["send_text", "get_phone_number"])
async def test_every_httpx_transport_error_is_mapped(exc, operation, httpx_client, respx_mock):
    """Every httpx.TransportError becomes TransportError (UnsupportedProtocol: RequestValidationError)."""
    respx_mock.route().mock(side_effect=exc)
    client = httpx_client

    call = (
        client.send_text("+16505076520", "hi")
        if operation == "send_text"
        else client.get_phone_number()
    )
    with pytest.raises(WhatsAppError) as info:
        await call

    err = info.value
    assert not isinstance(err, httpx.HTTPError)
    # The cause is a request-free stand-in: httpx's exception keeps the request (the token).
    assert type(err.__cause__) is ConnectionError
    assert str(err.__cause__).startswith(exc.__name__ + ":")
    assert err.__context__ is None
    if exc is httpx.UnsupportedProtocol:
        assert isinstance(err, RequestValidationError)
        return
    assert type(err) is TransportError
    delivered = operation == "send_text" and exc.__name__ not in NOT_SENT
    assert err.maybe_delivered == delivered
    assert err.retryable == (not delivered)


async def test_owned_http_client_is_closed():
    """The async context manager closes the httpx client the object created."""
    async with AsyncWhatsAppClient(token=TOKEN, phone_number_id=PHONE) as c:
        http = c._http
    assert http.is_closed


async def test_injected_http_client_is_not_closed():
    """An injected httpx.AsyncClient stays open after aclose()."""
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=SEND_OK))
    )
    async with AsyncWhatsAppClient(token=TOKEN, phone_number_id=PHONE, http_client=http) as c:
        assert (await c.send_text("+16505076520", "hi")).message_id == WAMID
    assert not http.is_closed
    await http.aclose()


async def test_async_provider_is_used(respx_mock, make_client):
    """The async client asks the provider with aget_token(), never get_token()."""

    class AsyncOnly(FlipProvider):
        def get_token(self):
            raise AssertionError("sync get_token called from the async client")

    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(200, json=SEND_OK)
    async with make_client(token_provider=AsyncOnly(TOKEN), phone_number_id=PHONE) as c:
        assert (await c.send_text("+16505076520", "hi")).message_id == WAMID
