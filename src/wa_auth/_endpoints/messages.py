"""The message endpoints: `POST /{phone_number_id}/messages` for every kind of message.

Each kind has a pure *builder* (arguments -> the message's `type` and its object, validated by
the rules in `wa_auth._validate`) and a flow that sends what the builder made. Intents and
other front doors reuse the builders, so a rule and a request body exist once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from wa_auth._core import (
    BadBodyError,
    Context,
    Flow,
    Response,
    call,
    json_object,
    opt_str,
    post_json,
)
from wa_auth._endpoints._docs import raises
from wa_auth._validate import (
    MAX_BUTTON_ID_CHARS,
    MAX_BUTTON_TITLE_CHARS,
    MAX_BUTTONS,
    MAX_CAPTION_CHARS,
    MAX_EMOJI_CHARS,
    MAX_FILENAME_CHARS,
    MAX_INTERACTIVE_BODY_CHARS,
    MAX_LANGUAGE_CHARS,
    MAX_LIST_BODY_CHARS,
    MAX_LIST_BUTTON_CHARS,
    MAX_LIST_ROWS,
    MAX_LIST_SECTIONS,
    MAX_LOCATION_TEXT_CHARS,
    MAX_MESSAGE_ID_CHARS,
    MAX_ROW_DESCRIPTION_CHARS,
    MAX_ROW_ID_CHARS,
    MAX_ROW_TITLE_CHARS,
    MAX_SECTION_TITLE_CHARS,
    MAX_TEMPLATE_NAME_CHARS,
    MAX_TEXT_CHARS,
    MEDIA_KINDS,
    check_id,
    check_key,
    check_recipient,
    check_text,
    describe,
)
from wa_auth.errors import RequestValidationError
from wa_auth.models import SendResult, SuccessResult, Usage

if TYPE_CHECKING:
    from wa_auth.intents import Intent

__all__ = [
    "build_buttons",
    "build_list",
    "build_location",
    "build_media",
    "build_reaction",
    "build_template",
    "build_text",
    "mark_as_read",
    "send",
    "send_interactive_buttons",
    "send_interactive_list",
    "send_location",
    "send_media",
    "send_message",
    "send_reaction",
    "send_template",
    "send_text",
]

#: What a builder returns: the message's `type` and the object sent under that key.
Built = tuple[str, dict[str, Any]]

#: The media kinds a caption is allowed on.
_CAPTIONED: frozenset[str] = frozenset({"image", "document", "video"})


# --- builders -----------------------------------------------------------------------------------


def build_text(text: object, *, preview_url: bool = False) -> Built:
    """Return the `text` object of a text message (non-blank, at most 4096 characters)."""
    body = check_text("text", text, MAX_TEXT_CHARS)
    return "text", {"preview_url": bool(preview_url), "body": body}


def build_template(
    name: object, language: object, components: Sequence[Mapping[str, Any]] | None = None
) -> Built:
    """Return the `template` object: its name, language code and optional components."""
    check_text("template name", name, MAX_TEMPLATE_NAME_CHARS)
    check_text("template language", language, MAX_LANGUAGE_CHARS)
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components is not None:
        if isinstance(components, (str, bytes)) or not all(
            isinstance(c, Mapping) for c in components
        ):
            raise RequestValidationError("components must be a list of objects (dicts)")
        template["components"] = [dict(c) for c in components]
    return "template", template


def build_media(
    kind: object,
    *,
    media_id: object = None,
    link: object = None,
    caption: object = None,
    filename: object = None,
) -> Built:
    """Return a media message's object, by uploaded `media_id` or by `link`."""
    if kind not in MEDIA_KINDS:
        raise RequestValidationError(
            f"unknown media kind {describe(kind)}; expected one of {', '.join(MEDIA_KINDS)}"
        )
    assert isinstance(kind, str)
    if (media_id is None) == (link is None):
        raise RequestValidationError("pass exactly one of media_id or link")
    payload: dict[str, Any] = {}
    if media_id is not None:
        payload["id"] = check_id("media_id", media_id)
    else:
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise RequestValidationError(f"link must be an http(s) URL, got {describe(link)}")
        payload["link"] = link
    if caption is not None:
        if kind not in _CAPTIONED:
            raise RequestValidationError(f"a {kind} cannot have a caption")
        payload["caption"] = check_text("caption", caption, MAX_CAPTION_CHARS)
    if filename is not None:
        if kind != "document":
            raise RequestValidationError("only a document can have a filename")
        payload["filename"] = check_text("filename", filename, MAX_FILENAME_CHARS)
    return kind, payload


