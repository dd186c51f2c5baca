"""The two drivers of `_core` flows: one blocking, one asyncio.

A transport (httpx sync or async, aiohttp) supplies only `send(request, token) -> Response`;
every other effect (tokens from the routed provider, verdict look-ups and records) is performed
here, once per mode.

Each driver holds one slot of the client's *gate* (its in-flight limit) from the flow's first
effect to its end: the verdict is looked up while the request holds its slot, and the slot is
freed only after the answer was classified and any verdict recorded. A caller waiting for a
slot therefore sees what the request before it learned, so at most the gate's size of requests
can ever go out with a token Meta has just proved dead.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from wa_auth._core import (
    CheckVerdict,
    Context,
    Flow,
    ForgetVerdict,
    GetToken,
    RecordVerdict,
    Request,
    Response,
    Send,
)
from wa_auth.errors import TransportError, WhatsAppError
from wa_auth.providers import Token

T = TypeVar("T")

SyncSend = Callable[[Request, Token], Response]
AsyncSend = Callable[[Request, Token], Awaitable[Response]]


class AsyncGate(Protocol):
    """What `adrive` needs of an in-flight limit (`asyncio.Semaphore` is one)."""

    async def acquire(self) -> Any:
        """Wait for a slot."""
        ...

    def release(self) -> None:
        """Free a slot."""
        ...


class Gate:
    """A blocking in-flight limit: *size* slots, a wait bounded by *timeout* seconds.

    A caller that waits longer than *timeout* (httpx's pool timeout, so the bound a caller had
    before the gate existed) gets a `TransportError`: nothing was sent.
    """

    def __init__(self, size: int, timeout: float | None) -> None:
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)

    def acquire(self) -> None:
        """Take a slot, or raise `TransportError` after *timeout* seconds."""
        if not self._slots.acquire(timeout=self.timeout):
            raise TransportError(
                f"no connection became free within {self.timeout:g} s "
                f"({self.size} requests in flight): the request was not sent",
                maybe_delivered=False,
                retry_after=1.0,
                max_attempts=3,
                rule="transport",
            )

    def release(self) -> None:
        """Free a slot."""
        self._slots.release()


def drive(  # noqa: PLR0912 - one loop per mode interprets every effect: no call per effect
    ctx: Context, flow: Flow[T], send: SyncSend, gate: Gate | None = None
) -> T:
    """Run *flow* to completion, performing its effects with blocking calls."""
    value: Any = None
    error: WhatsAppError | None = None
    held = False
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
                if isinstance(effect, Send):
                    value = send(effect.request, effect.token)
                elif isinstance(effect, GetToken):
                    value = effect.provider_in(ctx).get_token()
                elif isinstance(effect, CheckVerdict):
                    value = ctx.verdicts.get(effect.fingerprint) if ctx.verdicts else None
                elif isinstance(effect, RecordVerdict):
                    if ctx.verdicts is not None:
                        ctx.verdicts.record(effect.fingerprint, effect.error)
                elif isinstance(effect, ForgetVerdict):
                    if ctx.verdicts is not None:
                        ctx.verdicts.forget(effect.fingerprint)
                else:  # pragma: no cover - a flow yielding something new is a programming error
                    raise TypeError(f"unknown effect {effect!r}")
            except WhatsAppError as exc:
                error = exc
    finally:
        if held:
            gate.release()  # type: ignore[union-attr]
        # Any other exception (a provider's bug, KeyboardInterrupt) must not leave the flow
        # suspended with its frames and the token alive.
        flow.close()


async def adrive(  # noqa: PLR0912 - as `drive`
    ctx: Context, flow: Flow[T], send: AsyncSend, gate: AsyncGate | None = None
) -> T:
    """Run *flow* to completion on the running event loop."""
    value: Any = None
    error: WhatsAppError | None = None
    held = False
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
                    await gate.acquire()
                    held = True
                if isinstance(effect, Send):
                    value = await send(effect.request, effect.token)
                elif isinstance(effect, GetToken):
                    value = await effect.provider_in(ctx).aget_token()
                elif isinstance(effect, CheckVerdict):
                    value = await ctx.verdicts.aget(effect.fingerprint) if ctx.verdicts else None
                elif isinstance(effect, RecordVerdict):
                    if ctx.verdicts is not None:
                        await ctx.verdicts.arecord(effect.fingerprint, effect.error)
                elif isinstance(effect, ForgetVerdict):
                    if ctx.verdicts is not None:
                        await ctx.verdicts.aforget(effect.fingerprint)
                else:  # pragma: no cover - a flow yielding something new is a programming error
                    raise TypeError(f"unknown effect {effect!r}")
            except WhatsAppError as exc:
                error = exc
    finally:
        if held:
            gate.release()  # type: ignore[union-attr]
        flow.close()
