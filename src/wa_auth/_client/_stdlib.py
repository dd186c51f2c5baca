"""The standard library's transport: `http.client` connections kept alive, under the deadline.

`WhatsAppClient(transport="stdlib")` sends through `StdlibTransport`: the same flows, driver,
gate, classifier and errors as over httpx; only the bytes on the wire go through `http.client`.
It imports neither httpx nor asyncio, so a process that sends one message (`wa-auth send`)
starts in a fraction of the time.

What it keeps from httpx, so the two are interchangeable:

- Persistent connections, one idle set per origin (scheme, host, port, proxy), at most
  `max_idle` each; a connection the peer closed while idle is dropped before it is reused
  (httpcore's readability check), never written to.
- The timeouts by phase (connect, write, read; the pool's is the client's gate), each wait cut
  to the time left before the call's deadline (`wa_auth._deadline`): every socket connect,
  send and receive asks, so a peer that trickles its answer cannot outlive the call.
- The same error kinds, named as httpx names them (`ConnectError`, `ConnectTimeout`,
  `ProxyError`, `WriteError`, `WriteTimeout`, `ReadError`, `ReadTimeout`,
  `RemoteProtocolError`) and mapped by `transport_error`: a failure before the request could
  reach the peer says it was not sent; any later one leaves a send `maybe_delivered`.
- `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and `NO_PROXY` from the environment (httpx's
  rules), HTTPS through a `CONNECT` tunnel, proxy credentials from the proxy URL.
- TLS verified against `SSL_CERT_FILE` or `SSL_CERT_DIR` when set, else certifi's bundle when
  certifi is importable, else the system store.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import SplitResult, unquote, urlsplit

from wa_auth import _deadline
from wa_auth._client._base import Timeouts, plain_cause, transport_error
from wa_auth._client._wire import Answer, TimedOut, encode_headers, read_answer, request_head
from wa_auth._core import Request, Response, bearer
from wa_auth._redact import redact_text
from wa_auth.errors import RequestValidationError, WhatsAppError

if TYPE_CHECKING:
    import ssl

    from wa_auth.providers import Token

__all__ = ["DEFAULT_MAX_IDLE", "Addressing", "Headers", "Origin", "StdlibTransport", "proxy_for"]

#: Idle connections kept per origin: httpx's `max_keepalive_connections`.
DEFAULT_MAX_IDLE: Final = 16

#: (scheme, host, port, proxy URL or None): the connections one idle set holds.
Origin = tuple[str, str, int, str | None]
#: A URL's origin, request target, `Host` value and proxy header lines.
_Place = tuple[Origin, str, bytes, bytes]
#: The most URLs (and header sets) whose place (and lines) are kept: a few per client.
_MAX_KEPT: Final = 256


# --- the error kinds, named as httpx names them -------------------------------------------------


class _Failure(Exception):  # noqa: N818 - httpx's names, which the errors' text quotes
    """One way a request failed; *not_sent* says no byte of it can have reached the peer.

    The class says it for its kind; an instance may say it too (a write refused before its
    first byte because the deadline had already passed).
    """

    not_sent: bool = False


class ConnectError(_Failure):
    """The connection (TCP, proxy tunnel or TLS handshake) could not be made."""

    not_sent = True


class ConnectTimeout(ConnectError):  # noqa: N818 - httpx's name
    """The connection took longer than the connect timeout or the deadline."""


class ProxyError(ConnectError):
    """The proxy refused the tunnel (a 407 or 502 to `CONNECT`): nothing reached the peer."""


class WriteError(_Failure):
    """The request could not be written in full."""


class WriteTimeout(WriteError):  # noqa: N818 - httpx's name
    """Writing the request took longer than the write timeout or the deadline."""


class ReadError(_Failure):
    """The answer could not be read."""


class ReadTimeout(ReadError):  # noqa: N818 - httpx's name
    """No byte of the answer came within the read timeout, or the deadline passed."""


class RemoteProtocolError(ReadError):
    """The peer broke HTTP/1.1: closed without an answer, a bad status line, a cut body."""


def _bounded(timeout: float | None, error: type[_Failure]) -> float | None:
    """Return *timeout* cut to the time left, or raise *error* once the deadline has passed."""
    deadline = _deadline.current()
    if deadline is None:
        return timeout
    left = deadline.at - time.monotonic()
    if left <= 0:
        raise error(f"{deadline.what} passed")
    return left if timeout is None or timeout > left else timeout


def _timed_out(error: type[_Failure], exc: BaseException) -> _Failure:
    """Return *error* for a socket timeout *exc*, naming the deadline when that was why."""
    deadline = _deadline.passed()
    return error(f"{deadline.what} passed" if deadline is not None else str(exc) or "timed out")


class _HTTPConnection(http.client.HTTPConnection):
    """A connection `http.client` makes (TCP); `_wire` writes and reads on its socket."""


class _HTTPSConnection(http.client.HTTPSConnection):
    """A connection `http.client` makes (TCP, a `CONNECT` tunnel, TLS)."""


class Headers(Mapping[str, str]):
    """An answer's headers, looked up without regard to case (repeated ones joined by ", ")."""

    def __init__(
        self, items: Iterable[tuple[str, str]] = (), *, lowered: dict[str, str] | None = None
    ) -> None:
        if lowered is not None:  # joined and lower-cased already (`_wire`): kept as they are
            self._items = lowered
            return
        joined: dict[str, str] = {}
        for name, value in items:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        self._items = joined

    #: Not httpx's raw pairs: `models.pick_headers` asks by name (and finds no attribute cheaply).
    raw = None

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        """The header's value, or *default* (a dict look-up: no KeyError raised and caught)."""
        return self._items.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


