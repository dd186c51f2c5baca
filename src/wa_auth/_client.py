"""`WhatsAppClient` and `AsyncWhatsAppClient`: thin shells that drive `_core` flows over httpx.

The endpoints are the core's flow functions bound as methods, so every endpoint, its
validation and its parsing exist once; each shell only performs the two effects (get a token,
send a request) and maps httpx's exceptions to `TransportError` at one boundary.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Final, TypeVar

import httpx
from typing_extensions import ParamSpec, Self, TypedDict, Unpack

from wa_auth import _core, _endpoints
from wa_auth._core import Context, Flow, Request, Response, auth_headers
from wa_auth._graph import DEFAULT_API_VERSION, DEFAULT_BASE_URL
from wa_auth._redact import install_log_redaction, redact_text
from wa_auth._shell import AsyncGate, Gate, adrive, drive
from wa_auth._version import package_version
from wa_auth.errors import RequestValidationError, TransportError, WhatsAppError
from wa_auth.events import Events
from wa_auth.providers import (
    Token,
    TokenProvider,
    TokenVerdicts,
    VerdictStore,
)
from wa_auth.providers._base import as_provider

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from types import TracebackType

__all__ = ["AsyncClientBase", "AsyncWhatsAppClient", "WhatsAppClient"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_TIMEOUT: Final = httpx.Timeout(15.0, connect=5.0)
#: `token_health()` asks Meta at most this often per token: scopes and expiry change rarely.
DEFAULT_TOKEN_HEALTH_TTL: Final = 300.0
#: Pool sized for batch senders; httpcore's pool does work per request that grows with its size.
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=32, max_keepalive_connections=16)
#: The sync client's in-flight gate: one slot per pooled connection, so a thread waits at the
#: gate (where it then sees a verdict recorded meanwhile), never inside httpx's pool.
DEFAULT_SYNC_MAX_IN_FLIGHT: Final = 32
#: Async requests beyond this many in flight wait on a semaphore rather than in httpcore's pool
#: queue, whose per-request work grows with its waiters (measured on loopback at 256 in flight:
#: about 3x the CPU per message without the gate).
DEFAULT_MAX_IN_FLIGHT: Final = 2 * 32

USER_AGENT: Final = f"wa-auth/{package_version()} httpx/{httpx.__version__}"

# Exceptions raised before a single byte could reach Meta: the message cannot be delivered.
# ProxyError: the proxy refused the tunnel (407, 502 to CONNECT), so nothing reached Meta.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


def transport_error(request: Request, exc: BaseException, *, not_sent: bool) -> TransportError:
    """Return the `TransportError` for a transport's *exc*; shared by every transport.

    Args:
        request: The request that failed.
        exc: The transport library's exception (httpx, aiohttp, asyncio).
        not_sent: True when no byte of the request can have reached Meta (connect failures,
            pool and connect timeouts); then the message was certainly not delivered.

    Returns:
        A transient `TransportError`; `maybe_delivered` is set when a non-idempotent request
        may have been accepted before the answer was lost.
    """
    delivered = not (not_sent or request.idempotent)
    what = "the request was not sent" if not_sent else "no complete answer came"
    return TransportError(
        f"{type(exc).__name__} on {request.operation or request.method}: {what}"
        f"{'; the message may have been delivered' if delivered else ''} ({exc})",
        maybe_delivered=delivered,
        retry_after=1.0,
        max_attempts=3,
        rule="transport",
    )


def plain_cause(exc: BaseException, *secrets: str) -> ConnectionError:
    """Return a stand-in for a transport library's *exc* to chain as `__cause__`.

    httpx's and aiohttp's exceptions keep their request (the URL of `debug_token` carries a
    token, the headers carry the bearer token) and pickle it along: the stand-in keeps only the
    exception's type and its redacted text.
    """
    return ConnectionError(f"{type(exc).__name__}: {redact_text(str(exc), *secrets)}")


def _translate(request: Request, token: Token, exc: Exception) -> WhatsAppError:
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


class ClientOptions(TypedDict, total=False):
    """The constructor options every client shares (see `WhatsAppClient` for each one)."""

    token: str | None
    token_provider: TokenProvider | None
    phone_number_id: str | int | None
    business_account_id: str | int | None
    api_version: str
    base_url: str
    timeout: float | httpx.Timeout | None
    consumer: str | None
    events: Events | None
    user_agent: str | None
    verdicts: VerdictStore | None
    app_token_provider: TokenProvider | str | None
    token_health_ttl: float
    max_in_flight: int | None


class _BaseClient:
    """Configuration and the pure parts shared by both clients."""

    def __init__(
        self,
        *,
        token: str | None = None,
        token_provider: TokenProvider | str | None = None,
        phone_number_id: str | int | None = None,
        business_account_id: str | int | None = None,
        api_version: str = DEFAULT_API_VERSION,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | httpx.Timeout | None = None,
        consumer: str | None = None,
        events: Events | None = None,
        user_agent: str | None = None,
        verdicts: VerdictStore | None = None,
        app_token_provider: TokenProvider | str | None = None,
        token_health_ttl: float = DEFAULT_TOKEN_HEALTH_TTL,
        max_in_flight: int | None = None,
    ) -> None:
        if (token is None) == (token_provider is None):
            raise RequestValidationError("pass exactly one of token= or token_provider=")
        provider = as_provider(
            token if token is not None else token_provider,
            argument="token" if token is not None else "token_provider",
        )
        if max_in_flight is not None and (
            isinstance(max_in_flight, bool)
            or not isinstance(max_in_flight, int)
            or max_in_flight < 1
        ):
            raise RequestValidationError(
                f"max_in_flight must be a positive integer, got {max_in_flight!r}"
            )
        if user_agent is not None and not (user_agent.isascii() and user_agent.isprintable()):
            raise RequestValidationError("user_agent must be printable ASCII (an HTTP header)")
        if not isinstance(api_version, str) or not api_version.startswith("v"):
            raise RequestValidationError(f"api_version must look like 'v23.0', got {api_version!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise RequestValidationError("base_url must be an http(s) URL")
        install_log_redaction()
        self._ctx = Context(
            provider=provider,
            events=events if events is not None else Events.with_logging(),
            base_url=base_url.rstrip("/"),
            api_version=api_version,
            phone_number_id=None if phone_number_id is None else str(phone_number_id),
            business_account_id=None if business_account_id is None else str(business_account_id),
            consumer=consumer,
            # A fresh store per client unless one is shared: clients given the same
            # store share what they learn about dead tokens.
            verdicts=verdicts if verdicts is not None else TokenVerdicts(),
            app_token_provider=(
                None
                if app_token_provider is None
                else as_provider(app_token_provider, argument="app_token_provider")
            ),
            health_cache=_core.TTLCache(token_health_ttl),
        )
        self._timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._headers = {"User-Agent": user_agent or USER_AGENT, "Accept": "application/json"}
        self._max_in_flight = max_in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests this client has in flight at once.

        It is also the most requests that can ever go out with a token Meta has just proved
        dead: the verdict is checked while a request holds its slot.
        """
        raise NotImplementedError

    @property
    def token_provider(self) -> TokenProvider:
        """The provider this client gets its tokens from."""
        return self._ctx.provider

    @property
    def events(self) -> Events:
        """The events hub this client emits to."""
        return self._ctx.events

    @property
    def verdicts(self) -> VerdictStore:
        """The store where this client records (and looks up) dead tokens."""
        assert self._ctx.verdicts is not None
        return self._ctx.verdicts

    @property
    def phone_number_id(self) -> str | None:
        """The default phone number id of the calls."""
        return self._ctx.phone_number_id

    @property
    def consumer(self) -> str | None:
        """The label (an n8n workflow's name) this client's events carry."""
        return self._ctx.consumer

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(phone_number_id={self._ctx.phone_number_id!r}, "
            f"api_version={self._ctx.api_version!r}, base_url={self._ctx.base_url!r}, "
            f"provider={self._ctx.provider!r})"
        )


