"""Micro benchmarks of an inbound webhook: its signature check and its parse, against bare HMAC.

The delivery is ten `delivered` statuses in one `messages` change (2.9 kB), as Meta batches
them. The baseline is what any receiver must do at least: `hmac.compare_digest` of the body's
HMAC-SHA256 with the digest the header carries. Each row is the best of five batches, in
microseconds per delivery; the ratio is the row's time over the baseline's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from loops import micro_loop
from registry import Ctx, Goal, variant

SECRET = "6f1c3a0d9e8b7a65f4e3d2c1b0a99887"
STATUSES = 10


def _delivery() -> tuple[bytes, str]:
    statuses = [
        {
            "id": f"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RT{i:02d}",
            "status": "delivered",
            "timestamp": "1750263773",
            "recipient_id": "16505551234",
            "biz_opaque_callback_data": f"order-{i}",
            "pricing": {
                "billable": True,
                "pricing_model": "PMP",
                "type": "regular",
                "category": "utility",
            },
        }
        for i in range(STATUSES)
    ]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": statuses,
    }
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@variant(
    "micro.webhook.hmac",
    label="hmac.compare_digest of the body's HMAC-SHA256 (baseline)",
    group="micro",
    kind="micro",
)
def bare_hmac(ctx: Ctx) -> dict[str, Any]:
    body, header = _delivery()
    key, sent = SECRET.encode(), bytes.fromhex(header[7:])
    return micro_loop(
        ctx.n, lambda: hmac.compare_digest(hmac.digest(key, body, hashlib.sha256), sent)
    )


@variant(
    "micro.webhook.verify",
    label="webhooks.verify_signature of a 10-status delivery",
    group="micro",
    kind="micro",
    baseline="micro.webhook.hmac",
    goal=Goal("max_ratio", 3),
)
def verify(ctx: Ctx) -> dict[str, Any]:
    from wa_auth.webhooks import verify_signature

    body, header = _delivery()
    return micro_loop(ctx.n, lambda: verify_signature(body, header, SECRET))


@variant(
    "micro.webhook.verify_parse",
    label="webhooks.verify_signature + parse (decoded JSON), 10 statuses",
    group="micro",
    kind="micro",
    baseline="micro.webhook.hmac",
    goal=Goal("max_ratio", 3),
    notes=(
        "parse of the JSON a framework already decoded: ten frozen MessageStatus events, their "
        "DEFERRED fields (timestamp, recipient_id, idempotency_key, conversation, pricing) "
        "read from raw on first use; verify_parse_read reads them"
    ),
)
def verify_parse(ctx: Ctx) -> dict[str, Any]:
    from wa_auth.webhooks import parse, verify_signature

    body, header = _delivery()
    payload = json.loads(body)

    def receive() -> None:
        verify_signature(body, header, SECRET)
        parse(payload)

    return micro_loop(ctx.n, receive)


@variant(
    "micro.webhook.verify_parse_read",
    label="webhooks.verify_signature + parse + every field read, 10 statuses",
    group="micro",
    kind="micro",
    baseline="micro.webhook.hmac",
    notes="what an outbox receiver pays: each status's idempotency_key read, so all its fields",
)
def verify_parse_read(ctx: Ctx) -> dict[str, Any]:
    from wa_auth.webhooks import MessageStatus, parse, verify_signature

    body, header = _delivery()
    payload = json.loads(body)

    def receive() -> None:
        verify_signature(body, header, SECRET)
        for event in parse(payload):
            if isinstance(event, MessageStatus):
                event.idempotency_key  # noqa: B018 - the read is what is measured

    return micro_loop(ctx.n, receive)


@variant(
    "micro.webhook.verify_parse_raw",
    label="webhooks.verify_signature + parse (raw body, json.loads included)",
    group="micro",
    kind="micro",
    baseline="micro.webhook.hmac",
    notes="what a receiver runs on the bytes: the signature, json.loads and the events",
)
def verify_parse_raw(ctx: Ctx) -> dict[str, Any]:
    from wa_auth.webhooks import parse, verify_signature

    body, header = _delivery()

    def receive() -> None:
        verify_signature(body, header, SECRET)
        parse(body)

    return micro_loop(ctx.n, receive)
