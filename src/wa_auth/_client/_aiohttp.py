"""`FastAsyncWhatsAppClient`: the same `_core` flows driven by aiohttp instead of httpx.

The `httpx.AsyncClient` layer alone costs about as much CPU per request as aiohttp needs for a
whole one, so batch senders that keep dozens of requests in flight are better served by
aiohttp. Only the transport differs: the endpoints, their validation and parsing, the
provider, verdict and redaction behaviour come from the same flows and the same driver
(`_shell.adrive`), and the same models and errors come back. aiohttp is an optional extra
(`pip install 'wa-auth[fast]'`), imported when the first client is made.
"""

from __future__ import annotations

import asyncio
import math
from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal

from typing_extensions import Unpack

from wa_auth import _deadline
from wa_auth._client._async import AsyncClientBase
from wa_auth._client._base import (
    ClientOptions,
    default_user_agent,
    plain_cause,
    timeouts,
    transport_error,
)
from wa_auth._core import Request, Response, bearer
from wa_auth._redact import redact_text
from wa_auth._version import package_version
from wa_auth.errors import ConfigurationError, RequestValidationError, WhatsAppError
from wa_auth.providers import Token

if TYPE_CHECKING:
    import aiohttp
    import httpx

    from wa_auth._client._raw import RawTransport

__all__ = ["FastAsyncWhatsAppClient"]

#: aiohttp's own default: its pool has no per-request cost that grows with its size, unlike
#: httpcore's, so it keeps more connections than the httpx clients (measured at 64 in flight:
#: 0.76x raw aiohttp with 32 connections, where half the requests waited for one).
FAST_MAX_CONNECTIONS: Final = 100

#: The connection marks of the request in flight in this task: the connector of a session the
#: client opened appends one when the request has its connection (see `_connector_class`).
_CONNECTED: Final[ContextVar[list[bool] | None]] = ContextVar("wa_auth_connected", default=None)

#: The most distinct URLs the client keeps parsed (a send's URL names its sender).
_URL_CACHE: Final = 256

_EXTRA_HINT: Final = (
    "FastAsyncWhatsAppClient needs aiohttp (3.10 or later): pip install 'wa-auth[fast]'"
)


def _import_aiohttp() -> ModuleType:
    """Import aiohttp, or fail with an error that names the extra to install."""
    try:
        import aiohttp
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT, name="aiohttp") from exc
    if not hasattr(aiohttp, "ConnectionTimeoutError"):  # pragma: no cover - aiohttp < 3.10
        raise ImportError(_EXTRA_HINT + f" (found aiohttp {aiohttp.__version__})", name="aiohttp")
    return aiohttp


def _client_timeout(aiohttp_mod: ModuleType, timeout: float | httpx.Timeout | None) -> Any:
    """Translate an httpx-style timeout into `aiohttp.ClientTimeout`.

    aiohttp's `connect` covers waiting for a pooled connection *and* opening one, so it is
    httpx's pool plus connect budget; aiohttp has no write timeout.
    """
    t = timeouts(timeout)
    pool_and_connect = None if t.pool is None or t.connect is None else t.pool + t.connect
    return aiohttp_mod.ClientTimeout(
        total=None,
        connect=pool_and_connect,
        sock_connect=t.connect,
        sock_read=t.read,
        # aiohttp rounds a timeout above this up to a whole second of loop time: a deadline
        # is kept to the moment, not to the next second.
        ceil_threshold=math.inf,
    )


def _connector_class(aiohttp_mod: ModuleType) -> Any:
    """Return a `TCPConnector` that marks when a request has its connection.

    aiohttp reports a request's `total` timeout as one `TimeoutError`, whether it struck while
    the request waited for a connection (nothing sent) or while the answer trickled in (the
    message may have been delivered). The mark tells the two apart.
    """

    class Connector(aiohttp_mod.TCPConnector):  # type: ignore[misc,name-defined]
        async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
            connection = await super().connect(req, traces, timeout)
            marks = _CONNECTED.get()
            if marks is not None:
                marks.append(True)
            return connection

    return Connector


