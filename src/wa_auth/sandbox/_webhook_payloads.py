r"""The webhooks' literal payloads and their signature, as Meta sends them.

Written from Meta's webhook reference (`messages` statuses, `account_update`,
`phone_number_quality_update`) and the error objects users reported, never from wa_auth's
parser or classifier, so a test of `wa_auth.webhooks` against the sandbox can catch a wrong
reading. The body is compact JSON with every non-ASCII character escaped as `\uXXXX`, the
way Meta writes it, and `X-Hub-Signature-256` is the HMAC-SHA256 of exactly those bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from wa_auth.sandbox._wire import digits_of
from wa_auth.sandbox._world import BUSINESS_ACCOUNT_ID, display_number

__all__ = [
    "LATE_ERRORS",
    "account_update",
    "body_of",
    "change",
    "quality_update",
    "sign",
    "status_change",
]

_ERROR_CODES_URL: Final = (
    "https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes/"
)

#: The `errors[]` object of a status `failed` with each late-failure code.
LATE_ERRORS: Final[Mapping[int, Mapping[str, Any]]] = MappingProxyType(
    {
        # As reported in restfb/restfb#1344.
        131026: {
            "code": 131026,
            "title": "Receiver is incapable of receiving this message",
            "message": "Receiver is incapable of receiving this message",
            "error_data": {"details": "Message Undeliverable."},
        },
        # As reported in fbsamples/whatsapp-business-jaspers-market#1.
        131031: {
            "code": 131031,
            "title": "Business Account locked",
            "message": "Business Account locked",
            "error_data": {"details": "Business account has been locked."},
            "href": _ERROR_CODES_URL,
        },
        131047: {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {
                "details": "Message failed to send because more than 24 hours have passed "
                "since the customer last replied to this number."
            },
            "href": _ERROR_CODES_URL,
        },
        131049: {
            "code": 131049,
            "title": "This message was not delivered to maintain healthy ecosystem engagement.",
            "message": "This message was not delivered to maintain healthy ecosystem engagement.",
            "error_data": {
                "details": "In order to maintain a healthy ecosystem engagement, the message "
                "failed to be delivered."
            },
            "href": _ERROR_CODES_URL,
        },
    }
)


def body_of(payload: Mapping[str, Any]) -> bytes:
    """Return *payload* as Meta writes a webhook body: compact, non-ASCII escaped."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(body: bytes, app_secret: str) -> tuple[str, str]:
    """Return the `X-Hub-Signature-256` and the legacy `X-Hub-Signature` of *body*."""
    key = app_secret.encode()
    return (
        "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
    )


def change(field: str, value: Mapping[str, Any], *, time: int | None) -> dict[str, Any]:
    """Return a whole webhook payload holding one change of *field*."""
    entry: dict[str, Any] = {"id": BUSINESS_ACCOUNT_ID}
    if time is not None:
        entry["time"] = time
    entry["changes"] = [{"value": dict(value), "field": field}]
    return {"object": "whatsapp_business_account", "entry": [entry]}


def status_change(
    *,
    message_id: str,
    status: str,
    phone_number_id: str,
    recipient: str,
    timestamp: int,
    idempotency_key: str | None,
    template: bool,
    late_code: int | None = None,
) -> dict[str, Any]:
    """Return the `messages` payload of one status of a message the sandbox accepted."""
    obj: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": digits_of(recipient),
    }
    if idempotency_key is not None:
        obj["biz_opaque_callback_data"] = idempotency_key
    if status in ("sent", "delivered"):
        obj["pricing"] = {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "utility" if template else "service",
        }
    if status == "failed" and late_code is not None:
        obj["errors"] = [dict(LATE_ERRORS[late_code])]
    display = _display_digits(phone_number_id)
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
        "statuses": [obj],
    }
    return change("messages", value, time=None)


def account_update(
    event: str, *, time: int, ban_state: str | None, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """Return an `account_update` payload, in the shape Meta documents for *event*."""
    value: dict[str, Any] = {"event": event}
    if event == "DISABLED_UPDATE":
        value["ban_info"] = {"waba_ban_state": ban_state or "DISABLE", "waba_ban_date": "today"}
    elif event.startswith("PARTNER_"):
        value["waba_info"] = {
            "waba_id": BUSINESS_ACCOUNT_ID,
            "owner_business_id": "1284923862322270",
        }
    elif event == "ACCOUNT_VIOLATION":
        value["violation_info"] = {"violation_type": "SCAM"}
    elif event == "ACCOUNT_RESTRICTION":
        value["restriction_info"] = [
            {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": time + 86400}
        ]
    value.update(extra)
    return change("account_update", value, time=time)


def _display_digits(phone_number_id: str) -> str:
    """A number's display number as Meta writes it in webhooks: its digits only."""
    return "".join(c for c in display_number(phone_number_id) if c.isdigit())


def quality_update(
    phone_number_id: str,
    *,
    event: str,
    current_limit: str,
    old_limit: str | None,
    time: int,
) -> dict[str, Any]:
    """Return a `phone_number_quality_update` payload for one of the sandbox's numbers."""
    value: dict[str, Any] = {
        "display_phone_number": _display_digits(phone_number_id),
        "event": event,
    }
    if old_limit is not None:
        value["old_limit"] = old_limit
    value["current_limit"] = current_limit
    value["max_daily_conversations_per_business"] = current_limit
    return change("phone_number_quality_update", value, time=time)
