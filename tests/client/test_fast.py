"""FastAsyncWhatsAppClient: the same models, errors and secrecy as the httpx client, over aiohttp.

Both clients talk to the same tiny HTTP/1.1 server on loopback, which answers each request
from a per-test script: a status and body, a dropped connection, or silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

import wa_auth
from helpers import graph_body
from wa_auth._client import AsyncClientBase, AsyncWhatsAppClient
from wa_auth.errors import TransportError, WhatsAppError
from wa_auth.providers import StaticTokenProvider, Token

aiohttp = pytest.importorskip("aiohttp")
from wa_auth._client import FastAsyncWhatsAppClient  # noqa: E402 - after the importorskip

pytestmark = pytest.mark.anyio

PHONE = "106540352242922"
CANARY = "EAAGcanaryTOKEN0000111122223333444455556666777788889999"
CANARY_2 = "EAAGsecondTOKENaaaabbbbccccddddeeeeffff000011112222"
SUCCESS = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "15551234567", "wa_id": "15551234567"}],
    "messages": [{"id": "wamid.HBgLMTU1NTEyMzQ1NjcVAgARGBI5QTND"}],
}


def _json(obj: Any) -> bytes:
    """*obj* as the bytes of a JSON answer."""
    return json.dumps(obj).encode()


#: (id, status, body, expected category)
ERRORS = [
    (
        "expired-190-463",
        401,
        _json(
            graph_body(
                190, 463, message="Error validating access token: Session has expired on Tuesday"
            )
        ),
        "token_expired",
    ),
    (
        "revoked-190-460",
        401,
        _json(
            graph_body(
                190, 460, message="Error validating access token: The session has been invalidated"
            )
        ),
        "token_revoked",
    ),
    (
        "permission-200",
        403,
        _json(graph_body(200, message="(#200) Permissions error")),
        "insufficient_permission",
    ),
    (
        "account-368",
        403,
        _json(graph_body(368, message="Temporarily blocked for policies violations")),
        "account_state",
    ),
    (
        "rate-130429",
        400,
        _json(graph_body(130429, message="(#130429) Rate limit hit")),
        "rate_limited",
    ),
    (
        "transient-131000",
        500,
        _json(graph_body(131000, message="Something went wrong")),
        "transient",
    ),
    (
        "invalid-100",
        400,
        _json(graph_body(100, message="(#100) Invalid parameter")),
        "invalid_request",
    ),
    ("unknown-html", 502, b"<html><body>Bad gateway</body></html>", None),
]


@attrs.define
class Script:
    """What the loopback server does with each request, and what it saw."""

    answer: Callable[[dict[str, Any]], tuple[str, int, bytes]] = lambda req: (
        "reply",
        200,
        _json(SUCCESS),
    )
    seen: list[dict[str, Any]] = attrs.Factory(list)


async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return {"method": method, "path": target, "headers": headers, "body": body}


@contextlib.asynccontextmanager
async def loopback(script: Script) -> AsyncIterator[str]:
    """Serve *script* on a free loopback port; yield the base URL."""
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            while True:
                try:
                    req = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                script.seen.append(req)
                action, status, body = script.answer(req)
                if action == "drop":
                    return
                if action == "hang":
                    await asyncio.sleep(30)
                    return
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        finally:
            writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for w in list(writers):
            w.close()
        await server.wait_closed()


def _clients(base_url: str, **kwargs: Any) -> list[Any]:
    """The httpx client, then the fast client over aiohttp and over its raw transport."""
    kwargs.setdefault("token", CANARY)
    common = {"phone_number_id": PHONE, "base_url": base_url, **kwargs}
    return [
        AsyncWhatsAppClient(**common),
        FastAsyncWhatsAppClient(**common),
        FastAsyncWhatsAppClient(transport="raw", **common),
    ]


def _error_facts(exc: WhatsAppError) -> dict[str, Any]:
    return {
        "type": type(exc),
        "category": exc.category,
        "retryable": exc.retryable,
        "maybe_delivered": exc.maybe_delivered,
        "code": getattr(exc, "code", None),
        "subcode": getattr(exc, "subcode", None),
        "fbtrace_id": getattr(exc, "fbtrace_id", None),
        "http_status": getattr(exc, "http_status", None),
        "token_fingerprint": exc.token_fingerprint,
    }


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is o for o in out):
            continue
        out.append(e)
        todo += [e.__cause__, e.__context__]
    return out


def assert_no_leak(exc: BaseException, *secrets: str) -> None:
    """Assert that no *secret* appears in the exception chain's texts, reprs or traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    for e in _chain(exc):
        texts += [str(e), repr(e), repr(e.args)]
        texts += [repr(v) for v in vars(e).values()] if hasattr(e, "__dict__") else []
    for secret in secrets or (CANARY,):
        for text in texts:
            assert secret not in text


