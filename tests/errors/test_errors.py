"""The exception tree and the pure classifier (`from_response`, `from_webhook_error`)."""

from __future__ import annotations

import copy
import email.utils
import json
import os
import pickle
import subprocess
import sys
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wa_auth import _classify, _convert, _table, errors
from wa_auth._classify import MAX_RETRY_AFTER, parse_retry_after
from wa_auth.errors import (
    CATEGORIES,
    AccountStateError,
    ApiError,
    AuthError,
    InsufficientPermissionError,
    InvalidRequestError,
    RateLimitError,
    RequestValidationError,
    TokenExpiredError,
    TokenRevokedError,
    TokenUnavailableError,
    TransientError,
    TransportError,
    UnknownApiError,
    WebhookSignatureError,
    WhatsAppError,
    from_response,
    from_webhook_error,
)
from wa_auth.models import MAX_REGAIN_MINUTES, BusinessUsage, Usage

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("default", max_examples=100, deadline=None)
settings.load_profile(
    "ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "default"
)

_PAYLOAD_DIR = Path(__file__).resolve().parents[1] / "payloads"
#: real_errors.json: the first corpus; coverage_errors.json: BSP envelopes, debug_token,
#: health_status and codes added later (issue #9). Every entry names its public source.
PAYLOADS: list[dict[str, Any]] = [
    payload
    for name in ("real_errors.json", "coverage_errors.json")
    for payload in json.loads((_PAYLOAD_DIR / name).read_text(encoding="utf-8"))
]

CLASS_FOR_CATEGORY = {
    "token_expired": TokenExpiredError,
    "token_revoked": TokenRevokedError,
    "insufficient_permission": InsufficientPermissionError,
    "account_state": AccountStateError,
    "rate_limited": RateLimitError,
    "transient": TransientError,
    "invalid_request": InvalidRequestError,
    "unknown": UnknownApiError,
}


def token_info_error(code: Any, subcode: Any, message: Any) -> ApiError:
    """The error token health gives a debug_token `data.error`, as the client builds it."""
    return _classify.classify_token_info(code, subcode, message, errors.error_class_for)


def classify(payload: dict[str, Any]) -> ApiError:
    if payload["kind"] == "webhook":
        return from_webhook_error(payload["body"])
    if payload["kind"] == "token_info":
        body = payload["body"]
        return token_info_error(body.get("code"), body.get("subcode"), body.get("message"))
    return from_response(payload["status"], payload["body"], payload["headers"])


def all_error_classes() -> list[type[WhatsAppError]]:
    """Every WhatsAppError subclass, found recursively (new subclasses are covered too)."""
    seen: list[type[WhatsAppError]] = []
    todo: list[type[WhatsAppError]] = [WhatsAppError]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: c.__name__)


def make_error(cls: type[WhatsAppError]) -> WhatsAppError:
    """Build an instance of *cls* with every attribute set to something non-default."""
    if issubclass(cls, ApiError):
        return cls(
            "(#131056) pair rate limit hit",
            http_status=400,
            code=131056,
            subcode=2494055,
            error_type="OAuthException",
            user_title="Title",
            user_message="User message",
            details="details",
            fbtrace_id="AbCdEf",
            usage=Usage.from_headers(
                {
                    "X-App-Usage": '{"call_count": 28, "total_time": 25, "total_cputime": 25}',
                    "X-Business-Use-Case-Usage": '{"1": [{"type": "whatsapp", '
                    '"estimated_time_to_regain_access": 3}]}',
                }
            ),
            token_fingerprint="sha256:0123456789ab",
            rule="131056",
            retryable=True,
            retry_after=6.0,
            max_attempts=3,
            ambiguous=True,
            operator_action="Pace the sends.",
        )
    return cls("the token file /run/secrets/wa is missing")


# --- the real corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p["id"] for p in PAYLOADS])
def test_real_payload_classifies(payload):
    """Each publicly reported payload maps to its expected category, rule and class."""
    err = classify(payload)

    assert (payload["category"], payload["rule"]) == (err.category, err.rule)
    assert type(err) is CLASS_FOR_CATEGORY[payload["category"]]
    assert err.category in CATEGORIES
    assert err.http_status == payload["status"]


@pytest.mark.parametrize(
    "payload",
    [p for p in PAYLOADS if p["kind"] == "response"],
    ids=[p["id"] for p in PAYLOADS if p["kind"] == "response"],
)
def test_real_payload_same_in_every_body_type(payload):
    """A body given as dict, str or bytes classifies the same way."""
    body = payload["body"]
    text = body if isinstance(body, str) else json.dumps(body)
    variants = [text, text.encode(), bytearray(text.encode())]
    if isinstance(body, dict):
        variants.append(body)
    rules = {from_response(payload["status"], v, payload["headers"]).rule for v in variants}

    assert {payload["rule"]} == rules


@pytest.mark.parametrize("category", sorted(CLASS_FOR_CATEGORY))
def test_corpus_has_three_payloads_per_category(category):
    """The corpus holds at least three realistic payloads for every API category."""
    assert len([p for p in PAYLOADS if p["category"] == category]) >= 3


def test_corpus_cites_a_source_for_each_payload():
    """Every corpus entry says where the shape was reported."""
    assert all(p["source"] for p in PAYLOADS)
    assert len({p["id"] for p in PAYLOADS}) == len(PAYLOADS)


# --- every row is reachable, in every shape -------------------------------------------------

_NEUTRAL = "Something failed"


def _row_cases() -> list[tuple[_table.Rule, int]]:
    return [(rule, code) for rule in _table.RULES for code in rule.codes]


def _error_object(rule: _table.Rule, code: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "message": rule.messages[0] if rule.messages else _NEUTRAL,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbC",
    }
    if rule.subcodes:
        obj["error_subcode"] = rule.subcodes[0]
    return obj


