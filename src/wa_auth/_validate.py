"""The local validation rules of a send, written once: the endpoint flows and intents use them.

Each rule raises `RequestValidationError` naming the field and what was wrong, before any
request, so a malformed message never reaches Meta (or a token's error budget). The limits are
the Cloud API's documented ones (messages reference: text, media, interactive and reaction
objects); a value past them is refused by Meta with code 100 or 131009 anyway.

Every string is also checked to be sendable: UTF-8 cannot encode half of a UTF-16 surrogate
pair, which is what JavaScript's `JSON.stringify` writes for a string cut inside an emoji (the
escape of U+D83D alone), and a NUL is never part of a message. Refused here, where the text
enters, such a string never becomes an encoding error in the middle of a batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from wa_auth.errors import ConfigurationError, RequestValidationError

__all__ = [
    "MAX_BUTTONS",
    "MAX_BUTTON_ID_CHARS",
    "MAX_BUTTON_TITLE_CHARS",
    "MAX_CAPTION_CHARS",
    "MAX_EMOJI_CHARS",
    "MAX_FILENAME_CHARS",
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "MAX_INTERACTIVE_BODY_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_LANGUAGE_CHARS",
    "MAX_LIST_BODY_CHARS",
    "MAX_LIST_BUTTON_CHARS",
    "MAX_LIST_ROWS",
    "MAX_LIST_SECTIONS",
    "MAX_LOCATION_TEXT_CHARS",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_ROW_DESCRIPTION_CHARS",
    "MAX_ROW_ID_CHARS",
    "MAX_ROW_TITLE_CHARS",
    "MAX_SECTION_TITLE_CHARS",
    "MAX_TEMPLATE_NAME_CHARS",
    "MAX_TEXT_CHARS",
    "MEDIA_KINDS",
    "check_deadline",
    "check_id",
    "check_json",
    "check_key",
    "check_recipient",
    "check_sendable",
    "check_text",
    "describe",
]

#: A text message's body.
MAX_TEXT_CHARS: Final = 4096
#: A media caption; also the body of a reply-buttons message.
MAX_CAPTION_CHARS: Final = 1024
#: Meta documents 512 characters as the limit of `biz_opaque_callback_data`.
MAX_IDEMPOTENCY_KEY_CHARS: Final = 512
MAX_TEMPLATE_NAME_CHARS: Final = 512
#: A template language code such as `en_US`, with room for Meta's longer tags.
MAX_LANGUAGE_CHARS: Final = 32
MAX_FILENAME_CHARS: Final = 240
#: Reply buttons: 1 to 3 per message, each with an id and a short title.
MAX_BUTTONS: Final = 3
MAX_BUTTON_ID_CHARS: Final = 256
MAX_BUTTON_TITLE_CHARS: Final = 20
MAX_INTERACTIVE_BODY_CHARS: Final = MAX_CAPTION_CHARS
#: List messages: a body of a text message's length, a 20-character button, at most 10
#: sections and 10 rows in all.
MAX_LIST_BODY_CHARS: Final = MAX_TEXT_CHARS
MAX_LIST_BUTTON_CHARS: Final = 20
MAX_LIST_SECTIONS: Final = 10
MAX_LIST_ROWS: Final = 10
MAX_ROW_ID_CHARS: Final = 200
MAX_ROW_TITLE_CHARS: Final = 24
MAX_ROW_DESCRIPTION_CHARS: Final = 72
MAX_SECTION_TITLE_CHARS: Final = 24
#: A `wamid.` message id, replied to or reacted to.
MAX_MESSAGE_ID_CHARS: Final = 256
#: One emoji, which may be several code points (a flag, a skin tone, a family).
MAX_EMOJI_CHARS: Final = 16
MAX_LOCATION_TEXT_CHARS: Final = 1000
MEDIA_KINDS: Final = ("image", "document", "audio", "video", "sticker")
#: How deep caller JSON may nest (a template's components are about six levels deep). Deeper
#: JSON is refused: it is no message, and Python's JSON parser and printer recurse.
MAX_JSON_DEPTH: Final = 64

_RECIPIENT_RE: Final = re.compile(r"\+?[0-9]{7,15}")
#: Graph object ids (phone numbers, WABAs, media) are numeric: a token pasted as an id never
#: reaches a URL.
_ID_RE: Final = re.compile(r"[0-9]{1,32}")
#: The C0 control characters and DEL: an idempotency key is an id, echoed in webhooks and logs.
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


def describe(value: object) -> str:
    """Return how an error message shows a bad value: a short repr, or only its type."""
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return repr(shown) if value else "an empty string"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def check_deadline(value: object) -> float:
    """Return *value* as a deadline's seconds: a positive, finite number (a client's, Vault's).

    Raises:
        ConfigurationError: It is not one.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"deadline must be a positive, finite number of seconds, got {value!r}"
        )
    return float(value)


