"""The head of a request, read by `wa-auth serve`'s own HTTP/1.1 lane: a strict subset, sans I/O.

The lane (`_lane`) reads the plain requests an n8n item sends; aiohttp's server, as before,
reads everything else: `read_head` accepts only a head whose meaning is beyond doubt, and says
`HANDOVER` for any other, so a hostile, unusual or merely rare request (a query string,
chunked or encoded bodies, `Expect`, HTTP/1.0, obs-text, duplicates, bytes that are not HTTP)
is still answered by the aiohttp path and its tests. It says so as soon as the bytes so far
cannot begin a head of the subset (a TLS hello, another verb), so aiohttp answers them at once,
as it did. What it accepts, aiohttp's parser reads the same way (tests/test_serve_wire.py checks
it against aiohttp's own parser, with Hypothesis).

The rules of the subset:

- the request line is `GET` or `POST`, an origin-form path of letters, digits, `-`, `_`, `.`
  and `/` (no query, no `%`, no dot segment, no empty segment), and `HTTP/1.1`;
- each header is a token, a colon, and a value of visible ASCII, spaces and tabs (stripped at
  both ends): no obs-fold, no obs-text, no control character;
- exactly one `Host`; at most one of each header the service reads (`Content-Length`,
  `Content-Type`, `Authorization`, `X-API-Key`, `Connection`, `X-Hub-Signature-256`);
- `Content-Length` is digits only, and not over the body limit (aiohttp's path answers 413);
- no `Transfer-Encoding`, `Content-Encoding`, `Expect`, `Upgrade`, `Trailer` (nor the
  transfer codings' own header); `Connection` is
  `keep-alive` or `close`, nothing else;
- the head is at most `MAX_HEAD` bytes and `MAX_FIELDS` headers.
"""

from __future__ import annotations

import re
from typing import Final, Literal, overload

__all__ = ["HANDOVER", "MAX_FIELDS", "MAX_HEAD", "Fields", "Head", "read_head"]

#: The most bytes of a head (request line, headers and the blank line) the lane reads.
MAX_HEAD: Final = 8192
#: The most header lines the lane reads.
MAX_FIELDS: Final = 64
#: The head is not for the lane: the connection goes to aiohttp's path, unread bytes and all.
HANDOVER: Final = "handover"

_END: Final = b"\r\n\r\n"
_LINE: Final = re.compile(rb"(GET|POST) (/[A-Za-z0-9_.\-/]*) HTTP/1\.1")
_TEXT_LINE: Final = re.compile(_LINE.pattern.decode("ascii"))
#: One header line: a name (RFC 9110's token), a colon, the value (to its line's end: a
#: head's CR ends a line). Each match starts a line (the head's start or a CR LF): a line
#: that is no header is skipped by `findall`, so the count of matches tells (`_fields`).
_FIELD: Final = re.compile(r"(?:^|\r\n)([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([^\r]*)")
#: The bytes of a complete head: visible ASCII, space and tab, and the lines' CR LF.
_HEAD: Final = bytes([9, 10, 13, *range(0x20, 0x7F)])
#: Headers whose presence sends the request to aiohttp's path.
_FOREIGN: Final = frozenset(
    {"transfer-encoding", "content-encoding", "expect", "upgrade", "trailer", "t" + "e"}
)
#: Headers the service reads: a second one is ambiguous, so aiohttp's path decides.
_ONCE: Final = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "authorization",
        "x-api-key",
        "connection",
        "x-hub-signature-256",
    }
)
_CONNECTION: Final = {"keep-alive": False, "close": True}


class Fields(dict[str, str]):
    """A head's headers by lower-case name; `get` takes a name in any case, as aiohttp's."""

    __slots__ = ()

    @overload  # type: ignore[override]
    def get(self, key: str, default: None = None) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    def get(self, key: str, default: str | None = None) -> str | None:
        return dict.get(self, key.lower(), default)


