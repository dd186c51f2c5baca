"""`AsyncWhatsAppClient` over respx: the same tables as `tests/test_client.py`, awaited."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import httpx
import pytest

from wa_auth import (
    AsyncWhatsAppClient,
    RequestValidationError,
    Token,
    TokenExpiredError,
    TokenRevokedError,
    TransportError,
    UnknownApiError,
    WhatsAppError,
)
from wa_auth.events import Counters, Events
from wa_auth.models import MediaContent

pytestmark = pytest.mark.anyio

_spec = importlib.util.spec_from_file_location(
    "_sync_tables", Path(__file__).with_name("test_client.py")
)
assert _spec is not None
assert _spec.loader is not None
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)

TOKEN, NEW_TOKEN, PHONE, BASE = T.TOKEN, T.NEW_TOKEN, T.PHONE, T.BASE


@pytest.fixture
def counters():
    return Counters()


@pytest.fixture
async def client(counters):
    async with AsyncWhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, business_account_id=T.WABA, events=Events(counters)
    ) as c:
        yield c


@pytest.mark.parametrize("spec", T._ENDPOINTS, ids=T._IDS)
async def test_endpoint_request_and_model(spec, client, respx_mock):
    """Each endpoint sends Meta's documented request and parses the answer into its model."""
    _, method, args, kwargs, http_method, url, body, answer, check = spec
    route = respx_mock.route(method=http_method, url=url).respond(
        200, json=answer, headers=T.USAGE_HEADERS
    )

    result = await getattr(client, method)(*args, **kwargs)

    request = route.calls.last.request
    assert route.call_count == 1
    assert str(request.url) == url
    if callable(body):
        body(request)
    elif body is not None:
        assert body == json.loads(request.content)
    T._no_token_leak(request, TOKEN)
    check(result)
    if hasattr(result, "usage"):
        assert result.usage.app.call_count == 28


async def test_download_media(client, respx_mock):
    """download_media looks up the URL, then fetches the bytes with the same token."""
    respx_mock.get(f"{BASE}/{T.MEDIA_ID}").respond(200, json={"url": T.MEDIA_URL, "id": T.MEDIA_ID})
    blob = respx_mock.get(T.MEDIA_URL).respond(200, content=b"\x89PNG")

    result = await client.download_media(T.MEDIA_ID)

    assert isinstance(result, MediaContent)
    assert result.content == b"\x89PNG"
    assert blob.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("spec", T._OVERRIDE_SPECS, ids=[s[0] for s in T._OVERRIDE_SPECS])
async def test_per_call_phone_number_id(spec, client, respx_mock):
    """phone_number_id= on a call overrides the client's sender."""
    _, method, args, kwargs, http_method, _, _, answer, _ = spec
    expected = T._OVERRIDES.get(spec[0], f"{BASE}/{T.OTHER_PHONE}/messages")
    route = respx_mock.route(method=http_method, url=expected).respond(200, json=answer)

    await getattr(client, method)(*args, phone_number_id=T.OTHER_PHONE, **kwargs)

    assert route.call_count == 1


@pytest.mark.parametrize("spec", T._SENDS, ids=[s[0] for s in T._SENDS])
async def test_idempotency_key_is_biz_opaque_callback_data(spec, client, respx_mock):
    """idempotency_key= goes out as biz_opaque_callback_data and comes back on the result."""
    _, method, args, kwargs, http_method, url, body, answer, _ = spec
    route = respx_mock.route(method=http_method, url=url).respond(200, json=answer)

    result = await getattr(client, method)(*args, idempotency_key="order-42", **kwargs)

    sent = json.loads(route.calls.last.request.content)
    assert sent == {**body, "biz_opaque_callback_data": "order-42"}
    assert result.idempotency_key == "order-42"


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "match"),
    [v[1:] for v in T._VALIDATION],
    ids=[v[0] for v in T._VALIDATION],
)
async def test_local_validation_sends_nothing(method, args, kwargs, match, client, respx_mock):
    """Bad arguments raise RequestValidationError (a ValueError) and send nothing."""
    with pytest.raises(RequestValidationError, match=re.escape(match)) as info:
        await getattr(client, method)(*args, **kwargs)

    assert isinstance(info.value, ValueError)
    assert not respx_mock.calls


@pytest.mark.parametrize(
    ("status", "body", "cls", "category"),
    [a[1:] for a in T._CATEGORY_ANSWERS],
    ids=[a[0] for a in T._CATEGORY_ANSWERS],
)
async def test_error_answers_raise_classified_errors(
    status, body, cls, category, client, counters, respx_mock
):
    """An error answer raises its class with usage, fingerprint and the right event."""
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(status, headers=T.USAGE_HEADERS, **kwargs)

    with pytest.raises(cls) as info:
        await client.send_text("+16505076520", "hi")

    assert info.value.category == category
    assert info.value.usage.app.call_count == 28
    assert info.value.token_fingerprint == Token(TOKEN).fingerprint
    event = "auth.failed" if category in T._AUTH_CATEGORIES else "api.failed"
    assert counters.get(event, category) == 1


