"""The JSON Schema shapes of serve's webhook answers and of `wa-auth webhook list|replay`.

`_schema` adds them to the published schema (`docs/wa-auth.schema.json`).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["HOOK_LINES", "SERVE_WEBHOOK", "hook_defs"]

_STR: Final = {"type": "string"}
_NULLABLE_STR: Final = {"type": ["string", "null"]}
_NULLABLE_LIST: Final = {"type": ["array", "null"], "items": {"type": "string"}}
_COUNT: Final = {"type": "integer", "minimum": 0}

#: The `webhook` member of serve's info line: its queue file, how many routes it has, and
#: where events are admitted (`file`: the queue file's ledger; `redis`: the fleet's, `--redis`).
SERVE_WEBHOOK: Final = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "required": ["queue", "routes", "ledger"],
    "properties": {"queue": _STR, "routes": _COUNT, "ledger": {"enum": ["file", "redis"]}},
}
#: The line shapes this module defines, in the order of the schema's `oneOf`.
HOOK_LINES: Final = (
    "webhook_route",
    "webhook_routes",
    "webhook_received",
    "webhook_forward",
    "webhook_replay",
)


def _object(properties: dict[str, Any], *, description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }


def hook_defs() -> dict[str, Any]:
    """Return the `$defs` of `HOOK_LINES`."""
    route = _object(
        {
            "id": _STR,
            "url": _STR,
            "name": _NULLABLE_STR,
            "phone_number_ids": _NULLABLE_LIST,
            "business_account_ids": _NULLABLE_LIST,
            "fields": _NULLABLE_LIST,
            "types": _NULLABLE_LIST,
            "source": {"enum": ["config", "api"]},
        },
        description="serve: POST /webhook/routes: a route of the fan-out (never its secret)",
    )
    return {
        "webhook_route": route,
        "webhook_routes": _object(
            {"routes": {"type": "array", "items": {"$ref": "#/$defs/webhook_route"}}},
            description="serve: GET /webhook/routes",
        ),
        "webhook_received": _object(
            {"ok": {"const": True}, "delivery": _COUNT, "bytes": _COUNT},
            description="serve: POST /webhook: the delivery verified and stored",
        ),
        "webhook_forward": _object(
            {
                "seq": _COUNT,
                "route_id": _STR,
                "key": _STR,
                "type": _STR,
                "state": {"enum": ["pending", "dead"]},
                "attempts": _COUNT,
                "next_at": {"type": "number"},
                "last_error": _NULLABLE_STR,
                "created_at": {"type": "number"},
            },
            description="webhook list: a queued forward of one event to one route",
        ),
        "webhook_replay": _object(
            {
                "ok": {"const": True},
                "exit_code": {"const": 0},
                "action": {"const": "replay"},
                "queue": _STR,
                "replayed": _COUNT,
            },
            description="webhook replay: the dead letters put back in their routes' queues",
        ),
    }