@pytest.mark.parametrize(
    ("rule", "code"), _row_cases(), ids=[f"{r.id}@{c}" for r, c in _row_cases()]
)
def test_every_row_reachable_in_every_shape(rule, code):
    """Each code of each row maps to that row as dict, bytes, str, string code, webhook, (#N), legacy."""
    obj = _error_object(rule, code)
    text = json.dumps({"error": obj})
    no_code = {k: v for k, v in obj.items() if k != "code"}
    no_code["message"] = f"(#{code}) {obj['message']}"
    shapes: dict[str, ApiError] = {
        "dict": from_response(400, {"error": obj}),
        "bytes": from_response(400, text.encode()),
        "str": from_response(400, text),
        "code-as-string": from_response(400, {"error": {**obj, "code": str(code)}}),
        "webhook": from_webhook_error(obj),
        "webhook-string-code": from_webhook_error({**obj, "code": str(code)}),
        "code-only-in-message": from_response(400, {"error": no_code}),
        "legacy": from_response(
            400,
            {
                "error_code": code,
                "error_msg": obj["message"],
                "error_subcode": obj.get("error_subcode"),
            },
        ),
        "status-500": from_response(500, {"error": obj}),
    }
    wrong = {name: err.rule for name, err in shapes.items() if err.rule != rule.id}

    assert not wrong, f"row {rule.id} not reached for code {code}: {wrong}"
    for err in shapes.values():
        assert rule.category == err.category
        assert code == err.code
        assert rule.max_attempts == err.max_attempts
        assert rule.ambiguous == err.ambiguous
        assert rule.operator_action == err.operator_action


def test_every_row_id_is_unique():
    """Rule ids are unique, so `error.rule` names one row."""
    ids = [r.id for r in (*_table.RULES, *_table.STATUS_RULES)]

    assert len(ids) == len(set(ids))


def test_every_row_category_is_known():
    """Every row's category is one of CATEGORIES."""
    for rule in (
        *_table.RULES,
        *_table.STATUS_RULES,
        _table.TRANSIENT_FLAG_RULE,
        _table.TRANSPORT_RULE,
        _table.VALIDATION_RULE,
        _table.UNKNOWN_RULE,
    ):
        assert rule.category in CATEGORIES, rule.id


_STATUS_CASES = [
    (rule, status) for rule in _table.STATUS_RULES for status in rule.http_statuses
] + [(_table.STATUS_RULES[-1], 599), (_table.STATUS_RULES[-1], 520)]


@pytest.mark.parametrize(
    ("rule", "status"), _STATUS_CASES, ids=[f"{r.id}@{s}" for r, s in _STATUS_CASES]
)
@pytest.mark.parametrize(
    "body",
    [
        "",
        None,
        "<html><body>Bad Gateway</body></html>",
        '{"error": {"message": "x", "code": 99999}}',
    ],
    ids=["empty", "none", "html", "unknown-code"],
)
def test_status_rules_reachable(rule, status, body):
    """Without a known code the HTTP status decides: 401, 429, 5xx (and 408)."""
    err = from_response(status, body)

    assert rule.id == err.rule
    assert rule.category == err.category


def test_is_transient_flag_rule_reachable():
    """An unknown code marked `is_transient: true` is transient."""
    err = from_response(400, {"error": {"message": "x", "code": 424242, "is_transient": True}})

    assert _table.TRANSIENT_FLAG_RULE.id == err.rule
    assert isinstance(err, TransientError)
    assert err.retryable


def test_is_transient_false_does_not_upgrade():
    """`is_transient: false` on an unknown code stays unknown."""
    err = from_response(400, {"error": {"message": "x", "code": 424242, "is_transient": False}})

    assert err.rule == "unknown"


def test_known_code_beats_is_transient_flag():
    """A code with a row wins over the flag: code 4 with is_transient stays rate_limited."""
    err = from_response(400, {"error": {"message": "x", "code": 4, "is_transient": True}})

    assert err.category == "rate_limited"


def test_unknown_rule_reachable():
    """Nothing recognisable with a 4xx status is unknown."""
    err = from_response(418, "I'm a teapot")

    assert _table.UNKNOWN_RULE.id == err.rule
    assert isinstance(err, UnknownApiError)


def test_validation_rule_on_local_errors():
    """A RequestValidationError names the validation row and its operator action."""
    err = RequestValidationError("text must not be empty")

    assert _table.VALIDATION_RULE.id == err.rule
    assert _table.VALIDATION_RULE.operator_action == err.operator_action
    assert isinstance(err, ValueError)


def test_transport_rule_on_transport_errors():
    """A TransportError names the transport row and its operator action."""
    err = TransportError("ConnectError on send_text: the request was not sent")

    assert _table.TRANSPORT_RULE.id == err.rule
    assert _table.TRANSPORT_RULE.operator_action == err.operator_action
    assert err.category == "transient"


# --- code 190: subcode first, then text ---------------------------------------------------------

_190_TEXTS = [
    (
        "Error validating access token: Session has expired on Friday, 08-Mar-24 04:00:00 PST.",
        "190:expired",
    ),
    (
        "Session has expired at unix time 1700000000. The current unix time is 1700000500.",
        "190:expired",
    ),
    (
        "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        "190:password",
    ),
    (
        "Error validating access token: The user has not authorized application 123456.",
        "190:deauthorized",
    ),
    ("Error validating application. Application has been deleted.", "190:deauthorized"),
    (
        "Error validating access token: The session is invalid because the user logged out.",
        "190:logged-out",
    ),
    (
        "Error validating access token: Sessions for the user are not allowed because the user is not a confirmed user.",
        "190:checkpoint",
    ),
    (
        "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
        "190:checkpoint",
    ),
    (
        "Error validating access token: The session is invalid because the user role on the page changed.",
        "190:role",
    ),
    ("Invalid OAuth access token - Cannot parse access token", "190:malformed"),
    ("Invalid OAuth access token signature.", "190:malformed"),
    ("Invalid OAuth access token data.", "190:malformed"),
    ("Malformed access token", "190:malformed"),
    ("The access token could not be decrypted", "190:malformed"),
    ("Invalid OAuth access token.", "190:malformed"),
    ("Invalid OAuth 2.0 Access Token", "190:malformed"),
    ("Something new Meta says about tokens", "190"),
]


