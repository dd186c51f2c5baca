"""serve's own HTTP/1.1 lane: the plain requests of n8n's items, on `asyncio.Protocol`.

aiohttp's server costs a request more than serve's routes need (its parser, its request, its
writer, one task per connection and one per request); the lane reads the strict subset of
HTTP/1.1 that `_wire.read_head` accepts (what n8n's HTTP Request node and the wa-auth node
send: `GET` or `POST`, a plain path, `Content-Length` or no body) and answers it through the
same `Front.answer` as aiohttp's path: the same routes, key check, answers and access line.

Any other head (HTTP/1.0, a query string, `Expect`, a chunked or encoded body, a duplicate of
a header the service reads, an oversized head or body, bytes that are not HTTP) hands the
connection to aiohttp's path for good, before the lane has taken a byte of that request:
aiohttp's connection (`_site.Connection`) is made on the transport and given every byte the
lane buffered, so it answers as it always did, 400s, 413s and 100-continue included.

What aiohttp's path guarantees holds here too:

- every wait has a deadline: the head (and what is left of a body the handler did not read)
  within the header timeout of connecting or of the previous answer, the body within the
  request's deadline (`Front._raw`, 408), the answer's write within the write timeout
  (`Connections.sweep` aborts the connection);
- the connection is counted by `Connections` (`opened`, `begin`, `writing`, `written`,
  `closed`), so the cap and the eviction of idle connections work the same;
- a client that goes away does not cancel its request: the handler runs to its end (a send
  that started finishes, and is in the outbox and the access log), as with aiohttp's server
  (`handler_cancellation` off); only the answer is dropped;
- shutdown (`Lanes.shutdown`): the listener is closed first (`_site.Site.stop`); an idle
  connection closes at once, a request in flight has the shutdown timeout to finish (then
  the rest of its body is cut off and it has the timeout again, as aiohttp does), then is
  cancelled; the answer says `Connection: close`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from multidict import MultiDict, MultiDictProxy

from wa_auth._cli import _codes
from wa_auth._cli._output import http_error
from wa_auth._cli._serve._connections import Connections
from wa_auth._cli._serve._http import Answer, Handler
from wa_auth._cli._serve._wire import HANDOVER, MAX_HEAD, Fields, Head, read_head

__all__ = ["Lane", "LaneRequest", "Lanes"]

#: aiohttp's reason phrases: the lane's status lines are the same bytes.
_REASONS: Final = {status.value: status.phrase for status in HTTPStatus}
_SERVER: Final = f"\r\nServer: {SERVER_SOFTWARE}".encode()
_NO_QUERY: Final[MultiDictProxy[str]] = MultiDictProxy(MultiDict())
_LOST: Final = "Connection lost"


@functools.lru_cache(maxsize=64)
def _mime(raw: str | None) -> str:
    """Return a Content-Type's media type as aiohttp's `request.content_type` does."""
    if raw is None:
        return "application/octet-stream"
    try:
        from aiohttp.helpers import parse_content_type
    except ImportError:  # pragma: no cover - aiohttp before 3.11 parsed it so, in its mixin
        from email.parser import HeaderParser

        return HeaderParser().parsestr(f"Content-Type: {raw}").get_content_type()
    return parse_content_type(raw)[0]


class _Date:
    """The `Date` header's bytes, made once a second (aiohttp does the same)."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = f"\r\nDate: {formatdate(now, usegmt=True)}".encode()
        return self._value


_date = _Date()


def answer_head(answer: Answer, length: int, close: bool) -> bytes:
    """Return the status line and headers of *answer*, as aiohttp's server writes them."""
    status = answer.status
    parts = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {answer.content_type}"]
    for name, value in answer.headers.items():
        parts.append(f"\r\n{name}: {value}")
    parts.append(f"\r\nContent-Length: {length}")
    head = "".join(parts).encode("utf-8", "surrogateescape") + _date() + _SERVER
    return head + (b"\r\nConnection: close\r\n\r\n" if close else b"\r\n\r\n")


