"""What the Cloud API accepts in a `POST /{phone}/messages` body, field by field.

`check_message` walks a send's JSON body the way Meta's validation does and names the first
field it rejects, with the catalogue entry Meta answers it with: a missing field is
"(#100) The parameter text['body'] is required.", a field of the wrong JSON type is
"(#100) Param text['body'] must be a string.", a text that is too long is "(#100) Param
text['body'] must be at most 4096 characters long.", and a value Meta parses but refuses is
131009 "Parameter value is not valid" (too many buttons) or 131008 "Required parameter is
missing" (a media object with neither `id` nor `link`). Paths use Graph's own
`interactive['action']['buttons'][0]['reply']['title']` notation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["MESSAGE_TYPES", "Problem", "check_message", "check_read"]

#: The message types a send may have (`type`, default `text`).
MESSAGE_TYPES: Final = frozenset(
    {
        "text",
        "template",
        "image",
        "document",
        "audio",
        "video",
        "sticker",
        "interactive",
        "reaction",
        "location",
        "contacts",
    }
)
#: Meta's documented length limits.
_MAX_TEXT: Final = 4096
_MAX_CAPTION: Final = 1024
_MAX_CALLBACK_DATA: Final = 512
_MAX_BUTTONS: Final = 3
_MEDIA: Final = ("image", "document", "audio", "video", "sticker")
_CAPTIONED: Final = ("image", "document", "video")
_PARAMETER_OBJECTS: Final = ("image", "document", "video", "currency", "date_time", "location")

#: A rejected body: the catalogue entry to answer with, and its placeholder values.
Problem = tuple[str, dict[str, Any]]


class _Rejected(Exception):  # noqa: N818 - a control-flow signal inside this module, never raised out
    def __init__(self, entry: str, **values: Any) -> None:
        super().__init__(entry)
        self.problem: Problem = (entry, values)


def _at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}['{key}']" if path else key


def _get(
    container: Mapping[str, Any],
    path: str,
    key: str,
    kind: str,
    *,
    required: bool = False,
    allow_empty: bool = True,
) -> Any:
    """Return `container[key]` if it has the JSON *kind*; None if absent and optional."""
    where = _at(path, key)
    value = container.get(key)
    if value is None or (value == "" and not allow_empty):
        if required:
            raise _Rejected("required_parameter", parameter=where)
        return None
    expected, accepts = _KINDS[kind]
    if not accepts(value):
        raise _Rejected("param_type", param=where, expected=expected)
    return value


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


_KINDS: Final[Mapping[str, tuple[str, Callable[[Any], bool]]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "number": ("a number", _is_number),
    "array": ("an array", lambda v: isinstance(v, list)),
    "object": ("an object", lambda v: isinstance(v, Mapping)),
}


def _text(container: Mapping[str, Any], path: str, key: str, limit: int, **kw: Any) -> None:
    value = _get(container, path, key, "string", **kw)
    if value is not None and len(value) > limit:
        raise _Rejected("param_too_long", param=_at(path, key), limit=limit)


def _objects(container: Mapping[str, Any], path: str, key: str, **kw: Any) -> list[Any]:
    items = _get(container, path, key, "array", **kw) or []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _Rejected("param_type", param=_at(_at(path, key), i), expected="an object")
    return list(items)


# --- one checker per message type ----------------------------------------------------------


def _check_text(payload: Mapping[str, Any]) -> None:
    _text(payload, "text", "body", _MAX_TEXT, required=True, allow_empty=False)
    _get(payload, "text", "preview_url", "boolean")


def _check_template(payload: Mapping[str, Any]) -> None:
    _get(payload, "template", "name", "string", required=True, allow_empty=False)
    language = _get(payload, "template", "language", "object", required=True)
    _get(language, "template['language']", "code", "string", required=True, allow_empty=False)
    _get(language, "template['language']", "policy", "string")
    path = "template['components']"
    for i, component in enumerate(_objects(payload, "template", "components")):
        where = _at(path, i)
        _get(component, where, "type", "string", required=True)
        _get(component, where, "sub_type", "string")
        for j, parameter in enumerate(_objects(component, where, "parameters")):
            at = _at(_at(where, "parameters"), j)
            kind = _get(parameter, at, "type", "string", required=True)
            if kind in ("text", "payload"):
                _get(parameter, at, kind, "string", required=True)
            elif kind in _PARAMETER_OBJECTS:
                _get(parameter, at, kind, "object", required=True)


def _check_media(kind: str, payload: Mapping[str, Any]) -> None:
    media_id = _get(payload, kind, "id", "string")
    link = _get(payload, kind, "link", "string")
    if media_id is None and link is None:
        details = f"Either {kind}['id'] or {kind}['link'] is required"
        raise _Rejected("required_parameter_missing", details=details)
    if kind in _CAPTIONED:
        _text(payload, kind, "caption", _MAX_CAPTION)
    if kind == "document":
        _get(payload, kind, "filename", "string")


def _check_interactive(payload: Mapping[str, Any]) -> None:
    kind = _get(payload, "interactive", "type", "string", required=True)
    header = _get(payload, "interactive", "header", "object")
    if header is not None:
        _get(header, "interactive['header']", "type", "string", required=True)
        _get(header, "interactive['header']", "text", "string")
    body = _get(payload, "interactive", "body", "object", required=kind in ("button", "list"))
    if body is not None:
        _get(body, "interactive['body']", "text", "string", required=True, allow_empty=False)
    footer = _get(payload, "interactive", "footer", "object")
    if footer is not None:
        _get(footer, "interactive['footer']", "text", "string", required=True)
    action = _get(payload, "interactive", "action", "object", required=True)
    path = "interactive['action']"
    if kind == "button":
        buttons = _objects(action, path, "buttons", required=True)
        if not 1 <= len(buttons) <= _MAX_BUTTONS:
            raise _Rejected(
                "parameter_value_invalid",
                details="Invalid buttons count. Min allowed buttons: 1, Max allowed buttons: 3",
            )
        for i, button in enumerate(buttons):
            where = _at(_at(path, "buttons"), i)
            _get(button, where, "type", "string", required=True)
            reply = _get(button, where, "reply", "object", required=True)
            _get(reply, _at(where, "reply"), "id", "string", required=True)
            _get(reply, _at(where, "reply"), "title", "string", required=True)
    elif kind == "list":
        _get(action, path, "button", "string", required=True)
        for i, section in enumerate(_objects(action, path, "sections", required=True)):
            where = _at(_at(path, "sections"), i)
            _get(section, where, "title", "string")
            for j, row in enumerate(_objects(section, where, "rows", required=True)):
                at = _at(_at(where, "rows"), j)
                _get(row, at, "id", "string", required=True)
                _get(row, at, "title", "string", required=True)
                _get(row, at, "description", "string")


def _check_reaction(payload: Mapping[str, Any]) -> None:
    _get(payload, "reaction", "message_id", "string", required=True, allow_empty=False)
    # An empty emoji removes the reaction.
    _get(payload, "reaction", "emoji", "string", required=True)


def _check_location(payload: Mapping[str, Any]) -> None:
    for key, bound in (("latitude", 90), ("longitude", 180)):
        value = _get(payload, "location", key, "number", required=True)
        if not -bound <= value <= bound:
            raise _Rejected(
                "parameter_value_invalid",
                details=f"Param location['{key}'] must be between -{bound} and {bound}.",
            )
    _get(payload, "location", "name", "string")
    _get(payload, "location", "address", "string")


def _check_contacts(contacts: list[Any]) -> None:
    if not contacts:
        raise _Rejected("required_parameter", parameter="contacts[0]")
    for i, contact in enumerate(contacts):
        where = _at("contacts", i)
        if not isinstance(contact, Mapping):
            raise _Rejected("param_type", param=where, expected="an object")
        name = _get(contact, where, "name", "object", required=True)
        _get(name, _at(where, "name"), "formatted_name", "string", required=True)
        for key in ("phones", "emails", "urls", "addresses"):
            _objects(contact, where, key)


_CHECKERS: Final[Mapping[str, Callable[[Mapping[str, Any]], None]]] = {
    "text": _check_text,
    "template": _check_template,
    "interactive": _check_interactive,
    "reaction": _check_reaction,
    "location": _check_location,
    **{kind: functools.partial(_check_media, kind) for kind in _MEDIA},
}


def check_message(body: Mapping[str, Any]) -> Problem | None:
    """Return why Meta rejects the message send *body*, or None if it passes.

    The recipient (`to`) and `messaging_product` are checked by the caller first; this checks
    the rest: `type`, the payload of that type, `recipient_type`, `context` and
    `biz_opaque_callback_data`.
    """
    try:
        _get(body, "", "recipient_type", "string")
        _text(body, "", "biz_opaque_callback_data", _MAX_CALLBACK_DATA)
        context = _get(body, "", "context", "object")
        if context is not None:
            _get(context, "context", "message_id", "string", required=True)
        kind = _get(body, "", "type", "string") or "text"
        if kind not in MESSAGE_TYPES:
            return ("invalid_parameter", {"details": f"Unsupported message type {kind[:40]!r}"})
        if kind == "contacts":
            _check_contacts(_get(body, "", "contacts", "array", required=True))
        else:
            _CHECKERS[kind](_get(body, "", kind, "object", required=True))
    except _Rejected as rejected:
        return rejected.problem
    return None


def check_read(body: Mapping[str, Any]) -> Problem | None:
    """Return why Meta rejects the mark-as-read *body* (`"status": "read"`), or None."""
    try:
        _get(body, "", "message_id", "string", required=True, allow_empty=False)
        _get(body, "", "typing_indicator", "object")
    except _Rejected as rejected:
        return rejected.problem
    return None
