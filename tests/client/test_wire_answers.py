"""The HTTP/1.1 answer readers of `_wire`: `read_answer` on a loopback socket, `AnswerParser` fed.

Both must read an answer alike (the property tests in `test_raw.py` compare them); each case here
runs against both.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import struct
import threading
from typing import TYPE_CHECKING

import pytest

from wa_auth._client._base import Timeouts
from wa_auth._client._raw import RawTransport
from wa_auth._client._wire import AnswerParser, read_answer
from wa_auth._core import Request
from wa_auth.errors import TransportError
from wa_auth.providers._base import Token

if TYPE_CHECKING:
    from wa_auth._client._wire import Answer


def _over_socket(pieces: list[bytes], method: str = "GET") -> Answer:
    """`read_answer` on a real loopback connection whose peer sends *pieces*, then closes."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname()[:2])
        peer, _ = server.accept()

        def send() -> None:
            # The reader may refuse the answer and close before all of it is sent: a reset.
            with peer, contextlib.suppress(OSError):
                for piece in pieces:
                    peer.sendall(piece)
                peer.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            with client:
                return read_answer(client, 5.0, method)
        finally:
            sender.join(5)


def _fed(pieces: list[bytes], method: str = "GET", *, error: bool = False) -> Answer:
    """`AnswerParser` fed *pieces*; then the peer closes (with an *error* or not)."""
    parser = AnswerParser(method)
    for piece in pieces:
        answer = parser.feed(piece)
        if answer is not None:
            return answer
    return parser.end(error) if error else parser.end()


READERS = pytest.mark.parametrize("read", [_over_socket, _fed], ids=["read_answer", "parser"])


# --- interim (1xx) answers --------------------------------------------------------------------


