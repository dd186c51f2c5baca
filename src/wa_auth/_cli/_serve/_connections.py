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
  cap closes the one that has waited longest for a request (what a slow client holds) once it
  has waited `EVICT_AFTER`, or is answered 503 and closed when every connection is busy with a
  request. A slowloris can hold connections, but it cannot lock out a client that sends its
  request at once, and a burst of clients that send at once is not closed for each other;
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
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Final, Literal, Protocol

from aiohttp import http_exceptions, web

from wa_auth._cli._output import access_line, http_error, write
from wa_auth._cli._serve._http import JSON_TYPE

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
#: Seconds a connection must have waited for a request before it may be closed for a new one:
#: a burst of clients that connect at once and send at once (n8n's HTTP Request node posting
#: 1,000 items) is not a slowloris, and closing its youngest connections would fail them.
EVICT_AFTER: Final = 0.25
#: Seconds the listener rests when the cap is reached and no connection may be closed yet.
REST: Final = 0.05

#: What each parse failure is called in the answer: the kind, never the bytes.
_FAULTS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (http_exceptions.LineTooLong, "a request line or header is too long"),
    (http_exceptions.BadStatusLine, "the request line is not HTTP/1.x"),
    (http_exceptions.InvalidHeader, "a header is malformed"),
    (http_exceptions.InvalidURLError, "the request target is malformed"),
    (http_exceptions.PayloadEncodingError, "the body's framing or encoding is malformed"),
)

_log = logging.getLogger("wa_auth.serve")

Decision = Literal["wait", "rest", "refuse"]


class Tracked(Protocol):
    """What `Connections` needs of a connection (`_site.Connection`): a way to abort it."""

    def aborted(self) -> bool:
        """Abort the connection, whatever it has buffered; False if it was already gone."""
        ...


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
        # Insertion-ordered: the connection that has waited longest for a request is first,
        # with the time it began to wait.
        self._waiting: dict[Tracked, float] = {}
        self._busy: set[Tracked] = set()
        self._closing: set[Tracked] = set()
        self._accepting: set[asyncio.Task[Any]] = set()
        # The connections writing an answer, and when they must have finished.
        self._writing: dict[Tracked, float] = {}
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
        `rest` when that connection has waited less than `EVICT_AFTER`: it is likely about to
        send its request, so the listener rests a moment instead. `refuse` when every
        connection is busy with a request: the new connection is answered 503 and closed at
        once.
        """
        if self._closing:
            return "wait"
        victim = next(iter(self._waiting), None)
        if victim is None:
            self.refused += 1
            self._note()
            return "refuse"
        if self._monotonic() - self._waiting[victim] < EVICT_AFTER:
            return "rest"
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

    def opened(self, conn: Tracked) -> None:
        """Count *conn*, which now waits for its first request."""
        self._waiting[conn] = self._monotonic()

    def closed(self, conn: Tracked) -> None:
        """Forget *conn*: its transport is gone, and its descriptor with it."""
        self._waiting.pop(conn, None)
        self._busy.discard(conn)
        self._closing.discard(conn)
        self._writing.pop(conn, None)

    def _abort(self, conn: Tracked) -> None:
        # close() would wait to flush what the client does not read: abort() frees the socket
        # on the loop's next turn, whatever is buffered.
        self._waiting.pop(conn, None)
        self._busy.discard(conn)
        if conn.aborted():
            self._closing.add(conn)

    def begin(self, conn: Tracked) -> None:
        """Mark *conn* busy: a request of it was read and is being handled."""
        if conn in self._waiting:
            del self._waiting[conn]
            self._busy.add(conn)

    def writing(self, conn: Tracked) -> None:
        """Note that *conn* writes its answer: `sweep` aborts it after `write_timeout`."""
        self._writing[conn] = self._monotonic() + self.write_timeout

    def written(self, conn: Tracked) -> None:
        """Mark *conn* waiting for its next request (last: it has waited least)."""
        self._writing.pop(conn, None)
        if conn in self._busy:
            self._busy.discard(conn)
            self._waiting[conn] = self._monotonic()

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
        """Write the access line of a request answered by `_site.Connection.handle_error`."""
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