class _Body:
    """A lane request's body: the part of aiohttp's `StreamReader` that `Front._raw` reads."""

    __slots__ = ("_data", "_error", "_waiter")

    def __init__(self) -> None:
        self._data: bytes | None = None
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def is_eof(self) -> bool:
        return self._data is not None or self._error is not None

    def exception(self) -> BaseException | None:
        return self._error

    def read_nowait(self) -> bytes:
        if self._error is not None:
            raise self._error
        return self._data or b""

    async def read(self) -> bytes:
        if not self.is_eof():
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.read_nowait()

    def arrived(self, data: bytes) -> None:
        self._data = data
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def failed(self, exc: BaseException) -> None:
        if self.is_eof():
            return
        self._error = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class LaneRequest:
    """A request the lane read: what serve's handlers read of aiohttp's `BaseRequest`.

    The handlers are typed on `web.BaseRequest`; this is the part of it they use (the whole
    serve suite runs over the lane), no more: no query (a query string goes to aiohttp's
    path), no `Expect`, no writer.
    """

    __slots__ = ("content", "head", "remote")

    def __init__(self, head: Head, remote: str | None) -> None:
        self.head = head
        self.remote = remote
        self.content = _Body()

    @property
    def method(self) -> str:
        return self.head.method

    @property
    def path(self) -> str:
        return self.head.path

    @property
    def headers(self) -> Fields:
        return self.head.headers

    @property
    def query(self) -> MultiDictProxy[str]:
        return _NO_QUERY

    @property
    def content_length(self) -> int | None:
        return self.head.length if "content-length" in self.head.headers else None

    @property
    def body_exists(self) -> bool:
        return self.head.length > 0

    @property
    def content_type(self) -> str:
        return _mime(self.head.headers.get("content-type"))

    async def read(self) -> bytes:
        return await self.content.read()


Route = tuple[str, Handler]


class Lanes:
    """What every lane shares: the routes, the service's wrapper, the fallback, the registry.

    Args:
        answer: `Front.answer`, the one wrapper of both paths.
        routes: `(method, path)` to the route's name and handler (`Service.routes`).
        unmatched: The route of any other request (a JSON 404 or 405).
        connections: The connections' registry (the cap, the write sweep).
        fallback: Makes aiohttp's connection (`_site.Connection`) for a connection the lane
            hands over; `_site.Site` sets it when None.
        max_body: The largest body, in bytes (a larger one goes to aiohttp's path: 413).
        header_timeout: Seconds a connection has to send a head, from its start or its
            previous answer.
    """

    def __init__(
        self,
        *,
        answer: Callable[[web.BaseRequest, str, Handler], Any],
        routes: Mapping[tuple[str, str], Route],
        unmatched: Route,
        connections: Connections,
        fallback: Callable[[], asyncio.Protocol] | None = None,
        max_body: int,
        header_timeout: float,
    ) -> None:
        self.answer = answer
        self.routes = dict(routes)
        self.unmatched = unmatched
        self.connections = connections
        self.fallback = fallback
        self.max_body = max_body
        self.header_timeout = header_timeout
        self.open: set[Lane] = set()
        #: Connections handed to aiohttp's path.
        self.handed_over = 0
        self.stopping = False

    def __call__(self) -> Lane:
        return Lane(self)

    def close_idle(self) -> None:
        """Shutting down: close every connection that has no request in flight."""
        self.stopping = True
        for lane in list(self.open):
            lane.close_if_idle()

    async def shutdown(self, timeout: float) -> None:
        """Let the requests in flight finish within *timeout*, then close every connection."""
        self.close_idle()
        await asyncio.gather(*(lane.shutdown(timeout) for lane in list(self.open)))


