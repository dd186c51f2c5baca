"""`FbTokenExchanger`: renew long-lived user tokens through Meta's `fb_exchange_token` grant.

A rotating provider wraps each candidate in `_Exchanging`, a refreshing provider that
exchanges the candidate's token before it expires and hands each new token to a write-back
hook.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from wa_auth._graph import DEFAULT_API_VERSION, DEFAULT_BASE_URL
from wa_auth._redact import redact_text
from wa_auth.errors import (
    TokenSourceMalformedError,
    TokenUnavailableError,
    WhatsAppError,
    from_response,
)
from wa_auth.events import Event, TokenExchanged
from wa_auth.providers._base import (
    StaticTokenProvider,
    Token,
    TokenProvider,
    as_provider,
    clean_token,
)
from wa_auth.providers._effects import Blocking, Flow, GetToken, Http, Send, adrive, drive
from wa_auth.providers._refresh import Fetched, RefreshingTokenProvider, RefreshPolicy

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_EXCHANGE_BEFORE", "FbTokenExchanger"]

_log = logging.getLogger("wa_auth.providers")

#: A user token is exchanged this long before it expires: an expired token cannot be
#: exchanged, and a week leaves room for a long outage of the exchange.
DEFAULT_EXCHANGE_BEFORE: Final = 7 * 24 * 3600.0


class FbTokenExchanger:
    """Exchange a long-lived user token for a new one before it expires (`fb_exchange_token`).

    System-user tokens do not need this; long-lived user tokens last about 60 days and can
    only be exchanged while still valid. The app secret comes from a provider (a file, Vault)
    and is sent in a POST form body, never in a URL, never logged.

    Args:
        app_id: The Meta app id.
        app_secret: A provider of the app secret (or the secret itself).
        on_new_token: Called with each new `Token` to persist it (write it back to the file
            or Vault the provider reads); otherwise a restart loses it.
        refresh_before: Seconds before expiry to exchange (`DEFAULT_EXCHANGE_BEFORE`).
        base_url: The Graph host (or the sandbox's).
        api_version: The Graph API version.
        timeout: Seconds per exchange request.
        transport: An httpx transport for the blocking client (tests).
        async_transport: An httpx transport for the async client (tests).
    """

    def __init__(
        self,
        app_id: str,
        app_secret: TokenProvider | str,
        *,
        on_new_token: Callable[[Token], None] | None = None,
        refresh_before: float = DEFAULT_EXCHANGE_BEFORE,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = str(app_id)
        self._secret: TokenProvider = (
            StaticTokenProvider(app_secret, source="app_secret")
            if isinstance(app_secret, str)
            else as_provider(app_secret, argument="app_secret")
        )
        self.on_new_token = on_new_token
        self.refresh_before = refresh_before
        self.url = f"{base_url.rstrip('/')}/{api_version}/oauth/access_token"
        self.timeout = timeout
        self._http = Http({"timeout": timeout}, transport, async_transport)
        self._clock = clock

    def __repr__(self) -> str:
        return f"FbTokenExchanger(app_id={self.app_id!r})"

    def due(self, token: Token) -> bool:
        """Return True when *token* should be exchanged now (known expiry, still valid)."""
        left = token.expires_in(self._clock())
        return left is not None and 0 < left <= self.refresh_before

    def _form(self, token: Token, secret: str) -> dict[str, str]:
        return {
            "grant_type": "fb_exchange_token",
            "client_id": self.app_id,
            "client_secret": secret,
            "fb_exchange_token": token.reveal(),
        }

    def exchange(self, token: Token) -> Token:
        """Return a new long-lived token for *token* (blocking).

        Raises:
            TokenUnavailableError: Meta refused or did not answer; the classified error is the
                cause.
        """
        return drive(self._flow(token), self._http)

    async def aexchange(self, token: Token) -> Token:
        """Return a new long-lived token for *token*.

        Raises:
            TokenUnavailableError: As `exchange`.
        """
        return await adrive(self._flow(token), self._http)

    def _flow(self, token: Token) -> Flow[Token]:
        """The exchange as a flow of effects, for `drive` / `adrive` with `self._http`."""
        secret = (yield GetToken(self._secret)).reveal()
        import httpx  # an exchange's HTTP is httpx's: loaded when one runs

        failure: httpx.HTTPError | None = None
        try:
            r: httpx.Response = yield Send("POST", self.url, data=self._form(token, secret))
        except httpx.HTTPError as exc:
            failure = exc
        else:
            return self._parse(r, token, secret)
        raise _exchange_unreachable(failure)

    def _parse(self, r: httpx.Response, token: Token, secret: str) -> Token:
        body: Any
        try:
            body = r.json()
        except ValueError:
            body = None
        value = body.get("access_token") if isinstance(body, dict) else None
        if r.status_code == 200 and isinstance(value, str) and value.strip():
            source = f"fb_exchange:{self.app_id}"
            value = clean_token(value, what="the token fb_exchange_token returned", source=source)
            lifetime = _lifetime(body.get("expires_in"), source)
            expires_at = None if lifetime is None else self._clock() + lifetime
            return Token(value, expires_at=expires_at, source=source)
        cause = from_response(r.status_code, r.content, r.headers)
        cause.with_token(token.reveal())
        cause.message = redact_text(cause.message, secret)
        cause.args = (cause.message,)
        error = TokenUnavailableError(
            f"fb_exchange_token for {token.fingerprint} failed: {cause.category} "
            f"(HTTP {r.status_code})",
            source=f"fb_exchange:{self.app_id}",
        )
        error.__cause__ = cause
        raise error


def _lifetime(expires_in: object, source: str) -> float | None:
    """Return Meta's `expires_in` as seconds, or None when it gives none.

    Raises:
        TokenSourceMalformedError: It is NaN or infinite, which would switch expiry-driven
            refresh off.
    """
    if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool):
        return None
    try:
        seconds = float(expires_in)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds):
        raise TokenSourceMalformedError(
            "fb_exchange_token answered an expires_in that is not a finite number", source=source
        )
    return seconds if seconds > 0 else None


def _exchange_unreachable(exc: httpx.HTTPError | None) -> TokenUnavailableError:
    error = TokenUnavailableError(
        f"fb_exchange_token: Meta did not answer ({type(exc).__name__})", retryable=True
    )
    # Rebuilt: httpx's exception keeps the request, whose body holds the secrets.
    error.__cause__ = ConnectionError(type(exc).__name__)
    return error


class _Exchanging(RefreshingTokenProvider):
    """A candidate whose token is exchanged through `fb_exchange_token` before it expires."""

    def __init__(
        self, inner: TokenProvider, exchanger: FbTokenExchanger, emit: Callable[[Event], None]
    ) -> None:
        self.inner = inner
        self._exchanger = exchanger
        self._emit = emit
        self._base: str | None = None
        policy = RefreshPolicy(
            advisory=exchanger.refresh_before,
            advisory_fraction=0.5,
            recheck_interval=60.0,
            max_stale=None,
        )
        super().__init__(policy=policy, name=f"fb_exchange:{exchanger.app_id}")

    def __repr__(self) -> str:
        return f"{self.inner!r} exchanged by {self._exchanger!r}"

    def _pick(self, current: Token | None, base: Token, forced: bool) -> Token:
        if current is not None and not forced and self._base == base.fingerprint:
            return current  # the exchanged token, as long as the source has not changed
        self._base = base.fingerprint
        return base

    def _load(self, current: Token | None, forced: bool) -> Fetched:
        return drive(self._flow(current, forced), self._exchanger._http)  # noqa: SLF001 - same module

    async def _aload(self, current: Token | None, forced: bool) -> Fetched:
        return await adrive(self._flow(current, forced), self._exchanger._http)  # noqa: SLF001 - same module

    def _flow(self, current: Token | None, forced: bool) -> Flow[Fetched]:
        base: Token = yield GetToken(self.inner)
        token = self._pick(current, base, forced)
        if not self._exchanger.due(token):
            return Fetched(token)
        new = yield from self._exchanger._flow(token)  # noqa: SLF001 - this module's class
        yield Blocking(partial(self._persist, new))
        return Fetched(new)

    def _persist(self, new: Token) -> None:
        hook = self._exchanger.on_new_token
        persisted = False
        if hook is not None:
            try:
                hook(new)
                persisted = True
            except Exception as exc:  # noqa: BLE001 - the new token still works; say so loudly
                _log.warning(
                    "writing back exchanged token %s failed (%s); a restart will lose it",
                    new.fingerprint,
                    type(exc).__name__,
                )
        self._emit(
            TokenExchanged(
                token_fingerprint=self._base,
                new_token_fingerprint=new.fingerprint,
                expires_at=new.expires_at,
                persisted=persisted,
            )
        )

    def _source_changed(self) -> bool:
        """Return whether the wrapped provider's source changed, when it can tell cheaply."""
        inner = self.inner
        if not isinstance(inner, RefreshingTokenProvider):
            return False
        return inner._source_changed()  # noqa: SLF001 - the same family of providers

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Invalidate the exchanged token here and the source's token in the wrapped provider."""
        super().invalidate(token, reason)
        self.inner.invalidate(token, reason)