# --- proxies and TLS, as httpx reads them from the environment ----------------------------------


def _env(name: str) -> str | None:
    return os.environ.get(name.lower()) or os.environ.get(name.upper()) or None


def _bypassed(host: str) -> bool:
    """Whether `NO_PROXY` names *host* (curl's rules, as httpx applies them)."""
    host = host.lower().strip("[]")
    for entry in (_env("no_proxy") or "").split(","):
        name = entry.strip().lower()
        if "://" in name:
            name = name.split("://", 1)[1]
        name = name.strip("[]").rstrip("/")
        if not name:
            continue
        if name == "*":
            return True
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(scheme: str, host: str) -> str | None:
    """Return the proxy URL the environment sets for *scheme* and *host*, or None."""
    if _bypassed(host):
        return None
    proxy = _env(f"{scheme}_proxy") or _env("all_proxy")
    if proxy is None:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _ssl_context() -> ssl.SSLContext:
    """A verifying client context with httpx's trust store: the environment, certifi, system."""
    import ssl

    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx; not with the stdlib only
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _is_dead(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle *conn* was closed by its peer (or has bytes nobody asked for)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)  # pragma: no cover - Windows
        return bool(readable)  # pragma: no cover
    except (OSError, ValueError):  # pragma: no cover - a socket closed under us
        return True


# --- the transport ------------------------------------------------------------------------------


