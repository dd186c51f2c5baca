"""What every client shares: options, configuration, transport errors, the method signature.

The endpoints are the core's flow functions bound as methods (`bind_sync` beside
`WhatsAppClient`, `bind_async` beside `AsyncClientBase`), so every endpoint, its validation and
its parsing exist once; each client only performs the effects and maps its transport's
exceptions at one boundary. Nothing here names a concrete client.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple, ParamSpec, TypedDict, TypeVar

from wa_auth._context import Context, HealthCache, new_health_cache
from wa_auth._core import Request
from wa_auth._graph import DEFAULT_API_VERSION, DEFAULT_BASE_URL
from wa_auth._hub import Events
from wa_auth._redact import install_log_redaction, redact_text
from wa_auth._validate import check_deadline
from wa_auth._version import package_version
from wa_auth.errors import (
    ConfigurationError,
    TransportError,
)
from wa_auth.providers import (
    TokenProvider,
    TokenVerdicts,
    VerdictStore,
)
from wa_auth.providers._base import as_provider

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_SYNC_MAX_IN_FLIGHT",
    "DEFAULT_TIMEOUTS",
    "DEFAULT_TOKEN_HEALTH_TTL",
    "BaseClient",
    "ClientOptions",
    "Timeouts",
    "default_user_agent",
    "method_signature",
    "plain_cause",
    "python_library",
    "timeouts",
    "transport_error",
]

P = ParamSpec("P")
T = TypeVar("T")


class Timeouts(NamedTuple):
    """Seconds each wait of a request may take alone (None: no limit), as httpx names them."""

    connect: float | None
    read: float | None
    write: float | None
    #: The wait for a free connection (the in-flight gate's).
    pool: float | None


#: 5 s to connect, 15 s for each other wait: httpx's `Timeout(15.0, connect=5.0)`.
DEFAULT_TIMEOUTS: Final = Timeouts(connect=5.0, read=15.0, write=15.0, pool=15.0)


def timeouts(timeout: float | httpx.Timeout | None) -> Timeouts:
    """Return the `Timeouts` of a client's *timeout=* (seconds, an `httpx.Timeout`, or None).

    None is the default (`DEFAULT_TIMEOUTS`); a number bounds every wait alike. An
    `httpx.Timeout` is read by its attributes, so this never imports httpx.
    """
    if timeout is None:
        return DEFAULT_TIMEOUTS
    if isinstance(timeout, (int, float)):
        seconds = float(timeout)
        return Timeouts(seconds, seconds, seconds, seconds)
    return Timeouts(timeout.connect, timeout.read, timeout.write, timeout.pool)


def default_user_agent(library: str) -> str:
    """Return the default User-Agent: wa_auth's version and the HTTP library's (*library*)."""
    return f"wa-auth/{package_version()} {library}"


def python_library() -> str:
    """The `http.client` of this Python, as the stdlib transport's User-Agent names it."""
    return f"python-http.client/{sys.version_info[0]}.{sys.version_info[1]}"


#: Seconds one call may take, every wait included: the in-flight gate, the token, the pool, the
#: connect, each read and write, and the one retry with a new token. httpx's timeouts bound
#: each wait alone, so a peer that trickles its answer would otherwise hold a call forever. Twice
#: the read timeout, and the guard's default budget: a plain call never outlives a guarded one.
DEFAULT_DEADLINE: Final = 30.0
#: `token_health()` asks Meta at most this often per token: scopes and expiry change rarely.
DEFAULT_TOKEN_HEALTH_TTL: Final = 300.0
#: The sync client's in-flight gate: one slot per pooled connection, so a thread waits at the
#: gate (where it then sees a verdict recorded meanwhile), never inside httpx's pool.
DEFAULT_SYNC_MAX_IN_FLIGHT: Final = 32
#: Async requests beyond this many in flight wait on a semaphore rather than in httpcore's pool
#: queue, whose per-request work grows with its waiters (measured on loopback at 256 in flight:
#: about 3x the CPU per message without the gate).
DEFAULT_MAX_IN_FLIGHT: Final = 2 * 32


