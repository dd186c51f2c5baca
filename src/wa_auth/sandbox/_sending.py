"""The send handler, `POST /{phone_number_id}/messages`: checks, limits, then a recorded wamid.

A send passes, in Meta's order: the token's permission, the body's JSON and its fields
(`_messages`), the account and number states, the seeded faults (`_seeded`), then the rate
limits; only then is it recorded, its status webhooks queued (`_webhooks`), and answered with
a `wamid`. A mark-as-read (`"status": "read"`) takes the same path, short, and meets no seeded
fault.
"""

from __future__ import annotations

import base64
import collections
import json
import math
from collections.abc import Mapping
from typing import Any

from wa_auth.sandbox._calls import MESSAGING, Call
from wa_auth.sandbox._catalogue import Reply
from wa_auth.sandbox._messages import check_message, check_read
from wa_auth.sandbox._values import Limits, RecordedMessage
from wa_auth.sandbox._webhooks import on_accepted
from wa_auth.sandbox._wire import RECIPIENT_RE, digits_of, json_body

__all__ = ["send"]


def send(ctx: Call) -> Reply:
    """Answer a send or a mark-as-read."""
    denied = ctx.permitted(MESSAGING, ctx.phone)
    if denied is not None:
        return denied
    body = json_body(ctx.req)
    if body is None:
        return ctx.error("invalid_parameter", details="The request body is not a JSON object")
    if body.get("messaging_product") != "whatsapp":
        return ctx.error("required_parameter", parameter="messaging_product")
    if body.get("status") == "read":
        problem = check_read(body)
        if problem is not None:
            return ctx.error(problem[0], **problem[1])
        blocked = ctx.account_block()
        return blocked if blocked is not None else ctx.ok({"success": True})
    to = body.get("to")
    if to is None or to == "":
        return ctx.error("required_parameter", parameter="to")
    if not isinstance(to, str):
        return ctx.error("param_type", param="to", expected="a string")
    if not RECIPIENT_RE.fullmatch(to):
        return ctx.error("invalid_parameter", details=f"Invalid WhatsApp recipient: {to[:20]!r}")
    problem = check_message(body)
    if problem is not None:
        return ctx.error(problem[0], **problem[1])
    kind = body.get("type") or "text"
    blocked = (
        ctx.account_block()
        or _number_restricted(ctx)
        or ctx.seeded(ctx.phone, recipient=to, body=body)
        or _rate_limited(ctx, to)
    )
    if blocked is not None:
        return blocked
    return _accept(ctx, body, to, kind)


def _number_restricted(ctx: Call) -> Reply | None:
    # A restricted number is spam-limited (131048); its read receipts and uploads still work.
    if ctx.phone is not None and ctx.world.state.numbers.get(ctx.phone) == "restricted":
        return ctx.error("spam_limit")
    return None


def _retry_after(limits: Limits, seconds: int) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", str(seconds)),) if limits.retry_after_header else ()


def _rate_limited(ctx: Call, to: str) -> Reply | None:
    state = ctx.world.state
    limits, phone = state.limits, ctx.phone
    assert phone is not None
    if limits.throughput is not None:
        second = int(ctx.now)
        start, count = state.throughput.get(phone, (second, 0))
        if start == second and count >= limits.throughput:
            wait = max(1, math.ceil(second + 1 - ctx.now))
            return ctx.error("throughput", headers=_retry_after(limits, wait))
    if limits.pair_limit is not None:
        sent = state.pairs.get((phone, digits_of(to)))
        if sent is not None:
            while sent and sent[0] <= ctx.now - limits.pair_window:
                sent.popleft()
            if len(sent) >= limits.pair_limit:
                wait = max(1, math.ceil(sent[0] + limits.pair_window - ctx.now))
                return ctx.error("pair_limit", headers=_retry_after(limits, wait))
    return None


def _accept(ctx: Call, body: Mapping[str, Any], to: str, kind: str) -> Reply:
    state = ctx.world.state
    phone = ctx.phone
    token = ctx.auth
    assert phone is not None
    assert token is not None
    second = int(ctx.now)
    start, count = state.throughput.get(phone, (second, 0))
    state.throughput[phone] = (second, count + 1 if start == second else 1)
    if state.limits.pair_limit is not None:
        state.pairs.setdefault((phone, digits_of(to)), collections.deque()).append(ctx.now)
    # Digits, colons and upper-case hex encode to base64 without "+" or "/", like wamids.
    raw = f"{digits_of(to)}:{ctx.seq}:{ctx.world.random_hex(18).upper()}".encode()
    message_id = "wamid.HBgL" + base64.b64encode(raw).decode().rstrip("=")
    key = body.get("biz_opaque_callback_data")
    recorded = RecordedMessage(
        id=message_id,
        phone_number_id=phone,
        recipient=to,
        type=kind,
        payload=json.loads(json.dumps(body)),
        idempotency_key=key if isinstance(key, str) else None,
        token_fingerprint=token.fingerprint,
        at=ctx.now,
        request_seq=ctx.seq,
    )
    state.messages.append(recorded)
    on_accepted(ctx.world, recorded)
    message: dict[str, Any] = {"id": message_id}
    if kind == "template":
        message["message_status"] = "accepted"
    return ctx.ok(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": digits_of(to)}],
            "messages": [message],
        }
    )
