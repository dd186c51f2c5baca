"""A local Graph API simulator to rehearse token, account and rate-limit failures.

`with Sandbox() as sb:` serves the subset of the Graph API that wa_auth's client uses on a
loopback port. Its tokens expire and get revoked, its business account gets locked, its
numbers lose their registration and its answers fail on demand, each time with Meta's literal
error payload. Every accepted message and every request is recorded. Given a webhook URL, it
delivers signed webhooks there: a status for every send (late failures, duplicates and
reordering on demand) and account and quality news. The same operations are offered over a
JSON admin API under `/_sandbox/`, and `wa-auth sandbox` runs it from a shell. See
`docs/sandbox.md`.

Inside: `_world` holds the state and its setters, `_pipeline` answers one request (faults,
authentication, routing, the record), `_sending` and `_handlers` are the Graph endpoints,
`_messages` is what a send may contain, `_catalogue` is Meta's literal payloads, `_specs` the
token specs, `_checks` the argument checks, `_wire` the HTTP formats, `_webhooks` the signed
deliveries (their thread, the statuses of a send, the news on demand) with `_webhook_payloads`
(Meta's webhook bodies and their signature), `_webhook_values` and `_webhook_controls` (the
webhook methods `Sandbox` mixes in), and `_server`, `_admin` and `_sandbox` are the socket,
JSON and Python faces.
"""

from __future__ import annotations

from wa_auth.sandbox._sandbox import Sandbox
from wa_auth.sandbox._seeded import SEEDED_FAULTS
from wa_auth.sandbox._values import (
    ACCOUNT_STATES,
    ACCOUNT_VARIANTS,
    DEFAULT_SCOPES,
    NUMBER_STATES,
    TOKEN_KINDS,
    TOKEN_STATES,
    TOKEN_VARIANTS,
    Faults,
    Limits,
    RecordedMessage,
    RecordedRequest,
    SandboxToken,
    SeededFault,
)
from wa_auth.sandbox._webhook_values import (
    ACCOUNT_UPDATE_EVENTS,
    BAN_STATES,
    LATE_FAILURES,
    QUALITY_EVENTS,
    LateFailure,
    RecordedWebhook,
    WebhookSettings,
)
from wa_auth.sandbox._world import MAX_PHONE_NUMBERS

__all__ = [
    "ACCOUNT_STATES",
    "ACCOUNT_UPDATE_EVENTS",
    "ACCOUNT_VARIANTS",
    "BAN_STATES",
    "DEFAULT_SCOPES",
    "LATE_FAILURES",
    "MAX_PHONE_NUMBERS",
    "NUMBER_STATES",
    "QUALITY_EVENTS",
    "SEEDED_FAULTS",
    "TOKEN_KINDS",
    "TOKEN_STATES",
    "TOKEN_VARIANTS",
    "Faults",
    "LateFailure",
    "Limits",
    "RecordedMessage",
    "RecordedRequest",
    "RecordedWebhook",
    "Sandbox",
    "SandboxToken",
    "SeededFault",
    "WebhookSettings",
]
