"""Loopback peers for the transports' real-socket tests: a Graph peer (plain or TLS), a proxy.

`peer(mode, tls=...)` answers every request with a send's success (or drops it, stays silent,
or closes after answering), and records what it saw; `proxy()` is a `CONNECT` proxy that
tunnels or refuses (407). `test_stdlib.py` and `test_raw.py` run the same checks on them.
Importable as `loopback_peers` (`pythonpath = ["tests"]`).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEND_OK = json.dumps({"messages": [{"id": "wamid.stdlib"}]}).encode()
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Peer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Log nothing."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        peer = self.server
        peer.requests.append((self.command, self.path, dict(self.headers)))
        if peer.mode == "drop":
            self.close_connection = True
            return
        if peer.mode == "silent":
            peer.release.wait(30)
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(SEND_OK)))
        self.end_headers()
        self.wfile.write(SEND_OK)
        if peer.mode == "close-after":  # closes without saying so: the client finds out later
            self.close_connection = True

    do_GET = do_POST = _answer  # noqa: N815 - stdlib's names


class _Peer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.connections = 0
        self.release = threading.Event()
        #: Set once the peer has closed a connection.
        self.closed = threading.Event()

    def get_request(self) -> tuple[Any, Any]:
        self.connections += 1
        return super().get_request()

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.set()


@contextmanager
def peer(mode: str = "ok", tls: ssl.SSLContext | None = None) -> Iterator[_Peer]:
    """A loopback Graph peer in *mode*; TLS with *tls* (a server context) when given."""
    server = _Peer(mode)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def url(server: _Peer, scheme: str = "http", host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{server.server_address[1]}"


class _Proxy:
    """A CONNECT proxy on loopback: records each request head, tunnels or refuses it."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.heads: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://user:p%40ss@127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._start(self._serve)

    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._start(self._tunnel, client)

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        self.heads.append(head.decode("latin-1"))
        if self.refuse:
            client.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
            )
            client.close()
            return
        target = head.split(b" ")[1].decode()
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        back.start()
        self._pipe(client, upstream)
        back.join(10)
        client.close()
        upstream.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


@contextmanager
def proxy(**kw: Any) -> Iterator[_Proxy]:
    p = _Proxy(**kw)
    try:
        yield p
    finally:
        p.close()
