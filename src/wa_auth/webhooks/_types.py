"""The typed events `parse` returns: one frozen value per status, message or change.

Every event carries the ids Meta sent (WABA, phone number), its `type`, a stable dedupe `key`
and the raw object it was read from (`raw`, hidden from `repr`: it may hold a message's text).
A status has an `order` (sent < delivered < read < failed, which is final), so a late status is
recognised; a failed one carries its errors classified like a synchronous answer's. What
concerns the account (an update, a review, quality, capability, security, templates) has an
`effect` on sending (`stops`, `resumes`, `warns` or `informs`) and, when something stopped
working, a `category` of `wa_auth.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs

from wa_auth.errors import ApiError
from wa_auth.webhooks._read import MAX_DIGITS, MAX_ID, is_map, read_id, seconds

__all__ = [
    "DEFERRED",
    "EFFECTS",
    "INFORMS",
    "ORDER",
    "RESUMES",
    "STOPS",
    "WARNS",
    "AccountReviewUpdate",
    "AccountUpdate",
    "CapabilityUpdate",
    "InboundMessage",
    "MessageStatus",
    "MessagingError",
    "QualityUpdate",
    "SecurityEvent",
    "TemplateStatusUpdate",
    "UnknownEvent",
    "WebhookEvent",
    "build_status",
    "status_fields",
    "unfrozen_status",
]

#: Sending stops (the account or number cannot send until something changes).
STOPS: Final = "stops"
#: Sending works again (an account reconnected or was reinstated, a review approved).
RESUMES: Final = "resumes"
#: Nothing stops now, but an operator should look (a violation, a quality downgrade).
WARNS: Final = "warns"
#: News with no effect on sending.
INFORMS: Final = "informs"
#: The effects, from the most to the least urgent.
EFFECTS: Final = (STOPS, RESUMES, WARNS, INFORMS)

#: The order of a message's statuses: a status never goes back to a lower one. `failed` is
#: final: nothing after it is applied.
ORDER: Final[Mapping[str, int]] = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


@attrs.frozen(kw_only=True)
class WebhookEvent:
    """One thing a webhook told: the base of every event `parse` returns."""

    #: The event's kind, stable: `status`, `message`, `account_update`, ...
    type: ClassVar[str] = "event"

    #: The WhatsApp Business Account the change is about (the entry's `id`).
    business_account_id: str | None = None
    #: The business phone number, where the change names one.
    phone_number_id: str | None = None
    #: Unix seconds: the status's or message's `timestamp`, else the entry's `time`.
    timestamp: int | None = None
    #: The change's `field` (`messages`, `account_update`, ...).
    field: str | None = None
    #: The dedupe key: the same for a redelivery of this event, different for any other.
    key: str = ""
    #: The object this event was read from, as Meta sent it.
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def order(self) -> int | None:
        """The place of a status in its message's order; None for every other event."""
        return None

    @property
    def category(self) -> str | None:
        """The error category this event reports, or None when nothing failed."""
        return None

    @property
    def message_id(self) -> str | None:
        """The wamid this event is about, or None."""
        return None


@attrs.frozen(kw_only=True)
class MessageStatus(WebhookEvent):
    """A status of a message you sent: `sent`, `delivered`, `read` or `failed` (or newer ones).

    A `failed` status carries `errors`, classified by `wa_auth.errors.from_webhook_error` into
    the same categories and exceptions as a synchronous answer; `error` is the first.

    `parse` reads a plain status's `timestamp`, `recipient_id`, `idempotency_key`,
    `conversation` and `pricing` from `raw` when one of them is first used (`DEFERRED`), so a
    receiver that only dedupes by `key` and orders by `status` never pays for them; the values
    are the ones an eager read gives, as long as `raw` is not changed before then.
    """

    type: ClassVar[str] = "status"

    id: str
    status: str
    recipient_id: str | None = None
    #: The `biz_opaque_callback_data` sent with the message: your idempotency key.
    idempotency_key: str | None = None
    conversation: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    pricing: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    errors: tuple[ApiError, ...] = attrs.field(default=(), eq=False)

    @property
    def order(self) -> int | None:
        """1 sent, 2 delivered, 3 read, 4 failed (final); None for any other status."""
        return ORDER.get(self.status)

    @property
    def error(self) -> ApiError | None:
        """The first error of a failed status, or None."""
        return self.errors[0] if self.errors else None

    @property
    def category(self) -> str | None:
        """The first error's category, or None."""
        return self.errors[0].category if self.errors else None

    @property
    def message_id(self) -> str | None:
        """The wamid."""
        return self.id

    if not TYPE_CHECKING:  # a type checker would let any name through a __getattr__

        def __getattr__(self, name: str) -> Any:
            # Only reached when the ordinary lookup fails: for a deferred field `parse` left
            # unset (its slot is empty until now), or for a name this class does not have.
            at = _DEFERRED_AT.get(name)
            if at is not None:
                values = status_fields(self.raw)
                timestamp, recipient, opaque, conversation, pricing = _SLOT_SETTERS
                timestamp(self, values[0])
                recipient(self, values[1])
                opaque(self, values[2])
                conversation(self, values[3])
                pricing(self, values[4])
                return values[at]
            msg = f"{type(self).__name__!r} object has no attribute {name!r}"
            raise AttributeError(msg, name=name, obj=self)


