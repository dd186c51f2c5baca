"""Caller input that cannot become a request is refused where it enters: `Intent` and the builders.

Half an emoji (a lone UTF-16 surrogate, what JavaScript's `JSON.stringify` writes for a string
cut inside an emoji), a NUL, a number where a boolean belongs, or a template component that is
not plain JSON: each is a `RequestValidationError` naming the field, at construction, in
`Intent.from_dict` and in `client.send_*`, so no batch meets it later as an encoding error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import attrs
import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wa_auth
from wa_auth._context import Context
from wa_auth._core import GetToken, Send
from wa_auth._endpoints import messages
from wa_auth.errors import RequestValidationError
from wa_auth.events import Events
from wa_auth.intents import Intent
from wa_auth.providers import StaticTokenProvider, Token

TO = "+15551234567"
HALF = "\ud83d"  # the first half of 😀 (U+1F600), alone
CUT = "Your code is 42 " + HALF
#: `wa_auth._validate.MAX_JSON_DEPTH`: JSON deeper than this is refused.
MAX_JSON_DEPTH = 64
TOKEN = Token("EAAGinputtoken0123456789abcdefghij")

#: Every text field of every kind, with half an emoji in it, and the name its error must carry.
UNENCODABLE = [
    pytest.param(lambda: Intent.text(TO, CUT), "text", id="text"),
    pytest.param(lambda: Intent.template(TO, "order" + HALF, "en_US"), "template name", id="template-name"),
    pytest.param(lambda: Intent.template(TO, "order", "en" + HALF), "template language", id="template-language"),
    pytest.param(lambda: Intent.media(TO, "image", link="https://x.test/a.png", caption=CUT), "caption", id="caption"),
    pytest.param(lambda: Intent.media(TO, "document", link="https://x.test/a" + HALF), "link", id="link"),
    pytest.param(lambda: Intent.media(TO, "document", media_id="1", filename="a" + HALF), "filename", id="filename"),
    pytest.param(lambda: Intent.buttons(TO, CUT, [("y", "Yes")]), "body", id="buttons-body"),
    pytest.param(lambda: Intent.buttons(TO, "Ok?", [("y", "Yes" + HALF)]), "button title", id="button-title"),
    pytest.param(lambda: Intent.buttons(TO, "Ok?", [("y" + HALF, "Yes")]), "button id", id="button-id"),
    pytest.param(lambda: Intent.list(TO, "Pick", "Slots", [{"rows": [("a", "10:00", CUT)]}]), "row description", id="row-description"),
    pytest.param(lambda: Intent.list(TO, "Pick", "Slots", [{"title": "T" + HALF, "rows": [("a", "b")]}]), "section title", id="section-title"),
    pytest.param(lambda: Intent.reaction(TO, "wamid.x", HALF), "emoji", id="emoji"),
    pytest.param(lambda: Intent.location(TO, 1, 2, name=CUT), "name", id="location-name"),
    pytest.param(lambda: Intent.text(TO, "hi", consumer="orders" + HALF), "consumer", id="consumer"),
    pytest.param(lambda: Intent.text(TO, "hi", idempotency_key="order-" + HALF), "idempotency_key", id="key"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "field"), UNENCODABLE)
def test_half_an_emoji_is_refused_at_construction(make, field):
    """A lone surrogate in any text field is refused when the intent is made, naming the field."""
    with pytest.raises(RequestValidationError) as caught:
        make()
    message = caught.value.message
    assert message.startswith(field), message
    assert "half of a character" in message
    assert caught.value.category == "invalid_request"


def test_from_dict_refuses_half_an_emoji_naming_the_field():
    """What `JSON.stringify` writes for a cut emoji is refused by `from_dict`, naming `text`."""
    data = json.loads('{"to": "+15551234567", "type": "text", "text": {"body": "hi \\ud83d"}}')
    with pytest.raises(RequestValidationError, match=r"^text object: text has half of a char"):
        Intent.from_dict(data)
    with pytest.raises(RequestValidationError, match=r"^consumer has half"):
        Intent.from_dict({"to": TO, "type": "text", "text": {"body": "x"}, "consumer": HALF})


def test_a_whole_emoji_and_other_planes_are_fine():
    """A whole emoji, a flag, a family and text of every script are sent as they are."""
    for text in (
        "😀",
        "🇩🇪",
        "👨‍👩‍👧",
        "日本語 – Ελληνικά – עברית",
        "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16"),
    ):
        assert Intent.text(TO, text).content["body"] == text  # fmt: skip


@pytest.mark.parametrize(
    "key",
    ["order\x00-1", "order\n1", "\x1f", "tab\there", "del\x7f"],
    ids=["nul", "newline", "unit-separator", "tab", "del"],
)
def test_an_idempotency_key_refuses_control_characters(key):
    """A NUL or another control character in an idempotency key is refused, by position."""
    with pytest.raises(RequestValidationError, match=r"^idempotency_key has a control character"):
        Intent.text(TO, "hi", idempotency_key=key)
    with pytest.raises(RequestValidationError, match=r"^idempotency_key has a control"):
        Intent.from_dict({"to": TO, "type": "text", "text": {"body": "x"}, "idempotency_key": key})


def test_a_nul_in_message_text_is_refused():
    """A NUL is never part of a message: it is refused in the text, naming the field."""
    with pytest.raises(
        RequestValidationError, match=r"^text has a NUL character \(U\+0000\) at position 2"
    ):
        Intent.text(TO, "hi\x00there")  # fmt: skip


@pytest.mark.parametrize("version", [True, 1.0, "1", None], ids=["true", "float", "string", "null"])
def test_v_must_be_the_integer_1(version):
    """`"v": true` (which equals 1 in Python) and friends are not the intent version."""
    data = {"v": version, "to": TO, "type": "text", "text": {"body": "x"}}
    with pytest.raises(RequestValidationError, match=r"^v must be the intent version"):
        Intent.from_dict(data)
    assert Intent.from_dict({**data, "v": 1}).to == TO


@pytest.mark.parametrize(
    "value", [math.nan, "false", 1, 0, "true", []], ids=["nan", "str-false", "one", "zero", "str-true", "list"]
)  # fmt: skip
def test_preview_url_must_be_a_boolean(value):
    """`preview_url: NaN` was sent as true, and `"false"` too: only true or false is taken."""
    data = {"to": TO, "type": "text", "text": {"body": "see https://x.test", "preview_url": value}}
    with pytest.raises(
        RequestValidationError, match=r"text object: preview_url must be true or false"
    ):
        Intent.from_dict(data)  # fmt: skip
    with pytest.raises(RequestValidationError, match=r"^preview_url must be true or false"):
        Intent.text(TO, "x", preview_url=value)
    assert (
        Intent.from_dict({**data, "text": {"body": "x", "preview_url": None}}).content[
            "preview_url"
        ]
        is False
    )


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("components", "message"),
    [
        pytest.param([{"type": "body", "parameters": [{"type": "text", "text": CUT}]}], r"components\[0\]\.parameters\[0\]\.text has half", id="surrogate"),
        pytest.param([{"type": "body", "x": math.nan}], r"components\[0\]\.x must be a finite number", id="nan"),
        pytest.param([{"type": "body", "x": math.inf}], r"components\[0\]\.x must be a finite number", id="inf"),
        pytest.param([{"type": "body", "x": {1, 2}}], r"components\[0\]\.x must be JSON .* got a set", id="set"),
        pytest.param([{"type": "body", 7: "x"}], r"components\[0\] has a key that is not a string", id="int-key"),
        pytest.param([{"type": "body", "x": _nested(MAX_JSON_DEPTH + 5)}], rf"nested deeper than {MAX_JSON_DEPTH}", id="deep"),
        pytest.param([{"type": "body", "x": _nested(5000)}], rf"nested deeper than {MAX_JSON_DEPTH}", id="very-deep"),
        pytest.param([{"type": "body", "x": "a\x00b"}], r"components\[0\]\.x has a NUL", id="nul"),
    ],
)  # fmt: skip
def test_template_components_must_be_plain_json(components, message):
    """Components are refused unless they are JSON that encodes: no NaN, set, surrogate, depth."""
    with pytest.raises(RequestValidationError, match=message):
        Intent.template(TO, "order", "en_US", components)
    data = {"to": TO, "type": "template", "template": {"name": "o", "language": {"code": "en"}}}
    data["template"]["components"] = components
    with pytest.raises(RequestValidationError, match=message):
        Intent.from_dict(data)


def test_components_and_rows_are_private_deep_copies():
    """Mutating a nested dict after the intent was made does not change what is sent."""
    params = [{"type": "text", "text": "42"}]
    components = [{"type": "body", "parameters": params}]
    intent = Intent.template(TO, "order", "en_US", components)
    params[0]["text"] = "changed"
    assert intent.content["components"][0]["parameters"][0]["text"] == "42"


def test_an_unknown_list_row_key_must_be_plain_json():
    """A list row's extra keys are passed on only if they are JSON that encodes."""
    rows = [{"id": "a", "title": "b", "extra": {1, 2}}]
    with pytest.raises(RequestValidationError, match=r"row\.extra must be JSON"):
        Intent.list(TO, "Pick", "Slots", [{"rows": rows}])
    rows = [{"id": "a", "title": "b", "extra": HALF}]
    with pytest.raises(RequestValidationError, match=r"row\.extra has half"):
        Intent.list(TO, "Pick", "Slots", [{"rows": rows}])


