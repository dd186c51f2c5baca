"""`WhatsAppClient`: the blocking shell that drives `_core` flows over httpx or `http.client`.

The endpoints are the flows of `wa_auth._endpoints` bound as methods, one line each
(`bind_sync`); the driver is `_shell.drive`; the bytes go through a transport: httpx's
(`_httpx.HttpxTransport`, the default) or the standard library's (`_stdlib.StdlibTransport`,
`transport="stdlib"`). Only the chosen one is imported, so a stdlib client never loads httpx.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from wa_auth import _endpoints
from wa_auth._client._base import (
    DEFAULT_SYNC_MAX_IN_FLIGHT,
    BaseClient,
    ClientOptions,
    default_user_agent,
    method_signature,
    python_library,
    timeouts,
)
from wa_auth._client._shell import Gate, drive
from wa_auth._closing import Closing
from wa_auth.errors import ConfigurationError

if TYPE_CHECKING:
    import httpx
    from typing_extensions import Unpack

    from wa_auth._context import Context
    from wa_auth._core import Flow, Request, Response
    from wa_auth.providers import Token

__all__ = ["TRANSPORTS", "SyncTransport", "WhatsAppClient", "bind_sync"]

P = ParamSpec("P")
T = TypeVar("T")

#: The transports `WhatsAppClient(transport=...)` names: httpx's (the default) and the stdlib's.
TRANSPORTS = ("httpx", "stdlib")


class SyncTransport(Protocol):
    """What `WhatsAppClient` needs of a transport: one request sent, the connections closed."""

    def send(self, request: Request, token: Token) -> Response:
        """Send *request* with *token*; return the answer, or raise a `WhatsAppError`."""
        ...

    def close(self) -> None:
        """Close the connections this transport opened."""
        ...


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
    """A synchronous WhatsApp Cloud API client, over `httpx.Client` or `http.client`.

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
        transport: `"httpx"` (the default), `"stdlib"` (the standard library's `http.client`:
            no httpx imported, the quickest start; the same errors, timeouts, deadline, proxy
            and TLS rules), or an httpx transport for the `httpx.Client` this object creates.
        consumer: A label (an n8n workflow's name) carried in events and logs.
        events: The `Events` hub to emit to; default: one that logs.
        user_agent: The User-Agent header.
        verdicts: The `TokenVerdicts` store of dead tokens; default: a fresh in-memory one.
            Pass one store to several clients to share what they learn.
        app_token_provider: A provider of an app token for `token_health()`, or the token.
        token_health_ttl: Seconds a `token_health()` result is cached.
        health_cache: Where `token_health()` results are kept (a `HealthCache`): a fleet's
            (`StateFile(...).health`, `RedisState(...).health`) asks `debug_token` once per
            token per its own TTL for every process; default: this client's, in memory.
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
        transport: Literal["httpx", "stdlib"] | httpx.BaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(**options)
        self._http: httpx.Client | None = None
        self._transport: SyncTransport
        if transport == "stdlib":
            if http_client is not None:
                raise ConfigurationError("http_client= is an httpx.Client: not with 'stdlib'")
            from wa_auth._client._stdlib import StdlibTransport

            headers = {"User-Agent": default_user_agent(python_library()), **self._headers}
            self._transport = StdlibTransport(timeouts(self._timeout), headers)
        elif isinstance(transport, str) and transport != "httpx":
            raise ConfigurationError(
                f"transport must be 'httpx', 'stdlib' or an httpx transport, got {transport!r}"
            )
        else:
            from wa_auth._client._httpx import HttpxTransport

            sender = HttpxTransport(
                self._timeout,
                self._headers,
                http_client=http_client,
                transport=None if isinstance(transport, str) else transport,
            )
            self._http = sender.http
            self._transport = sender
        self._gate = Gate(
            self._max_in_flight or DEFAULT_SYNC_MAX_IN_FLIGHT, timeouts(self._timeout).pool
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
        return drive(self._ctx, flow, self._transport.send, self._gate, self._deadline)

    def close(self) -> None:
        """Close the HTTP connections this client opened."""
        self._transport.close()

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
