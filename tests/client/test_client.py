"""`WhatsAppClient` over respx: every endpoint's request and model, errors, retries, transport.

`tests/test_async_client.py` runs the same tables against `AsyncWhatsAppClient`; the tables
live here (names starting with an underscore) and are loaded from there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
import pytest
import respx

from wa_auth import (
    AccountStateError,
    ApiError,
    InsufficientPermissionError,
    InvalidRequestError,
    RateLimitError,
    RequestValidationError,
    SendResult,
    StaticTokenProvider,
    Token,
    TokenExpiredError,
    TokenRevokedError,
    TransientError,
    TransportError,
    UnknownApiError,
    WhatsAppClient,
    WhatsAppError,
)
from wa_auth.events import Counters, Events
from wa_auth.models import (
    BusinessProfile,
    MediaContent,
    MediaInfo,
    MediaUpload,
    Page,
    PhoneNumber,
    SuccessResult,
    TokenInfo,
)

TOKEN = "EAAGtesttokenvalue0123456789abcdefABCDEF"
NEW_TOKEN = "EAAGfreshtokenvalue0123456789abcdefABCD"
PHONE = "106540352242922"
OTHER_PHONE = "113355778899001"
WABA = "102290129340398"
BASE = "https://graph.facebook.com/v23.0"
WAMID = "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
MEDIA_ID = "1037543291543636"
MEDIA_URL = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1037543291543636&ext=1663&hash=ATt"

USAGE_HEADERS = {
    "X-App-Usage": '{"call_count": 28, "total_time": 25, "total_cputime": 25}',
    "X-Business-Use-Case-Usage": json.dumps(
        {
            WABA: [
                {
                    "type": "whatsapp",
                    "call_count": 3,
                    "total_cputime": 1,
                    "total_time": 1,
                    "estimated_time_to_regain_access": 0,
                }
            ]
        }
    ),
}
SEND_OK = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "+16505076520", "wa_id": "16505076520"}],
    "messages": [{"id": WAMID, "message_status": "accepted"}],
}
_PHONE_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,code_verification_status,"
    "platform_type,throughput,name_status,status,health_status"
)
_PHONE_DATA = {
    "id": PHONE,
    "display_phone_number": "+1 650-507-6520",
    "verified_name": "Jasper's Market",
    "quality_rating": "GREEN",
    "code_verification_status": "VERIFIED",
    "platform_type": "CLOUD_API",
    "throughput": {"level": "STANDARD"},
    "name_status": "APPROVED",
}


def _send_body(kind: str, payload: dict[str, Any], to: str = "+16505076520") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: payload,
    }


def _check_send(result: Any) -> None:
    assert isinstance(result, SendResult)
    assert (result.message_id, result.wa_id, result.input, result.message_status) == (
        WAMID,
        "16505076520",
        "+16505076520",
        "accepted",
    )


def _check_multipart(request: httpx.Request) -> None:
    ctype = request.headers["content-type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + request.content
    )
    parts = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
    assert parts["messaging_product"].get_content().strip() == "whatsapp"
    assert parts["type"].get_content().strip() == "image/jpeg"
    file = parts["file"]
    assert file.get_filename() == "photo.jpg"
    assert file.get_content_type() == "image/jpeg"
    assert file.get_payload(decode=True) == b"\xff\xd8\xffJPEGDATA"


# (id, method, args, kwargs, http method, url, expected JSON body or a checker, answer, model check)
_Spec = tuple[str, str, tuple[Any, ...], dict[str, Any], str, str, Any, Any, Callable[[Any], None]]
_ENDPOINTS: list[_Spec] = [
    (
        "send_text",
        "send_text",
        ("+16505076520", "Hello 👋"),
        {"preview_url": True},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body("text", {"preview_url": True, "body": "Hello 👋"}),
        SEND_OK,
        _check_send,
    ),
    (
        "send_template",
        "send_template",
        ("+16505076520", "hello_world", "en_US"),
        {"components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body(
            "template",
            {
                "name": "hello_world",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
            },
        ),
        SEND_OK,
        _check_send,
    ),
    (
        "send_media-link",
        "send_media",
        ("+16505076520", "image"),
        {"link": "https://example.com/cat.jpg", "caption": "A cat"},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body("image", {"link": "https://example.com/cat.jpg", "caption": "A cat"}),
        SEND_OK,
        _check_send,
    ),
    (
        "send_media-id",
        "send_media",
        ("+16505076520", "document"),
        {"media_id": MEDIA_ID, "filename": "invoice.pdf", "caption": "Invoice"},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body("document", {"id": MEDIA_ID, "caption": "Invoice", "filename": "invoice.pdf"}),
        SEND_OK,
        _check_send,
    ),
    (
        "send_media-sticker",
        "send_media",
        ("+16505076520", "sticker"),
        {"media_id": MEDIA_ID},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body("sticker", {"id": MEDIA_ID}),
        SEND_OK,
        _check_send,
    ),
    (
        "send_interactive_buttons",
        "send_interactive_buttons",
        ("+16505076520", "Confirm?", [("yes", "Yes"), {"id": "no", "title": "No"}]),
        {},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body(
            "interactive",
            {
                "type": "button",
                "body": {"text": "Confirm?"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                        {"type": "reply", "reply": {"id": "no", "title": "No"}},
                    ]
                },
            },
        ),
        SEND_OK,
        _check_send,
    ),
    (
        "send_interactive_list",
        "send_interactive_list",
        (
            "+16505076520",
            "Pick a slot",
            "Slots",
            [
                {
                    "title": "Today",
                    "rows": [
                        ("t1", "10:00"),
                        {"id": "t2", "title": "11:00", "description": "Late"},
                    ],
                }
            ],
        ),
        {},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body(
            "interactive",
            {
                "type": "list",
                "body": {"text": "Pick a slot"},
                "action": {
                    "button": "Slots",
                    "sections": [
                        {
                            "rows": [
                                {"id": "t1", "title": "10:00"},
                                {"id": "t2", "title": "11:00", "description": "Late"},
                            ],
                            "title": "Today",
                        }
                    ],
                },
            },
        ),
        SEND_OK,
        _check_send,
    ),
    (
        "send_reaction",
        "send_reaction",
        ("+16505076520", WAMID, "👍"),
        {},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body("reaction", {"message_id": WAMID, "emoji": "👍"}),
        SEND_OK,
        _check_send,
    ),
    (
        "send_location",
        "send_location",
        ("+16505076520", 37.4847, -122.1477),
        {"name": "Meta HQ", "address": "1 Hacker Way"},
        "POST",
        f"{BASE}/{PHONE}/messages",
        _send_body(
            "location",
            {
                "latitude": 37.4847,
                "longitude": -122.1477,
                "name": "Meta HQ",
                "address": "1 Hacker Way",
            },
        ),
        SEND_OK,
        _check_send,
    ),
    (
        "mark_as_read",
        "mark_as_read",
        (WAMID,),
        {},
        "POST",
        f"{BASE}/{PHONE}/messages",
        {"messaging_product": "whatsapp", "status": "read", "message_id": WAMID},
        {"success": True},
        lambda r: (isinstance(r, SuccessResult) and r.success) or pytest.fail(repr(r)),
    ),
    (
        "upload_media",
        "upload_media",
        (b"\xff\xd8\xffJPEGDATA", "image/jpeg"),
        {"filename": "photo.jpg"},
        "POST",
        f"{BASE}/{PHONE}/media",
        _check_multipart,
        {"id": MEDIA_ID},
        lambda r: (isinstance(r, MediaUpload) and r.media_id == MEDIA_ID) or pytest.fail(repr(r)),
    ),
    (
        "get_media_url",
        "get_media_url",
        (MEDIA_ID,),
        {},
        "GET",
        f"{BASE}/{MEDIA_ID}",
        None,
        {
            "messaging_product": "whatsapp",
            "url": MEDIA_URL,
            "mime_type": "image/jpeg",
            "sha256": "a3f1",
            "file_size": "303833",
            "id": MEDIA_ID,
        },
        lambda r: (
            (
                isinstance(r, MediaInfo)
                and (r.url, r.mime_type, r.sha256, r.file_size, r.media_id)
                == (MEDIA_URL, "image/jpeg", "a3f1", 303833, MEDIA_ID)
            )
            or pytest.fail(repr(r))
        ),
    ),
    (
        "delete_media",
        "delete_media",
        (MEDIA_ID,),
        {},
        "DELETE",
        f"{BASE}/{MEDIA_ID}",
        None,
        {"success": True},
        lambda r: (isinstance(r, SuccessResult) and r.success) or pytest.fail(repr(r)),
    ),
    (
        "get_phone_number",
        "get_phone_number",
        (),
        {},
        "GET",
        f"{BASE}/{PHONE}?fields={_PHONE_FIELDS.replace(',', '%2C')}",
        None,
        _PHONE_DATA,
        lambda r: (
            (
                isinstance(r, PhoneNumber)
                and (
                    r.id,
                    r.display_phone_number,
                    r.quality_rating,
                    r.throughput_level,
                    r.name_status,
                    r.platform_type,
                )
                == (PHONE, "+1 650-507-6520", "GREEN", "STANDARD", "APPROVED", "CLOUD_API")
            )
            or pytest.fail(repr(r))
        ),
    ),
    (
        "list_phone_numbers",
        "list_phone_numbers",
        (),
        {"limit": 2, "after": "QVFI"},
        "GET",
        f"{BASE}/{WABA}/phone_numbers?fields={_PHONE_FIELDS.replace(',', '%2C')}&limit=2&after=QVFI",
        None,
        {
            "data": [_PHONE_DATA, {**_PHONE_DATA, "id": OTHER_PHONE}],
            "paging": {
                "cursors": {"before": "QVFA", "after": "QVFJ"},
                "next": "https://graph.facebook.com/next",
            },
        },
        lambda r: (
            (
                isinstance(r, Page)
                and [p.id for p in r.items] == [PHONE, OTHER_PHONE]
                and r.after == "QVFJ"
            )
            or pytest.fail(repr(r))
        ),
    ),
    (
        "get_business_profile",
        "get_business_profile",
        (),
        {},
        "GET",
        (
            f"{BASE}/{PHONE}/whatsapp_business_profile?fields="
            "about%2Caddress%2Cdescription%2Cemail%2Cprofile_picture_url%2Cwebsites%2Cvertical"
        ),
        None,
        {
            "data": [
                {
                    "about": "Fresh fruit",
                    "address": "1 Market St",
                    "description": "Grocer",
                    "email": "hi@example.com",
                    "messaging_product": "whatsapp",
                    "profile_picture_url": "https://pps.whatsapp.net/x.jpg",
                    "websites": ["https://example.com/"],
                    "vertical": "RETAIL",
                }
            ]
        },
        lambda r: (
            (
                isinstance(r, BusinessProfile)
                and (r.about, r.websites, r.vertical)
                == ("Fresh fruit", ("https://example.com/",), "RETAIL")
            )
            or pytest.fail(repr(r))
        ),
    ),
    (
        "list_templates",
        "list_templates",
        (),
        {"limit": 1},
        "GET",
        f"{BASE}/{WABA}/message_templates?limit=1",
        None,
        {
            "data": [
                {
                    "name": "hello_world",
                    "components": [{"type": "BODY", "text": "Hello"}],
                    "language": "en_US",
                    "status": "APPROVED",
                    "category": "UTILITY",
                    "id": "1192339204654487",
                }
            ],
            "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}},
        },
        lambda r: (
            (
                isinstance(r, Page)
                and r.items[0].name == "hello_world"
                and r.items[0].status == "APPROVED"
                and r.items[0].language == "en_US"
                and r.after is None
            )
            or pytest.fail(repr(r))
        ),
    ),
    (
        "debug_token",
        "debug_token",
        ("EAAGinspectedtoken0123456789",),
        {},
        "GET",
        f"{BASE}/debug_token?input_token=EAAGinspectedtoken0123456789",
        None,
        {
            "data": {
                "app_id": "000000000000000",
                "type": "SYSTEM_USER",
                "application": "My App",
                "data_access_expires_at": 0,
                "expires_at": 0,
                "is_valid": True,
                "issued_at": 1700000000,
                "scopes": ["whatsapp_business_management", "whatsapp_business_messaging"],
                "granular_scopes": [{"scope": "whatsapp_business_messaging", "target_ids": [WABA]}],
                "user_id": "123",
            }
        },
        lambda r: (
            (
                isinstance(r, TokenInfo)
                and r.is_valid
                and r.never_expires
                and r.type == "SYSTEM_USER"
                and r.granular_scopes[0].target_ids == (WABA,)
                and r.error is None
                and "whatsapp_business_messaging" in r.scopes
            )
            or pytest.fail(repr(r))
        ),
    ),
]
_IDS = [s[0] for s in _ENDPOINTS]
_SENDS = [s for s in _ENDPOINTS if s[1].startswith("send_")]
# Endpoints whose request names the phone number (path or query) and so take phone_number_id=.
_OVERRIDES = {
    "send_text": f"{BASE}/{OTHER_PHONE}/messages",
    "mark_as_read": f"{BASE}/{OTHER_PHONE}/messages",
    "upload_media": f"{BASE}/{OTHER_PHONE}/media",
    "get_media_url": f"{BASE}/{MEDIA_ID}?phone_number_id={OTHER_PHONE}",
    "delete_media": f"{BASE}/{MEDIA_ID}?phone_number_id={OTHER_PHONE}",
    "get_phone_number": f"{BASE}/{OTHER_PHONE}?fields={_PHONE_FIELDS.replace(',', '%2C')}",
    "get_business_profile": f"{BASE}/{OTHER_PHONE}/whatsapp_business_profile?fields="
    "about%2Caddress%2Cdescription%2Cemail%2Cprofile_picture_url%2Cwebsites%2Cvertical",
}
_OVERRIDE_SPECS = [
    s
    for s in _ENDPOINTS
    if s[0] in _OVERRIDES or (s[1].startswith("send_") and s[0] != "send_text")
]

_VALIDATION: list[tuple[str, str, tuple[Any, ...], dict[str, Any], str]] = [
    ("empty-text", "send_text", ("+16505076520", ""), {}, "text must not be empty"),
    ("blank-text", "send_text", ("+16505076520", "   \n"), {}, "text must not be empty"),
    (
        "long-text",
        "send_text",
        ("+16505076520", "x" * 4097),
        {},
        "4097 characters; WhatsApp allows at most 4096",
    ),
    ("text-not-str", "send_text", ("+16505076520", 42), {}, "text must be a string"),
    ("to-too-short", "send_text", ("123456", "hi"), {}, "7-15 digits"),
    ("to-too-long", "send_text", ("1234567890123456", "hi"), {}, "7-15 digits"),
    ("to-spaces", "send_text", ("+1 650 507 6520", "hi"), {}, "7-15 digits"),
    ("to-double-plus", "send_text", ("++16505076520", "hi"), {}, "7-15 digits"),
    ("to-letters", "send_text", ("1650CALLME", "hi"), {}, "7-15 digits"),
    ("to-int", "send_text", (16505076520, "hi"), {}, "7-15 digits"),
    ("to-empty", "send_text", ("", "hi"), {}, "7-15 digits"),
    ("to-dashes", "send_text", ("650-507-6520", "hi"), {}, "7-15 digits"),
    (
        "key-too-long",
        "send_text",
        ("+16505076520", "hi"),
        {"idempotency_key": "k" * 513},
        "at most 512",
    ),
    ("key-empty", "send_text", ("+16505076520", "hi"), {"idempotency_key": ""}, "non-empty string"),
    (
        "media-kind",
        "send_media",
        ("+16505076520", "gif"),
        {"link": "https://x/y.gif"},
        "unknown media kind",
    ),
    (
        "media-both",
        "send_media",
        ("+16505076520", "image"),
        {"link": "https://x/y.jpg", "media_id": MEDIA_ID},
        "exactly one of media_id or link",
    ),
    (
        "media-neither",
        "send_media",
        ("+16505076520", "image"),
        {},
        "exactly one of media_id or link",
    ),
    (
        "media-link-scheme",
        "send_media",
        ("+16505076520", "image"),
        {"link": "ftp://x/y.jpg"},
        "http",
    ),
    (
        "media-audio-caption",
        "send_media",
        ("+16505076520", "audio"),
        {"media_id": MEDIA_ID, "caption": "x"},
        "cannot have a caption",
    ),
    (
        "media-image-filename",
        "send_media",
        ("+16505076520", "image"),
        {"media_id": MEDIA_ID, "filename": "a.jpg"},
        "only a document",
    ),
    (
        "buttons-none",
        "send_interactive_buttons",
        ("+16505076520", "Q?", []),
        {},
        "1-3 reply buttons",
    ),
    (
        "buttons-four",
        "send_interactive_buttons",
        ("+16505076520", "Q?", [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]),
        {},
        "1-3 reply buttons",
    ),
    (
        "button-title-long",
        "send_interactive_buttons",
        ("+16505076520", "Q?", [("a", "x" * 21)]),
        {},
        "button title is 21 characters",
    ),
    (
        "list-no-rows",
        "send_interactive_list",
        ("+16505076520", "Q?", "Open", [{"title": "S", "rows": []}]),
        {},
        "at least one row",
    ),
    (
        "list-eleven-rows",
        "send_interactive_list",
        ("+16505076520", "Q?", "Open", [{"rows": [(f"r{i}", f"Row {i}") for i in range(11)]}]),
        {},
        "at most 10 rows",
    ),
    (
        "template-no-name",
        "send_template",
        ("+16505076520", "", "en_US"),
        {},
        "template name must not be empty",
    ),
    (
        "template-components-str",
        "send_template",
        ("+16505076520", "hello_world", "en_US", "body"),
        {},
        "components must be a list",
    ),
    (
        "location-lat",
        "send_location",
        ("+16505076520", 91.0, 0.0),
        {},
        "latitude must be a number in",
    ),
    (
        "location-nan",
        "send_location",
        ("+16505076520", 0.0, float("nan")),
        {},
        "longitude must be a number in",
    ),
    (
        "reaction-no-message",
        "send_reaction",
        ("+16505076520", "", "👍"),
        {},
        "message_id must not be empty",
    ),
    (
        "phone-override-bad",
        "send_text",
        ("+16505076520", "hi"),
        {"phone_number_id": "+1 650"},
        "phone_number_id must be a Graph object id",
    ),
    (
        "phone-override-empty",
        "send_text",
        ("+16505076520", "hi"),
        {"phone_number_id": ""},
        "an empty string",
    ),
    ("upload-empty", "upload_media", (b"", "image/jpeg"), {}, "non-empty bytes"),
    ("upload-mime", "upload_media", (b"x", "jpeg"), {}, "mime_type must look like"),
    ("media-id-bad", "get_media_url", ("../../me",), {}, "media_id must be a Graph object id"),
    ("debug-empty", "debug_token", ("  ",), {}, "input_token must be a non-empty string"),
    ("mark-read-empty", "mark_as_read", ("",), {}, "message_id must not be empty"),
]


def _error_body(
    code: int, message: str, subcode: int | None = None, **extra: Any
) -> dict[str, Any]:
    err: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfGh",
        **extra,
    }
    if subcode is not None:
        err["error_subcode"] = subcode
    return {"error": err}


# (id, status, body, expected class, expected category)
_CATEGORY_ANSWERS: list[tuple[str, int, Any, type[ApiError], str]] = [
    (
        "expired",
        401,
        _error_body(
            190,
            "Error validating access token: Session has expired on Sunday, 20-Jul-25 15:00:00 PDT.",
        ),
        TokenExpiredError,
        "token_expired",
    ),
    (
        "revoked",
        400,
        _error_body(
            190,
            "Error validating access token: The session has been invalidated because the user changed their password.",
            460,
        ),
        TokenRevokedError,
        "token_revoked",
    ),
    (
        "permission",
        403,
        _error_body(200, "(#200) Permissions error"),
        InsufficientPermissionError,
        "insufficient_permission",
    ),
    (
        "account",
        403,
        _error_body(131031, "(#131031) Business Account locked"),
        AccountStateError,
        "account_state",
    ),
    ("rate", 400, _error_body(130429, "(#130429) Rate limit hit"), RateLimitError, "rate_limited"),
    (
        "transient",
        500,
        _error_body(
            2,
            "An unexpected error has occurred. Please retry your request later.",
            is_transient=True,
        ),
        TransientError,
        "transient",
    ),
    (
        "invalid",
        400,
        _error_body(131047, "(#131047) Re-engagement message"),
        InvalidRequestError,
        "invalid_request",
    ),
    ("unknown", 400, _error_body(4242424, "Something new"), UnknownApiError, "unknown"),
    (
        "html-502",
        502,
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        TransientError,
        "transient",
    ),
]
_AUTH_CATEGORIES = {"token_expired", "token_revoked", "insufficient_permission", "account_state"}


def _transport_subclasses() -> list[type[httpx.TransportError]]:
    found: list[type[httpx.TransportError]] = []
    todo = [httpx.TransportError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return sorted(found, key=lambda c: c.__name__)


_TRANSPORT = _transport_subclasses()
_NOT_SENT = {"ConnectError", "ConnectTimeout", "PoolTimeout", "ProxyError"}


class FlipProvider:
    """A provider that moves to the next token when the current one is invalidated."""

    def __init__(self, *values: str) -> None:
        self.tokens = [Token(v, source="test") for v in values]
        self.index = 0
        self.invalidated: list[tuple[str, str]] = []

    def get_token(self) -> Token:
        return self.tokens[self.index]

    async def aget_token(self) -> Token:
        return self.tokens[self.index]

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        self.invalidated.append((token.fingerprint, getattr(reason, "category", str(reason))))
        if token == self.tokens[self.index] and self.index + 1 < len(self.tokens):
            self.index += 1

    def __repr__(self) -> str:
        return f"FlipProvider(index={self.index})"


def _no_token_leak(request: httpx.Request, *tokens: str) -> None:
    headers = dict(request.headers)
    assert f"Bearer {tokens[0]}" == headers.pop("authorization")
    blob = str(request.url) + request.content.decode("utf-8", "replace") + json.dumps(headers)
    for token in tokens:
        assert token not in blob


# --- the sync tests --------------------------------------------------------------------------


@pytest.fixture
def counters():
    return Counters()


@pytest.fixture
def client(counters):
    with WhatsAppClient(
        token=TOKEN,
        phone_number_id=PHONE,
        business_account_id=WABA,
        events=Events(counters),
        consumer="n8n:orders",
    ) as c:
        yield c


def _route(router: respx.Router, method: str, url: str) -> respx.Route:
    return router.route(method=method, url=url)


@pytest.mark.parametrize("spec", _ENDPOINTS, ids=_IDS)
def test_endpoint_request_and_model(spec, client, respx_mock):
    """Each endpoint sends Meta's documented request and parses the answer into its model."""
    _, method, args, kwargs, http_method, url, body, answer, check = spec
    route = _route(respx_mock, http_method, url).respond(200, json=answer, headers=USAGE_HEADERS)

    result = getattr(client, method)(*args, **kwargs)

    assert route.call_count == 1
    request = route.calls.last.request
    assert http_method == request.method
    assert str(request.url) == url
    assert request.headers["user-agent"].startswith("wa-auth/")
    assert request.headers["accept"] == "application/json"
    if callable(body):
        body(request)
    elif body is not None:
        assert request.headers["content-type"] == "application/json"
        assert body == json.loads(request.content)
    else:
        assert request.content == b""
    _no_token_leak(request, TOKEN)
    check(result)
    if hasattr(result, "usage"):
        assert result.usage.app.call_count == 28
        assert result.usage.business[0].business_id == WABA


