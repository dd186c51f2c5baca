"""HTTP/1.1 on a connected socket: one request written, one answer read, for `_stdlib`.

`http.client` makes the connections (TCP, a proxy's `CONNECT` tunnel, TLS); the exchange on
them is done here, in one write and a few reads: `http.client` spends more on each request than
the rest of a send (a `putheader` call per header; the answer's headers parsed by the `email`
package). What it checks is checked here too, and refused with its own exceptions, so
`_stdlib` maps them as before: a target or header value with a control character, a bad status
line, a head past its limits, an answer cut short (`IncompleteRead`) or never begun
(`RemoteDisconnected`).

Every receive is bounded by the read timeout and the time left before the call's deadline
(`wa_auth._deadline`), so a peer that trickles its answer cannot outlive the call.
"""

from __future__ import annotations

import http.client
import re
import time
from typing import TYPE_CHECKING, Final

from wa_auth import _deadline

if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "Answer",
    "AnswerParser",
    "TimedOut",
    "encode_headers",
    "parse_head",
    "read_answer",
    "request_head",
]

#: http.client's limits: one line of the head, the number of header lines.
MAX_LINE: Final = 65536
MAX_HEADERS: Final = 100
#: What one receive asks for.
CHUNK: Final = 65536

# http.client's own checks (`_contains_disallowed_url_pchar_re`, `_is_illegal_header_value`).
_BAD_TARGET: Final = re.compile("[\x00-\x20\x7f]").search
_BAD_VALUE: Final = re.compile(rb"\n(?![ \t])|\r(?![ \t\n])").search
_LEGAL_NAME: Final = re.compile(rb"[^:\s][^:\r\n]*").fullmatch
_HEX: Final = re.compile(rb"[0-9A-Fa-f]+").fullmatch
_DIGITS: Final = re.compile("[0-9]+").fullmatch
#: The methods http.client sends `Content-Length: 0` for when they carry no body.
_EXPECTING_BODY: Final = frozenset({"PATCH", "POST", "PUT"})


class TimedOut(Exception):  # noqa: N818 - a signal to the caller, which names the failure
    """A receive waited past the read timeout, or the deadline had passed."""