@pytest.mark.parametrize(
    ("message", "rule"), _190_TEXTS, ids=[r + ":" + m[:30] for m, r in _190_TEXTS]
)
@pytest.mark.parametrize("status", [400, 401], ids=["http400", "http401"])
def test_190_text_rules(message, rule, status):
    """Code 190 without a subcode is told apart by Meta's text (case-insensitive)."""
    body = {"error": {"message": message, "type": "OAuthException", "code": 190, "fbtrace_id": "x"}}

    assert rule == from_response(status, body).rule
    assert (
        rule == from_response(status, {"error": {**body["error"], "message": message.upper()}}).rule
    )


@pytest.mark.parametrize(
    ("subcode", "category"),
    [
        (463, "token_expired"),
        (458, "token_revoked"),
        (459, "token_revoked"),
        (460, "token_revoked"),
        (464, "token_revoked"),
        (467, "token_revoked"),
        (492, "token_revoked"),
        (493, "token_expired"),
    ],
    ids=["463", "458", "459", "460", "464", "467", "492", "493"],
)
def test_190_subcode_beats_text(subcode, category):
    """A 190 subcode decides even when the text suggests another reading."""
    text = "Session has expired" if category == "token_revoked" else "user logged out"
    err = from_response(400, {"error": {"message": text, "code": 190, "error_subcode": subcode}})

    assert category == err.category
    assert f"190/{subcode}" == err.rule
    assert not err.ambiguous


def test_190_unknown_subcode_falls_back_to_text():
    """An unknown 190 subcode still reads the text."""
    err = from_response(
        400, {"error": {"message": "Session has expired on ...", "code": 190, "error_subcode": 999}}
    )

    assert err.rule == "190:expired"


@pytest.mark.parametrize(
    ("body", "ambiguous"),
    [
        (
            {
                "error": {
                    "message": "Unsupported post request. Object with ID 'messages' does not exist",
                    "code": 100,
                    "error_subcode": 33,
                }
            },
            True,
        ),
        ({"error": {"message": "Invalid OAuth access token (#190)", "code": 190}}, True),
        ({"error": {"message": "An unknown thing", "code": 190}}, True),
        ({"error": {"message": "Session has expired on Monday", "code": 190}}, False),
        ({"error": {"message": "x", "code": 190, "error_subcode": 463}}, False),
        ({"error": {"message": "(#100) Invalid parameter", "code": 100}}, False),
        ({"error": {"message": "x", "code": 131031}}, False),
    ],
    ids=[
        "100/33",
        "190-no-text-match",
        "190-unknown-text",
        "190-expired-text",
        "190/463",
        "100",
        "131031",
    ],
)
def test_ambiguous_flag(body, ambiguous):
    """`ambiguous` is set where Meta's answer allows two readings: 100/33 and bare 190."""
    assert ambiguous == from_response(400, body).ambiguous


# --- edge shapes -------------------------------------------------------------------------------

_EDGE = [
    ("empty-bytes", 400, b"", "unknown"),
    ("whitespace", 502, "  \n ", "http:5xx"),
    ("none", 503, None, "http:5xx"),
    ("json-null", 400, "null", "unknown"),
    ("json-list-of-errors", 400, '[{"error": {"code": 131047, "message": "x"}}]', "131047"),
    ("json-number", 500, "42", "http:5xx"),
    ("json-string", 400, '"error"', "unknown"),
    ("json-array-empty", 400, "[]", "unknown"),
    ("truncated", 400, '{"error": {"message": "(#130429) Rate limit hit", "code": 1304', "130429"),
    (
        "truncated-no-code",
        400,
        '{"error": {"message": "Error validating access token: Session has ex',
        "190",
    ),
    ("invalid-utf8", 400, b'{"error": {"message": "\xff\xfe", "code": 131026}}', "131026"),
    (
        "errors-array",
        400,
        {"errors": [{"code": 131051, "title": "Unsupported message type"}]},
        "131051",
    ),
    (
        "error-list",
        400,
        {"error": [{"code": 131021, "message": "Recipient cannot be sender"}]},
        "131021",
    ),
    (
        "oauth-string-error",
        401,
        {"error": "invalid_token", "error_description": "The access token expired"},
        "190",
    ),
    ("unwrapped", 400, {"code": 131009, "message": "Parameter value is not valid"}, "131009"),
    ("code-float", 400, {"error": {"code": 131048.0, "message": "x"}}, "131048"),
    ("code-bool", 400, {"error": {"code": True, "message": "x"}}, "unknown"),
    ("code-list", 400, {"error": {"code": [131048], "message": "x"}}, "unknown"),
    ("code-garbage-string", 400, {"error": {"code": "n/a", "message": "x"}}, "unknown"),
    ("message-not-string", 400, {"error": {"code": 100, "message": {"nested": True}}}, "100"),
    (
        "error-data-string",
        400,
        {"error": {"code": 100, "message": "x", "error_data": "bad param"}},
        "100",
    ),
    ("error-not-object", 400, {"error": 17}, "unknown"),
    ("html-429", 429, "<html>Too Many Requests</html>", "http:429"),
    ("html-408", 408, "<html>Request Timeout</html>", "http:5xx"),
]


@pytest.mark.parametrize(
    ("status", "body", "rule"), [e[1:] for e in _EDGE], ids=[e[0] for e in _EDGE]
)
def test_edge_shapes(status, body, rule):
    """Odd bodies never raise and classify by what can be read, then by HTTP status."""
    err = from_response(status, body)

    assert rule == err.rule
    assert err.category in CATEGORIES
    assert err.message


def test_non_json_body_excerpt_is_kept_and_bounded():
    """A non-JSON body's excerpt stays in the message, bounded and whitespace-collapsed."""
    err = from_response(502, "<html>\n\n" + "x" * 5000 + "</html>")

    assert err.message.startswith("HTTP 502 with a non-JSON body: <html> x")
    assert len(err.message) < _classify.BODY_EXCERPT_CHARS + 60


