"""The sans-I/O core, driven by hand with next()/send()/throw(): no HTTP anywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wa_auth import _core, _endpoints, _graph
from wa_auth._context import Context
from wa_auth._core import GetToken, Request, Response, Send
from wa_auth.errors import (
    RequestValidationError,
    TokenExpiredError,
    TransportError,
    UnknownApiError,
)
from wa_auth.events import Events
from wa_auth.models import SendResult, TokenInfo
from wa_auth.providers import StaticTokenProvider, Token

TOKEN = Token("EAAGcoretoken0123456789abcdefghij")
FRESH = Token("EAAGfreshcoretoken0123456789abcdef")
PHONE = "106540352242922"
SEND_OK = json.dumps(
    {
        "contacts": [{"input": "+16505076520", "wa_id": "16505076520"}],
        "messages": [{"id": "wamid.ABC"}],
    }
).encode()
EXPIRED = json.dumps(
    {
        "error": {
            "message": "Error validating access token: Session has expired on x",
            "type": "OAuthException",
            "code": 190,
            "fbtrace_id": "Tr",
        }
    }
).encode()


class Provider:
    """Records invalidations and hands out a queue of tokens."""

    def __init__(self, *tokens: Token) -> None:
        self.tokens = list(tokens)
        self.invalidated: list[Token] = []

    def get_token(self) -> Token:
        return self.tokens[0]

    async def aget_token(self) -> Token:
        return self.tokens[0]

    def invalidate(self, token, reason) -> None:
        self.invalidated.append(token)


@pytest.fixture
def ctx(counters):
    return Context(
        provider=Provider(TOKEN),
        events=Events(counters),
        phone_number_id=PHONE,
        business_account_id="102290129340398",
        consumer="tests",
    )


def _ok(body: bytes = SEND_OK, status: int = 200, headers=None) -> Response:
    return Response(status, headers or {}, body)


def test_send_text_flow_yields_token_then_send_then_returns(ctx):
    """A send asks for a token, yields one Send with the token, and returns the parsed result."""
    flow = _endpoints.send_text(ctx, "+16505076520", "hi", idempotency_key="k")

    effect = next(flow)
    assert isinstance(effect, GetToken)
    assert effect.route == PHONE
    effect = flow.send(TOKEN)
    assert isinstance(effect, Send)
    assert effect.token == TOKEN
    request = effect.request
    assert ("POST", f"{_graph.DEFAULT_BASE_URL}/{_graph.DEFAULT_API_VERSION}/{PHONE}/messages") == (
        request.method,
        request.url,
    )
    assert not request.idempotent
    assert request.operation == "send_text"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505076520",
        "type": "text",
        "text": {"preview_url": False, "body": "hi"},
        "biz_opaque_callback_data": "k",
    }
    assert TOKEN.reveal().encode() not in request.content
    with pytest.raises(StopIteration) as stop:
        flow.send(_ok())
    assert isinstance(stop.value.value, SendResult)
    assert stop.value.value.message_id == "wamid.ABC"


def test_token_failure_invalidates_and_retries_once(ctx, counters):
    """On a token-class answer the flow invalidates, asks again, and re-sends with the new token."""
    flow = _endpoints.send_text(ctx, "+16505076520", "hi")
    next(flow)
    first = flow.send(TOKEN)

    assert flow.send(_ok(EXPIRED, 401)).route == PHONE
    assert ctx.provider.invalidated == [TOKEN]
    second = flow.send(FRESH)
    assert second.token == FRESH
    assert first.request == second.request
    with pytest.raises(StopIteration):
        flow.send(_ok())
    assert counters.get("auth.retried") == 1
    assert counters.get("auth.token_invalidated", "token_expired") == 1


def test_same_token_after_invalidate_raises(ctx):
    """When the provider returns the same token the flow raises the classified error."""
    flow = _endpoints.send_text(ctx, "+16505076520", "hi")
    next(flow)
    flow.send(TOKEN)
    flow.send(_ok(EXPIRED, 401))

    with pytest.raises(TokenExpiredError) as info:
        flow.send(TOKEN)
    assert TOKEN.fingerprint == info.value.token_fingerprint


def test_second_failure_raises_second_error_from_first(ctx):
    """A failure with the new token raises that error, caused by the first; no third send."""
    flow = _endpoints.send_text(ctx, "+16505076520", "hi")
    next(flow)
    flow.send(TOKEN)
    flow.send(_ok(EXPIRED, 401))
    flow.send(FRESH)

    with pytest.raises(TokenExpiredError) as info:
        flow.send(_ok(EXPIRED, 401))
    assert FRESH.fingerprint == info.value.token_fingerprint
    assert TOKEN.fingerprint == info.value.__cause__.token_fingerprint
    assert ctx.provider.invalidated == [TOKEN, FRESH]


def test_transport_error_thrown_in_is_fingerprinted_and_reraised(ctx, counters):
    """A TransportError thrown at the Send effect gets the fingerprint, an event, and rises."""
    flow = _endpoints.send_text(ctx, "+16505076520", "hi")
    next(flow)
    flow.send(TOKEN)
    exc = TransportError("ReadTimeout on send_text", maybe_delivered=True)

    with pytest.raises(TransportError) as info:
        flow.throw(exc)
    assert info.value is exc
    assert TOKEN.fingerprint == exc.token_fingerprint
    assert counters.get("api.failed", "transient") == 1


def test_token_unavailable_thrown_at_get_token_rises(ctx):
    """An error thrown at the GetToken effect rises unchanged."""
    from wa_auth.errors import TokenUnavailableError

    flow = _endpoints.send_text(ctx, "+16505076520", "hi")
    next(flow)
    with pytest.raises(TokenUnavailableError):
        flow.throw(TokenUnavailableError("no token file"))


def test_validation_fails_before_any_effect(ctx):
    """Local validation raises on the first next(), before any effect."""
    flow = _endpoints.send_text(ctx, "+16505076520", "")

    with pytest.raises(RequestValidationError):
        next(flow)


def test_unexpected_2xx_body(ctx):
    """An unparseable 2xx answer raises UnknownApiError with maybe_delivered for a send."""
    flow = _endpoints.send_text(ctx, "+16505076520", "hi")
    next(flow)
    flow.send(TOKEN)

    with pytest.raises(UnknownApiError) as info:
        flow.send(_ok(b"{}"))
    assert info.value.maybe_delivered


def test_get_flow_is_idempotent(ctx):
    """GET requests are marked idempotent and carry no body."""
    flow = _endpoints.get_phone_number(ctx)
    next(flow)
    request = flow.send(TOKEN).request

    assert request.idempotent
    assert request.content is None
    assert request.method == "GET"


def test_mark_as_read_is_idempotent(ctx):
    """Marking as read twice is harmless, so its POST is idempotent."""
    flow = _endpoints.mark_as_read(ctx, "wamid.ABC")
    next(flow)

    assert flow.send(TOKEN).request.idempotent


def test_debug_token_of_own_token_is_not_resendable(ctx):
    """Self-inspection puts the token in the URL and cannot be re-sent with another token."""
    flow = _endpoints.debug_token(ctx)
    next(flow)
    request = flow.send(TOKEN).request

    assert not request.resendable
    assert "input_token=" + TOKEN.reveal() in request.url
    assert TOKEN.reveal() not in repr(request)
    assert isinstance(flow.send(_ok(EXPIRED, 400)), GetToken)
    with pytest.raises(TokenExpiredError):
        flow.send(FRESH)


def test_debug_token_flow_returns_token_info(ctx):
    """debug_token parses data, granular scopes and the embedded error."""
    flow = _endpoints.debug_token(ctx, "EAAGother00000000000000000")
    next(flow)
    assert flow.send(TOKEN).request.resendable
    body = {
        "data": {
            "is_valid": False,
            "expires_at": "1700000000",
            "error": {"code": 190, "error_subcode": 463, "message": "expired"},
            "granular_scopes": [{"scope": "whatsapp_business_messaging"}, "junk"],
            "scopes": ["a"],
        }
    }
    with pytest.raises(StopIteration) as stop:
        flow.send(_ok(json.dumps(body).encode()))
    info = stop.value.value
    assert isinstance(info, TokenInfo)
    assert (
        info.is_valid,
        info.expires_at,
        info.error.subcode,
        info.granular_scopes[0].target_ids,
    ) == (False, 1700000000, 463, ())


def test_download_media_is_two_sends(ctx):
    """download_media yields the lookup and then the download, with the same token."""
    flow = _endpoints.download_media(ctx, "1037543291543636")
    next(flow)
    lookup = flow.send(TOKEN)
    url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"
    assert isinstance(
        flow.send(_ok(json.dumps({"url": url, "id": "1037543291543636"}).encode())), GetToken
    )
    download = flow.send(TOKEN)

    assert url == download.request.url
    assert lookup.request.url != download.request.url
    with pytest.raises(StopIteration) as stop:
        flow.send(_ok(b"bytes"))
    assert stop.value.value.content == b"bytes"


def test_auth_headers_add_only_authorization():
    """auth_headers() copies the request's headers and adds the bearer token, nothing else."""
    request = Request("POST", "https://x/y", (("Content-Type", "application/json"),))

    assert {
        "Content-Type": "application/json",
        "Authorization": "Bearer " + TOKEN.reveal(),
    } == _core.auth_headers(request, TOKEN)
    assert request.headers == (("Content-Type", "application/json"),)


def test_send_effect_repr_shows_fingerprint_only():
    """repr() of a Send effect names the token by fingerprint."""
    effect = Send(Request("GET", "https://x/debug_token?input_token=" + TOKEN.reveal()), TOKEN)

    assert TOKEN.reveal() not in repr(effect)
    assert TOKEN.fingerprint in repr(effect)


def test_context_url_encodes_parts_and_drops_none():
    """Context.url() quotes path parts and leaves out None query values."""
    ctx = Context(provider=StaticTokenProvider("EAAGx0000000000"), events=Events())

    assert ctx.url("a/b", query={"x": 1, "y": None}) == "https://graph.facebook.com/v23.0/a%2Fb?x=1"


def test_core_does_not_import_httpx():
    """Importing the core loads no HTTP library (the sans-I/O property)."""
    code = "import sys, wa_auth._core; print(sorted(m for m in ('httpx', 'httpcore', 'aiohttp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"
