"""The peers: pywa (sync and async), heyoo and whatsapp-python, pointed at the same peer.

Each is used the way its README shows, with only its Graph host replaced by the loopback
peer. heyoo and whatsapp-python open a new connection per message (module-level
`requests.post`), which is what their users get.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from loops import async_loop, sync_loop
from registry import ASYNC_LEVELS, Ctx, variant

from cases.common import TEXT, TOKEN, quiet_logging


@variant(
    "sync.peer.pywa",
    label="pywa 4.x WhatsApp.send_message",
    group="sync",
    baseline="sync.httpx.raw",
    requires=("pywa",),
)
def pywa_sync(ctx: Ctx) -> dict[str, Any]:
    import httpx
    from pywa import WhatsApp

    quiet_logging()
    with httpx.Client() as session:
        wa = WhatsApp(phone_id=ctx.phone_id, token=TOKEN, session=session)
        session.base_url = f"{ctx.base_url}/{ctx.api_version}"
        return sync_loop(ctx.n, lambda: wa.send_message(to=ctx.to, text=TEXT))


async def _pywa_async(ctx: Ctx) -> dict[str, Any]:
    import httpx
    from pywa_async import WhatsApp

    quiet_logging()
    async with httpx.AsyncClient() as session:
        wa = WhatsApp(phone_id=ctx.phone_id, token=TOKEN, session=session)
        session.base_url = f"{ctx.base_url}/{ctx.api_version}"
        return await async_loop(
            ctx.n, ctx.concurrency, lambda: wa.send_message(to=ctx.to, text=TEXT)
        )


@variant(
    "async.peer.pywa_async",
    label="pywa_async WhatsApp.send_message",
    group="async",
    concurrency=ASYNC_LEVELS,
    baseline="async.httpx.raw",
    requires=("pywa_async",),
)
def pywa_async(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_pywa_async(ctx))


@variant(
    "sync.peer.heyoo",
    label="heyoo WhatsApp.send_message (new connection each)",
    group="sync",
    baseline="sync.httpx.raw",
    requires=("heyoo",),
    scale=0.5,
)
def heyoo(ctx: Ctx) -> dict[str, Any]:
    from heyoo import WhatsApp

    quiet_logging()
    logging.getLogger().setLevel(logging.WARNING)  # heyoo logs at INFO per message
    wa = WhatsApp(TOKEN, ctx.phone_id)
    wa.url = f"{ctx.base_url}/{ctx.api_version}/{ctx.phone_id}/messages"
    return sync_loop(ctx.n, lambda: wa.send_message(TEXT, ctx.to, preview_url=False))


@variant(
    "sync.peer.whatsapp_python",
    label="whatsapp-python Message.send (new connection each)",
    group="sync",
    baseline="sync.httpx.raw",
    requires=("whatsapp",),
    scale=0.5,
    notes="shimmed: its constructor GETs developers.facebook.com and send() hard-codes "
    "graph.facebook.com; the shim stubs the GET and rewrites the host of each POST",
)
def whatsapp_python(ctx: Ctx) -> dict[str, Any]:
    import types

    import requests
    import whatsapp

    graph = "https://graph.facebook.com"
    peer = ctx.base_url

    def post(url: str, **kwargs: Any) -> Any:
        return requests.post(url.replace(graph, peer, 1), **kwargs)

    def get(*_: Any, **__: Any) -> Any:
        return types.SimpleNamespace(text="", json=dict)

    whatsapp.requests = types.SimpleNamespace(post=post, get=get)  # type: ignore[attr-defined]
    quiet_logging()
    wa = whatsapp.WhatsApp(
        token=TOKEN, phone_number_id={1: ctx.phone_id}, update_check=False, version=ctx.api_version
    )
    logging.getLogger().setLevel(logging.WARNING)

    def send() -> Any:
        return wa.create_message(to=ctx.to, content=TEXT).send(sender=1, preview_url=False)

    return sync_loop(ctx.n, send)