class Answer:
    """What one exchange brought back: status, headers (lower-cased names), body, reuse."""

    __slots__ = ("body", "headers", "status", "will_close")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, will_close: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.will_close = will_close


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Return *headers* as the lines of a head, refusing what http.client refuses.

    Raises:
        ValueError: A header name or value that would break the head (a CR or LF).
        UnicodeEncodeError: A value outside Latin-1.
    """
    lines = []
    for name, value in headers.items():
        raw_name = name.encode("ascii")
        if not _LEGAL_NAME(raw_name):
            raise ValueError(f"Invalid header name {raw_name!r}")
        raw_value = value.encode("latin-1")
        if _BAD_VALUE(raw_value):
            raise ValueError(f"Invalid header value {raw_value!r}")
        lines.append(raw_name + b": " + raw_value + b"\r\n")
    return b"".join(lines)


def request_head(method: str, target: str, host: bytes, content: bytes | None) -> bytes:
    """Return the request line, `Host`, `Accept-Encoding` and `Content-Length` lines.

    Raises:
        http.client.InvalidURL: *target* holds a control character or a space.
    """
    found = _BAD_TARGET(target)
    if found:
        raise http.client.InvalidURL(
            f"URL can't contain control characters. {target!r} (found at least {found.group()!r})"
        )
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\nAccept-Encoding: identity\r\n" % (
        method.encode("ascii"),
        target.encode("ascii"),
        host,
    )
    if content is not None:
        return head + b"Content-Length: %d\r\n" % len(content)
    if method in _EXPECTING_BODY:
        return head + b"Content-Length: 0\r\n"
    return head


class _Reader:
    """The bytes of one answer as they arrive: each receive under the timeout and deadline."""

    __slots__ = ("buffer", "closed", "head", "pos", "sock", "timeout", "what")

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""
        self.pos = 0
        self.closed = False
        self.head = 0  # the bytes of the heads read so far (interim ones too), or of trailers

    def fill(self) -> bool:
        """Receive more bytes; return False when the peer has closed."""
        if self.closed:
            return False
        timeout = self.timeout
        deadline = _deadline.current()
        if deadline is not None:
            left = deadline.at - time.monotonic()
            if left <= 0:
                raise TimedOut(f"{deadline.what} passed")
            if timeout is None or timeout > left:
                timeout = left
        sock = self.sock
        if sock.gettimeout() != timeout:
            sock.settimeout(timeout)
        try:
            data = sock.recv(CHUNK)
        except TimeoutError as exc:
            late = _deadline.passed()
            raise TimedOut(f"{late.what} passed" if late else str(exc) or "timed out") from None
        if not data:
            self.closed = True
            return False
        if self.pos:
            self.buffer = self.buffer[self.pos :] + data
            self.pos = 0
        else:
            self.buffer += data
        return True

    def line(self) -> bytes:
        """Return the next line with its end (b"" at the end of the stream)."""
        while True:
            end = self.buffer.find(b"\n", self.pos)
            if end >= 0:
                line = self.buffer[self.pos : end + 1]
                self.pos = end + 1
                if len(line) > MAX_LINE:
                    raise http.client.LineTooLong("header line")
                return line
            if len(self.buffer) - self.pos > MAX_LINE:
                raise http.client.LineTooLong("header line")
            if not self.fill():
                line = self.buffer[self.pos :]
                self.pos = len(self.buffer)
                return line

    def head_line(self) -> bytes:
        """Return the next line of a head, counted against `MAX_HEAD`."""
        line = self.line()
        self.head += len(line)
        if self.head > MAX_HEAD:
            raise http.client.LineTooLong(f"a head of more than {MAX_HEAD} bytes")
        return line

    def exactly(self, n: int, partial: list[bytes]) -> bytes:
        """Return the next *n* bytes; `IncompleteRead` if the peer closes before them."""
        while len(self.buffer) - self.pos < n:
            if not self.fill():
                got = self.buffer[self.pos :]
                raise http.client.IncompleteRead(b"".join([*partial, got]), n - len(got))
        data = self.buffer[self.pos : self.pos + n]
        self.pos += n
        return data

    def rest(self) -> bytes:
        """Return every byte until the peer closes."""
        while self.fill():
            pass
        data = self.buffer[self.pos :]
        self.pos = len(self.buffer)
        return data

    def left_over(self) -> bool:
        return self.pos < len(self.buffer)


def _status(reader: _Reader) -> tuple[str, int]:
    line = reader.head_line()
    if not line:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    return _status_of(str(line, "iso-8859-1"))


def _status_of(text: str) -> tuple[str, int]:
    """The version and status of a status line, as http.client reads them."""
    parts = text.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise http.client.BadStatusLine(text)
    if not _DIGITS(parts[1]):  # int() would take "+200", "2_00", non-ASCII digits
        raise http.client.BadStatusLine(text)
    status = int(parts[1])
    if not 100 <= status <= 999:
        raise http.client.BadStatusLine(text)
    return parts[0], status


def _headers(reader: _Reader) -> dict[str, str]:
    """Read the header lines; repeated names joined by ", ", names lower-cased."""
    headers: dict[str, str] = {}
    last = None
    count = 0
    while True:
        line = reader.head_line()
        if line in (b"\r\n", b"\n", b""):
            return headers
        count += 1
        if count > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        last = _header(headers, last, str(line, "iso-8859-1").rstrip("\r\n"))


def read_answer(sock: socket.socket, timeout: float | None, method: str) -> Answer:
    """Read one answer from *sock*: each receive within *timeout* and the deadline.

    Raises:
        TimedOut: A receive waited too long.
        http.client.HTTPException: The peer broke HTTP/1.1 (closed first, a bad status line, a
            cut body).
        OSError: The socket failed.
    """
    reader = _Reader(sock, timeout)
    version, status = _status(reader)
    while status < 200:  # interim answers (100 Continue, 102, 103 Early Hints): skipped
        _interim(status)
        _headers(reader)
        version, status = _status(reader)
    headers = _headers(reader)
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        will_close = "close" in connection
    else:
        will_close = "keep-alive" not in connection and "keep-alive" not in headers
    if status in (204, 304) or method == "HEAD":
        body = b""
        will_close = will_close or _announces_body(headers)
    else:
        length, unsure = _framing(headers)
        will_close = will_close or unsure
        if length == CHUNKED:
            body = _chunked(reader)
        elif length is None:
            body, will_close = reader.rest(), True
        else:
            body = reader.exactly(length, [])
    # Bytes nobody asked for: the connection is in an unknown state, do not reuse it.
    return Answer(status, headers, body, will_close or reader.left_over())


def _interim(status: int) -> None:
    """Refuse a `101 Switching Protocols`: no request of ours asks to switch."""
    if status == 101:
        raise http.client.HTTPException("101 Switching Protocols, which no request asked for")


def _announces_body(headers: dict[str, str]) -> bool:
    """Whether a body-less answer (204, 304, to HEAD) announces a body all the same.

    Its bytes, if the peer sends them, would be read as the next answer: such a connection is
    not reused.
    """
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (bool(length) and length.strip("0, \t") != "")


#: What `_framing` returns for a chunked body.
CHUNKED: Final = -1


def _framing(headers: dict[str, str]) -> tuple[int | None, bool]:
    """How a body is framed, and whether the connection can be reused after it.

    The length, `CHUNKED` or None (read until the peer closes); True when the framing is unsure
    enough that the connection must not be reused.

    Raises:
        http.client.HTTPException: A coding other than a last `chunked` (we ask for none), a
            `Content-Length` that is not digits, or repeated with different values.
    """
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if [c.strip(" \t").lower() for c in coding.split(",")] != ["chunked"]:
            raise http.client.HTTPException(f"Transfer-Encoding {coding!r}, which we never ask for")
        # Both framings: chunked wins (RFC 9112 6.3), but what the peer meant is unsure.
        return CHUNKED, "content-length" in headers
    value = headers.get("content-length")
    if value is None:
        return None, False
    # Repeated lines are joined by ", ": the same length repeated is that length.
    lengths = {v.strip(" \t") for v in value.split(",")}
    if len(lengths) != 1 or not _DIGITS(next(iter(lengths))):
        raise http.client.HTTPException(f"Content-Length {value!r}")
    return int(next(iter(lengths))), False


def _chunked(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = _chunk_size(reader.line(), parts)
        if size == 0:
            break
        parts.append(reader.exactly(size, parts))
        if reader.exactly(2, parts) != b"\r\n":  # the CRLF after the chunk
            raise http.client.IncompleteRead(b"".join(parts))
    reader.head = 0  # the trailers: under the limits of a head
    lines = 0
    while reader.head_line() not in (b"\r\n", b"\n", b""):
        lines += 1
        if lines > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} trailers")
    return b"".join(parts)


def _chunk_size(line: bytes, parts: list[bytes]) -> int:
    """The size on a chunk's size line (hex digits only); `IncompleteRead` if there is none."""
    digits = line.split(b";", 1)[0].rstrip(b"\r\n").rstrip(b" \t")
    if not _HEX(digits):
        raise http.client.IncompleteRead(b"".join(parts))
    return int(digits, 16)