@READERS
@pytest.mark.parametrize("interim", [b"100 Continue", b"102 Processing", b"103 Early Hints"])
def test_every_interim_answer_is_skipped(read, interim):
    head = b"HTTP/1.1 %s\r\nLink: </a>\r\n\r\n" % interim
    answer = read([head, head, b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nanswer-1"])
    assert (answer.status, answer.body, answer.will_close) == (200, b"answer-1", False)


@READERS
def test_switching_protocols_is_refused(read):
    with pytest.raises(http.client.HTTPException):
        read([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"])


@READERS
@pytest.mark.parametrize(
    ("status", "method", "framing", "will_close"),
    [
        (204, "POST", b"Content-Length: 5\r\n", True),
        (304, "GET", b"Transfer-Encoding: chunked\r\n", True),
        (200, "HEAD", b"Content-Length: 5\r\n", True),
        (204, "POST", b"Content-Length: 0\r\n", False),
        (200, "HEAD", b"", False),
    ],
)
def test_a_bodyless_answer_announcing_a_body_is_not_reused(
    read, status, method, framing, will_close
):
    answer = read([b"HTTP/1.1 %d X\r\n%s\r\n" % (status, framing)], method)
    assert (answer.status, answer.body, answer.will_close) == (status, b"", will_close)


# --- the limits of a head: interim heads and trailers count ------------------------------------


@READERS
def test_a_flood_of_continues_passes_the_head_limit(read):
    continues = [b"HTTP/1.1 100 Continue\r\n\r\n"] * 3000  # 75,000 bytes, one head at a time
    with pytest.raises(http.client.HTTPException):
        read([*continues, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])


@READERS
@pytest.mark.parametrize(
    "trailers",
    [[b"X-T: 1\r\n"] * 101, [b"X-T: " + b"t" * 40000 + b"\r\n"] * 2],
    ids=["lines", "bytes"],
)
def test_trailers_are_under_the_limits_of_a_head(read, trailers):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
    with pytest.raises(http.client.HTTPException):
        read([head, *trailers, b"\r\n"])


@READERS
def test_trailers_within_the_limits_are_skipped(read):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
    answer = read([head, *[b"X-T: 1\r\n"] * 100, b"\r\n"])
    assert (answer.status, answer.body, answer.will_close) == (200, b"ok", False)


# --- a large chunk in small pieces --------------------------------------------------------------


def test_a_large_chunk_in_small_pieces_is_streamed():
    """Each piece of a chunk's data is taken as it comes: none is kept back to be joined again."""
    size = 4 * 1024 * 1024
    piece = bytes(range(256)) * 16  # 4 KiB
    parser = AnswerParser("GET")
    assert (
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % size) is None
    )
    for _ in range(size // len(piece)):
        assert parser.feed(piece) is None
        assert not parser.buffer  # before: the chunk so far, copied again on every piece
    answer = parser.feed(b"\r\n0\r\n\r\n")
    assert answer is not None
    assert answer.body == piece * (size // len(piece))
    assert not answer.will_close


@READERS
def test_a_chunked_body_cut_anywhere(read):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n"
    answer = read([raw[i : i + 1] for i in range(len(raw))])
    assert (answer.body, answer.will_close) == (b"abc0123456789", False)


# --- framing: Content-Length, Transfer-Encoding, numbers --------------------------------------


@READERS
def test_a_repeated_content_length_of_one_value_is_that_length(read):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
    answer = read([raw])
    assert (answer.body, answer.will_close) == (b"ok", False)


@READERS
@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 2\r\nContent-Length: 3\r\n",
        b"Content-Length: 2, 3\r\n",
        b"Content-Length: 1_0\r\n",
        b"Content-Length: +2\r\n",
        b"Content-Length: -2\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: chunked, gzip\r\n",
        b"Transfer-Encoding: gzip\r\n",
    ],
)
def test_a_framing_we_cannot_trust_is_refused(read, framing):
    with pytest.raises(http.client.HTTPException):
        read([b"HTTP/1.1 200 OK\r\n%s\r\n2\r\nok\r\n0\r\n\r\n" % framing])


@READERS
def test_chunked_with_a_content_length_is_chunked_and_not_reused(read):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    answer = read([raw])
    assert (answer.body, answer.will_close) == (b"ok", True)


@READERS
@pytest.mark.parametrize(
    "body",
    [
        b"2\r\nokXX0\r\n\r\n",
        b"+2\r\nok\r\n0\r\n\r\n",
        b"2_0\r\nok\r\n0\r\n\r\n",
        b" 2\r\nok\r\n0\r\n\r\n",
    ],
    ids=["no-crlf", "plus", "underscore", "space"],
)
def test_a_malformed_chunk_is_refused(read, body):
    with pytest.raises(http.client.HTTPException):
        read([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body])


@READERS
@pytest.mark.parametrize("status", [b"+200", b"2_00", b"\xd9\xa2\xd9\xa0\xd9\xa0"])
def test_a_status_code_is_ascii_digits(read, status):
    with pytest.raises(http.client.HTTPException):
        read([b"HTTP/1.1 %s OK\r\nContent-Length: 0\r\n\r\n" % status])


# --- a body read until the close ----------------------------------------------------------------


def test_a_body_read_until_a_clean_close_is_whole():
    answer = _fed([b"HTTP/1.1 200 OK\r\n\r\npart"])
    assert (answer.body, answer.will_close) == (b"part", True)


def test_a_body_read_until_an_error_close_is_cut_short():
    with pytest.raises(http.client.IncompleteRead):
        _fed([b"HTTP/1.1 200 OK\r\n\r\npart"], error=True)


def test_a_reset_in_a_body_read_until_the_close_is_an_error_for_read_answer():
    """The stdlib reader sees the reset itself: `recv` raises, no answer is made of the part."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname()[:2])
        peer, _ = server.accept()
        peer.sendall(b"HTTP/1.1 200 OK\r\n\r\npart")
        client.recv(1, socket.MSG_PEEK)  # the part has come
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # an RST, not a FIN
        with client, pytest.raises(ConnectionResetError):
            read_answer(client, 5.0, "GET")


@pytest.mark.anyio
async def test_a_reset_in_a_body_read_until_the_close_fails_the_raw_transport():
    """A reset ends the raw transport's answer as a ReadError: no 200 made of the part."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\n\r\n{"messages": [{"id": "wam')
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # an RST, not a FIN

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = RawTransport(Timeouts(connect=2.0, read=2.0, write=2.0, pool=2.0), {}, limit=1)
    try:
        with pytest.raises(TransportError, match="ReadError"):
            await transport.send(Request("GET", f"http://127.0.0.1:{port}/x"), Token("tok"))
    finally:
        await transport.aclose()
        server.close()
