"""`WhatsAppClient` over respx: every endpoint's request and model, errors, retries, transport.

The tables are `tests/cases/client.py`'s; `tests/client/test_async_client.py` runs the same
ones against `AsyncWhatsAppClient`. Each test that sends runs over both transports
(`make_client`): httpx's, mocked by respx, and the standard library's, whose real sockets reach
the same respx routes through `bridge`. httpx's own exceptions and `http_client=` are httpx's
only; the stdlib transport's socket failures are `test_stdlib.py`'s.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from bridge import reroute, respx_bridge
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
from helpers import graph_body, raised
from wa_auth import (
    RequestValidationError,
    StaticTokenProvider,
    Token,
    TokenExpiredError,
    TokenRevokedError,
    TransportError,
    UnknownApiError,
    WhatsAppClient,
    WhatsAppError,
)
from wa_auth.events import Events
from wa_auth.models import MediaContent


@pytest.fixture(params=["httpx", "stdlib"])
def make_client(request, respx_mock) -> Iterator[Callable[..., WhatsAppClient]]:
    """Make `WhatsAppClient`s over one transport, each answered by `respx_mock`'s routes."""
    made: list[WhatsAppClient] = []
    with contextlib.ExitStack() as stack:
        bridge = (
            stack.enter_context(respx_bridge(respx_mock)) if request.param == "stdlib" else None
        )

        def make(**options: Any) -> WhatsAppClient:
            c = WhatsAppClient(transport=request.param, **options)
            if bridge is not None:
                reroute(c, bridge)
            made.append(c)
            return c

        yield make
        for c in made:
            c.close()


@pytest.fixture
def client(counters, make_client):
    with make_client(
        token=TOKEN,
        phone_number_id=PHONE,
        business_account_id=WABA,
        events=Events(counters),
        consumer="n8n:orders",
    ) as c:
        yield c


@pytest.fixture
def httpx_client(counters):
    """The client over httpx only: for httpx's own exceptions."""
    with WhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, business_account_id=WABA, events=Events(counters)
    ) as c:
        yield c


def _route(router: respx.Router, method: str, url: str) -> respx.Route:
    return router.route(method=method, url=url)


def _content(body: dict[str, Any] | str) -> dict[str, Any]:
    """respx's `respond()` keyword for an answer's body: Meta's JSON or a proxy's text."""
    return {"json": body} if isinstance(body, dict) else {"text": body}


@pytest.mark.parametrize("case", ENDPOINTS, ids=case_id)
def test_endpoint_request_and_model(case, client, respx_mock):
    """Each endpoint sends Meta's documented request and parses the answer into its model."""
    route = _route(respx_mock, case.http_method, case.url).respond(
        200, json=case.answer, headers=USAGE_HEADERS
    )

    result = getattr(client, case.method)(*case.args, **case.kwargs)

    assert route.call_count == 1
    request = route.calls.last.request
    assert case.http_method == request.method
    assert str(request.url) == case.url
    assert request.headers["user-agent"].startswith("wa-auth/")
    assert request.headers["accept"] == "application/json"
    if callable(case.body):
        case.body(request)
    elif case.body is not None:
        assert request.headers["content-type"] == "application/json"
        assert case.body == json.loads(request.content)
    else:
        assert request.content == b""
    no_token_leak(request, TOKEN)
    case.check(result)
    if hasattr(result, "usage"):
        assert result.usage.app.call_count == 28
        assert result.usage.business[0].business_id == WABA


def test_download_media(client, respx_mock):
    """download_media looks up the URL, then fetches the bytes with the same token."""
    respx_mock.get(f"{BASE}/{MEDIA_ID}").respond(
        200,
        json={
            "url": MEDIA_URL,
            "mime_type": "audio/ogg",
            "sha256": "ab",
            "file_size": 4,
            "id": MEDIA_ID,
        },
    )
    blob = respx_mock.get(MEDIA_URL).respond(
        200, content=b"OggS", headers={"Content-Type": "audio/ogg"}
    )

    result = client.download_media(MEDIA_ID)

    assert isinstance(result, MediaContent)
    assert (result.content, result.mime_type, result.media_id) == (b"OggS", "audio/ogg", MEDIA_ID)
    assert f"Bearer {TOKEN}" == blob.calls.last.request.headers["authorization"]
    assert "OggS" not in repr(result)


def test_debug_token_of_the_clients_own_token(client, respx_mock):
    """debug_token() with no argument inspects the client's token (in the query, as Meta wants)."""
    route = respx_mock.get(f"{BASE}/debug_token", params={"input_token": TOKEN}).respond(
        200, json={"data": {"is_valid": True, "expires_at": 1893456000, "scopes": []}}
    )

    info = client.debug_token()

    assert route.called
    assert info.expires_at == 1893456000
    assert not info.never_expires


