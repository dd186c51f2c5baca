"""The sans-I/O engine: requests, responses, effects, and the call flow.

Every endpoint (in `wa_auth._endpoints`) is a generator *flow* that yields effects
(`GetToken`, `CheckVerdict`, `Send`, `RecordVerdict`, `ForgetVerdict`, `ReadHealth`,
`StoreHealth`) and receives their
results; `call` is the one multi-step policy they share (verdict fast-fail, send, classify,
invalidate and retry once). The sync and async clients (and the fast path) are small
interpreters of those effects (`wa_auth._client._shell`); the context a flow runs in is
`wa_auth._context`. Nothing here does I/O or imports an HTTP library, so the logic exists once.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, Union

import attrs

from wa_auth import _table
from wa_auth._effects import Step, init
from wa_auth.errors import (
    ApiError,
    RequestValidationError,
    TokenSourceMalformedError,
    TransportError,
    UnknownApiError,
    WhatsAppError,
    from_response,
)
from wa_auth.models import SendResult, Usage

if TYPE_CHECKING:
    from wa_auth._context import Context
    from wa_auth.models import TokenHealth
    from wa_auth.providers import Token, TokenProvider

T = TypeVar("T")


# --- requests, responses, effects (the effects are plain `wa_auth._effects.Step` classes) ---


@attrs.frozen
class Request:
    """An immutable description of one HTTP request, without the token."""

    method: str
    url: str = attrs.field(repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = attrs.field(default=None, repr=False)
    #: Safe to send twice (no message can be duplicated): GET, DELETE.
    idempotent: bool = False
    #: The body can be sent again (always true for our in-memory bodies).
    resendable: bool = True
    #: The operation's name, for events and logs (`"send_text"`).
    operation: str = ""
    #: The phone number id or WABA id a routing provider picks the token by.
    route: str | None = None
    #: Who wanted it sent (an intent's `consumer`), for events; None: the client's label.
    consumer: str | None = None


@attrs.frozen
class Response:
    """What a shell hands back to the core: status, headers, body bytes."""

    status_code: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    content: bytes = attrs.field(repr=False)


class GetToken(Step):
    """Effect: ask a provider for the current token (`get_token` / `aget_token`).

    The provider is *provider* when given (an app token for `debug_token`), else the one the
    client's provider routes *route* (a phone number id or WABA id) to.
    """

    __slots__ = ("provider", "route")
    shown = ("route",)
    route: str | None
    provider: TokenProvider | None

    def __init__(self, route: str | None = None, provider: TokenProvider | None = None) -> None:
        init(self, "route", route)
        init(self, "provider", provider)

    def provider_in(self, ctx: Context) -> TokenProvider:
        """Return the provider that performs this effect in *ctx*."""
        return self.provider if self.provider is not None else ctx.provider_for(self.route)


class Send(Step):
    """Effect: send *request* with *token* in the Authorization header."""

    __slots__ = ("request", "token")
    request: Request
    token: Token

    def __init__(self, request: Request, token: Token) -> None:
        init(self, "request", request)
        init(self, "token", token)


class CheckVerdict(Step):
    """Effect: ask the verdict store for the error that proved a token dead (`get` / `aget`)."""

    __slots__ = ("fingerprint",)
    fingerprint: str

    def __init__(self, fingerprint: str) -> None:
        init(self, "fingerprint", fingerprint)


class RecordVerdict(Step):
    """Effect: record in the verdict store that a token is dead (`record` / `arecord`)."""

    __slots__ = ("error", "fingerprint")
    fingerprint: str
    error: ApiError

    def __init__(self, fingerprint: str, error: ApiError) -> None:
        init(self, "fingerprint", fingerprint)
        init(self, "error", error)


class ForgetVerdict(Step):
    """Effect: drop the verdict on a token Meta has just called valid (`forget` / `aforget`)."""

    __slots__ = ("fingerprint",)
    fingerprint: str

    def __init__(self, fingerprint: str) -> None:
        init(self, "fingerprint", fingerprint)


class ReadHealth(Step):
    """Effect: ask the client's health cache for a token's report (`get` / `aget`)."""

    __slots__ = ("fingerprint",)
    fingerprint: str

    def __init__(self, fingerprint: str) -> None:
        init(self, "fingerprint", fingerprint)


class StoreHealth(Step):
    """Effect: keep a token's report in the client's health cache (`put` / `aput`)."""

    __slots__ = ("fingerprint", "health")
    shown = ("fingerprint",)
    fingerprint: str
    health: TokenHealth

    def __init__(self, fingerprint: str, health: TokenHealth) -> None:
        init(self, "fingerprint", fingerprint)
        init(self, "health", health)


Effect = Union[  # noqa: UP007 - 3.10
    GetToken, Send, CheckVerdict, RecordVerdict, ForgetVerdict, ReadHealth, StoreHealth
]
Flow = Generator[Effect, Any, T]


def auth_headers(request: Request, token: Token) -> dict[str, str]:
    """Return the request's headers plus `Authorization: Bearer ...`; nowhere else.

    Raises:
        TokenSourceMalformedError: The token holds a character an HTTP header cannot carry
            (a byte-order mark, a zero-width space): httpx would raise a bare
            `UnicodeEncodeError` quoting `Bearer <token>`, aiohttp would send it as UTF-8.
    """
    headers = dict(request.headers)
    headers["Authorization"] = "Bearer " + bearer(token)
    return headers


def bearer(token: Token) -> str:
    """Return the token's value for the Authorization header (`auth_headers`' check).

    Raises:
        TokenSourceMalformedError: As `auth_headers`.
    """
    value = token.reveal()
    # Tens of ns, in C; the providers reject such tokens when they load them, a user's own
    # provider may not: a CR or LF would end the header, and an error quoting the header
    # would show the token's rest past the line break, which redaction cannot match.
    if not (value.isascii() and value.isprintable()):
        raise _unsendable(token)
    return value


def _unsendable(token: Token) -> TokenSourceMalformedError:
    value = token.reveal()
    position = next(i for i, c in enumerate(value) if not (c.isascii() and c.isprintable()))
    kind = "a control" if value[position].isascii() else "a non-ASCII"
    return TokenSourceMalformedError(
        f"the token {token.fingerprint} from {token.source} holds {kind} character "
        f"(U+{ord(value[position]):04X} at position {position}), which no HTTP header can "
        "carry: fix the source (a byte-order mark, a zero-width space or a line break pasted "
        "with the token?)",
        source=token.source,
    )


# --- the call flow: token, send, classify, invalidate-and-retry-once --------------------------


def call(
    ctx: Context,
    request: Request,
    parse: Callable[[Response], T],
    token: Token | None = None,
    provider: TokenProvider | None = None,
    *,
    trust_verdict: bool = True,
) -> Flow[T]:
    """Send *request* and parse its answer; on a token-class failure retry once with a new token.

    A token with a verdict fails fast with the error that proved it dead: nothing is sent with
    it. A token-class failure is recorded as a verdict and the provider is asked to invalidate
    the token; if it then yields a different token (without a verdict) and the body can be
    re-sent, the request goes out once more. Never more than one auth retry; never a retry for
    permission, account-state, invalid-request or transient failures (those are the caller's
    to decide). *provider* overrides the routed provider (an app token for `debug_token`).
    *trust_verdict* False sends even with a verdict (a health check that asks Meta again).

    A token the provider calls provisional (read from a file that its writer may not have
    finished) is re-read before it is judged: the verdict is recorded only when the re-read
    returns the same token; otherwise it was a partial read, and the retry goes out with the
    whole token.
    """
    first: ApiError | None = None
    error: ApiError | None = None
    verdict: ApiError | None = None
    try:
        if provider is None:
            provider = ctx.provider_for(request.route)
        if token is None:
            token = yield GetToken(request.route, provider)
        verdict = (yield from _verdict(ctx, token)) if trust_verdict else None
        if verdict is not None:
            # Known dead: tell the provider (a rotating one fails over), send nothing with it.
            _observe(provider, token, verdict)
            provider.invalidate(token, verdict)
            first = _revived(verdict)
            token = yield from _replacement(ctx, provider, request, token, first)
        while True:
            response = yield from _send(ctx, provider, request, token)
            if 200 <= response.status_code < 300:
                _observe(provider, token, None)
                return _parse_success(request, response, parse, token)
            error = _classify(ctx, request, response, token)
            _observe(provider, token, error)
            if error.category not in _table.TOKEN_CLASS:
                if first is not None:
                    raise error from first
                raise error
            provisional = _provisional(provider, token)
            if ctx.verdicts is not None and not provisional:
                yield RecordVerdict(token.fingerprint, error)
            provider.invalidate(token, error)
            from wa_auth.events import TokenInvalidated  # built on a failure only

            ctx.events.emit(
                TokenInvalidated(
                    consumer=request.consumer or ctx.consumer,
                    token_fingerprint=token.fingerprint,
                    category=error.category,
                )
            )
            if first is not None:
                raise error from first
            first = error
            token = yield from _replacement(ctx, provider, request, token, error, provisional)
    finally:
        # A raised error's traceback holds this frame, and the frame would hold the error: drop
        # the references, or every failed call leaves a cycle for the garbage collector.
        verdict = error = first = None


def _verdict(ctx: Context, token: Token) -> Flow[ApiError | None]:
    if ctx.verdicts is None:
        return None
    verdict: ApiError | None = yield CheckVerdict(token.fingerprint)
    return verdict


def _revived(verdict: ApiError) -> ApiError:
    """Return a copy of a stored verdict to raise: each raise gets its own traceback."""
    return copy.copy(verdict)


def _replacement(
    ctx: Context,
    provider: TokenProvider,
    request: Request,
    token: Token,
    error: ApiError,
    provisional: bool = False,
) -> Flow[Token]:
    """Return the provider's next token for the one auth retry, or raise *error*.

    A *provisional* token's verdict waits for this re-read: it is recorded when the provider
    returns the same token again.
    """
    fresh: Token = yield GetToken(request.route, provider)
    if provisional and fresh.fingerprint == token.fingerprint and ctx.verdicts is not None:
        yield RecordVerdict(token.fingerprint, error)
    if (
        fresh.fingerprint == token.fingerprint
        or not request.resendable
        or ((yield from _verdict(ctx, fresh)) is not None)
    ):
        try:
            raise error
        finally:
            del error  # no cycle through this frame (see `call`)
    from wa_auth.events import AuthRetried

    ctx.events.emit(
        AuthRetried(
            consumer=request.consumer or ctx.consumer,
            token_fingerprint=token.fingerprint,
            new_token_fingerprint=fresh.fingerprint,
            operation=request.operation,
        )
    )
    return fresh


def _observe(provider: TokenProvider, token: Token, error: WhatsAppError | None) -> None:
    """Tell a provider that watches outcomes (`ObservesOutcomes`) how a call with *token* went.

    A plain `isinstance` check against the runtime protocol costs microseconds per call; the
    class's answer is the same for every instance, so it is kept per class.
    """
    observes = _OBSERVERS.get(type(provider))
    if observes is None:
        from wa_auth.providers import ObservesOutcomes

        observes = _OBSERVERS[type(provider)] = isinstance(provider, ObservesOutcomes)
    if observes:
        provider.observe_outcome(token, error)  # type: ignore[attr-defined]


#: Provider class -> whether its instances observe outcomes (`ObservesOutcomes`).
_OBSERVERS: dict[type, bool] = {}


def _provisional(provider: TokenProvider, token: Token) -> bool:
    """Whether *provider* read *token* from a source its writer may not have finished.

    Asked only after Meta rejected the token. A provider tells by a `_provisional(token)`
    method (`FileTokenProvider`: a text file read without its final newline, just now).
    """
    check = getattr(provider, "_provisional", None)
    return bool(check(token)) if check is not None else False


def _send(ctx: Context, provider: TokenProvider, request: Request, token: Token) -> Flow[Response]:
    try:
        response: Response = yield Send(request, token)
    except TransportError as exc:
        exc.with_token(token.reveal(), token.fingerprint)
        _emit_failure(ctx, request, exc)
        _observe(provider, token, exc)
        raise
    except RequestValidationError as exc:
        # A shell's own refusal (httpx.UnsupportedProtocol): its chained cause may quote the
        # request, so scrub the token from it too.
        exc.with_token(token.reveal(), token.fingerprint)
        raise
    return response


def _classify(ctx: Context, request: Request, response: Response, token: Token) -> ApiError:
    error = from_response(response.status_code, response.content, response.headers)
    error.with_token(token.reveal(), token.fingerprint)
    _emit_failure(ctx, request, error)
    return error


def _emit_failure(ctx: Context, request: Request, error: ApiError) -> None:
    from wa_auth.events import ApiCallFailed, AuthFailed  # a failure's only: not at import

    if error.category in _table.AUTH_CATEGORIES:
        ctx.events.emit(
            AuthFailed(
                consumer=request.consumer or ctx.consumer,
                token_fingerprint=error.token_fingerprint,
                category=error.category,
                operation=request.operation,
                code=error.code,
                subcode=error.subcode,
                fbtrace_id=error.fbtrace_id,
                rule=error.rule,
                operator_action=error.operator_action,
                phone_number_id=request.route,
            )
        )
    else:
        ctx.events.emit(
            ApiCallFailed(
                consumer=request.consumer or ctx.consumer,
                token_fingerprint=error.token_fingerprint,
                category=error.category,
                operation=request.operation,
                code=error.code,
                http_status=error.http_status,
                fbtrace_id=error.fbtrace_id,
                retryable=error.retryable,
                retry_after=error.retry_after,
                maybe_delivered=error.maybe_delivered,
                phone_number_id=request.route,
            )
        )


class BadBodyError(Exception):
    """A 2xx answer whose body is not what the endpoint returns (raised by the parsers)."""


def _parse_success(
    request: Request, response: Response, parse: Callable[[Response], T], token: Token
) -> T:
    try:
        value = parse(response)
    except (BadBodyError, ValueError, TypeError, KeyError, AttributeError) as exc:
        error = UnknownApiError(
            f"HTTP {response.status_code} answer to {request.operation} is not the expected "
            f"shape ({exc}); the request may have been accepted",
            http_status=response.status_code,
            maybe_delivered=not request.idempotent,
            rule=_table.UNKNOWN_RULE.id,
            usage=Usage.from_headers(response.headers),
        )
        error.with_token(token.reveal(), token.fingerprint)
        raise error from None
    if type(value) is SendResult:
        # The result was built a moment ago by the parser and is not shared yet: stamping the
        # token on it costs nothing, where `attrs.evolve` would cost 2 us per send.
        object.__setattr__(value, "token_fingerprint", token.fingerprint)
    return value


def json_object(response: Response) -> dict[str, Any]:
    """Return the answer's JSON object, or raise `BadBodyError` (or `ValueError`)."""
    data = json.loads(response.content.decode())
    if not isinstance(data, dict):
        raise BadBodyError(f"expected a JSON object, got {type(data).__name__}")
    return data


def opt_str(value: Any) -> str | None:
    """Return *value* as a string, keeping None."""
    return None if value is None else str(value)


# --- requests -----------------------------------------------------------------------------------


#: One configured encoder, instead of `json.dumps` building one per call.
ENCODE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def post_json(
    ctx: Context,
    url: str,
    body: Mapping[str, Any],
    operation: str,
    route: str,
    consumer: str | None = None,
) -> Request:
    """Return a POST of *body* as compact JSON: a send, never safe to repeat blindly."""
    return Request(
        "POST",
        url,
        ctx.json_headers,
        ENCODE(body).encode(),
        idempotent=False,
        operation=operation,
        route=route,
        consumer=consumer,
    )


def get_request(url: str, operation: str, route: str | None) -> Request:
    """Return a GET of *url*: idempotent, so a transport failure never means a duplicate."""
    return Request("GET", url, idempotent=True, operation=operation, route=route)