# --- the same reading, sans I/O: bytes fed as they come (the asyncio `raw` transport) ---------

#: The most bytes an answer's head may take (its status line and header lines together).
MAX_HEAD: Final = 65536
#: The most bytes an answer's body may take: past Meta's largest media (100 MB documents).
MAX_BODY: Final = 128 * 1024 * 1024


def parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """Return the version, status and headers of one whole head (its blank line excluded).

    The same reading as `read_answer`'s (`_status`, `_headers`): lower-cased names, repeated
    ones joined by ", ", folded lines continued, lines without a colon dropped.

    Raises:
        http.client.HTTPException: A bad status line, a line or head past its limits.
    """
    lines = str(head, "iso-8859-1").split("\n")  # decoded once: Latin-1 maps byte to char
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise http.client.BadStatusLine("")
    text = lines[0] + "\n"
    if len(text) > MAX_LINE:
        raise http.client.LineTooLong("header line")
    version, status = _status_of(text)
    if len(lines) - 1 > MAX_HEADERS:
        raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    last = None
    for line in lines[1:]:
        if len(line) >= MAX_LINE:
            raise http.client.LineTooLong("header line")
        last = _header(headers, last, line.rstrip("\r") if line[-1:] == "\r" else line)
    return version, status, headers


def _header(headers: dict[str, str], last: str | None, text: str) -> str | None:
    """Add one header line (without its end) to *headers*; return the name a fold continues.

    A folded line (starting with a space or a tab) continues *last*; a line without a colon is
    dropped, as http.client's parser drops it; a repeated name's values are joined by ", ".
    """
    if text[:1] in (" ", "\t") and last is not None:
        headers[last] += text
        return last
    name, colon, value = text.partition(":")
    if not colon:
        return last
    key = name.lower()
    value = value.lstrip(" \t")
    headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return key


