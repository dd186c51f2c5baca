"""The client's tables: every endpoint, every local validation, every classified answer.

`tests/client/test_client.py` runs them against `WhatsAppClient` and
`tests/client/test_async_client.py` against `AsyncWhatsAppClient`, so both clients answer to
one list of Meta's requests and errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, NamedTuple

import httpx
import pytest

from helpers import graph_body
from wa_auth import (
    AccountStateError,
    ApiError,
    InsufficientPermissionError,
    InvalidRequestError,
    RateLimitError,
    SendResult,
    Token,
    TokenExpiredError,
    TokenRevokedError,
    TransientError,
    UnknownApiError,
    WhatsAppError,
)
from wa_auth.models import (
    BusinessProfile,
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


class Endpoint(NamedTuple):
    """One endpoint call, the request Meta documents for it, and the model of the answer."""

    id: str
    #: The client method, called as `method(*args, **kwargs)`.
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    http_method: str
    url: str
    #: The JSON body the request must carry, a checker of the request, or None for no body.
    body: dict[str, Any] | Callable[[httpx.Request], None] | None
    #: Meta's 200 answer.
    answer: Any
    #: Fails unless the parsed result is the expected model with the answer's values (what it
    #: returns is ignored).
    check: Callable[[Any], object]


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        id="send_text",
        method="send_text",
        args=("+16505076520", "Hello 👋"),
        kwargs={"preview_url": True},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body("text", {"preview_url": True, "body": "Hello 👋"}),
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_template",
        method="send_template",
        args=("+16505076520", "hello_world", "en_US"),
        kwargs={"components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body(
            "template",
            {
                "name": "hello_world",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
            },
        ),
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_media-link",
        method="send_media",
        args=("+16505076520", "image"),
        kwargs={"link": "https://example.com/cat.jpg", "caption": "A cat"},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body("image", {"link": "https://example.com/cat.jpg", "caption": "A cat"}),
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_media-id",
        method="send_media",
        args=("+16505076520", "document"),
        kwargs={"media_id": MEDIA_ID, "filename": "invoice.pdf", "caption": "Invoice"},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body(
            "document", {"id": MEDIA_ID, "caption": "Invoice", "filename": "invoice.pdf"}
        ),
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_media-sticker",
        method="send_media",
        args=("+16505076520", "sticker"),
        kwargs={"media_id": MEDIA_ID},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body("sticker", {"id": MEDIA_ID}),
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_interactive_buttons",
        method="send_interactive_buttons",
        args=("+16505076520", "Confirm?", [("yes", "Yes"), {"id": "no", "title": "No"}]),
        kwargs={},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body(
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
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_interactive_list",
        method="send_interactive_list",
        args=(
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
        kwargs={},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body(
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
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_reaction",
        method="send_reaction",
        args=("+16505076520", WAMID, "👍"),
        kwargs={},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body("reaction", {"message_id": WAMID, "emoji": "👍"}),
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="send_location",
        method="send_location",
        args=("+16505076520", 37.4847, -122.1477),
        kwargs={"name": "Meta HQ", "address": "1 Hacker Way"},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body=_send_body(
            "location",
            {
                "latitude": 37.4847,
                "longitude": -122.1477,
                "name": "Meta HQ",
                "address": "1 Hacker Way",
            },
        ),
        answer=SEND_OK,
        check=_check_send,
    ),
    Endpoint(
        id="mark_as_read",
        method="mark_as_read",
        args=(WAMID,),
        kwargs={},
        http_method="POST",
        url=f"{BASE}/{PHONE}/messages",
        body={"messaging_product": "whatsapp", "status": "read", "message_id": WAMID},
        answer={"success": True},
        check=lambda r: (isinstance(r, SuccessResult) and r.success) or pytest.fail(repr(r)),
    ),
    Endpoint(
        id="upload_media",
        method="upload_media",
        args=(b"\xff\xd8\xffJPEGDATA", "image/jpeg"),
        kwargs={"filename": "photo.jpg"},
        http_method="POST",
        url=f"{BASE}/{PHONE}/media",
        body=_check_multipart,
        answer={"id": MEDIA_ID},
        check=lambda r: (
            (isinstance(r, MediaUpload) and r.media_id == MEDIA_ID) or pytest.fail(repr(r))
        ),
    ),
    Endpoint(
        id="get_media_url",
        method="get_media_url",
        args=(MEDIA_ID,),
        kwargs={},
        http_method="GET",
        url=f"{BASE}/{MEDIA_ID}",
        body=None,
        answer={
            "messaging_product": "whatsapp",
            "url": MEDIA_URL,
            "mime_type": "image/jpeg",
            "sha256": "a3f1",
            "file_size": "303833",
            "id": MEDIA_ID,
        },
        check=lambda r: (
            (
                isinstance(r, MediaInfo)
                and (r.url, r.mime_type, r.sha256, r.file_size, r.media_id)
                == (MEDIA_URL, "image/jpeg", "a3f1", 303833, MEDIA_ID)
            )
            or pytest.fail(repr(r))
        ),
    ),
    Endpoint(
        id="delete_media",
        method="delete_media",
        args=(MEDIA_ID,),
        kwargs={},
        http_method="DELETE",
        url=f"{BASE}/{MEDIA_ID}",
        body=None,
        answer={"success": True},
        check=lambda r: (isinstance(r, SuccessResult) and r.success) or pytest.fail(repr(r)),
    ),
    Endpoint(
        id="get_phone_number",
        method="get_phone_number",
        args=(),
        kwargs={},
        http_method="GET",
        url=f"{BASE}/{PHONE}?fields={_PHONE_FIELDS.replace(',', '%2C')}",
        body=None,
        answer=_PHONE_DATA,
        check=lambda r: (
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
    Endpoint(
        id="list_phone_numbers",
        method="list_phone_numbers",
        args=(),
        kwargs={"limit": 2, "after": "QVFI"},
        http_method="GET",
        url=f"{BASE}/{WABA}/phone_numbers?fields={_PHONE_FIELDS.replace(',', '%2C')}&limit=2&after=QVFI",
        body=None,
        answer={
            "data": [_PHONE_DATA, {**_PHONE_DATA, "id": OTHER_PHONE}],
            "paging": {
                "cursors": {"before": "QVFA", "after": "QVFJ"},
                "next": "https://graph.facebook.com/next",
            },
        },
        check=lambda r: (
            (
                isinstance(r, Page)
                and [p.id for p in r.items] == [PHONE, OTHER_PHONE]
                and r.after == "QVFJ"
            )
            or pytest.fail(repr(r))
        ),
    ),
    Endpoint(
        id="get_business_profile",
        method="get_business_profile",
        args=(),
        kwargs={},
        http_method="GET",
        url=f"{BASE}/{PHONE}/whatsapp_business_profile?fields="
        "about%2Caddress%2Cdescription%2Cemail%2Cprofile_picture_url%2Cwebsites%2Cvertical",
        body=None,
        answer={
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
        check=lambda r: (
            (
                isinstance(r, BusinessProfile)
                and (r.about, r.websites, r.vertical)
                == ("Fresh fruit", ("https://example.com/",), "RETAIL")
            )
            or pytest.fail(repr(r))
        ),
    ),
    Endpoint(
        id="list_templates",
        method="list_templates",
        args=(),
        kwargs={"limit": 1},
        http_method="GET",
        url=f"{BASE}/{WABA}/message_templates?limit=1",
        body=None,
        answer={
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
        check=lambda r: (
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
    Endpoint(
        id="debug_token",
        method="debug_token",
        args=("EAAGinspectedtoken0123456789",),
        kwargs={},
        http_method="GET",
        url=f"{BASE}/debug_token?input_token=EAAGinspectedtoken0123456789",
        body=None,
        answer={
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
        check=lambda r: (
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
#: The send_* endpoints: each takes idempotency_key=.
SENDS = [e for e in ENDPOINTS if e.method.startswith("send_")]
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
#: The endpoints that take phone_number_id= per call.
OVERRIDE_ENDPOINTS = [
    e
    for e in ENDPOINTS
    if e.id in _OVERRIDES or (e.method.startswith("send_") and e.id != "send_text")
]


def override_url(endpoint: Endpoint) -> str:
    """The URL *endpoint* requests when called with `phone_number_id=OTHER_PHONE`."""
    return _OVERRIDES.get(endpoint.id, f"{BASE}/{OTHER_PHONE}/messages")


class Invalid(NamedTuple):
    """A call the client refuses locally: `RequestValidationError` whose message holds *match*."""

    id: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    match: str


INVALID_CALLS: list[Invalid] = [
    Invalid("empty-text", "send_text", ("+16505076520", ""), {}, "text must not be empty"),
    Invalid("blank-text", "send_text", ("+16505076520", "   \n"), {}, "text must not be empty"),
    Invalid(
        "long-text",
        "send_text",
        ("+16505076520", "x" * 4097),
        {},
        "4097 characters; WhatsApp allows at most 4096",
    ),
    Invalid("text-not-str", "send_text", ("+16505076520", 42), {}, "text must be a string"),
    Invalid("to-too-short", "send_text", ("123456", "hi"), {}, "7-15 digits"),
    Invalid("to-too-long", "send_text", ("1234567890123456", "hi"), {}, "7-15 digits"),
    Invalid("to-spaces", "send_text", ("+1 650 507 6520", "hi"), {}, "7-15 digits"),
    Invalid("to-double-plus", "send_text", ("++16505076520", "hi"), {}, "7-15 digits"),
    Invalid("to-letters", "send_text", ("1650CALLME", "hi"), {}, "7-15 digits"),
    Invalid("to-int", "send_text", (16505076520, "hi"), {}, "7-15 digits"),
    Invalid("to-empty", "send_text", ("", "hi"), {}, "7-15 digits"),
    Invalid("to-dashes", "send_text", ("650-507-6520", "hi"), {}, "7-15 digits"),
    Invalid(
        "key-too-long",
        "send_text",
        ("+16505076520", "hi"),
        {"idempotency_key": "k" * 513},
        "at most 512",
    ),
    Invalid(
        "key-empty",
        "send_text",
        ("+16505076520", "hi"),
        {"idempotency_key": ""},
        "non-empty string",
    ),
    Invalid(
        "media-kind",
        "send_media",
        ("+16505076520", "gif"),
        {"link": "https://x/y.gif"},
        "unknown media kind",
    ),
    Invalid(
        "media-both",
        "send_media",
        ("+16505076520", "image"),
        {"link": "https://x/y.jpg", "media_id": MEDIA_ID},
        "exactly one of media_id or link",
    ),
    Invalid(
        "media-neither",
        "send_media",
        ("+16505076520", "image"),
        {},
        "exactly one of media_id or link",
    ),
    Invalid(
        "media-link-scheme",
        "send_media",
        ("+16505076520", "image"),
        {"link": "ftp://x/y.jpg"},
        "http",
    ),
    Invalid(
        "media-audio-caption",
        "send_media",
        ("+16505076520", "audio"),
        {"media_id": MEDIA_ID, "caption": "x"},
        "cannot have a caption",
    ),
    Invalid(
        "media-image-filename",
        "send_media",
        ("+16505076520", "image"),
        {"media_id": MEDIA_ID, "filename": "a.jpg"},
        "only a document",
    ),
    Invalid(
        "buttons-none",
        "send_interactive_buttons",
        ("+16505076520", "Q?", []),
        {},
        "1-3 reply buttons",
    ),
    Invalid(
        "buttons-four",
        "send_interactive_buttons",
        ("+16505076520", "Q?", [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]),
        {},
        "1-3 reply buttons",
    ),
    Invalid(
        "button-title-long",
        "send_interactive_buttons",
        ("+16505076520", "Q?", [("a", "x" * 21)]),
        {},
        "button title is 21 characters",
    ),
    Invalid(
        "list-no-rows",
        "send_interactive_list",
        ("+16505076520", "Q?", "Open", [{"title": "S", "rows": []}]),
        {},
        "at least one row",
    ),
    Invalid(
        "list-eleven-rows",
        "send_interactive_list",
        ("+16505076520", "Q?", "Open", [{"rows": [(f"r{i}", f"Row {i}") for i in range(11)]}]),
        {},
        "at most 10 rows",
    ),
    Invalid(
        "template-no-name",
        "send_template",
        ("+16505076520", "", "en_US"),
        {},
        "template name must not be empty",
    ),
    Invalid(
        "template-components-str",
        "send_template",
        ("+16505076520", "hello_world", "en_US", "body"),
        {},
        "components must be a list",
    ),
    Invalid(
        "location-lat",
        "send_location",
        ("+16505076520", 91.0, 0.0),
        {},
        "latitude must be a number in",
    ),
    Invalid(
        "location-nan",
        "send_location",
        ("+16505076520", 0.0, float("nan")),
        {},
        "longitude must be a number in",
    ),
    Invalid(
        "reaction-no-message",
        "send_reaction",
        ("+16505076520", "", "👍"),
        {},
        "message_id must not be empty",
    ),
    Invalid(
        "phone-override-bad",
        "send_text",
        ("+16505076520", "hi"),
        {"phone_number_id": "+1 650"},
        "phone_number_id must be a Graph object id",
    ),
    Invalid(
        "phone-override-empty",
        "send_text",
        ("+16505076520", "hi"),
        {"phone_number_id": ""},
        "an empty string",
    ),
    Invalid("upload-empty", "upload_media", (b"", "image/jpeg"), {}, "non-empty bytes"),
    Invalid("upload-mime", "upload_media", (b"x", "jpeg"), {}, "mime_type must look like"),
    Invalid(
        "media-id-bad", "get_media_url", ("../../me",), {}, "media_id must be a Graph object id"
    ),
    Invalid("debug-empty", "debug_token", ("  ",), {}, "input_token must be a non-empty string"),
    Invalid("mark-read-empty", "mark_as_read", ("",), {}, "message_id must not be empty"),
]


class ErrorAnswer(NamedTuple):
    """An error answer of Meta's and the class and category the client raises for it."""

    id: str
    status: int
    #: Meta's JSON error envelope, or the text of a proxy's page.
    body: dict[str, Any] | str
    cls: type[ApiError]
    category: str


