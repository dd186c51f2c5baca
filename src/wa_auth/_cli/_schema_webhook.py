"""The JSON Schema of the lines of `wa-auth webhook`: `webhook_event` and `webhook_verify`.

`wa_auth._cli._schema` adds `defs()` to its `$defs` and every one of them to its `oneOf`; the
forward queue's lines (`webhook list`, `webhook replay`) are added here the same way.
"""

from __future__ import annotations

from typing import Any, Final

from wa_auth.webhooks import EFFECTS

__all__ = ["defs"]

_NULLABLE_STR: Final = {"type": ["string", "null"]}
_NULLABLE_INT: Final = {"type": ["integer", "null"]}

#: The types an event line may have (`WebhookEvent.type` of each event `parse` returns).
EVENT_TYPES: Final = (
    "status",
    "message",
    "error",
    "account_update",
    "account_review_update",
    "phone_number_quality_update",
    "business_capability_update",
    "security",
    "message_template_status_update",
    "unknown",
)
#: Why a signature fails (`WebhookSignatureError.reason`).
REASONS: Final = ("missing_header", "wrong_scheme", "malformed_signature", "mismatch")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def defs() -> dict[str, Any]:
    """Return the `$defs` of the webhook lines (they refer to `category`, `error`, ...)."""
    event_props: dict[str, Any] = {
        "ok": {"const": True},
        "exit_code": {"const": 0},
        "type": {"enum": list(EVENT_TYPES)},
        "key": {"type": "string"},
        "field": _NULLABLE_STR,
        "business_account_id": _NULLABLE_STR,
        "phone_number_id": _NULLABLE_STR,
        "timestamp": _NULLABLE_INT,
        "message_id": _NULLABLE_STR,
        "status": _NULLABLE_STR,
        "idempotency_key": _NULLABLE_STR,
        "category": {"anyOf": [_ref("category"), {"type": "null"}]},
        "effect": {"enum": [*EFFECTS, None]},
        "event": _NULLABLE_STR,
        "operator_action": _NULLABLE_STR,
        "error": {"anyOf": [_ref("error"), {"type": "null"}]},
        "details": {
            "type": "object",
            "description": "the event's own fields (recipient_id, sender, ban_state, limits...)",
        },
    }
    event = {
        "type": "object",
        "description": (
            "webhook parse: one typed event of a payload (a failed status classified like a "
            "failed send); raw only with --raw"
        ),
        "additionalProperties": False,
        "required": list(event_props),
        "properties": {**event_props, "raw": {"type": "object"}},
    }
    verify_props: dict[str, Any] = {
        "ok": {"type": "boolean"},
        "exit_code": {"enum": [0, 13]},
        "action": {"const": "verify"},
        "verified": {"type": "boolean"},
        "reason": {"enum": [*REASONS, None]},
        "category": {"enum": ["invalid_signature", None]},
        "body_bytes": {"type": "integer", "minimum": 1},
        "secret_index": {"type": ["integer", "null"], "minimum": 0},
        "events": {"anyOf": [{"type": "array", "items": _ref("webhook_event")}, {"type": "null"}]},
        "error": {"anyOf": [_ref("error"), {"type": "null"}]},
    }
    verify = {
        "type": "object",
        "description": (
            "webhook verify: the signature checked (exit 0), or why it failed (exit 13); the "
            "events with --parse"
        ),
        "additionalProperties": False,
        "required": list(verify_props),
        "properties": verify_props,
        "if": {"properties": {"verified": {"const": True}}},
        "then": {
            "properties": {
                "ok": {"const": True},
                "exit_code": {"const": 0},
                "reason": {"type": "null"},
                "error": {"type": "null"},
            }
        },
        "else": {
            "properties": {
                "ok": {"const": False},
                "exit_code": {"const": 13},
                "reason": {"enum": list(REASONS)},
                "error": _ref("error"),
            }
        },
    }
    return {"webhook_event": event, "webhook_verify": verify}
