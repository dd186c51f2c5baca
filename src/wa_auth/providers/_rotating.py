"""`RotatingTokenProvider`: ordered candidates, fail-over, planned rotation with rollback.

Also the optional `FbTokenExchanger`, which renews long-lived user tokens through Meta's
`fb_exchange_token` grant before they expire and hands each new token to a write-back hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

import attrs
import httpx

from wa_auth import _table
from wa_auth._core import DEFAULT_API_VERSION, DEFAULT_BASE_URL
from wa_auth._redact import redact_text
from wa_auth.errors import (
    AllCandidatesRejectedError,
    ApiError,
    TokenSourceMalformedError,
    TokenUnavailableError,
    WhatsAppError,
    from_response,
)
from wa_auth.events import Event, Events
from wa_auth.providers._base import (
    StaticTokenProvider,
    Token,
    TokenProvider,
    as_provider,
    clean_token,
)
from wa_auth.providers._refresh import Fetched, RefreshingTokenProvider, RefreshPolicy
from wa_auth.providers._verdicts import TokenVerdicts, VerdictStore

__all__ = [
    "DEFAULT_ROLLBACK_FAILURES",
    "DEFAULT_ROLLBACK_WINDOW",
    "FbTokenExchanger",
    "RotatingTokenProvider",
    "RotationConfirmed",
    "RotationRolledBack",
    "TokenActivated",
    "TokenExchanged",
    "TokenFailedOver",
]

_log = logging.getLogger("wa_auth.providers")

#: A planned rotation is watched over the new token's last this many calls...
DEFAULT_ROLLBACK_WINDOW: Final = 10
#: ...and rolled back when this many of them failed with an expired/revoked token. One stray
#: failure (a token still propagating at Meta) does not flap the rotation; three bound the
#: damage of a bad token to two failed calls, since the verdict store fails the others fast.
DEFAULT_ROLLBACK_FAILURES: Final = 3
#: A user token is exchanged this long before it expires: an expired token cannot be
#: exchanged, and a week leaves room for a long outage of the exchange.
DEFAULT_EXCHANGE_BEFORE: Final = 7 * 24 * 3600.0


# --- events -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TokenActivated(Event):
    """A planned rotation made a new token the active one; it is now being watched."""

    name: ClassVar[str] = "auth.token_activated"
    kind: ClassVar[str] = "auth"

    previous_fingerprint: str | None = None
    window: int = DEFAULT_ROLLBACK_WINDOW
    max_failures: int = DEFAULT_ROLLBACK_FAILURES


@attrs.frozen(kw_only=True)
class RotationConfirmed(Event):
    """The rotated-in token served a full window of calls without too many token failures."""

    name: ClassVar[str] = "auth.rotation_confirmed"
    kind: ClassVar[str] = "auth"

    calls: int
    failures: int


@attrs.frozen(kw_only=True)
class RotationRolledBack(Event):
    """The rotated-in token failed too often; the previous token is active again."""

    name: ClassVar[str] = "auth.rotation_rolled_back"
    kind: ClassVar[str] = "auth"

    restored_fingerprint: str | None
    calls: int
    failures: int


@attrs.frozen(kw_only=True)
class TokenFailedOver(Event):
    """The active token proved dead; the next candidate takes over."""

    name: ClassVar[str] = "auth.token_failover"
    kind: ClassVar[str] = "auth"

    category: str


@attrs.frozen(kw_only=True)
class TokenExchanged(Event):
    """A long-lived user token was exchanged for a new one through `fb_exchange_token`."""

    name: ClassVar[str] = "auth.token_exchanged"
    kind: ClassVar[str] = "auth"

    new_token_fingerprint: str
    expires_at: float | None = None
    persisted: bool = False


# --- the exchanger -----------------------------------------------------------------------------


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
        self._transport = transport
        self._async_transport = async_transport
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
        secret = self._secret.get_token().reveal()
        failure: httpx.HTTPError | None = None
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            try:
                r = client.post(self.url, data=self._form(token, secret))
            except httpx.HTTPError as exc:
                failure = exc
            else:
                return self._parse(r, token, secret)
        raise _exchange_unreachable(failure)

    async def aexchange(self, token: Token) -> Token:
        """Return a new long-lived token for *token*.

        Raises:
            TokenUnavailableError: As `exchange`.
        """
        secret = (await self._secret.aget_token()).reveal()
        failure: httpx.HTTPError | None = None
        async with httpx.AsyncClient(
            timeout=self.timeout, transport=self._async_transport
        ) as client:
            try:
                r = await client.post(self.url, data=self._form(token, secret))
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
        base = self.inner.get_token()
        token = self._pick(current, base, forced)
        if not self._exchanger.due(token):
            return Fetched(token)
        new = self._exchanger.exchange(token)
        self._persist(new)
        return Fetched(new)

    async def _aload(self, current: Token | None, forced: bool) -> Fetched:
        base = await self.inner.aget_token()
        token = self._pick(current, base, forced)
        if not self._exchanger.due(token):
            return Fetched(token)
        new = await self._exchanger.aexchange(token)
        await asyncio.to_thread(self._persist, new)
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


# --- the rotating provider ----------------------------------------------------------------------


class _Watch:
    def __init__(
        self, index: int, fingerprint: str, previous: int, window: int, max_failures: int
    ) -> None:
        self.index = index
        self.fingerprint = fingerprint
        self.previous = previous
        self.window = window
        self.max_failures = max_failures
        self.outcomes: deque[bool] = deque(maxlen=window)


def _is_token_class(reason: WhatsAppError | str | None) -> bool:
    if isinstance(reason, str):
        return True  # an operator's explicit invalidation
    return reason is not None and reason.category in _table.TOKEN_CLASS


class RotatingTokenProvider:
    """An ordered set of candidate providers: fail-over, and planned rotation with rollback.

    On a token-class failure (expired or revoked) of the active token, the next candidate not
    known dead takes over. Permission and account-state failures never fail over: a different
    token of the same business cannot fix them. `rotate_to()` activates a new token and
    watches it: when `max_failures` of its last `window` calls fail with an expired/revoked
    token, the previous token is restored. Transient and permission failures never count.

    Args:
        candidates: Providers, `Token`s or token strings, in order of preference.
        events: The hub for activation, confirmation, rollback and fail-over events; default:
            one that logs.
        verdicts: The verdict store that says which tokens are dead; pass the one the clients
            use. Default: a store of this provider's own.
        refresher: Exchange long-lived user tokens through `fb_exchange_token`.
        window: Default rollback window (`DEFAULT_ROLLBACK_WINDOW`).
        max_failures: Default failures within the window that roll back
            (`DEFAULT_ROLLBACK_FAILURES`).

    Raises:
        AllCandidatesRejectedError: From `get_token`, when every candidate's token is dead.
    """

    def __init__(
        self,
        candidates: Sequence[TokenProvider | Token | str],
        *,
        events: Events | None = None,
        verdicts: VerdictStore | None = None,
        refresher: FbTokenExchanger | None = None,
        window: int = DEFAULT_ROLLBACK_WINDOW,
        max_failures: int = DEFAULT_ROLLBACK_FAILURES,
    ) -> None:
        if not candidates:
            raise ValueError("candidates must not be empty")
        if not 1 <= max_failures <= window:
            raise ValueError("max_failures must be between 1 and window")
        self.events = events if events is not None else Events.with_logging()
        self._verdicts: VerdictStore = verdicts if verdicts is not None else TokenVerdicts()
        self._owns_verdicts = verdicts is None or isinstance(verdicts, TokenVerdicts)
        self._refresher = refresher
        self.window = window
        self.max_failures = max_failures
        self._slots: tuple[TokenProvider, ...] = tuple(self._wrap(c) for c in candidates)
        self._served: dict[int, str] = {}
        self._active = 0
        self._watch: _Watch | None = None
        #: The active candidate's token that `invalidate` declared dead, and why: the next
        #: `get_token` moves past it. One reference, replaced whole.
        self._failed: tuple[int, str, str] | None = None
        self._lock = threading.Lock()

    def _wrap(self, candidate: TokenProvider | Token | str) -> TokenProvider:
        provider = (
            StaticTokenProvider(candidate, source="rotating")
            if isinstance(candidate, str)
            else as_provider(candidate, argument="candidates")
        )
        if self._refresher is not None:
            provider = _Exchanging(provider, self._refresher, self.events.emit)
        return provider

    def __repr__(self) -> str:
        return (
            f"RotatingTokenProvider(candidates={len(self._slots)}, active={self._active}, "
            f"watching={self._watch is not None})"
        )

    @property
    def active(self) -> int:
        """The index of the active candidate."""
        return self._active

    @property
    def candidates(self) -> tuple[TokenProvider, ...]:
        """The candidate providers, in order."""
        return self._slots

    @property
    def watching(self) -> bool:
        """True while a planned rotation is being watched."""
        return self._watch is not None

    # --- tokens ---------------------------------------------------------------------------------

    def get_token(self) -> Token:
        """Return the active candidate's token, failing over past candidates known dead.

        The candidates are asked in order from the active one; the first whose token has no
        verdict becomes the active one, with one `auth.token_failover` event for the switch.

        Raises:
            AllCandidatesRejectedError: Every candidate's token has a verdict.
            TokenUnavailableError: The active candidate could not produce a token.
        """
        start = self._active
        dead: list[tuple[Token, ApiError | str]] = []
        for index in self._order(start):
            token = self._slots[index].get_token()
            if self._watched(index, token):
                return self._land(start, index, token, dead)
            reason = self._verdicts.get(token.fingerprint) or self._invalidated(index, token)
            if reason is None:
                return self._land(start, index, token, dead)
            dead.append((token, reason))
        raise self._all_dead(dead)

    async def aget_token(self) -> Token:
        """Return the active candidate's token, failing over past candidates known dead.

        Raises:
            AllCandidatesRejectedError: Every candidate's token has a verdict.
            TokenUnavailableError: The active candidate could not produce a token.
        """
        start = self._active
        dead: list[tuple[Token, ApiError | str]] = []
        for index in self._order(start):
            token = await self._slots[index].aget_token()
            if self._watched(index, token):
                return self._land(start, index, token, dead)
            reason = await self._verdicts.aget(token.fingerprint) or self._invalidated(index, token)
            if reason is None:
                return self._land(start, index, token, dead)
            dead.append((token, reason))
        raise self._all_dead(dead)

    def _order(self, start: int) -> list[int]:
        count = len(self._slots)
        return [(start + step) % count for step in range(count)]

    def _watched(self, index: int, token: Token) -> bool:
        """Note that *index* serves *token*; return whether a rotation's window judges it."""
        self._served[index] = token.fingerprint
        watch = self._watch
        return watch is not None and watch.index == index

    def _invalidated(self, index: int, token: Token) -> str | None:
        """Return the category `invalidate` gave *token* of *index*, while it still serves it."""
        failed = self._failed
        if failed is not None and failed[:2] == (index, token.fingerprint):
            return failed[2]
        return None

    def _land(
        self, start: int, index: int, token: Token, dead: list[tuple[Token, ApiError | str]]
    ) -> Token:
        """Make *index* the active candidate when the search moved past *start*; one event."""
        if index == start:
            return token
        with self._lock:
            if self._active != start:
                return token  # another caller switched already, and said so
            self._active = index
            if self._watch is not None and self._watch.index == start:
                self._watch = None
        old, reason = dead[0]
        category = reason if isinstance(reason, str) else reason.category
        self.events.emit(TokenFailedOver(token_fingerprint=old.fingerprint, category=category))
        return token

    def _all_dead(self, dead: list[tuple[Token, ApiError | str]]) -> AllCandidatesRejectedError:
        fingerprints = tuple(dict.fromkeys(t.fingerprint for t, _ in dead))
        error = AllCandidatesRejectedError(
            f"all {len(self._slots)} candidate tokens are known dead ({', '.join(fingerprints)})",
            fingerprints=fingerprints,
            source="rotating",
        )
        verdicts = [reason for _, reason in dead if isinstance(reason, ApiError)]
        if verdicts:
            error.__cause__ = copy.copy(verdicts[-1])
        return error

    # --- failures -------------------------------------------------------------------------------

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Fail over from *token* if it is the active token and *reason* is token-class; no I/O.

        The next `get_token` moves on to the first candidate not known dead, and says so with
        one event; with none left it raises `AllCandidatesRejectedError` and switches nothing.
        A permission, account-state or transient *reason* does nothing: another token of the
        same business would fail the same way.
        """
        if not _is_token_class(reason):
            return
        served = list(self._served.items())  # one atomic copy: other threads may add
        index = next((i for i, fp in served if fp == token.fingerprint), None)
        if index is None:
            return
        self._slots[index].invalidate(token, reason)
        if self._owns_verdicts and isinstance(reason, ApiError):
            self._verdicts_record(token, reason)
        watch = self._watch
        if watch is not None and watch.index == index and watch.fingerprint == token.fingerprint:
            return  # counted by observe_outcome; the window decides
        if index == self._active:
            category = reason if isinstance(reason, str) else reason.category
            self._failed = (index, token.fingerprint, category)

    def _verdicts_record(self, token: Token, reason: ApiError) -> None:
        assert isinstance(self._verdicts, TokenVerdicts)  # in memory: no I/O
        self._verdicts.record(token.fingerprint, reason)

    def observe_outcome(self, token: Token, error: WhatsAppError | None) -> None:
        """Count one call's outcome toward a watched rotation; no I/O.

        The client calls this after every attempt. Only successes and expired/revoked failures
        of the watched token count; anything else is ignored.
        """
        watch = self._watch
        if watch is None or token.fingerprint != watch.fingerprint:
            return
        if error is not None and not _is_token_class(error):
            return
        event: Event | None = None
        with self._lock:
            if self._watch is not watch:
                return
            watch.outcomes.append(error is not None)
            failures = sum(watch.outcomes)
            calls = len(watch.outcomes)
            if failures >= watch.max_failures:
                self._active = watch.previous
                self._watch = None
                event = RotationRolledBack(
                    token_fingerprint=watch.fingerprint,
                    restored_fingerprint=self._served.get(watch.previous),
                    calls=calls,
                    failures=failures,
                )
            elif calls >= watch.window:
                self._watch = None
                event = RotationConfirmed(
                    token_fingerprint=watch.fingerprint, calls=calls, failures=failures
                )
        if event is not None:
            self.events.emit(event)

    # --- planned rotation ---------------------------------------------------------------------

    def _activate(
        self, index: int, token: Token, window: int | None, max_failures: int | None
    ) -> None:
        window = self.window if window is None else window
        max_failures = self.max_failures if max_failures is None else max_failures
        if not 1 <= max_failures <= window:
            raise ValueError("max_failures must be between 1 and window")
        with self._lock:
            previous = self._active
            self._served[index] = token.fingerprint
            self._active = index
            self._watch = _Watch(index, token.fingerprint, previous, window, max_failures)
        self.events.emit(
            TokenActivated(
                token_fingerprint=token.fingerprint,
                previous_fingerprint=self._served.get(previous),
                window=window,
                max_failures=max_failures,
            )
        )

    def _index_of(self, candidate: TokenProvider | Token | str | int) -> int:
        if isinstance(candidate, int):
            if not 0 <= candidate < len(self._slots):
                raise ValueError(f"no candidate number {candidate}")
            return candidate
        for i, slot in enumerate(self._slots):
            if slot is candidate or getattr(slot, "inner", None) is candidate:
                return i
        with self._lock:
            self._slots = (*self._slots, self._wrap(candidate))
            return len(self._slots) - 1

    def rotate_to(
        self,
        candidate: TokenProvider | Token | str | int,
        *,
        window: int | None = None,
        max_failures: int | None = None,
    ) -> Token:
        """Make *candidate* the active token and watch it; return its token.

        *candidate* is a candidate's index, one of the candidate providers, or a new provider,
        `Token` or token string (added as a candidate). When *max_failures* of its next
        *window* calls fail with an expired/revoked token, the previous token comes back.

        Raises:
            TokenUnavailableError: The candidate could not produce a token; nothing changed.
        """
        index = self._index_of(candidate)
        token = self._slots[index].get_token()
        with contextlib.suppress(TokenUnavailableError):  # only for the event's fingerprint
            previous = self._active
            self._served[previous] = self._slots[previous].get_token().fingerprint
        self._activate(index, token, window, max_failures)
        return token

    async def arotate_to(
        self,
        candidate: TokenProvider | Token | str | int,
        *,
        window: int | None = None,
        max_failures: int | None = None,
    ) -> Token:
        """Make *candidate* the active token and watch it, without blocking the event loop."""
        index = self._index_of(candidate)
        token = await self._slots[index].aget_token()
        with contextlib.suppress(TokenUnavailableError):  # only for the event's fingerprint
            previous = self._active
            self._served[previous] = (await self._slots[previous].aget_token()).fingerprint
        self._activate(index, token, window, max_failures)
        return token
