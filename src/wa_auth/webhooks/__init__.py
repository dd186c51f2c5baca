"""Inbound webhooks: verify them, answer the handshake, parse them, apply each event once.

`verify_signature` checks a POST's `X-Hub-Signature-256` over the raw body with the app secret
(a string, a rotation window of them, or a token provider); `handle_verification` answers the
GET subscription handshake. `parse` turns a payload into typed events (statuses, inbound
messages, account updates, quality and capability changes, security and template events, and
`UnknownEvent` for anything else) and never raises. `admit` decides, against a `WebhookLedger`,
whether an event is applied (`apply`), a redelivery (`duplicate`) or a status older than its
message's (`stale`). See `docs/webhooks.md`.

Inside: `_signature` (verify_signature), `_handshake` (handle_verification), `_secret` (what a
secret may be, and reading it), `_types` (the events `parse` returns), `_account` (what each
account-level event means for sending), `_parse` (parse), `_read` (how it reads ids and
timestamps), `_ledger` (the ledger protocol and the memory ledger), `_sqlite_ledger` (the
ledger in a SQLite file processes share), `_admission` (the exactly-once policy as effects,
and its two drivers), `_observed` (the events a receiver emits) and `_status_errors`
(`status_errors`, the errors alone).
"""

from __future__ import annotations

from wa_auth.webhooks._account import Meaning
from wa_auth.webhooks._admission import (
    APPLY,
    DUPLICATE,
    STALE,
    Admission,
    aadmit,
    admission,
    admit,
    arelease,
    release,
    revocation,
)
from wa_auth.webhooks._handshake import ahandle_verification, handle_verification
from wa_auth.webhooks._ledger import (
    DEFAULT_MAX_KEYS,
    DEFAULT_WINDOW,
    MemoryWebhookLedger,
    WebhookLedger,
)
from wa_auth.webhooks._observed import (
    WebhookAccepted,
    WebhookApplied,
    WebhookDuplicate,
    WebhookRejected,
    WebhookStale,
    WebhookUnknown,
    WebhookVerified,
)
from wa_auth.webhooks._parse import parse
from wa_auth.webhooks._signature import SIGNATURE_HEADER, averify_signature, verify_signature
from wa_auth.webhooks._sqlite_ledger import SqliteWebhookLedger
from wa_auth.webhooks._status_errors import StatusError, status_errors
from wa_auth.webhooks._types import (
    EFFECTS,
    INFORMS,
    ORDER,
    RESUMES,
    STOPS,
    WARNS,
    AccountReviewUpdate,
    AccountUpdate,
    CapabilityUpdate,
    InboundMessage,
    MessageStatus,
    MessagingError,
    QualityUpdate,
    SecurityEvent,
    TemplateStatusUpdate,
    UnknownEvent,
    WebhookEvent,
)

__all__ = [
    "APPLY",
    "DEFAULT_MAX_KEYS",
    "DEFAULT_WINDOW",
    "DUPLICATE",
    "EFFECTS",
    "INFORMS",
    "ORDER",
    "RESUMES",
    "SIGNATURE_HEADER",
    "STALE",
    "STOPS",
    "WARNS",
    "AccountReviewUpdate",
    "AccountUpdate",
    "Admission",
    "CapabilityUpdate",
    "InboundMessage",
    "Meaning",
    "MemoryWebhookLedger",
    "MessageStatus",
    "MessagingError",
    "QualityUpdate",
    "SecurityEvent",
    "SqliteWebhookLedger",
    "StatusError",
    "TemplateStatusUpdate",
    "UnknownEvent",
    "WebhookAccepted",
    "WebhookApplied",
    "WebhookDuplicate",
    "WebhookEvent",
    "WebhookLedger",
    "WebhookRejected",
    "WebhookStale",
    "WebhookUnknown",
    "WebhookVerified",
    "aadmit",
    "admission",
    "admit",
    "ahandle_verification",
    "arelease",
    "averify_signature",
    "handle_verification",
    "parse",
    "release",
    "revocation",
    "status_errors",
    "verify_signature",
]


def _own(namespace: dict[str, object]) -> None:
    """Make the classes and functions defined in this package report `wa_auth.webhooks`.

    Tracebacks and pickles then name the module users import, not a private one.
    """
    for name in __all__:
        value = namespace[name]
        origin = getattr(value, "__module__", "")
        if isinstance(origin, str) and origin.startswith("wa_auth.webhooks._"):
            value.__module__ = __name__


_own(globals())
