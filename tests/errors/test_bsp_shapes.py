"""The shapes issue #17 still found unknown: BSP errors without a Graph code (360dialog's text,
YCloud's symbolic codes, Turn's -1), health_status 141000, 136025 with a localised message, and
bodies cut off mid-JSON, which are classified from what survived and no further.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wa_auth import AsyncWhatsAppClient, WhatsAppClient, _classify, _table
from wa_auth._cli import main as cli_main
from wa_auth.errors import (
    CATEGORIES,
    AccountStateError,
    ApiError,
    InvalidRequestError,
    RateLimitError,
    from_response,
    from_webhook_error,
)

_PAYLOAD_DIR = Path(__file__).resolve().parents[1] / "payloads"
#: Every corpus entry that is an HTTP answer (the truncation property cuts their JSON text).
RESPONSES: list[dict[str, Any]] = [
    payload
    for name in ("real_errors.json", "coverage_errors.json")
    for payload in json.loads((_PAYLOAD_DIR / name).read_text(encoding="utf-8"))
    if payload["kind"] == "response"
]
#: Rules that decide by HTTP status (or nothing) alone: what a cut body falls back to.
_FALLBACKS = frozenset(
    {r.id for r in _table.STATUS_RULES} | {_table.UNKNOWN_RULE.id, _table.TRANSIENT_FLAG_RULE.id}
)
_PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_DISABLED = (
    "Your WhatsApp for Business API has been disabled. If you believe this is a mistake, "
    "please contact our support team."
)
_USAGE = "You have exceeded the limit of 1 request every 5 seconds. Try again later."


# --- 360dialog: no code, the text decides --------------------------------------------------


def _shapes_360(message: str) -> dict[str, Any]:
    """The same 360dialog text in every envelope it, or a proxy of it, may come in."""
    meta = {"httpCode": 400, "developerMessage": message, "success": False}
    snake = {"http_code": 400, "developer_message": message, "success": False}
    return {
        "meta": {"meta": meta},
        "meta-snake-case": {"meta": snake},
        "meta-as-text": json.dumps({"meta": meta}),
        "meta-as-bytes": json.dumps({"meta": meta}).encode(),
        "meta-pretty-cut-after-message": json.dumps({"meta": meta}, indent=4)[:-30],
        "unwrapped-message": {"message": message},
        "error-object": {"error": {"message": message}},
        "upper-case": {"meta": {**meta, "developerMessage": message.upper()}},
    }


@pytest.mark.parametrize(
    ("message", "rule", "cls"),
    [
        (_DISABLED, "360dialog:disabled", AccountStateError),
        (_USAGE, "360dialog:usage-limit", RateLimitError),
        ("You have exceeded the endpoint rate limit.", "360dialog:usage-limit", RateLimitError),
    ],
    ids=["disabled", "usage-limit", "endpoint-rate-limit"],
)
@pytest.mark.parametrize("shape", list(_shapes_360("x")), ids=list(_shapes_360("x")))
def test_360dialog_text_decides_in_every_shape(message, rule, cls, shape):
    """360dialog's code-less errors classify by their text, whatever envelope carries it."""
    err = from_response(400, _shapes_360(message)[shape])

    assert (rule, cls) == (err.rule, type(err))
    assert err.code is None
    assert message.lower() == err.message.lower()


def test_360dialog_usage_limit_waits_and_retries():
    """The usage limit is retryable after a wait; the disabled API is not retryable at all."""
    usage = from_response(400, {"meta": {"developerMessage": _USAGE}})
    disabled = from_response(400, {"meta": {"developerMessage": _DISABLED}})

    assert (usage.retryable, usage.retry_after, usage.max_attempts) == (True, 60.0, 3)
    assert (disabled.retryable, disabled.retry_after) == (False, None)


def test_360dialog_webhook_text_decides():
    """The same text in a webhook error object (no HTTP status) classifies the same way."""
    assert from_webhook_error({"message": _DISABLED}).rule == "360dialog:disabled"


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"error": {"code": 4, "message": _USAGE}}, "4"),
        ({"error": {"code": 131031, "message": _DISABLED}}, "131031"),
        ({"error": {"code": 999999, "message": _DISABLED}}, "unknown"),
        ({"error": {"message": f"(#131056) {_USAGE}"}}, "131056"),
    ],
    ids=["graph-code-4", "graph-code-131031", "unknown-code", "code-in-message"],
)
def test_360dialog_text_never_overrides_a_code(body, rule):
    """A BSP text row is read only for an error with no code: any Graph code decides first."""
    assert rule == from_response(400, body).rule


