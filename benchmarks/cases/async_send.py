"""Async send_text at 1/16/64/256 in flight: wa_auth (httpx and fast) against raw clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from loops import async_loop
from registry import ASYNC_LEVELS, Ctx, Goal, variant

from cases.common import (
    TEXT,
    TOKEN,
    ForgetfulVerdicts,
    body,
    headers,
    hide_module,
    messages_url,
    quiet_logging,
)


async def _raw_httpx(ctx: Ctx) -> dict[str, Any]:
    import httpx

    url = messages_url(ctx.base_url, ctx.api_version, ctx.phone_id)
    content, hdrs = body(ctx.to), headers()
    async with httpx.AsyncClient() as client:

        async def send() -> Any:
            return (await client.post(url, content=content, headers=hdrs)).json()

        return await async_loop(ctx.n, ctx.concurrency, send)


@variant(
    "async.httpx.raw",
    label="raw httpx.AsyncClient (defaults)",
    group="async",
    concurrency=ASYNC_LEVELS,
)
def raw_httpx(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_raw_httpx(ctx))


async def _wa_auth_async(ctx: Ctx, phone_id: str | None = None) -> dict[str, Any]:
    import wa_auth

    quiet_logging()
    async with wa_auth.AsyncWhatsAppClient(
        token=TOKEN, phone_number_id=phone_id or ctx.phone_id, base_url=ctx.base_url
    ) as client:
        return await async_loop(ctx.n, ctx.concurrency, lambda: client.send_text(ctx.to, TEXT))


@variant(
    "async.wa_auth.httpx",
    label="wa_auth AsyncWhatsAppClient.send_text (httpx)",
    group="async",
    concurrency=ASYNC_LEVELS,
    baseline="async.httpx.raw",
    goal=Goal("min_ratio", 0.95),
)
def wa_auth_async(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_wa_auth_async(ctx))


@variant(
    "async.wa_auth.httpx.no_sniffio",
    label="wa_auth AsyncWhatsAppClient, sniffio not installed",
    group="async",
    concurrency=ASYNC_LEVELS,
    baseline="async.wa_auth.httpx",
    notes="httpcore retries `import sniffio` on every lock set-up when it is missing",
)
def wa_auth_async_no_sniffio(ctx: Ctx) -> dict[str, Any]:
    hide_module("sniffio")
    return asyncio.run(_wa_auth_async(ctx))


async def _raw_aiohttp(ctx: Ctx) -> dict[str, Any]:
    import aiohttp

    url = messages_url(ctx.base_url, ctx.api_version, ctx.phone_id)
    content, hdrs = body(ctx.to), headers()
    async with aiohttp.ClientSession() as session:

        async def send() -> Any:
            async with session.post(url, data=content, headers=hdrs) as r:
                return json.loads(await r.read())

        return await async_loop(ctx.n, ctx.concurrency, send)


@variant(
    "async.aiohttp.raw",
    label="raw aiohttp.ClientSession (defaults)",
    group="async",
    concurrency=ASYNC_LEVELS,
    requires=("aiohttp",),
)
def raw_aiohttp(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_raw_aiohttp(ctx))


async def _fast(ctx: Ctx, phone_id: str | None = None, *, expect_401: bool = False) -> Any:
    import wa_auth
    from wa_auth._client import FastAsyncWhatsAppClient

    quiet_logging()
    async with FastAsyncWhatsAppClient(
        token=TOKEN,
        phone_number_id=phone_id or ctx.phone_id,
        base_url=ctx.base_url,
        # Every 401 goes to the peer: the default store would fail fast after the first one.
        verdicts=ForgetfulVerdicts() if expect_401 else None,
    ) as client:
        if not expect_401:
            return await async_loop(ctx.n, ctx.concurrency, lambda: client.send_text(ctx.to, TEXT))

        async def send() -> None:
            with contextlib.suppress(wa_auth.TokenExpiredError):
                await client.send_text(ctx.to, TEXT)

        return await async_loop(ctx.n, ctx.concurrency, send)


@variant(
    "async.wa_auth.fast",
    label="wa_auth FastAsyncWhatsAppClient.send_text (aiohttp)",
    group="async",
    concurrency=ASYNC_LEVELS,
    baseline="async.aiohttp.raw",
    goal=Goal("min_ratio", 0.8),
    requires=("aiohttp",),
)
def wa_auth_fast(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_fast(ctx))


@variant(
    "error.async.wa_auth.fast.401",
    label="wa_auth fast send_text, 401 expired token (whole request)",
    group="error",
    concurrency=(64,),
    baseline="async.wa_auth.fast",
    goal=Goal("min_ratio", round(1 / 1.05, 3)),
    requires=("aiohttp",),
)
def wa_auth_fast_401(ctx: Ctx) -> dict[str, Any]:
    return asyncio.run(_fast(ctx, ctx.expired_phone_id, expect_401=True))
