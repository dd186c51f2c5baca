"""What the clients accept and refuse at their edges: providers given as strings, objects that
are not providers, tokens no header can carry, and transport failures whose cause must not keep
the request (its URL and headers carry tokens)."""

from __future__ import annotations

import pickle
import traceback

import httpx
import pytest
import respx

import wa_auth
from wa_auth import (
    RequestValidationError,
    TokenSourceMalformedError,
    TransportError,
    WhatsAppError,
)
from wa_auth.providers import StaticTokenProvider, Token
from wa_auth.sandbox import Sandbox

PHONE = "106540352242922"
CANARY = "EAAGcanaryTOKENforINPUTS0000111122223333444455556666"
TO = "+15551234567"
#: The client classes by name; ":raw" is `FastAsyncWhatsAppClient(transport="raw")`.
CLIENTS = [
    "WhatsAppClient",
    "AsyncWhatsAppClient",
    "FastAsyncWhatsAppClient",
    "FastAsyncWhatsAppClient:raw",
]


def _make(name: str, **options: object) -> object:
    name, _, transport = name.partition(":")
    if transport:
        options["transport"] = transport
    return getattr(wa_auth, name)(**options)


async def _call(client: object, method: str, *args: object) -> object:
    result = getattr(client, method)(*args)
    if hasattr(result, "__await__"):
        return await result
    return result


async def _close(client: object) -> None:
    if hasattr(client, "aclose"):
        await client.aclose()  # type: ignore[attr-defined]
    else:
        client.close()  # type: ignore[attr-defined]


def _leaks(error: BaseException, secret: str) -> list[str]:
    """Every place along the chain where *secret* shows: str, repr, traceback, pickle."""
    found = []
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if secret in text:
        found.append("traceback")
    chain: BaseException | None = error
    while chain is not None:
        if secret in repr(chain) or secret in str(chain):
            found.append(f"repr of {type(chain).__name__}")
        found.extend(
            f"attribute of {type(chain).__name__}"
            for value in vars(chain).values()
            if secret in repr(value)
        )
        chain = chain.__cause__ or chain.__context__
    if secret.encode() in pickle.dumps(error):
        found.append("pickle")
    return found


@pytest.mark.anyio
@pytest.mark.parametrize("name", CLIENTS)
async def test_a_token_string_is_accepted_as_a_provider(name):
    """`token_provider="EAA..."` and `app_token_provider="..."` work as written."""
    with Sandbox(seed=1) as sb:
        client = _make(
            name,
            base_url=sb.base_url,
            token_provider=sb.issue_token(),
            app_token_provider=sb.app_token,
            phone_number_id=sb.phone_number_id,
        )
        try:
            assert isinstance(client.token_provider, StaticTokenProvider)
            sent = await _call(client, "send_text", TO, "hi")
            assert sent.message_id  # type: ignore[attr-defined]
            health = await _call(client, "token_health")
            assert health.valid  # type: ignore[attr-defined]
        finally:
            await _close(client)


@pytest.mark.parametrize("name", CLIENTS)
@pytest.mark.parametrize("argument", ["token_provider", "app_token_provider"])
def test_an_object_that_is_not_a_provider_fails_at_construction(name, argument):
    """A non-provider fails when the client is built, with a message that says what to pass."""
    kwargs = {"phone_number_id": PHONE, argument: 42}
    if argument == "app_token_provider":
        kwargs["token"] = CANARY
    with pytest.raises(RequestValidationError, match=f"{argument} must be a token provider"):
        _make(name, **kwargs)


class _Provider:
    """A user's own provider that hands out whatever it read, unchecked."""

    def __init__(self, value: str) -> None:
        self.value = value

    def get_token(self) -> Token:
        return Token(self.value)

    async def aget_token(self) -> Token:
        return Token(self.value)

    def invalidate(self, token: Token, reason: object) -> None:
        return None


@pytest.mark.anyio
@pytest.mark.parametrize("name", CLIENTS)
@pytest.mark.parametrize(
    "bad",
    ["\ufeff", "\u200b", "é", "\n", "\r\n", "\x00", "\t"],
    ids=["bom", "zero-width", "accent", "lf", "crlf", "nul", "tab"],
)
async def test_a_token_no_header_can_carry_is_a_typed_error_without_the_token(name, bad):
    """A non-ASCII or control character in a token from any provider (a line break would end
    the header, and the token's rest would show past it in an error quoting the header):
    TokenSourceMalformedError naming the position, never the token."""
    value = CANARY[:10] + bad + CANARY[10:]
    client = _make(name, token_provider=_Provider(value), phone_number_id=PHONE)
    try:
        with pytest.raises(TokenSourceMalformedError, match="position") as info:
            await _call(client, "send_text", TO, "hi")
    finally:
        await _close(client)
    assert _leaks(info.value, value) == []
    assert _leaks(info.value, CANARY[:10]) == []


def test_a_user_agent_no_header_can_carry_is_refused():
    """A non-ASCII User-Agent fails at construction, not as a bare UnicodeEncodeError."""
    with pytest.raises(RequestValidationError, match="user_agent"):
        wa_auth.WhatsAppClient(token=CANARY, phone_number_id=PHONE, user_agent="wa-auth ✓")


_FAILURES = [
    httpx.ConnectError("[Errno 111] Connection refused"),
    httpx.ReadTimeout("timed out"),
    httpx.RemoteProtocolError("peer closed connection"),
    httpx.UnsupportedProtocol("Request URL has an unsupported protocol"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["WhatsAppClient", "AsyncWhatsAppClient"])
@pytest.mark.parametrize("failure", _FAILURES, ids=lambda e: type(e).__name__)
async def test_a_transport_cause_keeps_no_request(name, failure):
    """debug_token's URL carries a token: the error's cause holds no request to repr or pickle."""
    inspected = "EAAGinspectedTOKEN9999888877776666555544443333"
    with respx.mock(assert_all_called=False) as mock:
        mock.route().mock(side_effect=failure)
        client = getattr(wa_auth, name)(token=CANARY, phone_number_id=PHONE)
        try:
            with pytest.raises(WhatsAppError) as info:
                await _call(client, "debug_token", inspected)
        finally:
            await _close(client)
    error = info.value
    assert isinstance(error, (TransportError, RequestValidationError))
    assert not hasattr(error.__cause__, "request")
    assert _leaks(error, CANARY) == []
    assert _leaks(error, inspected) == []


def test_a_paging_cursor_holding_half_a_character_is_a_typed_refusal():
    """`list_templates(after=...)`: a cursor cut inside an emoji (it came from a peer) is a
    `RequestValidationError` naming the parameter, before any request; not urlencode's crash."""
    import wa_auth

    client = wa_auth.WhatsAppClient(
        token="EAAtest", phone_number_id="1", business_account_id="2", base_url="http://127.0.0.1:9"
    )
    with client, pytest.raises(wa_auth.RequestValidationError, match="after has half"):
        client.list_templates(after="abc\ud83d")
