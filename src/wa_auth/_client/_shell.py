"""The two drivers of `_core` flows: one blocking, one asyncio.

A transport (httpx sync or async, aiohttp) supplies only `send(request, token) -> Response`;
every other effect (tokens from the routed provider, verdict look-ups and records, the health
cache's reads and writes) is performed here, once per mode.

Each driver holds one slot of the client's *gate* (its in-flight limit) from the flow's first
effect to its end: the verdict is looked up while the request holds its slot, and the slot is
freed only after the answer was classified and any verdict recorded. A caller waiting for a
slot therefore sees what the request before it learned, so at most the gate's size of requests
can ever go out with a token Meta has just proved dead.

Each driver also sets the call's deadline (`wa_auth._deadline`) for the flow's whole run, so
every wait below it ends in time: the gate, the token (a refresh it leads or waits for), the
pool and each socket read and write of the transport. A request whose deadline passed before it
went out fails as a `TransportError` that says it was not sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from wa_auth import _deadline
from wa_auth._context import Context
from wa_auth._core import (
    CheckVerdict,
    Effect,
    Flow,
    ForgetVerdict,
    GetToken,
    ReadHealth,
    RecordVerdict,
    Request,
    Response,
    Send,
    StoreHealth,
)
from wa_auth.errors import TransportError, WhatsAppError
from wa_auth.providers import Token

T = TypeVar("T")

SyncSend = Callable[[Request, Token], Response]
AsyncSend = Callable[[Request, Token], Awaitable[Response]]
#: A call's deadline: its seconds and its words (`"the client's 30 s deadline"`).
Limit = tuple[float, str]


class AsyncGate(Protocol):
    """What `adrive` needs of an in-flight limit (`asyncio.Semaphore` is one)."""

    async def acquire(self) -> Any:
        """Wait for a slot."""
        ...

    def release(self) -> None:
        """Free a slot."""
        ...

    def locked(self) -> bool:
        """Whether `acquire` would wait."""
        ...


class Gate:
    """A blocking in-flight limit: *size* slots, a wait bounded by *timeout* seconds.

    A caller that waits longer than *timeout* (httpx's pool timeout, so the bound a caller had
    before the gate existed), or past its call's deadline, gets a `TransportError`: nothing was
    sent.
    """

    def __init__(self, size: int, timeout: float | None) -> None:
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)

    def acquire(self) -> None:
        """Take a slot, or raise `TransportError` after *timeout* seconds or at the deadline."""
        timeout = self.timeout
        deadline = _deadline.current()
        if deadline is not None:
            left = max(deadline.at - time.monotonic(), 0.0)
            if timeout is not None and timeout <= left:
                deadline = None  # the pool timeout comes first
            else:
                timeout = left
        if not self._slots.acquire(timeout=timeout):
            within = f"{timeout:g} s" if deadline is None else deadline.what
            raise _not_sent(
                f"no connection became free within {within} ({self.size} requests in flight)"
            )

    def release(self) -> None:
        """Free a slot."""
        self._slots.release()


def _not_sent(why: str) -> TransportError:
    return TransportError(
        f"{why}: the request was not sent",
        maybe_delivered=False,
        retry_after=1.0,
        max_attempts=3,
        rule="transport",
    )


def _in_time(request: Request) -> None:
    """Raise `TransportError` (not sent) when the deadline passed before *request* went out."""
    late = _deadline.passed()
    if late is not None:
        raise _not_sent(f"{late.what} passed before {request.operation or request.method}")


def _perform_rare(ctx: Context, effect: Effect) -> Any:
    """Perform an effect off the send path (verdict records, the health cache), blocking."""
    if isinstance(effect, RecordVerdict):
        if ctx.verdicts is not None:
            ctx.verdicts.record(effect.fingerprint, effect.error)
    elif isinstance(effect, ForgetVerdict):
        if ctx.verdicts is not None:
            ctx.verdicts.forget(effect.fingerprint)
    elif isinstance(effect, ReadHealth):
        return ctx.health_cache.get(effect.fingerprint)
    elif isinstance(effect, StoreHealth):
        ctx.health_cache.put(effect.fingerprint, effect.health)
    else:  # pragma: no cover - a flow yielding something new is a programming error
        raise TypeError(f"unknown effect {effect!r}")
    return None


async def _aperform_rare(ctx: Context, effect: Effect) -> Any:
    """Perform an effect off the send path on the running event loop (see `_perform_rare`)."""
    if isinstance(effect, RecordVerdict):
        if ctx.verdicts is not None:
            await ctx.verdicts.arecord(effect.fingerprint, effect.error)
    elif isinstance(effect, ForgetVerdict):
        if ctx.verdicts is not None:
            await ctx.verdicts.aforget(effect.fingerprint)
    elif isinstance(effect, ReadHealth):
        return await ctx.health_cache.aget(effect.fingerprint)
    elif isinstance(effect, StoreHealth):
        await ctx.health_cache.aput(effect.fingerprint, effect.health)
    else:  # pragma: no cover - a flow yielding something new is a programming error
        raise TypeError(f"unknown effect {effect!r}")
    return None


def drive(
    ctx: Context,
    flow: Flow[T],
    send: SyncSend,
    gate: Gate | None = None,
    limit: Limit | None = None,
) -> T:
    """Run *flow* to completion, performing its effects with blocking calls.

    *limit* is the call's deadline (seconds, words); a sooner one already in force stays.
    """
    value: Any = None
    error: WhatsAppError | None = None
    held = False
    bounded = None if limit is None else _deadline.enter(*limit)
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            except BaseException:
                value = error = None  # the traceback holds this frame: no cycle through it
                raise
            value = error = None
            try:
                if not held and gate is not None:
                    gate.acquire()
                    held = True
                # The send path's effects inline (no call per effect); the rest in one call.
                if isinstance(effect, Send):
                    _in_time(effect.request)
                    value = send(effect.request, effect.token)
                elif isinstance(effect, GetToken):
                    value = effect.provider_in(ctx).get_token()
                elif isinstance(effect, CheckVerdict):
                    value = ctx.verdicts.get(effect.fingerprint) if ctx.verdicts else None
                else:
                    value = _perform_rare(ctx, effect)
            except WhatsAppError as exc:
                error = exc
    finally:
        if held:
            gate.release()  # type: ignore[union-attr]
        if bounded is not None:
            _deadline.leave(bounded)
        # Any other exception (a provider's bug, KeyboardInterrupt) must not leave the flow
        # suspended with its frames and the token alive.
        flow.close()


async def _acquire(gate: AsyncGate) -> None:
    """Take a slot of *gate*, waiting no longer than the deadline in force."""
    deadline = _deadline.current()
    if deadline is None or not gate.locked():
        await gate.acquire()
        return
    import asyncio  # loaded already: the caller runs on its loop

    try:
        await _deadline.wait_for(gate.acquire(), deadline.at - time.monotonic())
        return  # noqa: TRY300 - the error is raised outside the handler: no context to keep
    except asyncio.TimeoutError:
        pass
    raise _not_sent(f"no connection became free within {deadline.what}")


async def adrive(
    ctx: Context,
    flow: Flow[T],
    send: AsyncSend,
    gate: AsyncGate | None = None,
    limit: Limit | None = None,
) -> T:
    """Run *flow* to completion on the running event loop (*limit*: as `drive`)."""
    value: Any = None
    error: WhatsAppError | None = None
    held = False
    bounded = None if limit is None else _deadline.enter(*limit)
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            except BaseException:
                value = error = None  # the traceback holds this frame: no cycle through it
                raise
            value = error = None
            try:
                if not held and gate is not None:
                    await _acquire(gate)
                    held = True
                if isinstance(effect, Send):
                    _in_time(effect.request)
                    value = await send(effect.request, effect.token)
                elif isinstance(effect, GetToken):
                    value = await effect.provider_in(ctx).aget_token()
                elif isinstance(effect, CheckVerdict):
                    value = await ctx.verdicts.aget(effect.fingerprint) if ctx.verdicts else None
                else:
                    value = await _aperform_rare(ctx, effect)
            except WhatsAppError as exc:
                error = exc
    finally:
        if held:
            gate.release()  # type: ignore[union-attr]
        if bounded is not None:
            _deadline.leave(bounded)
        flow.close()