def _head_end(buffer: bytes) -> tuple[int, int]:
    """Where the head in *buffer* ends (after its last line's LF) and its body begins; -1s."""
    crlf = buffer.find(b"\n\r\n")
    lf = buffer.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf + 1, lf + 2
    if crlf >= 0:
        return crlf + 1, crlf + 3
    return -1, -1


class AnswerParser:
    """One answer, read from the bytes fed to it as they arrive; no I/O, no clock.

    `feed` returns the `Answer` once it is whole (None until then); `end` says what the answer
    was when the peer closed. The same answer as `read_answer` reads from a socket:
    `Content-Length`, chunked and read-until-close bodies, interim (1xx) answers skipped, the
    connection not reused after `Connection: close` or bytes nobody asked for. Over
    `MAX_HEAD` or `MAX_BODY`, or malformed, it raises `http.client`'s exceptions, as
    `read_answer` does.
    """

    __slots__ = (
        "body_at",
        "buffer",
        "chunk_left",
        "chunks",
        "crlf",
        "got",
        "headers",
        "length",
        "method",
        "mode",
        "parts",
        "status",
        "trailer_lines",
        "trailers",
        "used",
        "will_close",
    )

    def __init__(self, method: str) -> None:
        self.method = method
        self.buffer = b""
        self.headers: dict[str, str] | None = None
        self.status = 0
        self.will_close = False
        self.mode = ""  # "length", "chunked" or "close" once the head is read
        self.length = 0
        self.got = 0
        self.parts: list[bytes] = []
        self.body_at = 0
        self.chunks: list[bytes] = []
        self.chunk_left = 0  # the bytes of the current chunk still to come
        self.crlf = False  # the CRLF after a chunk's data still to come
        self.trailers = False
        self.trailer_lines = 0
        self.used = 0  # the bytes of the interim heads read, or of the trailers

    @property
    def started(self) -> bool:
        """Whether any byte of the answer has come."""
        return bool(self.buffer) or self.headers is not None

    def feed(self, data: bytes) -> Answer | None:
        """Take the next bytes; return the whole answer once it has come."""
        if self.headers is None:
            buffer = self.buffer + data if self.buffer else data
            while True:
                head_end, body_at = _head_end(buffer)
                if head_end < 0:
                    if self.used + len(buffer) > MAX_HEAD:
                        raise http.client.LineTooLong(f"a head of more than {MAX_HEAD} bytes")
                    self.buffer = buffer
                    return None
                if self.used + head_end > MAX_HEAD:
                    raise http.client.LineTooLong(f"a head of more than {MAX_HEAD} bytes")
                version, status, headers = parse_head(buffer[:head_end])
                buffer = buffer[body_at:]
                if status >= 200:
                    break
                _interim(status)  # 100 Continue, 102, 103 Early Hints: skipped
                self.used += body_at  # counted against the limit of the head after them
            self.buffer = b""
            self.used = 0
            self._framing(version, status, headers)
            data = buffer
        mode = self.mode
        if mode == "length":
            return self._length_body(data)
        if mode == "chunked":
            return self._chunked_body(data)
        if mode == "close":
            self._count(len(data))
            if data:
                self.parts.append(data)
            return None
        return self._answer(b"", left_over=bool(data))  # a body-less answer

    def end(self, error: bool = False) -> Answer:
        """The answer, now that the connection has closed; raise if it was not whole.

        *error*: the connection ended in an error (a reset), not a clean close: a body read
        until the close is then cut short, not whole.
        """
        if self.headers is None:
            if not self.buffer:
                raise http.client.RemoteDisconnected(
                    "Remote end closed connection without response"
                )
            raise http.client.HTTPException("the peer closed inside the head of its answer")
        if self.mode == "close":
            if error:
                raise http.client.IncompleteRead(b"".join(self.parts))
            return self._answer(b"".join(self.parts), left_over=False)
        if self.mode == "length":
            raise http.client.IncompleteRead(b"".join(self.parts), self.length - self.got)
        raise http.client.IncompleteRead(b"".join(self.chunks))

    def _framing(self, version: str, status: int, headers: dict[str, str]) -> None:
        self.headers = headers
        self.status = status
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            self.will_close = "close" in connection
        else:
            self.will_close = "keep-alive" not in connection and "keep-alive" not in headers
        if status in (204, 304) or self.method == "HEAD":
            self.mode = ""
            self.will_close = self.will_close or _announces_body(headers)
        else:
            length, unsure = _framing(headers)
            self.will_close = self.will_close or unsure
            if length == CHUNKED:
                self.mode = "chunked"
            elif length is None:
                self.mode = "close"
                self.will_close = True
            else:
                if length > MAX_BODY:
                    raise http.client.HTTPException(f"a body of more than {MAX_BODY} bytes")
                self.mode = "length"
                self.length = length

    def _count(self, n: int) -> None:
        self.got += n
        if self.got > MAX_BODY:
            raise http.client.HTTPException(f"a body of more than {MAX_BODY} bytes")

    def _answer(self, body: bytes, *, left_over: bool) -> Answer:
        assert self.headers is not None
        return Answer(self.status, self.headers, body, self.will_close or left_over)

    def _length_body(self, data: bytes) -> Answer | None:
        need = self.length - self.got
        if not self.parts and len(data) >= need:  # the whole body in one piece: no copy
            return self._answer(
                data[:need] if len(data) > need else data, left_over=len(data) > need
            )
        if len(data) < need:
            if data:
                self.parts.append(data)
                self.got += len(data)
            return None
        self.parts.append(data[:need])
        self.got = self.length
        return self._answer(b"".join(self.parts), left_over=len(data) > need)

    def _chunked_body(self, data: bytes) -> Answer | None:
        """Chunks as they come: a size line, its data streamed (no copy kept until whole)."""
        buffer = self.buffer + data if self.buffer else data
        self.buffer = b""
        pos = 0
        size = len(buffer)
        while True:
            if self.chunk_left:
                pos = self._chunk_data(buffer, pos)
                if self.chunk_left:
                    return None
                self.crlf = True
            if self.crlf:
                if size - pos < 2:
                    self.buffer = buffer[pos:]
                    return None
                if buffer[pos : pos + 2] != b"\r\n":
                    raise http.client.IncompleteRead(b"".join(self.chunks))
                pos += 2
                self.crlf = False
            end = buffer.find(b"\n", pos)
            if end < 0:
                if size - pos > MAX_LINE:
                    raise http.client.LineTooLong("chunk size line")
                self.buffer = buffer[pos:]
                return None
            line = buffer[pos : end + 1]
            if len(line) > MAX_LINE:
                raise http.client.LineTooLong("chunk size line")
            pos = end + 1
            if self.trailers:
                if line in (b"\r\n", b"\n"):
                    return self._answer(b"".join(self.chunks), left_over=pos < size)
                self._trailer(len(line))
                continue
            length = _chunk_size(line, self.chunks)
            if length == 0:
                self.trailers = True
                continue
            self._count(length)
            self.chunk_left = length

    def _chunk_data(self, buffer: bytes, pos: int) -> int:
        """Take what *buffer* holds of the current chunk from *pos*; return where it ends."""
        take = min(self.chunk_left, len(buffer) - pos)
        if take:
            self.chunks.append(buffer if take == len(buffer) else buffer[pos : pos + take])
            self.chunk_left -= take
        return pos + take

    def _trailer(self, n: int) -> None:
        """Count one trailer line against the limits of a head."""
        self.used += n
        self.trailer_lines += 1
        if self.used > MAX_HEAD:
            raise http.client.LineTooLong(f"trailers of more than {MAX_HEAD} bytes")
        if self.trailer_lines > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} trailers")
