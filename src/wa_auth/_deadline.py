"""The deadline of a call: one bound on every wait the call makes, in a context variable.

A client call, a guarded send and a provider's read each set a deadline (`enter`): the moment,
on the monotonic clock, by which everything they wait for must be over, and words for it
(`"the client's 30 s deadline"`) that an error can quote. Everything below asks `left()` and
waits no longer: the in-flight gate, a refresh that another caller leads, httpx's pool, and
each socket connect, read and write (`wa_auth._deadline_io`). Deadlines only tighten: a client
call inside a guarded send keeps the guard's when it comes first, and a Vault read inside a
call keeps the call's.

Why a context variable: the socket reads happen deep inside httpx and httpcore, where no
argument of ours reaches; every thread and every asyncio task sees its own value (a task
starts with a copy of its creator's), so nothing is shared between concurrent calls.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import Final, NamedTuple, TypeVar

__all__ = ["Deadline", "current", "enter", "leave", "left", "passed", "scope", "wait_for"]

T = TypeVar("T")


class Deadline(NamedTuple):
    """When a call must be over (`time.monotonic()` seconds) and what set it, in words."""

    at: float
    #: For messages: `"the client's 30 s deadline"`, `"the guard's 10 s budget"`.
    what: str


_CURRENT: Final[ContextVar[Deadline | None]] = ContextVar("wa_auth_deadline", default=None)
#: `Deadline(at, what)` without the named tuple's `__new__`, a Python function: every call
#: and every guarded send makes one.
_new: Final = tuple.__new__


def enter(seconds: float, what: str) -> Token[Deadline | None]:
    """Bound what follows by *seconds* from now, unless a sooner deadline is already set.

    Returns:
        The token to hand to `leave` when the call is over.
    """
    at = time.monotonic() + seconds
    outer = _CURRENT.get()
    if outer is not None and outer.at <= at:
        return _CURRENT.set(outer)
    return _CURRENT.set(_new(Deadline, (at, what)))


def leave(token: Token[Deadline | None]) -> None:
    """Restore the deadline that was in force before the matching `enter`."""
    _CURRENT.reset(token)


class _Scope:
    """`enter` and `leave` around a block (a class: a generator's context manager costs more)."""

    __slots__ = ("seconds", "token", "what")

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.token: Token[Deadline | None] | None = None

    def __enter__(self) -> None:
        self.token = enter(self.seconds, self.what)

    def __exit__(self, *exc_info: object) -> None:
        if self.token is not None:
            leave(self.token)
            self.token = None


def scope(seconds: float, what: str) -> AbstractContextManager[None]:
    """Bound the block by *seconds* from now (`enter` and `leave` around it)."""
    return _Scope(seconds, what)


def current() -> Deadline | None:
    """Return the deadline in force, or None."""
    return _CURRENT.get()


def left() -> float | None:
    """Return the seconds left before the deadline in force (<= 0 once passed), or None."""
    deadline = _CURRENT.get()
    return None if deadline is None else deadline.at - time.monotonic()


def passed() -> Deadline | None:
    """Return the deadline in force if it has passed, else None."""
    deadline = _CURRENT.get()
    if deadline is not None and time.monotonic() >= deadline.at:
        return deadline
    return None


async def wait_for(awaitable: Awaitable[T], seconds: float) -> T:
    """Await *awaitable* for at most *seconds* (`asyncio.TimeoutError` after that)."""
    import asyncio  # loaded by whoever awaits; a blocking call never does

    if sys.version_info >= (3, 11):
        # No task per call, unlike wait_for before 3.12.
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10
