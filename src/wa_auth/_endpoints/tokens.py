"""The token endpoints: `debug_token`, and `token_health` built on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from wa_auth import _table
from wa_auth._context import Context
from wa_auth._convert import to_int
from wa_auth._core import (
    BadBodyError,
    Flow,
    ForgetVerdict,
    GetToken,
    ReadHealth,
    RecordVerdict,
    Request,
    Response,
    StoreHealth,
    call,
    json_object,
    opt_str,
)
from wa_auth.errors import ApiError, RequestValidationError, StateUnavailableError, error_class_for
from wa_auth.models import Usage

if TYPE_CHECKING:
    from wa_auth.models import TokenHealth, TokenInfo, TokenInfoError
    from wa_auth.providers import Token

__all__ = ["debug_token", "token_health"]


def debug_token(ctx: Context, input_token: str | None = None) -> Flow[TokenInfo]:
    """Ask Meta what it knows about a token (the client's own when *input_token* is None).

    An invalid inspected token is a result (`is_valid=False` with `error`), not an exception.

    Args:
        input_token: The token to inspect; the client's token asks about itself.

    Returns:
        `TokenInfo`: validity, type, app, expiry, scopes and granular scopes.

    Raises:
        RequestValidationError: *input_token* is blank or not a string; nothing was sent.
        AuthError: The asking token itself was refused (expired, revoked).
        TransportError: No complete answer came.
        TokenUnavailableError: The token provider could not produce a token.
    """
    if input_token is not None and (not isinstance(input_token, str) or not input_token.strip()):
        raise RequestValidationError("input_token must be a non-empty string")
    token: Token = yield GetToken(ctx.phone_number_id)
    inspected = input_token if input_token is not None else token.reveal()
    request = Request(
        "GET",
        ctx.url("debug_token", query={"input_token": inspected}),
        idempotent=True,
        # The URL carries the inspected token: a retry with another token would inspect the
        # wrong one when the client inspects itself.
        resendable=input_token is not None,
        operation="debug_token",
        route=ctx.phone_number_id,
    )
    return (yield from call(ctx, request, _parse_token_info, token=token))


def _parse_token_info(response: Response) -> TokenInfo:
    from wa_auth.models import GranularScope, TokenInfo, TokenInfoError

    data = json_object(response).get("data")
    if not isinstance(data, Mapping):
        raise BadBodyError("no 'data' object")
    err = data.get("error")
    info_error = None
    if isinstance(err, Mapping):
        info_error = TokenInfoError(
            code=to_int(err.get("code")),
            subcode=to_int(err.get("subcode", err.get("error_subcode"))),
            message=str(err.get("message", "")),
        )
    granular = tuple(
        GranularScope(
            scope=str(g.get("scope", "")),
            target_ids=tuple(str(t) for t in g.get("target_ids") or ()),
        )
        for g in data.get("granular_scopes") or ()
        if isinstance(g, Mapping)
    )
    return TokenInfo(
        is_valid=data.get("is_valid") is True,
        app_id=opt_str(data.get("app_id")),
        application=opt_str(data.get("application")),
        type=opt_str(data.get("type")),
        user_id=opt_str(data.get("user_id")),
        expires_at=to_int(data.get("expires_at")) or 0,
        data_access_expires_at=to_int(data.get("data_access_expires_at")) or 0,
        issued_at=to_int(data.get("issued_at")),
        scopes=tuple(str(s) for s in data.get("scopes") or ()),
        granular_scopes=granular,
        error=info_error,
        usage=Usage.from_headers(response.headers),
    )


# --- token health -------------------------------------------------------------------------------


def token_health(ctx: Context, *, refresh: bool = False) -> Flow[TokenHealth]:
    """Return what Meta says about the client's token, cached per token for a few minutes.

    `debug_token` is asked with the app token of `app_token_provider` when the client has one,
    else with the token itself. A token with a verdict (and no app token to ask with) is
    reported invalid without any request, unless *refresh* asks Meta again. An expired or
    revoked token is reported with its `error_category`, and remembered as a verdict, so sends
    fail fast; a token Meta calls valid on a fresh check loses any verdict it had.

    The cache is read and written through effects (`ReadHealth`, `StoreHealth`), so a cache a
    fleet shares (Redis) is the shell's I/O; when it does not answer, Meta is asked and the
    report is not kept, told as a `StateFellBack` event (store `health`).

    Args:
        refresh: Ignore the cache (and any verdict) and ask Meta now.

    Returns:
        The `TokenHealth` report; an invalid token is a report, not an exception.

    Raises:
        TokenUnavailableError: The provider could not produce the token.
        ApiError: Meta could not be asked (a transport failure, the app token's own failure).
    """
    from wa_auth.models import TokenHealth

    token: Token = yield GetToken(ctx.phone_number_id)
    if not refresh:
        try:
            cached = yield ReadHealth(token.fingerprint)
        except StateUnavailableError as exc:
            _fell_back(ctx, exc)
            cached = None
        if cached is not None:
            return cached  # type: ignore[no-any-return]
    query = {"input_token": token.reveal()}
    if ctx.app_token_provider is not None:
        request = Request(
            "GET",
            ctx.url("debug_token", query=query),
            idempotent=True,
            operation="token_health",
        )
        info = yield from call(ctx, request, _parse_token_info, provider=ctx.app_token_provider)
        health = TokenHealth.from_info(info, token.fingerprint, ctx.business_account_id)
        if not info.is_valid and info.error is not None:
            error = _info_error(info.error, token)
            health = attrs.evolve(health, error_category=error.category)
            if error.category in _table.TOKEN_CLASS and ctx.verdicts is not None:
                yield RecordVerdict(token.fingerprint, error)
    else:
        request = Request(
            "GET",
            ctx.url("debug_token", query=query),
            idempotent=True,
            resendable=False,  # the URL carries the token itself
            operation="token_health",
            route=ctx.phone_number_id,
        )
        try:
            info = yield from call(
                ctx, request, _parse_token_info, token=token, trust_verdict=not refresh
            )
        except ApiError as exc:
            if exc.category not in _table.TOKEN_CLASS:
                raise
            health = TokenHealth.from_error(exc, token.fingerprint)
        else:
            health = TokenHealth.from_info(info, token.fingerprint, ctx.business_account_id)
    if health.valid and refresh and ctx.verdicts is not None:
        yield ForgetVerdict(token.fingerprint)
    try:
        yield StoreHealth(token.fingerprint, health)
    except StateUnavailableError as exc:
        _fell_back(ctx, exc)
    return health


def _fell_back(ctx: Context, exc: StateUnavailableError) -> None:
    """Tell that the shared health cache did not answer (the report is Meta's, unshared)."""
    from wa_auth.events import StateFellBack

    ctx.events.emit(StateFellBack(store="health", address=exc.address, reason=exc.message))


def _info_error(info_error: TokenInfoError, token: Token) -> ApiError:
    """Classify `debug_token`'s `data.error` as the error a call with that token would get."""
    from wa_auth._classify import classify_token_info

    error = classify_token_info(
        info_error.code, info_error.subcode, info_error.message, error_class_for
    )
    error.with_token(token.reveal(), token.fingerprint)
    return error