def test_download_media(client, respx_mock):
    """download_media looks up the URL, then fetches the bytes with the same token."""
    respx_mock.get(f"{BASE}/{MEDIA_ID}").respond(
        200,
        json={
            "url": MEDIA_URL,
            "mime_type": "audio/ogg",
            "sha256": "ab",
            "file_size": 4,
            "id": MEDIA_ID,
        },
    )
    blob = respx_mock.get(MEDIA_URL).respond(
        200, content=b"OggS", headers={"Content-Type": "audio/ogg"}
    )

    result = client.download_media(MEDIA_ID)

    assert isinstance(result, MediaContent)
    assert (result.content, result.mime_type, result.media_id) == (b"OggS", "audio/ogg", MEDIA_ID)
    assert f"Bearer {TOKEN}" == blob.calls.last.request.headers["authorization"]
    assert "OggS" not in repr(result)


def test_debug_token_of_the_clients_own_token(client, respx_mock):
    """debug_token() with no argument inspects the client's token (in the query, as Meta wants)."""
    route = respx_mock.get(f"{BASE}/debug_token", params={"input_token": TOKEN}).respond(
        200, json={"data": {"is_valid": True, "expires_at": 1893456000, "scopes": []}}
    )

    info = client.debug_token()

    assert route.called
    assert info.expires_at == 1893456000
    assert not info.never_expires


