"""`RotatingTokenProvider`: ordered candidates, fail-over, planned rotation with rollback.

Its candidates may be exchanged through `fb_exchange_token` (`providers/_exchange.py`); its
events live beside the others in `wa_auth.events`.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from wa_auth import _table
from wa_auth.errors import (
    AllCandidatesRejectedError,
    ApiError,
    ConfigurationError,
    StateUnavailableError,
    TokenUnavailableError,
    WhatsAppError,
)
from wa_auth.events import (
    Event,
    Events,
    RotationConfirmed,
    RotationRolledBack,
    TokenActivated,
    TokenFailedOver,
)
from wa_auth.providers._base import StaticTokenProvider, Token, TokenProvider, as_provider
from wa_auth.providers._effects import Flow, GetToken, GetVerdict, Session, adrive, drive
from wa_auth.providers._exchange import FbTokenExchanger, _Exchanging
from wa_auth.providers._verdicts import TokenVerdicts, VerdictStore

__all__ = ["DEFAULT_ROLLBACK_FAILURES", "DEFAULT_ROLLBACK_WINDOW", "RotatingTokenProvider"]

#: A planned rotation is watched over the new token's last this many calls...
DEFAULT_ROLLBACK_WINDOW: Final = 10
#: ...and rolled back when this many of them failed with an expired/revoked token. One stray
#: failure (a token still propagating at Meta) does not flap the rotation; three bound the
#: damage of a bad token to two failed calls, since the verdict store fails the others fast.
DEFAULT_ROLLBACK_FAILURES: Final = 3


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


@runtime_checkable
class SharedRotation(Protocol):
    """Where a fleet decides a rotation's active candidate once (`wa_auth.fleet.RedisRotation`).

    A record has `version` (0: never set) and `active` (a token fingerprint, or None).
    """

    def peek(self, name: str) -> Any:
        """Return the record as this process last heard it (no I/O)."""
        ...

    def compare_and_set(self, name: str, version: int, active: str) -> Any:
        """Make *active* the candidate if the record is still at *version*; None: lost."""
        ...

    def get(self, name: str) -> Any:
        """Return the record, read from the store."""
        ...

    async def acompare_and_set(self, name: str, version: int, active: str) -> Any:
        """Make *active* the candidate if still at *version* (see `compare_and_set`)."""
        ...

    async def aget(self, name: str) -> Any:
        """Return the record, read from the store."""
        ...


@attrs.frozen
class _Share:
    """Decide *active* for the fleet at *version*; return the record that stands after."""

    shared: SharedRotation
    name: str
    version: int
    active: str

    def perform(self, session: Session, /) -> Any:  # noqa: ARG002
        won = self.shared.compare_and_set(self.name, self.version, self.active)
        return won if won is not None else self.shared.get(self.name)

    async def aperform(self, session: Session, /) -> Any:  # noqa: ARG002
        won = await self.shared.acompare_and_set(self.name, self.version, self.active)
        return won if won is not None else await self.shared.aget(self.name)


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
        shared: Decide planned rotations and rollbacks once for a fleet
            (`RedisState.rotation`): a `rotate_to` or a rollback in one process is the
            active candidate of every process sharing it from its next `get_token`, and of
            two processes promoting at once one wins and the other follows it.
        shared_name: The rotation's name in *shared* (one per set of candidates).

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
        shared: SharedRotation | None = None,
        shared_name: str = "main",
    ) -> None:
        if not candidates:
            raise ConfigurationError("candidates must not be empty")
        if not 1 <= max_failures <= window:
            raise ConfigurationError("max_failures must be between 1 and window")
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
        self._shared = shared
        self._shared_name = shared_name
        #: The fleet's version this process follows, and a rollback to tell the fleet.
        self._shared_version = 0
        self._share_next: str | None = None

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
        return drive(self._token_flow())

    async def aget_token(self) -> Token:
        """Return the active candidate's token, failing over past candidates known dead.

        Raises:
            AllCandidatesRejectedError: Every candidate's token has a verdict.
            TokenUnavailableError: The active candidate could not produce a token.
        """
        return await adrive(self._token_flow())

    def _token_flow(self) -> Flow[Token]:
        if self._shared is not None:
            yield from self._follow()
        start = self._active
        dead: list[tuple[Token, ApiError | str]] = []
        for index in self._order(start):
            token: Token = yield GetToken(self._slots[index])
            if self._watched(index, token):
                return self._land(start, index, token, dead)
            verdict = yield GetVerdict(self._verdicts, token.fingerprint)
            reason = verdict or self._invalidated(index, token)
            if reason is None:
                return self._land(start, index, token, dead)
            dead.append((token, reason))
        raise self._all_dead(dead)

    def _follow(self, record: Any = None) -> Flow[None]:
        """Tell the fleet a rollback made here; make the fleet's choice the active candidate."""
        assert self._shared is not None
        pending, self._share_next = self._share_next, None
        if pending is not None:
            try:
                share = _Share(self._shared, self._shared_name, self._shared_version, pending)
                record = yield share
            except StateUnavailableError:
                self._share_next = pending  # the fleet hears of it when its store is back
                return
        if record is None:
            record = self._shared.peek(self._shared_name)
        version, active = record.version, record.active
        if version <= self._shared_version or active is None:
            return
        for index in range(len(self._slots)):
            served = self._served.get(index)
            if served is None:
                with contextlib.suppress(TokenUnavailableError):
                    served = (yield GetToken(self._slots[index])).fingerprint
                    self._served[index] = served
            if served == active:
                with self._lock:
                    self._active = index
                    if self._watch is not None and self._watch.index != index:
                        self._watch = None
                    self._shared_version = version
                return
        self._shared_version = version  # a candidate this process does not have: its own stays

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
                restored = self._served.get(watch.previous)
                if self._shared is not None and restored is not None:
                    self._share_next = restored  # told to the fleet by the next get_token
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
            raise ConfigurationError("max_failures must be between 1 and window")
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
                raise ConfigurationError(f"no candidate number {candidate}")
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
            StateUnavailableError: With *shared*, its store did not answer; nothing changed.
        """
        return drive(self._rotate_flow(candidate, window, max_failures))

    async def arotate_to(
        self,
        candidate: TokenProvider | Token | str | int,
        *,
        window: int | None = None,
        max_failures: int | None = None,
    ) -> Token:
        """Make *candidate* the active token and watch it, without blocking the event loop."""
        return await adrive(self._rotate_flow(candidate, window, max_failures))

    def _rotate_flow(
        self,
        candidate: TokenProvider | Token | str | int,
        window: int | None,
        max_failures: int | None,
    ) -> Flow[Token]:
        index = self._index_of(candidate)
        token: Token = yield GetToken(self._slots[index])
        with contextlib.suppress(TokenUnavailableError):  # only for the event's fingerprint
            previous = self._active
            self._served[previous] = (yield GetToken(self._slots[previous])).fingerprint
        if self._shared is not None:
            limit = self.max_failures if max_failures is None else max_failures
            if not 1 <= limit <= (self.window if window is None else window):
                raise ConfigurationError("max_failures must be between 1 and window")
            # Decided for the fleet first: a store that does not answer changes nothing here.
            name, version = self._shared_name, self._shared_version
            record = yield _Share(self._shared, name, version, token.fingerprint)
            if record.active != token.fingerprint:  # another process promoted first: follow it
                yield from self._follow(record)
                winner: Token = yield GetToken(self._slots[self._active])
                return winner
            self._shared_version = record.version
        self._activate(index, token, window, max_failures)
        return token
