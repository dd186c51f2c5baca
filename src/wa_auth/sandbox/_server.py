"""The loopback HTTP/1.1 server: one thread per keep-alive connection, a deep listen backlog.

The stdlib's `socketserver` listens with a backlog of 5, which resets connections as soon as
a few hundred clients connect at once; this server asks for `LISTEN_BACKLOG`. Each answer is
written with a single `send` (headers and body together) and `TCP_NODELAY`, so keep-alive
clients do not wait on Nagle's algorithm and delayed ACKs.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import threading
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import attrs

from wa_auth.sandbox._admin import PREFIX, admin
from wa_auth.sandbox._catalogue import Reply, json_reply
from wa_auth.sandbox._pipeline import answer
from wa_auth.sandbox._wire import HttpRequest
from wa_auth.sandbox._world import World

__all__ = ["LISTEN_BACKLOG", "Server"]

#: The listen backlog; the kernel caps it at `net.core.somaxconn`.
LISTEN_BACKLOG: Final = 2048
#: Seconds an idle keep-alive connection is kept open.
IDLE_TIMEOUT: Final = 30.0
#: The largest request body accepted (media uploads included).
MAX_BODY: Final = 64 * 1024 * 1024


class Server(http.server.ThreadingHTTPServer):
    """A threading HTTP server bound to one `World`; `close()` also ends open connections."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = False  # `server_close()` joins the connection threads
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], world: World) -> None:
        self.world = world
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        self._closing = False
        #: Set by `close()`: a handler waiting out an injected latency stops waiting.
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> bool:
        """Register an open connection; False when the server is closing."""
        with self._live_lock:
            if self._closing:
                return False
            self._live.add(conn)
            return True

    def untrack(self, conn: socket.socket) -> None:
        """Forget a connection that is closing."""
        with self._live_lock:
            self._live.discard(conn)

    def close(self) -> None:
        """Stop accepting, end every open connection and join their threads."""
        self.stopping.set()
        self.shutdown()
        with self._live_lock:
            self._closing = True
            live = list(self._live)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()


_DIGITS: Final = re.compile(r"[0-9]{1,20}")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: The longest chunk-size or trailer line read, CRLF included.
_MAX_CHUNK_LINE: Final = 4096


class _BadBody(Exception):  # noqa: N818 - the handler's own signal, never raised out of it
    """The request body cannot be read; *status* 0 means the client is gone (no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not _HEX.fullmatch(size):
        raise _BadBody(400, "malformed chunked body: a chunk size is not hexadecimal")
    return int(size, 16)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wa-auth-sandbox"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True
    server: Server

    def setup(self) -> None:
        super().setup()
        if not self.server.track(self.connection):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Log nothing: requests are recorded by the sandbox, and URLs may carry tokens."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _body(self) -> bytes:
        """Read the request body (Content-Length or chunked).

        Raises:
            _BadBody: The framing is malformed (400) or the body too large (413).
        """
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not _DIGITS.fullmatch(raw):
            raise _BadBody(400, "Content-Length must be a number of bytes")
        length = int(raw)
        if length > MAX_BODY:
            raise _BadBody(413, "request body too large")
        body = self.rfile.read(length) if length > 0 else b""
        if len(body) < length:
            raise _BadBody(0, "the body ended early")
        return body

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = _chunk_size(self._line(_MAX_CHUNK_LINE))
            if size == 0:
                while self._line(_MAX_CHUNK_LINE).strip():  # trailers, ignored
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise _BadBody(413, "request body too large")
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _BadBody(0, "the body ended early")
            chunks.append(chunk)
            if self._line(_MAX_CHUNK_LINE) != b"\r\n":
                raise _BadBody(400, "malformed chunked body: a chunk is not followed by CRLF")

    def _line(self, limit: int) -> bytes:
        line = self.rfile.readline(limit + 1)
        if not line:
            raise _BadBody(0, "the body ended early")
        if len(line) > limit or not line.endswith(b"\n"):
            raise _BadBody(400, "malformed chunked body: a line is too long")
        return line

    def _dispatch(self) -> None:
        try:
            body = self._body()
        except _BadBody as bad:
            # The rest of the body cannot be framed: answer (unless the client is gone), close.
            self.close_connection = True
            if bad.status:
                self._write(json_reply(bad.status, {"error": {"message": bad.message}}))
            return
        split = urlsplit(self.path)
        req = HttpRequest(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        world = self.server.world
        if split.path == PREFIX or split.path.startswith(PREFIX + "/"):
            self._write(admin(world, req))
            return
        reply = answer(world, req, host=self.headers.get("Host"))
        # The latency is waited out on the server's stop event, so `close()` ends the wait.
        if reply.delay and self.server.stopping.wait(reply.delay):
            reply = attrs.evolve(reply, drop=True)
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        try:
            reason = HTTPStatus(reply.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {reply.status} {reason}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
            f"Date: {self.date_time_string()}",
            "Facebook-API-Version: v23.0",
        ]
        lines.extend(f"{name}: {value}" for name, value in reply.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head + reply.body)
