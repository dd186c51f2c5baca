"""The asyncio `raw` transport: HTTP/1.1 on `asyncio.Protocol` connections kept alive.

`FastAsyncWhatsAppClient(transport="raw")` sends through `RawTransport`: the same flows, driver,
gate and errors as over aiohttp; only the bytes on the wire are written and read here, with the
standard library alone. aiohttp's client spends about twice the CPU of the rest of a guarded
send on each request (its request and response objects, its timers, its stream reader); this
transport writes one message and parses the answer as it arrives (`_wire.AnswerParser`), with
one timer per request.

It is the stdlib transport (`_stdlib`) on an event loop, and shares its pieces:

- the request's bytes and origin (`Addressing`), the proxy rules (`HTTPS_PROXY`, `NO_PROXY`,
  httpx's), the TLS context (`SSL_CERT_FILE`, certifi, the system store), the error kinds
  (`ConnectError`, `ReadTimeout`, ...) and their `maybe_delivered` rule: a failure before the
  request could reach the peer says it was not sent; any later one leaves a send
  `maybe_delivered`;
- persistent connections, one idle set per origin; one the peer closed while idle (or that has
  bytes nobody asked for) is dropped before it is reused, never written to, and the request
  goes on another: that is the only retry, and nothing of the request was sent;
- at most *limit* connections in use, later requests waiting in turn (aiohttp's connector
  limit), each wait bounded by the pool and connect timeouts and the call's deadline
  (`wa_auth._deadline`); the answer bounded by the read timeout (between two receives) and the
  deadline (the whole of it), so a peer that trickles cannot outlive the call. Writes are
  buffered by the loop: while the loop holds more than its high-water mark of the request, the
  write timeout bounds each wait for the peer to take more of it (a `WriteTimeout`, maybe
  delivered) and the read timer has not started; it starts once the buffer has drained.

HTTPS goes through `loop.create_connection(ssl=...)`, through a proxy by a `CONNECT` tunnel and
`loop.start_tls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import select
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Final
from urllib.parse import SplitResult, urlsplit

from wa_auth import _deadline
from wa_auth._client._base import Timeouts
from wa_auth._client._stdlib import (
    SEND_FAILURES,
    Addressing,
    ConnectError,
    ConnectTimeout,
    Headers,
    Origin,
    ProxyError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
    _Failure,
    _idna,
    _Place,
    _protocol_text,
    _proxy_authorization,
    _ssl_context,
    send_failure,
)
from wa_auth._client._wire import Answer, AnswerParser, encode_headers
from wa_auth._core import Request, Response, bearer
from wa_auth.errors import WhatsAppError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Mapping

    from wa_auth.providers import Token

__all__ = ["LIBRARY", "PoolTimeout", "RawTransport"]

#: What the default User-Agent names as the HTTP library.
LIBRARY: Final = f"python-asyncio/{sys.version_info[0]}.{sys.version_info[1]}"


class PoolTimeout(ConnectTimeout):
    """Every connection stayed in use past the pool timeout or the deadline: nothing sent."""


def _poller(fileno: int) -> Callable[[], bool]:
    """A check of whether the socket *fileno* has something to read (closed, or bytes sent).

    Made once per connection (a `select.poll` registered once), asked before each reuse.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fileno, select.POLLIN)

        def readable() -> bool:
            try:
                return bool(poller.poll(0))
            except (OSError, ValueError):  # pragma: no cover - a socket closed under us
                return True

        return readable

    def selected() -> bool:  # pragma: no cover - Windows
        try:
            return bool(select.select([fileno], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    return selected  # pragma: no cover


class _Connection(asyncio.Protocol):
    """One connection: at most one answer awaited at a time, read by an `AnswerParser`."""

    __slots__ = (
        "closed",
        "left",
        "loop",
        "parser",
        "paused",
        "read",
        "readable",
        "seen",
        "timer",
        "transport",
        "waiter",
        "what",
        "when",
        "write",
        "writing",
    )

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.readable: Callable[[], bool] | None = None
        self.closed = False
        self.parser: AnswerParser | None = None
        self.waiter: asyncio.Future[Answer] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.seen = 0.0
        self.read: float | None = None
        self.when: float | None = None
        self.what = ""
        #: The loop holds more of the request than its high-water mark (`pause_writing`).
        self.paused = False
        #: The request is still being written: the timer bounds the drain, not the answer.
        self.writing = False
        self.write: float | None = None
        self.left = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and self.readable is None:  # not again for TLS over a tunnel
            self.readable = _poller(sock.fileno())

    def usable(self) -> bool:
        """Whether this idle connection can carry a request (the peer has not closed it)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        return self.readable is None or not self.readable()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def exchange(
        self,
        message: bytes,
        method: str,
        read: float | None,
        at: float | None,
        what: str,
        write: float | None = None,
    ) -> asyncio.Future[Answer]:
        """Write *message*; return the future of its answer, failed on a timeout or a loss.

        *write* bounds each wait for the peer to take more of a request the loop could not
        send at once, *read* each wait for the next bytes of the answer (its timer starts once
        the request has drained), *at* (loop time) the whole exchange.
        """
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise ConnectError("the connection closed before the request was written")
        self.parser = AnswerParser(method)
        waiter = self.waiter = self.loop.create_future()
        transport.write(message)
        now = self.seen = self.loop.time()
        self.read = read
        self.write = write
        self.when = at
        self.what = what
        step = read
        if self.paused:  # the loop holds part of the request: bound its drain, not the answer
            self.writing = True
            self.left = transport.get_write_buffer_size()
            step = write
        when = at if step is None else now + step if at is None else min(at, now + step)
        if when is not None:
            self.timer = self.loop.call_at(when, self._tick)
        return waiter

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.writing:
            self._drained()

    def _drained(self) -> None:
        """The request has left the loop's buffer: from now on the read timeout runs."""
        self.writing = False
        now = self.seen = self.loop.time()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        at, read = self.when, self.read
        when = at if read is None else now + read if at is None else min(at, now + read)
        if when is not None:
            self.timer = self.loop.call_at(when, self._tick)

    def _tick(self) -> None:
        """The timer: fail the exchange if the deadline or the write or read timeout passed.

        While the request drains, the write timeout runs from the last time the peer took
        some of it; after, the read timeout from the last bytes of the answer.
        """
        self.timer = None
        now = self.loop.time()
        step: float | None
        kind: type[WriteTimeout | ReadTimeout]
        if self.writing:
            transport = self.transport
            assert transport is not None
            left = transport.get_write_buffer_size()
            if left == 0:
                self._drained()  # resume_writing may not have come (TLS): the read timer now
                return
            if left < self.left:  # the peer took some: the write timer starts again
                self.left = left
                self.seen = now
            step, kind = self.write, WriteTimeout
        else:
            step, kind = self.read, ReadTimeout
        at = self.when
        if at is not None and now >= at:
            self._fail(kind(f"{self.what} passed"))
            return
        if step is not None:
            due = self.seen + step
            if now >= due:
                self._fail(kind("timed out"))
                return
            at = due if at is None else min(at, due)
        assert at is not None
        self.timer = self.loop.call_at(at, self._tick)

    def abandon(self) -> None:
        """Stop awaiting an answer (its request failed or was cancelled); the caller closes."""
        self._done()

    def _done(self) -> asyncio.Future[Answer] | None:
        """End the exchange: the timer stopped, the parser gone; return its waiter."""
        self.parser = None
        self.writing = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiter, self.waiter = self.waiter, None
        return waiter if waiter is not None and not waiter.done() else None

    def _fail(self, error: _Failure) -> None:
        waiter = self._done()
        self.close()
        if waiter is not None:
            waiter.set_exception(error)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes nobody asked for: the connection's state is unknown
            self.close()
            return
        if self.read is not None and not self.writing:
            self.seen = self.loop.time()
        try:
            answer = parser.feed(data)
        except http.client.HTTPException as exc:
            self._fail(RemoteProtocolError(_protocol_text(exc)))
            return
        if answer is not None:
            waiter = self._done()
            if waiter is not None:
                waiter.set_result(answer)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost ends the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser = self.parser
        if parser is None:
            return
        error: _Failure
        if exc is not None:  # a reset: whatever came may be cut short, whatever the framing
            error = ReadError(str(exc) or type(exc).__name__)
        else:
            try:
                answer = parser.end()
            except http.client.HTTPException as lost:
                error = RemoteProtocolError(_protocol_text(lost))
            else:
                waiter = self._done()
                if waiter is not None:
                    waiter.set_result(answer)
                return
        self._fail(error)


class RawTransport(Addressing):
    """Sends a `Request` over HTTP/1.1 connections of one event loop, reusing them.

    Args:
        timeouts: The seconds of each phase (the write budget bounds a request's drain).
        headers: The headers every request carries (User-Agent, Accept).
        limit: The most connections in use at once; more requests wait for one in turn.
    """

    def __init__(self, timeouts: Timeouts, headers: Mapping[str, str], *, limit: int) -> None:
        self._timeouts = timeouts
        self._headers = dict(headers)
        self._limit = limit
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._places: dict[str, _Place] = {}
        self._lines: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._context: ssl.SSLContext | None = None
        self._reset()

    def _reset(self) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._busy = 0
        #: Requests waiting for a connection: each future's result says whether it got its turn.
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._closed = False

    def reopen(self) -> None:
        """Start afresh on a new event loop, the old loop's idle connections closed."""
        for conns in self._idle.values():
            for conn in conns:
                _orphan(conn)
        self._reset()

    async def send(self, request: Request, token: Token) -> Response:
        """Send *request* with *token*; return the answer, or raise a `WhatsAppError`."""
        if self._closed:
            raise RuntimeError("this client has been closed")
        secret = bearer(token)
        try:
            return await self._exchange(request, secret)
        except WhatsAppError:
            raise
        except SEND_FAILURES as exc:
            error = send_failure(request, exc, secret)
        # Raised outside the handler: the library's exception is not the context.
        try:
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through it

    async def _exchange(self, request: Request, secret: str) -> Response:
        origin, message = self._message(request, secret)
        loop = asyncio.get_running_loop()
        deadline = _deadline.current()
        at = None if deadline is None else loop.time() + (deadline.at - time.monotonic())
        what = "" if deadline is None else deadline.what
        if self._busy < self._limit and not self._waiters:
            self._busy += 1
        else:
            await self._wait_turn(loop, at)  # the turn comes with its slot counted
        try:
            if self._closed:
                raise ConnectError("the client was closed while the request waited")
            conn = self._take(origin)
            if conn is None:
                conn = await self._connect(origin, loop, at, what)
            elif at is not None and loop.time() >= at:
                # Gone while it waited for its turn: nothing written, the connection kept.
                self._idle[origin].append(conn)
                raise ConnectTimeout(f"{what} passed")
            reusable = False
            try:
                answer = await conn.exchange(
                    message, request.method, self._timeouts.read, at, what, self._timeouts.write
                )
                reusable = not answer.will_close
            finally:
                if reusable and not conn.closed and not self._closed:
                    self._idle.setdefault(origin, []).append(conn)
                else:
                    conn.abandon()
                    conn.close()
        finally:
            self._busy -= 1
            self._wake()
        return Response(answer.status, Headers(lowered=answer.headers), answer.body)

    def _take(self, origin: Origin) -> _Connection | None:
        """An idle connection to *origin* still open, or None; the dead ones are closed."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _wake(self) -> None:
        """Hand a free slot to the first request still waiting (counted in use for it).

        Handed over, not announced: a request arriving meanwhile queues behind the waiters
        (`_exchange`), so none waits past its turn. Once closed, every waiter is failed.
        """
        waiters = self._waiters
        while waiters and self._busy < self._limit:
            waiter = waiters.popleft()
            if waiter.done():
                continue  # expired or cancelled: it holds no slot
            if self._closed:
                waiter.set_result(False)
                continue
            self._busy += 1
            waiter.set_result(True)

    async def _wait_turn(self, loop: asyncio.AbstractEventLoop, at: float | None) -> None:
        """Wait for a slot handed over by `_wake`, within the pool timeout and the deadline."""
        pool = self._timeouts.pool
        when = None if pool is None else loop.time() + pool
        if at is not None and (when is None or at < when):
            when = at
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        if self._busy < self._limit:
            self._wake()  # a slot is free (the waiters ahead expired): the first takes it
        timer = None if when is None else loop.call_at(when, _expire, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._busy -= 1
                self._wake()  # a turn given to this request passes to the next
            raise
        finally:
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(ValueError):  # still there if it expired or was cancelled
                self._waiters.remove(waiter)
        if not waiter.result():
            if self._closed:
                raise ConnectError("the client was closed while the request waited")
            late = _deadline.passed()
            raise PoolTimeout(f"{late.what} passed" if late else "timed out")

    async def _connect(
        self, origin: Origin, loop: asyncio.AbstractEventLoop, at: float | None, what: str
    ) -> _Connection:
        """A new connection to *origin*, within the connect timeout and the deadline."""
        seconds = self._timeouts.connect
        if at is not None:
            left = at - loop.time()
            if left <= 0:
                raise ConnectTimeout(f"{what} passed")
            if seconds is None or left < seconds:
                seconds = left
        try:
            if seconds is None:
                return await self._dial(origin, at, what)
            return await _deadline.wait_for(self._dial(origin, at, what), seconds)
        except asyncio.TimeoutError:
            late = _deadline.passed()
            raise ConnectTimeout(f"{late.what} passed" if late else "timed out") from None
        except _Failure:
            raise
        except OSError as exc:  # refused, unreachable, a certificate not trusted
            raise ConnectError(str(exc) or type(exc).__name__) from None

    async def _dial(self, origin: Origin, at: float | None, what: str) -> _Connection:
        """Open a connection to *origin*: direct, through its proxy, or a tunnel in it."""
        scheme, host, port, proxy = origin
        if proxy is None:
            return await self._channel(scheme, host, port)
        where = urlsplit(proxy)
        if where.scheme != "http" or not where.hostname:
            raise ProxyError(
                f"the proxy URL must be http://host:port for the raw transport, got a "
                f"{where.scheme!r} URL"
            )
        conn = await self._channel("http", where.hostname, where.port or 80)
        if scheme == "http":
            return conn
        try:
            await self._tunnel(conn, host, port, where, at, what)
            assert conn.transport is not None
            tls = await asyncio.get_running_loop().start_tls(
                conn.transport, conn, self._ssl(), server_hostname=host
            )
        except RuntimeError as exc:  # the tunnel's transport closed before TLS could begin
            conn.close()
            raise ConnectError(f"the tunnel closed before TLS began ({exc})") from None
        except BaseException:
            conn.close()
            raise
        if tls is None:  # pragma: no cover - only a closed transport gives none
            raise ConnectError("the tunnel closed before TLS began")
        assert isinstance(tls, asyncio.Transport)
        conn.transport = tls
        return conn

    async def _tunnel(
        self,
        conn: _Connection,
        host: str,
        port: int,
        proxy: SplitResult,
        at: float | None,
        what: str,
    ) -> None:
        """Ask the proxy for a `CONNECT` tunnel to *host*:*port* on *conn*."""
        name = _idna(host)
        if ":" in host:
            name = b"[" + name + b"]"
        target = b"%s:%d" % (name, port)
        head = (
            b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (target, target)
            + encode_headers(_proxy_authorization(proxy))
            + b"\r\n"
        )
        try:
            answer = await conn.exchange(head, "HEAD", self._timeouts.connect, at, what)
        except _Failure as exc:
            raise ProxyError(f"Tunnel connection failed: {exc}") from None
        if answer.status != 200:
            raise ProxyError(f"Tunnel connection failed: {answer.status}")

    async def _channel(self, scheme: str, host: str, port: int) -> _Connection:
        """A new TCP (and, for https, TLS) connection to *host*:*port*."""
        loop = asyncio.get_running_loop()
        if scheme == "https":
            _, conn = await loop.create_connection(
                _Connection, host, port, ssl=self._ssl(), server_hostname=host
            )
        else:
            _, conn = await loop.create_connection(_Connection, host, port)
        return conn

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = _ssl_context()
        return self._context

    async def aclose(self) -> None:
        """Close every idle connection and fail the waiting requests (nothing of them sent).

        One in use closes when its request ends. Idle connections are aborted, not closed:
        HTTP/1.1 framing makes TLS's close_notify needless, and a TLS peer that never
        answers it would leave the transport open.
        """
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(False)
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.closed = True
                if conn.transport is not None:
                    conn.transport.abort()
        if idle:
            await asyncio.sleep(0)  # the transports' close callbacks run


def _orphan(conn: _Connection) -> None:
    """Close *conn*, whose event loop has ended.

    Its socket is closed directly: no loop is left to run the transport's close.
    """
    conn.closed = True
    transport = conn.transport
    if transport is None:
        return
    with contextlib.suppress(RuntimeError):  # the loop closed: the transport cannot schedule
        transport.abort()
    # What the closed loop would have run next: the socket transport's (under TLS, the one
    # beneath it) last step, which closes the socket and marks the transport closed.
    base = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None) or transport
    lost = getattr(base, "_call_connection_lost", None)
    if lost is not None:
        with contextlib.suppress(Exception):  # TLS's own step needs the loop; the socket closes
            lost(None)
        return
    sock = transport.get_extra_info("socket")  # pragma: no cover - another loop's transport
    sock = getattr(sock, "_sock", sock)  # pragma: no cover - TransportSocket hides close()
    if sock is not None:  # pragma: no cover
        with contextlib.suppress(OSError):
            sock.close()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