def test_debug_token_invalid_token_is_a_result(client, respx_mock):
    """An invalid inspected token is TokenInfo(is_valid=False, error=...), not an exception."""
    respx_mock.get(f"{BASE}/debug_token").respond(
        200,
        json={
            "data": {
                "app_id": "1",
                "is_valid": False,
                "expires_at": 1700000000,
                "scopes": [],
                "error": {
                    "code": 190,
                    "message": "Error validating access token: Session has expired on ...",
                    "subcode": 463,
                },
            }
        },
    )

    info = client.debug_token("EAAGexpiredtoken0000000000")

    assert not info.is_valid
    assert (info.error.code, info.error.subcode) == (190, 463)


@pytest.mark.parametrize("spec", _OVERRIDE_SPECS, ids=[s[0] for s in _OVERRIDE_SPECS])
def test_per_call_phone_number_id(spec, client, respx_mock):
    """phone_number_id= on a call overrides the client's sender."""
    _, method, args, kwargs, http_method, _url, _, answer, _ = spec
    expected = _OVERRIDES.get(spec[0], f"{BASE}/{OTHER_PHONE}/messages")
    route = _route(respx_mock, http_method, expected).respond(200, json=answer)

    getattr(client, method)(*args, phone_number_id=OTHER_PHONE, **kwargs)

    assert route.call_count == 1