def test_status_not_an_int_is_ignored():
    """A bogus status is treated as none."""
    err = from_response("500", {"error": {"code": 131000, "message": "x"}})  # type: ignore[arg-type]

    assert err.http_status is None
    assert err.rule == "131000"


def test_fields_are_read_from_the_envelope():
    """Message, type, user title/message, details and fbtrace_id land on the error."""
    err = from_response(
        400,
        {
            "error": {
                "message": "(#132012) Parameter format does not match format in the created template",
                "type": "OAuthException",
                "code": 132012,
                "error_subcode": 2494073,
                "error_user_title": "Template param format",
                "error_user_msg": "Fix the format",
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": "header: Format mismatch",
                },
                "fbtrace_id": "A5Ld_C",
            }
        },
    )

    assert (err.rule, err.code, err.subcode) == ("132005", 132012, 2494073)
    assert err.error_type == "OAuthException"
    assert (err.user_title, err.user_message) == ("Template param format", "Fix the format")
    assert err.details == "header: Format mismatch"
    assert err.fbtrace_id == "A5Ld_C"


def test_webhook_title_is_the_message_when_message_missing():
    """A webhook error with only a title uses it as the message."""
    err = from_webhook_error({"code": 131047, "title": "Re-engagement message"})

    assert err.message == "Re-engagement message"
    assert err.http_status is None


@pytest.mark.parametrize(
    "obj",
    [None, 17, "131031", [], [{"code": 131031}], {"no": "code"}, {"code": None}, b"\xff"],
    ids=["none", "int", "str", "empty-list", "list", "no-code", "code-none", "bytes"],
)
def test_webhook_garbage_never_raises(obj):
    """from_webhook_error returns an ApiError for anything."""
    err = from_webhook_error(obj)

    assert isinstance(err, ApiError)
    assert err.category in CATEGORIES


# --- retry_after ---------------------------------------------------------------------------------


def test_retry_after_seconds_header():
    """Retry-After in seconds wins over the row default."""
    err = from_response(429, {"error": {"code": 130429, "message": "x"}}, {"Retry-After": "42"})

    assert err.retry_after == 42.0


def test_retry_after_http_date_header():
    """Retry-After as an HTTP date becomes the seconds until then."""
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    err = from_response(503, "", {"retry-after": when})

    assert 100 < err.retry_after <= 121


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("5", 5.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("1e12", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:30:00 -0000", 60.0),
        ("soon", None),
        ("", None),
        ("nan", None),
        ("inf", MAX_RETRY_AFTER),
    ],
    ids=[
        "zero",
        "int",
        "float",
        "negative",
        "huge",
        "date",
        "date-naive",
        "garbage",
        "empty",
        "nan",
        "inf",
    ],
)
def test_parse_retry_after(value, expected):
    """parse_retry_after reads seconds or dates, clamps to [0, MAX], and rejects garbage."""
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:29:00 GMT").timestamp()

    assert expected == parse_retry_after(value, now=now)


def test_retry_after_from_business_use_case_minutes():
    """estimated_time_to_regain_access (minutes) becomes retry_after in seconds."""
    headers = {
        "X-Business-Use-Case-Usage": json.dumps(
            {
                "102290129340398": [
                    {
                        "type": "whatsapp_business_management",
                        "call_count": 100,
                        "total_cputime": 25,
                        "total_time": 25,
                        "estimated_time_to_regain_access": 19,
                    }
                ]
            }
        )
    }
    err = from_response(400, {"error": {"code": 80007, "message": "(#80007) Rate limit"}}, headers)

    assert err.retry_after == 19 * 60.0
    assert err.usage.business[0].estimated_time_to_regain_access == 19
    assert err.usage.business[0].business_id == "102290129340398"


def test_retry_after_header_beats_business_usage():
    """An explicit Retry-After wins over the usage header."""
    headers = {
        "Retry-After": "7",
        "X-Business-Use-Case-Usage": '{"1": [{"type": "x", "estimated_time_to_regain_access": 5}]}',
    }

    assert (
        from_response(400, {"error": {"code": 80007, "message": "x"}}, headers).retry_after == 7.0
    )


def test_retry_after_row_default():
    """Without headers retry_after is the row's default."""
    assert from_response(400, {"error": {"code": 130429, "message": "x"}}).retry_after == 1.0
    assert from_response(400, {"error": {"code": 131056, "message": "x"}}).retry_after == 6.0
    assert from_response(400, {"error": {"code": 131047, "message": "x"}}).retry_after is None


def test_retry_after_garbage_header_falls_back():
    """An unparseable Retry-After and zero regain time fall back to the row."""
    headers = {
        "Retry-After": "later",
        "X-Business-Use-Case-Usage": '{"1": [{"type": "x", "estimated_time_to_regain_access": 0}]}',
    }

    assert (
        from_response(400, {"error": {"code": 130429, "message": "x"}}, headers).retry_after == 1.0
    )


def test_usage_headers_on_errors():
    """X-App-Usage is parsed onto the error, case-insensitively."""
    err = from_response(
        400,
        {"error": {"code": 4, "message": "x"}},
        {"x-app-usage": '{"call_count": 100, "total_time": 12, "total_cputime": 9}'},
    )

    assert (err.usage.app.call_count, err.usage.app.total_time, err.usage.app.total_cputime) == (
        100,
        12,
        9,
    )


def test_malformed_usage_headers_are_ignored():
    """Garbage usage headers give an empty Usage, not an exception."""
    err = from_response(
        400,
        {"error": {"code": 4, "message": "x"}},
        {"X-App-Usage": "{not json", "X-Business-Use-Case-Usage": "[1, 2]"},
    )

    assert err.usage.app is None
    assert err.usage.business == ()


# --- a bad field is dropped, the rest still classifies (issue #9) ---------------------------

_EXPIRED_463 = {
    "error": {
        "message": "Error validating access token: Session has expired on Monday, 19-Jun-23 "
        "06:29:46 PDT. The current time is Tuesday, 04-Jul-23 02:11:32 PDT.",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 463,
        "fbtrace_id": "AXS25JPViBb5AY5tP5EzTnD",
    }
}