def test_360dialog_text_needs_its_words():
    """Another 400 text of 360dialog's envelope stays unknown: no row guesses from HTTP 400."""
    err = from_response(400, {"meta": {"developerMessage": "Could not send message"}})

    assert err.rule == "unknown"


# --- YCloud: a symbolic code ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rule", "cls"),
    [
        ("PARAM_INVALID", "ycloud:PARAM_INVALID", InvalidRequestError),
        ("param_invalid", "ycloud:PARAM_INVALID", InvalidRequestError),
        ("ACCOUNT_LIMITED", "ycloud:account", AccountStateError),
        ("ACCOUNT_UNAVAILABLE", "ycloud:account", AccountStateError),
        ("TOO_MANY_REQUESTS", "ycloud:TOO_MANY_REQUESTS", RateLimitError),
    ],
    ids=["param-invalid", "lower-case", "account-limited", "account-unavailable", "too-many"],
)
@pytest.mark.parametrize("shape", ["dict", "text", "webhook-errorCode", "cut-after-code"])
def test_ycloud_symbolic_code_decides(name, rule, cls, shape):
    """YCloud's `code` names its error; the name decides in every shape, even a cut body."""
    obj = {"status": 400, "code": name, "message": "Parameter 'limit' should be between 1 and 100."}
    if shape == "dict":
        err = from_response(400, {"error": obj})
    elif shape == "text":
        err = from_response(400, json.dumps({"error": obj}).encode())
    elif shape == "webhook-errorCode":
        err = from_webhook_error({"errorCode": name, "errorMessage": obj["message"]})
    else:
        err = from_response(400, json.dumps({"error": obj})[:-40])

    assert (rule, cls) == (err.rule, type(err))
    assert not err.ambiguous


def test_ycloud_name_yields_to_a_graph_code_in_the_message():
    """`(#131056)` in the message is Meta's code and beats YCloud's own name."""
    body = {"error": {"code": "TOO_MANY_REQUESTS", "message": "(#131056) pair rate limit hit"}}

    assert from_response(429, body).rule == "131056"


def test_ycloud_name_wins_over_words_that_imply_a_token_error():
    """A known name decides before the text is read for an implied code (no 190 guess)."""
    body = {"error": {"code": "PARAM_INVALID", "message": "Invalid OAuth access token field"}}

    assert from_response(400, body).rule == "ycloud:PARAM_INVALID"


@pytest.mark.parametrize(
    ("code", "status", "rule"),
    [
        ("SOMETHING_NEW", 400, "unknown"),
        ("SOMETHING_NEW", 503, "http:5xx"),
        ("n/a", 400, "unknown"),
    ],
    ids=["unknown-name-400", "unknown-name-503", "not-a-name"],
)
def test_unknown_names_fall_back_to_the_status(code, status, rule):
    """A name no row knows, or a code that is neither name nor number, leaves it to the status."""
    assert rule == from_response(status, {"error": {"code": code, "message": "x"}}).rule


# --- Turn: code -1 -------------------------------------------------------------------------

_TURN = {
    "meta": {"version": "4.923.9", "api_status": "stable"},
    "errors": [{"code": -1, "title": "Bad Request", "details": "Could not be parsed, invalid key"}],
}


@pytest.mark.parametrize(
    ("status", "body", "rule"),
    [
        (400, _TURN, "-1:bad-request"),
        (500, _TURN, "-1:bad-request"),
        (400, {"errors": [{"code": "-1", "title": "Bad Request"}]}, "-1:bad-request"),
        (400, {"error": {"message": "(#-1) Bad Request"}}, "-1:bad-request"),
        (400, json.dumps(_TURN)[:-30], "-1:bad-request"),
        (400, {"errors": [{"code": -1, "title": "Something else"}]}, "unknown"),
        (503, {"errors": [{"code": -1, "title": "Service Unavailable"}]}, "http:5xx"),
        (429, {"errors": [{"code": -1}]}, "http:429"),
    ],
    ids=[
        "turn-400",
        "turn-500",
        "code-as-string",
        "code-in-message",
        "cut-after-title",
        "other-title-400",
        "other-title-503",
        "no-title-429",
    ],
)
def test_turn_minus_one_needs_its_title(status, body, rule):
    """Turn's -1 is a bad request only with the title saying so; otherwise the status decides."""
    err = from_response(status, body)

    assert rule == err.rule
    assert err.code == -1


# --- every BSP row, by each of its names and texts ---------------------------------------

_NAMED = sorted(_table.BY_NAME.items())
_TEXTS = [(rule, text) for rule in _table.TEXT_RULES for text in rule.messages]


