"""The fast client's raw transport on real sockets: framing, hostile peers, the pool, TLS, proxies.

`test_async_client.py` runs the client's tables over this transport and `test_fast.py` compares
it with httpx and aiohttp; here is what only real sockets show: chunked and read-until-close
answers, `Connection: close`, a peer that sends garbage, closes mid-body or trickles its head
(a typed error, never a hang, never the token in the text), an idle connection the peer closed
replaced before it is written to, the connection limit and its waiters, and HTTPS verified
against a CA of the test's own, through a `CONNECT` proxy. Hypothesis checks the answer parser
against the stdlib transport's reader (`_wire.read_answer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import ssl
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from loopback_peers import PROXY_VARIABLES, peer, proxy
from loopback_peers import url as _url
from wa_auth import FastAsyncWhatsAppClient, TransportError
from wa_auth._client import _wire
from wa_auth._client._wire import AnswerParser, read_answer

TOKEN = "EAAGrawtransport0123456789abcdefABCDEF"
PHONE = "106540352242922"
TO = "+15551234567"
SEND_OK = json.dumps({"messages": [{"id": "wamid.raw"}]}).encode()


def _ok(body: bytes = SEND_OK, *extra: str) -> bytes:
    lines = "".join(f"{line}\r\n" for line in extra)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
        % (
            lines.encode(),
            len(body),
            body,
        )
    )


#: One answer's script: bytes to write, seconds to wait, or "close" (the peer hangs up).
Step = bytes | float | str


class Peer:
    """A loopback HTTP/1.1 peer that answers each request with the next script of steps."""

    def __init__(self, scripts: list[list[Step]], default: list[Step] | None = None) -> None:
        self.scripts = scripts
        self.default = default if default is not None else [_ok()]
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request head)
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.url = ""
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.requests.append((number, head))
                script = self.scripts.pop(0) if self.scripts else self.default
                for step in script:
                    if step == "close":
                        return
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    else:
                        assert isinstance(step, bytes)
                        writer.write(step)
                        await writer.drain()
        except ConnectionError:
            return
        finally:
            self.open -= 1
            writer.close()


@contextlib.asynccontextmanager
async def serving(*scripts: list[Step], default: list[Step] | None = None) -> AsyncIterator[Peer]:
    p = Peer(list(scripts), default)
    server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
    p.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield p
    finally:
        server.close()
        for w in p.writers:
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


def _client(url: str, **options: Any) -> FastAsyncWhatsAppClient:
    options.setdefault("timeout", 5.0)
    return FastAsyncWhatsAppClient(
        transport="raw", token=TOKEN, phone_number_id=PHONE, base_url=url, **options
    )


async def _failure(call: Callable[[], Any]) -> TransportError:
    """The TransportError *call* raises, within a hard limit, checked for the token."""
    with pytest.raises(TransportError) as info:
        await asyncio.wait_for(call(), 20)
    error = info.value
    text = "".join(traceback.format_exception(error)) + repr(error) + repr(error.__cause__)
    assert TOKEN not in text
    assert error.__context__ is None
    return error


pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def tls() -> tuple[trustme.CA, ssl.SSLContext]:
    """A CA of the test's own, and a server context with its certificate for localhost."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return ca, context


@pytest.fixture
def trusted(tls, tmp_path, monkeypatch) -> None:
    """Make the test's CA the trust store (SSL_CERT_FILE, as httpx reads it)."""
    pem = tmp_path / "ca.pem"
    tls[0].cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


# --- framing ------------------------------------------------------------------------------------


async def test_chunked_answers_in_pieces_on_one_connection():
    """A chunked answer cut anywhere across writes, with a trailer; the connection kept."""
    chunked = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n",
        b"%x\r\n%s\r\n" % (10, SEND_OK[:10]),
        0.01,
        b"%x;ext=1\r\n%s" % (len(SEND_OK) - 10, SEND_OK[10:15]),
        0.01,
        SEND_OK[15:] + b"\r\n0\r\nX-Trailer: 1\r\n",
        0.01,
        b"\r\n",
    ]
    async with serving(chunked, chunked) as p, _client(p.url) as client:
        for _ in range(2):
            assert (await client.send_text(TO, "hi")).message_id == "wamid.raw"
    assert p.connections == 1


async def test_connection_close_and_read_until_close_are_not_reused():
    """`Connection: close`, or a body without a length (read until the peer closes)."""
    no_length = [b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + SEND_OK, "close"]
    async with (
        serving([_ok(SEND_OK, "Connection: close")], no_length) as p,
        _client(p.url) as client,
    ):
        for _ in range(3):
            assert (await client.send_text(TO, "hi")).message_id == "wamid.raw"
    assert p.connections == 3


