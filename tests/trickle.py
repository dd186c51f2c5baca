"""A trickling peer: a loopback HTTP server that answers, then sends its body one byte at a time.

`TricklePeer` listens on 127.0.0.1. To every request it sends a status line and headers that
promise a body (`Content-Length`), then one body byte every *interval* seconds, so no single
read ever waits long enough for a read timeout while the answer never completes. It stands in
for a stalled proxy in front of the Graph API or Vault. `stop()` closes every connection, which
also ends a client still reading, so a test that failed to bound its wait still finishes.

Importable as `trickle` (`pythonpath = ["tests"]`); `python tests/trickle.py` measures how long
each client and the CLI take against one (the figures in the deadline's report).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from typing_extensions import Self

BODY_LENGTH = 100_000


class TricklePeer:
    """A loopback server whose answers arrive one body byte every *interval* seconds.

    Args:
        interval: Seconds between two body bytes.
        status: The status line's code (200: a Graph send that seems to succeed).
        body: The answer that trickles; by default a JSON object padded to `BODY_LENGTH`.
        headers_first: Send the status line and headers at once (True), or trickle them too.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        status: int = 200,
        body: bytes | None = None,
        headers_first: bool = True,
    ) -> None:
        self.interval = interval
        self.status = status
        self.body = b"{" + b" " * (BODY_LENGTH - 2) + b"}" if body is None else body
        self.headers_first = headers_first
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        #: The request lines received, in order (`POST /v23.0/1/messages HTTP/1.1`).
        self.requests: list[str] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> Self:
        """Start accepting connections."""
        self._accepter.start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop, and close every connection (a client still reading sees the end)."""
        self._stop.set()
        self._server.close()
        with self._lock:
            for conn in self._conns:
                _close(conn)
            threads = list(self._threads)
        for t in threads:
            t.join(10)
        self._accepter.join(10)

    def _accept(self) -> None:
        self._server.settimeout(0.1)  # a blocked accept() would outlive close(): look up often
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._conns.append(conn)
                self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = _read_head(conn)
            if head is None:
                return
            with self._lock:
                self.requests.append(head.split("\r\n", 1)[0])
            status = (
                f"HTTP/1.1 {self.status} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            ).encode()
            if self.headers_first:
                conn.sendall(status)
                body = self.body
            else:
                body = status + self.body
            for i in range(len(body)):
                if self._stop.wait(self.interval):
                    return
                conn.sendall(body[i : i + 1])
        except OSError:
            return
        finally:
            _close(conn)


def _read_head(conn: socket.socket) -> str | None:
    """Read the request up to the end of its headers (the body is not needed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data.decode("latin-1")


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def timed(call: Any, limit: float) -> tuple[float, Any]:
    """Run *call* in a thread; return (seconds taken, its result or exception).

    A call still running after *limit* seconds is reported as `TimeoutError` (the peer's
    `stop()` then ends it): the hang guard of the tests, not a timing claim.
    """
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # handed back to the test
            out.append(exc)

    started = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    took = time.monotonic() - started
    if t.is_alive():
        return took, TimeoutError(f"still running after {limit:g} s")
    return took, out[0]