@attrs.frozen(kw_only=True)
class InboundMessage(WebhookEvent):
    """A message a WhatsApp user sent to the business; its content is `raw`, untouched."""

    type: ClassVar[str] = "message"

    id: str
    #: The user's WhatsApp id (`from`).
    sender: str | None = None
    #: `text`, `image`, `button`, `interactive`, `reaction`, ...
    message_type: str | None = None

    @property
    def message_id(self) -> str | None:
        """The wamid."""
        return self.id


@attrs.frozen(kw_only=True)
class MessagingError(WebhookEvent):
    """An error of a `messages` change that belongs to no status (`value.errors[]`)."""

    type: ClassVar[str] = "error"

    error: ApiError = attrs.field(eq=False)

    @property
    def category(self) -> str | None:
        """The error's category."""
        return self.error.category


@attrs.frozen(kw_only=True)
class _AccountEvent(WebhookEvent):
    """What concerns the account: an effect on sending and, when sending stops, a category."""

    #: Meta's event name (`PARTNER_APP_UNINSTALLED`, `DOWNGRADE`, `APPROVED`, ...).
    event: str | None = None
    #: `stops`, `resumes`, `warns` or `informs`.
    effect: str = INFORMS
    #: The category of what stopped working (`token_revoked`, `account_state`, ...).
    category: str | None = None
    #: What to do, in one sentence.
    operator_action: str = ""


@attrs.frozen(kw_only=True)
class AccountUpdate(_AccountEvent):
    """An `account_update`: the WABA was restricted, banned, offboarded, unshared, ...

    `ban_state` is a `DISABLED_UPDATE`'s `waba_ban_state` (`DISABLE`,
    `SCHEDULE_FOR_DISABLE`, `REINSTATE`).
    """

    type: ClassVar[str] = "account_update"

    ban_state: str | None = None


@attrs.frozen(kw_only=True)
class AccountReviewUpdate(_AccountEvent):
    """An `account_review_update`: Meta's review decision on the WABA (`event` is the decision)."""

    type: ClassVar[str] = "account_review_update"


@attrs.frozen(kw_only=True)
class QualityUpdate(_AccountEvent):
    """A `phone_number_quality_update`: a number's messaging limit or throughput changed.

    The limits are Meta's tiers (`TIER_2K`) and, where a tier is a number, that number
    (`messaging_limit`, 2000; -1 for `TIER_UNLIMITED`, as Meta writes unlimited).
    """

    type: ClassVar[str] = "phone_number_quality_update"

    display_phone_number: str | None = None
    current_limit: str | None = None
    old_limit: str | None = None
    #: The business's daily limit tier (`max_daily_conversations_per_business`).
    business_limit: str | None = None
    messaging_limit: int | None = None
    old_messaging_limit: int | None = None


@attrs.frozen(kw_only=True)
class CapabilityUpdate(_AccountEvent):
    """A `business_capability_update`: the business's messaging or phone number limits changed.

    Each limit is a number where Meta sends one or a numeric tier (-1: unlimited).
    """

    type: ClassVar[str] = "business_capability_update"

    messaging_limit: int | None = None
    max_daily_conversation_per_phone: int | None = None
    max_phone_numbers_per_business: int | None = None
    max_phone_numbers_per_waba: int | None = None


@attrs.frozen(kw_only=True)
class SecurityEvent(_AccountEvent):
    """A `security` change: a number's two-step verification PIN changed or a reset was asked."""

    type: ClassVar[str] = "security"

    display_phone_number: str | None = None
    #: The Meta Business Suite user who asked for a PIN reset.
    requester: str | None = None


