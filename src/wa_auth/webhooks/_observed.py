"""The events a webhook receiver emits, one per outcome: verified, rejected, accepted, ...

They are `wa_auth.events.Event`s, so an `Events` hub hands them to the logging subscriber, to
`Counters` and to `PrometheusSubscriber` like every other event (counted by name and category:
`wa_auth_events_total{event="webhook.duplicate"}`). None carries a secret, a token or a
message's text: ids, keys, statuses and categories only.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from wa_auth.events import Event

__all__ = [
    "WebhookAccepted",
    "WebhookApplied",
    "WebhookDuplicate",
    "WebhookRejected",
    "WebhookStale",
    "WebhookUnknown",
    "WebhookVerified",
]


@attrs.frozen(kw_only=True)
class WebhookVerified(Event):
    """A webhook request passed its check: the POST's signature, or the GET handshake's token.

    *check* is `signature` or `handshake`; *secret_index* is the position in the rotation
    window of the secret that matched (0 for a single secret), so a rotation shows when the
    old secret stops being used.
    """

    name: ClassVar[str] = "webhook.verified"

    check: str
    secret_index: int | None = None
    body_bytes: int | None = None


@attrs.frozen(kw_only=True)
class WebhookRejected(Event):
    """A webhook request failed its check; *reason* is the error's (`mismatch`, ...)."""

    name: ClassVar[str] = "webhook.rejected"
    kind: ClassVar[str] = "auth"

    check: str
    reason: str
    category: str = "invalid_signature"


@attrs.frozen(kw_only=True)
class _Admitted(Event):
    """Base of what the exactly-once policy decided about one webhook event."""

    #: The webhook event's type (`status`, `message`, `account_update`, ...).
    type: str
    #: Its dedupe key.
    key: str
    message_id: str | None = None
    status: str | None = None
    phone_number_id: str | None = None
    business_account_id: str | None = None


@attrs.frozen(kw_only=True)
class WebhookAccepted(_Admitted):
    """A webhook event seen for the first time, and not outdated: the receiver applies it.

    *category* is the event's: a failed status's error category, an account update's.
    """

    name: ClassVar[str] = "webhook.accepted"

    category: str | None = None


@attrs.frozen(kw_only=True)
class WebhookApplied(_Admitted):
    """A guard applied a webhook event (`Guard.apply`): what a raised error would have done.

    *actions* names what it did, in order: `outbox` (the intent's row turned failed),
    `handlers` (the category's handlers were called), `paused` (the number is paused),
    `resumed`, `verdicts` (the tokens of an uninstalled app are known dead), `rate` (the
    number's throughput changed); empty when the event changes nothing for sending.
    """

    name: ClassVar[str] = "webhook.applied"

    category: str | None = None
    actions: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class WebhookDuplicate(_Admitted):
    """A webhook event already seen within the window (a redelivery): not applied again."""

    name: ClassVar[str] = "webhook.duplicate"


@attrs.frozen(kw_only=True)
class WebhookStale(_Admitted):
    """A status that arrived after a later one of its message (a late `delivered` after `read`).

    It is recorded (a redelivery is a duplicate) but not applied: a status never goes back.
    *furthest* is the order of the message's furthest status.
    """

    name: ClassVar[str] = "webhook.stale"

    furthest: int | None = None


@attrs.frozen(kw_only=True)
class WebhookUnknown(Event):
    """A change `parse` does not know (a new field, an unexpected shape): kept raw, not dropped."""

    name: ClassVar[str] = "webhook.unknown"

    field: str | None = None
    key: str | None = None
    business_account_id: str | None = None