def test_phone_number_id_required(respx_mock):
    """Without a default or a per-call phone_number_id a send fails before any request."""
    with (
        WhatsAppClient(token=TOKEN) as c,
        pytest.raises(RequestValidationError, match="phone_number_id is required"),
    ):
        c.send_text("+16505076520", "hi")
    assert not respx_mock.calls


def test_business_account_id_required(respx_mock):
    """WABA-level calls without business_account_id fail before any request."""
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE) as c:
        for call in (c.list_templates, c.list_phone_numbers):
            with pytest.raises(RequestValidationError, match="business_account_id is required"):
                call()
    assert not respx_mock.calls


@pytest.mark.parametrize("spec", _SENDS, ids=[s[0] for s in _SENDS])
def test_idempotency_key_is_biz_opaque_callback_data(spec, client, respx_mock):
    """idempotency_key= goes out as biz_opaque_callback_data and comes back on the result."""
    _, method, args, kwargs, http_method, url, body, answer, _ = spec
    key = "order-42:" + "k" * 503
    route = _route(respx_mock, http_method, url).respond(200, json=answer)

    result = getattr(client, method)(*args, idempotency_key=key, **kwargs)

    assert {**body, "biz_opaque_callback_data": key} == json.loads(route.calls.last.request.content)
    assert key == result.idempotency_key


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "match"),
    [v[1:] for v in _VALIDATION],
    ids=[v[0] for v in _VALIDATION],
)
def test_local_validation_sends_nothing(method, args, kwargs, match, client, respx_mock):
    """Bad arguments raise RequestValidationError (a ValueError) with a clear message, and send nothing."""
    with pytest.raises(RequestValidationError, match=re.escape(match)) as info:
        getattr(client, method)(*args, **kwargs)

    assert isinstance(info.value, ValueError)
    assert info.value.rule == "validation"
    assert not respx_mock.calls


