"""`WhatsAppClient` and `AsyncWhatsAppClient`: thin shells that drive `_core` flows over httpx.

Each performs the effects of the flows (`wa_auth._shell`) and sends over httpx; the endpoints
are the flows of `wa_auth._endpoints` bound as methods, one line each. `AsyncClientBase` holds
what both asyncio clients share (this one and `FastAsyncWhatsAppClient`): the bound methods,
the in-flight gate, and one pool per event loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

import httpx
from typing_extensions import Unpack

from wa_auth import _endpoints
from wa_auth._base_client import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SYNC_MAX_IN_FLIGHT,
    BaseClient,
    ClientOptions,
    bind_async,
    bind_sync,
    translate,
)
from wa_auth._closing import AsyncClosing, Closing
from wa_auth._core import Flow, Request, Response, auth_headers
from wa_auth._deadline_io import bound, request_timeout
from wa_auth._exports import claim as _claim
from wa_auth._shell import AsyncGate, Gate, adrive, drive
from wa_auth.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from wa_auth.providers import Token

__all__ = ["AsyncClientBase", "AsyncWhatsAppClient", "ClientOptions", "WhatsAppClient"]

T = TypeVar("T")


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


class AsyncClientBase(BaseClient, AsyncClosing):
    """What both asyncio clients share: the endpoint methods, the gate, one pool per loop.

    A subclass supplies the transport: `_send`, `_open_pool`, `_close_pool`. The pool and the
    gate belong to the event loop of the first request. When that loop has ended (a second
    `asyncio.run()`), a pool the client opened is opened again on the new loop; the old one
    was closed when its loop shut down. A pool passed in by the caller cannot be reopened (the
    `ConfigurationError` says to create the client and its pool on the loop that uses them),
    and a loop still running in another thread cannot be shared (one client per event loop).
    """

    _owns_http: bool

    def __init__(self, *, default_max_in_flight: int, **options: Unpack[ClientOptions]) -> None:
        super().__init__(**options)
        self._gate_size = self._max_in_flight or default_max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: AsyncGate = asyncio.Semaphore(self._gate_size)
        self._keeper: AsyncGenerator[None, None] | None = None
        self._closed = False

    @property
    def max_in_flight(self) -> int:
        """The most requests in flight at once (`max_in_flight=`).

        It is also the most requests that can ever go out with a token Meta has just proved
        dead: the verdict is checked while a request holds its slot, and the slot is freed only
        after the answer was classified and the verdict recorded.
        """
        return self._gate_size

    async def _drive(self, flow: Flow[T]) -> T:
        if asyncio.get_running_loop() is not self._loop:
            await self._bind()
        return await adrive(self._ctx, flow, self._send, self._gate, self._deadline)

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        old, self._loop = self._loop, loop
        if old is not None:
            if old.is_running():
                self._loop = old
                raise ConfigurationError(
                    f"this {type(self).__name__} is in use on an event loop of another thread: "
                    "use one client per event loop"
                )
            if not self._owns_http:
                self._loop = old
                raise ConfigurationError(
                    f"this {type(self).__name__}'s http_client belongs to an event loop that has "
                    "ended: create the client (and its http_client) on the loop that uses it"
                )
            self._gate = asyncio.Semaphore(self._gate_size)
            if self._closed:
                return  # closed by `aclose()`: stays closed
            self._open_pool()
        if self._owns_http:
            # Closed by the loop's shutdown (`asyncio.run` closes every async generator before
            # it closes the loop), so no connection outlives the loop it belongs to.
            self._keeper = self._close_at_shutdown()
            await self._keeper.__anext__()

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            if self._loop is loop:
                await self._close_pool()

    def _open_pool(self) -> None:
        raise NotImplementedError

    async def _close_pool(self) -> None:
        raise NotImplementedError

    async def _send(self, request: Request, token: Token) -> Response:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the HTTP connections this client opened."""
        self._closed = True
        if self._owns_http:
            await self._close_pool()

    send = bind_async(_endpoints.send)
    send_text = bind_async(_endpoints.send_text)
    send_template = bind_async(_endpoints.send_template)
    send_media = bind_async(_endpoints.send_media)
    send_interactive_buttons = bind_async(_endpoints.send_interactive_buttons)
    send_interactive_list = bind_async(_endpoints.send_interactive_list)
    send_reaction = bind_async(_endpoints.send_reaction)
    send_location = bind_async(_endpoints.send_location)
    mark_as_read = bind_async(_endpoints.mark_as_read)
    upload_media = bind_async(_endpoints.upload_media)
    get_media_url = bind_async(_endpoints.get_media_url)
    download_media = bind_async(_endpoints.download_media)
    delete_media = bind_async(_endpoints.delete_media)
    get_phone_number = bind_async(_endpoints.get_phone_number)
    list_phone_numbers = bind_async(_endpoints.list_phone_numbers)
    get_business_profile = bind_async(_endpoints.get_business_profile)
    list_templates = bind_async(_endpoints.list_templates)
    debug_token = bind_async(_endpoints.debug_token)
    token_health = bind_async(_endpoints.token_health)


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


_claim(__name__, globals())
