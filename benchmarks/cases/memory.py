"""Peak RSS of a worker that sends 10,000 messages at 256 in flight, wa_auth against raw."""

from __future__ import annotations

import asyncio
from typing import Any

from registry import Ctx, Goal, variant

from cases import async_send

_N = 10_000


@variant(
    "memory.httpx.raw",
    label="peak RSS, raw httpx.AsyncClient, 10,000 sends @256",
    group="memory",
    kind="memory",
    concurrency=(256,),
    fixed_n=_N,
)
def rss_raw_httpx(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(async_send._raw_httpx(ctx))


@variant(
    "memory.wa_auth.httpx",
    label="peak RSS, AsyncWhatsAppClient, 10,000 sends @256",
    group="memory",
    kind="memory",
    concurrency=(256,),
    fixed_n=_N,
    baseline="memory.httpx.raw",
    goal=Goal("max_ratio", 1.2),
)
def rss_wa_auth(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(async_send._wa_auth_async(ctx))


@variant(
    "memory.aiohttp.raw",
    label="peak RSS, raw aiohttp, 10,000 sends @256",
    group="memory",
    kind="memory",
    concurrency=(256,),
    fixed_n=_N,
    requires=("aiohttp",),
)
def rss_raw_aiohttp(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(async_send._raw_aiohttp(ctx))


@variant(
    "memory.wa_auth.fast",
    label="peak RSS, FastAsyncWhatsAppClient, 10,000 sends @256",
    group="memory",
    kind="memory",
    concurrency=(256,),
    fixed_n=_N,
    baseline="memory.aiohttp.raw",
    goal=Goal("max_ratio", 1.2),
    requires=("aiohttp",),
)
def rss_fast(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(async_send._fast(ctx))