def test_constructor_validation():
    """The constructor rejects a missing or double credential and bad addresses."""
    with pytest.raises(RequestValidationError, match="exactly one of token"):
        WhatsAppClient()
    with pytest.raises(RequestValidationError, match="exactly one of token"):
        WhatsAppClient(token=TOKEN, token_provider=StaticTokenProvider(TOKEN))
    with pytest.raises(RequestValidationError, match="api_version"):
        WhatsAppClient(token=TOKEN, api_version="23.0")
    with pytest.raises(RequestValidationError, match="base_url"):
        WhatsAppClient(token=TOKEN, base_url="graph.facebook.com")
    with pytest.raises(RequestValidationError, match="blank string"):
        WhatsAppClient(token="  ")


def test_base_url_and_api_version(respx_mock):
    """base_url (trailing slash ignored) and api_version shape every URL."""
    route = respx_mock.post(f"http://127.0.0.1:8080/v21.0/{PHONE}/messages").respond(
        200, json=SEND_OK
    )
    with WhatsAppClient(
        token=TOKEN,
        phone_number_id=int(PHONE),
        base_url="http://127.0.0.1:8080/",
        api_version="v21.0",
    ) as c:
        c.send_text("16505076520", "hi")

    assert route.called


@pytest.mark.parametrize(
    ("status", "body", "cls", "category"),
    [a[1:] for a in _CATEGORY_ANSWERS],
    ids=[a[0] for a in _CATEGORY_ANSWERS],
)
def test_error_answers_raise_classified_errors(
    status, body, cls, category, client, counters, respx_mock
):
    """An error answer raises its class, with usage, fingerprint and an event of the right kind."""
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(
        status, headers=USAGE_HEADERS, **kwargs
    )

    with pytest.raises(cls) as info:
        client.send_text("+16505076520", "hi")

    err = info.value
    assert category == err.category
    assert status == err.http_status
    assert err.usage.app.call_count == 28
    assert Token(TOKEN).fingerprint == err.token_fingerprint
    assert route.call_count == 1
    event = "auth.failed" if category in _AUTH_CATEGORIES else "api.failed"
    assert counters.get(event, category) == 1
    other = "api.failed" if category in _AUTH_CATEGORIES else "auth.failed"
    assert counters.get(other) == 0