class Addressing:
    """Where a request goes and its header lines, worked out once per URL and header set.

    Shared by the transports that write their own heads (`StdlibTransport`, and the asyncio
    `RawTransport`): a subclass sets `_headers`, `_proxies`, `_places` and `_lines`.
    """

    _headers: dict[str, str]
    _proxies: dict[tuple[str, str], str | None]
    _places: dict[str, _Place]
    _lines: dict[tuple[tuple[str, str], ...], bytes]

    def _message(self, request: Request, secret: str) -> tuple[Origin, bytes]:
        """The origin *request* goes to and its bytes on the wire, head and body."""
        place = self._places.get(request.url)
        if place is None:
            place = self._place(request.url)
        origin, target, host, proxy_lines = place
        lines = self._lines.get(request.headers)
        if lines is None:
            lines = self._header_lines(request.headers)
        content = request.content
        message = b"".join(
            (
                request_head(request.method, target, host, content),
                lines,
                encode_headers({"Authorization": "Bearer " + secret}),
                proxy_lines,
                b"\r\n",
                content or b"",
            )
        )
        return origin, message

    def _place(self, url_text: str) -> _Place:
        """Where a URL goes: its origin, request target, `Host` and proxy lines (kept)."""
        url = urlsplit(url_text)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise RequestValidationError(
                f"base_url must be an http(s) URL: {url.scheme or 'no scheme'} is not supported"
            )
        host = url.hostname
        default = 443 if url.scheme == "https" else 80
        port = url.port or default
        route = (url.scheme, host)
        proxy = self._proxies.get(route, "?")
        if proxy == "?":
            proxy = self._proxies[route] = proxy_for(url.scheme, host)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        proxy_lines = b""
        if proxy is not None and url.scheme == "http":
            # A plain-HTTP proxy takes the absolute form, and the URL's own host and port.
            target = url_text
            name = _idna(url.netloc)
            proxy_lines = encode_headers(_proxy_authorization(urlsplit(proxy)))
        else:
            name = _idna(host)
            if ":" in host:
                name = b"[" + name + b"]"
            if port != default:
                name += b":%d" % port
        place = ((url.scheme, host, port, proxy), target, name, proxy_lines)
        if len(self._places) >= _MAX_KEPT:
            self._places.clear()
        self._places[url_text] = place
        return place

    def _header_lines(self, extra: tuple[tuple[str, str], ...]) -> bytes:
        """The lines of the client's headers and a request's own (kept per set)."""
        lines = encode_headers({**self._headers, **dict(extra)})
        if len(self._lines) >= _MAX_KEPT:
            self._lines.clear()
        self._lines[extra] = lines
        return lines


#: What a transport's exchange raises that `send_failure` maps to the library's error.
SEND_FAILURES: Final = (_Failure, http.client.InvalidURL, ValueError, UnicodeError)


def send_failure(request: Request, exc: Exception, secret: str) -> WhatsAppError:
    """The library's error for a failed exchange: a `TransportError`, or a bad URL's refusal.

    The sync (`StdlibTransport`) and async (`_raw.RawTransport`) shells both map through here,
    the token scrubbed from the cause.
    """
    error: WhatsAppError
    if isinstance(exc, _Failure):
        error = transport_error(request, exc, not_sent=exc.not_sent)
    else:
        error = RequestValidationError(f"invalid URL: {redact_text(str(exc), secret)}")
    error.__cause__ = plain_cause(exc, secret)
    return error


