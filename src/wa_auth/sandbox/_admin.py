"""The admin API under `/_sandbox/`: the Python API's operations as JSON over HTTP.

`POST /_sandbox/<operation>` takes the operation's keyword arguments as a JSON object;
`GET /_sandbox/` (the state), `/_sandbox/tokens`, `/_sandbox/messages`,
`/_sandbox/requests`, `/_sandbox/seeded_faults`, `/_sandbox/webhooks` and
`/_sandbox/late_failures` read. Admin calls are not Graph requests:
they are not recorded and no fault applies to them. Errors answer 400 with
`{"error": {"message": ..., "operation": ...}}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from wa_auth.sandbox._catalogue import Reply, json_reply
from wa_auth.sandbox._checks import MAX_JSON_DEPTH, check_keys, nested_deeper
from wa_auth.sandbox._values import Faults, Limits
from wa_auth.sandbox._webhook_values import WebhookSettings
from wa_auth.sandbox._webhooks import (
    deliver_account_update,
    deliver_change,
    fail_late,
    flush,
    set_quality,
    subscribe,
)
from wa_auth.sandbox._wire import HttpRequest
from wa_auth.sandbox._world import APP_ID, BUSINESS_ACCOUNT_ID, World

__all__ = ["PREFIX", "admin", "describe"]

PREFIX: Final = "/_sandbox"


def describe(world: World) -> dict[str, Any]:
    """Return the sandbox's addresses and state as JSON-safe data (tokens with values)."""
    account, variant = world.account_state()
    return {
        "base_url": world.base_url,
        "admin_url": world.base_url + PREFIX,
        "phone_number_id": world.phone_number_ids[0],
        "phone_number_ids": list(world.phone_number_ids),
        "business_account_id": BUSINESS_ACCOUNT_ID,
        "app_id": APP_ID,
        "app_token": world.app_token,
        "seed": world.seed,
        "now": world.now(),
        "account_state": account,
        "account_variant": variant,
        "number_states": world.number_states(),
        "limits": world.limits().to_dict(),
        "faults": world.faults().to_dict(),
        "seeded_faults": [f.to_dict() for f in world.seeded_faults()],
        "tokens": [t.to_dict(reveal=True) for t in world.tokens()],
        **_webhook_state(world),
    }


def _webhook_state(world: World) -> dict[str, Any]:
    with world.lock:
        state = world.state
        return {
            "webhook_url": state.webhook_url,
            "webhook_settings": state.webhook_settings.to_dict(),
            "late_failures": [late.to_dict() for late in state.late],
        }


def _subscribe(world: World, kw: Mapping[str, Any]) -> Any:
    subscribe(world, _required(kw, "url"))
    return _webhook_state(world)


def _set_webhooks(world: World, kw: Mapping[str, Any]) -> Any:
    settings = WebhookSettings(**kw)
    with world.lock:
        world.state.webhook_settings = settings
    return settings.to_dict()


def _webhooks(world: World) -> Any:
    with world.lock:
        return [w.to_dict() for w in world.state.webhooks]


def _flush(world: World, kw: Mapping[str, Any]) -> Any:
    timeout = kw.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 60:
        raise ValueError("flush_webhooks: timeout must be a number of seconds in [0, 60]")
    return {"flushed": flush(world, float(timeout))}