def test_static_token_is_not_retried(client, counters, respx_mock):
    """With a static token a dead token is invalidated (event) but not retried."""
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=_CATEGORY_ANSWERS[0][2])

    with pytest.raises(TokenExpiredError):
        client.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert counters.get("auth.token_invalidated", "token_expired") == 1
    assert counters.get("auth.retried") == 0


@pytest.mark.parametrize("answer", _CATEGORY_ANSWERS[:2], ids=[a[0] for a in _CATEGORY_ANSWERS[:2]])
def test_token_error_retried_once_with_new_token(answer, counters, respx_mock):
    """A token-class failure invalidates the token and retries exactly once with the new one."""
    _, status, body, _, category = answer
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").mock(
        side_effect=[httpx.Response(status, json=body), httpx.Response(200, json=SEND_OK)]
    )

    with WhatsAppClient(
        token_provider=provider, phone_number_id=PHONE, events=Events(counters)
    ) as c:
        result = c.send_text("+16505076520", "hi", idempotency_key="k1")

    assert result.message_id == WAMID
    assert route.call_count == 2
    first, second = (call.request for call in route.calls)
    _no_token_leak(first, TOKEN, NEW_TOKEN)
    _no_token_leak(second, NEW_TOKEN, TOKEN)
    assert first.content == second.content
    assert [(Token(TOKEN).fingerprint, category)] == provider.invalidated
    assert counters.get("auth.failed", category) == 1
    assert counters.get("auth.token_invalidated", category) == 1
    assert counters.get("auth.retried") == 1