async def test_a_continue_before_the_answer_is_skipped():
    async with (
        serving([b"HTTP/1.1 100 Continue\r\n\r\n", 0.01, _ok()]) as p,
        _client(p.url) as client,
    ):
        assert (await client.send_text(TO, "hi")).message_id == "wamid.raw"


# --- hostile peers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ([b"garbage\r\n\r\n"], "BadStatusLine"),
        ([b"HTTP/1.1 abc OK\r\n\r\n"], "BadStatusLine"),
        (
            [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, "close"],
            "after 10 bytes",
        ),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], "after 0 bytes"),
        ([b"HTTP/1.1 200 OK\r\nContent-Le", "close"], "inside the head"),
        (["close"], "Server disconnected"),
        ([b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70000], "a head of more than"),
        ([b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n"], "more than 100 headers"),
    ],
    ids=[
        "garbage",
        "bad-status",
        "closed-mid-body",
        "bad-chunk",
        "closed-mid-head",
        "closed-first",
        "endless-head",
        "too-many-headers",
    ],
)
@pytest.mark.parametrize("idempotent", [False, True], ids=["send_text", "get_phone_number"])
async def test_a_broken_answer_is_a_protocol_error(script, words, idempotent):
    """Garbage, a cut head or body, a head past its limit: RemoteProtocolError, no hang."""
    async with serving(script) as p, _client(p.url) as client:
        error = await _failure(
            client.get_phone_number if idempotent else lambda: client.send_text(TO, "hi")
        )
        assert "RemoteProtocolError" in str(error.__cause__)
        assert words in str(error)
        assert error.maybe_delivered is (not idempotent)
        # The broken connection is gone: the next request opens a new one and succeeds.
        assert (await client.send_text(TO, "again")).message_id == "wamid.raw"
    assert p.connections == 2


async def test_a_body_past_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(_wire, "MAX_BODY", 1000)
    big = b"{" + b" " * 2000 + b"}"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b" " * 1024
    async with (
        serving([_ok(big)], [chunked + b"\r\n" + chunked[-1030:]]) as p,
        _client(p.url) as client,
    ):
        for _ in range(2):
            error = await _failure(lambda: client.send_text(TO, "hi"))
            assert "a body of more than 1000 bytes" in str(error)


async def test_a_trickling_head_ends_at_the_deadline():
    """A head one byte every 0.2 s (never a read timeout): the deadline ends it, maybe sent."""
    head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100
    script: list[Step] = []
    for byte in head:
        script += [bytes([byte]), 0.2]
    async with serving(script) as p, _client(p.url, timeout=1.0, deadline=1.0) as client:
        started = time.monotonic()
        error = await _failure(lambda: client.send_text(TO, "hi"))
        assert time.monotonic() - started < 6
    assert "ReadTimeout" in str(error.__cause__)
    assert "deadline passed" in str(error)
    assert error.maybe_delivered is True


async def test_a_silent_peer_is_a_read_timeout():
    async with serving([5.0]) as p, _client(p.url, timeout=0.3) as client:
        error = await _failure(client.get_phone_number)
    assert str(error.__cause__).startswith("ReadTimeout")
    assert error.maybe_delivered is False


# --- the pool -----------------------------------------------------------------------------------


async def test_an_idle_connection_the_peer_closed_is_never_written_to():
    """Closed while idle, before the loop has even seen it: dropped, the request goes anew."""
    async with serving([_ok(), "close"]) as p, _client(p.url) as client:
        await client.send_text(TO, "one")
        deadline = time.monotonic() + 5
        while p.open and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 - the loop must not run: only the socket knows
        assert (await client.send_text(TO, "two")).message_id == "wamid.raw"
    assert [number for number, _ in p.requests] == [1, 2]


async def test_the_connection_limit_makes_requests_wait_their_turn():
    async with serving(default=[0.05, _ok()]) as p, _client(p.url) as client:
        client._raw._limit = 2  # type: ignore[union-attr]
        results = await asyncio.gather(*(client.send_text(TO, f"m{i}") for i in range(8)))
        assert {r.message_id for r in results} == {"wamid.raw"}
        assert client._raw._busy == 0  # type: ignore[union-attr]
    assert p.most_open <= 2
    assert len(p.requests) == 8


