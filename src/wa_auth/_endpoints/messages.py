"""The message endpoints: `POST /{phone_number_id}/messages` for every kind of message.

Each kind has a pure *builder* (arguments -> the message's `type` and its object, validated by
the rules in `wa_auth._validate`) and a flow that sends what the builder made. Intents and
other front doors reuse the builders, so a rule and a request body exist once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from wa_auth._builders import (
    Built,
    build_buttons,
    build_list,
    build_location,
    build_media,
    build_reaction,
    build_template,
    build_text,
)
from wa_auth._context import Context
from wa_auth._core import (
    BadBodyError,
    Flow,
    Response,
    call,
    json_object,
    opt_str,
    post_json,
)
from wa_auth._endpoints._docs import raises
from wa_auth._validate import (
    MAX_MESSAGE_ID_CHARS,
    check_key,
    check_recipient,
    check_text,
    describe,
)
from wa_auth.errors import RequestValidationError
from wa_auth.models import SendResult, Usage

if TYPE_CHECKING:
    from wa_auth.intents import Intent
    from wa_auth.models import SuccessResult

__all__ = [
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

# --- sending ------------------------------------------------------------------------------------


def send_message(
    ctx: Context,
    operation: Callable[..., Any] | str,
    to: object,
    built: Built,
    idempotency_key: str | None,
    phone_number_id: str | None,
    consumer: str | None = None,
    *,
    checked: bool = False,
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
        checked: *to* and *idempotency_key* were checked already (an `Intent`'s fields).
    """
    phone = ctx.phone(phone_number_id)
    if checked:
        recipient: str = to  # type: ignore[assignment]
        key = idempotency_key
    else:
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
    # An `Intent` was checked when it was made, and is frozen: its recipient and key are not
    # checked again (a subclass's are). One exists only once its module is loaded: no import.
    intents = sys.modules.get("wa_auth.intents")
    checked = intents is not None and type(intent) is intents.Intent
    if not checked and (not hasattr(intent, "message") or not hasattr(intent, "operation")):
        raise RequestValidationError(f"send() takes an Intent, got {describe(intent)}")
    # An `Intent` without a deadline cannot have passed it, and its message is its two
    # fields: no method call for either (a subclass's own methods are called).
    if (not checked or intent.not_after is not None) and intent.expired():
        raise RequestValidationError(
            f"intent {intent.idempotency_key!r} is past its not_after deadline: not sent"
        )
    built = (intent.type, intent.content) if checked else intent.message()
    # An `Intent`'s operation read from its table, not through the property (a call per
    # send); an interactive message's depends on its content: the property says. Anything
    # else (a subclass, an object `send` takes for its `message` and `operation`) is asked:
    # it need not have a `type`.
    if checked:
        operation = intents._OPERATIONS.get(intent.type) or intent.operation  # type: ignore[union-attr]  # noqa: SLF001
    else:
        operation = intent.operation
    return (
        yield from send_message(
            ctx,
            operation,
            intent.to,
            built,  # type: ignore[arg-type]
            intent.idempotency_key,
            intent.phone_number_id,
            intent.consumer,
            checked=checked,
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
    from wa_auth.models import SuccessResult

    data = json_object(response)
    return SuccessResult(
        success=data.get("success") is True, usage=Usage.from_headers(response.headers)
    )