class StdlibTransport(Addressing):
    """Sends a `Request` over `http.client`, reusing connections; thread-safe.

    Args:
        timeouts: The seconds of each phase (the pool's is the client's gate, not here).
        headers: The headers every request carries (User-Agent, Accept).
        max_idle: Idle connections kept per origin.
    """

    def __init__(
        self, timeouts: Timeouts, headers: Mapping[str, str], *, max_idle: int = DEFAULT_MAX_IDLE
    ) -> None:
        self._timeouts = timeouts
        self._headers = dict(headers)
        self._max_idle = max_idle
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()  # held only to take or put a connection: never over I/O
        self._context: ssl.SSLContext | None = None
        self._closed = False
        #: The proxy of each (scheme, host), read from the environment on the first request.
        self._proxies: dict[tuple[str, str], str | None] = {}
        #: What each URL and each set of request headers comes to, worked out once.
        self._places: dict[str, _Place] = {}
        self._lines: dict[tuple[tuple[str, str], ...], bytes] = {}

    def send(self, request: Request, token: Token) -> Response:
        """Send *request* with *token*; return the answer, or raise a `WhatsAppError`."""
        secret = bearer(token)
        try:
            return self._exchange(request, secret)
        except WhatsAppError:
            raise
        except SEND_FAILURES as exc:
            error = send_failure(request, exc, secret)
        # Raised outside the handler: the library's exception is not the context.
        try:
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through it

    def _exchange(self, request: Request, secret: str) -> Response:
        origin, message = self._message(request, secret)
        conn = self._take(origin)
        reusable = False
        try:
            answer = self._roundtrip(conn, request.method, message)
            reusable = not answer.will_close
            return Response(answer.status, Headers(lowered=answer.headers), answer.body)
        finally:
            if reusable:
                self._put(origin, conn)
            else:
                conn.close()

    def _roundtrip(self, conn: http.client.HTTPConnection, method: str, message: bytes) -> Answer:
        timeouts = self._timeouts
        if conn.sock is None:
            conn.timeout = _bounded(timeouts.connect, ConnectTimeout)
            try:
                conn.connect()
            except TimeoutError as exc:
                raise _timed_out(ConnectTimeout, exc) from None
            except OSError as exc:
                if str(exc).startswith("Tunnel connection failed"):
                    raise ProxyError(str(exc)) from None
                raise ConnectError(str(exc) or type(exc).__name__) from None
        sock = conn.sock
        assert sock is not None
        try:
            write = _bounded(timeouts.write, WriteTimeout)
        except WriteTimeout as exc:
            exc.not_sent = True  # the deadline passed before the first byte: nothing went out
            raise
        try:
            sock.settimeout(write)
            sock.sendall(message)
        except TimeoutError as exc:
            raise _timed_out(WriteTimeout, exc) from None
        except OSError as exc:
            raise WriteError(str(exc) or type(exc).__name__) from None
        try:
            return read_answer(sock, timeouts.read, method)
        except TimedOut as exc:
            raise ReadTimeout(str(exc)) from None
        except http.client.HTTPException as exc:
            raise RemoteProtocolError(_protocol_text(exc)) from None
        except OSError as exc:
            raise ReadError(str(exc) or type(exc).__name__) from None

    def _take(self, origin: Origin) -> http.client.HTTPConnection:
        """An idle connection to *origin* that is still open, or a new (unconnected) one."""
        dead = []
        conn = None
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                candidate = idle.pop()
                if _is_dead(candidate):
                    dead.append(candidate)
                else:
                    conn = candidate
                    break
        for stale in dead:
            stale.close()
        return conn if conn is not None else self._open(origin)

    def _open(self, origin: Origin) -> http.client.HTTPConnection:
        """A new connection (not yet connected) for *origin*: direct, or through its proxy."""
        scheme, host, port, proxy = origin
        if proxy is None:
            return self._connection(scheme, host, port)
        where = urlsplit(proxy)
        if where.scheme != "http" or not where.hostname:
            # http.client cannot speak TLS to the proxy inside TLS to the peer.
            raise ProxyError(
                f"the proxy URL must be http://host:port for the stdlib transport, got a "
                f"{where.scheme!r} URL (use transport='httpx' for an https proxy)"
            )
        proxy_port = where.port or 80
        if scheme == "http":
            return self._connection("http", where.hostname, proxy_port)
        # HTTPS through a CONNECT tunnel: TCP to the proxy, then TLS to the peer inside it.
        conn = self._connection("https", where.hostname, proxy_port)
        conn.set_tunnel(host, port, headers=_proxy_authorization(where))
        return conn

    def _connection(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        """A new connection object (not yet connected) to *host*:*port*."""
        if scheme == "https":
            if self._context is None:
                self._context = _ssl_context()
            return _HTTPSConnection(host, port, context=self._context)
        return _HTTPConnection(host, port)

    def _put(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < self._max_idle:
                    idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        """Close every idle connection; one in use closes when its request ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _idna(host: str) -> bytes:
    """*host* as the `Host` header carries it (http.client's rule: ASCII, else IDNA)."""
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host.encode("idna")


def _proxy_authorization(proxy: SplitResult) -> dict[str, str]:
    """The `Proxy-Authorization` header of the credentials in a proxy URL, if any."""
    if proxy.username is None:
        return {}
    credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def _protocol_text(exc: http.client.HTTPException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return f"the answer ended after {len(exc.partial)} bytes of its body"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "Server disconnected without sending a response."
    return f"{type(exc).__name__}: {exc}"
