"""The connections of `wa-auth serve`: every wait bounded, a cap on connections, no echo.

Left to its defaults, aiohttp's server keeps a connection that sent half a request for an hour
(its keep-alive timer), accepts connections until the process runs out of file descriptors
(then the listener stalls, and an authorised request waits in the kernel's backlog), waits
forever for a client that does not read its answer, and answers a request it cannot parse with
the parser's message, which quotes the bytes (an `Authorization` header with the API key, the
text of a message). Here:

- a connection must finish a request's headers within the header timeout of connecting or of
  its previous answer: aiohttp's keep-alive timer closes a connection that waits for a
  request, and one that sent half a request still waits for one;
- at most `cap` connections hold a descriptor, below the open-file limit: the listener
  accepts only when there is room (`Site`), and a connection waiting to be accepted at the
  cap closes the one that has waited longest for a request (what a slow client holds), or is
  answered 503 and closed when every connection is busy with a request. A slowloris can hold
  connections, but it cannot lock out a client that sends its request at once;
- an answer the client does not read within the write timeout aborts its connection
  (`Connections.sweep`, once a second);
- a request aiohttp cannot parse is answered with the CLI's JSON error, which names the kind
  of fault and quotes nothing, and logged as an access line.

A connection is busy from the moment its request's headers are read (aiohttp's request
factory, wrapped by `Site`) to the end of its answer (`Connection.finish_response`): no
middleware, which would cost every request more than all of this. The registry lives on the
event loop's thread: no lock, and nothing here awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Final, Literal

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

from wa_auth._cli import _codes
from wa_auth._cli._output import access_line, http_error, write
from wa_auth._cli._serve_http import JSON_TYPE

#: File descriptors kept for what is not a caller's connection: stdio, the listener, the
#: selector, the outbox's and the state's SQLite files (with their journals), DNS, Vault.
FD_RESERVE: Final = 64
#: The fewest connections worth serving; a lower file-descriptor limit refuses to start.
MIN_CONNECTIONS: Final = 8
#: A `connections` line is written at most this often while the cap is being enforced.
NOTE_INTERVAL: Final = 10.0
#: The route an access line names for a request aiohttp could not parse.
MALFORMED_ROUTE: Final = "malformed"
#: The most connections accepted in one turn of the event loop.
ACCEPT_BATCH: Final = 128
#: Seconds between two looks for answers their client does not read (the write bound's grain).
SWEEP: Final = 1.0

#: What each parse failure is called in the answer: the kind, never the bytes.
_FAULTS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (http_exceptions.LineTooLong, "a request line or header is too long"),
    (http_exceptions.BadStatusLine, "the request line is not HTTP/1.x"),
    (http_exceptions.InvalidHeader, "a header is malformed"),
    (http_exceptions.InvalidURLError, "the request target is malformed"),
    (http_exceptions.PayloadEncodingError, "the body's framing or encoding is malformed"),
)

_log = logging.getLogger("wa_auth.serve")

Decision = Literal["wait", "refuse"]


def _busy_answer() -> bytes:
    body = json.dumps(
        http_error(
            503,
            "transient",
            "every connection is busy with a request (--max-connections): try again",
            rule="serve/connections",
        )
    ).encode()
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {JSON_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
    )
    return head.encode() + body


#: The answer of a connection refused at the cap: written before the request is read.
BUSY: Final = _busy_answer()


def fd_limit() -> int | None:
    """Return the process's soft limit on open files, or None where there is none."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(requested: int, limit: int | None, client_pool: int) -> int:
    """Return how many connections serve accepts: *requested*, below the fd *limit*.

    Every connection is a file descriptor, and so is every connection of the client's pool to
    Meta (*client_pool*) and `FD_RESERVE` more; at the limit `accept()` fails and the
    listener stalls for everyone.

    Raises:
        ValueError: The limit leaves room for fewer than `MIN_CONNECTIONS`.
    """
    if limit is None:
        return requested
    room = limit - client_pool - FD_RESERVE
    if room < MIN_CONNECTIONS:
        raise ValueError(
            f"the open-file limit ({limit}) leaves room for {max(room, 0)} connections after "
            f"the client's pool ({client_pool}) and {FD_RESERVE} other files: raise it "
            "(ulimit -n)"
        )
    return min(requested, room)


def fault(exc: BaseException | None) -> str:
    """Return what is wrong with an unparsable request, by its exception's type only."""
    for kind, words in _FAULTS:
        if isinstance(exc, kind):
            return words
    return "the request is not valid HTTP/1.1"


