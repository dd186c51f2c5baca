"""The message builders: a kind's arguments -> Meta's message `type` and its object.

Each is pure and validated by the rules of `wa_auth._validate`, so the `send_*` flows and the
`Intent` constructors share one implementation of every rule and every request body. What a
builder returns is made of new dicts and lists holding only sendable strings and finite
numbers: its request body always encodes, and a caller's later change to its own data
changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

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
    check_json,
    check_sendable,
    check_text,
    describe,
)
from wa_auth.errors import RequestValidationError

__all__ = [
    "Built",
    "build_buttons",
    "build_list",
    "build_location",
    "build_media",
    "build_reaction",
    "build_template",
    "build_text",
]

#: What a builder returns: the message's `type` and the object sent under that key.
Built = tuple[str, dict[str, Any]]

#: The media kinds a caption is allowed on.
_CAPTIONED: frozenset[str] = frozenset({"image", "document", "video"})


def build_text(text: object, *, preview_url: object = False) -> Built:
    """Return the `text` object of a text message (non-blank, at most 4096 characters)."""
    body = check_text("text", text, MAX_TEXT_CHARS)
    if not isinstance(preview_url, bool):
        # A truthy `"false"` or NaN must not turn the preview on.
        raise RequestValidationError(
            f"preview_url must be true or false, got {_shown(preview_url)}"
        )
    return "text", {"preview_url": preview_url, "body": body}


def build_template(
    name: object, language: object, components: Sequence[Mapping[str, Any]] | None = None
) -> Built:
    """Return the `template` object: its name, language code and optional components."""
    check_text("template name", name, MAX_TEMPLATE_NAME_CHARS)
    check_text("template language", language, MAX_LANGUAGE_CHARS)
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components is not None:
        given = _list(components, "components")
        if not all(isinstance(c, Mapping) for c in given):
            raise RequestValidationError("components must be a list of objects (dicts)")
        template["components"] = check_json("components", given)
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
        payload["link"] = check_sendable("link", link)
    if caption is not None:
        if kind not in _CAPTIONED:
            raise RequestValidationError(f"a {kind} cannot have a caption")
        payload["caption"] = check_text("caption", caption, MAX_CAPTION_CHARS)
    if filename is not None:
        if kind != "document":
            raise RequestValidationError("only a document can have a filename")
        payload["filename"] = check_text("filename", filename, MAX_FILENAME_CHARS)
    return kind, payload


def _list(value: object, what: str) -> list[Any]:
    """Return *value* as a list if it is a list (or another sequence), or raise naming *what*."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes, bytearray)):
        raise RequestValidationError(f"{what} must be a list, got {describe(value)}")
    return list(value)


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
    items = [_item(b, ("id", "title"), "button") for b in _list(buttons, "buttons")]
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
    sections = _list(sections, "sections")
    if not 1 <= len(sections) <= MAX_LIST_SECTIONS:
        raise RequestValidationError(f"sections must be a list of 1-{MAX_LIST_SECTIONS} sections")
    out: list[dict[str, Any]] = []
    total = 0
    for section in sections:
        sec = _item(section, ("title", "rows"), "section")
        given = _list(sec.get("rows") or (), "a section's rows")
        rows = [_item(r, ("id", "title", "description"), "row") for r in given]
        if not rows:
            raise RequestValidationError("each section needs at least one row")
        for row in rows:
            check_text("row id", row.get("id"), MAX_ROW_ID_CHARS)
            check_text("row title", row.get("title"), MAX_ROW_TITLE_CHARS)
            if row.get("description") is not None:
                check_text("row description", row["description"], MAX_ROW_DESCRIPTION_CHARS)
        # A row's other keys go to Meta as they are: only as plain JSON that encodes.
        rows = [check_json("row", row) for row in rows]
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


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, (int, float)) else describe(value)


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
            raise RequestValidationError(
                f"{label} must be a number in [-{bound}, {bound}], got {_shown(value)}"
            )
    payload: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        payload["name"] = check_text("name", name, MAX_LOCATION_TEXT_CHARS)
    if address is not None:
        payload["address"] = check_text("address", address, MAX_LOCATION_TEXT_CHARS)
    return "location", payload