@attrs.frozen(kw_only=True)
class TemplateStatusUpdate(_AccountEvent):
    """A `message_template_status_update`: a template was approved, rejected, paused, ..."""

    type: ClassVar[str] = "message_template_status_update"

    template_id: str | None = None
    template_name: str | None = None
    language: str | None = None
    reason: str | None = None
    template_category: str | None = None


@attrs.frozen(kw_only=True)
class UnknownEvent(WebhookEvent):
    """A change `parse` does not know, or cannot read: kept raw, never dropped, never raised."""

    type: ClassVar[str] = "unknown"


#: The fields of a `MessageStatus` read from `raw` by `status_fields`, in its order.
_DEFERRED_ORDER: Final = ("timestamp", "recipient_id", "idempotency_key", "conversation", "pricing")
#: The fields `parse` may leave for a `MessageStatus` to read from `raw` when first used.
DEFERRED: Final = frozenset(_DEFERRED_ORDER)
_DEFERRED_AT: Final = {name: at for at, name in enumerate(_DEFERRED_ORDER)}
#: The slots' own setters, past the frozen `__setattr__` (a third cheaper than going through
#: `object.__setattr__`): how a status fills its deferred fields, once.
_SLOT_SETTERS: Final[tuple[Callable[[MessageStatus, Any], None], ...]] = tuple(
    getattr(MessageStatus, name).__set__ for name in _DEFERRED_ORDER
)


def status_fields(
    raw: Mapping[str, Any],
) -> tuple[int | None, str | None, str | None, Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """Return a status's five `DEFERRED` fields, read from the status object Meta sent.

    This is the one reading of `timestamp`, `recipient_id`, `idempotency_key`, `conversation`
    and `pricing`, eager (`parse`'s general path) or deferred (`MessageStatus`). Each value is
    what `seconds`, `read_id` and `is_map` give; a short ASCII string or a dict, as Meta sends
    them, is taken without the call.
    """
    get = raw.get
    stamp = get("timestamp")
    recipient = get("recipient_id")
    opaque = get("biz_opaque_callback_data")
    conversation = get("conversation")
    pricing = get("pricing")
    timestamp = (
        int(stamp)
        if type(stamp) is str and stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_DIGITS
        else seconds(stamp)
    )
    return (
        timestamp,
        recipient
        if type(recipient) is str and 0 < len(recipient) <= MAX_ID and recipient.isascii()
        else read_id(recipient),
        opaque
        if type(opaque) is str and 0 < len(opaque) <= MAX_ID and opaque.isascii()
        else read_id(opaque),
        conversation if type(conversation) is dict or is_map(conversation) else None,
        pricing if type(pricing) is dict or is_map(pricing) else None,
    )


class _Unfrozen(MessageStatus):
    """A `MessageStatus` being built, at a tenth of the cost of its frozen `__init__`; never seen.

    attrs' frozen `__init__` sets each of the thirteen fields through `object.__setattr__`,
    which is 2 µs of the 3 µs a status costs. This subclass has the same slots, no `__init__`
    and the plain `object` attribute protocol back (both halves of it: a Python-level
    `__delattr__` alone keeps the slow path), so its stores are plain slot stores; storing
    `MessageStatus` in `__class__` last gives the object its real class, which the layout
    allows. The value is then an ordinary frozen `MessageStatus`: same class, fields, equality
    and repr.
    """

    __slots__ = ()
    __init__ = object.__init__
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


#: A blank `_Unfrozen`: set its fields, then `__class__ = MessageStatus`.
unfrozen_status: Final[Callable[[], Any]] = _Unfrozen


def build_status(  # noqa: PLR0917 - one argument per field, in attrs' field order
    business_account_id: str | None,
    phone_number_id: str | None,
    timestamp: int | None,
    field: str,
    key: str,
    raw: Mapping[str, Any],
    id: str,  # noqa: A002 - the field's name
    status: str,
    recipient_id: str | None,
    idempotency_key: str | None,
    conversation: Mapping[str, Any] | None,
    pricing: Mapping[str, Any] | None,
    errors: tuple[ApiError, ...],
) -> MessageStatus:
    """Return a `MessageStatus` of these thirteen fields, built without attrs' `__init__`."""
    this = unfrozen_status()
    this.business_account_id = business_account_id
    this.phone_number_id = phone_number_id
    this.timestamp = timestamp
    this.field = field
    this.key = key
    this.raw = raw
    this.id = id
    this.status = status
    this.recipient_id = recipient_id
    this.idempotency_key = idempotency_key
    this.conversation = conversation
    this.pricing = pricing
    this.errors = errors
    this.__class__ = MessageStatus
    return this  # type: ignore[no-any-return]
