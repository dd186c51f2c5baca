"""The listener and the connections of `wa-auth serve`: bounded and counted.

`Site` accepts a connection only when `Connections` (`_connections`) has room for it, and
gives it to serve's own lane (`_lane`, `--http lane`, the default), which hands any request it
does not take to aiohttp's connection; with `--http aiohttp`, to aiohttp's connection at once.
`Connection` is aiohttp's connection, counted there, bounded in its writes by its sweep, and
answering a request aiohttp cannot parse in JSON that quotes nothing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from wa_auth._cli import _codes
from wa_auth._cli._output import http_error
from wa_auth._cli._serve._connections import ACCEPT_BATCH, BUSY, REST, SWEEP, Connections, fault
from wa_auth._cli._serve._http import JSON_TYPE
from wa_auth._cli._serve._lane import Lane, Lanes

__all__ = ["Connection", "Site"]

_log = logging.getLogger("wa_auth.serve")


class Connection(RequestHandler):
    """aiohttp's connection, counted by `Connections` and answering its own errors in JSON."""

    def __init__(self, manager: web.Server, *, connections: Connections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._connections = connections
        # aiohttp drops its reference when it closes; the socket lives until it is flushed.
        self._socket: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)  # a TCP listener's
        self._socket = transport
        self._connections.opened(self)

    def aborted(self) -> bool:
        """Abort the connection, whatever it has buffered; False if it was already gone."""
        socket, self._socket = self._socket, None
        self.force_close()
        if socket is None:
            return False
        socket.abort()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connections.closed(self)
        super().connection_lost(exc)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """Write the answer; the connection is busy until then, and bounded by `sweep`.

        A stalled write is aborted by `Connections.sweep`: the transport's drain then fails
        with a connection error, which aiohttp takes as the client gone.
        """
        if request.content.exception() is not None:
            # A body that could not be decoded: what follows it on the connection is not a
            # request either, so it closes after the answer (aiohttp would read on and log).
            resp.force_close()
        self._connections.writing(self)
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._connections.written(self)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """Log an error of the server, but not the client's undecodable body (answered 400).

        After the answer, aiohttp reads what is left of the body and logs its decoding error
        as an "Unhandled exception": it is the client's fault, and its access line says so.
        """
        if not isinstance(kw.get("exc_info"), web.RequestPayloadError):
            super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request aiohttp could not parse (or a handler's escape) in JSON; quote nothing.

        aiohttp's own answer and log line carry the parser's *message*, which quotes the raw
        bytes; neither is used. The connection is closed after the answer, as aiohttp does.
        """
        del message  # the parser's message quotes the request's bytes
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun: no error answer can follow")
        if status < 500:
            category, words, rule = "invalid_request", fault(exc), "serve/http"
            text = f"malformed HTTP request: {words} (nothing of it is echoed or logged)"
        else:
            name = type(exc).__name__ if exc is not None else "no exception"
            category, rule = _codes.INTERNAL_CATEGORY, "serve/internal"
            text = f"internal error (please report it): {name}"
        body = http_error(status, category, text, rule=rule)
        self._connections.access(request, status, body)
        response = web.Response(
            body=json.dumps(body).encode(), status=status, headers={"Content-Type": JSON_TYPE}
        )
        response.force_close()
        return response


class Site(web.BaseSite):
    """A TCP listener that accepts a connection only when `Connections` has room for it.

    asyncio's own accept loop takes up to a backlog's worth of connections at a time, before
    any of them reaches a protocol, and at the open-file limit it logs and retries on every
    connection of the batch; here each `accept()` is decided first. The sockets are bound by
    `loop.create_server` (its address handling), which never serves: this site reads them.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        connections: Connections,
        options: Mapping[str, Any],
        lanes: Lanes | None = None,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._connections = connections
        self._options = dict(options)
        self._listeners: list[socket.socket] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._lanes = lanes
        if lanes is not None and lanes.fallback is None:
            lanes.fallback = self._aiohttp_connection

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _connection(self) -> Lane | Connection:
        """Return the protocol of an accepted connection: the lane's, else aiohttp's."""
        if self._lanes is not None:
            return self._lanes()
        return self._aiohttp_connection()

    def _aiohttp_connection(self) -> Connection:
        server = self._runner.server
        assert server is not None  # the runner is set up before the site starts
        return Connection(
            server,
            connections=self._connections,
            loop=asyncio.get_running_loop(),
            **self._options,
        )

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        web_server = self._runner.server
        assert web_server is not None  # the runner is set up before the site starts
        make = web_server.request_factory
        begin = self._connections.begin

        def request_factory(message: Any, payload: Any, conn: Any, writer: Any, task: Any) -> Any:
            # Called once a request's headers are read: from here to the end of its answer
            # the connection is busy, and no new connection closes it.
            begin(conn)
            return make(message, payload, conn, writer, task)

        web_server.request_factory = request_factory
        self._sweeper = loop.call_later(SWEEP, self._sweep)
        listening = await loop.create_server(
            self._connection, self._host, self._port, backlog=self._backlog, start_serving=False
        )
        self._server = listening
        for bound in listening.sockets:
            listener = bound.dup()
            listener.settimeout(0)
            listener.listen(self._backlog)
            self._listeners.append(listener)
            loop.add_reader(listener.fileno(), self._accept, listener)

    def _sweep(self) -> None:
        self._connections.sweep()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
            listener.close()
        self._listeners.clear()
        await super().stop()

    def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for turn in range(ACCEPT_BATCH):
            refuse = False
            if not self._connections.has_room():
                if turn:
                    return  # the listener is still readable on the next turn if one waits
                # Readable at the first turn: a connection waits in the kernel's queue.
                decision = self._connections.make_room()
                if decision == "rest":
                    loop.remove_reader(listener.fileno())
                    loop.call_later(REST, self._listen_again, listener)
                    return
                refuse = decision == "refuse"
                if not refuse:
                    return
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                # Out of descriptors all the same (another part of the process took them):
                # stop reading the listener for a second instead of failing in a loop.
                _log.error("accept() failed: listening again in 1 s", exc_info=exc)
                loop.remove_reader(listener.fileno())
                loop.call_later(1.0, self._listen_again, listener)
                return
            if refuse:
                _refuse(conn)
                return
            conn.settimeout(0)
            task = loop.create_task(loop.connect_accepted_socket(self._connection, conn))
            self._connections.accepting(task)

    def _listen_again(self, listener: socket.socket) -> None:
        if listener in self._listeners:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)


def _refuse(conn: socket.socket) -> None:
    """Answer a connection there is no room for with a 503, and close it at once.

    What the client has sent is read first (as much as has arrived): closing a socket with
    unread data resets the connection, and the client could lose the answer.
    """
    try:
        conn.settimeout(0)
        with contextlib.suppress(BlockingIOError):
            conn.recv(65536)
        conn.send(BUSY)
    except OSError:
        pass
    finally:
        conn.close()