def test_debug_token_invalid_token_is_a_result(client, respx_mock):
    """An invalid inspected token is TokenInfo(is_valid=False, error=...), not an exception."""
    respx_mock.get(f"{BASE}/debug_token").respond(
        200,
        json={
            "data": {
                "app_id": "1",
                "is_valid": False,
                "expires_at": 1700000000,
                "scopes": [],
                "error": {
                    "code": 190,
                    "message": "Error validating access token: Session has expired on ...",
                    "subcode": 463,
                },
            }
        },
    )

    info = client.debug_token("EAAGexpiredtoken0000000000")

    assert not info.is_valid
    assert (info.error.code, info.error.subcode) == (190, 463)


@pytest.mark.parametrize("case", OVERRIDE_ENDPOINTS, ids=case_id)
def test_per_call_phone_number_id(case, client, respx_mock):
    """phone_number_id= on a call overrides the client's sender."""
    route = _route(respx_mock, case.http_method, override_url(case)).respond(200, json=case.answer)

    getattr(client, case.method)(*case.args, phone_number_id=OTHER_PHONE, **case.kwargs)

    assert route.call_count == 1


def test_phone_number_id_required(respx_mock, make_client):
    """Without a default or a per-call phone_number_id a send fails before any request."""
    with (
        make_client(token=TOKEN) as c,
        pytest.raises(RequestValidationError, match="phone_number_id is required"),
    ):
        c.send_text("+16505076520", "hi")
    assert not respx_mock.calls


def test_business_account_id_required(respx_mock, make_client):
    """WABA-level calls without business_account_id fail before any request."""
    with make_client(token=TOKEN, phone_number_id=PHONE) as c:
        for call in (c.list_templates, c.list_phone_numbers):
            with pytest.raises(RequestValidationError, match="business_account_id is required"):
                call()
    assert not respx_mock.calls


@pytest.mark.parametrize("case", SENDS, ids=case_id)
def test_idempotency_key_is_biz_opaque_callback_data(case, client, respx_mock):
    """idempotency_key= goes out as biz_opaque_callback_data and comes back on the result."""
    key = "order-42:" + "k" * 503
    route = _route(respx_mock, case.http_method, case.url).respond(200, json=case.answer)

    result = getattr(client, case.method)(*case.args, idempotency_key=key, **case.kwargs)

    sent = json.loads(route.calls.last.request.content)
    assert {**case.body, "biz_opaque_callback_data": key} == sent
    assert key == result.idempotency_key


@pytest.mark.parametrize("case", INVALID_CALLS, ids=case_id)
def test_local_validation_sends_nothing(case, client, respx_mock):
    """Bad arguments raise RequestValidationError (a ValueError) with a clear message, and send nothing."""
    with pytest.raises(RequestValidationError, match=re.escape(case.match)) as info:
        getattr(client, case.method)(*case.args, **case.kwargs)

    assert isinstance(info.value, ValueError)
    assert info.value.rule == "validation"
    assert not respx_mock.calls


def test_constructor_validation():
    """The constructor rejects a missing or double credential and bad addresses."""
    with pytest.raises(RequestValidationError, match="exactly one of token"):
        WhatsAppClient()
    with pytest.raises(RequestValidationError, match="exactly one of token"):
        WhatsAppClient(token=TOKEN, token_provider=StaticTokenProvider(TOKEN))
    with pytest.raises(RequestValidationError, match="api_version"):
        WhatsAppClient(token=TOKEN, api_version="23.0")
    with pytest.raises(RequestValidationError, match="base_url"):
        WhatsAppClient(token=TOKEN, base_url="graph.facebook.com")
    with pytest.raises(RequestValidationError, match="blank string"):
        WhatsAppClient(token="  ")


def test_base_url_and_api_version(respx_mock, make_client):
    """base_url (trailing slash ignored) and api_version shape every URL."""
    route = respx_mock.post(f"http://127.0.0.1:8080/v21.0/{PHONE}/messages").respond(
        200, json=SEND_OK
    )
    with make_client(
        token=TOKEN,
        phone_number_id=int(PHONE),
        base_url="http://127.0.0.1:8080/",
        api_version="v21.0",
    ) as c:
        c.send_text("16505076520", "hi")

    assert route.called


