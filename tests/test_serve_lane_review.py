"""A hostile review of serve's HTTP/1.1 lane (`_lane`): smuggling, splits, limits, escapes.

On real sockets, in process, with the stub service and aiohttp fallback of `lanes` (tests/lanes.py):
every head the lane must not take (the ambiguous framings a smuggler uses) goes to aiohttp's
path before the lane took a byte of it; a head that cannot end (a bare LF or CR) is answered by
aiohttp at once instead of waiting out the header timeout; any split of a pipelined stream (on
and off the lane) gives the same answers as the whole; random bytes never break the listener;
an error that escapes the service's wrapper is a JSON 500 that quotes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanes import MAX_BODY, Stub, closed, lane_server, open_client, post, read_answer, run_async
from wa_auth._cli._serve._wire import MAX_FIELDS, MAX_HEAD

SMUGGLED = post("/echo", b"SMUGGLED")

# --- the heads the lane must not take -------------------------------------------------------------


AMBIGUOUS = {
    "cl-and-te": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "te-and-cl": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "duplicate-cl": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\n",
    "cl-list": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 0\r\n\r\n",
    "cl-plus": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n",
    "cl-space-before-colon": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\n",
    "obs-fold": b"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Content-Length: 4\r\n\r\n",
    "nul-in-value": b"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "cr-in-value": b"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: a\rContent-Length: 4\r\n\r\n",
    "absolute-form": b"POST http://x/echo HTTP/1.1\r\nHost: x\r\n\r\n",
    "expect": b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    "http10-keep-alive": b"POST /echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    "two-hosts": b"POST /echo HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "no-host": b"POST /echo HTTP/1.1\r\n\r\n",
    "connection-list": b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
    "too-many-fields": (b"POST /echo HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * MAX_FIELDS + b"\r\n"),
    "over-max-head": b"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * MAX_HEAD + b"\r\n\r\n",
    "over-max-body": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
        + b"x" * (MAX_BODY + 1)
    ),
}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
@run_async
async def test_an_ambiguous_head_goes_to_aiohttp_before_the_lane_takes_a_byte(name):
    stub = Stub()
    async with lane_server(stub) as (port, lanes, _):
        reader, writer = await open_client(port)
        writer.write(AMBIGUOUS[name] + SMUGGLED)
        await read_answer(reader)  # aiohttp's, whatever it decides
        await asyncio.sleep(0.05)
        assert lanes.handed_over == 1
        writer.close()
    assert stub.seen == []  # the lane read no request of that stream, smuggled or not


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /hold HTTP/1.1\nHost: x\n\n",
        b"GET /hold HTTP/1.1\r\nHost: x\n\n",
        b"GET /hold HTTP/1.1\r\nHost: x\r\nX-A: b\n\r\n",
        b"GET /hold HTTP/1.1\rHost: x\r\r",
        b"GET /hold HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n",
    ],
    ids=["lf", "lf-after-the-line", "lf-in-a-field", "cr", "cr-in-an-unfinished-field"],
)
@run_async
async def test_a_head_with_a_bare_lf_or_cr_is_answered_by_aiohttp_at_once(request_bytes):
    """aiohttp answers such a head (400) at once; the lane must not wait for its blank line."""
    stub = Stub()
    async with lane_server(stub, header_timeout=30.0) as (port, lanes, _):
        reader, writer = await open_client(port)
        writer.write(request_bytes)
        status, _, _ = await read_answer(reader)  # HARD (10 s) is well below the header timeout
        assert status == 400
        assert lanes.handed_over == 1
        writer.close()
    assert stub.seen == []


@run_async
async def test_a_head_at_the_limits_is_the_lanes():
    stub = Stub()
    async with lane_server(stub) as (port, lanes, _):
        reader, writer = await open_client(port)
        fields = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
        fields += b"a: b\r\n" * (MAX_FIELDS - 2)
        writer.write(fields + b"\r\nA")
        assert (await read_answer(reader))[2] == b"1"
        base = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nX-A: "
        head = base + b"a" * (MAX_HEAD - len(base) - 4) + b"\r\n\r\n"
        assert len(head) == MAX_HEAD
        writer.write(head + b"B")
        assert (await read_answer(reader))[2] == b"1"
        writer.close()
        assert lanes.handed_over == 0
    assert [s[2] for s in stub.seen] == [b"A", b"B"]


# --- splits: any segmentation gives the same answers ------------------------------------------------


_CHUNKED = (
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\xf0\x9f\x98\x80\r\n"
    b"0\r\n\r\n"
)
_STREAM = (
    post("/echo", '{"t": "😀"}'.encode())
    + b"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"  # a body no one reads
    + post("/echo", b"")
    + _CHUNKED
    + post("/echo", b"after")
)
_EXPECTED = [b"13", b"0", b"0", b"aiohttp:4", b"aiohttp:5"]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(1, len(_STREAM) - 1), max_size=12, unique=True))
def test_any_split_of_a_pipelined_stream_gives_the_same_answers(cuts):
    bounds = [0, *sorted(cuts), len(_STREAM)]
    pieces = [_STREAM[a:b] for a, b in itertools.pairwise(bounds)]

    async def exchange() -> tuple[list[bytes], Stub, int]:
        stub = Stub()
        async with lane_server(stub) as (port, lanes, _):
            reader, writer = await open_client(port)
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.001)
            answers = [(await read_answer(reader))[2] for _ in _EXPECTED]
            writer.close()
            return answers, stub, lanes.handed_over

    answers, stub, handed_over = asyncio.run(asyncio.wait_for(exchange(), 60))
    assert answers == _EXPECTED
    assert handed_over == 1
    # The unread body of the unmatched route and the empty one are never read: None.
    assert [s[2] for s in stub.seen] == ['{"t": "😀"}'.encode(), None, None]


_TOKENS = [
    b"GET /",
    b"POST /",
    b"echo",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"Host: x",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"0",
    b"7",
    b"99999999999999999999",
    b":",
    b" ",
    b"\t",
    b"\x00",
    b"\xff",
    b"\xc3",
]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    garbage=st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=8)), max_size=30).map(
        b"".join
    )
)
def test_random_head_bytes_never_break_the_connection_or_the_listener(garbage):
    errors: list[dict[str, Any]] = []

    async def exchange() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        stub = Stub()
        async with lane_server(stub, header_timeout=0.5) as (port, lanes, connections):
            reader, writer = await open_client(port)
            writer.write(garbage)
            await asyncio.sleep(0.05)
            if not lanes.handed_over:
                assert await closed(reader)  # answered or not, within the header timeout
            writer.close()
            reader, writer = await open_client(port)
            writer.write(post("/echo", b"ok"))
            assert (await read_answer(reader))[2] == b"2"
            writer.close()
            await asyncio.sleep(0.05)
            assert connections.open == 0

    asyncio.run(asyncio.wait_for(exchange(), 60))
    assert errors == []


# --- an error escaping the service's wrapper ---------------------------------------------------------


@run_async
async def test_an_error_escaping_the_wrapper_is_a_json_500_that_quotes_nothing():
    """As aiohttp's path (`_site.Connection.handle_error`): a 500 in JSON, the connection closed."""
    stub = Stub()

    async def escape(request: Any, route: str, handler: Any) -> Any:
        del request, route, handler
        raise RuntimeError("sk-secret-in-the-message")

    stub.answer = escape  # type: ignore[method-assign]
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
    async with lane_server(stub) as (port, lanes, _):
        reader, writer = await open_client(port)
        writer.write(post("/echo", b"1") + post("/echo", b"2"))
        status, fields, data = await read_answer(reader)
        assert (status, fields["connection"]) == (500, "close")
        assert fields["content-type"].startswith("application/json")
        assert b"secret" not in data
        assert json.loads(data)["category"] == "internal"
        assert await closed(reader)
        assert lanes.handed_over == 0
    assert errors == []


# --- the shutdown with requests pipelined behind the one in flight ------------------------------


@run_async
async def test_shutdown_answers_the_request_in_flight_and_runs_none_behind_it():
    stub = Stub()
    stub.hold = asyncio.Event()
    async with lane_server(stub) as (port, lanes, connections):
        reader, writer = await open_client(port)
        writer.write(post("/hold", b"abc") + post("/echo", b"behind"))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(lanes.shutdown(5.0))
        await asyncio.sleep(0.05)
        stub.hold.set()
        status, fields, data = await read_answer(reader)
        assert (status, data, fields["connection"]) == (200, b"3", "close")
        await asyncio.wait_for(stopping, 10)
        assert await closed(reader)
        assert connections.open == 0
    assert [s[2] for s in stub.seen] == [b"abc"]