def check_id(name: str, value: object) -> str:
    """Return *value* as a Graph object id (digits; an int is accepted), or raise."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise RequestValidationError(
            f"{name} must be a Graph object id (digits), got {describe(value)}"
        )
    return value


def check_recipient(to: object) -> str:
    """Return *to* if it is a phone number in international format (7-15 digits), or raise."""
    if not isinstance(to, str) or not _RECIPIENT_RE.fullmatch(to):
        raise RequestValidationError(
            "recipient 'to' must be 7-15 digits with an optional leading '+' "
            f"(international format, no spaces), got {describe(to)}"
        )
    return to


def check_sendable(name: str, value: str) -> str:
    """Return the string *value* if it can be sent: UTF-8 encodes it and it holds no NUL.

    Raises:
        RequestValidationError: Half of a surrogate pair (a string cut inside an emoji), or a
            NUL; the message names *name* and the position, never the text.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        half = ord(value[exc.start])
        raise RequestValidationError(
            f"{name} has half of a character at position {exc.start} (a lone surrogate, "
            f"U+{half:04X}), which cannot be sent as UTF-8: was the text cut inside an emoji?"
        ) from None
    nul = value.find("\x00")
    if nul >= 0:
        raise RequestValidationError(f"{name} has a NUL character (U+0000) at position {nul}")
    return value


def check_text(name: str, value: object, limit: int, *, allow_empty: bool = False) -> str:
    """Return *value* if it is a sendable string of at most *limit* characters (non-blank)."""
    if not isinstance(value, str):
        raise RequestValidationError(f"{name} must be a string, got {describe(value)}")
    if not allow_empty and not value.strip():
        raise RequestValidationError(f"{name} must not be empty")
    if len(value) > limit:
        raise RequestValidationError(
            f"{name} is {len(value)} characters; WhatsApp allows at most {limit}"
        )
    return check_sendable(name, value)


def check_key(key: object) -> str | None:
    """Return the idempotency key (None when absent) if Meta can echo it back, or raise."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise RequestValidationError(
            f"idempotency_key must be a non-empty string, got {describe(key)}"
        )
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise RequestValidationError(
            f"idempotency_key is {len(key)} characters; Meta's biz_opaque_callback_data "
            f"allows at most {MAX_IDEMPOTENCY_KEY_CHARS}"
        )
    control = _CONTROL_RE.search(key)
    if control is not None:
        raise RequestValidationError(
            f"idempotency_key has a control character (U+{ord(control[0]):04X}) at position "
            f"{control.start()}: a key is an id, echoed in webhooks, logs and the outbox"
        )
    return check_sendable("idempotency_key", key)


def check_json(name: str, value: object) -> Any:
    """Return a private copy of *value* if it is plain JSON that encodes, or raise.

    Plain JSON is objects with string keys, lists (or tuples), sendable strings, finite
    numbers, booleans and null, nested at most `MAX_JSON_DEPTH` deep. The copy is made of
    new dicts and lists, so a caller's later change to its own data changes nothing sent.
    The walk is iterative: no depth of *value* can exhaust the stack.

    Raises:
        RequestValidationError: The first value that is not plain JSON, named by its path
            (`components[0].parameters[1].text`).
    """
    root: list[Any] = [None]
    # (the value, its path, its depth, the container its copy goes into, the key there)
    stack: list[tuple[object, str, int, Any, Any]] = [(value, name, 0, root, 0)]
    while stack:
        item, path, depth, parent, slot = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise RequestValidationError(
                f"{name} is nested deeper than {MAX_JSON_DEPTH} levels (at {path[:80]})"
            )
        copy: Any
        if isinstance(item, str):
            copy = check_sendable(path, item)
        elif item is None or isinstance(item, (bool, int)):
            copy = item
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise RequestValidationError(f"{path} must be a finite number, got {item!r}")
            copy = item
        elif isinstance(item, Mapping):
            copy = {}
            for key, child in item.items():
                if not isinstance(key, str):
                    raise RequestValidationError(
                        f"{path} has a key that is not a string ({describe(key)})"
                    )
                check_sendable(f"{path} key", key)
                copy[key] = None
                label = key if len(key) <= 40 else key[:37] + "..."
                stack.append((child, f"{path}.{label}", depth + 1, copy, key))
        elif isinstance(item, (list, tuple)):
            copy = [None] * len(item)
            stack.extend(
                (child, f"{path}[{index}]", depth + 1, copy, index)
                for index, child in enumerate(item)
            )
        else:
            raise RequestValidationError(
                f"{path} must be JSON (an object, list, string, number, true, false or null), "
                f"got {describe(item)}"
            )
        parent[slot] = copy
    return root[0]