def _buc(raw_minutes: str) -> dict[str, str]:
    return {
        "X-Business-Use-Case-Usage": '{"102290129340398": [{"type": "whatsapp_business_management",'
        f' "call_count": 100, "estimated_time_to_regain_access": {raw_minutes}}}]}}'
    }


@pytest.mark.parametrize(
    "minutes", ["1e308", "1e309", "-1e308", "9" * 5000, "NaN", "Infinity", '"soon"', "null"]
)
def test_absurd_regain_estimate_keeps_the_token_verdict(minutes):
    """A 190/463 stays token_expired whatever estimated_time_to_regain_access says."""
    err = from_response(401, _EXPIRED_463, _buc(minutes))

    assert (err.category, err.rule) == ("token_expired", "190/463")
    assert err.retry_after is None or 0 <= err.retry_after <= MAX_RETRY_AFTER
    assert err.usage.business[0].call_count == 100
    assert err.usage.regain_access_seconds is None


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (10**400, MAX_REGAIN_MINUTES * 60.0),
        (float("inf"), MAX_REGAIN_MINUTES * 60.0),
        (1e308, MAX_REGAIN_MINUTES * 60.0),
        (float("nan"), None),
        ("19", None),
        (None, None),
        (True, None),
        (-5, None),
        (19, 19 * 60.0),
    ],
    ids=["huge-int", "inf", "1e308", "nan", "str", "none", "bool", "negative", "19"],
)
def test_regain_access_seconds_never_raises(minutes, expected):
    """Usage.regain_access_seconds clamps huge values and skips what is not a number."""
    usage = Usage(business=(BusinessUsage("1", "x", estimated_time_to_regain_access=minutes),))

    assert expected == usage.regain_access_seconds


@pytest.mark.parametrize("depth", [2_000, 100_000], ids=["deep", "deeper"])
@pytest.mark.parametrize(
    ("status", "category"),
    [(503, "transient"), (500, "transient"), (429, "rate_limited"), (401, "token_revoked")],
)
def test_deeply_nested_body_is_classified_by_status(depth, status, category):
    """A body nested too deep for json falls back to the HTTP status instead of unknown."""
    body = '{"error": ' + "[" * depth + "]" * depth + "}"

    err = from_response(status, body)

    assert category == err.category
    assert err.rule.startswith("http:")


def test_deeply_nested_field_is_dropped():
    """A nested structure too deep to serialise as text is dropped; the code still decides."""
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    body = {"error": {"code": 131031, "message": deep, "error_data": {"details": deep}}}

    err = from_response(403, body)

    assert (err.category, err.rule) == ("account_state", "131031")


@pytest.mark.parametrize(
    "code",
    ["1" * 5000, 10**5000, "9" * 20, 2**64, 1e308, float("nan"), float("inf"), [131031]],
    ids=["5000-digit-str", "5000-digit-int", "20-digit", "2**64", "1e308", "nan", "inf", "list"],
)
def test_unusable_code_falls_back_to_the_message(code):
    """A code that is no usable integer is dropped; the message's (#131031) decides."""
    body = {"error": {"code": code, "message": "(#131031) Business Account locked"}}

    err = from_response(403, body)

    assert (err.category, err.rule, err.code) == ("account_state", "131031", 131031)


def test_5000_digit_number_in_a_text_body_is_dropped_alone():
    """A JSON body with a number beyond Python's digit limit keeps its other fields."""
    body = (
        '{"error": {"message": "(#131031) Business Account locked", "code": '
        + "1" * 5000
        + ', "error_data": {"details": "locked"}, "fbtrace_id": "AbC"}}'
    )

    err = from_response(403, body)

    assert (err.rule, err.details, err.fbtrace_id) == ("131031", "locked", "AbC")


def test_5000_digit_usage_number_drops_only_that_number():
    """A usage header with a 5,000-digit number keeps its other numbers."""
    headers = {"X-App-Usage": '{"call_count": ' + "9" * 5000 + ', "total_time": 12}'}

    err = from_response(400, {"error": {"code": 4, "message": "x"}}, headers)

    assert (err.usage.app.call_count, err.usage.app.total_time) == (0, 12)


def test_unprintable_texts_are_dropped():
    """A message or trace id that cannot become text is dropped; the code still decides."""
    circular: dict[str, Any] = {}
    circular["self"] = circular
    body = {
        "error": {"code": 190, "error_subcode": 463, "message": circular, "fbtrace_id": 10**5000}
    }

    err = from_response(401, body)

    assert (err.rule, err.fbtrace_id) == ("190/463", None)
    assert err.message


def test_non_string_headers_are_ignored():
    """Header names or values that are not strings are skipped, not raised on."""
    headers: Any = {1: "x", "Retry-After": 5, "X-App-Usage": None}

    err = from_response(429, "", headers)

    assert err.rule == "http:429"


def test_safety_net_classifies_by_status(monkeypatch):
    """If classifying still fails, the HTTP status decides instead of unknown."""

    def broken(*_: Any) -> ApiError:
        raise RuntimeError("boom")

    monkeypatch.setattr(_classify._classifier, "_build", broken)

    expired = from_response(401, _EXPIRED_463)
    webhook = from_webhook_error({"code": 131031})

    assert (type(expired), expired.rule, expired.ambiguous) == (TokenRevokedError, "http:401", True)
    assert "RuntimeError" in expired.message
    assert webhook.rule == "unknown"


@pytest.mark.parametrize(
    "status", [10**5000, -1, 1000, True, "401"], ids=["5000-digits", "-1", "1000", "bool", "str"]
)
def test_impossible_status_is_ignored(status):
    """A status that is no HTTP status is treated as none, without a costly or failing str()."""
    err = from_response(status, _EXPIRED_463)

    assert (err.http_status, err.rule) == (None, "190/463")


def test_http_status_enum_is_a_status():
    """An `http.HTTPStatus` is read as its number."""
    err = from_response(HTTPStatus.UNAUTHORIZED, "")

    assert (type(err.http_status), err.http_status, err.rule) == (int, 401, "http:401")