@pytest.mark.parametrize(
    "answer", T._CATEGORY_ANSWERS[:2], ids=[a[0] for a in T._CATEGORY_ANSWERS[:2]]
)
async def test_token_error_retried_once_with_new_token(answer, counters, respx_mock):
    """A token-class failure invalidates the token and retries exactly once with the new one."""
    _, status, body, _, category = answer
    provider = T.FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").mock(
        side_effect=[httpx.Response(status, json=body), httpx.Response(200, json=T.SEND_OK)]
    )

    async with AsyncWhatsAppClient(
        token_provider=provider, phone_number_id=PHONE, events=Events(counters)
    ) as c:
        result = await c.send_text("+16505076520", "hi")

    assert result.message_id == T.WAMID
    assert route.call_count == 2
    T._no_token_leak(route.calls[1].request, NEW_TOKEN, TOKEN)
    assert provider.invalidated == [(Token(TOKEN).fingerprint, category)]
    assert counters.get("auth.retried") == 1


async def test_second_token_failure_is_not_retried_again(respx_mock):
    """If the new token fails too, the second error rises, caused by the first."""
    provider = T.FlipProvider(TOKEN, NEW_TOKEN, "EAAGthirdtoken00000000000000000")
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=T._CATEGORY_ANSWERS[0][2])

    async with AsyncWhatsAppClient(token_provider=provider, phone_number_id=PHONE) as c:
        with pytest.raises(TokenExpiredError) as info:
            await c.send_text("+16505076520", "hi")

    assert route.call_count == 2
    assert isinstance(info.value.__cause__, TokenExpiredError)


@pytest.mark.parametrize(
    "answer", T._CATEGORY_ANSWERS[2:], ids=[a[0] for a in T._CATEGORY_ANSWERS[2:]]
)
async def test_no_auth_retry_for_other_categories(answer, respx_mock):
    """Permission, account, rate, transient, invalid and unknown failures are never auth-retried."""
    _, status, body, cls, _ = answer
    provider = T.FlipProvider(TOKEN, NEW_TOKEN)
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(status, **kwargs)

    async with AsyncWhatsAppClient(token_provider=provider, phone_number_id=PHONE) as c:
        with pytest.raises(cls):
            await c.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert provider.invalidated == []


async def test_no_retry_when_provider_returns_same_token(counters, respx_mock):
    """A provider that hands back the same token after invalidate gets no retry."""
    provider = T.FlipProvider(TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=T._CATEGORY_ANSWERS[0][2])

    async with AsyncWhatsAppClient(
        token_provider=provider, phone_number_id=PHONE, events=Events(counters)
    ) as c:
        with pytest.raises(TokenExpiredError):
            await c.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert counters.get("auth.token_invalidated") == 1
    assert counters.get("auth.retried") == 0


async def test_debug_token_of_own_token_is_not_retried(respx_mock):
    """Inspecting the client's own token is not re-sent with another token."""
    provider = T.FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.get(f"{BASE}/debug_token").respond(
        400, json=T._error_body(190, "Invalid OAuth access token.")
    )

    async with AsyncWhatsAppClient(token_provider=provider, phone_number_id=PHONE) as c:
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


@pytest.mark.parametrize("exc", T._TRANSPORT, ids=lambda c: c.__name__)
@pytest.mark.parametrize("operation", ["send_text", "get_phone_number"])
async def test_every_httpx_transport_error_is_mapped(exc, operation, client, respx_mock):
    """Every httpx.TransportError becomes TransportError (UnsupportedProtocol: RequestValidationError)."""
    respx_mock.route().mock(side_effect=exc)

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
    delivered = operation == "send_text" and exc.__name__ not in T._NOT_SENT
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
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=T.SEND_OK))
    )
    async with AsyncWhatsAppClient(token=TOKEN, phone_number_id=PHONE, http_client=http) as c:
        assert (await c.send_text("+16505076520", "hi")).message_id == T.WAMID
    assert not http.is_closed
    await http.aclose()


async def test_async_provider_is_used(respx_mock):
    """The async client asks the provider with aget_token(), never get_token()."""

    class AsyncOnly(T.FlipProvider):
        def get_token(self):
            raise AssertionError("sync get_token called from the async client")

    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(200, json=T.SEND_OK)
    async with AsyncWhatsAppClient(token_provider=AsyncOnly(TOKEN), phone_number_id=PHONE) as c:
        assert (await c.send_text("+16505076520", "hi")).message_id == T.WAMID