async def test_a_request_that_never_gets_a_connection_was_not_sent():
    """The pool timeout (or the deadline) while every connection is in use: not delivered."""
    budget = httpx.Timeout(5.0, pool=0.3)  # read by its attributes: no httpx in the transport
    async with serving([1.0, _ok()]) as p, _client(p.url, timeout=budget) as client:
        client._raw._limit = 1  # type: ignore[union-attr]
        first = asyncio.ensure_future(client.send_text(TO, "slow"))
        await asyncio.sleep(0.1)
        error = await _failure(lambda: client.send_text(TO, "waits"))
        assert str(error.__cause__).startswith("PoolTimeout")
        assert error.maybe_delivered is False
        assert (await first).message_id == "wamid.raw"
    assert len(p.requests) == 1


async def test_a_cancelled_request_gives_back_its_connection_slot():
    async with serving([5.0], default=[_ok()]) as p, _client(p.url) as client:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.send_text(TO, "hangs"), 0.2)
        assert client._raw._busy == 0  # type: ignore[union-attr]
        assert (await client.send_text(TO, "next")).message_id == "wamid.raw"
    assert p.connections == 2  # the cancelled one's connection was closed, not reused


async def test_a_refused_connection_was_not_sent():
    async with serving() as p:
        url = p.url
    async with _client(url) as client:
        error = await _failure(lambda: client.send_text(TO, "hi"))
    assert str(error.__cause__).startswith("ConnectError")
    assert error.maybe_delivered is False


# --- TLS and proxies (the stdlib transport's peers) ---------------------------------------------


async def test_https_is_verified_against_the_trust_store(tls, trusted):
    with peer(tls=tls[1]) as server:
        async with _client(_url(server, "https", "localhost")) as client:
            assert (await client.send_text(TO, "one")).message_id == "wamid.stdlib"
            assert (await client.send_text(TO, "two")).message_id == "wamid.stdlib"
    assert server.connections == 1


async def test_an_untrusted_certificate_is_a_connect_error_unsent(tls):
    with peer(tls=tls[1]) as server:
        async with _client(_url(server, "https", "localhost")) as client:
            error = await _failure(lambda: client.send_text(TO, "hi"))
    assert str(error).startswith("ConnectError on send_text: the request was not sent")
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert server.requests == []


async def test_https_goes_through_the_proxy_in_a_connect_tunnel(tls, trusted, monkeypatch):
    """HTTPS_PROXY: a CONNECT to the peer, the proxy's credentials, TLS inside (loop.start_tls)."""
    with peer(tls=tls[1]) as server, proxy() as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        async with _client(_url(server, "https", "localhost")) as client:
            await client.send_text(TO, "one")
            await client.send_text(TO, "two")
    assert len(p.heads) == 1  # one tunnel, kept alive
    assert p.heads[0].startswith(f"CONNECT localhost:{server.server_address[1]} HTTP/")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz" in p.heads[0]  # user:p@ss
    assert len(server.requests) == 2


async def test_no_proxy_names_hosts_that_go_direct(tls, trusted, monkeypatch):
    with peer(tls=tls[1]) as server, proxy() as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        monkeypatch.setenv("NO_PROXY", "example.com, localhost")
        async with _client(_url(server, "https", "localhost")) as client:
            await client.send_text(TO, "hi")
    assert p.heads == []
    assert len(server.requests) == 1


async def test_a_proxy_that_refuses_the_tunnel_is_a_proxy_error_unsent(tls, trusted, monkeypatch):
    with peer(tls=tls[1]) as server, proxy(refuse=True) as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        async with _client(_url(server, "https", "localhost")) as client:
            error = await _failure(lambda: client.send_text(TO, "hi"))
    assert str(error).startswith("ProxyError on send_text: the request was not sent")
    assert "407" in str(error)
    assert "p@ss" not in str(error)
    assert "p%40ss" not in str(error)
    assert server.requests == []


async def test_plain_http_goes_to_the_proxy_in_absolute_form(monkeypatch):
    with peer() as forward:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{forward.server_address[1]}")
        async with _client("http://graph.example.invalid") as client:
            assert (await client.send_text(TO, "hi")).message_id == "wamid.stdlib"
    _, path, headers = forward.requests[0]
    assert path == f"http://graph.example.invalid/v23.0/{PHONE}/messages"
    assert headers["Proxy-Authorization"] == "Basic dXNlcjpwdw=="  # user:pw


# --- the answer parser, against the stdlib transport's reader -----------------------------------


