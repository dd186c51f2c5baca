"""serve's own HTTP/1.1 lane (`_lane`) on real sockets, in process, with stub routes.

Each test runs a `Lanes` listener on 127.0.0.1 with handlers it controls (one that waits on an
event, one that reads the body), aiohttp's server as the fallback, and raw sockets as clients:
the hand-over of every head the lane does not take (with the bytes it had buffered), pipelining,
every wait's deadline (a trickled head, a body that never ends, an answer never read), a client
that goes away mid-request (its handler is not cancelled), and the shutdown's draining. The
whole serve suite runs over the lane too (it is the default); `test_serve_lane_process.py`
compares its answers with aiohttp's, byte for byte.
"""

from __future__ import annotations

import asyncio

import pytest

from lanes import HARD, Stub, lane_server, post
from lanes import closed as _closed
from lanes import open_client as _open
from lanes import read_answer as _answer
from lanes import run_async as _run

# --- the lane and the hand-over -----------------------------------------------------------------


@_run
async def test_a_plain_request_is_answered_on_the_lane_and_the_connection_kept():
    stub = Stub()
    async with lane_server(stub) as (port, lanes, _):
        reader, writer = await _open(port)
        for body in (b"{}", b'{"a": 1}'):
            writer.write(post("/echo", body))
            status, fields, data = await _answer(reader)
            assert (status, data) == (200, str(len(body)).encode())
            assert "connection" not in fields
        writer.write(post("/echo", b"x", "Connection: close"))
        status, fields, _ = await _answer(reader)
        assert fields["connection"] == "close"
        assert await _closed(reader)
        assert lanes.handed_over == 0
    assert [s[2] for s in stub.seen] == [b"{}", b'{"a": 1}', b"x"]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            (
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                b"0\r\n\r\n"
            ),
            200,
        ),
        (b"POST /echo HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 200),
        (b"POST /echo?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 200),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            400,
        ),
        (b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 200),
    ],
    ids=["chunked", "http10", "query", "duplicate-length", "put"],
)
@_run
async def test_any_other_head_goes_to_aiohttp_with_every_buffered_byte(request_bytes, status):
    stub = Stub()
    async with lane_server(stub) as (port, lanes, _):
        reader, writer = await _open(port)
        writer.write(request_bytes)
        answered, _, data = await _answer(reader)
        assert answered == status
        if status == 200:
            assert data == b"aiohttp:3"
        assert lanes.handed_over == 1
        writer.close()
    assert stub.seen == []


@_run
async def test_pipelined_requests_are_answered_in_order_and_the_hand_over_waits_its_turn():
    stub = Stub()
    async with lane_server(stub) as (port, lanes, _):
        reader, writer = await _open(port)
        chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
        writer.write(post("/echo", b"1") + post("/echo", b"22") + chunked + post("/echo", b"333"))
        answers = [(await _answer(reader))[2] for _ in range(4)]
        assert answers == [b"1", b"2", b"aiohttp:2", b"aiohttp:3"]
        assert lanes.handed_over == 1
        writer.close()
    assert [s[2] for s in stub.seen] == [b"1", b"22"]