# --- the client refuses it too ------------------------------------------------------------------


@respx.mock(assert_all_called=False)
def test_send_text_refuses_half_an_emoji_before_any_request(respx_mock):
    """`client.send_text` refuses the same text with the same error: nothing goes out."""
    route = respx_mock.post(url__regex=r".*/messages").mock(
        return_value=httpx.Response(200, json={"messages": [{"id": "wamid.1"}]})
    )
    with wa_auth.WhatsAppClient(token="EAA" + "x" * 40, phone_number_id="1") as client:
        for call in (
            lambda: client.send_text(TO, CUT),
            lambda: client.send_text(TO, "ok", idempotency_key="k\x00"),
            lambda: client.send_template(TO, "order", "en_US", [{"x": math.nan}]),
            lambda: client.send_reaction(TO, "wamid." + HALF, "👍"),
            lambda: client.mark_as_read("wamid." + HALF),
            lambda: client.upload_media(b"x", "image/png", filename="a" + HALF + ".png"),
            lambda: client.upload_media(b"x", "image/png" + HALF),
        ):
            with pytest.raises(RequestValidationError):
                call()
    assert route.call_count == 0


# --- any input: an intent whose request encodes, or a typed error --------------------------------

#: Text of every kind: lone surrogates, NUL and other controls, astral characters, and long.
TEXT = st.one_of(
    st.text(),
    st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF)),
    st.text(st.sampled_from(["\ud83d", "\ude00", "\x00", "😀", "a", "\u2028", "\x1f"])),
    st.builds(lambda n, c: c * n, st.integers(0, 1_100_000), st.sampled_from(["a", "\ud800"])),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["body", "preview_url", "name", "language", "components", "id", "link", "caption",
          "filename", "type", "action", "message_id", "emoji", "latitude", "longitude", "address"]  # fmt: skip


