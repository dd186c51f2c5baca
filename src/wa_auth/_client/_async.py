"""`AsyncClientBase`: what both asyncio clients share, and `bind_async`, its method binder.

The endpoint methods (the flows of `wa_auth._endpoints`, bound by `bind_async`), the in-flight
gate and one pool per event loop; a subclass supplies the transport (`AsyncWhatsAppClient`
over httpx, `FastAsyncWhatsAppClient` over aiohttp).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, TypeVar

from typing_extensions import ParamSpec, Unpack

from wa_auth import _endpoints
from wa_auth._client._base import BaseClient, ClientOptions, method_signature
from wa_auth._client._shell import AsyncGate, adrive
from wa_auth._closing import AsyncClosing
from wa_auth._core import Flow, Request, Response
from wa_auth.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from wa_auth._context import Context
    from wa_auth.models import SendResult
    from wa_auth.providers import Token

__all__ = ["AsyncClientBase", "bind_async"]

P = ParamSpec("P")
T = TypeVar("T")


def bind_async(
    flow: Callable[Concatenate[Context, P], Flow[T]],
) -> Callable[Concatenate[AsyncClientBase, P], Coroutine[Any, Any, T]]:
    """Return *flow* as a coroutine method of the asyncio clients (see `bind_sync`)."""

    @functools.wraps(flow)
    async def method(self: AsyncClientBase, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._drive(flow(self._ctx, *args, **kwargs))

    method.__signature__ = method_signature(flow)  # type: ignore[attr-defined]
    return method


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

    def _send_within(
        self, intent: Any, seconds: float, what: str
    ) -> Coroutine[Any, Any, SendResult]:
        """`send(intent)`, bounded by the caller's deadline too (a guard's budget).

        The call's deadline is the sooner of *seconds* from now (*what*: its words) and the
        client's own; a sooner one already in force stays, as ever. The same bound as the
        caller setting its deadline around `send` (`wa_auth._deadline.enter`), with one
        context variable set instead of two. Not a coroutine of its own on the loop the client
        is bound to: it returns the driver's, so a guard's send has two coroutines fewer in
        its await chain (this and `send`'s).
        """
        own = self._deadline
        limit = own if own[0] < seconds else (seconds, what)
        flow = _endpoints.send(self._ctx, intent)
        if self._loop is not None and asyncio.get_running_loop() is self._loop:
            return adrive(self._ctx, flow, self._send, self._gate, limit)
        return self._bound_then(flow, limit)

    async def _bound_then(self, flow: Flow[T], limit: tuple[float, str]) -> T:
        await self._bind()
        return await adrive(self._ctx, flow, self._send, self._gate, limit)

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