# --- property: one mutated field of a real payload keeps its category (issue #9) -------------

#: Values that are no usable integer: huge, non-finite, nested, or text of absurd length.
_JUNK_RAW = [
    "1" * 5000,
    "1e309",
    "-1e309",
    "NaN",
    "Infinity",
    "[" * 5000 + "]" * 5000,
    '{"a": ' * 3000 + "1" + "}" * 3000,
    '"' + "x" * 10_000 + '"',
    "null",
    "false",
]
_junk_raw = st.sampled_from(_JUNK_RAW)
_junk_values = st.one_of(
    st.none(),
    st.just(False),
    st.sampled_from([10**5000, 2**64, -(2**64), 1e308, float("inf"), float("nan"), "9" * 5000]),
    st.text(alphabet="abcxyz #()", max_size=30),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
_TEXT_KEYS = ("message", "title", "error_data", "error_user_msg")


def _mutation_cases() -> list[tuple[dict[str, Any], str]]:
    """(payload, field) pairs where *field* of the error object does not decide the category."""
    cases = []
    for payload in PAYLOADS:
        body = payload["body"]
        if payload["kind"] != "response" or not isinstance(body, dict):
            continue
        err = body.get("error")
        if not isinstance(err, dict) or "whatsappApiError" in err:
            continue
        rule = next((r for r in _table.RULES if r.id == payload["rule"]), None)
        decided_by_text = rule is None or bool(rule.messages) or "code" not in err
        code_in_message = f"(#{err.get('code')})" in str(err.get("message", ""))
        for field in (*err, "fbtrace_id", "error_user_title", "type", "is_transient"):
            if field == "code" and not code_in_message:
                continue
            if field == "error_subcode" and rule is not None and rule.subcodes is not None:
                continue
            if field == "is_transient" and payload["rule"] == _table.TRANSIENT_FLAG_RULE.id:
                continue
            if field in _TEXT_KEYS and (
                decided_by_text or (field == "message" and code_in_message)
            ):
                continue
            cases.append((payload, field))
    return cases


_MUTATIONS = _mutation_cases()


@given(case=st.sampled_from(_MUTATIONS), junk=_junk_values)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_one_junk_field_keeps_the_category(case, junk):
    """Any one non-deciding field of a real payload set to junk keeps the category."""
    payload, field = case
    body = copy.deepcopy(payload["body"])
    body["error"][field] = junk

    err = from_response(payload["status"], body, payload["headers"])

    assert payload["category"] == err.category, (payload["id"], field)


@given(case=st.sampled_from(_MUTATIONS), raw=_junk_raw)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_one_junk_field_in_the_text_keeps_the_category(case, raw):
    """The same, with the junk written into the JSON text (json's own limits apply)."""
    payload, field = case
    body = copy.deepcopy(payload["body"])
    body["error"][field] = "__JUNK__"
    text = json.dumps(body).replace('"__JUNK__"', raw)

    err = from_response(payload["status"], text.encode(), payload["headers"])

    assert payload["category"] == err.category, (payload["id"], field)


_USAGE_FIELDS = ("estimated_time_to_regain_access", "call_count", "total_time", "type")


@given(
    payload=st.sampled_from([p for p in PAYLOADS if p["kind"] == "response"]),
    header=st.sampled_from(["X-Business-Use-Case-Usage", "X-App-Usage", "Retry-After"]),
    field=st.sampled_from(_USAGE_FIELDS),
    raw=_junk_raw,
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_one_junk_usage_number_keeps_the_category(payload, header, field, raw):
    """A junk number in a usage or Retry-After header changes neither category nor bounds."""
    entry = {"type": "whatsapp_business_management", "call_count": 5, "total_time": 1}
    entry[field] = "__JUNK__"
    if header == "X-Business-Use-Case-Usage":
        value = json.dumps({"102290129340398": [entry]})
    elif header == "X-App-Usage":
        value = json.dumps(entry)
    else:
        value = "__JUNK__"
    headers = {
        **payload["headers"],
        header: value.replace('"__JUNK__"', raw).replace("__JUNK__", raw),
    }

    err = from_response(payload["status"], payload["body"], headers)

    assert payload["category"] == err.category
    assert err.retry_after is None or 0 <= err.retry_after <= MAX_RETRY_AFTER
    assert err.usage.regain_access_seconds is None or err.usage.regain_access_seconds >= 0


def test_mutation_cases_cover_every_category():
    """The mutation property runs over payloads of every API category but unknown."""
    categories = {payload["category"] for payload, _ in _MUTATIONS}

    assert set(CLASS_FOR_CATEGORY) - {"unknown"} <= categories


# --- BSP envelopes, debug_token and health_status (issue #9) -------------------------------


def test_token_info_error_matches_a_401():
    """classify_token_info gives the class, rule and verdict data of a 401 with that error."""
    message = "Error validating access token: Session has expired on Wednesday, 16-Nov-22."
    via_401 = from_response(401, {"error": {"code": 190, "error_subcode": 463, "message": message}})

    err = token_info_error(190, 463, message)

    assert type(err) is type(via_401) is TokenExpiredError
    assert (err.rule, err.code, err.subcode, err.message) == (
        via_401.rule,
        via_401.code,
        via_401.subcode,
        via_401.message,
    )
    assert err.http_status is None


@pytest.mark.parametrize(
    ("code", "subcode", "message", "rule"),
    [
        ("190", "460", "changed their password", "190/460"),
        (190, None, "Invalid OAuth access token signature.", "190:malformed"),
        (None, None, None, "http:401"),
        (None, None, "Session has expired on Monday", "190:expired"),
        (10**5000, [1], {"x": 1}, "http:401"),
    ],
    ids=["strings", "no-subcode", "nothing", "text-only", "junk"],
)
def test_token_info_error_shapes(code, subcode, message, rule):
    """classify_token_info reads strings, missing fields and junk like from_response does."""
    err = token_info_error(code, subcode, message)

    assert rule == err.rule
    assert err.category in _table.TOKEN_CLASS


def test_ycloud_envelope_prefers_metas_error():
    """YCloud's own code is ignored when Meta's error is under whatsappApiError."""
    body = {
        "error": {
            "status": 400,
            "code": "BAD_REQUEST",
            "message": "Template error",
            "whatsappApiError": {"code": 132001, "message": "Template name does not exist"},
        }
    }

    err = from_response(400, body)

    assert (err.rule, err.code) == ("132001", 132001)


def test_on_premises_details_are_read():
    """`errors[].details` (On-Premises style, BSPs such as Turn) becomes the details text."""
    err = from_response(400, {"errors": [{"code": 131009, "title": "x", "details": "bad to"}]})

    assert (err.rule, err.details) == ("131009", "bad to")


def test_health_status_prefers_a_blocked_entity():
    """The first error of a BLOCKED entity wins over a LIMITED entity's error."""
    body = {
        "health_status": {
            "can_send_message": "BLOCKED",
            "entities": [
                {
                    "entity_type": "PHONE_NUMBER",
                    "can_send_message": "LIMITED",
                    "errors": [{"error_code": 138024, "error_description": "SIP is not enabled"}],
                },
                {
                    "entity_type": "WABA",
                    "can_send_message": "BLOCKED",
                    "errors": [{"error_code": 141006, "error_description": "payment method"}],
                },
            ],
        }
    }

    assert from_response(200, body).rule == "141006"


def test_healthy_or_valid_answers_are_not_errors():
    """An AVAILABLE health_status and a valid debug_token have no error object to classify."""
    healthy = {"health_status": {"entities": [{"can_send_message": "AVAILABLE"}]}}
    valid = {"data": {"is_valid": True, "scopes": []}}

    assert _classify.find_error_object(healthy) is None
    assert _classify.find_error_object(valid) is None


def test_www_authenticate_fills_in_when_the_body_has_no_code():
    """A body with a bare message still takes its code from WWW-Authenticate."""
    headers = {
        "WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token" "Malformed access token"'
    }

    err = from_response(401, {"message": "Unauthorized"}, headers)

    assert (err.rule, err.message) == ("190:malformed", "Unauthorized")


def test_classifier_imports_no_http_client_shell_or_provider():
    """`_classify` and `errors` load without httpx, aiohttp, the shells, the core or providers."""
    code = (
        "import sys, wa_auth._classify, wa_auth.errors; "
        "print(' '.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('httpx', 'aiohttp', 'wa_auth'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()

    assert set(out) <= {
        "wa_auth",
        "wa_auth._classify",
        "wa_auth._classify._body",
        "wa_auth._classify._classifier",
        "wa_auth._classify._fields",
        "wa_auth._classify._rule",
        "wa_auth._convert",
        "wa_auth._exports",
        "wa_auth._redact",
        "wa_auth._table",
        "wa_auth._usage",
        "wa_auth.errors",
        "wa_auth.models",
    }, out


# --- the one integer converter --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (131056, 131056),
        (-1, -1),
        (131048.0, 131048),
        (12.7, 12),
        ("131056", 131056),
        (" 463 ", 463),
        ("+7", 7),
        ("-12", -12),
        (_convert.INT_MAX, _convert.INT_MAX),
        (_convert.INT_MIN, _convert.INT_MIN),
        (_convert.INT_MAX + 1, None),
        (2.0**63, None),
        (1e308, None),
        (float("inf"), None),
        (float("nan"), None),
        ("1" * 5000, None),
        ("9" * 20, None),
        ("12.5", None),
        ("1e9", None),
        ("(#131031)", None),
        ("", None),
        (True, None),
        (None, None),
        ([1], None),
    ],
    ids=lambda v: repr(v)[:12],
)
def test_to_int(value, expected):
    """to_int accepts integers, finite floats and digit strings within 64 bits; nothing else."""
    assert expected == _convert.to_int(value)


# --- the error objects ---------------------------------------------------------------------------

ERROR_CLASSES = all_error_classes()


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=[c.__name__ for c in ERROR_CLASSES])
def test_category_in_closed_set(cls):
    """Every error class's category is one of CATEGORIES."""
    assert cls.category in CATEGORIES
    assert make_error(cls).category in CATEGORIES


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=[c.__name__ for c in ERROR_CLASSES])
def test_pickle_round_trip(cls):
    """Every error class survives pickle with all its attributes."""
    err = make_error(cls)
    back = pickle.loads(pickle.dumps(err))

    assert type(err) is type(back)
    assert err.args == back.args
    assert err.__dict__ == back.__dict__
    assert str(err) == str(back)
    assert repr(err) == repr(back)
    assert err.to_dict() == back.to_dict()


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=[c.__name__ for c in ERROR_CLASSES])
@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy], ids=["copy", "deepcopy"])
def test_copy_round_trip(cls, copier):
    """Every error class survives copy and deepcopy with all its attributes."""
    err = make_error(cls)
    back = copier(err)

    assert type(err) is type(back)
    assert err.args == back.args
    assert err.__dict__ == back.__dict__
    assert err.to_dict() == back.to_dict()


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=[c.__name__ for c in ERROR_CLASSES])
def test_to_dict_is_json_safe(cls):
    """to_dict() serialises with json.dumps and names the type and category."""
    data = make_error(cls).to_dict()
    json.dumps(data)

    assert cls.__name__ == data["type"]
    assert cls.category == data["category"]


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p["id"] for p in PAYLOADS])
def test_to_dict_of_classified_payload_is_json_safe(payload):
    """to_dict() of every classified real payload is JSON-safe."""
    data = classify(payload).to_dict()

    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize(
    "cls",
    [c for c in ERROR_CLASSES if issubclass(c, ApiError)],
    ids=[c.__name__ for c in ERROR_CLASSES if issubclass(c, ApiError)],
)
def test_maybe_delivered_is_never_retryable(cls):
    """retryable is False whenever maybe_delivered is True, whatever was asked."""
    err = cls("x", maybe_delivered=True, retryable=True)

    assert err.maybe_delivered
    assert not err.retryable


