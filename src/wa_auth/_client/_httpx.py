"""`WhatsAppClient` and `AsyncWhatsAppClient`: thin shells that drive `_core` flows over httpx.

Each performs the effects of the flows (`_shell`) and sends over httpx; the endpoints are the
flows of `wa_auth._endpoints` bound as methods, one line each (`bind_sync` here, `bind_async`
beside `AsyncClientBase`, which both asyncio clients share). `translate` is the one boundary
where httpx's exceptions become wa_auth's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, Final, TypeVar

import httpx
from typing_extensions import ParamSpec, Unpack

from wa_auth import _endpoints
from wa_auth._client._async import AsyncClientBase
from wa_auth._client._base import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SYNC_MAX_IN_FLIGHT,
    BaseClient,
    ClientOptions,
    method_signature,
    plain_cause,
    transport_error,
)
from wa_auth._client._shell import Gate, drive
from wa_auth._closing import Closing
from wa_auth._core import Flow, Request, Response, auth_headers
from wa_auth._deadline_io import bound, request_timeout
from wa_auth._redact import redact_text
from wa_auth.errors import RequestValidationError, WhatsAppError

if TYPE_CHECKING:
    from wa_auth._context import Context
    from wa_auth.providers import Token

__all__ = [
    "DEFAULT_LIMITS",
    "AsyncWhatsAppClient",
    "WhatsAppClient",
    "bind_sync",
    "translate",
]

P = ParamSpec("P")
T = TypeVar("T")

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


def bind_sync(
    flow: Callable[Concatenate[Context, P], Flow[T]],
) -> Callable[Concatenate[WhatsAppClient, P], T]:
    """Return *flow* as a method of `WhatsAppClient`: driven to its end, its model returned."""

    @functools.wraps(flow)
    def method(self: WhatsAppClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._drive(flow(self._ctx, *args, **kwargs))

    method.__signature__ = method_signature(flow)  # type: ignore[attr-defined]
    return method


class WhatsAppClient(BaseClient, Closing):
    """A synchronous WhatsApp Cloud API client over `httpx.Client`.

    Args:
        token: A fixed access token; or pass *token_provider*.
        token_provider: Where tokens come from (file, environment, Vault, rotating...), or a
            token string (a static provider).
        phone_number_id: The default sender; every call accepts a `phone_number_id=` override.
        business_account_id: The WABA id, for `list_phone_numbers` and `list_templates`.
        api_version: The Graph API version (default pinned, see `docs/client.md`).
        base_url: Meta's Graph host, or the sandbox's `base_url`.
        timeout: Seconds, or an `httpx.Timeout`: each wait alone (connect, each read...).
        http_client: An `httpx.Client` you own (not closed by `close()`); the deadline bounds
            the socket waits of its httpx transports too, during this client's calls only.
        transport: An httpx transport for the client this object creates.
        consumer: A label (an n8n workflow's name) carried in events and logs.
        events: The `Events` hub to emit to; default: one that logs.
        user_agent: The User-Agent header.
        verdicts: The `TokenVerdicts` store of dead tokens; default: a fresh in-memory one.
            Pass one store to several clients to share what they learn.
        app_token_provider: A provider of an app token for `token_health()`, or the token.
        token_health_ttl: Seconds a `token_health()` result is cached.
        max_in_flight: The most requests in flight at once (default 32, the pool's size). It
            is also the most that can ever go out with a token Meta has just proved dead.
        deadline: Seconds one call may take, every wait included (default 30): the gate, the
            token, the pool, the connect, each read and write, the one retry with a new token.
            A call past it fails as `TransportError` (`maybe_delivered` when the request may
            have reached Meta). Inside a guarded send, the guard's budget may end it sooner.
    """

    def __init__(
        self,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(**options)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=self._timeout, transport=transport, limits=DEFAULT_LIMITS, headers=self._headers
        )
        bound(self._http)
        self._gate = Gate(
            self._max_in_flight or DEFAULT_SYNC_MAX_IN_FLIGHT, httpx.Timeout(self._timeout).pool
        )

    @property
    def max_in_flight(self) -> int:
        """The most requests in flight at once (`max_in_flight=`, default 32: the pool size).

        It is also the most requests that can ever go out with a token Meta has just proved
        dead: the verdict is checked while a request holds its slot, and the slot is freed only
        after the answer was classified and the verdict recorded.
        """
        return self._gate.size

    def _drive(self, flow: Flow[T]) -> T:
        return drive(self._ctx, flow, self._send, self._gate, self._deadline)

    def _send(self, request: Request, token: Token) -> Response:
        headers = auth_headers(request, token)
        http = self._http
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
        """Close the HTTP connections this client opened."""
        if self._owns_http:
            self._http.close()

    send = bind_sync(_endpoints.send)
    send_text = bind_sync(_endpoints.send_text)
    send_template = bind_sync(_endpoints.send_template)
    send_media = bind_sync(_endpoints.send_media)
    send_interactive_buttons = bind_sync(_endpoints.send_interactive_buttons)
    send_interactive_list = bind_sync(_endpoints.send_interactive_list)
    send_reaction = bind_sync(_endpoints.send_reaction)
    send_location = bind_sync(_endpoints.send_location)
    mark_as_read = bind_sync(_endpoints.mark_as_read)
    upload_media = bind_sync(_endpoints.upload_media)
    get_media_url = bind_sync(_endpoints.get_media_url)
    download_media = bind_sync(_endpoints.download_media)
    delete_media = bind_sync(_endpoints.delete_media)
    get_phone_number = bind_sync(_endpoints.get_phone_number)
    list_phone_numbers = bind_sync(_endpoints.list_phone_numbers)
    get_business_profile = bind_sync(_endpoints.get_business_profile)
    list_templates = bind_sync(_endpoints.list_templates)
    debug_token = bind_sync(_endpoints.debug_token)
    token_health = bind_sync(_endpoints.token_health)


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
            timeout=self._timeout,
            transport=self._transport,
            limits=DEFAULT_LIMITS,
            headers=self._headers,
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