ERROR_ANSWERS: list[ErrorAnswer] = [
    ErrorAnswer(
        "expired",
        401,
        graph_body(
            190,
            message="Error validating access token: Session has expired on Sunday, 20-Jul-25 15:00:00 PDT.",
        ),
        TokenExpiredError,
        "token_expired",
    ),
    ErrorAnswer(
        "revoked",
        400,
        graph_body(
            190,
            460,
            message="Error validating access token: The session has been invalidated because the user changed their password.",
        ),
        TokenRevokedError,
        "token_revoked",
    ),
    ErrorAnswer(
        "permission",
        403,
        graph_body(200, message="(#200) Permissions error"),
        InsufficientPermissionError,
        "insufficient_permission",
    ),
    ErrorAnswer(
        "account",
        403,
        graph_body(131031, message="(#131031) Business Account locked"),
        AccountStateError,
        "account_state",
    ),
    ErrorAnswer(
        "rate",
        400,
        graph_body(130429, message="(#130429) Rate limit hit"),
        RateLimitError,
        "rate_limited",
    ),
    ErrorAnswer(
        "transient",
        500,
        graph_body(
            2,
            message="An unexpected error has occurred. Please retry your request later.",
            is_transient=True,
        ),
        TransientError,
        "transient",
    ),
    ErrorAnswer(
        "invalid",
        400,
        graph_body(131047, message="(#131047) Re-engagement message"),
        InvalidRequestError,
        "invalid_request",
    ),
    ErrorAnswer(
        "unknown", 400, graph_body(4242424, message="Something new"), UnknownApiError, "unknown"
    ),
    ErrorAnswer(
        "html-502",
        502,
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        TransientError,
        "transient",
    ),
]
#: The categories reported as `auth.failed` (the others as `api.failed`).
AUTH_CATEGORIES = {"token_expired", "token_revoked", "insufficient_permission", "account_state"}
_DEAD_TOKEN = {"token_expired", "token_revoked"}
#: The answers of a dead token: the client invalidates it and retries once with the next one.
TOKEN_ANSWERS = [a for a in ERROR_ANSWERS if a.category in _DEAD_TOKEN]
#: Every other answer: never retried with another token.
OTHER_ANSWERS = [a for a in ERROR_ANSWERS if a.category not in _DEAD_TOKEN]
EXPIRED = next(a for a in ERROR_ANSWERS if a.id == "expired")


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


#: Every subclass of httpx.TransportError, by name: each must map to a wa_auth error.
TRANSPORT_ERRORS = _transport_subclasses()
#: The ones raised before the request left, so a send that failed with one was not delivered.
NOT_SENT = {"ConnectError", "ConnectTimeout", "PoolTimeout", "ProxyError"}


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


def no_token_leak(request: httpx.Request, *tokens: str) -> None:
    """Fail unless *request* carries the first token in its header alone, and no other anywhere."""
    headers = dict(request.headers)
    assert f"Bearer {tokens[0]}" == headers.pop("authorization")
    blob = str(request.url) + request.content.decode("utf-8", "replace") + json.dumps(headers)
    for token in tokens:
        assert token not in blob