async def test_success_same_model():
    """send_text returns the same SendResult from both clients."""
    script = Script()
    async with loopback(script) as url:
        results = []
        for client in _clients(url):
            async with client:
                results.append(await client.send_text("15551234567", "hi", idempotency_key="k1"))
    assert results[0] == results[1] == results[2]
    assert results[1].message_id == SUCCESS["messages"][0]["id"]
    sent = [json.loads(r["body"]) for r in script.seen]
    assert sent[0] == sent[1] == sent[2]
    for seen in script.seen[1:]:
        assert seen["headers"]["authorization"] == f"Bearer {CANARY}"
        assert seen["headers"]["content-type"] == "application/json"
    assert "aiohttp" in script.seen[1]["headers"]["user-agent"]
    assert "python-asyncio/" in script.seen[2]["headers"]["user-agent"]


async def test_get_and_multipart_requests_match():
    """GET endpoints and multipart uploads send the same request through aiohttp."""
    script = Script(
        answer=lambda req: (
            "reply",
            200,
            b'{"id":"1234"}' if req["method"] == "POST" else b'{"id":"%s"}' % PHONE.encode(),
        )
    )
    async with loopback(script) as url:
        for client in _clients(url):
            async with client:
                await client.get_phone_number()
                await client.upload_media(b"\x89PNG....", mime_type="image/png", filename="a.png")
    httpx_get, httpx_up, fast_get, fast_up, raw_get, raw_up = script.seen
    assert httpx_get["path"] == fast_get["path"] == raw_get["path"]
    assert httpx_up["path"] == fast_up["path"] == raw_up["path"]

    def normalised(req: dict[str, Any]) -> tuple[str, bytes]:
        boundary = req["headers"]["content-type"].split("boundary=")[1]
        return (
            req["headers"]["content-type"].replace(boundary, "B"),
            req["body"].replace(boundary.encode(), b"B"),
        )

    assert normalised(httpx_up) == normalised(fast_up) == normalised(raw_up)


