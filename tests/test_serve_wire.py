"""`_serve._wire.read_head`: the own lane's head reader reads what it accepts as aiohttp does.

Whatever the bytes, `read_head` returns a `Head`, None (incomplete) or `HANDOVER`, and never
raises. Every head it accepts, aiohttp's own parser (the one serve's aiohttp path uses, with
serve's line limits) reads without error into the same method, path, headers, body length and
keep-alive decision: the lane can never answer a request the aiohttp path would have refused
or read otherwise.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import HttpVersion11
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpRequestParser
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wa_auth._cli._serve._settings import MAX_LINE
from wa_auth._cli._serve._wire import HANDOVER, MAX_FIELDS, MAX_HEAD, Head, read_head

MAX_BODY = 1_000

PLAIN = (
    b"POST /send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer k\r\nContent-Length: 2\r\n\r\n{}"
)


def _aiohttp(data: bytes) -> list[tuple[object, bytes, bool]]:
    """Return what aiohttp's request parser reads from *data*: (message, body, complete)."""

    async def parse() -> list[tuple[object, bytes, bool]]:
        loop = asyncio.get_running_loop()
        parser = HttpRequestParser(
            BaseProtocol(loop), loop, 2**16, max_line_size=MAX_LINE, max_field_size=MAX_LINE
        )
        messages, _upgraded, _tail = parser.feed_data(data)
        out = []
        for message, payload in messages:
            # What arrived, without awaiting (an EmptyStreamReader for no body has no buffer).
            body = b"".join(getattr(payload, "_buffer", ()))
            out.append((message, body, payload.is_eof()))
        return out

    return asyncio.run(parse())


def _same_as_aiohttp(data: bytes) -> Head | str | None:
    head = read_head(data, MAX_BODY)
    if isinstance(head, Head):
        request = data[: head.size + head.length]
        parsed = _aiohttp(request)
        assert len(parsed) == 1
        message, body, complete = parsed[0]
        assert message.method == head.method
        assert message.url.path == head.path
        assert message.version == HttpVersion11
        assert not message.chunked
        assert not message.upgrade
        assert message.compression is None
        assert message.should_close == head.close
        names = {name.lower() for name in message.headers}
        assert names == set(head.headers)
        for name, value in head.headers.items():
            assert ",".join(message.headers.getall(name)) == value
        # The body's bytes that arrived; aiohttp waits for the rest as the lane would.
        assert body == request[head.size :]
        assert complete == (len(body) == head.length)
    return head


def test_the_plain_request_of_an_n8n_item_is_read():
    head = _same_as_aiohttp(PLAIN)
    assert isinstance(head, Head)
    assert (head.method, head.path, head.length, head.close) == ("POST", "/send", 2, False)
    assert head.headers["authorization"] == "Bearer k"
    assert PLAIN[head.size :] == b"{}"


@pytest.mark.parametrize("cut", [0, 1, 20, len(PLAIN) - 3])
def test_an_incomplete_head_waits(cut):
    assert read_head(PLAIN[:cut], MAX_BODY) is None


@pytest.mark.parametrize(
    "request_bytes",
    [
        PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0"),
        PLAIN.replace(b"/send", b"/send?x=1"),
        PLAIN.replace(b"/send", b"/s%65nd"),
        PLAIN.replace(b"/send", b"/a/../send"),
        PLAIN.replace(b"/send", b"//send"),
        PLAIN.replace(b"POST", b"PUT"),
        PLAIN.replace(b"Host: 127.0.0.1\r\n", b""),
        PLAIN.replace(b"Host", b"Host: a\r\nHost"),
        PLAIN.replace(b"Content-Length: 2", b"Content-Length: 2\r\nContent-Length: 2"),
        PLAIN.replace(b"Content-Length: 2", b"Content-Length: +2"),
        PLAIN.replace(b"Content-Length: 2", b"Content-Length: 1001"),
        PLAIN.replace(b"Content-Length: 2", b"Transfer-Encoding: chunked"),
        PLAIN.replace(b"Host", b"Content-Encoding: gzip\r\nHost"),
        PLAIN.replace(b"Host", b"Expect: 100-continue\r\nHost"),
        PLAIN.replace(b"Host", b"Connection: upgrade\r\nHost"),
        PLAIN.replace(b"Host", b"X-A: \x01\r\nHost"),
        PLAIN.replace(b"Host", b"X-A: na\xefve\r\nHost"),
        PLAIN.replace(b"Host", b"X-A: a\r\n b\r\nHost"),
        PLAIN.replace(b"Host", b"X A: a\r\nHost"),
        PLAIN.replace(b"Authorization", b"Authorization : x\r\nAuthorization"),
        b"POST /send HTTP/1.1\r\nHost: x\r\n" + b"X-A: a\r\n" * MAX_FIELDS + b"\r\n",
        b"POST /send HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * MAX_HEAD + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\r\n\r\n",
    ],
)
def test_what_is_not_beyond_doubt_goes_to_aiohttps_path(request_bytes):
    assert read_head(request_bytes, MAX_BODY) == HANDOVER