@pytest.mark.parametrize("case", ERROR_ANSWERS, ids=case_id)
def test_error_answers_raise_classified_errors(case, client, counters, respx_mock):
    """An error answer raises its class, with usage, fingerprint and an event of the right kind."""
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(
        case.status, headers=USAGE_HEADERS, **_content(case.body)
    )

    err = raised(case.cls, lambda: client.send_text("+16505076520", "hi"))

    assert case.category == err.category
    assert case.status == err.http_status
    assert err.usage.app.call_count == 28
    assert Token(TOKEN).fingerprint == err.token_fingerprint
    assert route.call_count == 1
    event = "auth.failed" if case.category in AUTH_CATEGORIES else "api.failed"
    assert counters.get(event, case.category) == 1
    other = "api.failed" if case.category in AUTH_CATEGORIES else "auth.failed"
    assert counters.get(other) == 0


def test_static_token_is_not_retried(client, counters, respx_mock):
    """With a static token a dead token is invalidated (event) but not retried."""
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=EXPIRED.body)

    with pytest.raises(TokenExpiredError):
        client.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert counters.get("auth.token_invalidated", "token_expired") == 1
    assert counters.get("auth.retried") == 0


@pytest.mark.parametrize("case", TOKEN_ANSWERS, ids=case_id)
def test_token_error_retried_once_with_new_token(case, counters, respx_mock, make_client):
    """A token-class failure invalidates the token and retries exactly once with the new one."""
    category = case.category
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").mock(
        side_effect=[httpx.Response(case.status, json=case.body), httpx.Response(200, json=SEND_OK)]
    )

    with make_client(token_provider=provider, phone_number_id=PHONE, events=Events(counters)) as c:
        result = c.send_text("+16505076520", "hi", idempotency_key="k1")

    assert result.message_id == WAMID
    assert route.call_count == 2
    first, second = (call.request for call in route.calls)
    no_token_leak(first, TOKEN, NEW_TOKEN)
    no_token_leak(second, NEW_TOKEN, TOKEN)
    assert first.content == second.content
    assert [(Token(TOKEN).fingerprint, category)] == provider.invalidated
    assert counters.get("auth.failed", category) == 1
    assert counters.get("auth.token_invalidated", category) == 1
    assert counters.get("auth.retried") == 1


def test_second_token_failure_is_not_retried_again(counters, respx_mock, make_client):
    """If the new token fails too, the second error rises (caused by the first); no third try."""
    provider = FlipProvider(TOKEN, NEW_TOKEN, "EAAGthirdtoken00000000000000000")
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=EXPIRED.body)

    with (
        make_client(token_provider=provider, phone_number_id=PHONE, events=Events(counters)) as c,
        pytest.raises(TokenExpiredError) as info,
    ):
        c.send_text("+16505076520", "hi")

    assert route.call_count == 2
    assert isinstance(info.value.__cause__, TokenExpiredError)
    assert Token(NEW_TOKEN).fingerprint == info.value.token_fingerprint
    assert Token(TOKEN).fingerprint == info.value.__cause__.token_fingerprint
    assert len(provider.invalidated) == 2
    assert counters.get("auth.retried") == 1


@pytest.mark.parametrize("case", OTHER_ANSWERS, ids=case_id)
def test_no_auth_retry_for_other_categories(case, counters, respx_mock, make_client):
    """Permission, account, rate, transient, invalid and unknown failures are never auth-retried."""
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(case.status, **_content(case.body))

    with make_client(token_provider=provider, phone_number_id=PHONE, events=Events(counters)) as c:
        raised(case.cls, lambda: c.send_text("+16505076520", "hi"))

    assert route.call_count == 1
    assert provider.invalidated == []
    assert counters.get("auth.retried") + counters.get("auth.token_invalidated") == 0


def test_no_retry_when_provider_returns_same_token(counters, respx_mock, make_client):
    """A provider that hands back the same token after invalidate gets no retry."""
    provider = FlipProvider(TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=EXPIRED.body)

    with (
        make_client(token_provider=provider, phone_number_id=PHONE, events=Events(counters)) as c,
        pytest.raises(TokenExpiredError),
    ):
        c.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert len(provider.invalidated) == 1
    assert counters.get("auth.retried") == 0


def test_debug_token_of_own_token_is_not_retried(respx_mock, make_client):
    """Inspecting the client's own token is not re-sent with another token (it would inspect that one)."""
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.get(f"{BASE}/debug_token").respond(
        400, json=graph_body(190, message="Invalid OAuth access token.")
    )

    with (
        make_client(token_provider=provider, phone_number_id=PHONE) as c,
        pytest.raises(TokenRevokedError),
    ):
        c.debug_token()

    assert route.call_count == 1


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"[]",
        b"{}",
        b"<html>OK</html>",
        b'{"messages": []}',
        b'{"messages": [{"id": ""}]}',
        b"\xff",
    ],
    ids=["empty", "list", "object", "html", "no-messages", "empty-id", "bad-bytes"],
)
def test_unexpected_2xx_body_on_send_may_be_delivered(content, client, counters, respx_mock):
    """A 2xx answer a send cannot parse is UnknownApiError with maybe_delivered and no retry."""
    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(200, content=content, headers=USAGE_HEADERS)

    with pytest.raises(UnknownApiError) as info:
        client.send_text("+16505076520", "hi")

    assert info.value.maybe_delivered
    assert not info.value.retryable
    assert info.value.http_status == 200
    assert info.value.usage.app.call_count == 28
    assert info.value.__cause__ is None
    assert "send_text" in str(info.value)


