"""The JSON Schema of every line the CLI prints, generated from the error table and the codes.

`docs/wa-auth.schema.json` is this module's output; `tests/test_cli.py` fails when the two
differ, so a new category or exit code cannot leave the published schema behind. Regenerate
it with `python -m wa_auth._cli._schema > docs/wa-auth.schema.json`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from wa_auth import _table
from wa_auth._cli import _codes, _schema_webhook
from wa_auth._cli._hooks_schema import HOOK_LINES, SERVE_WEBHOOK, hook_defs
from wa_auth._cli._output import ERROR_KEYS
from wa_auth.guards import DELIVERY_STATES
from wa_auth.outbox import OUTBOX_STATES

SCHEMA_ID: Final = "https://wa-auth.invalid/schemas/wa-auth-cli-line.json"

_NULLABLE_STR: Final = {"type": ["string", "null"]}
_NULLABLE_INT: Final = {"type": ["integer", "null"]}
_NULLABLE_NUM: Final = {"type": ["number", "null"]}
_BOOL: Final = {"type": "boolean"}


def _object(properties: dict[str, Any], *, description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def schema() -> dict[str, Any]:
    """Return the schema: one line is exactly one of the `$defs` line shapes."""
    categories = [*_table.CATEGORIES, _codes.USAGE_CATEGORY, _codes.INTERNAL_CATEGORY]
    error_props: dict[str, Any] = {
        "category": _ref("category"),
        "message": {"type": "string"},
        "code": _NULLABLE_INT,
        "subcode": _NULLABLE_INT,
        "http_status": _NULLABLE_INT,
        "retryable": _BOOL,
        "retry_after": _NULLABLE_NUM,
        "maybe_delivered": _BOOL,
        "ambiguous": _BOOL,
        "operator_action": _NULLABLE_STR,
        "fbtrace_id": _NULLABLE_STR,
        "token_fingerprint": _ref("fingerprint"),
        "rule": _NULLABLE_STR,
    }
    assert tuple(error_props) == ERROR_KEYS
    result_props: dict[str, Any] = {
        "ok": _BOOL,
        "state": {"enum": list(DELIVERY_STATES)},
        "exit_code": _ref("exit_code"),
        "category": {"anyOf": [_ref("category"), {"type": "null"}]},
        "line": {"type": "integer", "minimum": 1},
        "idempotency_key": _NULLABLE_STR,
        "to": _NULLABLE_STR,
        "phone_number_id": _NULLABLE_STR,
        "consumer": _NULLABLE_STR,
        "message_id": _NULLABLE_STR,
        "wa_id": _NULLABLE_STR,
        "token_fingerprint": _ref("fingerprint"),
        "attempts": {"type": "integer", "minimum": 0},
        "not_before": _NULLABLE_NUM,
        "reason": _NULLABLE_STR,
        "error": {"anyOf": [_ref("error"), {"type": "null"}]},
    }
    result = _object(
        result_props,
        description="send: what became of one intent (one line per input, in input order)",
    )
    result["allOf"] = [
        {
            "if": {"properties": {"state": {"const": "delivered"}}},
            "then": {
                "properties": {
                    "ok": {"const": True},
                    "exit_code": {"const": 0},
                    "message_id": {"type": "string"},
                    "error": {"type": "null"},
                }
            },
            "else": {"properties": {"ok": {"const": False}, "error": _ref("error")}},
        },
        {
            "if": {"properties": {"state": {"const": "queued"}}},
            "then": {"properties": {"exit_code": {"const": _codes.QUEUED}}},
        },
    ]
    states = {state: {"type": "integer", "minimum": 0} for state in DELIVERY_STATES}
    summary = _object(
        {
            "ok": _BOOL,
            "exit_code": _ref("exit_code"),
            "summary": _object(
                {
                    "total": {"type": "integer", "minimum": 0},
                    **states,
                    "skipped": {"type": "integer", "minimum": 0},
                    "seconds": {"type": "number", "minimum": 0},
                    "interrupted": _BOOL,
                },
                description="counts by state",
            ),
        },
        description="send: the summary line on stderr (the batch's most severe exit code)",
    )
    check = _object(
        {
            "ok": _BOOL,
            "exit_code": _ref("exit_code"),
            "category": {"anyOf": [_ref("category"), {"type": "null"}]},
            "valid": {"type": ["boolean", "null"]},
            "token_fingerprint": _ref("fingerprint"),
            "token_type": _NULLABLE_STR,
            "expires_at": _NULLABLE_INT,
            "expires_in": _NULLABLE_NUM,
            "expires_in_days": _NULLABLE_NUM,
            "warn_days": _NULLABLE_NUM,
            "expiring": _BOOL,
            "scopes": {"type": "array", "items": {"type": "string"}},
            "missing_scopes": {"type": "array", "items": {"type": "string"}},
            "business_account_id": _NULLABLE_STR,
            "waba_access": {"type": ["boolean", "null"]},
            "phone_number_id": _NULLABLE_STR,
            "number_access": {"type": ["boolean", "null"]},
            "number_status": _NULLABLE_STR,
            "can_send_message": _NULLABLE_STR,
            "error": {"anyOf": [_ref("error"), {"type": "null"}]},
        },
        description="check: the token's and the phone number's health",
    )
    classify = _object(
        {
            "ok": {"const": False},
            "exit_code": _ref("exit_code"),
            "category": _ref("category"),
            "source": {
                "enum": [
                    "graph",
                    "webhook",
                    "text",
                    "n8n_http_request",
                    "n8n_full_response",
                    "n8n_node_error",
                    "n8n_whatsapp",
                ]
            },
            "error": _ref("error"),
        },
        description="classify: the classification of one error JSON",
    )
    command_error = _object(
        {
            "ok": {"const": False},
            "exit_code": _ref("exit_code"),
            "category": _ref("category"),
            "error": _ref("error"),
        },
        description=(
            "a command that could not run at all (usage, configuration, a bug); serve: the body "
            "of a request it refuses, with the HTTP status in error.http_status"
        ),
    )
    outbox_row = _object(
        {
            "id": {"type": "integer"},
            "idempotency_key": {"type": "string"},
            "state": {"enum": list(OUTBOX_STATES)},
            "attempts": {"type": "integer", "minimum": 0},
            "category": {"anyOf": [_ref("category"), {"type": "null"}]},
            "reason": _NULLABLE_STR,
            "error": {"type": ["object", "null"]},
            "message_id": _NULLABLE_STR,
            "token_fingerprint": _ref("fingerprint"),
            "not_before": _NULLABLE_NUM,
            "lease_owner": _NULLABLE_STR,
            "lease_until": _NULLABLE_NUM,
            "enqueued_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "consumer": _NULLABLE_STR,
            "phone_number_id": _NULLABLE_STR,
            "intent": {"type": "object", "required": ["v", "to", "type"]},
        },
        description="outbox list / export: one row (OutboxRow.to_dict(): the intent included)",
    )
    outbox_stats = _object(
        {
            "ok": {"const": True},
            "exit_code": {"const": 0},
            "outbox": {"type": "string"},
            "stats": _object(
                {
                    "total": {"type": "integer", "minimum": 0},
                    "by_state": {
                        "type": "object",
                        "additionalProperties": {"type": "integer", "minimum": 0},
                    },
                    "by_category": {
                        "type": "object",
                        "additionalProperties": {"type": "integer", "minimum": 0},
                    },
                    "dead_letters": {"type": "integer", "minimum": 0},
                    "oldest_waiting": _NULLABLE_NUM,
                },
                description="OutboxStats.to_dict()",
            ),
        },
        description="outbox stats",
    )
    outbox_count = _object(
        {
            "ok": {"const": True},
            "exit_code": {"const": 0},
            "action": {"enum": ["purge", "export", "migrate"]},
            "count": {"type": "integer", "minimum": 0},
            "path": _NULLABLE_STR,
        },
        description=(
            "outbox purge / export --output: how many rows; outbox migrate: the schema version"
        ),
    )
    batch = _object(
        {
            **summary["properties"],
            "results": {"type": "array", "items": _ref("result")},
        },
        description="serve: POST /send with a list, POST /outbox/replay: the summary and results",
    )
    outbox_listing = _object(
        {
            **outbox_stats["properties"],
            "outbox": _NULLABLE_STR,
            "rows": {"type": "array", "items": _ref("outbox_row")},
        },
        description="serve: GET /outbox: the stats and the rows, oldest first",
    )
    serve = _object(
        {
            "ok": {"const": True},
            "url": {"type": "string"},
            "host": {"type": "string"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "pid": {"type": "integer"},
            "version": {"type": "string"},
            "outbox": _NULLABLE_STR,
            "state": _NULLABLE_STR,
            "metrics": _BOOL,
            "max_connections": {"type": "integer", "minimum": 1},
            "webhook": SERVE_WEBHOOK,
        },
        description="serve: the one line on stdout once it listens",
    )
    serve_health = _object(
        {
            "ok": _BOOL,
            "status": {"enum": ["alive", "stopping", "broken"]},
            "version": {"type": "string"},
            "pid": {"type": "integer"},
            "uptime": {"type": "number", "minimum": 0},
            "in_flight": {"type": "integer", "minimum": 0},
            "requests": {"type": "integer", "minimum": 0},
            "outbox": {
                "anyOf": [
                    _object(
                        {"ok": _BOOL, "kind": _NULLABLE_STR},
                        description="the outbox takes changes (ok), or the kind of its problem",
                    ),
                    {"type": "null"},
                ]
            },
        },
        description=(
            "serve: GET /healthz (no API key needed): alive, or broken (503) when the outbox "
            "cannot take changes"
        ),
    )
    access = _object(
        {
            "event": {"const": "access"},
            "ts": {"type": "number"},
            "remote": _NULLABLE_STR,
            "method": {
                "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"]
            },
            "route": {"type": "string"},
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "seconds": {"type": "number", "minimum": 0},
            "request_bytes": {"type": "integer", "minimum": 0},
            "response_bytes": {"type": "integer", "minimum": 0},
            "intents": {"type": "integer", "minimum": 0},
            "exit_code": {"anyOf": [_ref("exit_code"), {"type": "null"}]},
            "category": {"anyOf": [_ref("category"), {"type": "null"}]},
        },
        description="serve: the access-log line of one request on stderr (no token, no text)",
    )
    lifecycle = _object(
        {
            "event": {"enum": ["stopping", "stopped"]},
            "ts": {"type": "number"},
            "signal": _NULLABLE_STR,
            "in_flight": {"type": "integer", "minimum": 0},
            "requests": {"type": "integer", "minimum": 0},
            "uptime": {"type": "number", "minimum": 0},
        },
        description="serve: the lines of a graceful stop on stderr",
    )
    log = _object(
        {
            "event": {"const": "log"},
            "ts": {"type": "number"},
            "level": {"enum": ["debug", "info", "warning", "error", "critical"]},
            "logger": {"type": "string"},
            "message": {"type": "string"},
            "error": _NULLABLE_STR,
            "fields": {"type": ["object", "null"]},
        },
        description=(
            "stderr: a log record. wa_auth's own (warnings always; with --verbose every event, "
            "its name as message and its fields: fingerprints, never tokens), and in serve "
            "aiohttp's and asyncio's (the unformatted template's first line and the exception's "
            "type, never its arguments, text or traceback)"
        ),
    )
    connections = _object(
        {
            "event": {"const": "connections"},
            "ts": {"type": "number"},
            "open": {"type": "integer", "minimum": 0},
            "cap": {"type": "integer", "minimum": 1},
            "evicted": {"type": "integer", "minimum": 0},
            "refused": {"type": "integer", "minimum": 0},
            "aborted": {"type": "integer", "minimum": 0},
        },
        description="serve: the connection cap at work on stderr (at most one line per 10 s)",
    )
    pause = _object(
        {
            "kind": {"enum": ["account", "circuit"]},
            "phone_number_id": {"type": "string"},
            "category": {"type": "string"},
            "since": {"type": "number"},
            "until": _NULLABLE_NUM,
            "failures": {"type": "integer", "minimum": 0},
        },
        description="a paused number or a circuit (wa_auth.pacing.Pause)",
    )
    state_list = _object(
        {
            "ok": {"const": True},
            "exit_code": {"const": 0},
            "action": {"const": "list"},
            "state": _NULLABLE_STR,
            "verdicts": {
                "type": "array",
                "items": _object(
                    {
                        "token_fingerprint": _ref("fingerprint"),
                        "category": _ref("category"),
                        "expires_at": {"type": "number"},
                        "error": _ref("error"),
                    },
                    description="a dead token's verdict: its sends fail without a request",
                ),
            },
            "pauses": {"type": "array", "items": _ref("pause")},
        },
        description="state list: the verdicts and pauses in force in the state file",
    )
    state_clear = _object(
        {
            "ok": {"const": True},
            "exit_code": {"const": 0},
            "action": {"const": "clear"},
            "state": _NULLABLE_STR,
            "verdicts": {"type": "array", "items": _ref("fingerprint")},
            "pauses": {"type": "array", "items": _ref("pause")},
        },
        description="state clear, serve's POST /state/clear: the verdicts and pauses dropped",
    )
    webhook = _schema_webhook.defs()
    version = _object({"version": {"type": "string"}}, description="--version")
    sandbox = _object(
        {
            "base_url": {"type": "string"},
            "admin_url": {"type": "string"},
            "phone_number_id": {"type": "string"},
            "phone_number_ids": {"type": "array", "items": {"type": "string"}},
            "business_account_id": {"type": "string"},
            "app_id": {"type": "string"},
            "app_token": {"type": "string"},
            "seed": {"type": "integer"},
            "tokens": {"type": "array", "items": {"type": "object"}},
        },
        description="sandbox: the simulator's addresses and demo tokens (loopback only)",
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "A line printed by the wa-auth CLI, or an answer of wa-auth serve",
        "description": (
            "Every line wa-auth prints, and every JSON body wa-auth serve answers, is one JSON "
            "object of exactly one of these shapes. "
            "Exit codes: " + ", ".join(f"{c} {n}" for c, n in _codes.NAMES.items()) + "."
        ),
        "oneOf": [
            _ref(n)
            for n in (
                "result",
                "summary",
                "check",
                "classify",
                "command_error",
                "outbox_row",
                "outbox_stats",
                "outbox_count",
                "version",
                "sandbox",
                "batch",
                "outbox_listing",
                "serve",
                "serve_health",
                "access",
                "lifecycle",
                "log",
                "connections",
                "state_list",
                "state_clear",
                *HOOK_LINES,
                *webhook,
            )
        ],
        "$defs": {
            "category": {"enum": categories},
            "exit_code": {"enum": list(_codes.NAMES)},
            "fingerprint": {"type": ["string", "null"], "pattern": "^sha256:[0-9a-f]{12}$"},
            "error": _object(error_props, description="a classified failure; never a token"),
            "result": result,
            "summary": summary,
            "check": check,
            "classify": classify,
            "command_error": command_error,
            "outbox_row": outbox_row,
            "outbox_stats": outbox_stats,
            "outbox_count": outbox_count,
            "version": version,
            "sandbox": sandbox,
            "batch": batch,
            "outbox_listing": outbox_listing,
            "serve": serve,
            "serve_health": serve_health,
            "access": access,
            "lifecycle": lifecycle,
            "log": log,
            "connections": connections,
            "pause": pause,
            "state_list": state_list,
            "state_clear": state_clear,
            **hook_defs(),
            **webhook,
        },
    }


def render() -> str:
    """Return the schema as the text of `docs/wa-auth.schema.json`."""
    return json.dumps(schema(), indent=2) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