def test_a_head_longer_than_the_limit_goes_to_aiohttps_path_before_its_end():
    assert read_head(b"GET /healthz HTTP/1.1\r\nX-A: " + b"a" * MAX_HEAD, MAX_BODY) == HANDOVER


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
@example(PLAIN)
def test_any_bytes_are_read_never_raised_on(data):
    _same_as_aiohttp(data)


_NAMES = st.one_of(
    st.sampled_from(
        [
            "Host",
            "host",
            "Content-Length",
            "content-length",
            "Content-Type",
            "Authorization",
            "X-API-Key",
            "Connection",
            "Transfer-Encoding",
            "Content-Encoding",
            "Expect",
            "Upgrade",
            "Keep-Alive",
            "X-Thing",
            "x-thing",
        ]
    ),
    st.text(st.characters(max_codepoint=0xFF), min_size=0, max_size=8),
)
_VALUES = st.one_of(
    st.sampled_from(
        ["2", "0", "02", " 2 ", "-1", "1e1", "close", "keep-alive", "Close", "chunked", "x"]
    ),
    st.text(st.characters(max_codepoint=0xFF), max_size=12),
)
_METHODS = st.one_of(
    st.sampled_from(["GET", "POST", "get", "PUT", "HEAD"]),
    st.text(st.characters(max_codepoint=0xFF), max_size=5),
)
_TARGETS = st.one_of(
    st.sampled_from(["/send", "/healthz", "/", "/a/./b", "/a/../b", "//a", "/a?b", "/%2e", "*"]),
    st.text(st.characters(max_codepoint=0xFF), max_size=10),
)
_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.10", "http/1.1", "HTTP/2.0"])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=_METHODS,
    target=_TARGETS,
    version=_VERSIONS,
    fields=st.lists(st.tuples(_NAMES, st.sampled_from([":", ": ", " :", ":\t"]), _VALUES)),
    host=st.booleans(),
    body=st.binary(max_size=12),
    tail=st.binary(max_size=8),
)
def test_odd_heads_are_handed_over_or_read_as_aiohttp_reads_them(
    method, target, version, fields, host, body, tail
):
    """Heads of any shape (almost all handed over; the plain ones are the next test's)."""
    lines = [f"{method} {target} {version}"]
    if host:
        lines.append("Host: x")
    lines += [f"{name}{colon}{value}" for name, colon, value in fields]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body + tail
    _same_as_aiohttp(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(at=st.integers(0, len(PLAIN)), byte=st.integers(0, 255), replace=st.booleans())
def test_one_byte_changed_or_added_is_still_read_as_aiohttp_reads_it(at, byte, replace):
    data = PLAIN[:at] + bytes([byte]) + PLAIN[at + 1 if replace else at :]
    _same_as_aiohttp(data)


_TOKEN = st.text("abcXYZ-_.!#$%&'*+^`|~09", min_size=1, max_size=6)
_VISIBLE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=10
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST"]),
    target=st.text("abz09/_.-", max_size=8).map(lambda path: "/" + path),
    fields=st.lists(
        st.tuples(
            st.one_of(_TOKEN, st.sampled_from(["Content-Length", "Connection", "Content-Type"])),
            st.one_of(_VISIBLE, st.sampled_from(["0", "3", "007", "close", "Keep-Alive"])),
        ),
        max_size=6,
    ),
    body=st.binary(max_size=12),
)
def test_plain_heads_are_accepted_and_read_as_aiohttp_reads_them(method, target, fields, body):
    """Heads near the n8n item's shape: most are accepted, and each as aiohttp reads it."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in fields]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
    head = _same_as_aiohttp(data)
    if "//" not in target and "/." not in target and not fields:
        assert isinstance(head, Head)


@pytest.mark.parametrize(
    "start",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"PUT /send",
        b"GET send",
        b"POST /send HTTP/1.0\r\n",
        b"POST /send HTTP/1.1\r\nHost: x\r\nX-A: \x00",
        b"POST /send HTTP/1.1\r\nHost: x\r\nX-A: na\xefve",
    ],
)
def test_bytes_no_head_of_the_lane_can_start_with_go_to_aiohttp_before_the_blank_line(start):
    """aiohttp answers them at once: the lane does not wait for a blank line that may not come."""
    assert read_head(start, MAX_BODY) == HANDOVER


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(PLAIN) - 3))
def test_every_prefix_of_a_lane_head_waits(cut):
    assert read_head(PLAIN[:cut], MAX_BODY) is None
