"""The Graph API's other handlers: media, the phone numbers, the WABA, templates and tokens.

Each handler takes the `Call` the pipeline routed and returns one `Reply`; the sends live in
`_sending`. Every handler checks the token's permission for its scope and asset first.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from wa_auth.sandbox._calls import MANAGEMENT, MESSAGING, Call
from wa_auth.sandbox._catalogue import Reply
from wa_auth.sandbox._specs import TokenSpec
from wa_auth.sandbox._wire import decode_cursor, encode_cursor, form, multipart
from wa_auth.sandbox._world import (
    APP_ID,
    BUSINESS_ACCOUNT_ID,
    PHONE_NUMBER_IDS,
    Media,
    effective,
)

__all__ = [
    "LONG_LIVED_SECONDS",
    "debug_token",
    "delete_media",
    "download",
    "exchange",
    "media_info",
    "phone_number",
    "phone_numbers",
    "profile",
    "templates",
    "upload",
    "waba",
]

_DISPLAY_NUMBERS: Final = ("+1 555-010-0001", "+1 555-010-0002")
_SYSTEM_USER_ID: Final = "122000000000001"
_USER_ID: Final = "10000000000000001"
#: Meta's long-lived user token lifetime as the exchange reports it (about 60 days).
LONG_LIVED_SECONDS: Final = 5183944
_DATA_ACCESS_SECONDS: Final = 90 * 24 * 3600
_TEMPLATES: Final = (
    ("hello_world", "en_US", "UTILITY", "Hello World"),
    ("order_update", "en_US", "UTILITY", "Your order {{1}} has shipped."),
    ("appointment_reminder", "en_US", "UTILITY", "Reminder: your appointment is at {{1}}."),
    ("welcome_offer", "en_US", "MARKETING", "Welcome! Here is {{1}} off your first order."),
    ("login_code", "en_US", "AUTHENTICATION", "{{1}} is your verification code."),
)


# --- media ----------------------------------------------------------------------------------


def upload(ctx: Call) -> Reply:
    """Answer `POST /{phone}/media` (multipart) with the new media id."""
    denied = ctx.permitted(MESSAGING, ctx.phone) or ctx.account_block()
    if denied is not None:
        return denied
    fields = multipart(ctx.req)
    if fields is None or "file" not in fields:
        return ctx.error("required_parameter", parameter="file")
    if fields.get("messaging_product", (b"", ""))[0] != b"whatsapp":
        return ctx.error("required_parameter", parameter="messaging_product")
    data, mime = fields["file"]
    declared = fields.get("type", (b"", ""))[0].decode("utf-8", "replace")
    media_id = ctx.world.random_digits(16)
    assert ctx.phone is not None
    ctx.world.state.media[media_id] = Media(
        media_id,
        ctx.phone,
        declared or mime or "application/octet-stream",
        data,
        hashlib.sha256(data).hexdigest(),
    )
    return ctx.ok({"id": media_id})


def media_info(ctx: Call) -> Reply:
    """Answer `GET /{media-id}` with a download URL that points back at the sandbox."""
    media = ctx.world.state.media[ctx.parts[0]]
    denied = ctx.permitted(MESSAGING, media.phone_number_id)
    if denied is not None:
        return denied
    url = (
        f"{ctx.base()}/whatsapp_business/attachments/?mid={media.id}"
        f"&ext={int(ctx.now)}&hash={media.sha256[:16]}"
    )
    return ctx.ok(
        {
            "messaging_product": "whatsapp",
            "url": url,
            "mime_type": media.mime_type,
            "sha256": media.sha256,
            "file_size": len(media.data),
            "id": media.id,
        }
    )


def download(ctx: Call) -> Reply:
    """Answer the media URL with the bytes (a bearer token is required, as Meta's is)."""
    ctx.endpoint = "download_media"
    media = ctx.world.state.media.get(ctx.req.query.get("mid", ""))
    if media is None:
        return ctx.error("object_not_found", verb="get", object_id=ctx.req.query.get("mid"))
    denied = ctx.permitted(MESSAGING, media.phone_number_id)
    if denied is not None:
        return denied
    return Reply(200, media.data, content_type=media.mime_type, headers=ctx.usage_headers())


def delete_media(ctx: Call) -> Reply:
    """Answer `DELETE /{media-id}`."""
    media = ctx.world.state.media[ctx.parts[0]]
    denied = ctx.permitted(MESSAGING, media.phone_number_id)
    if denied is not None:
        return denied
    del ctx.world.state.media[media.id]
    return ctx.ok({"success": True})


# --- the phone numbers, the profile, the WABA, templates --------------------------------------


def _number_data(ctx: Call, phone: str) -> dict[str, Any]:
    registered = ctx.world.state.numbers[phone] == "ok"
    return {
        "id": phone,
        "display_phone_number": _DISPLAY_NUMBERS[PHONE_NUMBER_IDS.index(phone)],
        "verified_name": "wa_auth Sandbox",
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "platform_type": "CLOUD_API" if registered else "NOT_APPLICABLE",
        "throughput": {"level": "STANDARD"},
        "name_status": "APPROVED",
    }


def phone_number(ctx: Call) -> Reply:
    """Answer `GET /{phone}`."""
    assert ctx.phone is not None
    denied = ctx.permitted(MANAGEMENT, ctx.phone)
    return denied if denied is not None else ctx.ok(_number_data(ctx, ctx.phone))


def profile(ctx: Call) -> Reply:
    """Answer `GET /{phone}/whatsapp_business_profile`."""
    denied = ctx.permitted(MANAGEMENT, ctx.phone)
    if denied is not None:
        return denied
    data = {
        "about": "Rehearsing failures since today.",
        "address": "1 Loopback Way, 127.0.0.1",
        "description": "The wa_auth sandbox's business profile.",
        "email": "sandbox@example.com",
        "profile_picture_url": f"{ctx.world.base_url}/whatsapp_business/profile.jpg",
        "websites": ["https://example.com/"],
        "vertical": "PROF_SERVICES",
        "messaging_product": "whatsapp",
    }
    return ctx.ok({"data": [data]})


def waba(ctx: Call) -> Reply:
    """Answer `GET /{waba}`."""
    denied = ctx.permitted(MANAGEMENT, None)
    if denied is not None:
        return denied
    return ctx.ok(
        {
            "id": BUSINESS_ACCOUNT_ID,
            "name": "wa_auth Sandbox",
            "currency": "USD",
            "timezone_id": "1",
            "message_template_namespace": "sandbox_" + BUSINESS_ACCOUNT_ID,
        }
    )


def phone_numbers(ctx: Call) -> Reply:
    """Answer `GET /{waba}/phone_numbers`, paged."""
    denied = ctx.permitted(MANAGEMENT, None)
    if denied is not None:
        return denied
    return _page(ctx, [_number_data(ctx, p) for p in PHONE_NUMBER_IDS])


def templates(ctx: Call) -> Reply:
    """Answer `GET /{waba}/message_templates`, paged."""
    denied = ctx.permitted(MANAGEMENT, None)
    if denied is not None:
        return denied
    items = [
        {
            "name": name,
            "language": language,
            "status": "APPROVED",
            "category": category,
            "components": [{"type": "BODY", "text": text}],
            "id": f"77000000000000{i}",
        }
        for i, (name, language, category, text) in enumerate(_TEMPLATES, start=1)
    ]
    return _page(ctx, items)


def _page(ctx: Call, items: list[dict[str, Any]]) -> Reply:
    query = ctx.req.query
    try:
        limit = int(query.get("limit", "25"))
        start = decode_cursor(query["after"]) + 1 if "after" in query else 0
    except ValueError:
        return ctx.error("invalid_parameter", details="Invalid limit or cursor")
    if limit < 1:
        return ctx.error("invalid_parameter", details="limit must be positive")
    chunk = items[start : start + limit]
    data: dict[str, Any] = {"data": chunk}
    if chunk:
        end = start + len(chunk) - 1
        paging: dict[str, Any] = {
            "cursors": {"before": encode_cursor(start), "after": encode_cursor(end)}
        }
        if end + 1 < len(items):
            paging["next"] = f"{ctx.base()}{ctx.req.path}?limit={limit}&after={encode_cursor(end)}"
        data["paging"] = paging
    return ctx.ok(data)


# --- tokens: debug_token and the long-lived exchange --------------------------------------------


def debug_token(ctx: Call) -> Reply:
    """Answer `GET /debug_token?input_token=...`, called with the app token or a user's own."""
    ctx.endpoint = "debug_token"
    caller = ctx.token or ctx.req.query.get("access_token")
    ctx.token = caller
    if caller != ctx.world.app_token:
        auth = ctx.authenticate()
        if isinstance(auth, Reply):
            return auth
    limited = ctx.count_app_call()
    if limited is not None:
        return limited
    inspected = ctx.req.query.get("input_token")
    if not inspected:
        return ctx.error("required_parameter", parameter="input_token")
    return ctx.ok({"data": _token_data(ctx, inspected)})


def _token_data(ctx: Call, value: str) -> dict[str, Any]:
    if value == ctx.world.app_token:
        return {
            "app_id": APP_ID,
            "type": "APP",
            "application": "wa_auth sandbox",
            "is_valid": True,
            "scopes": [],
        }
    found = ctx.world.state.tokens.get(value)
    if found is None:
        return {
            "error": {
                "code": 190,
                "message": "Invalid OAuth access token - Cannot parse access token",
            },
            "is_valid": False,
            "scopes": [],
        }
    token = effective(found, ctx.now)
    system = token.kind == "system_user"
    targets = list(token.allowed_wabas or (BUSINESS_ACCOUNT_ID,))
    data: dict[str, Any] = {
        "app_id": APP_ID,
        "type": "SYSTEM_USER" if system else "USER",
        "application": "wa_auth sandbox",
        "data_access_expires_at": 0 if system else int(token.issued_at + _DATA_ACCESS_SECONDS),
        "expires_at": 0 if token.expires_at is None else int(token.expires_at),
        "is_valid": True,
        "issued_at": int(token.issued_at),
        "scopes": list(token.scopes),
        "granular_scopes": [
            {"scope": s, "target_ids": targets}
            for s in token.scopes
            if s in (MESSAGING, MANAGEMENT)
        ],
        "user_id": _SYSTEM_USER_ID if system else _USER_ID,
    }
    refused = ctx.token_error(token)
    if refused is not None:
        error = json.loads(refused.body)["error"]
        data["is_valid"] = False
        data["error"] = {"code": 190, "message": error["message"]}
        if "error_subcode" in error:
            data["error"]["subcode"] = int(error["error_subcode"])
    return data


def exchange(ctx: Call) -> Reply:
    """Answer the `fb_exchange_token` grant with a new 60-day token."""
    ctx.endpoint = "exchange_token"
    query = dict(ctx.req.query)
    if ctx.req.method == "POST" and ctx.req.body:
        query.update(form(ctx.req.body))
    if query.get("grant_type") != "fb_exchange_token":
        return ctx.error("required_parameter", parameter="grant_type")
    if query.get("client_id") != APP_ID:
        return ctx.error("bad_app_id")
    if query.get("client_secret") != ctx.world.app_secret:
        return ctx.error("bad_client_secret")
    value = query.get("fb_exchange_token")
    if not value:
        return ctx.error("required_parameter", parameter="fb_exchange_token")
    ctx.token = value
    auth = ctx.authenticate()
    if isinstance(auth, Reply):
        return auth
    fresh = ctx.world.create_token(
        TokenSpec(
            kind=auth.kind,
            scopes=auth.scopes,
            expires_in=LONG_LIVED_SECONDS,
            allowed_wabas=auth.allowed_wabas,
            allowed_phone_numbers=auth.allowed_phone_numbers,
            name=(auth.name or auth.id) + ":long_lived",
        )
    )
    return ctx.ok(
        {"access_token": fresh.value, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS}
    )