def test_str_with_and_without_trace_id():
    """str() is the message, prefixed with `Request <fbtrace_id>: ` when there is one."""
    with_trace = from_response(
        400, {"error": {"code": 131047, "message": "Re-engagement", "fbtrace_id": "AbC"}}
    )
    without = from_response(400, {"error": {"code": 131047, "message": "Re-engagement"}})

    assert str(with_trace) == "Request AbC: Re-engagement"
    assert str(without) == "Re-engagement"


def test_repr_format():
    """repr() shows the class, message, category, status, codes, trace id and fingerprint."""
    err = from_response(
        401,
        {
            "error": {
                "code": 190,
                "error_subcode": 463,
                "message": "Session has expired",
                "fbtrace_id": "AbC",
            }
        },
    )
    err.with_token("EAAGsecret-token-value-1234567890")

    assert repr(err) == (
        "TokenExpiredError('Session has expired', category='token_expired', http_status=401, "
        f"code=190, subcode=463, fbtrace_id='AbC', token_fingerprint={err.token_fingerprint!r})"
    )
    assert "secret" not in repr(err)


def test_repr_of_non_api_error():
    """A non-API error's repr names its class, message and category."""
    assert (
        repr(TokenUnavailableError("no token"))
        == "TokenUnavailableError('no token', category='token_unavailable')"
    )