@_run
async def test_a_body_split_anywhere_and_half_an_emoji_arrive_whole():
    stub = Stub()
    body = '{"t": "😀"}'.encode()
    async with lane_server(stub) as (port, _, _):
        reader, writer = await _open(port)
        raw = post("/echo", body)
        for i in range(len(raw)):
            writer.write(raw[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)
        assert (await _answer(reader))[2] == str(len(body)).encode()
        writer.close()
    assert stub.seen[0][2] == body


@_run
async def test_bad_header_bytes_and_an_oversize_head_go_to_aiohttp():
    stub = Stub()
    async with lane_server(stub) as (port, lanes, _):
        for raw in (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: na\xc3\xafve\r\nContent-Length: 0\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
        ):
            reader, writer = await _open(port)
            writer.write(raw)
            status, _, _ = await _answer(reader)
            assert status in {200, 400, 431}  # aiohttp's path decides, as before the lane
            writer.close()
        assert lanes.handed_over == 2
    assert stub.seen == []


# --- every wait has a deadline ------------------------------------------------------------------


@_run
async def test_a_trickled_head_is_closed_at_the_header_timeout():
    stub = Stub()
    async with lane_server(stub, header_timeout=0.3) as (port, _, connections):
        reader, writer = await _open(port)
        writer.write(b"POST /echo HTTP/1.1\r\nHo")
        assert await _closed(reader)
        assert connections.open == 0
    assert stub.seen == []


@_run
async def test_an_idle_keep_alive_connection_is_closed_at_the_header_timeout():
    stub = Stub()
    async with lane_server(stub, header_timeout=0.3) as (port, _, _):
        reader, writer = await _open(port)
        writer.write(post("/echo", b"1"))
        await _answer(reader)
        assert await _closed(reader)


@_run
async def test_a_body_that_never_ends_gets_its_handlers_408_and_the_connection_closes():
    stub = Stub()
    async with lane_server(stub, header_timeout=0.3) as (port, _, _):
        reader, writer = await _open(port)
        writer.write(
            post("/echo", b"")[:-2].replace(b"Content-Length: 0", b"Content-Length: 10")
            + b"\r\n\r\nabc"
        )
        status, fields, _ = await _answer(reader)
        assert (status, fields["connection"]) == (408, "close")
        assert await _closed(reader)


@_run
async def test_a_body_no_handler_read_is_skipped_and_the_next_request_answered():
    stub = Stub()
    async with lane_server(stub) as (port, _, _):
        reader, writer = await _open(port)
        writer.write(b"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
        assert (await _answer(reader))[0] == 200
        writer.write(b"def" + post("/echo", b"12"))
        assert (await _answer(reader))[2] == b"2"
        writer.close()
    assert stub.seen[-1] == ("POST", "/echo", b"12")


@_run
async def test_an_answer_the_client_never_reads_is_aborted_by_the_sweep():
    stub = Stub()
    stub.big = True
    async with lane_server(stub, write_timeout=0.2) as (port, _, connections):
        reader, writer = await _open(port)
        writer.write(post("/echo", b"1"))
        for _ in range(200):
            await asyncio.sleep(0.05)
            connections.sweep()
            if connections.aborted:
                break
        assert connections.aborted == 1
        assert await _closed(reader)
        writer.close()


# --- a client that goes away, and the shutdown ----------------------------------------------------


@_run
async def test_a_client_gone_mid_request_does_not_cancel_its_handler():
    stub = Stub()
    stub.hold = asyncio.Event()
    async with lane_server(stub) as (port, _, _):
        _reader, writer = await _open(port)
        writer.write(post("/hold", b"abc"))
        await asyncio.sleep(0.1)
        writer.transport.abort()
        await asyncio.sleep(0.1)
        stub.hold.set()
        for _ in range(100):
            if stub.finished:
                break
            await asyncio.sleep(0.02)
    assert stub.finished == ["/hold"]
    assert stub.cancelled == 0


@_run
async def test_a_client_gone_mid_body_fails_the_read_and_the_handler_ends():
    stub = Stub()
    async with lane_server(stub) as (port, _, _):
        _reader, writer = await _open(port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(0.1)
        writer.transport.abort()
        for _ in range(100):
            if stub.finished:
                break
            await asyncio.sleep(0.02)
    assert stub.seen == [("POST", "/echo", b"<lost>")]


@_run
async def test_shutdown_closes_idle_connections_and_lets_a_request_in_flight_finish():
    stub = Stub()
    stub.hold = asyncio.Event()
    async with lane_server(stub) as (port, lanes, _):
        idle_reader, _idle_writer = await _open(port)
        busy_reader, busy_writer = await _open(port)
        busy_writer.write(post("/hold", b"abc"))
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(lanes.shutdown(5.0))
        assert await _closed(idle_reader)
        stub.hold.set()
        status, fields, data = await _answer(busy_reader)
        assert (status, data, fields["connection"]) == (200, b"3", "close")
        await asyncio.wait_for(stopping, HARD)
        assert await _closed(busy_reader)
    assert stub.cancelled == 0


@_run
async def test_shutdown_cancels_a_request_still_running_after_the_timeout():
    stub = Stub()
    stub.hold = asyncio.Event()
    async with lane_server(stub) as (port, lanes, _):
        reader, writer = await _open(port)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.1)
        await asyncio.wait_for(lanes.shutdown(0.1), HARD)
        assert await _closed(reader)
    assert stub.cancelled == 1


@_run
async def test_the_connections_are_counted_busy_while_a_request_runs():
    stub = Stub()
    stub.hold = asyncio.Event()
    async with lane_server(stub) as (port, _, connections):
        reader, writer = await _open(port)
        await asyncio.sleep(0.05)
        assert (len(connections._waiting), len(connections._busy)) == (1, 0)
        writer.write(post("/hold", b"a"))
        await asyncio.sleep(0.1)
        assert (len(connections._waiting), len(connections._busy)) == (0, 1)
        assert connections.make_room() == "refuse" or connections.cap > 1
        stub.hold.set()
        await _answer(reader)
        assert (len(connections._waiting), len(connections._busy)) == (1, 0)
        writer.close()
        await asyncio.sleep(0.05)
        assert connections.open == 0


@pytest.mark.parametrize(
    "value",
    [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/vnd.api+json",
        "text/plain",
        "",
        "json",
        "application/json, text/plain",
        'application/json; charset="utf-8"; x=1',
    ],
)
def test_the_lanes_content_type_is_aiohttps(value):
    from aiohttp.test_utils import make_mocked_request

    from wa_auth._cli._serve._lane import _mime

    expected = make_mocked_request("POST", "/send", headers={"Content-Type": value}).content_type
    assert _mime(value) == expected


@_run
async def test_many_pipelined_requests_pause_the_reading_and_are_all_answered_in_order():
    stub = Stub()
    async with lane_server(stub) as (port, _, _):
        reader, writer = await _open(port)
        bodies = [b"x" * (i % 50 + 1) for i in range(400)]
        writer.write(b"".join(post("/echo", body) for body in bodies))
        answers = [(await _answer(reader))[2] for _ in bodies]
        assert answers == [str(len(body)).encode() for body in bodies]
    assert [s[2] for s in stub.seen] == bodies