class Connections:
    """The open connections: which wait for a request, which are busy, which are closing.

    Every connection holds a file descriptor from `accept()` until its transport is gone, so
    `in_use` counts the connections being set up and those closing too: at the cap,
    `make_room` closes the connection that has waited longest for a request, and the listener
    waits until its descriptor is free.

    Args:
        cap: The most connections holding a descriptor at once (`connection_cap`).
        write_timeout: Seconds a client has to read its answer, after which the connection
            is aborted.
        log: Where the `connections` and access lines go (stderr).
        monotonic: The interval clock of the notes.
        clock: The wall clock of the lines.
    """

    def __init__(
        self,
        cap: int,
        *,
        write_timeout: float,
        log: IO[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cap = cap
        self.write_timeout = write_timeout
        self._log = log
        self._monotonic = monotonic
        self._clock = clock
        # Insertion-ordered: the connection that has waited longest for a request is first.
        self._waiting: dict[Connection, None] = {}
        self._busy: set[Connection] = set()
        self._closing: set[Connection] = set()
        self._accepting: set[asyncio.Task[Any]] = set()
        # The connections writing an answer, and when they must have finished.
        self._writing: dict[Connection, float] = {}
        self._noted = -NOTE_INTERVAL
        #: Connections closed to make room for a new one, refused for want of room, and
        #: aborted because their client did not read the answer.
        self.evicted = 0
        self.refused = 0
        self.aborted = 0

    @property
    def open(self) -> int:
        """The connections open now (waiting for a request, or busy with one)."""
        return len(self._waiting) + len(self._busy)

    @property
    def in_use(self) -> int:
        """The descriptors the callers' connections hold: open, being set up, or closing."""
        return self.open + len(self._accepting) + len(self._closing)

    def has_room(self) -> bool:
        """Return whether one more connection fits under the cap now."""
        return self.in_use < self.cap

    def make_room(self) -> Decision:
        """At the cap, with a connection waiting to be accepted: say what to do with it.

        `wait` while a connection is closing (its descriptor is freed on the event loop's
        next turn), after closing the longest-waiting connection if none was closing yet.
        `refuse` when every connection is busy with a request: the new connection is
        answered 503 and closed at once.
        """
        if self._closing:
            return "wait"
        victim = next(iter(self._waiting), None)
        if victim is None:
            self.refused += 1
            self._note()
            return "refuse"
        self._abort(victim)
        self.evicted += 1
        self._note()
        return "wait"

    def accepting(self, task: asyncio.Task[Any]) -> None:
        """Count *task*, which sets up an accepted connection, until it is done."""
        self._accepting.add(task)
        task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[Any]) -> None:
        self._accepting.discard(task)
        if not task.cancelled():
            task.exception()  # asyncio closed the socket; nothing of it is logged

    def opened(self, conn: Connection) -> None:
        """Count *conn*, which now waits for its first request."""
        self._waiting[conn] = None

    def closed(self, conn: Connection) -> None:
        """Forget *conn*: its transport is gone, and its descriptor with it."""
        self._waiting.pop(conn, None)
        self._busy.discard(conn)
        self._closing.discard(conn)
        self._writing.pop(conn, None)

    def _abort(self, conn: Connection) -> None:
        # close() would wait to flush what the client does not read: abort() frees the socket
        # on the loop's next turn, whatever is buffered.
        self._waiting.pop(conn, None)
        self._busy.discard(conn)
        if conn.aborted():
            self._closing.add(conn)

    def begin(self, conn: Connection) -> None:
        """Mark *conn* busy: a request of it was read and is being handled."""
        if conn in self._waiting:
            del self._waiting[conn]
            self._busy.add(conn)

    def writing(self, conn: Connection) -> None:
        """Note that *conn* writes its answer: `sweep` aborts it after `write_timeout`."""
        self._writing[conn] = self._monotonic() + self.write_timeout

    def written(self, conn: Connection) -> None:
        """Mark *conn* waiting for its next request (last: it has waited least)."""
        self._writing.pop(conn, None)
        if conn in self._busy:
            self._busy.discard(conn)
            self._waiting[conn] = None

    def sweep(self) -> None:
        """Abort every connection whose client has not read its answer within `write_timeout`."""
        now = self._monotonic()
        stalled = [conn for conn, deadline in self._writing.items() if deadline <= now]
        for conn in stalled:
            del self._writing[conn]
            self._abort(conn)
            self.aborted += 1
        if stalled:
            self._note()

    def _note(self) -> None:
        """Write a `connections` line, at most once per `NOTE_INTERVAL` (the cap is working)."""
        now = self._monotonic()
        if now - self._noted < NOTE_INTERVAL:
            return
        self._noted = now
        write(
            {
                "event": "connections",
                "ts": round(self._clock(), 3),
                "open": self.open,
                "cap": self.cap,
                "evicted": self.evicted,
                "refused": self.refused,
                "aborted": self.aborted,
            },
            self._log or sys.stderr,
        )

    def access(self, request: web.BaseRequest, status: int, body: Mapping[str, Any]) -> None:
        """Write the access line of a request answered by `Connection.handle_error`."""
        write(
            access_line(
                ts=self._clock(),
                remote=request.remote,
                method="OTHER",
                route=MALFORMED_ROUTE,
                status=status,
                seconds=0.0,
                request_bytes=0,
                response_bytes=len(json.dumps(body).encode()),
                intents=0,
                exit_code=body.get("exit_code"),
                category=body.get("category"),
            ),
            self._log or sys.stderr,
        )


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
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._connections = connections
        self._options = dict(options)
        self._listeners: list[socket.socket] = []
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _connection(self) -> Connection:
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
                refuse = self._connections.make_room() == "refuse"
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