@pytest.mark.parametrize(
    ("status", "body", "category"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
async def test_error_categories_match(status, body, category, caplog):
    """Every error category raises the same class with the same data from both clients."""
    caplog.set_level(logging.DEBUG)
    script = Script(answer=lambda req: ("reply", status, body))
    async with loopback(script) as url:
        facts = []
        for client in _clients(url):
            async with client:
                with pytest.raises(WhatsAppError) as info:
                    await client.send_text("15551234567", "hi")
            facts.append(_error_facts(info.value))
            assert_no_leak(info.value)
    assert facts[0] == facts[1] == facts[2]
    if category is not None:
        assert facts[1]["category"] == category
    assert CANARY not in caplog.text


async def test_token_retry_uses_the_provider_the_same_way():
    """A token-class 401 invalidates the token and retries once with the provider's new one."""

    class Rotating(StaticTokenProvider):
        def __init__(self) -> None:
            super().__init__(CANARY)
            self.invalidated: list[str] = []

        def get_token(self) -> Token:
            return Token(CANARY_2) if self.invalidated else Token(CANARY)

        async def aget_token(self) -> Token:
            return self.get_token()

        def invalidate(self, token: Token, reason: Any) -> None:
            self.invalidated.append(token.fingerprint)

    expired = _json(
        graph_body(190, 463, message="Error validating access token: Session has expired")
    )

    def answer(req: dict[str, Any]) -> tuple[str, int, bytes]:
        if req["headers"]["authorization"] == f"Bearer {CANARY}":
            return ("reply", 401, expired)
        return ("reply", 200, _json(SUCCESS))

    script = Script(answer=answer)
    async with loopback(script) as url:
        for client_cls, more in (
            (AsyncWhatsAppClient, {}),
            (FastAsyncWhatsAppClient, {}),
            (FastAsyncWhatsAppClient, {"transport": "raw"}),
        ):
            provider = Rotating()
            async with client_cls(
                token_provider=provider, phone_number_id=PHONE, base_url=url, **more
            ) as c:
                result = await c.send_text("15551234567", "hi")
            assert result.message_id
            assert provider.invalidated == [Token(CANARY).fingerprint]
    auths = [r["headers"]["authorization"] for r in script.seen]
    assert auths == [f"Bearer {CANARY}", f"Bearer {CANARY_2}"] * 3


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_connection_refused_is_not_delivered():
    """A refused connection is a TransportError that certainly did not deliver."""
    facts = []
    for client in _clients(_refused_url()):
        async with client:
            with pytest.raises(TransportError) as info:
                await client.send_text("15551234567", "hi")
        assert info.value.maybe_delivered is False
        assert_no_leak(info.value)
        facts.append(_error_facts(info.value))
    assert facts[0] == facts[1] == facts[2]


@pytest.mark.parametrize(
    ("action", "timeout"), [("drop", None), ("hang", 0.3)], ids=["server-drops", "read-timeout"]
)
@pytest.mark.parametrize("idempotent", [False, True], ids=["send_text", "get_phone_number"])
async def test_lost_answer_maybe_delivered(action, timeout, idempotent):
    """A dropped connection or read timeout may have delivered a POST, never a GET."""
    script = Script(answer=lambda req: (action, 0, b""))
    async with loopback(script) as url:
        facts = []
        for client in _clients(url, timeout=timeout):
            async with client:
                call = (
                    client.get_phone_number()
                    if idempotent
                    else client.send_text("15551234567", "hi")
                )
                with pytest.raises(TransportError) as info:
                    await call
            assert info.value.maybe_delivered is (not idempotent)
            assert "aiohttp" not in type(info.value).__module__
            assert_no_leak(info.value)
            facts.append(_error_facts(info.value))
    assert facts[0] == facts[1] == facts[2]


@pytest.mark.parametrize("transport", ["aiohttp", "raw"])
async def test_debug_token_input_token_is_redacted_in_errors(transport):
    """The token being debugged never appears in a fast-path transport error either."""
    async with FastAsyncWhatsAppClient(
        token=CANARY, base_url=_refused_url(), transport=transport
    ) as client:
        with pytest.raises(TransportError) as info:
            await client.debug_token(CANARY_2)
    assert_no_leak(info.value, CANARY, CANARY_2)


async def test_parsed_urls_are_kept_without_queries_and_bounded(monkeypatch):
    """A send's URL is parsed once and kept; one with a query (a token in it) never is."""
    from wa_auth._client import _aiohttp

    monkeypatch.setattr(_aiohttp, "_URL_CACHE", 3)
    script = Script(answer=lambda req: ("reply", 200, _json(SUCCESS)))
    async with loopback(script) as url, FastAsyncWhatsAppClient(token=CANARY, base_url=url) as c:
        for phone in ("111", "111", "222"):
            await c.send_text("15551234567", "hi", phone_number_id=phone)
        assert len(c._urls) == 2
        with contextlib.suppress(WhatsAppError):
            await c.debug_token(CANARY_2)
        assert len(c._urls) == 2
        assert not any(CANARY_2 in key for key in c._urls)
        for phone in ("333", "444"):
            await c.send_text("15551234567", "hi", phone_number_id=phone)
        assert len(c._urls) <= 3
    paths = [req["path"] for req in script.seen]
    assert paths[0] == paths[1] != paths[2]
    assert paths[-1].endswith("/444/messages")


async def test_client_response_error_cause_is_not_chained():
    """An aiohttp exception that carries the request headers is not kept as the cause."""
    client = FastAsyncWhatsAppClient(token=CANARY, phone_number_id=PHONE, base_url=_refused_url())

    class Leaky(aiohttp.ClientResponseError):
        pass

    info = aiohttp.RequestInfo(
        url=aiohttp.client.URL("http://x/"),
        method="POST",
        headers={"Authorization": f"Bearer {CANARY}"},  # type: ignore[arg-type]
    )

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise Leaky(info, (), status=400, message="bad")

    client._session = type("S", (), {"request": staticmethod(boom), "close": None})()  # type: ignore[assignment]
    client._owns_http = False
    with pytest.raises(TransportError) as exc_info:
        await client.send_text("15551234567", "hi")
    assert type(exc_info.value.__cause__) is ConnectionError  # a stand-in without the request
    assert exc_info.value.__context__ is None
    assert_no_leak(exc_info.value)


async def test_owned_session_is_not_closed():
    """A session passed as http_client stays open after aclose()."""
    async with aiohttp.ClientSession() as session:
        client = FastAsyncWhatsAppClient(token=CANARY, phone_number_id=PHONE, http_client=session)
        await client.aclose()
        assert not session.closed


@pytest.mark.parametrize("transport", ["aiohttp", "raw"])
async def test_closed_client_refuses_to_send(transport):
    """After aclose() the client does not open a new session."""
    client = FastAsyncWhatsAppClient(
        token=CANARY, phone_number_id=PHONE, base_url=_refused_url(), transport=transport
    )
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.send_text("15551234567", "hi")


@pytest.mark.parametrize("transport", ["aiohttp", "raw"])
def test_repr_hides_the_token(transport):
    """The client's repr shows the provider's fingerprint, never the token."""
    client = FastAsyncWhatsAppClient(token=CANARY, phone_number_id=PHONE, transport=transport)
    assert CANARY not in repr(client)
    # A sibling of AsyncWhatsAppClient on the shared async base, not a subclass.
    assert isinstance(client, AsyncClientBase)
    assert not isinstance(client, wa_auth.AsyncWhatsAppClient)


def test_missing_aiohttp_names_the_extra(monkeypatch):
    """Without aiohttp the constructor raises ImportError naming `wa-auth[fast]`."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(ImportError, match=r"wa-auth\[fast\]"):
        FastAsyncWhatsAppClient(token=CANARY, phone_number_id=PHONE)


def test_raw_transport_needs_no_aiohttp(monkeypatch):
    """`transport="raw"` is the standard library's: it works without aiohttp installed."""
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    client = FastAsyncWhatsAppClient(token=CANARY, phone_number_id=PHONE, transport="raw")
    assert "python-asyncio/" in client._headers["User-Agent"]


def test_raw_transport_refuses_an_aiohttp_session_and_unknown_transports():
    """http_client= is an aiohttp session: meaningless to the raw transport; typos are refused."""
    with pytest.raises(wa_auth.ConfigurationError, match="transport='raw'"):
        FastAsyncWhatsAppClient(token=CANARY, transport="raw", http_client=object())  # type: ignore[arg-type]
    with pytest.raises(wa_auth.ConfigurationError, match="'aiohttp' or 'raw'"):
        FastAsyncWhatsAppClient(token=CANARY, transport="httpx")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            401,
            _json(
                graph_body(190, 463, message="Error validating access token: Session has expired")
            ),
        ),
        (400, _json(graph_body(131031, message="Business Account locked"))),
    ],
    ids=["token-error", "account-error"],
)
async def test_failed_call_leaves_no_reference_cycle(status, body, garbage_probe):
    """An error raised through the flow frees its frames by reference counting, not the GC.

    A traceback holds the frames it passed and a frame holding the error closes a cycle: at
    thousands of failures a second that is garbage-collector work on every request.
    """
    script = Script(
        answer=lambda req: (
            ("reply", 200, _json(SUCCESS)) if b"warm-up" in req["body"] else ("reply", status, body)
        )
    )
    async with loopback(script) as url:
        for client in _clients(url):
            async with client:
                await client.send_text("15551234567", "warm-up")  # pools and caches exist
                with garbage_probe() as probe, contextlib.suppress(WhatsAppError):
                    await client.send_text("15551234567", "hi")
                assert probe.wa_auth_garbage() == []


async def test_transport_error_leaves_no_reference_cycle(garbage_probe):
    """A refused connection's TransportError is freed by reference counting too."""
    for client in _clients(_refused_url()):
        async with client:
            with garbage_probe() as probe, contextlib.suppress(TransportError):
                await client.send_text("15551234567", "hi")
            assert probe.wa_auth_garbage() == []