@pytest.mark.parametrize(("name", "rule"), _NAMED, ids=[n for n, _ in _NAMED])
def test_every_named_row_is_reachable(name, rule):
    """Each BSP name of the table reaches its row, as `code` or as a webhook's `errorCode`."""
    by_code = from_response(400, {"error": {"code": name, "message": "x"}})
    by_webhook = from_webhook_error({"errorCode": name.lower(), "errorMessage": "x"})

    assert rule.id == by_code.rule == by_webhook.rule
    assert rule.category == by_code.category


@pytest.mark.parametrize(("rule", "text"), _TEXTS, ids=[f"{r.id}:{t}" for r, t in _TEXTS])
def test_every_text_row_is_reachable(rule, text):
    """Each text of a BSP text row reaches its row in any case and inside a longer message."""
    err = from_response(400, {"meta": {"developerMessage": f"Oops. {text.upper()}!"}})

    assert (rule.id, rule.category) == (err.rule, err.category)


def test_bsp_rows_have_no_graph_code():
    """A row with names or only texts has no Graph code, so Meta's codes always decide first."""
    for rule in _table.RULES:
        if rule.names or (rule.messages and not rule.codes):
            assert rule.codes == (), rule.id
            assert rule.subcodes is None, rule.id


# --- Meta's codes: 141000 and a localised 136025 -------------------------------------------


def _health(code: int, description: str) -> dict[str, Any]:
    entity = {
        "entity_type": "PHONE_NUMBER",
        "id": "106540352242922",
        "can_send_message": "BLOCKED",
        "errors": [{"error_code": code, "error_description": description}],
    }
    return {"health_status": {"can_send_message": "BLOCKED", "entities": [entity]}}


@given(description=st.text(max_size=200))
@_PROPERTY
def test_health_status_141000_is_account_state_whatever_its_text(description):
    """health_status's 141000 (number not linked to a WABA) is account state, by code alone."""
    err = from_response(200, _health(141000, description))

    assert ("141000", AccountStateError, False) == (err.rule, type(err), err.retryable)


#: Rows that have no message rule for their code: their code decides whatever the text says.
_CODE_ONLY = sorted(
    code
    for code, rows in _table.BY_CODE.items()
    if len(rows) == 1 and rows[0].subcodes is None and not rows[0].messages
)


@given(
    code=st.sampled_from(_CODE_ONLY),
    message=st.one_of(
        st.text(max_size=200),
        st.sampled_from(
            [
                "Error al verificar el código",
                "Código incorrecto. Solicita un código nuevo.",
                "حدث خطأ في التحقق من الرمز",
                "認証コードが正しくありません",
                "Session has expired",  # another row's English words must not matter
                "You have exceeded the limit of 1 request every 5 seconds.",
            ]
        ),
    ),
    user_message=st.text(max_size=100),
)
@_PROPERTY
def test_a_localised_message_never_moves_a_code_only_row(code, message, user_message):
    """A code without message rules (136025 among them) classifies by code in any language."""
    body = {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_user_title": message,
            "error_user_msg": user_message,
        }
    }

    assert _table.BY_CODE[code][0].id == from_response(400, body).rule


@pytest.mark.parametrize(
    "message",
    ["(#136025) Error al verificar el código", "(#١٣٦٠٢٥) حدث خطأ في التحقق من الرمز"],
    ids=["spanish", "arabic-indic-digits"],
)
def test_136025_code_is_read_from_a_localised_message(message):
    """Without a `code` field, `(#136025)` in a message of any script still gives the code."""
    err = from_response(400, {"error": {"message": message, "type": "OAuthException"}})

    assert (err.rule, err.code, type(err)) == ("136025", 136025, InvalidRequestError)
    assert err.category == _table.INVALID_REQUEST


# --- bodies cut off mid-JSON ---------------------------------------------------------------


def _json_texts(payload: dict[str, Any]) -> list[str]:
    body = payload["body"]
    if isinstance(body, str):
        return [body]
    return [json.dumps(body), json.dumps(body, indent=2, ensure_ascii=False)]


_CUTS = [(p, text) for p in RESPONSES for text in _json_texts(p)]


@given(case=st.sampled_from(_CUTS), where=st.floats(min_value=0.0, max_value=1.0))
@_PROPERTY
def test_a_cut_body_never_claims_a_reading_it_cannot_know(case, where):
    """A body cut anywhere keeps its category, falls back to the status, or says ambiguous."""
    payload, text = case
    full = from_response(payload["status"], text, payload["headers"])
    cut = text[: int(len(text) * where)]

    err = from_response(payload["status"], cut, payload["headers"])

    assert err.category in CATEGORIES
    assert err.category == full.category or err.rule in _FALLBACKS or err.ambiguous, (
        payload["id"],
        cut[-80:],
        err.rule,
    )


