"""`wa_auth._json_input`: caller JSON read strictly, and what the front doors print from it.

Whatever text or bytes arrive, the parser returns a value or raises `JSONInputError` (a
`ValueError`): never `RecursionError`, never `UnicodeDecodeError`, never a silent guess. What
the CLI and `wa-auth serve` then print (classifications, answers) is valid UTF-8 JSON.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wa_auth import _json_input
from wa_auth._cli import _classify, _output
from wa_auth._json_input import JSONInputError, loads


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param('{"to": 1, "to": 2}', "the key 'to' appears twice in one object", id="duplicate"),
        pytest.param('{"a": {"b": 1, "b": 1}}', "the key 'b' appears twice", id="duplicate-nested"),
        pytest.param('{"' + "k" * 100 + '": 1, "' + "k" * 100 + '": 2}', "'" + "k" * 37 + "...'", id="long-key-cut"),
        pytest.param("NaN", "NaN is not JSON", id="nan"),
        pytest.param("[-Infinity]", "-Infinity is not JSON", id="infinity"),
        pytest.param("1e999", "the number 1e999 is out of range", id="huge"),
        pytest.param("[" * 65 + "]" * 65, "nested deeper than 64 levels", id="65"),
        pytest.param("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels", id="100000"),
        pytest.param('{"a": ' * 3000, "nested deeper than 64 levels", id="unclosed-3000"),
        pytest.param("{not json", "not valid JSON", id="syntax"),
        pytest.param(b'"na\xefve"', "not UTF-8: byte 0xef at column 4", id="latin-1"),
        pytest.param(b'\xef\xbb\xbf"na\xefve"', "not UTF-8: byte 0xef at column 4", id="latin-1-after-bom"),
    ],
)  # fmt: skip
def test_refused_json_says_why(data, message):
    """Each refusal is a JSONInputError (a ValueError) whose message says what was wrong."""
    with pytest.raises(JSONInputError, match=message.replace("[", r"\[")) as caught:
        loads(data)
    assert isinstance(caught.value, ValueError)
    assert caught.value.not_json is (message == "not valid JSON")


def test_what_json_means_is_read_as_python_does():
    """Strict JSON reads as `json.loads` reads it: 64 levels, BOM, UTF-16, astral characters."""
    assert loads("[" * 64 + "]" * 64) is not None
    assert loads(b'\xef\xbb\xbf{"a": "\\ud83d\\ude00"}') == {"a": "😀"}
    assert loads('{"a": 1}'.encode("utf-16")) == {"a": 1}
    assert loads('"\\ud83d"') == "\ud83d"  # refused where it is used, naming the field


TEXT = st.one_of(
    st.text(st.characters(codec=None)),
    st.integers(0, 3000).map(lambda n: "[" * n),
    st.integers(0, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.sampled_from(['{"a":1,"a":2}', "NaN", "1e999", '"\\ud800"', "\ufeff[]", "[1,]"]),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(TEXT, st.binary(), TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_any_input_is_a_value_or_a_json_input_error(data):
    """Any text or bytes: a value, or JSONInputError; nothing else escapes."""
    try:
        loads(data)
    except JSONInputError as exc:
        str(exc).encode("utf-8")  # the message itself is printable


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(st.characters(codec=None)), inner, max_size=4),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=JSONISH, status=st.none() | st.integers(100, 599))
def test_classify_of_any_json_prints_a_valid_line(value, status):
    """`classify` of any JSON value (peer text with surrogates too) makes a valid UTF-8 line."""
    source, error = _classify.classify(value, status)
    line = _classify.line(source, error)
    assert line["category"] != "internal"
    parsed = json.loads(_output.encode_line(line).decode("utf-8"))
    assert parsed["source"] == source


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(st.text(st.characters(codec=None)), JSONISH, max_size=5))
def test_an_answer_is_valid_utf8_json_for_any_data(obj):
    """`encode_line` (serve's answers) turns any data into UTF-8 JSON: U+FFFD and null at worst."""
    raw = _output.encode_line(obj)
    assert isinstance(json.loads(raw.decode("utf-8")), dict)


def test_the_depth_limit_is_the_validators():
    """One limit for the parser and the builders."""
    from wa_auth._validate import MAX_JSON_DEPTH

    assert _json_input.MAX_JSON_DEPTH == MAX_JSON_DEPTH == 64


# --- what the front doors print: one encoder, made once ------------------------------------------

_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(value=_JSON_VALUES, separators=st.sampled_from([(", ", ": "), (",", ":")]))
def test_the_encoder_made_once_writes_what_json_dumps_writes(value, separators):
    """`json_encoder` is `json.dumps(ensure_ascii=False, allow_nan=False)`, byte for byte."""
    from wa_auth._convert import json_encoder

    expected = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=separators)
    assert json_encoder(*separators)(value) == expected
    assert _output.dumps({"v": value}) == json.dumps({"v": value}, ensure_ascii=False)


def test_the_encoder_made_once_refuses_what_json_dumps_refuses():
    """A NaN is a ValueError (a line then prints null), an object JSON has no form for a TypeError."""
    from wa_auth._convert import json_encoder

    encode = json_encoder()
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode({"a": float("nan")})
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        encode({"a": object()})
    assert encode({"after": "a refusal"}) == '{"after": "a refusal"}'  # no state is left behind
    assert _output.dumps({"a": float("inf")}) == '{"a": null}'


@given(st.sampled_from([b"{", b"["]), st.binary(max_size=8))
def test_an_object_or_list_in_utf8_is_what_json_detect_encoding_says(
    first: bytes, rest: bytes
) -> None:
    """`loads`' shortcut (no `json.detect_encoding`) takes only bytes it calls UTF-8."""
    data = first + rest
    if data[1:2] != b"\x00":
        assert json.detect_encoding(data) == "utf-8"


def test_utf16_without_a_bom_starting_with_a_brace_is_still_utf16() -> None:
    assert loads('{"a": 1}'.encode("utf-16-le")) == {"a": 1}
    assert loads("[1]".encode("utf-32-le")) == [1]