def _map_error(
    aiohttp_mod: ModuleType, request: Request, exc: BaseException, *, connected: bool
) -> WhatsAppError:
    """Return the wa_auth error for an aiohttp/asyncio exception (the fast path's one boundary).

    *connected* is False only when the request is known never to have had a connection.
    """
    if isinstance(exc, aiohttp_mod.InvalidURL | aiohttp_mod.NonHttpUrlClientError):
        return RequestValidationError(f"invalid URL: {redact_text(str(exc))}")
    # Connect failures and connect/pool timeouts happen before a byte is written.
    not_sent = isinstance(
        exc, aiohttp_mod.ClientConnectorError | aiohttp_mod.ConnectionTimeoutError
    )
    detail = None
    if isinstance(exc, asyncio.TimeoutError):
        deadline = _deadline.passed()
        if deadline is not None:
            detail = f"{deadline.what} passed"
            not_sent = not_sent or not connected
    return transport_error(request, exc, not_sent=not_sent, detail=detail)


class FastAsyncWhatsAppClient(AsyncClientBase):
    """An asyncio WhatsApp Cloud API client over aiohttp; same methods, models and errors.

    A drop-in for `AsyncWhatsAppClient` where throughput at high concurrency matters (batch
    senders, n8n batches); both share `AsyncClientBase`. Needs the `fast` extra. Takes the
    same arguments as `AsyncWhatsAppClient`, except that *http_client* is an
    `aiohttp.ClientSession` you own (not closed by `aclose()`) and there is no *transport*.

    Args:
        token: A fixed access token; or pass *token_provider*.
        token_provider: Where tokens come from (file, environment, Vault, rotating...), or a
            token string.
        phone_number_id: The default sender; every call accepts a `phone_number_id=` override.
        business_account_id: The WABA id, for `list_phone_numbers` and `list_templates`.
        api_version: The Graph API version.
        base_url: Meta's Graph host, or the sandbox's `base_url`.
        timeout: Seconds, or an `httpx.Timeout` (its write budget applies to `"raw"` only).
        transport: `"aiohttp"` (the default) or `"raw"`: HTTP/1.1 written and read by wa_auth
            on asyncio's own connections (`wa_auth._client._raw`), about half the CPU per
            request, with the standard library alone (no `fast` extra needed). It reads
            `HTTPS_PROXY` / `NO_PROXY` and verifies TLS as `WhatsAppClient(transport="stdlib")`
            does; it takes no *http_client*.
        http_client: An `aiohttp.ClientSession` you own; by default the client opens one on
            its first request, with the same pool size as the httpx client, ignoring proxy
            environment variables and `.netrc` (pass your own session with `trust_env=True`
            to honour them).
        consumer: A label (an n8n workflow's name) carried in events and logs.
        events: The `Events` hub to emit to; default: one that logs.
        user_agent: The User-Agent header.
        verdicts: The store of dead tokens; default: a fresh in-memory one.
        app_token_provider: A provider of an app token for `token_health()`, or the token.
        token_health_ttl: Seconds a `token_health()` result is cached.
        health_cache: Where `token_health()` results are kept (a `HealthCache`): a fleet's
            (`StateFile(...).health`, `RedisState(...).health`) asks `debug_token` once per
            token per its own TTL for every process; default: this client's, in memory.
        max_in_flight: The most requests in flight at once (default 100, aiohttp's pool); also
            the most that can go out with a token Meta has just proved dead.
        deadline: Seconds one call may take, every wait included (default 30), as for
            `WhatsAppClient`. With a session of your own, a request the deadline stops while it
            waits for a connection is reported `maybe_delivered` (for a send): only the client's
            own session can tell that it never went out.

    Raises:
        ImportError: aiohttp (the `wa-auth[fast]` extra) is not installed (`transport="aiohttp"`).
        ConfigurationError: An unknown *transport*, or *http_client* with `transport="raw"`.
    """

    def __init__(
        self,
        *,
        http_client: aiohttp.ClientSession | None = None,
        transport: Literal["aiohttp", "raw"] = "aiohttp",
        **options: Unpack[ClientOptions],
    ) -> None:
        self._raw: RawTransport | None = None
        if transport == "raw":
            self._init_raw(http_client, options)
            return
        if transport != "aiohttp":
            raise ConfigurationError(f"transport must be 'aiohttp' or 'raw', got {transport!r}")
        self._aiohttp = _import_aiohttp()
        import multidict  # aiohttp's own dependencies
        import yarl

        self._url = yarl.URL
        options.setdefault(
            "user_agent", f"wa-auth/{package_version()} aiohttp/{self._aiohttp.__version__}"
        )
        super().__init__(default_max_in_flight=FAST_MAX_CONNECTIONS, **options)
        self._owns_http = http_client is None
        self._session: aiohttp.ClientSession | None = http_client
        self._client_timeout = _client_timeout(self._aiohttp, self._timeout)
        self._timeout_class = self._aiohttp.ClientTimeout
        self._multidict = multidict.CIMultiDict
        self._urls: dict[str, yarl.URL] = {}
        self._connector = _connector_class(self._aiohttp)
        self._errors: tuple[type[BaseException], ...] = (
            self._aiohttp.ClientError,
            asyncio.TimeoutError,
            OSError,
        )

    def _init_raw(self, http_client: aiohttp.ClientSession | None, options: ClientOptions) -> None:
        """Set up `transport="raw"`: no aiohttp imported, the requests sent by `RawTransport`."""
        from wa_auth._client._raw import LIBRARY, RawTransport

        if http_client is not None:
            raise ConfigurationError(
                "http_client= is an aiohttp session: it cannot be used with transport='raw'"
            )
        options.setdefault("user_agent", default_user_agent(LIBRARY))
        super().__init__(default_max_in_flight=FAST_MAX_CONNECTIONS, **options)
        self._owns_http = True
        self._session = None
        raw = self._raw = RawTransport(
            timeouts(self._timeout),
            self._headers,
            limit=max(FAST_MAX_CONNECTIONS, self._gate_size),
        )
        # The driver calls the transport's own coroutine: no frame of this client between.
        self._send = raw.send  # type: ignore[method-assign]

    def _open_pool(self) -> None:
        # A session binds to the running loop: it is opened by the first request on each loop.
        self._session = None
        if self._raw is not None:
            self._raw.reopen()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this client has been closed")
        connector = self._connector(limit=max(FAST_MAX_CONNECTIONS, self._gate_size))
        session: aiohttp.ClientSession = self._aiohttp.ClientSession(
            headers=self._headers, timeout=self._client_timeout, connector=connector
        )
        self._session = session
        return session

    async def _send(self, request: Request, token: Token) -> Response:
        headers = self._multidict(request.headers)
        headers["Authorization"] = "Bearer " + bearer(token)
        owned = self._owns_http
        session = self._session or self._open()
        timeout = self._client_timeout
        left = _deadline.left()
        if left is not None:
            # The whole request, its answer's last byte included, ends by the deadline (a total
            # of 0 would mean none at all to aiohttp).
            timeout = self._timeout_class(
                max(left, 0.001),
                timeout.connect,
                timeout.sock_read,
                timeout.sock_connect,
                timeout.ceil_threshold,
            )
        marks: list[bool] = []
        tracking = _CONNECTED.set(marks)
        try:
            # Awaited, not entered: `async with` wraps the whole request in two more coroutines
            # (each resumed on every wake-up) for a release that `read` already did.
            r = await session.request(
                request.method,
                self._url_of(request.url),
                headers=headers,
                data=request.content,
                timeout=timeout,
            )
            try:
                content = await r.read()
            finally:
                r.release()
            return Response(r.status, r.headers, content)
        except self._errors as exc:
            # Only the client's own session marks its connections: with yours, unknown.
            error = _map_error(self._aiohttp, request, exc, connected=bool(marks) or not owned)
            error.__cause__ = plain_cause(exc, token.reveal())
        finally:
            _CONNECTED.reset(tracking)
        # Raised outside the handler: aiohttp's exception (and its request) is not the context.
        try:
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through it

    def _url_of(self, url: str) -> Any:
        """Return the `yarl.URL` of *url*, parsed once per distinct URL (a few per sender).

        The core's URL is already encoded: sent as built, like httpx sends it. A URL with a
        query (`debug_token`'s names the token it asks about) is parsed each time, never kept.
        """
        parsed = self._urls.get(url)
        if parsed is None:
            if "?" in url:
                return self._url(url, encoded=True)
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            parsed = self._urls[url] = self._url(url, encoded=True)
        return parsed

    async def _close_pool(self) -> None:
        if self._raw is not None:
            await self._raw.aclose()
            return
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