#: A valid intent of every kind, as JSON: the starting points the strategy mutates.
VALID = [
    Intent.text(TO, "hi", preview_url=True, consumer="orders").to_dict(),
    Intent.template(TO, "order", "en_US", [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]).to_dict(),
    Intent.media(TO, "document", link="https://x.test/a.pdf", caption="c", filename="a.pdf").to_dict(),
    Intent.buttons(TO, "Ok?", [("y", "Yes"), ("n", "No")]).to_dict(),
    Intent.list(TO, "Pick", "Slots", [{"title": "T", "rows": [("a", "b", "c")]}]).to_dict(),
    Intent.reaction(TO, "wamid.x", "👍").to_dict(),
    Intent.location(TO, 1.5, 2.5, name="n", address="a").to_dict(),
]  # fmt: skip


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every path into *value* (dict keys and list indexes), the empty path included."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def intent_dicts(draw: st.DrawFn) -> object:
    """A valid intent's JSON with one place replaced (or one key added) by arbitrary data."""
    data = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    path = draw(st.sampled_from(_paths(data)))
    value = draw(JSONISH)
    if not path:
        return value
    *parents, last = path
    target = data
    for step in parents:
        target = target[step]
    if isinstance(target, dict) and draw(st.booleans()):
        last = draw(st.sampled_from([*FIELDS, "v", "idempotency_key", "consumer"]) | TEXT)
    target[last] = value
    return data


def _intent_or_error(make: Callable[[], Intent]) -> Intent | RequestValidationError:
    """The intent *make* returns, or the typed error it raised (any other error fails the test)."""
    try:
        return make()
    except RequestValidationError as exc:
        return exc