def test_every_cut_of_the_corpus_is_safe():
    """The property above, exhaustively: every prefix of every corpus answer's JSON text."""
    unsafe = []
    for payload, text in _CUTS:
        full = from_response(payload["status"], text, payload["headers"])
        for end in range(len(text)):
            err = from_response(payload["status"], text[:end], payload["headers"])
            if err.category != full.category and err.rule not in _FALLBACKS and not err.ambiguous:
                unsafe.append((payload["id"], end, err.rule))

    assert unsafe == []


@pytest.mark.parametrize(
    ("body", "rule", "ambiguous"),
    [
        # The subcode after the cut would have chosen 100/33 (invalid_request), not a
        # permission error: the reading stays open.
        (
            (
                '{"error":{"message":"Unsupported post request. Object with ID \'1\' does not '
                'exist, cannot be loaded due to missing permissions","code":100,'
            ),
            "100:permission",
            True,
        ),
        # Only a code row without siblings: nothing lost could change it.
        ('{"error":{"message":"(#131056) pair rate limit hit","code":131056,"err', "131056", False),
        # The message is cut, and 360dialog:disabled is tried before the usage limit.
        (
            '{"meta": {"httpCode": 400, "developerMessage": "You have exceeded the limit of 1 re',
            "360dialog:usage-limit",
            True,
        ),
        # A code cut in half is no code; the complete one in the message decides.
        ('{"error": {"message": "(#130429) Rate limit hit", "code": 1304', "130429", False),
        # No code survived at all: any row could have applied.
        ('{"error": {"message": "Something failed", "type": "OAuthExc', "unknown", True),
    ],
    ids=["100-lost-subcode", "131056-complete", "360dialog-cut-message", "code-cut", "no-code"],
)
def test_cut_bodies_are_ambiguous_exactly_when_the_lost_part_could_decide(body, rule, ambiguous):
    """A cut body's error is ambiguous when a lost subcode, code or message end could decide."""
    err = from_response(400, body)

    assert (rule, ambiguous) == (err.rule, err.ambiguous)


@pytest.mark.parametrize(
    ("excerpt", "expected"),
    [
        ('{"error": {"code": "131056"', {"code": "131056"}),
        ('{"error": {"code": 131056', {}),
        ('{"error": {"error_code": 141000, "x', {"code": "141000"}),
        ('{"error": {"errorCode": "PARAM_INVALID"', {"code": "PARAM_INVALID"}),
        ('{"error": {"code": "PARAM_INV', {}),
        ('{"error": {"subcode": 463, "x', {"error_subcode": "463"}),
        ('{"meta": {"developer_message": "Internal', {"message": "Internal"}),
        ('{"error": {"message": "C\\u00f3digo incorrecto", "x', {"message": "Código incorrecto"}),
        ('{"error": {"message": "C\\u00f', {"message": "C"}),
        ('{"error": {"message": "https:\\/\\/example.com\\', {"message": "https://example.com"}),
    ],
    ids=[
        "quoted-number",
        "unquoted-number-cut",
        "health-error-code",
        "symbolic-code",
        "symbolic-code-cut",
        "debug-token-subcode",
        "360dialog-snake-case",
        "unicode-escape",
        "unicode-escape-cut",
        "escaped-slashes",
    ],
)
def test_salvage_reads_only_whole_values(excerpt, expected):
    """`salvage_truncated` keeps a value only when it is whole; the message may be a prefix."""
    found = _classify.salvage_truncated(excerpt) or {}
    found.pop(_classify.TEXT_CUT, None)

    assert expected == found


@pytest.mark.parametrize(
    "excerpt",
    ["[1, 2", '{"data": {"items": [1, 2', 'x{"error": 1', '{"' + "a" * 300 + '": 1, "error'],
    ids=["list", "no-error-key", "not-an-object", "marker-too-far"],
)
def test_salvage_ignores_bodies_that_are_no_error(excerpt):
    """A cut body without an error key near its start is not salvaged."""
    assert _classify.salvage_truncated(excerpt) is None


@given(
    message=st.text(max_size=120),
    ascii_only=st.booleans(),
    where=st.floats(min_value=0.0, max_value=1.0),
)
@example(message="\N{GRINNING FACE}", ascii_only=True, where=0.6)  # cut inside the pair
@_PROPERTY
def test_a_salvaged_message_is_a_prefix_of_the_real_one(message, ascii_only, where):
    """Cut anywhere, escapes and all, the message read back is the start of the real one."""
    encoded = json.dumps(message, ensure_ascii=ascii_only)
    excerpt = '{"error": {"message": ' + encoded[: max(1, int(len(encoded) * where))]

    found = _classify.salvage_truncated(excerpt) or {}

    assert message.startswith(found.get("message", ""))
    assert isinstance(found.get("message", "").encode("utf-8"), bytes)  # no half surrogate


