"""What each account-level webhook event means for sending: an effect, a category, an action.

One row per event name Meta documents (and the ban states of `DISABLED_UPDATE`), so the
meaning of `PARTNER_APP_UNINSTALLED` is written once, beside its source. An event name that is
not here still parses: it `informs`, with no category. Sources:
developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/
(`account_update`, `account_review_update`, `phone_number_quality_update`, `security`,
`message_template_status_update`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

from wa_auth._table import ACCOUNT_STATE, INSUFFICIENT_PERMISSION, TOKEN_REVOKED
from wa_auth.webhooks._types import INFORMS, RESUMES, STOPS, WARNS

__all__ = [
    "ACCOUNT_UPDATES",
    "BAN_STATES",
    "QUALITY_EVENTS",
    "REVIEW_DECISIONS",
    "SECURITY_EVENTS",
    "TEMPLATE_EVENTS",
    "Meaning",
    "account_update_meaning",
    "meaning",
]


@attrs.frozen
class Meaning:
    """What an event means: its effect on sending, the category of what stopped, the action."""

    effect: str
    category: str | None
    operator_action: str


_NEWS: Final = Meaning(INFORMS, None, "Nothing to do: no effect on sending.")

#: `account_update` events, by `value.event`.
ACCOUNT_UPDATES: Final[Mapping[str, Meaning]] = MappingProxyType(
    {
        # "A business customer grants or revokes app permissions": the nearest thing to a push
        # signal that this app's tokens for the WABA are revoked.
        "PARTNER_APP_UNINSTALLED": Meaning(
            STOPS,
            TOKEN_REVOKED,
            "The business revoked this app's access to its WABA: its tokens for it no longer "
            "work; onboard the business again (Embedded Signup) before sending for it.",
        ),
        "PARTNER_REMOVED": Meaning(
            STOPS,
            INSUFFICIENT_PERMISSION,
            "The WABA is no longer shared with you: ask the business to share it again; "
            "disconnection_info (in raw) says why when Meta gives a reason.",
        ),
        "ACCOUNT_RESTRICTION": Meaning(
            STOPS,
            ACCOUNT_STATE,
            "The WABA is restricted (restriction_info in raw lists what, until when): stop "
            "the restricted sends and check Business Support Home.",
        ),
        "ACCOUNT_VIOLATION": Meaning(
            WARNS,
            None,
            "The WABA violated a policy (violation_info in raw): review it in Business Support "
            "Home before it leads to a restriction.",
        ),
        "ACCOUNT_DELETED": Meaning(
            STOPS,
            ACCOUNT_STATE,
            "The WABA was deleted: nothing can be sent from it any more.",
        ),
        "ACCOUNT_OFFBOARDED": Meaning(
            STOPS,
            ACCOUNT_STATE,
            "The WABA was offboarded (a device change or the number registered again): "
            "sends stop until it reconnects.",
        ),
        "ACCOUNT_RECONNECTED": Meaning(
            RESUMES,
            None,
            "The WABA reconnected after a device change or a new registration: sends work again.",
        ),
        "PARTNER_APP_INSTALLED": Meaning(
            RESUMES, None, "The business granted this app access to its WABA."
        ),
        "PARTNER_ADDED": Meaning(RESUMES, None, "The WABA was shared with you."),
    }
)

#: `DISABLED_UPDATE` ban states, by `value.ban_info.waba_ban_state`.
BAN_STATES: Final[Mapping[str, Meaning]] = MappingProxyType(
    {
        "DISABLE": Meaning(
            STOPS,
            ACCOUNT_STATE,
            "The WABA is banned: nothing can be sent; request a review in Business Support Home.",
        ),
        "SCHEDULE_FOR_DISABLE": Meaning(
            WARNS,
            None,
            "The WABA is scheduled to be banned (waba_ban_date in raw): fix the policy issue "
            "or appeal in Business Support Home before that date.",
        ),
        "REINSTATE": Meaning(RESUMES, None, "The WABA's ban was lifted: sends work again."),
    }
)
#: A `DISABLED_UPDATE` whose ban state is missing or new.
_DISABLED: Final = Meaning(
    WARNS, None, "The WABA's ban state changed: check it in Business Support Home."
)

#: `account_review_update` decisions: a WABA not approved "cannot be used with our APIs".
REVIEW_DECISIONS: Final[Mapping[str, Meaning]] = MappingProxyType(
    {
        "APPROVED": Meaning(RESUMES, None, "The WABA passed review: it can send."),
        "REJECTED": Meaning(
            STOPS,
            ACCOUNT_STATE,
            "The WABA failed review and cannot use the APIs: see Business Support Home.",
        ),
        "PENDING": Meaning(
            STOPS, ACCOUNT_STATE, "The WABA's review is pending: it cannot use the APIs yet."
        ),
        "DEFERRED": Meaning(
            STOPS,
            ACCOUNT_STATE,
            "The WABA's review was deferred: it cannot use the APIs until Meta decides.",
        ),
    }
)

#: `phone_number_quality_update` events.
QUALITY_EVENTS: Final[Mapping[str, Meaning]] = MappingProxyType(
    {
        "DOWNGRADE": Meaning(
            WARNS,
            None,
            "The number's messaging limit went down: lower the sending rate to the new limit "
            "and look at its quality rating.",
        ),
        "FLAGGED": Meaning(
            WARNS,
            None,
            "The number's quality is flagged: more negative feedback lowers its limit; "
            "review what it sends.",
        ),
        "UNFLAGGED": Meaning(INFORMS, None, "The number's quality is no longer flagged."),
        "UPGRADE": Meaning(INFORMS, None, "The number's messaging limit went up."),
        "THROUGHPUT_UPGRADE": Meaning(INFORMS, None, "The number's throughput went up."),
        "ONBOARDING": Meaning(INFORMS, None, "The number is still being registered."),
    }
)

#: `security` events.
SECURITY_EVENTS: Final[Mapping[str, Meaning]] = MappingProxyType(
    {
        "PIN_RESET_REQUEST": Meaning(
            WARNS,
            None,
            "Someone asked to turn off the number's two-step verification: make sure it was "
            "one of your administrators (requester).",
        ),
        "PIN_REQUEST_SUCCESS": Meaning(
            WARNS,
            None,
            "The number's two-step verification was turned off: set a new PIN, and check who "
            "did it.",
        ),
        "PIN_CHANGED": Meaning(
            INFORMS, None, "The number's two-step verification PIN was changed or enabled."
        ),
    }
)

#: `message_template_status_update` events that concern what is sending.
TEMPLATE_EVENTS: Final[Mapping[str, Meaning]] = MappingProxyType(
    {
        "DISABLED": Meaning(
            WARNS, None, "The template was disabled: sends of it fail; use another template."
        ),
        "PAUSED": Meaning(
            WARNS,
            None,
            "The template is paused after negative feedback: sends of it fail until it "
            "resumes; use another template.",
        ),
        "REJECTED": Meaning(
            WARNS, None, "The template was rejected (reason in the event): edit it or appeal."
        ),
        "FLAGGED": Meaning(
            WARNS, None, "The template has negative feedback and may be paused or disabled."
        ),
        "APPROVED": Meaning(INFORMS, None, "The template was approved: it can be sent."),
        "REINSTATED": Meaning(INFORMS, None, "The template can be sent again."),
    }
)


def meaning(table: Mapping[str, Meaning], event: str | None) -> Meaning:
    """Return *event*'s row in *table*, or the no-effect meaning for an event not there."""
    return table.get(event, _NEWS) if event is not None else _NEWS


def account_update_meaning(event: str | None, ban_state: str | None) -> Meaning:
    """Return what an `account_update` means; a `DISABLED_UPDATE` by its ban state."""
    if event == "DISABLED_UPDATE":
        return BAN_STATES.get(ban_state, _DISABLED) if ban_state is not None else _DISABLED
    return meaning(ACCOUNT_UPDATES, event)