def _body(intent: Intent) -> bytes:
    """The request body `client.send(intent)` sends: the flow's `Send` effect, driven by hand."""
    ctx = Context(provider=StaticTokenProvider(TOKEN), events=Events(), phone_number_id="1")
    flow = messages.send(ctx, intent)
    assert isinstance(next(flow), GetToken)
    effect = flow.send(TOKEN)
    assert isinstance(effect, Send)
    return effect.request.content


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=intent_dicts())
def test_any_json_is_an_intent_whose_request_encodes_or_a_typed_error(data):
    """`from_dict` on arbitrary JSON-like data: an intent that encodes as UTF-8, or the typed error."""
    intent = _intent_or_error(lambda: Intent.from_dict(data))
    if isinstance(intent, RequestValidationError):
        assert intent.category == "invalid_request"
        return
    json.dumps(intent.to_dict(), ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert Intent.from_dict(json.loads(json.dumps(intent.to_dict()))) == intent
    if intent.expired():
        return  # refused by the send flow, by design
    body = _body(intent)
    assert json.loads(body)["to"] == intent.to  # fmt: skip


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=TEXT, key=st.none() | TEXT)
def test_any_text_is_a_text_intent_or_a_typed_error(text, key):
    """`Intent.text` on any string: an intent whose body and key encode, or the typed error."""
    intent = _intent_or_error(lambda: Intent.text(TO, text, idempotency_key=key))
    if isinstance(intent, RequestValidationError):
        assert intent.category == "invalid_request"
        return
    text.encode("utf-8")
    assert "\x00" not in text
    assert json.loads(_body(intent))["text"]["body"] == text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: Intent.from_dict({"to": TO, "type": "interactive", "interactive": {"type": "list", "body": {"text": "x"}, "action": {"button": "b", "sections": 5}}}), "sections must be a list, got an int", id="sections"),
        pytest.param(lambda: Intent.list(TO, "x", "b", [{"rows": 5}]), "a section's rows must be a list, got an int", id="rows"),
        pytest.param(lambda: Intent.buttons(TO, "x", 5), "buttons must be a list, got an int", id="buttons"),
        pytest.param(lambda: Intent.template(TO, "n", "en", 5), "components must be a list, got an int", id="components"),
    ],
)  # fmt: skip
def test_a_number_where_a_list_belongs_is_a_typed_error(make, message):
    """A number where Meta wants a list is a typed error, not a TypeError from `len()`."""
    with pytest.raises(RequestValidationError, match=message):
        make()


@attrs.frozen(kw_only=True)
class _Checked(Intent):
    """An `Intent` subclass: its `from_dict` goes through attrs' `__init__` and its checks."""


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([TO, "15551234567", "123", "+", "", "1" * 16, "order-1", "a\x00b", HALF, " "]),
    st.text(max_size=8),
    st.dictionaries(
        st.sampled_from(["body", "preview_url", "name", "link", "id"]), st.text(max_size=5)
    ),
)
_INTENT_KEYS = [
    "to",
    "idempotency_key",
    "phone_number_id",
    "consumer",
    "created_at",
    "not_after",
    "content",
]
#: A valid object of each kind, so that a drawn field is often the only bad one.
_CONTENT = {
    "text": {"body": "hi"},
    "image": {"link": "https://x.test/a.png"},
    "template": {"name": "order", "language": {"code": "en_US"}},
    "reaction": {"message_id": "wamid.x", "emoji": "\N{THUMBS UP SIGN}"},
}


@given(
    kind=st.sampled_from(sorted(_CONTENT)),
    fields=st.dictionaries(st.sampled_from(_INTENT_KEYS), _VALUES, max_size=2),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_from_dict_makes_the_intent_or_the_error_the_constructor_makes(kind, fields):
    """`Intent.from_dict` builds without `__init__`: same intent, or the same first error."""
    data = {"to": TO, "type": kind, kind: _CONTENT[kind], "idempotency_key": "k-1", "created_at": 5}
    data.update((kind if k == "content" else k, v) for k, v in fields.items())
    try:
        expected: object = attrs.asdict(_Checked.from_dict(data), recurse=False)
    except RequestValidationError as exc:
        expected = exc.message
    try:
        got: object = attrs.asdict(Intent.from_dict(data), recurse=False)
    except RequestValidationError as exc:
        got = exc.message
    if isinstance(got, dict) and isinstance(expected, dict):
        for made in ("idempotency_key", "created_at"):  # null: a new key, now
            if data[made] is None:
                del got[made], expected[made]
    assert got == expected


def test_from_dict_makes_a_key_and_a_time_when_absent():
    """Left out (or null), `idempotency_key` and `created_at` are made, as by the constructor."""
    intent = Intent.from_dict(
        {"to": TO, "type": "text", "text": {"body": "hi"}, "created_at": None}
    )
    assert isinstance(intent.idempotency_key, str)
    assert intent.idempotency_key
    assert isinstance(intent.created_at, float)
    assert type(intent) is Intent
    assert intent == Intent.text(
        TO, "hi", idempotency_key=intent.idempotency_key, created_at=intent.created_at
    )
