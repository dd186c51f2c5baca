"""The Graph API's other handlers: media, the phone numbers, the WABA, templates and tokens.

Each handler takes the `Call` the pipeline routed and returns one `Reply`; the sends live in
`_sending`. Every handler checks the token's permission for its scope and asset first.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final
from urllib.parse import urlencode

from wa_auth.sandbox._calls import MANAGEMENT, MESSAGING, Call
from wa_auth.sandbox._catalogue import ENTRIES, Reply
from wa_auth.sandbox._specs import TokenSpec
from wa_auth.sandbox._wire import decode_cursor, encode_cursor, form, multipart
from wa_auth.sandbox._world import (
    APP_ID,
    BUSINESS_ACCOUNT_ID,
    Media,
    display_number,
    effective,
)

__all__ = [
    "LONG_LIVED_SECONDS",
    "debug_token",
    "delete_media",
    "download",
    "exchange",
    "health_status",
    "media_info",
    "phone_number",
    "phone_numbers",
    "profile",
    "templates",
    "upload",
    "waba",
]

_SYSTEM_USER_ID: Final = "122000000000001"
_USER_ID: Final = "10000000000000001"
#: Meta's long-lived user token lifetime as the exchange reports it (about 60 days).
LONG_LIVED_SECONDS: Final = 5183944
_DATA_ACCESS_SECONDS: Final = 90 * 24 * 3600
_BUSINESS_ID: Final = "103000000000001"
#: A phone number's `status` field, by number state.
_NUMBER_STATUS: Final = {"ok": "CONNECTED", "not_registered": "PENDING", "restricted": "RESTRICTED"}
#: The catalogue entry a send gets from each blocking number and account state.
_NUMBER_BLOCKS: Final = {"not_registered": "number_not_registered", "restricted": "spam_limit"}
_ACCOUNT_BLOCKS: Final = {
    "locked": "account_locked",
    "restricted": "account_restricted",
    "restricted_130497": "account_restricted_130497",
    "payment_issue": "account_payment_issue",
    "maintenance": "account_maintenance",
}
#: The remedy each blocking entity's `health_status` names (after Meta's error-code table).
_SOLUTIONS: Final = {
    "number_not_registered": "Register the phone number with POST /{phone_number_id}/register.",
    "spam_limit": "Check your quality status in the WhatsApp Manager and see the Quality-Based "
    "Rate Limits documentation for more information.",
    "account_locked": "Visit Business Support Home to see why the account is locked and how to "
    "resolve it.",
    "account_restricted": "See the Policy Enforcement document to learn about policy violations "
    "and how to resolve them.",
    "account_restricted_130497": "See the WhatsApp Business Messaging Policy for the countries "
    "your business category may message.",
    "account_payment_issue": "Fix the payment method, credit line or on-behalf-of setup of the "
    "WhatsApp Business Account.",
    "account_maintenance": "The account is in maintenance mode; try again later.",
}
#: The fields `GET /{phone}?fields=` and `GET /{waba}?fields=` know: what the sandbox serves
#: plus Graph fields it leaves out. Any other field is Graph's "nonexisting field" error.
_PHONE_NODE: Final = "WhatsAppBusinessPhoneNumber"
_PHONE_FIELDS: Final = frozenset(
    {
        "id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "code_verification_status",
        "platform_type",
        "throughput",
        "name_status",
        "status",
        "health_status",
        "account_mode",
        "certificate",
        "eligibility_for_api_business_global_search",
        "is_official_business_account",
        "is_pin_enabled",
        "is_preverified_number",
        "last_onboarded_time",
        "messaging_limit_tier",
        "new_certificate",
        "new_name_status",
        "quality_score",
        "search_visibility",
        "webhook_configuration",
        "whatsapp_business_manager_messaging_limit",
    }
)
_WABA_NODE: Final = "WhatsAppBusinessAccount"
_WABA_FIELDS: Final = frozenset(
    {
        "id",
        "name",
        "currency",
        "timezone_id",
        "message_template_namespace",
        "health_status",
        "account_review_status",
        "business_verification_status",
        "country",
        "ownership_type",
        "primary_business_location",
        "status",
    }
)
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
    number = ctx.world.state.numbers[phone]
    return {
        "id": phone,
        "display_phone_number": display_number(phone),
        "verified_name": "wa_auth Sandbox",
        "quality_rating": "RED" if number == "restricted" else "GREEN",
        "code_verification_status": "VERIFIED",
        "platform_type": "NOT_APPLICABLE" if number == "not_registered" else "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "name_status": "APPROVED",
        "status": _NUMBER_STATUS[number],
        "health_status": health_status(ctx, phone),
    }


def _entity(kind: str, entity_id: str, blocked_by: str | None) -> dict[str, Any]:
    entity: dict[str, Any] = {"entity_type": kind, "id": entity_id}
    if blocked_by is None:
        entity["can_send_message"] = "AVAILABLE"
        return entity
    error = ENTRIES[blocked_by].error
    entity["can_send_message"] = "BLOCKED"
    entity["errors"] = [
        {
            "error_code": error["code"],
            "error_description": error["error_data"]["details"],
            "possible_solution": _SOLUTIONS[blocked_by],
        }
    ]
    return entity


def health_status(ctx: Call, phone: str | None) -> dict[str, Any]:
    """Return the `health_status` field of a phone number (or, with None, of the WABA).

    Each entity a send involves is `AVAILABLE`, or `BLOCKED` with the error its sends get
    (Meta's shape: `errors[].error_code`, `error_description`, `possible_solution`); the
    overall `can_send_message` is the worst of them.
    """
    state = ctx.world.state
    entities = []
    if phone is not None:
        entities.append(_entity("PHONE_NUMBER", phone, _NUMBER_BLOCKS.get(state.numbers[phone])))
    account = state.account
    if account == "restricted" and state.account_variant == "code_130497":
        account = "restricted_130497"
    entities.append(_entity("WABA", BUSINESS_ACCOUNT_ID, _ACCOUNT_BLOCKS.get(account)))
    entities.append(_entity("BUSINESS", _BUSINESS_ID, None))
    entities.append(_entity("APP", APP_ID, None))
    blocked = any(e["can_send_message"] == "BLOCKED" for e in entities)
    return {"can_send_message": "BLOCKED" if blocked else "AVAILABLE", "entities": entities}


def _fields(ctx: Call, node: str, known: frozenset[str]) -> list[str] | Reply | None:
    """Return the `fields` asked for (None: all), or Graph's error for one it lacks."""
    asked = ctx.req.query.get("fields")
    if asked is None:
        return None
    fields = [f.strip() for f in asked.split(",") if f.strip()]
    for field in fields:
        if field not in known:
            return ctx.error("nonexisting_field", field=field[:80], node=node)
    return fields


def _cut(data: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    # Graph answers the fields asked for, and always the id.
    if fields is None:
        return data
    return {"id": data["id"], **{f: data[f] for f in fields if f in data}}


def _select(ctx: Call, data: dict[str, Any], node: str, known: frozenset[str]) -> Reply:
    fields = _fields(ctx, node, known)
    return fields if isinstance(fields, Reply) else ctx.ok(_cut(data, fields))


def phone_number(ctx: Call) -> Reply:
    """Answer `GET /{phone}`, cut to `fields` (with `status` and `health_status`)."""
    assert ctx.phone is not None
    denied = ctx.permitted(MANAGEMENT, ctx.phone)
    if denied is not None:
        return denied
    return _select(ctx, _number_data(ctx, ctx.phone), _PHONE_NODE, _PHONE_FIELDS)


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
    data = {
        "id": BUSINESS_ACCOUNT_ID,
        "name": "wa_auth Sandbox",
        "currency": "USD",
        "timezone_id": "1",
        "message_template_namespace": "sandbox_" + BUSINESS_ACCOUNT_ID,
        "health_status": health_status(ctx, None),
    }
    return _select(ctx, data, _WABA_NODE, _WABA_FIELDS)


def phone_numbers(ctx: Call) -> Reply:
    """Answer `GET /{waba}/phone_numbers`, paged."""
    denied = ctx.permitted(MANAGEMENT, None)
    if denied is not None:
        return denied
    fields = _fields(ctx, _PHONE_NODE, _PHONE_FIELDS)
    if isinstance(fields, Reply):
        return fields
    return _page(ctx, [_cut(_number_data(ctx, p), fields) for p in ctx.world.phone_number_ids])


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
            # The next page keeps the query (`fields` included) but never a token in it.
            query = {k: v for k, v in ctx.req.query.items() if k not in ("access_token", "after")}
            query.update(limit=str(limit), after=encode_cursor(end))
            paging["next"] = f"{ctx.base()}{ctx.req.path}?{urlencode(query)}"
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
