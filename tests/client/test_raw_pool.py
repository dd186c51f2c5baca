"""The raw transport's write phase, reset answers, pool turns and closing, on real sockets.

A large request to a peer that reads it slowly is bounded by the write timeout while it drains,
the read timer only after; a read-until-close answer cut by a reset is an error, not a short
200; a slot freed is handed to the first waiter (a newcomer never overtakes it); `reopen` and
`aclose` leave no connection open, and waiters fail unsent once the transport is closed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trustme

from wa_auth import TransportError
from wa_auth._client import _raw
from wa_auth._client._base import Timeouts
from wa_auth._client._raw import RawTransport
from wa_auth._client._stdlib import ConnectError
from wa_auth._core import Request
from wa_auth.providers._base import Token

TOKEN = Token("EAAGrawpool0123456789abcdefABCDEF")
pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _transport(**seconds: float | None) -> RawTransport:
    budget = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0} | seconds
    return RawTransport(Timeouts(**budget), {"User-Agent": "test"}, limit=4)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler, *, rcvbuf: int | None = None) -> AsyncIterator[str]:
    """A loopback peer running *handler* per connection; yields its URL."""
    sock = socket.socket()
    if rcvbuf is not None:  # accepted sockets inherit it: the kernel absorbs little
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind(("127.0.0.1", 0))
    tasks: list[asyncio.Task[None]] = []

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(run, sock=sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/x"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def _body_length(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _small_send_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client's kernel send buffer fixed small: the loop's own buffer holds the request."""
    channel = RawTransport._channel

    async def small(self: RawTransport, scheme: str, host: str, port: int) -> Any:
        conn = await channel(self, scheme, host, port)
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 32768
        )
        return conn

    monkeypatch.setattr(RawTransport, "_channel", small)


def _upload(url: str, size: int = 2 << 20) -> Request:
    return Request("POST", url, content=b"m" * size)


# --- the write phase ------------------------------------------------------------------------------


async def test_a_large_body_read_slowly_is_not_a_read_timeout(monkeypatch):
    """The peer takes the body only after 1 s (read timeout 0.3 s): the answer still comes."""
    _small_send_buffer(monkeypatch)

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        size = await _body_length(reader)
        await asyncio.sleep(1.0)
        await reader.readexactly(size)
        writer.write(OK)
        await writer.drain()

    async with serving(slow, rcvbuf=32768) as url:
        raw = _transport(read=0.3, write=3.0)
        response = await raw.send(_upload(url), TOKEN)
        await raw.aclose()
    assert response.status_code == 200


@pytest.mark.parametrize("bound", ["write", "deadline"])
async def test_a_peer_that_reads_nothing_is_a_write_timeout_maybe_delivered(monkeypatch, bound):
    _small_send_buffer(monkeypatch)

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _body_length(reader)
        await asyncio.sleep(10)

    from wa_auth import _deadline

    async with serving(deaf, rcvbuf=32768) as url:
        if bound == "write":
            raw = _transport(read=5.0, write=0.3)
            with pytest.raises(TransportError) as caught:
                await raw.send(_upload(url), TOKEN)
        else:
            raw = _transport(read=5.0, write=None)
            with _deadline.scope(0.4, "deadline"), pytest.raises(TransportError) as caught:
                await asyncio.wait_for(raw.send(_upload(url), TOKEN), 5.0)
        await raw.aclose()
    assert str(caught.value.__cause__).startswith("WriteTimeout")
    assert caught.value.maybe_delivered is True


# --- a reset ------------------------------------------------------------------------------------


