"""The request pipeline: one parsed HTTP request in, one recorded `Reply` out.

`answer` takes the world's lock, draws the injected faults, authenticates, counts the app
call, routes to a handler (`_handlers`, `_sending`) and records the outcome. It does no socket
I/O, so the server is a thin shell around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

import attrs

from wa_auth._redact import fingerprint
from wa_auth.sandbox import _handlers as handlers
from wa_auth.sandbox._calls import Call
from wa_auth.sandbox._catalogue import FLAKY_ENTRIES, Reply, html_502
from wa_auth.sandbox._sending import send
from wa_auth.sandbox._values import RecordedRequest
from wa_auth.sandbox._wire import HttpRequest, bearer
from wa_auth.sandbox._world import BUSINESS_ACCOUNT_ID, World

__all__ = ["answer", "endpoint_name"]

_VERSION_RE: Final = re.compile(r"v\d+\.\d+")
_Handler = Callable[[Call], Reply]
#: The handlers of each kind of Graph object, by (method, edge).
_PHONE_EDGES: Final[Mapping[tuple[str, str], _Handler]] = {
    ("POST", "messages"): send,
    ("POST", "media"): handlers.upload,
    ("GET", ""): handlers.phone_number,
    ("GET", "whatsapp_business_profile"): handlers.profile,
}
_WABA_EDGES: Final[Mapping[tuple[str, str], _Handler]] = {
    ("GET", ""): handlers.waba,
    ("GET", "phone_numbers"): handlers.phone_numbers,
    ("GET", "message_templates"): handlers.templates,
}
_MEDIA_EDGES: Final[Mapping[tuple[str, str], _Handler]] = {
    ("GET", ""): handlers.media_info,
    ("DELETE", ""): handlers.delete_media,
}
_ENDPOINTS_BY_EDGE: Final = {
    "media": "upload_media",
    "phone_numbers": "list_phone_numbers",
    "message_templates": "list_templates",
    "whatsapp_business_profile": "get_business_profile",
}


def answer(world: World, req: HttpRequest, host: str | None = None) -> Reply:
    """Answer one Graph API request and record it."""
    with world.lock:
        state = world.state
        state.seq += 1
        ctx = Call(
            world=world, seq=state.seq, now=world.clock.now(), req=req, token=bearer(req), host=host
        )
        reply = _faulted(ctx)
        if reply is None:
            reply = _route(ctx)
            if ctx.drop_after:
                # Processed (a send is recorded), but the answer never reaches the client.
                reply = Reply(0, drop=True, code=reply.code)
        latency = _latency(world)
        if latency:
            reply = attrs.evolve(reply, delay=latency)
        _record(ctx, reply)
        return reply


def _latency(world: World) -> float:
    faults = world.state.faults
    if faults.latency_jitter:
        return faults.latency + faults.latency_jitter * world.state.rng.random()
    return faults.latency


def _record(ctx: Call, reply: Reply) -> None:
    if reply.drop:
        outcome, status = "dropped", None
    elif 200 <= reply.status < 300:
        outcome, status = "accepted", reply.status
    elif ctx.fault:
        outcome, status = "fault", reply.status
    else:
        outcome, status = "error", reply.status
    ctx.world.state.requests.append(
        RecordedRequest(
            seq=ctx.seq,
            at=ctx.now,
            method=ctx.req.method,
            path=ctx.req.path,
            endpoint=ctx.endpoint,
            token_fingerprint=fingerprint(ctx.token) if ctx.token else None,
            status=status,
            code=reply.code,
            outcome=outcome,
            phone_number_id=ctx.phone,
            fault_id=ctx.fault_id,
        )
    )


def _faulted(ctx: Call) -> Reply | None:
    state = ctx.world.state
    faults = state.faults
    ctx.endpoint = endpoint_name(ctx.req, ctx.world.phone_number_ids)
    total = faults.drop_rate + faults.html_502_rate + faults.error_rate
    if total <= 0:
        return None
    draw = state.rng.random()
    if draw < faults.drop_rate:
        if faults.drop_after_accept:
            ctx.drop_after = True
            return None
        ctx.fault = True
        return Reply(0, drop=True)
    draw -= faults.drop_rate
    if draw < faults.html_502_rate:
        ctx.fault = True
        return html_502()
    draw -= faults.html_502_rate
    if draw < faults.error_rate:
        ctx.fault = True
        code = state.rng.choice(faults.error_codes)
        return ctx.error(FLAKY_ENTRIES[code])
    return None


def _route(ctx: Call) -> Reply:
    parts = [p for p in ctx.req.path.split("/") if p]
    if parts[:2] == ["whatsapp_business", "attachments"]:
        return _guarded(ctx, handlers.download)
    if parts and _VERSION_RE.fullmatch(parts[0]):
        parts = parts[1:]
    ctx.parts = parts
    if parts == ["oauth", "access_token"]:
        return handlers.exchange(ctx)
    if parts == ["debug_token"]:
        return handlers.debug_token(ctx)
    return _guarded(ctx, _object)


def _guarded(ctx: Call, then: _Handler) -> Reply:
    auth = ctx.authenticate()
    if isinstance(auth, Reply):
        return auth
    ctx.auth = auth
    limited = ctx.count_app_call()
    if limited is not None:
        return limited
    if ctx.endpoint != "send_message":  # a send meets its seeded faults after its checks
        numbers = ctx.world.state.numbers
        phone = ctx.parts[0] if ctx.parts and ctx.parts[0] in numbers else None
        seeded = ctx.seeded(phone)
        if seeded is not None:
            return seeded
    return then(ctx)


def _object(ctx: Call) -> Reply:
    parts, method = ctx.parts, ctx.req.method
    if not parts:
        return ctx.error("unknown_path", path="/")
    object_id, edge = parts[0], "/".join(parts[1:])
    state = ctx.world.state
    edges: Mapping[tuple[str, str], _Handler]
    if object_id in state.numbers:
        ctx.phone = object_id
        edges = _PHONE_EDGES
    elif object_id == BUSINESS_ACCOUNT_ID:
        edges = _WABA_EDGES
    elif object_id in state.media:
        edges = _MEDIA_EDGES
    else:
        return _missing(ctx, method, object_id)
    handler = edges.get((method, edge))
    if handler is not None:
        return handler(ctx)
    if edge and not any(e == edge for _, e in edges):
        return ctx.error("unknown_path", path="/" + edge)
    return _missing(ctx, method, object_id)


def _missing(ctx: Call, method: str, object_id: str) -> Reply:
    return ctx.error("object_not_found", verb=method.lower(), object_id=object_id)


def endpoint_name(req: HttpRequest, phone_number_ids: tuple[str, ...]) -> str:
    """Return the name a request is recorded under (`send_message`, `debug_token`...)."""
    parts = [p for p in req.path.split("/") if p]
    if parts[:2] == ["whatsapp_business", "attachments"]:
        return "download_media"
    if parts and _VERSION_RE.fullmatch(parts[0]):
        parts = parts[1:]
    if parts == ["debug_token"]:
        return "debug_token"
    if parts == ["oauth", "access_token"]:
        return "exchange_token"
    if len(parts) == 2:
        edge = parts[1]
        if edge == "messages":
            return "send_message"
        return _ENDPOINTS_BY_EDGE.get(edge, "unknown")
    if len(parts) == 1:
        if parts[0] in phone_number_ids:
            return "get_phone_number"
        if parts[0] == BUSINESS_ACCOUNT_ID:
            return "get_business_account"
        return "delete_media" if req.method == "DELETE" else "get_media"
    return "unknown"
