"""serve's lane on real sockets, in process: a stub service, aiohttp's fallback, raw clients.

Shared by the lane's tests (`test_serve_lane_review.py`; `test_serve_lane.py` holds the same
code, to be moved here): `lane_server` runs a `Lanes` listener on 127.0.0.1 with a `Stub`
service (a handler that may be held, one that reads the body), aiohttp's server as the
fallback; `open_client`, `read_answer`, `post` and `closed` are the client's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from wa_auth._cli._serve._connections import Connections
from wa_auth._cli._serve._http import Answer
from wa_auth._cli._serve._lane import Lanes

HARD = 10.0


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a loop of its own (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 60))

    return run


MAX_BODY = 4096


class Stub:
    """The service's side: what each request was, and a handler that may be held."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes | None]] = []
        self.hold: asyncio.Event | None = None
        self.finished: list[str] = []
        self.cancelled = 0
        self.big = False

    async def answer(self, request: Any, route: str, handler: Any) -> tuple[Answer, bytes]:
        del handler
        try:
            if self.hold is not None and route == "/hold":
                await self.hold.wait()
            body: bytes | None = None
            if route in {"/echo", "/hold"} and request.body_exists:
                try:
                    body = await asyncio.wait_for(request.read(), 1.0)
                except asyncio.TimeoutError:
                    answer = Answer(status=408, body={"ok": False}, close=True)
                    return answer, b'{"ok": false}'
                except ConnectionResetError:
                    body = b"<lost>"
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.seen.append((request.method, request.path, body))
        self.finished.append(route)
        data = b"%d" % len(body or b"")
        if self.big:
            data = b"x" * (16 << 20)  # more than the socket buffers hold
        return Answer(body=data, content_type="text/plain"), data


async def _aiohttp_handler(request: web.BaseRequest) -> web.StreamResponse:
    body = await request.read()
    return web.Response(body=b"aiohttp:%d" % len(body), content_type="text/plain")


@contextlib.asynccontextmanager
async def lane_server(
    stub: Stub, *, header_timeout: float = 5.0, write_timeout: float = 5.0
) -> AsyncIterator[tuple[int, Lanes, Connections]]:
    loop = asyncio.get_running_loop()
    connections = Connections(16, write_timeout=write_timeout, log=io.StringIO())
    fallback = web.Server(_aiohttp_handler)
    routes = {("POST", p): (p, None) for p in ("/echo", "/hold")}
    routes[("GET", "/hold")] = ("/hold", None)
    lanes = Lanes(
        answer=stub.answer,
        routes=routes,  # type: ignore[arg-type]
        unmatched=("unmatched", None),  # type: ignore[arg-type]
        connections=connections,
        fallback=fallback,
        max_body=MAX_BODY,
        header_timeout=header_timeout,
    )
    server = await loop.create_server(lanes, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, lanes, connections
    finally:
        while _WRITERS:
            _WRITERS.pop().transport.abort()
        server.close()
        await lanes.shutdown(1.0)
        await fallback.shutdown(1.0)


_WRITERS: list[asyncio.StreamWriter] = []


async def open_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _WRITERS.append(writer)  # closed by `lane_server` on the way out
    return reader, writer


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HARD)
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields[name.lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(fields["content-length"])), HARD)
    return int(lines[0].split()[1]), fields, body


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + "".join(f"{e}\r\n" for e in extra) + "\r\n").encode() + body


async def closed(reader: asyncio.StreamReader) -> bool:
    """Return True once the server closed the connection (after whatever it had sent)."""
    with contextlib.suppress(ConnectionResetError):
        await asyncio.wait_for(reader.read(), HARD)
    return reader.at_eof() or reader.exception() is not None
