"""`parse`: a webhook payload -> typed events; pure, and never raises.

Each `entry[].changes[]` is read by the reader of its `field`; a field with no reader, or a
change a reader cannot make sense of, becomes an `UnknownEvent` holding the raw change. A
payload that is not the expected shape (not JSON, not an object, no `entry`) gives nothing:
a webhook receiver must answer Meta whatever arrives, and Meta retries what it does not get a
200 for. Values are read leniently (an id may be a number, a count a numeric string) and
strictly bounded (an id longer than `MAX_ID` characters is no id).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from wa_auth._convert import to_int
from wa_auth.errors import from_webhook_error
from wa_auth.webhooks._account import (
    QUALITY_EVENTS,
    REVIEW_DECISIONS,
    SECURITY_EVENTS,
    TEMPLATE_EVENTS,
    account_update_meaning,
    meaning,
)
from wa_auth.webhooks._observed import WebhookUnknown
from wa_auth.webhooks._read import MAX_ID
from wa_auth.webhooks._read import is_map as _is_map
from wa_auth.webhooks._read import read_id as _id
from wa_auth.webhooks._read import seconds as _seconds
from wa_auth.webhooks._types import (
    AccountReviewUpdate,
    AccountUpdate,
    CapabilityUpdate,
    InboundMessage,
    MessageStatus,
    MessagingError,
    QualityUpdate,
    SecurityEvent,
    TemplateStatusUpdate,
    UnknownEvent,
    WebhookEvent,
    build_status,
    status_fields,
    unfrozen_status,
)

if TYPE_CHECKING:
    from wa_auth.events import Events

__all__ = ["MAX_ID", "parse"]

#: The `object` of WhatsApp Business Account webhooks.
OBJECT: Final = "whatsapp_business_account"
#: Meta's limit tiers (`TIER_2K`): the number, in thousands with `K`.
_TIER: Final = re.compile(r"TIER_(\d{1,9})(K?)")
_UNLIMITED: Final = "TIER_UNLIMITED"


def parse(payload: object, *, events: Events | None = None) -> list[WebhookEvent]:
    """Return the events of a webhook payload, in the order Meta listed them; never raises.

    Args:
        payload: The parsed JSON body (a mapping), or the raw body (bytes or str).
        events: Where to emit a `WebhookUnknown` for each change that is not understood.

    Returns:
        `MessageStatus`, `InboundMessage`, `MessagingError`, `AccountUpdate`,
        `AccountReviewUpdate`, `QualityUpdate`, `CapabilityUpdate`, `SecurityEvent`,
        `TemplateStatusUpdate` and `UnknownEvent` values; nothing for a payload that is not a
        webhook's shape.
    """
    found: list[WebhookEvent] = []
    data = payload if type(payload) is dict else _load(payload)
    if data is None:
        return found
    entries = data.get("entry")
    if not isinstance(entries, list):
        return found
    ours = data.get("object", OBJECT) == OBJECT
    for entry in entries:
        if not (type(entry) is dict or _is_map(entry)):
            continue
        waba = _id(entry.get("id"))
        time = entry.get("time")
        time = None if time is None else to_int(time)
        changes = entry.get("changes")
        if not isinstance(changes, list):
            continue
        for change in changes:
            if type(change) is dict or _is_map(change):
                found += _change(change, waba, time, ours)
    if events is not None:
        for event in found:
            if isinstance(event, UnknownEvent):
                events.emit(
                    WebhookUnknown(
                        field=event.field,
                        key=event.key,
                        business_account_id=event.business_account_id,
                    )
                )
    return found


def _load(payload: object) -> Mapping[str, Any] | None:
    if type(payload) is dict:
        return payload
    if isinstance(payload, (bytes, bytearray, memoryview, str)):
        try:
            payload = json.loads(bytes(payload) if isinstance(payload, memoryview) else payload)
        except (ValueError, RecursionError):
            return None
    return payload if isinstance(payload, Mapping) else None


def _change(
    change: Mapping[str, Any], waba: str | None, time: int | None, ours: bool
) -> list[WebhookEvent]:
    value = change.get("value")
    named = change.get("field")
    if ours and type(named) is str and named == "messages" and type(value) is dict:
        # What nearly every delivery is: statuses alone, read as `_messages` would read them.
        statuses = value.get("statuses")
        if (
            type(statuses) is list
            and statuses
            and "messages" not in value
            and "errors" not in value
        ):
            metadata = value.get("metadata")
            phone = (
                _id(metadata.get("phone_number_id"))
                if type(metadata) is dict or _is_map(metadata)
                else None
            )
            try:
                return _statuses(statuses, waba, phone, time, "messages")
            except Exception:  # noqa: BLE001 - as below: the change stays raw
                return [_unknown(change, waba, time, "messages")]
    field = named if type(named) is str and named in _READERS else _id(named)
    reader = _READERS.get(field) if ours and field is not None else None
    if reader is not None and field is not None and (type(value) is dict or _is_map(value)):
        try:
            read = reader(value, waba, time, field, change)
        except Exception:  # noqa: BLE001 - the contract is "never raises": the change stays raw
            read = None
        if read:
            return read
    return [_unknown(change, waba, time, field)]


def _unknown(
    raw: Mapping[str, Any], waba: str | None, time: int | None, field: str | None
) -> UnknownEvent:
    return UnknownEvent(
        business_account_id=waba,
        timestamp=time,
        field=field,
        key=_hash(field, waba, time, raw),
        raw=raw,
    )


# --- messages: statuses, inbound messages, errors -----------------------------------------


def _messages(
    value: Mapping[str, Any],
    waba: str | None,
    time: int | None,
    field: str,
    _change: Mapping[str, Any],
) -> list[WebhookEvent]:
    metadata = value.get("metadata")
    phone = (
        _id(metadata.get("phone_number_id"))
        if type(metadata) is dict or _is_map(metadata)
        else None
    )
    out: list[WebhookEvent] = []
    statuses = value.get("statuses")
    if isinstance(statuses, list):
        out = _statuses(statuses, waba, phone, time, field)
    messages = value.get("messages")
    if isinstance(messages, list):
        out.extend(_inbound(m, waba, phone, time, field) for m in messages)
    errors = value.get("errors")
    if isinstance(errors, list):
        out.extend(
            MessagingError(
                business_account_id=waba,
                phone_number_id=phone,
                timestamp=time,
                field=field,
                key=_hash("error", waba, time, err),
                raw=err if isinstance(err, Mapping) else {"error": err},
                error=from_webhook_error(err),
            )
            for err in errors
        )
    return out


def _statuses(
    statuses: list[Any], waba: str | None, phone: str | None, time: int | None, field: str
) -> list[WebhookEvent]:
    """Return the events of a `statuses` list: one per status, in its order.

    The fast path takes a status as Meta sends nearly every one: a JSON object without
    `errors` whose `id` and `status` are short ASCII strings. It reads those two and leaves the
    rest (`DEFERRED`) for the `MessageStatus` to read from `raw` when first used, with the
    same `status_fields` `_status_any` reads eagerly; every other status takes that path.
    """
    out: list[WebhookEvent] = []
    append = out.append
    new = unfrozen_status
    for status in statuses:
        if type(status) is dict and "errors" not in status:
            try:
                wamid = status["id"]
                name = status["status"]
            except KeyError:
                wamid = name = None
            if type(wamid) is str and type(name) is str and wamid and name:
                # The key holds both: when it is short and ASCII, so is each (a stricter test
                # than `read_id`'s MAX_ID for each: a longer pair takes the general path).
                key = f"status:{wamid}:{name}"
                if len(key) <= MAX_ID and key.isascii():
                    # Stores into a blank `_Unfrozen`, then its real class: see `build_status`.
                    this = new()
                    this.business_account_id = waba
                    this.phone_number_id = phone
                    this.field = field
                    this.key = key
                    this.raw = status
                    this.id = wamid
                    this.status = name
                    this.errors = ()
                    this.__class__ = MessageStatus
                    append(this)
                    continue
        append(_status_any(status, waba, phone, time, field))
    return out


def _status_any(
    status: object, waba: str | None, phone: str | None, time: int | None, field: str
) -> WebhookEvent:
    if not _is_map(status):
        return _unknown({"status": status}, waba, time, field)
    get = status.get
    wamid = _id(get("id"))
    name = _id(get("status"))
    if wamid is None or name is None:
        return _unknown(status, waba, time, field)
    errors = get("errors")
    timestamp, recipient, opaque, conversation, pricing = status_fields(status)
    return build_status(
        waba,
        phone,
        timestamp,
        field,
        f"status:{wamid}:{name}",
        status,
        wamid,
        name,
        recipient,
        opaque,
        conversation,
        pricing,
        tuple(map(from_webhook_error, errors)) if type(errors) is list else (),
    )


def _inbound(
    message: object, waba: str | None, phone: str | None, time: int | None, field: str
) -> WebhookEvent:
    if not isinstance(message, Mapping):
        return _unknown({"message": message}, waba, time, field)
    wamid = _id(message.get("id"))
    if wamid is None:
        return _unknown(message, waba, time, field)
    return InboundMessage(
        business_account_id=waba,
        phone_number_id=phone,
        timestamp=_seconds(message.get("timestamp")),
        field=field,
        key=f"message:{wamid}",
        raw=message,
        id=wamid,
        sender=_id(message.get("from")),
        message_type=_id(message.get("type")),
    )


# --- what concerns the account --------------------------------------------------------------


def _account_update(
    value: Mapping[str, Any],
    waba: str | None,
    time: int | None,
    field: str,
    change: Mapping[str, Any],
) -> list[WebhookEvent]:
    event = _id(value.get("event"))
    ban_info = value.get("ban_info")
    ban_state = _id(ban_info.get("waba_ban_state")) if isinstance(ban_info, Mapping) else None
    waba_info = value.get("waba_info")
    # A partner's webhook comes under the partner's entry id; waba_info names the customer's WABA.
    if isinstance(waba_info, Mapping):
        waba = _id(waba_info.get("waba_id")) or waba
    means = account_update_meaning(event, ban_state)
    return [
        AccountUpdate(
            **_common(waba, time, field, change),
            raw=value,
            event=event,
            ban_state=ban_state,
            effect=means.effect,
            category=means.category,
            operator_action=means.operator_action,
        )
    ]


def _review(
    value: Mapping[str, Any],
    waba: str | None,
    time: int | None,
    field: str,
    change: Mapping[str, Any],
) -> list[WebhookEvent]:
    decision = _id(value.get("decision"))
    means = meaning(REVIEW_DECISIONS, decision)
    return [
        AccountReviewUpdate(
            **_common(waba, time, field, change),
            raw=value,
            event=decision,
            effect=means.effect,
            category=means.category,
            operator_action=means.operator_action,
        )
    ]


def _quality(
    value: Mapping[str, Any],
    waba: str | None,
    time: int | None,
    field: str,
    change: Mapping[str, Any],
) -> list[WebhookEvent]:
    event = _id(value.get("event"))
    current = _id(value.get("current_limit"))
    business = _id(value.get("max_daily_conversations_per_business"))
    old = _id(value.get("old_limit"))
    means = meaning(QUALITY_EVENTS, event)
    limit = _limit(business) if business is not None else _limit(current)
    return [
        QualityUpdate(
            **_common(waba, time, field, change),
            raw=value,
            event=event,
            effect=means.effect,
            category=means.category,
            operator_action=means.operator_action,
            display_phone_number=_id(value.get("display_phone_number")),
            current_limit=current,
            old_limit=old,
            business_limit=business,
            messaging_limit=limit,
            old_messaging_limit=_limit(old),
        )
    ]


def _capability(
    value: Mapping[str, Any],
    waba: str | None,
    time: int | None,
    field: str,
    change: Mapping[str, Any],
) -> list[WebhookEvent]:
    per_phone = to_int(value.get("max_daily_conversation_per_phone"))
    business = _limit(value.get("max_daily_conversations_per_business"))
    return [
        CapabilityUpdate(
            **_common(waba, time, field, change),
            raw=value,
            messaging_limit=business if business is not None else per_phone,
            max_daily_conversation_per_phone=per_phone,
            max_phone_numbers_per_business=to_int(value.get("max_phone_numbers_per_business")),
            max_phone_numbers_per_waba=to_int(value.get("max_phone_numbers_per_waba")),
            operator_action="Nothing to do: the business's limits changed.",
        )
    ]


def _security(
    value: Mapping[str, Any],
    waba: str | None,
    time: int | None,
    field: str,
    change: Mapping[str, Any],
) -> list[WebhookEvent]:
    event = _id(value.get("event"))
    means = meaning(SECURITY_EVENTS, event)
    return [
        SecurityEvent(
            **_common(waba, time, field, change),
            raw=value,
            event=event,
            effect=means.effect,
            category=means.category,
            operator_action=means.operator_action,
            display_phone_number=_id(value.get("display_phone_number")),
            requester=_id(value.get("requester")),
        )
    ]


def _template(
    value: Mapping[str, Any],
    waba: str | None,
    time: int | None,
    field: str,
    change: Mapping[str, Any],
) -> list[WebhookEvent]:
    event = _id(value.get("event"))
    means = meaning(TEMPLATE_EVENTS, event)
    return [
        TemplateStatusUpdate(
            **_common(waba, time, field, change),
            raw=value,
            event=event,
            effect=means.effect,
            category=means.category,
            operator_action=means.operator_action,
            template_id=_id(value.get("message_template_id")),
            template_name=_id(value.get("message_template_name")),
            language=_id(value.get("message_template_language")),
            reason=_id(value.get("reason")),
            template_category=_id(value.get("message_template_category")),
        )
    ]


_Reader = Callable[
    [Mapping[str, Any], "str | None", "int | None", str, Mapping[str, Any]], list[WebhookEvent]
]
_READERS: Final[dict[str, _Reader]] = {
    "messages": _messages,
    "account_update": _account_update,
    "account_review_update": _review,
    "phone_number_quality_update": _quality,
    "business_capability_update": _capability,
    "security": _security,
    "message_template_status_update": _template,
}


# --- values ---------------------------------------------------------------------------------


def _common(
    waba: str | None, time: int | None, field: str, change: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "business_account_id": waba,
        "timestamp": time,
        "field": field,
        "key": _hash(field, waba, time, change),
    }


def _limit(value: object) -> int | None:
    """Return a limit as a number: `TIER_2K` 2000, `TIER_UNLIMITED` -1, a count as it is."""
    if isinstance(value, str):
        if value == _UNLIMITED:
            return -1
        tier = _TIER.fullmatch(value)
        if tier is not None:
            return int(tier.group(1)) * (1000 if tier.group(2) else 1)
    return to_int(value)


def _hash(*parts: object) -> str:
    """Return a stable key for a change without an id of its own: a digest of what it holds."""
    try:
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        # Keys of mixed types cannot be sorted, and a structure nested too deep cannot be
        # written: neither comes from JSON, so a weaker (but stable) key is good enough.
        text = repr(parts[:3])
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
