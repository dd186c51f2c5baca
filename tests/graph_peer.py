"""A Graph API peer on 127.0.0.1 that answers every request with the bytes a test gives it.

The sandbox speaks Meta's literal payloads; this peer speaks what Meta (or a proxy in front of
it) might send on a bad day, such as an error message holding half of a UTF-16 surrogate pair.
Importable as `graph_peer` (`pythonpath = ["tests"]`).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Log nothing."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, body = self.server.reply
        self.server.hits += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - stdlib's names


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, reply: tuple[int, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply
        self.hits = 0


class Peer:
    """The running peer: its `base_url` and how many requests it answered (`hits`)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        host, port = server.server_address[:2]
        self.base_url = f"http://{host}:{port}"

    @property
    def hits(self) -> int:
        return self._server.hits


@contextmanager
def graph_peer(status: int, body: bytes) -> Iterator[Peer]:
    """Serve *status* and *body* to every request until the block ends."""
    server = _Server((status, body))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Peer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
