"""The two drivers of `_core` flows: one blocking, one asyncio.

A transport (httpx sync or async, aiohttp) supplies only `send(request, token) -> Response`;
every other effect (tokens from the routed provider, verdict look-ups and records) is performed
here, once per mode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from wa_auth._core import (
    CheckVerdict,
    Context,
    Flow,
    GetToken,
    RecordVerdict,
    Request,
    Response,
    Send,
)
from wa_auth.errors import WhatsAppError
from wa_auth.providers import Token

T = TypeVar("T")

SyncSend = Callable[[Request, Token], Response]
AsyncSend = Callable[[Request, Token], Awaitable[Response]]


def drive(ctx: Context, flow: Flow[T], send: SyncSend) -> T:
    """Run *flow* to completion, performing its effects with blocking calls."""
    value: Any = None
    error: WhatsAppError | None = None
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
            if isinstance(effect, Send):
                value = send(effect.request, effect.token)
            elif isinstance(effect, GetToken):
                value = effect.provider_in(ctx).get_token()
            elif isinstance(effect, CheckVerdict):
                value = ctx.verdicts.get(effect.fingerprint) if ctx.verdicts else None
            elif isinstance(effect, RecordVerdict):
                if ctx.verdicts is not None:
                    ctx.verdicts.record(effect.fingerprint, effect.error)
            else:  # pragma: no cover - a flow yielding something new is a programming error
                raise TypeError(f"unknown effect {effect!r}")
        except WhatsAppError as exc:
            error = exc


async def adrive(ctx: Context, flow: Flow[T], send: AsyncSend) -> T:
    """Run *flow* to completion on the running event loop."""
    value: Any = None
    error: WhatsAppError | None = None
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
            if isinstance(effect, Send):
                value = await send(effect.request, effect.token)
            elif isinstance(effect, GetToken):
                value = await effect.provider_in(ctx).aget_token()
            elif isinstance(effect, CheckVerdict):
                value = await ctx.verdicts.aget(effect.fingerprint) if ctx.verdicts else None
            elif isinstance(effect, RecordVerdict):
                if ctx.verdicts is not None:
                    await ctx.verdicts.arecord(effect.fingerprint, effect.error)
            else:  # pragma: no cover - a flow yielding something new is a programming error
                raise TypeError(f"unknown effect {effect!r}")
        except WhatsAppError as exc:
            error = exc