def test_second_token_failure_is_not_retried_again(counters, respx_mock):
    """If the new token fails too, the second error rises (caused by the first); no third try."""
    provider = FlipProvider(TOKEN, NEW_TOKEN, "EAAGthirdtoken00000000000000000")
    expired = _CATEGORY_ANSWERS[0][2]
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=expired)

    with (
        WhatsAppClient(
            token_provider=provider, phone_number_id=PHONE, events=Events(counters)
        ) as c,
        pytest.raises(TokenExpiredError) as info,
    ):
        c.send_text("+16505076520", "hi")

    assert route.call_count == 2
    assert isinstance(info.value.__cause__, TokenExpiredError)
    assert Token(NEW_TOKEN).fingerprint == info.value.token_fingerprint
    assert Token(TOKEN).fingerprint == info.value.__cause__.token_fingerprint
    assert len(provider.invalidated) == 2
    assert counters.get("auth.retried") == 1


@pytest.mark.parametrize("answer", _CATEGORY_ANSWERS[2:], ids=[a[0] for a in _CATEGORY_ANSWERS[2:]])
def test_no_auth_retry_for_other_categories(answer, counters, respx_mock):
    """Permission, account, rate, transient, invalid and unknown failures are never auth-retried."""
    _, status, body, cls, _ = answer
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(status, **kwargs)

    with (
        WhatsAppClient(
            token_provider=provider, phone_number_id=PHONE, events=Events(counters)
        ) as c,
        pytest.raises(cls),
    ):
        c.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert provider.invalidated == []
    assert counters.get("auth.retried") + counters.get("auth.token_invalidated") == 0


def test_no_retry_when_provider_returns_same_token(counters, respx_mock):
    """A provider that hands back the same token after invalidate gets no retry."""
    provider = FlipProvider(TOKEN)
    route = respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=_CATEGORY_ANSWERS[0][2])

    with (
        WhatsAppClient(
            token_provider=provider, phone_number_id=PHONE, events=Events(counters)
        ) as c,
        pytest.raises(TokenExpiredError),
    ):
        c.send_text("+16505076520", "hi")

    assert route.call_count == 1
    assert len(provider.invalidated) == 1
    assert counters.get("auth.retried") == 0


def test_debug_token_of_own_token_is_not_retried(respx_mock):
    """Inspecting the client's own token is not re-sent with another token (it would inspect that one)."""
    provider = FlipProvider(TOKEN, NEW_TOKEN)
    route = respx_mock.get(f"{BASE}/debug_token").respond(
        400, json=_error_body(190, "Invalid OAuth access token.")
    )

    with (
        WhatsAppClient(token_provider=provider, phone_number_id=PHONE) as c,
        pytest.raises(TokenRevokedError),
    ):
        c.debug_token()

    assert route.call_count == 1


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"[]",
        b"{}",
        b"<html>OK</html>",
        b'{"messages": []}',
        b'{"messages": [{"id": ""}]}',
        b"\xff",
    ],
    ids=["empty", "list", "object", "html", "no-messages", "empty-id", "bad-bytes"],
)
def test_unexpected_2xx_body_on_send_may_be_delivered(content, client, counters, respx_mock):
    """A 2xx answer a send cannot parse is UnknownApiError with maybe_delivered and no retry."""
    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(200, content=content, headers=USAGE_HEADERS)

    with pytest.raises(UnknownApiError) as info:
        client.send_text("+16505076520", "hi")

    assert info.value.maybe_delivered
    assert not info.value.retryable
    assert info.value.http_status == 200
    assert info.value.usage.app.call_count == 28
    assert info.value.__cause__ is None
    assert "send_text" in str(info.value)