def test_unexpected_2xx_body_on_get_is_not_delivered(client, respx_mock):
    """A 2xx answer a GET cannot parse is UnknownApiError without maybe_delivered."""
    respx_mock.get(url__startswith=f"{BASE}/{PHONE}").respond(200, content=b"<html></html>")

    with pytest.raises(UnknownApiError) as info:
        client.get_phone_number()

    assert not info.value.maybe_delivered


@pytest.mark.parametrize("exc", TRANSPORT_ERRORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("operation", ["send_text", "get_phone_number"])
def test_every_httpx_transport_error_is_mapped(exc, operation, httpx_client, counters, respx_mock):
    """Every httpx.TransportError becomes TransportError (UnsupportedProtocol: RequestValidationError)."""
    client = httpx_client
    respx_mock.route().mock(side_effect=exc)
    call = {
        "send_text": lambda: client.send_text("+16505076520", "hi"),
        "get_phone_number": client.get_phone_number,
    }[operation]

    with pytest.raises(WhatsAppError) as info:
        call()

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
    assert err.rule == "transport"
    assert err.http_status is None
    delivered = operation == "send_text" and exc.__name__ not in NOT_SENT
    assert delivered == err.maybe_delivered
    assert (not delivered) == err.retryable
    assert Token(TOKEN).fingerprint == err.token_fingerprint
    assert counters.get("api.failed", "transient") == 1


@pytest.mark.parametrize(
    "exc", [httpx.DecodingError, httpx.TooManyRedirects], ids=lambda c: c.__name__
)
def test_other_request_errors_are_mapped(exc, httpx_client, respx_mock):
    """httpx request errors outside TransportError do not escape either."""
    respx_mock.route().mock(side_effect=exc)

    with pytest.raises(TransportError):
        httpx_client.send_text("+16505076520", "hi")


def test_owned_http_client_is_closed():
    """The context manager closes the httpx client the object created."""
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE) as c:
        http = c._http
    assert http.is_closed


def test_injected_http_client_is_not_closed():
    """An injected httpx client stays open after close()."""
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=SEND_OK)))
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE, http_client=http) as c:
        assert c.send_text("+16505076520", "hi").message_id == WAMID
    assert not http.is_closed
    http.close()


def test_transport_injection():
    """transport= is used for the client the object creates."""
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=SEND_OK)

    with WhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, transport=httpx.MockTransport(handler)
    ) as c:
        c.send_text("+16505076520", "hi")
    assert len(seen) == 1


def test_repr_shows_no_token():
    """repr() of the client names the sender and the provider's fingerprint, not the token."""
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE) as c:
        text = repr(c)
    assert TOKEN not in text
    assert Token(TOKEN).fingerprint in text
    assert PHONE in text


def test_methods_keep_their_signatures():
    """The bound endpoint methods show the flow's parameters, with self first."""
    import inspect

    params = list(inspect.signature(WhatsAppClient.send_text).parameters)

    assert params == ["self", "to", "text", "preview_url", "idempotency_key", "phone_number_id"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (
            401,
            {
                "message": "Session has expired",
                "type": "OAuthException",
                "code": 190,
                "error_subcode": 463,
            },
        ),
        (400, {"message": "Business Account locked", "type": "OAuthException", "code": 131031}),
        (None, httpx.ConnectError("connection refused")),
    ],
    ids=["token-error", "account-error", "transport-error"],
)
def test_failed_call_leaves_no_reference_cycle(status, error, client, respx_mock, garbage_probe):
    """A failed call's error and frames are freed by reference counting, not by the GC."""
    route = respx_mock.post(f"{BASE}/{PHONE}/messages")
    route.mock(return_value=httpx.Response(200, json=SEND_OK))
    client.send_text("15551234567", "warm-up")
    if status is None:
        route.mock(side_effect=error)
    else:
        route.mock(return_value=httpx.Response(status, json={"error": error}))
    with garbage_probe() as probe, pytest.raises(WhatsAppError):
        client.send_text("15551234567", "hi")
    assert probe.wa_auth_garbage() == []
