"""The sandbox's webhook values: how it delivers, what it delivered, what it can send.

`WebhookSettings` (statuses, duplicates, reordering, retries), `RecordedWebhook` (the exact
bytes sent and the outcome), `LateFailure` (seeded with `fail_late`), and the names of the
events and late-failure codes the sandbox sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from wa_auth.sandbox._checks import ArgumentTypeError, iterable, real

__all__ = [
    "ACCOUNT_UPDATE_EVENTS",
    "BAN_STATES",
    "LATE_FAILURES",
    "QUALITY_EVENTS",
    "STATUSES",
    "LateFailure",
    "RecordedWebhook",
    "WebhookSettings",
]

#: The statuses a send gets, in Meta's order.
STATUSES: Final = ("sent", "delivered", "read")
#: The codes a send can fail with after it was accepted (`fail_late`): a status `failed`.
LATE_FAILURES: Final = (131026, 131031, 131047, 131049)
#: `account_update` events `deliver_account_update` sends (Meta's names).
ACCOUNT_UPDATE_EVENTS: Final = (
    "ACCOUNT_DELETED",
    "ACCOUNT_OFFBOARDED",
    "ACCOUNT_RECONNECTED",
    "ACCOUNT_RESTRICTION",
    "ACCOUNT_VIOLATION",
    "DISABLED_UPDATE",
    "PARTNER_ADDED",
    "PARTNER_APP_INSTALLED",
    "PARTNER_APP_UNINSTALLED",
    "PARTNER_REMOVED",
)
#: `waba_ban_state`s of a `DISABLED_UPDATE`.
BAN_STATES: Final = ("DISABLE", "SCHEDULE_FOR_DISABLE", "REINSTATE")
#: `phone_number_quality_update` events `set_quality` sends.
QUALITY_EVENTS: Final = (
    "DOWNGRADE",
    "FLAGGED",
    "ONBOARDING",
    "THROUGHPUT_UPGRADE",
    "UNFLAGGED",
    "UPGRADE",
)
#: The longest wait for a receiver's answer, and the longest back-off, in seconds.
MAX_TIMEOUT: Final = 60.0
MAX_RETRY_DELAY: Final = 5.0
MAX_ATTEMPTS: Final = 10


def _statuses(value: Any) -> tuple[str, ...]:
    items = iterable("statuses", value, "status names")
    for item in items:
        if item not in STATUSES:
            raise ValueError(f"statuses must be some of {list(STATUSES)}, got {item!r}")
    return tuple(s for s in STATUSES if s in items)


def _share(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    real(attr.name, value, high=1.0)


def _attempts(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{attr.name} must be an integer, got {value!r}")
    if not 1 <= value <= MAX_ATTEMPTS:
        raise ValueError(f"{attr.name} must be in [1, {MAX_ATTEMPTS}], got {value!r}")


def _delay(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    real(attr.name, value, high=MAX_RETRY_DELAY)


def _timeout(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    real(attr.name, value, high=MAX_TIMEOUT, low_open=True)


@attrs.frozen(kw_only=True)
class WebhookSettings:
    """How the sandbox delivers webhooks; every random choice comes from its seed.

    Args:
        statuses: The statuses each accepted send gets, in order (some of `sent`,
            `delivered`, `read`).
        duplicate_rate: Share of deliveries sent a second time, at once (Meta delivers at
            least once).
        reorder_rate: Share of sends whose statuses are delivered in reverse order (Meta
            does not deliver in order).
        max_attempts: Attempts of one delivery, the first included, while the receiver does
            not answer 200 (at most 10).
        retry_delay: Seconds before the second attempt, doubled for each next one (at most 5):
            short, so tests stay fast.
        timeout: Seconds to wait for the receiver's answer to one attempt (at most 60).
    """

    statuses: tuple[str, ...] = attrs.field(default=STATUSES, converter=_statuses)
    duplicate_rate: float = attrs.field(default=0.0, validator=_share)
    reorder_rate: float = attrs.field(default=0.0, validator=_share)
    max_attempts: int = attrs.field(default=3, validator=_attempts)
    retry_delay: float = attrs.field(default=0.05, validator=_delay)
    timeout: float = attrs.field(default=5.0, validator=_timeout)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        data = attrs.asdict(self)
        data["statuses"] = list(self.statuses)
        return data


@attrs.frozen(kw_only=True)
class LateFailure:
    """A failure seeded for the next accepted sends: `sent`, then `failed` with *code*.

    Args:
        id: Its name in `webhooks()`: `late_1`, `late_2`...
        code: One of `LATE_FAILURES`.
        times: How many sends it fails; None until cleared.
        remaining: How many it still fails.
        recipient: Only sends to this recipient (by digits); None any.
    """

    id: str
    code: int
    times: int | None
    remaining: int | None
    recipient: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class RecordedWebhook:
    """A webhook the sandbox delivered (or gave up on), with the exact bytes it sent.

    `outcome` is `delivered` (the receiver answered 200) or `failed` (no 200 after
    `attempts`); `http_status` is the last answer's status (None: no answer). `duplicate`
    marks the second delivery of one event; `late_failure` names the `fail_late` seed that made
    a status `failed`.
    """

    seq: int
    field: str
    url: str
    body: bytes = attrs.field(repr=False)
    signature: str = attrs.field(repr=False)
    at: float
    attempts: int
    http_status: int | None
    outcome: str
    message_id: str | None = None
    status: str | None = None
    duplicate: bool = False
    late_failure: str | None = None

    @property
    def payload(self) -> Mapping[str, Any]:
        """The body, parsed."""
        data: Mapping[str, Any] = json.loads(self.body)
        return data

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data: the payload parsed, and the signature header sent."""
        data = attrs.asdict(self)
        data["body"] = dict(self.payload)
        return data