class Head:
    """A request head the lane accepted.

    Attributes:
        method: `GET` or `POST`.
        path: The path, as aiohttp's `request.path` would give it.
        headers: Each header's value by its lower-case name (each name once).
        length: The body's length in bytes (0 without `Content-Length`).
        close: Whether the client asked to close the connection after the answer.
        size: The head's bytes, its blank line included: the body starts there.
    """

    __slots__ = ("close", "headers", "length", "method", "path", "size")

    def __init__(
        self,
        method: str,
        path: str,
        headers: Fields,
        length: int,
        close: bool,
        size: int,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.length = length
        self.close = close
        self.size = size


def read_head(buf: bytes, max_body: int) -> Head | Literal["handover"] | None:
    """Return the head at the start of *buf*, None while it is incomplete, or `HANDOVER`.

    `HANDOVER` for any head outside the subset (see the module's docstring), a head longer
    than `MAX_HEAD`, or a body over *max_body*. Never raises, whatever the bytes.
    """
    end = buf.find(_END, 0, MAX_HEAD)
    if end < 0:
        return HANDOVER if len(buf) >= MAX_HEAD or _doomed(buf) else None
    block = buf[:end]
    if block.translate(None, _HEAD):
        return HANDOVER  # a control character or obs-text
    # Visible ASCII, spaces, tabs and line breaks only: the head is read as one str.
    decoded = block.decode("ascii")
    breaks = decoded.count("\r\n")
    if breaks > MAX_FIELDS or decoded.count("\r") != breaks or decoded.count("\n") != breaks:
        return HANDOVER  # too many headers, or a bare CR or LF
    first, _, rest = decoded.partition("\r\n")
    line = _TEXT_LINE.fullmatch(first)
    if line is None:
        return HANDOVER
    path = line[2]
    if "//" in path or "/." in path:
        return HANDOVER  # yarl may normalise them: aiohttp's path would differ
    headers = _fields(rest, breaks)
    if headers is None or "host" not in headers:
        return HANDOVER
    # The names are lower-case: dict's own get, not `Fields.get`'s lower-casing.
    close = _CONNECTION.get(dict.get(headers, "connection", "keep-alive").lower())
    if close is None:
        return HANDOVER
    text = dict.get(headers, "content-length", "0")
    if not (0 < len(text) <= 18 and text.isdigit() and text.isascii()):
        return HANDOVER
    length = int(text)
    if length > max_body:
        return HANDOVER
    return Head(line[1], path, headers, length, close, end + len(_END))


def _doomed(buf: bytes) -> bool:
    """Return whether an incomplete head can already not be the lane's (TLS, bytes, a verb).

    aiohttp's parser answers such bytes at once (a 400); the lane must not wait for a blank
    line that may never come, so they go to aiohttp's path as soon as they arrive. So does a
    bare LF or CR (a CR at the end may be half of a CRLF): the lane's blank line never comes.
    """
    crlf = buf.count(b"\r\n")
    if buf.count(b"\n") != crlf or buf.count(b"\r") - buf.endswith(b"\r") != crlf:
        return True
    newline = buf.find(b"\r\n")
    if newline >= 0:
        if _LINE.fullmatch(buf[:newline]) is None:
            return True
    elif not (b"GET /".startswith(buf[:5]) or b"POST /".startswith(buf[:6])):
        return True
    return bool(buf.translate(None, _HEAD))


def _fields(text: str, count: int) -> Fields | None:
    """Return the *count* headers of a head's *text* (after the request line), or None.

    Each line is a token, a colon, and a value (`_FIELD`) stripped of spaces and tabs at
    both ends; the text is already known to be visible ASCII, spaces and tabs, its lines
    split by CR LF only (`read_head`). None (hand over) unless every line is such a header.
    """
    pairs = _FIELD.findall(text) if count else []
    if len(pairs) != count:
        return None  # a line without a colon, a name or a token name (obs-fold too)
    headers = Fields()
    for raw, spaced in pairs:
        name = raw.lower()
        value = spaced.strip(" \t")
        if name in headers:
            if name in _ONCE:
                return None
            # A repeated header is one list, as aiohttp's `getall` joined with commas.
            headers[name] = f"{headers[name]},{value}"
        elif name in _FOREIGN:
            return None
        else:
            headers[name] = value
    return headers