def test_with_token_scrubs_echoed_token_and_sets_fingerprint():
    """with_token() replaces the token in every text field and records its fingerprint."""
    token = "EAAGm0PX4ZCpsBAsomething"
    err = from_response(
        400,
        {
            "error": {
                "code": 190,
                "message": f"Malformed access token {token}",
                "error_user_msg": f"bad {token}",
                "error_data": {"details": token},
            }
        },
    )
    err.with_token(token)

    assert token not in err.message + str(err.args) + err.user_message + err.details
    assert err.token_fingerprint.startswith("sha256:")
    assert len(err.token_fingerprint) == 19


def test_messages_are_redacted_at_construction():
    """Token query parameters and bearer credentials never survive in a message."""
    err = UnknownApiError(
        "GET https://graph.facebook.com/v23.0/debug_token?input_token=EAAGabc123&access_token=1|x "
        "with Authorization: Bearer EAAGabcdefgh"
    )

    assert "EAAGabc" not in str(err)
    assert "input_token=[REDACTED]" in str(err)


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (TokenExpiredError, AuthError),
        (TokenRevokedError, AuthError),
        (InsufficientPermissionError, AuthError),
        (AccountStateError, AuthError),
        (AuthError, ApiError),
        (RateLimitError, ApiError),
        (TransientError, ApiError),
        (TransportError, TransientError),
        (InvalidRequestError, ApiError),
        (RequestValidationError, InvalidRequestError),
        (RequestValidationError, ValueError),
        (UnknownApiError, ApiError),
        (ApiError, WhatsAppError),
        (TokenUnavailableError, WhatsAppError),
        (WebhookSignatureError, WhatsAppError),
        (WebhookSignatureError, ValueError),
    ],
    ids=lambda c: c.__name__,
)
def test_tree(cls, base):
    """The classes form the documented tree."""
    assert issubclass(cls, base)


@pytest.mark.parametrize(
    "cls",
    [ApiError, AuthError, RateLimitError, TransientError, InvalidRequestError, UnknownApiError],
    ids=lambda c: c.__name__,
)
def test_server_side_errors_are_not_value_errors(cls):
    """Only local input errors are ValueErrors."""
    assert not issubclass(cls, ValueError)


def test_error_class_for_unknown_category():
    """error_class_for() maps unknown categories to UnknownApiError."""
    assert errors.error_class_for("nope") is UnknownApiError
    assert errors.error_class_for("token_expired") is TokenExpiredError


# --- the classifier never raises -----------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["190", "131056", "(#131031)", "-1", "1e9", "", " 463 "]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_error_objects = st.fixed_dictionaries(
    {},
    optional={
        "code": _scalars,
        "error_subcode": _scalars,
        "message": st.one_of(_scalars, _json),
        "title": _scalars,
        "type": _scalars,
        "is_transient": _scalars,
        "error_data": _json,
        "error_user_msg": _scalars,
        "fbtrace_id": _scalars,
    },
)
_bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.text(max_size=200),
    _json,
    st.builds(lambda e: {"error": e}, _error_objects),
    st.builds(lambda e: json.dumps({"error": e}, default=str), _error_objects),
    st.builds(lambda e: json.dumps({"error": e}, default=str)[:40], _error_objects),
    st.builds(lambda e: {"errors": [e]}, _error_objects),
    st.builds(lambda c, m: {"error_code": c, "error_msg": m}, _scalars, _scalars),
)
_headers = st.dictionaries(
    st.sampled_from(
        [
            "Retry-After",
            "retry-after",
            "X-App-Usage",
            "X-Business-Use-Case-Usage",
            "WWW-Authenticate",
            "Content-Type",
        ]
    ),
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "12",
                "Wed, 21 Oct 2015 07:28:00 GMT",
                '{"1": [{"estimated_time_to_regain_access": 3}]}',
                'OAuth "Facebook Platform" "invalid_token" "x"',
            ]
        ),
    ),
    max_size=3,
)


@given(
    status=st.one_of(st.none(), st.integers(min_value=-1, max_value=1000), st.integers()),
    body=_bodies,
    headers=st.one_of(st.none(), _headers),
)
def test_from_response_never_raises(status, body, headers):
    """Over arbitrary statuses, bodies and headers, from_response returns an ApiError in the set."""
    err = from_response(status, body, headers)

    assert isinstance(err, ApiError)
    assert err.category in CATEGORIES
    assert isinstance(err.message, str)
    json.dumps(err.to_dict())
    assert err.retry_after is None or 0 <= err.retry_after <= MAX_RETRY_AFTER


@given(obj=st.one_of(_json, _error_objects))
def test_from_webhook_error_never_raises(obj):
    """Over arbitrary objects, from_webhook_error returns an ApiError in the set."""
    err = from_webhook_error(obj)

    assert isinstance(err, ApiError)
    assert err.category in CATEGORIES
