"""The stdlib transport's HTTP/1.1 exchange (`_client._wire`), on real socket pairs.

Each answer is written byte for byte into one end of a `socket.socketpair()` and read from the
other: the framings a peer may choose (Content-Length, chunked, close-delimited), what makes a
connection unfit for reuse, and each way a peer can break HTTP/1.1, refused with the exception
http.client raises for it (which `_stdlib` maps to the kinds httpx names).
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wa_auth._client import _wire
from wa_auth._client._stdlib import Headers

BODY = b'{"messages":[{"id":"wamid.x"}]}'


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def _answer(
    pair: tuple[socket.socket, socket.socket],
    raw: bytes,
    *,
    close: bool = False,
    method: str = "POST",
) -> _wire.Answer:
    ours, theirs = pair
    theirs.sendall(raw)
    if close:
        theirs.shutdown(socket.SHUT_WR)
    return _wire.read_answer(ours, 5.0, method)


def test_a_content_length_answer_keeps_the_connection(pair):
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
        BODY
    )
    answer = _answer(pair, raw + BODY)
    assert (answer.status, answer.body, answer.will_close) == (200, BODY, False)
    assert answer.headers["content-type"] == "application/json"


def test_a_chunked_answer_is_joined_and_its_trailers_skipped(pair):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    answer = _answer(pair, raw)
    assert (answer.body, answer.will_close) == (b"hello world", False)


def test_an_answer_without_length_is_read_to_the_close(pair):
    answer = _answer(pair, b"HTTP/1.1 200 OK\r\n\r\n" + BODY, close=True)
    assert (answer.body, answer.will_close) == (BODY, True)


@pytest.mark.parametrize(
    ("head", "will_close"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\n", True, id="1.1-close"),
        pytest.param(b"HTTP/1.0 200 OK\r\n", True, id="1.0"),
        pytest.param(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", False, id="1.0-keep-alive"),
    ],
)
def test_what_the_peer_says_of_the_connection_is_followed(pair, head, will_close):
    answer = _answer(pair, head + b"Content-Length: 2\r\n\r\n{}")
    assert (answer.body, answer.will_close) == (b"{}", will_close)


def test_bytes_after_the_answer_make_the_connection_unfit(pair):
    answer = _answer(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK")
    assert (answer.body, answer.will_close) == (b"{}", True)


def test_a_100_continue_is_skipped_and_204_has_no_body(pair):
    answer = _answer(pair, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert (answer.status, answer.body, answer.will_close) == (204, b"", False)


def test_repeated_and_folded_headers_are_joined(pair):
    raw = (
        b"HTTP/1.1 429 Too Many\r\nX-A: 1\r\nx-a: 2\r\nX-Long: a\r\n b\r\nContent-Length: 0\r\n\r\n"
    )
    headers = Headers(lowered=_answer(pair, raw).headers)
    assert (headers["X-A"], headers["x-long"]) == ("1, 2", "a b")


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        pytest.param(b"", http.client.RemoteDisconnected, "", id="closed-first"),
        pytest.param(b"SMTP ready\r\n\r\n", http.client.BadStatusLine, "SMTP", id="not-http"),
        pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", http.client.BadStatusLine, "abc", id="status"),
        pytest.param(b"HTTP/1.1 42 Odd\r\n\r\n", http.client.BadStatusLine, "42", id="range"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",
            http.client.IncompleteRead,
            "2 bytes",
            id="cut",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            http.client.IncompleteRead,
            "0 bytes",
            id="chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n",
            http.client.HTTPException,
            "more than 100 headers",
            id="headers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000,
            http.client.LineTooLong,
            "header line",
            id="line",
        ),
    ],
)
def test_a_broken_answer_raises_what_http_client_raises(pair, raw, error, text):
    with pytest.raises(error) as info:
        _answer(pair, raw, close=True)
    assert text in repr(info.value)


def test_silence_is_timed_out(pair):
    ours, _ = pair
    with pytest.raises(_wire.TimedOut, match="timed out"):
        _wire.read_answer(ours, 0.05, "GET")


def test_the_head_refuses_what_http_client_refuses():
    with pytest.raises(http.client.InvalidURL, match="control characters"):
        _wire.request_head("GET", "/a b", b"h", None)
    with pytest.raises(ValueError, match="Invalid header value"):
        _wire.encode_headers({"X": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="Invalid header name"):
        _wire.encode_headers({"X:Y": "1"})
    with pytest.raises(UnicodeEncodeError):
        _wire.encode_headers({"X": "\u20ac"})
    assert _wire.request_head("POST", "/m", b"h:1", None).endswith(b"Content-Length: 0\r\n")
    assert b"Content-Length" not in _wire.request_head("GET", "/m", b"h", None)


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300),
    chunks=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    chunk=st.sampled_from([1, 3, 7, 64, 65536]),
    chunked=st.booleans(),
)
def test_any_framing_read_in_any_pieces_gives_the_body(
    body, chunks, chunk, chunked, monkeypatch_module
):
    """However the peer frames the body and however the bytes arrive, the body is the same."""
    monkeypatch_module.setattr(_wire, "CHUNK", chunk)
    if chunked:
        parts, rest = [], body
        for size in chunks:
            if rest:
                parts.append(b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size]))
                rest = rest[size:]
        if rest:
            parts.append(b"%x\r\n%s\r\n" % (len(rest), rest))
        raw = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(parts)
            + b"0\r\n\r\n"
        )
    else:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    ours, theirs = socket.socketpair()
    try:
        answer = _answer((ours, theirs), raw)
    finally:
        ours.close()
        theirs.close()
    assert (answer.body, answer.will_close) == (body, False)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch
