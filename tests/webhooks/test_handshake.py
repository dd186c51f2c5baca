"""`handle_verification`: the GET subscription handshake, never signature-checked."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wa_auth.errors import ConfigurationError, WebhookSignatureError, WhatsAppError
from wa_auth.events import Events
from wa_auth.providers import StaticTokenProvider
from wa_auth.webhooks import (
    WebhookRejected,
    WebhookVerified,
    ahandle_verification,
    handle_verification,
)

TOKEN = "my-verify-token-2024"
QUERY = f"hub.mode=subscribe&hub.verify_token={TOKEN}&hub.challenge=1158201444"


def params(**changes):
    base = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_the_challenge_comes_back():
    """A subscribe request with the right token gets its challenge back."""
    assert handle_verification(params(), TOKEN) == "1158201444"


def test_parse_qs_lists_are_accepted():
    """The one-item lists of `parse_qs` (and a multidict's getall) are read as their value."""
    assert handle_verification(parse_qs(QUERY), TOKEN) == "1158201444"


def test_no_signature_is_needed():
    """The handshake carries no X-Hub-Signature-256 and is answered without one."""
    assert handle_verification(params(), StaticTokenProvider(TOKEN)) == "1158201444"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"hub.mode": None}, "wrong_mode"),
        ({"hub.mode": "unsubscribe"}, "wrong_mode"),
        ({"hub.verify_token": None}, "missing_token"),
        ({"hub.verify_token": ""}, "missing_token"),
        ({"hub.verify_token": "guess"}, "token_mismatch"),
        ({"hub.verify_token": [TOKEN, TOKEN]}, "missing_token"),
        ({"hub.challenge": None}, "missing_challenge"),
        ({"hub.challenge": "<b>x</b> y"}, "malformed_challenge"),
        ({"hub.challenge": "9" * 257}, "malformed_challenge"),
        ({"hub.challenge": "é"}, "malformed_challenge"),
    ],
    ids=[
        "no-mode",
        "unsubscribe",
        "no-token",
        "empty-token",
        "wrong-token",
        "two-tokens",
        "no-challenge",
        "markup-challenge",
        "long-challenge",
        "non-ascii-challenge",
    ],
)
def test_each_failure_names_its_check(changes, expected):
    """Every refusal is a WebhookSignatureError naming the check; no token in the text."""
    with pytest.raises(WebhookSignatureError) as caught:
        handle_verification(params(**changes), TOKEN)

    assert caught.value.reason == expected
    assert caught.value.category == "invalid_signature"
    assert TOKEN not in str(caught.value)
    assert "guess" not in str(caught.value)


def test_a_rotating_verify_token_accepts_either():
    """During a change of verify token, both the old and the new are accepted."""
    assert handle_verification(params(**{"hub.verify_token": "old"}), ["new", "old"]) == (
        "1158201444"
    )


def test_events_report_the_handshake(counters):
    """A handshake emits webhook.verified (check handshake) or webhook.rejected with its reason."""
    events = Events(counters)
    seen = []
    events.subscribe(seen.append)

    handle_verification(params(), TOKEN, events=events)
    with pytest.raises(WebhookSignatureError):
        handle_verification(params(**{"hub.verify_token": "guess"}), TOKEN, events=events)

    assert isinstance(seen[0], WebhookVerified)
    assert seen[0].check == "handshake"
    assert isinstance(seen[1], WebhookRejected)
    assert seen[1].reason == "token_mismatch"
    assert "guess" not in json.dumps([e.to_dict() for e in seen])


def test_params_that_are_not_a_mapping_are_a_configuration_error():
    """A query string passed where the parsed parameters belong is named."""
    with pytest.raises(ConfigurationError, match="params"):
        handle_verification(QUERY, TOKEN)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_async_form_awaits_the_provider():
    """`ahandle_verification` reads the provider with `aget_token()`."""
    assert await ahandle_verification(params(), StaticTokenProvider(TOKEN)) == "1158201444"


@given(
    query=st.dictionaries(
        st.sampled_from(["hub.mode", "hub.verify_token", "hub.challenge", "other"]),
        st.one_of(st.none(), st.text(), st.lists(st.text(), max_size=2), st.integers()),
    )
)
def test_any_query_is_a_typed_answer(query):
    """Any query: the challenge, or a WebhookSignatureError; never a traceback."""
    try:
        answer = handle_verification(query, TOKEN)
    except WhatsAppError as exc:
        error: WhatsAppError | None = exc
    else:
        error = None
        assert answer == query["hub.challenge"] or [answer] == query["hub.challenge"]
    assert error is None or isinstance(error, WebhookSignatureError)
