"""`access_text` is `dumps(access_line(...))`, character for character (issue 19)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wa_auth._cli._output import access_line, access_text, dumps

_TEXT = st.none() | st.text()
_INT = st.integers() | st.booleans()


@given(
    ts=st.floats() | st.integers(-(10**12), 10**12),
    remote=_TEXT,
    method=st.text(),
    route=st.text(),
    status=_INT,
    seconds=st.floats() | st.integers(0, 10**6),
    request_bytes=_INT,
    response_bytes=_INT,
    intents=_INT,
    exit_code=st.none() | _INT,
    category=_TEXT,
)
def test_access_text_is_the_access_lines_json(**fields: Any) -> None:
    assert access_text(**fields) == dumps(access_line(**fields))


def test_access_text_of_a_plain_request() -> None:
    fields: dict[str, Any] = {
        "ts": 1765170000.1234567,
        "remote": "127.0.0.1",
        "method": "POST",
        "route": "/send",
        "status": 200,
        "seconds": 0.000812345,
        "request_bytes": 120,
        "response_bytes": 300,
        "intents": 1,
        "exit_code": 0,
        "category": None,
    }
    assert access_text(**fields) == dumps(access_line(**fields))
    assert access_text(**{**fields, "remote": None, "category": 'a"\\\n\u2028\ud800'}) == dumps(
        access_line(**{**fields, "remote": None, "category": 'a"\\\n\u2028\ud800'})
    )