class Lane(asyncio.Protocol):
    """One connection on the lane, until it closes or is handed to aiohttp's path."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes
        self._connections = lanes.connections
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._buf = b""
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        # The request in flight (its head read), its body's bytes still to come, its task.
        self._request: LaneRequest | None = None
        self._missing = 0
        self._task: asyncio.Task[None] | None = None
        # What is left of a body its handler did not read: dropped as it arrives.
        self._skip = 0
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._closing = False

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP listener's
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        self._lanes.open.add(self)
        self._connections.opened(self)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        del exc  # a lost client is no error of the service's
        self._transport = None
        self._closing = True
        self._lanes.open.discard(self)
        self._connections.closed(self)
        self._disarm()
        if self._request is not None:
            # The handler is not cancelled (a send that started finishes); a body it waits
            # for fails, as aiohttp's payload does.
            self._request.content.failed(ConnectionResetError(_LOST))
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf = self._buf + data if self._buf else data
        request = self._request
        if request is None:
            self._next()
        elif self._missing and len(buf) >= self._missing:
            self._body_arrived()
        elif not self._missing and len(buf) > MAX_HEAD:
            self._pause_reading()  # pipelined requests wait for this one's answer

    # --- Connections ------------------------------------------------------------------------

    def aborted(self) -> bool:
        """Abort the connection, whatever it has buffered; False if it was already gone."""
        transport = self._transport
        self._closing = True
        if transport is None:
            return False
        transport.abort()
        return True

    # --- shutdown ---------------------------------------------------------------------------

    def close_if_idle(self) -> None:
        """Close the connection unless a request is in flight (shutting down)."""
        if self._request is None and self._transport is not None:
            self._close()

    async def shutdown(self, timeout: float) -> None:
        """Let the request in flight finish within *timeout*, then cancel it (as aiohttp does)."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait([task], timeout=timeout)
            if not task.done() and self._request is not None:
                self._request.content.failed(asyncio.CancelledError())
                await asyncio.wait([task], timeout=timeout)
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=timeout)
        if self._transport is not None:
            self._close()

    # --- reading ------------------------------------------------------------------------------

    def _arm(self) -> None:
        """Start the header timer: a head must arrive within the header timeout.

        One timer per connection, moved lazily (as aiohttp's keep-alive timer): when it fires
        before the deadline (a request came and was answered since), it is set again for it;
        while a request is in flight it does nothing (the request's own deadlines hold).
        """
        self._deadline = self._loop.time() + self._lanes.header_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._request is not None or self._transport is None:
            return  # re-armed after the answer
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expired)
            return
        self._close()

    def _close(self) -> None:
        self._closing = True
        self._disarm()
        if self._transport is not None:
            self._transport.close()

    def _pause_reading(self) -> None:
        if self._transport is not None and self._transport.is_reading():
            self._transport.pause_reading()

    def _next(self) -> None:
        """Read the next head from the buffer: begin its request, wait, or hand over."""
        if self._lanes.stopping:
            self._close()
            return
        head = read_head(self._buf, self._lanes.max_body)
        if head is None:
            return  # the header timer bounds the wait
        if head == HANDOVER:
            self._hand_over()
            return
        assert isinstance(head, Head)
        self._request = LaneRequest(head, self._remote)
        self._connections.begin(self)
        self._buf = self._buf[head.size :]
        self._missing = head.length
        if len(self._buf) >= head.length:
            self._body_arrived()
        self._task = self._loop.create_task(self._run(self._request))

    def _body_arrived(self) -> None:
        assert self._request is not None
        length, self._missing = self._missing, 0
        if length:
            body, self._buf = self._buf[:length], self._buf[length:]
            self._request.content.arrived(body)
        else:
            self._request.content.arrived(b"")
        if len(self._buf) > MAX_HEAD:
            self._pause_reading()  # pipelined requests wait for this one's answer

    def _hand_over(self) -> None:
        """Give the connection, and every byte the lane holds, to aiohttp's path."""
        transport = self._transport
        assert transport is not None
        self._disarm()
        self._closing = True
        self._lanes.open.discard(self)
        self._connections.closed(self)
        self._lanes.handed_over += 1
        fallback = self._lanes.fallback
        assert fallback is not None  # set by the site before it listens
        handler = fallback()
        buf, self._buf = self._buf, b""
        self._transport = None
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if buf:
            handler.data_received(buf)

    # --- answering ----------------------------------------------------------------------------

    async def _run(self, request: LaneRequest) -> None:
        try:
            await self._answer(request)
        except BaseException:
            # Cancelled by the shutdown after its timeout (or a bug): the connection goes,
            # whatever it had buffered, as aiohttp's does.
            self._request = None
            self._task = None
            if self._transport is not None:
                self._closing = True
                self._disarm()
                self._transport.abort()
            raise

    def _escaped(self, request: LaneRequest, exc: Exception) -> tuple[Answer, bytes]:
        """Return the 500 of an error that escaped `Front.answer`, as `Connection.handle_error`.

        It names the error's type only (its text may quote a secret), writes the access line,
        and closes the connection after it.
        """
        name = type(exc).__name__
        text = f"internal error (please report it): {name}"
        body = http_error(500, _codes.INTERNAL_CATEGORY, text, rule="serve/internal")
        self._connections.access(cast("web.BaseRequest", request), 500, body)
        return Answer(status=500, body=body, close=True), json.dumps(body).encode()

    async def _answer(self, request: LaneRequest) -> None:
        lanes = self._lanes
        route, handler = lanes.routes.get((request.method, request.path), lanes.unmatched)
        try:
            answer, data = await lanes.answer(cast("web.BaseRequest", request), route, handler)
        except Exception as exc:  # noqa: BLE001 - a bug's escape: a JSON 500, as aiohttp's path
            answer, data = self._escaped(request, exc)
        close = answer.close or request.head.close or lanes.stopping
        if self._missing:
            # The handler did not read the body: what is left of it is dropped as it comes,
            # within the header timeout (aiohttp's lingering read).
            self._skip = self._missing - len(self._buf)
            self._buf = b""
            self._missing = 0
        transport = self._transport
        if transport is not None and not self._closing:
            self._connections.writing(self)
            try:
                transport.write(answer_head(answer, len(data), close) + data)
                if self._paused and self._transport is not None:
                    self._drained = self._loop.create_future()
                    await self._drained  # the write sweep aborts a client that never reads
            finally:
                self._connections.written(self)
        self._request = None
        self._task = None
        if self._transport is None or self._closing:
            return
        if close:
            self._close()
            return
        self._arm()
        if not self._transport.is_reading():
            self._transport.resume_reading()
        if self._buf:
            self._next()
