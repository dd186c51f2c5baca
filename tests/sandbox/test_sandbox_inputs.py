"""The sandbox's request parsing on hostile bodies, over real sockets on 127.0.0.1.

JSON nested a hundred thousand deep used to raise `RecursionError` in the request's thread: a
traceback on stderr and a dropped connection, which a client reads as "maybe delivered". Any
body now gets an HTTP answer, and the sandbox keeps serving.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wa_auth.sandbox import Sandbox
from wa_auth.sandbox._checks import loads_strict

TO = "+15551234567"
#: `wa_auth.sandbox._checks.MAX_JSON_DEPTH`: the sandbox refuses JSON nested deeper.
MAX_JSON_DEPTH = 256


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=9) as sb:
        yield sb


@pytest.fixture(scope="module")
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    token = sandbox.issue_token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=30) as client:
        yield client


def _send(http: httpx.Client, sandbox: Sandbox, body: bytes) -> httpx.Response:
    return http.post(f"/v23.0/{sandbox.phone_number_id}/messages", content=body)


def _ok(http: httpx.Client, sandbox: Sandbox) -> None:
    """The sandbox still serves: a plain send is accepted."""
    body = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "hi"}}
    assert _send(http, sandbox, json.dumps(body).encode()).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 5000 + b"1" + b"}" * 5000,
        b'{"messaging_product": "whatsapp", "to": "+15551234567", "type": "text", "text": {"body": "x"}, "x": ' + b"[" * 300 + b"]" * 300 + b"}",
    ],
    ids=["array-100000", "object-5000", "300-inside-a-send"],
)  # fmt: skip
def test_deep_json_is_a_400_and_the_sandbox_keeps_serving(http, sandbox, body):
    """JSON nested too deep is Meta's 400 for a body that is not a JSON object, not a drop."""
    before = len(sandbox.messages())
    answer = _send(http, sandbox, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["error_data"]["details"]) == (
        100,
        "The request body is not a JSON object",
    )
    assert len(sandbox.messages()) == before
    _ok(http, sandbox)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"scopes": ' + b"[" * 300 + b"]" * 300 + b"}"],
    ids=["100000", "300-in-a-value"],
)
def test_deep_json_to_the_admin_api_is_a_400(http, sandbox, body):
    """The admin API answers JSON nested too deep with a 400 naming the limit."""
    answer = http.post("/_sandbox/issue_token", content=body)
    assert answer.status_code == 400
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in answer.json()["error"]["message"]
    _ok(http, sandbox)


BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(st.characters(codec=None)).map(lambda t: json.dumps({"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": t}}).encode()),
    st.integers(0, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b'{"a": NaN}', b"1e999", b'"\\ud800"', b"\xff\xfe{", b"\x00", b"{" * 2000]),
)  # fmt: skip


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES)
def test_any_body_gets_an_answer(http, sandbox, body):
    """Any bytes posted to /messages get an HTTP answer of JSON; none drops the connection."""
    answer = _send(http, sandbox, body)
    assert 200 <= answer.status_code < 500
    answer.json()


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(),
        st.integers(0, 5000).map(lambda n: "[" * n + "]" * n),
        st.binary().map(lambda b: b.decode("latin-1")),
    )
)
def test_loads_strict_raises_only_value_error(text):
    """`loads_strict` returns a value or raises ValueError: never RecursionError."""
    with contextlib.suppress(ValueError):
        loads_strict(text)