class _Socket:
    """Enough of a socket for `read_answer`: *chunks* received in turn, then the peer closes."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def gettimeout(self) -> float | None:
        return None

    def settimeout(self, timeout: float | None) -> None:
        pass

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def _outcome(result: Callable[[], _wire.Answer]) -> tuple[Any, ...]:
    try:
        answer = result()
    except http.client.HTTPException:
        return ("error",)
    return (answer.status, answer.headers, answer.body, answer.will_close)


def _parsed(chunks: list[bytes], method: str = "POST") -> tuple[Any, ...]:
    def run() -> _wire.Answer:
        parser = AnswerParser(method)
        for chunk in chunks:
            answer = parser.feed(chunk)
            if answer is not None:
                return answer
        return parser.end()

    return _outcome(run)


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


_TOKEN = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=12,
)
_VALUE = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\r\n"),
    max_size=20,
)
_HEADER = st.one_of(
    st.tuples(_TOKEN, st.sampled_from([":", ": ", ":\t"]), _VALUE).map("".join),
    st.sampled_from(
        [
            "Connection: close",
            "Connection: keep-alive",
            "Keep-Alive: timeout=5",
            " folded continuation",
            "no colon here",
            "Set-Cookie: a=1",
            "set-cookie: b=2",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTX/1.1"]),
    status=st.one_of(st.integers(100, 999), st.sampled_from([99, 1000, 204, 304])),
    reason=st.sampled_from(["", " OK", " Not Found", " x y z"]),
    headers=st.lists(_HEADER, max_size=8),
    body=st.binary(max_size=64),
    framing=st.sampled_from(["length", "chunked", "none"]),
    newline=st.sampled_from(["\r\n", "\n"]),
    method=st.sampled_from(["POST", "GET", "HEAD"]),
    cuts=st.lists(st.integers(0, 4096), max_size=6),
)
def test_the_parser_reads_what_the_stdlib_reader_reads(  # noqa: PLR0917 - Hypothesis's draws
    version, status, reason, headers, body, framing, newline, method, cuts
):
    """A whole answer, cut anywhere: the same status, headers, body and reuse as `read_answer`.

    Both read the same pieces as they arrive: bytes past the answer in the piece that ends it
    are left over (the connection is not reused); later ones are the next exchange's.
    """
    lines = [f"{version} {status}{reason}", *headers]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        payload = body
    raw = (newline.join(lines) + newline + newline).encode("latin-1") + payload
    chunks = _splits(raw, cuts)
    expected = _outcome(lambda: read_answer(_Socket(chunks), None, method))  # type: ignore[arg-type]
    assert _parsed(chunks, method) == expected


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_the_parser_only_ever_raises_http_exceptions(data, cuts):
    """Any bytes, cut anywhere: an answer or an `HTTPException`, the same for every cut."""
    whole = _parsed([data])
    assert _parsed(_splits(data, cuts)) == whole


@pytest.mark.parametrize("after", ["close", "garbage"])
async def test_a_tunnel_that_ends_before_tls_is_a_connect_error_unsent(
    tls, trusted, monkeypatch, after
):
    """A proxy that grants the CONNECT, then closes (or answers no TLS): a typed error, unsent."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                heads.append(head)
                reply = b"HTTP/1.1 200 Connection established\r\n\r\n"
                if after == "garbage":
                    reply += b"this is not a TLS record\r\n" * 4
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
        async with _client("https://localhost:9") as client:
            error = await _failure(lambda: client.send_text(TO, "hi"))
    finally:
        listener.close()
        thread.join(5)
    assert heads
    assert heads[0].startswith(b"CONNECT localhost:9 HTTP/1.1")
    assert str(error).startswith("ConnectError on send_text: the request was not sent"), error
    assert error.maybe_delivered is False


async def test_start_tls_on_a_closed_tunnel_is_a_connect_error_unsent(tls, trusted, monkeypatch):
    """asyncio's start_tls raises RuntimeError on a transport that is closing: mapped, unsent."""

    async def closing(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Transport is closing")

    monkeypatch.setattr(asyncio.BaseEventLoop, "start_tls", closing)
    with peer(tls=tls[1]) as server, proxy() as p:
        monkeypatch.setenv("HTTPS_PROXY", p.url)
        async with _client(_url(server, "https", "localhost")) as client:
            error = await _failure(lambda: client.send_text(TO, "hi"))
    assert str(error).startswith("ConnectError on send_text: the request was not sent"), error
    assert "the tunnel closed before TLS began" in str(error)
    assert error.maybe_delivered is False
    assert server.requests == []