def transport_error(
    request: Request, exc: BaseException, *, not_sent: bool, detail: str | None = None
) -> TransportError:
    """Return the `TransportError` for a transport's *exc*; shared by every transport.

    Args:
        request: The request that failed.
        exc: The transport library's exception (httpx, aiohttp, asyncio).
        not_sent: True when no byte of the request can have reached Meta (connect failures,
            pool and connect timeouts); then the message was certainly not delivered.
        detail: What happened, when *exc*'s own text does not say (a deadline that passed).

    Returns:
        A transient `TransportError`; `maybe_delivered` is set when a non-idempotent request
        may have been accepted before the answer was lost.
    """
    delivered = not (not_sent or request.idempotent)
    what = "the request was not sent" if not_sent else "no complete answer came"
    return TransportError(
        f"{type(exc).__name__} on {request.operation or request.method}: {what}"
        f"{'; the message may have been delivered' if delivered else ''} ({detail or exc})",
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


class ClientOptions(TypedDict, total=False):
    """The constructor options every client shares (see `WhatsAppClient` for each one)."""

    token: str | None
    token_provider: TokenProvider | str | None
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
    health_cache: HealthCache | None
    max_in_flight: int | None
    deadline: float


class BaseClient:
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
        health_cache: HealthCache | None = None,
        max_in_flight: int | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        if (token is None) == (token_provider is None):
            raise ConfigurationError("pass exactly one of token= or token_provider=")
        provider = as_provider(
            token if token is not None else token_provider,
            argument="token" if token is not None else "token_provider",
        )
        if max_in_flight is not None and (
            isinstance(max_in_flight, bool)
            or not isinstance(max_in_flight, int)
            or max_in_flight < 1
        ):
            raise ConfigurationError(
                f"max_in_flight must be a positive integer, got {max_in_flight!r}"
            )
        check_deadline(deadline)
        if health_cache is not None and not isinstance(health_cache, HealthCache):
            raise ConfigurationError(
                "health_cache must have get, put, aget and aput (a HealthCache: "
                f"StateFile(...).health, RedisState(...).health), got {type(health_cache).__name__}"
            )
        if user_agent is not None and not (user_agent.isascii() and user_agent.isprintable()):
            raise ConfigurationError("user_agent must be printable ASCII (an HTTP header)")
        if not isinstance(api_version, str) or not api_version.startswith("v"):
            raise ConfigurationError(f"api_version must look like 'v23.0', got {api_version!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must be an http(s) URL")
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
            health_cache=(
                health_cache if health_cache is not None else new_health_cache(token_health_ttl)
            ),
        )
        #: As given: None is the default (`timeouts()` and each transport read it).
        self._timeout = timeout
        #: The User-Agent is the transport's to default (`default_user_agent()`), when not given.
        self._headers = {"Accept": "application/json"}
        if user_agent is not None:
            self._headers["User-Agent"] = user_agent
        self._max_in_flight = max_in_flight
        #: Each call's deadline: its seconds, and its words for the errors that quote it.
        self._deadline = (float(deadline), f"the client's {deadline:g} s deadline")

    @property
    def max_in_flight(self) -> int:
        """The most requests this client has in flight at once.

        It is also the most requests that can ever go out with a token Meta has just proved
        dead: the verdict is checked while a request holds its slot.
        """
        raise NotImplementedError

    @property
    def deadline(self) -> float:
        """Seconds one call may take, every wait included (`deadline=`, default 30)."""
        return self._deadline[0]

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
    def business_account_id(self) -> str | None:
        """The WhatsApp Business Account id of the calls (WABA-level ones), or None."""
        return self._ctx.business_account_id

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


def method_signature(fn: Callable[..., Any]) -> inspect.Signature:
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
