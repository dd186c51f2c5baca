"""httpx under the clients: `WhatsAppClient`'s httpx transport and `AsyncWhatsAppClient`.

`HttpxTransport` is what `WhatsAppClient` (`_sync`) sends through unless it is given
`transport="stdlib"`; `AsyncWhatsAppClient` drives the flows (`_shell.adrive`) over an
`httpx.AsyncClient`, its endpoints bound beside `AsyncClientBase`. `translate` is the one
boundary where httpx's exceptions become wa_auth's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx
from typing_extensions import Unpack

from wa_auth._client._async import AsyncClientBase
from wa_auth._client._base import (
    DEFAULT_MAX_IN_FLIGHT,
    ClientOptions,
    default_user_agent,
    plain_cause,
    timeouts,
    transport_error,
)
from wa_auth._core import Request, Response, auth_headers
from wa_auth._deadline_io import bound, request_timeout
from wa_auth._redact import redact_text
from wa_auth.errors import RequestValidationError, WhatsAppError

if TYPE_CHECKING:
    from wa_auth.providers import Token

__all__ = [
    "DEFAULT_LIMITS",
    "AsyncWhatsAppClient",
    "HttpxTransport",
    "httpx_headers",
    "httpx_timeout",
    "translate",
]

#: Pool sized for batch senders; httpcore's pool does work per request that grows with its size.
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=32, max_keepalive_connections=16)

# Exceptions raised before a single byte could reach Meta: the message cannot be delivered.
# ProxyError: the proxy refused the tunnel (407, 502 to CONNECT), so nothing reached Meta.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


def translate(request: Request, token: Token, exc: Exception) -> WhatsAppError:
    """Return the wa_auth error for one of httpx's exceptions, with a request-free cause."""
    error: WhatsAppError
    if isinstance(exc, httpx.UnsupportedProtocol):
        error = RequestValidationError(
            f"base_url must be an http(s) URL: {redact_text(str(exc), token.reveal())}"
        )
    elif isinstance(exc, httpx.RequestError):
        error = transport_error(request, exc, not_sent=isinstance(exc, _NOT_SENT))
    else:  # httpx.InvalidURL
        error = RequestValidationError(f"invalid URL: {redact_text(str(exc), token.reveal())}")
    error.__cause__ = plain_cause(exc, token.reveal())
    return error


def httpx_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    """The `httpx.Timeout` of a client's *timeout=* (None: 5 s to connect, 15 s for the rest)."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    t = timeouts(timeout)
    return httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)


def httpx_headers(headers: dict[str, str]) -> dict[str, str]:
    """*headers* with the default User-Agent (wa_auth's and httpx's versions) unless given."""
    return {"User-Agent": default_user_agent(f"httpx/{httpx.__version__}"), **headers}


class HttpxTransport:
    """`WhatsAppClient`'s transport over an `httpx.Client`, its socket waits under the deadline.

    Args:
        timeout: The client's *timeout=*.
        headers: The headers every request carries.
        http_client: An `httpx.Client` of yours (not closed by `close()`), or None.
        transport: An httpx transport for the `httpx.Client` this object creates.
    """

    def __init__(
        self,
        timeout: float | httpx.Timeout | None,
        headers: dict[str, str],
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._owns_http = http_client is None
        self.http = http_client or httpx.Client(
            timeout=httpx_timeout(timeout),
            transport=transport,
            limits=DEFAULT_LIMITS,
            headers=httpx_headers(headers),
        )
        bound(self.http)

    def send(self, request: Request, token: Token) -> Response:
        """Send *request* with *token*; return the answer, or raise a `WhatsAppError`."""
        headers = auth_headers(request, token)
        http = self.http
        try:
            r = http.request(
                request.method,
                request.url,
                headers=headers,
                content=request.content,
                timeout=request_timeout(http.timeout),
            )
        except (httpx.RequestError, httpx.InvalidURL) as exc:
            error = translate(request, token, exc)
        else:
            return Response(r.status_code, r.headers, r.content)
        # Raised outside the handler: httpx's exception (and its request) is not the context.
        try:
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through it

    def close(self) -> None:
        """Close the HTTP connections this object opened (not those of your `httpx.Client`)."""
        if self._owns_http:
            self.http.close()


class AsyncWhatsAppClient(AsyncClientBase):
    """An asyncio WhatsApp Cloud API client over `httpx.AsyncClient`; same methods, awaited.

    Takes the same arguments as `WhatsAppClient`, with an `httpx.AsyncClient` /
    `httpx.AsyncBaseTransport` for *http_client* / *transport*; *max_in_flight* defaults to 64
    (twice the pool, so the pool is never idle while requests wait at the gate). Use it on one
    event loop at a time: after that loop has ended it reopens its own pool on the next one.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(default_max_in_flight=DEFAULT_MAX_IN_FLIGHT, **options)
        self._owns_http = http_client is None
        self._transport = transport
        self._http = http_client or self._new_http()
        bound(self._http)

    def _new_http(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            timeout=httpx_timeout(self._timeout),
            transport=self._transport,
            limits=DEFAULT_LIMITS,
            headers=httpx_headers(self._headers),
        )
        bound(client)
        return client

    def _open_pool(self) -> None:
        self._http = self._new_http()

    async def _close_pool(self) -> None:
        await self._http.aclose()

    async def _send(self, request: Request, token: Token) -> Response:
        headers = auth_headers(request, token)
        http = self._http
        try:
            r = await http.request(
                request.method,
                request.url,
                headers=headers,
                content=request.content,
                timeout=request_timeout(http.timeout),
            )
        except (httpx.RequestError, httpx.InvalidURL) as exc:
            error = translate(request, token, exc)
        else:
            return Response(r.status_code, r.headers, r.content)
        try:
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through it
