"""Sync send_text: wa_auth against a reused httpx.Client and a persistent http.client.

`WhatsAppClient` runs over both of its transports: httpx's (`sync.wa_auth`) and the standard
library's (`sync.wa_auth.stdlib`, measured against each raw client in turn, issue 19).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from loops import sync_loop
from registry import Ctx, Goal, variant

from cases.common import TEXT, TOKEN, ForgetfulVerdicts, body, headers, messages_url, quiet_logging


@variant("sync.httpx.raw", label="raw httpx.Client (reused)", group="sync")
def raw_httpx(ctx: Ctx) -> dict[str, Any]:
    import httpx

    url = messages_url(ctx.base_url, ctx.api_version, ctx.phone_id)
    content, hdrs = body(ctx.to), headers()
    with httpx.Client() as client:

        def send() -> Any:
            return client.post(url, content=content, headers=hdrs).json()

        return sync_loop(ctx.n, send)


@variant(
    "sync.wa_auth",
    label="wa_auth WhatsAppClient.send_text",
    group="sync",
    baseline="sync.httpx.raw",
    goal=Goal("min_ratio", 0.95),
)
def wa_auth_sync(ctx: Ctx) -> dict[str, Any]:
    import wa_auth

    quiet_logging()
    with wa_auth.WhatsAppClient(
        token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
    ) as client:
        return sync_loop(ctx.n, lambda: client.send_text(ctx.to, TEXT))


def _stdlib_loop(ctx: Ctx) -> dict[str, Any]:
    import wa_auth

    quiet_logging()
    with wa_auth.WhatsAppClient(
        transport="stdlib", token=TOKEN, phone_number_id=ctx.phone_id, base_url=ctx.base_url
    ) as client:
        return sync_loop(ctx.n, lambda: client.send_text(ctx.to, TEXT))


@variant(
    "sync.wa_auth.stdlib",
    label='wa_auth WhatsAppClient(transport="stdlib").send_text',
    group="sync",
    baseline="sync.httpx.raw",
    goal=Goal("min_ratio", 2.0),
)
def wa_auth_stdlib(ctx: Ctx) -> dict[str, Any]:
    return _stdlib_loop(ctx)


@variant(
    "sync.wa_auth.stdlib_vs_http_client",
    label='wa_auth WhatsAppClient(transport="stdlib").send_text, against raw http.client',
    group="sync",
    baseline="sync.http_client.raw",
    goal=Goal("min_ratio", 0.8),
)
def wa_auth_stdlib_vs_http_client(ctx: Ctx) -> dict[str, Any]:
    return _stdlib_loop(ctx)


@variant(
    "sync.http_client.raw",
    label="http.client persistent (reference)",
    group="sync",
    baseline="sync.httpx.raw",
)
def raw_http_client(ctx: Ctx) -> dict[str, Any]:
    import http.client

    url = urlsplit(messages_url(ctx.base_url, ctx.api_version, ctx.phone_id))
    content, hdrs = body(ctx.to), headers()
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=15)
    try:

        def send() -> Any:
            conn.request("POST", url.path, content, hdrs)
            return json.loads(conn.getresponse().read())

        return sync_loop(ctx.n, send)
    finally:
        conn.close()


@variant(
    "error.sync.wa_auth.401",
    label="wa_auth sync send_text, 401 expired token (whole request)",
    group="error",
    baseline="sync.wa_auth",
    goal=Goal("min_ratio", round(1 / 1.05, 3)),
    notes="ratio = 401 msgs/s / success msgs/s; >= 0.952 means the error path costs <= 1.05x",
)
def wa_auth_sync_401(ctx: Ctx) -> dict[str, Any]:
    import wa_auth

    quiet_logging()
    with wa_auth.WhatsAppClient(
        token=TOKEN,
        phone_number_id=ctx.expired_phone_id,
        base_url=ctx.base_url,
        verdicts=ForgetfulVerdicts(),
    ) as client:

        def send() -> None:
            try:
                client.send_text(ctx.to, TEXT)
            except wa_auth.TokenExpiredError:
                pass
            else:  # pragma: no cover - the peer always answers 401 here
                raise AssertionError("expected a 401")

        return sync_loop(ctx.n, send)