def _method_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """Return *fn*'s signature as the bound method's: `self`, its parameters, its model.

    A flow is `(ctx: Context, ...) -> Flow[Model]`; `help()`, IDEs and the API page must show
    `(self, ...) -> Model` (a coroutine's result for the async clients).
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    returns = sig.return_annotation
    if isinstance(returns, str) and returns.startswith("Flow[") and returns.endswith("]"):
        returns = returns[len("Flow[") : -1]
    self_param = params[0].replace(name="self", annotation=inspect.Parameter.empty)
    return sig.replace(parameters=[self_param, *params[1:]], return_annotation=returns)


def _sync(
    flow: Callable[Concatenate[Context, P], Flow[T]],
) -> Callable[Concatenate[WhatsAppClient, P], T]:
    @functools.wraps(flow)
    def method(self: WhatsAppClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._drive(flow(self._ctx, *args, **kwargs))

    method.__signature__ = _method_signature(flow)  # type: ignore[attr-defined]
    return method


def _async(
    flow: Callable[Concatenate[Context, P], Flow[T]],
) -> Callable[Concatenate[AsyncClientBase, P], Coroutine[Any, Any, T]]:
    @functools.wraps(flow)
    async def method(self: AsyncClientBase, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._drive(flow(self._ctx, *args, **kwargs))

    method.__signature__ = _method_signature(flow)  # type: ignore[attr-defined]
    return method


class WhatsAppClient(_BaseClient):
    """A synchronous WhatsApp Cloud API client over `httpx.Client`.

    Args:
        token: A fixed access token; or pass *token_provider*.
        token_provider: Where tokens come from (file, environment, Vault, rotating...).
        phone_number_id: The default sender; every call accepts a `phone_number_id=` override.
        business_account_id: The WABA id, for `list_phone_numbers` and `list_templates`.
        api_version: The Graph API version (default pinned, see `docs/client.md`).
        base_url: Meta's Graph host, or the sandbox's `base_url`.
        timeout: Seconds, or an `httpx.Timeout`.
        http_client: An `httpx.Client` you own (not closed by `close()`).
        transport: An httpx transport for the client this object creates.
        consumer: A label (an n8n workflow's name) carried in events and logs.
        events: The `Events` hub to emit to; default: one that logs.
        user_agent: The User-Agent header.
        verdicts: The `TokenVerdicts` store of dead tokens; default: a fresh in-memory one.
            Pass one store to several clients to share what they learn.
        app_token_provider: A provider of an app token for `token_health()`.
        token_health_ttl: Seconds a `token_health()` result is cached.
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
        return drive(self._ctx, flow, self._send, self._gate)

    def _send(self, request: Request, token: Token) -> Response:
        headers = auth_headers(request, token)
        try:
            r = self._http.request(
                request.method, request.url, headers=headers, content=request.content
            )
        except (httpx.RequestError, httpx.InvalidURL) as exc:
            error = _translate(request, token, exc)
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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    send = _sync(_endpoints.send)
    send_text = _sync(_endpoints.send_text)
    send_template = _sync(_endpoints.send_template)
    send_media = _sync(_endpoints.send_media)
    send_interactive_buttons = _sync(_endpoints.send_interactive_buttons)
    send_interactive_list = _sync(_endpoints.send_interactive_list)
    send_reaction = _sync(_endpoints.send_reaction)
    send_location = _sync(_endpoints.send_location)
    mark_as_read = _sync(_endpoints.mark_as_read)
    upload_media = _sync(_endpoints.upload_media)
    get_media_url = _sync(_endpoints.get_media_url)
    download_media = _sync(_endpoints.download_media)
    delete_media = _sync(_endpoints.delete_media)
    get_phone_number = _sync(_endpoints.get_phone_number)
    list_phone_numbers = _sync(_endpoints.list_phone_numbers)
    get_business_profile = _sync(_endpoints.get_business_profile)
    list_templates = _sync(_endpoints.list_templates)
    debug_token = _sync(_endpoints.debug_token)
    token_health = _sync(_endpoints.token_health)


class AsyncClientBase(_BaseClient):
    """What both asyncio clients share: the endpoint methods, the gate, one pool per loop.

    A subclass supplies the transport: `_send`, `_open_pool`, `_close_pool`. The pool and the
    gate belong to the event loop of the first request. When that loop has ended (a second
    `asyncio.run()`), a pool the client opened is opened again on the new loop; the old one
    was closed when its loop shut down. A pool passed in by the caller cannot be reopened, and
    a loop still running in another thread cannot be shared: both raise
    `RequestValidationError` that says to use one client per event loop.
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
        return await adrive(self._ctx, flow, self._send, self._gate)

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        old, self._loop = self._loop, loop
        if old is not None:
            if old.is_running():
                self._loop = old
                raise RequestValidationError(
                    f"this {type(self).__name__} is in use on an event loop of another thread: "
                    "use one client per event loop"
                )
            if not self._owns_http:
                self._loop = old
                raise RequestValidationError(
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    send = _async(_endpoints.send)
    send_text = _async(_endpoints.send_text)
    send_template = _async(_endpoints.send_template)
    send_media = _async(_endpoints.send_media)
    send_interactive_buttons = _async(_endpoints.send_interactive_buttons)
    send_interactive_list = _async(_endpoints.send_interactive_list)
    send_reaction = _async(_endpoints.send_reaction)
    send_location = _async(_endpoints.send_location)
    mark_as_read = _async(_endpoints.mark_as_read)
    upload_media = _async(_endpoints.upload_media)
    get_media_url = _async(_endpoints.get_media_url)
    download_media = _async(_endpoints.download_media)
    delete_media = _async(_endpoints.delete_media)
    get_phone_number = _async(_endpoints.get_phone_number)
    list_phone_numbers = _async(_endpoints.list_phone_numbers)
    get_business_profile = _async(_endpoints.get_business_profile)
    list_templates = _async(_endpoints.list_templates)
    debug_token = _async(_endpoints.debug_token)
    token_health = _async(_endpoints.token_health)


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

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout,
            transport=self._transport,
            limits=DEFAULT_LIMITS,
            headers=self._headers,
        )

    def _open_pool(self) -> None:
        self._http = self._new_http()

    async def _close_pool(self) -> None:
        await self._http.aclose()

    async def _send(self, request: Request, token: Token) -> Response:
        headers = auth_headers(request, token)
        try:
            r = await self._http.request(
                request.method, request.url, headers=headers, content=request.content
            )
        except (httpx.RequestError, httpx.InvalidURL) as exc:
            error = _translate(request, token, exc)
        else:
            return Response(r.status_code, r.headers, r.content)
        try:
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through it
