"""`Intent`: what to send, decided apart from how and when it is sent.

An intent is a frozen value: the recipient, the message (Meta's own `type` and object), an
idempotency key, the sender to route by, a consumer label, when it was made and an optional
deadline. It is validated when it is made, by the same rules as the client's `send_*` methods,
and has a versioned JSON shape (`to_dict` / `from_dict`) that the outbox stores and the
command line reads. `client.send(intent)` sends one through the same request builder as
`send_text` and the rest; a `Guard` decides what happens when that fails.

The JSON shape, version 1 (Meta's message body, plus the intent's own fields)::

    {"v": 1, "to": "+15551234567", "type": "text",
     "text": {"body": "Your order shipped", "preview_url": false},
     "idempotency_key": "order-42", "phone_number_id": null, "consumer": "orders",
     "created_at": 1764547200.0, "not_after": null}

`type` is one of `text`, `template`, `image`, `document`, `audio`, `video`, `sticker`,
`interactive` (reply buttons or a list), `reaction`, `location`, and the object under that key
is what Meta's `/messages` endpoint takes for it.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

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
from wa_auth._exports import claim as _claim
from wa_auth._validate import (
    MEDIA_KINDS,
    check_id,
    check_key,
    check_recipient,
    check_text,
    describe,
)
from wa_auth.errors import RequestValidationError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["INTENT_SCHEMA_VERSION", "MESSAGE_TYPES", "Intent"]

#: The version of `Intent.to_dict()`'s shape; `from_dict` reads this version and refuses others.
INTENT_SCHEMA_VERSION: Final = 1
#: Meta's message types an intent can carry.
MESSAGE_TYPES: Final = ("text", "template", *MEDIA_KINDS, "interactive", "reaction", "location")
#: The client operation (`send_text`, ...) each message type is sent by, for events and logs.
_OPERATIONS: Final = {
    "text": "send_text",
    "template": "send_template",
    **dict.fromkeys(MEDIA_KINDS, "send_media"),
    "reaction": "send_reaction",
    "location": "send_location",
}
_CONSUMER_MAX_CHARS: Final = 200
_FIELDS: Final = frozenset(
    {"v", "to", "type", "idempotency_key", "phone_number_id", "consumer", "created_at", "not_after"}
)


class _Keys:
    """Idempotency keys in UUID4 form: a random per-process prefix and a counter.

    A key must be unique, not secret (Meta echoes it in webhooks; logs and the outbox hold
    it): 74 random bits drawn once per process, and again in a forked child and when the
    48-bit counter runs out, keep keys of different processes, forks and restarts apart (two
    processes share a prefix with odds of about n^2 / 2^75), and the counter keeps one
    process's keys apart. A key costs a counter step and a format, not 16 bytes of
    `os.urandom` (a system call) per intent. Keys of one process come in order, which keeps
    an outbox's key index append-mostly.

    This is state of the process, the one the house rules allow: nothing a caller configures,
    and a fork cannot share it (`os.register_at_fork`, and the process id checked per key
    for a fork made in C).
    """

    __slots__ = ("_count", "_pid", "_prefix")

    def __init__(self) -> None:
        self._prefix = ""
        self._pid = 0
        self._count: Iterator[int] = iter(())
        self.redraw()

    def redraw(self) -> None:
        """Draw a new random prefix and restart the counter (a new process, a forked child)."""
        self._pid = os.getpid()
        raw = bytearray(os.urandom(10))
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        self._prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"
        self._count = itertools.count()

    def __call__(self) -> str:
        """Return a new key (`next` on a count is atomic under the GIL: threads share it)."""
        n = next(self._count)
        # A fork made in C (uWSGI's prefork, a C extension) runs no `register_at_fork` hook:
        # the process id tells the child it must draw its own prefix.
        if n >> 48 or os.getpid() != self._pid:  # or 2^48 keys from one prefix
            self.redraw()
            n = next(self._count)
        # The counter's twelve hex digits, zero-padded: below 2^48, `n` with bit 48 set is
        # "0x1" and those digits (`hex` and a slice cost less than a format spec).
        return self._prefix + hex(n | _BIT_48)[3:]


_BIT_48: Final = 1 << 48
_keys: Final = _Keys()
#: A new key: the bound method, called without the instance call's `__call__` lookup.
_new_key: Final = _keys.__call__
if hasattr(os, "register_at_fork"):  # not on Windows, which spawns: a new process draws anew
    os.register_at_fork(after_in_child=_keys.redraw)


def _timestamp(name: str, value: object, *, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestValidationError(
            f"{name} must be Unix seconds (a number), got {describe(value)}"
        )
    if value > 1e11:  # past the year 5138: milliseconds, not seconds
        raise RequestValidationError(
            f"{name} is {value!r}, which looks like milliseconds: pass Unix seconds"
        )
    return float(value)


class _IntentSlots:
    """`Intent`'s slots, in a base of their own so that `_made` can fill them cheaply.

    A frozen attrs class refuses `setattr`, and writing a slot through its descriptor's
    `__set__` costs a method-wrapper call (some 700 instructions) per field. `_made` instead
    fills an `_Unfrozen` (the same layout, no `__setattr__` of its own: a plain store per
    field) and then makes it an `Intent` by assigning `__class__`, which Python allows
    between classes that add nothing to one shared slotted base. The `__weakref__` slot is
    here too: Python refuses that assignment between classes that each declare it.
    """

    __slots__ = (
        "__weakref__",
        "consumer",
        "content",
        "created_at",
        "idempotency_key",
        "not_after",
        "phone_number_id",
        "to",
        "type",
    )


@attrs.frozen(kw_only=True)
class Intent(_IntentSlots):
    """One message to send, validated, with its idempotency key and optional deadline.

    Make one with a constructor per kind (`Intent.text(...)`, `Intent.template(...)`, ...) or
    from JSON with `Intent.from_dict`; the fields are read-only.

    Args:
        to: The recipient in international format.
        type: Meta's message type (`MESSAGE_TYPES`).
        content: The message object Meta takes under *type* (validated by the constructors).
        idempotency_key: Your id for the message, echoed in its status webhooks; a UUID4 when
            not given. The outbox and replays key on it.
        phone_number_id: The sender to route by; None uses the client's.
        consumer: A label of who wanted it sent (an n8n workflow), carried in events.
        created_at: Unix seconds when the intent was made.
        not_after: Unix seconds after which it must not be sent any more (a one-time code, a
            "your driver is here"): past it, a guard or a replay ends it as `expired`.
    """

    to: str
    type: str
    content: Mapping[str, Any] = attrs.field(eq=True, hash=False, repr=False)
    idempotency_key: str = attrs.field(factory=_new_key)
    phone_number_id: str | None = None
    consumer: str | None = None
    created_at: float = attrs.field(factory=time.time)
    not_after: float | None = None

    def __attrs_post_init__(self) -> None:
        check_recipient(self.to)
        if self.type not in MESSAGE_TYPES:
            raise RequestValidationError(
                f"type must be one of {', '.join(MESSAGE_TYPES)}, got {describe(self.type)}"
            )
        check_key(self.idempotency_key)
        if self.phone_number_id is not None:
            check_id("phone_number_id", self.phone_number_id)
        if self.consumer is not None:
            check_text("consumer", self.consumer, _CONSUMER_MAX_CHARS)
        _timestamp("created_at", self.created_at, optional=False)
        _timestamp("not_after", self.not_after, optional=True)
        if type(self.content) is _Built:
            return  # made by the kind's builder a moment ago: already checked, nobody else's
        # The content is re-built by the kind's builder: one implementation of every rule, and a
        # private copy nobody else can mutate.
        try:
            content = _rebuild(self.type, self.content)
        except RequestValidationError as exc:
            raise RequestValidationError(f"{self.type} object: {exc.message}") from None
        object.__setattr__(self, "content", content)

    def _routed(self, phone_number_id: str) -> Intent:
        """Return this intent sent from *phone_number_id* (checked here).

        What `attrs.evolve(self, phone_number_id=...)` returns, without checking again the
        fields it keeps (they were checked when this intent was made, and are frozen): a
        guard with an outbox records the sender of every intent that has none. A subclass
        goes through `attrs.evolve`, its own checks included.
        """
        if type(self) is not Intent:
            return attrs.evolve(self, phone_number_id=phone_number_id)
        check_id("phone_number_id", phone_number_id)
        return _made(
            self.to,
            self.type,
            self.content,
            self.idempotency_key,
            phone_number_id,
            self.consumer,
            self.created_at,
            self.not_after,
        )

    # --- constructors -----------------------------------------------------------------------

    @classmethod
    def _of(cls, to: str, built: Built, options: dict[str, Any]) -> Self:
        kind, content = built
        if options or cls is not Intent:
            return cls(to=to, type=kind, content=_Built(content), **options)
        # `Intent.text(to, body)`, the common case, made without attrs' `__init__`: the builder
        # checked the content, the key and the time are made here, so only the recipient is
        # left to check (what `__attrs_post_init__` would find, at a third of the cost). The
        # builder's dict is kept, not copied: it made it for this intent, nobody else holds it.
        check_recipient(to)
        return _made(to, kind, content, _new_key(), None, None, time.time(), None)  # type: ignore[return-value]

    @classmethod
    def text(cls, to: str, body: str, *, preview_url: bool = False, **options: Any) -> Self:
        """Return a text message intent (*options*: the `Intent` fields after `content`)."""
        built = build_text(body, preview_url=preview_url)
        if options or cls is not Intent:
            return cls._of(to, built, options)
        # `_of`'s common case written out: a guard makes one text intent per message.
        check_recipient(to)
        return _made(to, "text", built[1], _new_key(), None, None, time.time(), None)  # type: ignore[return-value]

    @classmethod
    def template(
        cls,
        to: str,
        name: str,
        language: str,
        components: Sequence[Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> Self:
        """Return an approved template intent, such as `("hello_world", "en_US")`."""
        return cls._of(to, build_template(name, language, components), options)

    @classmethod
    def media(
        cls,
        to: str,
        kind: str,
        *,
        media_id: str | None = None,
        link: str | None = None,
        caption: str | None = None,
        filename: str | None = None,
        **options: Any,
    ) -> Self:
        """Return an image, document, audio, video or sticker intent, by `media_id` or `link`."""
        built = build_media(kind, media_id=media_id, link=link, caption=caption, filename=filename)
        return cls._of(to, built, options)

    @classmethod
    def buttons(
        cls,
        to: str,
        body: str,
        buttons: Sequence[Mapping[str, str] | tuple[str, str]],
        **options: Any,
    ) -> Self:
        """Return an intent of a message with 1-3 reply buttons (`(id, title)` or dicts)."""
        return cls._of(to, build_buttons(body, buttons), options)

    @classmethod
    def list(
        cls,
        to: str,
        body: str,
        button: str,
        sections: Sequence[Mapping[str, Any]],
        **options: Any,
    ) -> Self:
        """Return a list message intent: *button* opens *sections* of rows."""
        return cls._of(to, build_list(body, button, sections), options)

    @classmethod
    def reaction(cls, to: str, message_id: str, emoji: str, **options: Any) -> Self:
        """Return a reaction intent; an empty emoji removes the reaction."""
        return cls._of(to, build_reaction(message_id, emoji), options)

    @classmethod
    def location(
        cls,
        to: str,
        latitude: float,
        longitude: float,
        *,
        name: str | None = None,
        address: str | None = None,
        **options: Any,
    ) -> Self:
        """Return a location pin intent."""
        return cls._of(to, build_location(latitude, longitude, name=name, address=address), options)

    # --- what it is -----------------------------------------------------------------------------

    @property
    def operation(self) -> str:
        """The client method this intent is sent like (`send_text`, `send_media`, ...)."""
        if self.type == "interactive":
            kind = self.content.get("type")
            return "send_interactive_list" if kind == "list" else "send_interactive_buttons"
        return _OPERATIONS[self.type]

    def expired(self, now: float | None = None) -> bool:
        """Return True when the intent is past its `not_after` deadline."""
        return self.not_after is not None and (time.time() if now is None else now) > self.not_after

    def message(self) -> Built:
        """Return Meta's message `type` and its object, for the request body (do not mutate)."""
        return self.type, self.content  # type: ignore[return-value]

    # --- JSON -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return the intent as JSON-safe data (the versioned shape in the module docstring)."""
        return {
            "v": INTENT_SCHEMA_VERSION,
            "to": self.to,
            "type": self.type,
            self.type: copy.deepcopy(dict(self.content)),
            "idempotency_key": self.idempotency_key,
            "phone_number_id": self.phone_number_id,
            "consumer": self.consumer,
            "created_at": self.created_at,
            "not_after": self.not_after,
        }

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Return the intent *data* describes (the shape of `to_dict`).

        `v`, `idempotency_key`, `phone_number_id`, `consumer`, `created_at` and `not_after`
        may be left out (version 1, a new UUID4, the client's sender, none, now, none).

        Raises:
            RequestValidationError: *data* is not that shape; the message names the field.
        """
        if not isinstance(data, Mapping):
            raise RequestValidationError(f"an intent must be a JSON object, got {describe(data)}")
        version = data.get("v", INTENT_SCHEMA_VERSION)
        if type(version) is not int:  # `true == 1` and `1.0 == 1`: neither is a version
            raise RequestValidationError(
                f"v must be the intent version, an integer ({INTENT_SCHEMA_VERSION}), got "
                f"{describe(version)}"
            )
        if version != INTENT_SCHEMA_VERSION:
            raise RequestValidationError(
                f"v: intent version {version!r} is not supported (this wa_auth reads version "
                f"{INTENT_SCHEMA_VERSION})"
            )
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
            raise RequestValidationError(
                f"type must be one of {', '.join(MESSAGE_TYPES)}, got {describe(kind)}"
            )
        unknown = [k for k in data if k not in _FIELDS and k != kind]
        if unknown:
            first = min(str(k) for k in unknown)
            raise RequestValidationError(f"unknown intent field {first!r}")
        if kind not in data:
            raise RequestValidationError(f"{kind}: a {kind} intent needs its {kind!r} object")
        if cls is Intent:
            return _from_fields(data, kind)  # type: ignore[return-value]
        options: dict[str, Any] = {
            name: data[name]
            for name in (
                "idempotency_key",
                "phone_number_id",
                "consumer",
                "created_at",
                "not_after",
            )
            if name in data
            and not (name in {"idempotency_key", "created_at"} and data[name] is None)
        }
        if type(options.get("phone_number_id")) is int:
            options["phone_number_id"] = str(options["phone_number_id"])
        return cls(to=data.get("to"), type=kind, content=data[kind], **options)  # type: ignore[arg-type]


class _Unfrozen(_IntentSlots):
    """An `Intent` being made by `_made`: its fields are stored, then its class becomes `Intent`."""

    __slots__ = ()
    to: str
    type: str
    content: Mapping[str, Any]
    idempotency_key: str
    phone_number_id: str | None
    consumer: str | None
    created_at: float
    not_after: float | None


def _made(
    to: str,
    kind: str,
    content: Mapping[str, Any],
    idempotency_key: str,
    phone_number_id: str | None,
    consumer: str | None,
    created_at: float,
    not_after: float | None,
) -> Intent:
    """Return an `Intent` of fields already checked, without `__init__` (or its checks).

    A plain store per field, on an `_Unfrozen` turned into an `Intent` at the end (see
    `_IntentSlots`): a guard makes one per message, and the slot descriptors' `__set__`
    cost some 4,000 instructions more.
    """
    intent = object.__new__(_Unfrozen)
    intent.to = to
    intent.type = kind
    intent.content = content
    intent.idempotency_key = idempotency_key
    intent.phone_number_id = phone_number_id
    intent.consumer = consumer
    intent.created_at = created_at
    intent.not_after = not_after
    intent.__class__ = Intent  # type: ignore[assignment]
    return intent  # type: ignore[return-value]


def _from_fields(data: Mapping[str, Any], kind: str) -> Intent:
    """Return `Intent.from_dict`'s intent of a checked *kind*, without `__init__`.

    Serve's list path makes one per item: the checks of `__attrs_post_init__`, in its
    order and with its messages, but a key or a time this function makes itself is not
    checked again.
    """
    to = check_recipient(data.get("to"))
    key = data.get("idempotency_key")
    if key is None:
        key = _new_key()
    else:
        check_key(key)
    phone = data.get("phone_number_id")
    if type(phone) is int:
        phone = str(phone)
    if phone is not None:
        check_id("phone_number_id", phone)
    consumer = data.get("consumer")
    if consumer is not None:
        check_text("consumer", consumer, _CONSUMER_MAX_CHARS)
    created_at = data.get("created_at")
    if created_at is None:
        created_at = time.time()
    else:
        _timestamp("created_at", created_at, optional=False)
    not_after = data.get("not_after")
    _timestamp("not_after", not_after, optional=True)
    content = data[kind]
    if type(content) is not _Built:
        try:
            content = _rebuild(kind, content)
        except RequestValidationError as exc:
            raise RequestValidationError(f"{kind} object: {exc.message}") from None
    return _made(to, kind, content, key, phone, consumer, created_at, not_after)


class _Built(dict[str, Any]):
    """A message object a builder has just made and checked (a constructor's, not a user's)."""


def _field(content: Mapping[str, Any], name: str, kind: str) -> Any:
    value = content.get(name)
    if value is None:
        raise RequestValidationError(f"{kind}.{name} is required")
    return value


def _rebuild(kind: str, content: object) -> dict[str, Any]:
    """Validate *content* as Meta's *kind* object by building it again with the kind's builder."""
    if not isinstance(content, Mapping):
        raise RequestValidationError(f"{kind} must be an object, got {describe(content)}")
    built: Built
    if kind == "text":
        preview = content.get("preview_url")
        built = build_text(
            _field(content, "body", kind), preview_url=False if preview is None else preview
        )
    elif kind == "template":
        language = content.get("language")
        code = language.get("code") if isinstance(language, Mapping) else language
        built = build_template(_field(content, "name", kind), code, content.get("components"))
    elif kind in MEDIA_KINDS:
        built = build_media(
            kind,
            media_id=content.get("id"),
            link=content.get("link"),
            caption=content.get("caption"),
            filename=content.get("filename"),
        )
    elif kind == "interactive":
        built = _rebuild_interactive(content)
    elif kind == "reaction":
        built = build_reaction(content.get("message_id"), content.get("emoji"))
    else:
        built = build_location(
            content.get("latitude"),
            content.get("longitude"),
            name=content.get("name"),
            address=content.get("address"),
        )
    return built[1]


def _rebuild_interactive(content: Mapping[str, Any]) -> Built:
    body = content.get("body")
    text = body.get("text") if isinstance(body, Mapping) else None
    action = content.get("action")
    if not isinstance(action, Mapping):
        raise RequestValidationError("interactive.action must be an object")
    if content.get("type") == "button":
        buttons = action.get("buttons")
        if not isinstance(buttons, Sequence) or isinstance(buttons, (str, bytes)):
            raise RequestValidationError("interactive.action.buttons must be a list")
        pairs = []
        for b in buttons:
            reply = b.get("reply") if isinstance(b, Mapping) else None
            if not isinstance(reply, Mapping):
                raise RequestValidationError("each interactive button needs a 'reply' object")
            pairs.append((reply.get("id"), reply.get("title")))
        return build_buttons(text, pairs)
    if content.get("type") == "list":
        return build_list(text, action.get("button"), action.get("sections") or ())
    raise RequestValidationError(
        f"interactive.type must be 'button' or 'list', got {describe(content.get('type'))}"
    )


_claim(__name__, globals())