async def test_a_read_until_close_body_cut_by_a_reset_is_a_read_error():
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\n\r\n{"messages": [{"id": "wam')
        await writer.drain()
        await asyncio.sleep(0.1)
        linger = struct.pack("ii", 1, 0)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()

    async with serving(reset) as url:
        raw = _transport()
        with pytest.raises(TransportError) as caught:
            await raw.send(Request("GET", url), TOKEN)
        await raw.aclose()
    assert str(caught.value.__cause__).startswith("ReadError")
    assert caught.value.maybe_delivered is True


# --- turns --------------------------------------------------------------------------------------


async def _answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.05)
        writer.write(OK)
        await writer.drain()


async def test_a_freed_slot_goes_to_the_first_waiter_not_a_newcomer():
    """Each release, a newcomer starts in the same loop turn: the waiter still goes first."""
    async with serving(_answering) as url:
        raw = _transport()
        raw._limit = 1
        done: list[str] = []

        async def named(name: str) -> None:
            await raw.send(Request("GET", url), TOKEN)
            done.append(name)

        tasks: list[asyncio.Task[None]] = []
        wake = raw._wake

        def crowded() -> None:
            if len(tasks) < 4:
                tasks.append(asyncio.ensure_future(named(f"C{len(tasks)}")))
            wake()

        raw._wake = crowded  # type: ignore[method-assign]
        first = asyncio.ensure_future(named("A"))
        await asyncio.sleep(0.01)
        await asyncio.gather(first, named("B"))
        while not all(task.done() for task in tasks):  # each may start another
            await asyncio.gather(*tasks)
        await raw.aclose()
    assert done[:2] == ["A", "B"]
    assert raw._busy == 0


async def test_a_cancelled_waiter_handed_a_slot_passes_it_on():
    async with serving(_answering) as url:
        raw = _transport()
        raw._limit = 1
        first = asyncio.ensure_future(raw.send(Request("GET", url), TOKEN))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(raw.send(Request("GET", url), TOKEN))
        await asyncio.sleep(0.01)
        third = asyncio.ensure_future(raw.send(Request("GET", url), TOKEN))
        await asyncio.sleep(0.01)
        wake = raw._wake

        def then_cancel() -> None:
            wake()  # the slot handed to the second...
            second.cancel()  # ...which is cancelled before it runs

        raw._wake = then_cancel  # type: ignore[method-assign]
        assert (await first).status_code == 200
        raw._wake = wake  # type: ignore[method-assign]
        assert (await asyncio.wait_for(third, 1.5)).status_code == 200
        with pytest.raises(asyncio.CancelledError):
            await second
        assert raw._busy == 0
        await raw.aclose()


async def test_waiters_fail_unsent_once_closed():
    seen: list[int] = []

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        await _answering(reader, writer)

    async with serving(counting) as url:
        raw = _transport()
        raw._limit = 1
        first = asyncio.ensure_future(raw.send(Request("GET", url), TOKEN))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(raw.send(Request("GET", url), TOKEN))
        await asyncio.sleep(0.01)
        await raw.aclose()
        with pytest.raises(TransportError) as caught:
            await second
        assert (await first).status_code == 200
    assert caught.value.maybe_delivered is False
    assert len(seen) == 1


# --- closing --------------------------------------------------------------------------------------


def test_reopen_closes_the_old_loops_idle_connections():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(65536):
                conn.sendall(OK)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    raw = _transport()

    async def once() -> None:
        await raw.send(Request("GET", f"http://127.0.0.1:{port}/x"), TOKEN)

    asyncio.run(once())
    (conn,) = [c for conns in raw._idle.values() for c in conns]
    sock = conn.transport.get_extra_info("socket")
    raw.reopen()
    assert sock.fileno() == -1
    thread.join(5)  # the peer saw the close
    assert not thread.is_alive()
    listener.close()


async def test_aclose_aborts_an_idle_tls_connection_the_peer_never_closes():
    """A TLS peer that never reads the close_notify: the socket is closed all the same."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def stuck() -> None:
        conn, _ = listener.accept()
        with server.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(OK)
            stop.wait(5)  # never reads the close_notify, never closes

    thread = threading.Thread(target=stuck, daemon=True)
    thread.start()
    raw = _transport()
    raw._context = client
    response = await raw.send(Request("GET", f"https://127.0.0.1:{port}/x"), TOKEN)
    (conn,) = [c for conns in raw._idle.values() for c in conns]
    sock = conn.transport.get_extra_info("socket")
    await raw.aclose()
    await asyncio.sleep(0.05)
    closed = sock.fileno() == -1
    stop.set()
    thread.join(5)
    listener.close()
    assert response.status_code == 200
    assert closed


async def test_exchange_on_a_closed_connection_fails_at_once_unsent():
    async with serving(_answering) as url:
        raw = _transport()
        await raw.send(Request("GET", url), TOKEN)
        (conn,) = [c for conns in raw._idle.values() for c in conns]
        conn.close()
        with pytest.raises(ConnectError) as caught:
            conn.exchange(b"GET /x HTTP/1.1\r\n\r\n", "GET", 5.0, None, "")
        assert caught.value.not_sent
        await raw.aclose()
    assert _raw.ConnectError is ConnectError


async def test_a_deadline_passed_before_a_kept_connection_is_written_to_is_not_sent():
    """The slot free, an idle connection kept, the deadline gone: refused unsent, conn kept."""
    from wa_auth import _deadline

    seen: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readexactly(await _body_length(reader))
            seen.append(1)
            writer.write(OK)
            await writer.drain()

    async with serving(answer) as url:
        raw = _transport()
        post = Request("POST", url, content=b'{"to": "1"}')
        assert (await raw.send(post, TOKEN)).status_code == 200
        with _deadline.scope(0.0, "deadline"), pytest.raises(TransportError) as caught:
            await raw.send(post, TOKEN)
        assert (await raw.send(post, TOKEN)).status_code == 200  # the kept connection, reused
        await raw.aclose()
    assert str(caught.value.__cause__).startswith("ConnectTimeout")
    assert caught.value.maybe_delivered is False
    assert len(seen) == 2
