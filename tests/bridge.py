"""respx's routes on real sockets, for the stdlib transport (`http.client` is no httpx to mock).

`respx_bridge(router)` serves on 127.0.0.1 whatever *router* (the `respx_mock` fixture) answers:
each request that arrives is rebuilt as the `httpx.Request` it stands for (its scheme from the
listener it came to, its host from `Host`) and handed to the router, which records it and picks
the answer as for an httpx client. `reroute(client, bridge)` points a `transport="stdlib"`
client's new connections at the bridge, so the client tables of `tests/cases/client.py` run
unchanged over both transports. A route whose side effect raises (an httpx exception) drops
the connection without an answer. Importable as `bridge` (`pythonpath = ["tests"]`).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import respx

from wa_auth._client import _stdlib

_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Log nothing."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        scheme = self.server.scheme
        host = self.headers["Host"].removesuffix(":443" if scheme == "https" else ":80")
        url = f"{scheme}://{host}{self.path}"
        request = httpx.Request(self.command, url, headers=list(self.headers.items()), content=body)
        try:
            response = self.server.router.handler(request)
        except Exception:
            self.close_connection = True
            return
        content = response.content
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_DELETE = do_PUT = _answer  # noqa: N815 - stdlib's names


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, router: respx.Router, scheme: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.router = router
        self.scheme = scheme


class Bridge:
    """The running bridge: the port that stands for each scheme's origins."""

    def __init__(self, servers: dict[str, _Server]) -> None:
        self.ports = {scheme: server.server_address[1] for scheme, server in servers.items()}


@contextmanager
def respx_bridge(router: respx.Router) -> Iterator[Bridge]:
    """Serve *router*'s answers on loopback until the block ends."""
    servers = {scheme: _Server(router, scheme) for scheme in ("http", "https")}
    threads = [
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        for server in servers.values()
    ]
    for thread in threads:
        thread.start()
    try:
        yield Bridge(servers)
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(10)


def reroute(client: Any, bridge: Bridge) -> None:
    """Make a stdlib client's new connections, to any host, go to *bridge* in plain HTTP."""
    transport = client._transport
    assert isinstance(transport, _stdlib.StdlibTransport)

    def connection(scheme: str, host: str, port: int) -> Any:
        # The real host and port (the Host header), but the socket goes to the bridge.
        conn = _stdlib._HTTPConnection(host, port)
        where = ("127.0.0.1", bridge.ports[scheme])
        conn._create_connection = lambda _address, timeout, _source: socket.create_connection(  # type: ignore[attr-defined]
            where, timeout
        )
        return conn

    transport._connection = connection


def reroute_raw(client: Any, bridge: Bridge) -> None:
    """Make a `transport="raw"` fast client's new connections go to *bridge* in plain HTTP."""
    from wa_auth._client import _raw

    transport = client._raw
    assert isinstance(transport, _raw.RawTransport)
    channel = transport._channel

    async def rerouted(scheme: str, host: str, port: int) -> Any:
        return await channel("http", "127.0.0.1", bridge.ports[scheme])

    transport._channel = rerouted  # type: ignore[method-assign]