@given(text=st.text(max_size=300))
@_PROPERTY
def test_salvage_never_raises(text):
    """Any text behind an error-looking start is salvaged or refused, never an exception."""
    for excerpt in (
        '{"error": {"message": "' + text,
        '{"meta": {"developerMessage": "' + text,
        text,
    ):
        found = _classify.salvage_truncated(excerpt)
        assert found is None or isinstance(found, dict)
        assert from_response(400, excerpt).category in CATEGORIES


# --- through the clients -------------------------------------------------------------------

_TOKEN = "EAAGtesttokenvalue0123456789abcdefABCDEF"
_PHONE = "106540352242922"
#: The issue's answers that come as an HTTP error (health_status answers 200 to a GET).
_ISSUE_ANSWERS = [
    p
    for p in RESPONSES
    if p["status"] >= 400
    and p["id"].startswith(("360dialog-400", "turn-", "ycloud-400", "136025-"))
]


def _content(body: Any) -> bytes:
    return (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode()


@pytest.mark.parametrize("payload", _ISSUE_ANSWERS, ids=[p["id"] for p in _ISSUE_ANSWERS])
def test_the_client_raises_what_the_classifier_says(payload, respx_mock):
    """A send answered with one of the issue's bodies raises its class and rule, token-free."""
    respx_mock.post(url__regex=r"/messages$").respond(
        payload["status"], content=_content(payload["body"])
    )

    with (
        WhatsAppClient(token=_TOKEN, phone_number_id=_PHONE) as client,
        pytest.raises(ApiError) as info,
    ):
        client.send_text("+16505076520", "hi")

    assert (payload["rule"], payload["category"]) == (info.value.rule, info.value.category)
    assert _TOKEN not in repr(info.value.to_dict())


@pytest.mark.anyio
@pytest.mark.parametrize("payload", _ISSUE_ANSWERS, ids=[p["id"] for p in _ISSUE_ANSWERS])
async def test_the_async_client_raises_what_the_classifier_says(payload, respx_mock):
    """The async client raises the same class and rule for the same body."""
    respx_mock.post(url__regex=r"/messages$").respond(
        payload["status"], content=_content(payload["body"])
    )

    async with AsyncWhatsAppClient(token=_TOKEN, phone_number_id=_PHONE) as client:
        with pytest.raises(ApiError) as info:
            await client.send_text("+16505076520", "hi")

    assert (payload["rule"], payload["category"]) == (info.value.rule, info.value.category)


# --- text any UTF-8 sink can write --------------------------------------------------------

#: Text with lone surrogates, which JSON's `\\udXXX` escapes can produce and UTF-8 cannot encode.
_SURROGATE_TEXT = st.lists(  # st.text() never draws a surrogate, so build the text by hand
    st.one_of(
        st.characters(),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
    ),
    max_size=60,
).map("".join)


@given(
    text=_SURROGATE_TEXT,
    field=st.sampled_from(
        ["message", "error_user_title", "error_user_msg", "type", "fbtrace_id", "title"]
    ),
    as_json_text=st.booleans(),
)
@_PROPERTY
def test_every_text_of_an_error_is_utf8(text, field, as_json_text):
    """A lone surrogate escape in any text field never reaches the error: it writes as UTF-8."""
    obj: dict[str, Any] = {"code": 100, "message": "x", "error_data": {"details": text}}
    obj[field] = text
    body: Any = {"error": obj}
    if as_json_text:
        body = json.dumps(body)  # ensure_ascii: a lone surrogate becomes a \\udXXX escape

    err = from_response(400, body)

    assert json.dumps(err.to_dict(), ensure_ascii=False).encode("utf-8")
    assert str(err).encode("utf-8")


def test_the_cli_classifies_a_lone_surrogate_escape(monkeypatch, capsys):
    """`wa-auth classify` answers a body with half an emoji as Meta's code says, not internal."""
    monkeypatch.setattr(
        "sys.stdin", io.StringIO('{"error": {"message": "bad \\ud83d", "code": 100}}')
    )

    code = cli_main(["classify"])

    out = json.loads(capsys.readouterr().out)
    assert (code, out["category"], out["error"]["message"]) == (9, "invalid_request", "bad \ufffd")