def _item(value: Any, fields: tuple[str, ...], what: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if attrs.has(type(value)):
        return {k: v for k, v in attrs.asdict(value).items() if v is not None}
    if isinstance(value, (tuple, list)) and 1 < len(value) <= len(fields):
        return dict(zip(fields, value, strict=False))
    raise RequestValidationError(f"each {what} must be a dict or an ({', '.join(fields)}) tuple")


def build_buttons(body: object, buttons: Sequence[Any]) -> Built:
    """Return the `interactive` object of a message with 1-3 reply buttons."""
    check_text("body", body, MAX_INTERACTIVE_BODY_CHARS)
    if isinstance(buttons, (str, bytes, Mapping)):
        raise RequestValidationError("buttons must be a list of buttons")
    items = [_item(b, ("id", "title"), "button") for b in buttons]
    if not 1 <= len(items) <= MAX_BUTTONS:
        raise RequestValidationError(
            f"WhatsApp allows 1-{MAX_BUTTONS} reply buttons, got {len(items)}"
        )
    for b in items:
        check_text("button id", b.get("id"), MAX_BUTTON_ID_CHARS)
        check_text("button title", b.get("title"), MAX_BUTTON_TITLE_CHARS)
    return "interactive", {
        "type": "button",
        "body": {"text": body},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": b["id"], "title": b["title"]}} for b in items
            ]
        },
    }


def build_list(body: object, button: object, sections: Sequence[Any]) -> Built:
    """Return the `interactive` object of a list message: *button* opens *sections* of rows."""
    check_text("body", body, MAX_LIST_BODY_CHARS)
    check_text("button", button, MAX_LIST_BUTTON_CHARS)
    if isinstance(sections, (str, bytes, Mapping)) or not 1 <= len(sections) <= MAX_LIST_SECTIONS:
        raise RequestValidationError(f"sections must be a list of 1-{MAX_LIST_SECTIONS} sections")
    out: list[dict[str, Any]] = []
    total = 0
    for section in sections:
        sec = _item(section, ("title", "rows"), "section")
        rows = [_item(r, ("id", "title", "description"), "row") for r in sec.get("rows") or ()]
        if not rows:
            raise RequestValidationError("each section needs at least one row")
        for row in rows:
            check_text("row id", row.get("id"), MAX_ROW_ID_CHARS)
            check_text("row title", row.get("title"), MAX_ROW_TITLE_CHARS)
            if row.get("description") is not None:
                check_text("row description", row["description"], MAX_ROW_DESCRIPTION_CHARS)
        total += len(rows)
        entry: dict[str, Any] = {"rows": rows}
        if sec.get("title") is not None:
            entry["title"] = check_text("section title", sec["title"], MAX_SECTION_TITLE_CHARS)
        out.append(entry)
    if total > MAX_LIST_ROWS:
        raise RequestValidationError(
            f"WhatsApp allows at most {MAX_LIST_ROWS} rows in all, got {total}"
        )
    return "interactive", {
        "type": "list",
        "body": {"text": body},
        "action": {"button": button, "sections": out},
    }


def build_reaction(message_id: object, emoji: object) -> Built:
    """Return the `reaction` object; an empty emoji removes the reaction."""
    check_text("message_id", message_id, MAX_MESSAGE_ID_CHARS)
    check_text("emoji", emoji, MAX_EMOJI_CHARS, allow_empty=True)
    return "reaction", {"message_id": message_id, "emoji": emoji}


def build_location(
    latitude: object, longitude: object, *, name: object = None, address: object = None
) -> Built:
    """Return the `location` object: finite coordinates in range, optional name and address."""
    for label, value, bound in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not -bound <= value <= bound
        ):
            shown = repr(value) if isinstance(value, (int, float)) else describe(value)
            raise RequestValidationError(
                f"{label} must be a number in [-{bound}, {bound}], got {shown}"
            )
    payload: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        payload["name"] = check_text("name", name, MAX_LOCATION_TEXT_CHARS)
    if address is not None:
        payload["address"] = check_text("address", address, MAX_LOCATION_TEXT_CHARS)
    return "location", payload


# --- sending ------------------------------------------------------------------------------------


def send_message(
    ctx: Context,
    operation: Callable[..., Any] | str,
    to: object,
    built: Built,
    idempotency_key: str | None,
    phone_number_id: str | None,
    consumer: str | None = None,
) -> Flow[SendResult]:
    """Send a built message to *to*; the flow's own function names the operation.

    Args:
        ctx: The client's context.
        operation: The endpoint flow (its `__name__` names the operation in events and logs),
            or the name itself.
        to: The recipient, validated here.
        built: A builder's `(type, object)`.
        idempotency_key: Echoed back as `biz_opaque_callback_data` in status webhooks.
        phone_number_id: The sender, or None for the client's.
        consumer: Who wants it sent (an intent's label), for events; None: the client's.
    """
    phone = ctx.phone(phone_number_id)
    recipient = check_recipient(to)
    key = check_key(idempotency_key)
    kind, payload = built
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient,
        "type": kind,
        kind: payload,
    }
    if key is not None:
        body["biz_opaque_callback_data"] = key
    name = operation if isinstance(operation, str) else operation.__name__
    request = post_json(ctx, ctx.messages_url(phone), body, name, phone, consumer)
    return (yield from call(ctx, request, lambda r: _parse_send(r, key)))