def test_unexpected_2xx_body_on_get_is_not_delivered(client, respx_mock):
    """A 2xx answer a GET cannot parse is UnknownApiError without maybe_delivered."""
    respx_mock.get(url__startswith=f"{BASE}/{PHONE}").respond(200, content=b"<html></html>")

    with pytest.raises(UnknownApiError) as info:
        client.get_phone_number()

    assert not info.value.maybe_delivered


@pytest.mark.parametrize("exc", _TRANSPORT, ids=lambda c: c.__name__)
@pytest.mark.parametrize("operation", ["send_text", "get_phone_number"])
def test_every_httpx_transport_error_is_mapped(exc, operation, client, counters, respx_mock):
    """Every httpx.TransportError becomes TransportError (UnsupportedProtocol: RequestValidationError)."""
    respx_mock.route().mock(side_effect=exc)
    call = {
        "send_text": lambda: client.send_text("+16505076520", "hi"),
        "get_phone_number": client.get_phone_number,
    }[operation]

    with pytest.raises(WhatsAppError) as info:
        call()

    err = info.value
    assert not isinstance(err, httpx.HTTPError)
    # The cause is a request-free stand-in: httpx's exception keeps the request (the token).
    assert type(err.__cause__) is ConnectionError
    assert str(err.__cause__).startswith(exc.__name__ + ":")
    assert err.__context__ is None
    if exc is httpx.UnsupportedProtocol:
        assert isinstance(err, RequestValidationError)
        return
    assert type(err) is TransportError
    assert err.rule == "transport"
    assert err.http_status is None
    delivered = operation == "send_text" and exc.__name__ not in _NOT_SENT
    assert delivered == err.maybe_delivered
    assert (not delivered) == err.retryable
    assert Token(TOKEN).fingerprint == err.token_fingerprint
    assert counters.get("api.failed", "transient") == 1


@pytest.mark.parametrize(
    "exc", [httpx.DecodingError, httpx.TooManyRedirects], ids=lambda c: c.__name__
)
def test_other_request_errors_are_mapped(exc, client, respx_mock):
    """httpx request errors outside TransportError do not escape either."""
    respx_mock.route().mock(side_effect=exc)

    with pytest.raises(TransportError):
        client.send_text("+16505076520", "hi")


def test_owned_http_client_is_closed():
    """The context manager closes the httpx client the object created."""
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE) as c:
        http = c._http
    assert http.is_closed


def test_injected_http_client_is_not_closed():
    """An injected httpx client stays open after close()."""
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=SEND_OK)))
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE, http_client=http) as c:
        assert c.send_text("+16505076520", "hi").message_id == WAMID
    assert not http.is_closed
    http.close()


def test_transport_injection():
    """transport= is used for the client the object creates."""
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=SEND_OK)

    with WhatsAppClient(
        token=TOKEN, phone_number_id=PHONE, transport=httpx.MockTransport(handler)
    ) as c:
        c.send_text("+16505076520", "hi")
    assert len(seen) == 1


def test_repr_shows_no_token():
    """repr() of the client names the sender and the provider's fingerprint, not the token."""
    with WhatsAppClient(token=TOKEN, phone_number_id=PHONE) as c:
        text = repr(c)
    assert TOKEN not in text
    assert Token(TOKEN).fingerprint in text
    assert PHONE in text


def test_methods_keep_their_signatures():
    """The bound endpoint methods show the flow's parameters, with self first."""
    import inspect

    params = list(inspect.signature(WhatsAppClient.send_text).parameters)

    assert params == ["self", "to", "text", "preview_url", "idempotency_key", "phone_number_id"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (
            401,
            {
                "message": "Session has expired",
                "type": "OAuthException",
                "code": 190,
                "error_subcode": 463,
            },
        ),
        (400, {"message": "Business Account locked", "type": "OAuthException", "code": 131031}),
        (None, httpx.ConnectError("connection refused")),
    ],
    ids=["token-error", "account-error", "transport-error"],
)
def test_failed_call_leaves_no_reference_cycle(status, error, client, respx_mock, garbage_probe):
    """A failed call's error and frames are freed by reference counting, not by the GC."""
    route = respx_mock.post(f"{BASE}/{PHONE}/messages")
    route.mock(return_value=httpx.Response(200, json=SEND_OK))
    client.send_text("15551234567", "warm-up")
    if status is None:
        route.mock(side_effect=error)
    else:
        route.mock(return_value=httpx.Response(status, json={"error": error}))
    with garbage_probe() as probe, pytest.raises(WhatsAppError):
        client.send_text("15551234567", "hi")
    assert probe.wa_auth_garbage() == []