def _kwargs(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        # `1e999` and `NaN` parse (to inf and nan) so the argument's own check can name it.
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    if nested_deeper(data, MAX_JSON_DEPTH):
        raise ValueError(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object of keyword arguments")  # noqa: TRY004 - answered as a 400
    return data


def _issue(world: World, kw: Mapping[str, Any]) -> Any:
    return world.issue_token(**kw).to_dict(reveal=True)


def _token_state(world: World, kw: Mapping[str, Any]) -> Any:
    return world.set_token_state(
        _required(kw, "token"), _required(kw, "state"), kw.get("variant")
    ).to_dict(reveal=True)


def _account_state(world: World, kw: Mapping[str, Any]) -> Any:
    world.set_account_state(_required(kw, "state"), kw.get("variant"))
    return describe(world)


def _number_state(world: World, kw: Mapping[str, Any]) -> Any:
    world.set_number_state(_required(kw, "phone_number_id"), _required(kw, "state"))
    return describe(world)


def _required(kw: Mapping[str, Any], name: str) -> Any:
    if name not in kw:
        raise ValueError(f"missing argument {name!r}")
    return kw[name]


def _without(kw: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if k != name}


def _clear_seeded(world: World, _kw: Mapping[str, Any]) -> Any:
    world.clear_seeded_faults()
    return {"seeded_faults": []}


def _reset(world: World, _kw: Mapping[str, Any]) -> Any:
    world.reset()
    return describe(world)


_Operation = Callable[[World, Mapping[str, Any]], Any]

#: Each POST operation and the keyword arguments it takes; any other key is refused by name.
_POST: Final[Mapping[str, tuple[_Operation, frozenset[str]]]] = MappingProxyType(
    {
        "issue_token": (
            _issue,
            frozenset(
                {
                    "scopes",
                    "expires_in",
                    "kind",
                    "allowed_wabas",
                    "allowed_phone_numbers",
                    "name",
                    "value",
                }
            ),
        ),
        "set_token_state": (_token_state, frozenset({"token", "state", "variant"})),
        "set_account_state": (_account_state, frozenset({"state", "variant"})),
        "set_number_state": (_number_state, frozenset({"phone_number_id", "state"})),
        "set_limits": (
            lambda w, kw: w.set_limits(Limits(**kw)).to_dict(),
            frozenset(attrs.fields_dict(Limits)),
        ),
        "set_faults": (
            lambda w, kw: w.set_faults(Faults(**kw)).to_dict(),
            frozenset(attrs.fields_dict(Faults)),
        ),
        "advance": (
            lambda w, kw: {"now": w.advance(_required(kw, "seconds"))},
            frozenset({"seconds"}),
        ),
        "fail_next": (
            lambda w, kw: w.fail_next(_required(kw, "code"), **_without(kw, "code")).to_dict(),
            frozenset(
                {
                    "code",
                    "times",
                    "phone_number_id",
                    "recipient",
                    "endpoint",
                    "retry_after",
                    "retry_after_header",
                    "regain_access_minutes",
                }
            ),
        ),
        "clear_seeded_faults": (_clear_seeded, frozenset()),
        "reset": (_reset, frozenset()),
        "subscribe": (_subscribe, frozenset({"url"})),
        "set_webhooks": (_set_webhooks, frozenset(attrs.fields_dict(WebhookSettings))),
        "fail_late": (
            lambda w, kw: fail_late(w, _required(kw, "code"), **_without(kw, "code")).to_dict(),
            frozenset({"code", "times", "recipient"}),
        ),
        "deliver_account_update": (
            lambda w, kw: {
                "seq": deliver_account_update(w, _required(kw, "event"), **_without(kw, "event"))
            },
            frozenset({"event", "ban_state", "extra"}),
        ),
        "set_quality": (
            lambda w, kw: {
                "seq": set_quality(
                    w, _required(kw, "phone_number_id"), **_without(kw, "phone_number_id")
                )
            },
            frozenset({"phone_number_id", "event", "current_limit", "old_limit"}),
        ),
        "deliver_webhook": (
            lambda w, kw: {
                "seq": deliver_change(w, _required(kw, "field"), _required(kw, "value"))
            },
            frozenset({"field", "value"}),
        ),
        "flush_webhooks": (_flush, frozenset({"timeout"})),
    }
)
_GET: Final[Mapping[str, Callable[[World], Any]]] = MappingProxyType(
    {
        "": describe,
        "tokens": lambda w: [t.to_dict(reveal=True) for t in w.tokens()],
        "messages": lambda w: [m.to_dict() for m in w.messages()],
        "requests": lambda w: [r.to_dict() for r in w.requests()],
        "seeded_faults": lambda w: [f.to_dict() for f in w.seeded_faults()],
        "webhooks": _webhooks,
        "late_failures": lambda w: _webhook_state(w)["late_failures"],
    }
)


def admin(world: World, req: HttpRequest) -> Reply:
    """Answer one admin request."""
    operation = req.path[len(PREFIX) :].strip("/")
    try:
        if req.method == "GET" and operation in _GET:
            return json_reply(200, _GET[operation](world))
        if req.method == "POST" and operation in _POST:
            run, allowed = _POST[operation]
            kw = _kwargs(req.body)
            check_keys(operation, kw, allowed)
            return json_reply(200, run(world, kw))
    except (ValueError, TypeError) as exc:
        return json_reply(400, {"error": {"message": str(exc), "operation": operation}})
    known = sorted(
        [f"GET {PREFIX}/{k}".rstrip("/") for k in _GET] + [f"POST {PREFIX}/{k}" for k in _POST]
    )
    return json_reply(
        404,
        {"error": {"message": f"no admin operation {req.method} {req.path}", "known": known}},
    )