def _parse_send(response: Response, key: str | None) -> SendResult:
    data = json_object(response)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        raise BadBodyError("no 'messages' list")
    first = messages[0]
    message_id = first.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise BadBodyError("no message id")
    contacts = data.get("contacts")
    contact = contacts[0] if isinstance(contacts, list) and contacts else {}
    if not isinstance(contact, dict):
        contact = {}
    return SendResult(
        message_id=message_id,
        wa_id=opt_str(contact.get("wa_id")),
        input=opt_str(contact.get("input")),
        message_status=opt_str(first.get("message_status")),
        idempotency_key=key,
        usage=Usage.from_headers(response.headers),
    )


@raises("RequestValidationError: A malformed argument (named in the message); nothing was sent.")
def send_text(
    ctx: Context,
    to: str,
    text: str,
    *,
    preview_url: bool = False,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a text message.

    Args:
        to: The recipient's phone number in international format (`+15551234567`).
        text: The message, non-blank and at most 4096 characters.
        preview_url: Let WhatsApp render a preview of the first URL in *text*.
        idempotency_key: Your id for this message, echoed back in its status webhooks
            (`biz_opaque_callback_data`, at most 512 characters).
        phone_number_id: The sender, overriding the client's.

    Returns:
        The `SendResult`: Meta's message id (`wamid.…`), the recipient's WhatsApp id, usage.
    """
    built = build_text(text, preview_url=preview_url)
    return (yield from send_message(ctx, send_text, to, built, idempotency_key, phone_number_id))


@raises("RequestValidationError: A malformed argument (named in the message); nothing was sent.")
def send_template(
    ctx: Context,
    to: str,
    name: str,
    language: str,
    components: Sequence[Mapping[str, Any]] | None = None,
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send an approved message template, such as `("hello_world", "en_US")`.

    Templates are the only messages a business may send outside the 24-hour window after
    the user's last message.

    Args:
        to: The recipient's phone number in international format.
        name: The template's name as approved in WhatsApp Manager.
        language: Its language code (`en_US`).
        components: The header, body and button parameters, as Meta's `components` list.
        idempotency_key: Your id for this message, echoed back in its status webhooks.
        phone_number_id: The sender, overriding the client's.

    Returns:
        The `SendResult`.
    """
    built = build_template(name, language, components)
    return (
        yield from send_message(ctx, send_template, to, built, idempotency_key, phone_number_id)
    )


@raises("RequestValidationError: A malformed argument (named in the message); nothing was sent.")
def send_media(
    ctx: Context,
    to: str,
    kind: str,
    *,
    media_id: str | None = None,
    link: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send an image, document, audio, video or sticker, by uploaded `media_id` or by `link`.

    Args:
        to: The recipient's phone number in international format.
        kind: `image`, `document`, `audio`, `video` or `sticker`.
        media_id: The id `upload_media` returned; or pass *link*.
        link: A public http(s) URL Meta fetches the media from.
        caption: Text under an image, document or video (at most 1024 characters).
        filename: The file name a document is shown with.
        idempotency_key: Your id for this message, echoed back in its status webhooks.
        phone_number_id: The sender, overriding the client's.

    Returns:
        The `SendResult`.
    """
    built = build_media(kind, media_id=media_id, link=link, caption=caption, filename=filename)
    return (yield from send_message(ctx, send_media, to, built, idempotency_key, phone_number_id))


@raises("RequestValidationError: A malformed argument (named in the message); nothing was sent.")
def send_interactive_buttons(
    ctx: Context,
    to: str,
    body: str,
    buttons: Sequence[Mapping[str, str] | tuple[str, str]],
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a message with 1-3 reply buttons.

    Args:
        to: The recipient's phone number in international format.
        body: The message text (at most 1024 characters).
        buttons: Each `{"id": ..., "title": ...}` or `(id, title)`; the id comes back in the
            reply webhook, the title (at most 20 characters) is shown.
        idempotency_key: Your id for this message, echoed back in its status webhooks.
        phone_number_id: The sender, overriding the client's.

    Returns:
        The `SendResult`.
    """
    built = build_buttons(body, buttons)
    return (
        yield from send_message(
            ctx, send_interactive_buttons, to, built, idempotency_key, phone_number_id
        )
    )


@raises("RequestValidationError: A malformed argument (named in the message); nothing was sent.")
def send_interactive_list(
    ctx: Context,
    to: str,
    body: str,
    button: str,
    sections: Sequence[Mapping[str, Any]],
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a list message: *button* opens *sections* of rows to pick one from.

    Args:
        to: The recipient's phone number in international format.
        body: The message text.
        button: The label of the button that opens the list (at most 20 characters).
        sections: 1-10 sections `{"title": ..., "rows": [...]}`, each row `{"id", "title",
            "description"}` or an `(id, title, description)` tuple; 10 rows in all at most.
        idempotency_key: Your id for this message, echoed back in its status webhooks.
        phone_number_id: The sender, overriding the client's.

    Returns:
        The `SendResult`.
    """
    built = build_list(body, button, sections)
    return (
        yield from send_message(
            ctx, send_interactive_list, to, built, idempotency_key, phone_number_id
        )
    )


@raises("RequestValidationError: A malformed argument (named in the message); nothing was sent.")
def send_reaction(
    ctx: Context,
    to: str,
    message_id: str,
    emoji: str,
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """React to a message with an emoji; an empty emoji removes the reaction.

    Args:
        to: The phone number of the user whose message is reacted to.
        message_id: The `wamid.…` of that message.
        emoji: One emoji, or `""` to remove the reaction.
        idempotency_key: Your id for this message, echoed back in its status webhooks.
        phone_number_id: The sender, overriding the client's.

    Returns:
        The `SendResult`.
    """
    built = build_reaction(message_id, emoji)
    return (
        yield from send_message(ctx, send_reaction, to, built, idempotency_key, phone_number_id)
    )


@raises("RequestValidationError: A malformed argument (named in the message); nothing was sent.")
def send_location(
    ctx: Context,
    to: str,
    latitude: float,
    longitude: float,
    *,
    name: str | None = None,
    address: str | None = None,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a location pin.

    Args:
        to: The recipient's phone number in international format.
        latitude: Degrees in [-90, 90].
        longitude: Degrees in [-180, 180].
        name: The place's name.
        address: Its address.
        idempotency_key: Your id for this message, echoed back in its status webhooks.
        phone_number_id: The sender, overriding the client's.

    Returns:
        The `SendResult`.
    """
    built = build_location(latitude, longitude, name=name, address=address)
    return (
        yield from send_message(ctx, send_location, to, built, idempotency_key, phone_number_id)
    )


@raises(
    "RequestValidationError: The intent is past its `not_after` deadline (it must never be "
    "sent late), or is not an `Intent`; nothing was sent."
)
def send(ctx: Context, intent: Intent) -> Flow[SendResult]:
    """Send an `Intent` through the same request builder as the `send_*` methods.

    Args:
        intent: What to send; its `phone_number_id` (or the client's) is the sender, its
            `idempotency_key` is echoed back in the status webhooks.

    Returns:
        The `SendResult`.
    """
    if not hasattr(intent, "message") or not hasattr(intent, "operation"):
        raise RequestValidationError(f"send() takes an Intent, got {describe(intent)}")
    if intent.expired():
        raise RequestValidationError(
            f"intent {intent.idempotency_key!r} is past its not_after deadline: not sent"
        )
    return (
        yield from send_message(
            ctx,
            intent.operation,
            intent.to,
            intent.message(),
            intent.idempotency_key,
            intent.phone_number_id,
            intent.consumer,
        )
    )


@raises("RequestValidationError: A malformed message id; nothing was sent.")
def mark_as_read(
    ctx: Context, message_id: str, *, phone_number_id: str | None = None
) -> Flow[SuccessResult]:
    """Mark an incoming message as read (the blue ticks); safe to repeat.

    Args:
        message_id: The `wamid.…` of the incoming message.
        phone_number_id: The number that received it, overriding the client's.

    Returns:
        `SuccessResult` with Meta's `success` flag.
    """
    phone = ctx.phone(phone_number_id)
    check_text("message_id", message_id, MAX_MESSAGE_ID_CHARS)
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
    request = post_json(ctx, ctx.messages_url(phone), body, mark_as_read.__name__, phone)
    # Marking as read twice is harmless.
    request = attrs.evolve(request, idempotent=True)
    return (yield from call(ctx, request, parse_success_flag))


def parse_success_flag(response: Response) -> SuccessResult:
    """Parse Meta's `{"success": true}` answer."""
    data = json_object(response)
    return SuccessResult(
        success=data.get("success") is True, usage=Usage.from_headers(response.headers)
    )
