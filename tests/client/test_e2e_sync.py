"""End to end: the sync client against the sandbox, for every token, account and number state
and every fault (`tests/cases/e2e.py`); the sandbox's payloads are Meta's literal ones, never
the client's table. Every test runs over both transports, httpx's and the stdlib's."""

from __future__ import annotations

import sys
import time

import pytest

import wa_auth
from cases import case_id
from cases.e2e import SEND_FAILURES, STRING_CODES, TO, Rotating
from helpers import raised
from wa_auth import testing
from wa_auth.providers import Token

# The plugin's fixtures, for runs where its pytest11 entry point is not installed.
wa_sandbox_server = testing.wa_sandbox_server
wa_sandbox = testing.wa_sandbox


#: The transport of this test's clients: set for each test by the `transport` fixture.
_TRANSPORT = "httpx"


@pytest.fixture(autouse=True, params=["httpx", "stdlib"])
def transport(request, monkeypatch):
    """Run each test over httpx and over the standard library's `http.client`."""
    monkeypatch.setattr(sys.modules[__name__], "_TRANSPORT", request.param)
    return request.param


def _client(sb, token, **kw):
    return wa_auth.WhatsAppClient(
        transport=_TRANSPORT,
        base_url=sb.base_url,
        token=token,
        phone_number_id=sb.phone_number_id,
        business_account_id=sb.business_account_id,
        **kw,
    )


@pytest.mark.parametrize("case", SEND_FAILURES, ids=case_id)
def test_send_failure_is_classified(wa_sandbox, case):
    """Each state and fault of the sandbox surfaces as its class, category and retry policy."""
    token = case.setup(wa_sandbox)
    with _client(wa_sandbox, token) as client:
        for i in range(case.sends):
            client.send_text(TO, f"fill {i}")
        err = raised(case.cls, lambda: client.send_text(TO, "hello", idempotency_key="key-1"))
    assert (err.category, err.retryable, err.retry_after) == (
        case.category,
        case.retryable,
        case.retry_after,
    )
    assert (err.http_status, err.code, err.subcode) == (case.http_status, case.code, case.subcode)
    assert err.token_fingerprint == Token(token).fingerprint
    assert err.operator_action
    assert len(wa_sandbox.messages()) == case.sends
    assert "key-1" not in {m.idempotency_key for m in wa_sandbox.messages()}
    last = wa_sandbox.requests()[-1]
    assert (last.status, last.code, last.token_fingerprint) == (
        case.http_status,
        case.code,
        err.token_fingerprint,
    )
    assert last.outcome == ("fault" if case.category == "transient" else "error")


@pytest.mark.parametrize("case", STRING_CODES, ids=case_id)
def test_code_as_string_is_classified_the_same(wa_sandbox, case):
    """A BSP's string `code` and `error_subcode` classify like Meta's integers."""
    token = case.setup(wa_sandbox)
    wa_sandbox.set_faults(**{**wa_sandbox.info()["faults"], "code_as_string": True})
    with _client(wa_sandbox, token) as client:
        err = raised(case.cls, lambda: client.send_text(TO, "hello"))
    assert (err.code, err.subcode) == (case.code, case.subcode)


def test_accepted_send_is_recorded_once(wa_sandbox):
    """An accepted send is recorded with its id, recipient, payload, key and fingerprint."""
    token = wa_sandbox.issue_token()
    with _client(wa_sandbox, token) as client:
        result = client.send_text(TO, "hello", idempotency_key="order-42")
    (message,) = wa_sandbox.messages()
    assert message.id == result.message_id
    assert (message.recipient, message.type, message.idempotency_key) == (TO, "text", "order-42")
    assert message.payload["text"]["body"] == "hello"
    assert message.token_fingerprint == Token(token).fingerprint
    assert result.wa_id == "15551234567"


def test_every_endpoint_works(wa_sandbox):
    """Every endpoint of the client gets Meta's success shape from the sandbox."""
    with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        sent = [
            client.send_template(TO, "hello_world", "en_US"),
            client.send_media(TO, "image", link="https://example.com/a.png", caption="c"),
            client.send_interactive_buttons(TO, "pick", [("a", "A"), ("b", "B")]),
            client.send_interactive_list(
                TO, "pick", "open", [{"title": "s", "rows": [("r1", "R1")]}]
            ),
            client.send_reaction(TO, "wamid.X", "👍"),
            client.send_location(TO, 52.5, 13.4, name="Berlin"),
        ]
        assert sent[0].message_status == "accepted"
        assert client.mark_as_read("wamid.X").success
        upload = client.upload_media(b"\x89PNG data", "image/png", filename="a.png")
        info = client.get_media_url(upload.media_id)
        assert info.url.startswith(wa_sandbox.base_url)
        assert (info.mime_type, info.file_size) == ("image/png", 9)
        assert client.download_media(upload.media_id).content == b"\x89PNG data"
        assert client.delete_media(upload.media_id).success
        with pytest.raises(wa_auth.InvalidRequestError) as info_err:
            client.get_media_url(upload.media_id)
        assert (info_err.value.code, info_err.value.subcode) == (100, 33)
        assert client.get_phone_number().platform_type == "CLOUD_API"
        page = client.list_phone_numbers(limit=1)
        rest = client.list_phone_numbers(limit=1, after=page.after)
        assert [p.id for p in page.items + rest.items] == list(wa_sandbox.phone_number_ids)
        assert rest.after is None
        assert client.get_business_profile().vertical == "PROF_SERVICES"
        names = [t.name for t in client.list_templates(limit=10).items]
        assert "hello_world" in names
        token_info = client.debug_token()
        assert (token_info.is_valid, token_info.type) == (True, "SYSTEM_USER")
    assert [m.type for m in wa_sandbox.messages()] == [
        "template", "image", "interactive", "interactive", "reaction", "location",
    ]  # fmt: skip
    assert [m.id for m in wa_sandbox.messages()] == [s.message_id for s in sent]


@pytest.mark.parametrize(
    ("state", "variant", "subcode"),
    [
        pytest.param("expired", None, 463, id="expired"),
        pytest.param("expired", "no_subcode", None, id="expired-no-subcode"),
        pytest.param("revoked_password_changed", None, 460, id="password-changed"),
        pytest.param("revoked_deauthorized", None, 458, id="deauthorized"),
        pytest.param("revoked_logged_out", None, 467, id="logged-out"),
    ],
)
def test_debug_token_reports_an_invalid_token_as_a_result(wa_sandbox, state, variant, subcode):
    """debug_token on a dead token answers is_valid=False with data.error, not an exception."""
    dead = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(dead, state, variant=variant)
    with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        info = client.debug_token(dead)
    assert info.is_valid is False
    assert info.error is not None
    assert (info.error.code, info.error.subcode) == (190, subcode)


def test_debug_token_of_garbage_is_invalid(wa_sandbox):
    """An input token the sandbox never issued is reported invalid with code 190."""
    with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        info = client.debug_token("garbage")
    assert info.is_valid is False
    assert info.error is not None
    assert info.error.code == 190


@pytest.mark.parametrize(
    ("kw", "idempotent"),
    [
        pytest.param({"drop_rate": 1.0}, False, id="send-dropped-before"),
        pytest.param({"drop_rate": 1.0, "drop_after_accept": True}, False, id="send-dropped-after-accept"),
    ],
)  # fmt: skip
def test_dropped_send_is_maybe_delivered(wa_sandbox, kw, idempotent):
    """A send whose connection drops is a TransportError that may have been delivered."""
    wa_sandbox.set_faults(**kw)
    with (
        _client(wa_sandbox, wa_sandbox.issue_token()) as client,
        pytest.raises(wa_auth.TransportError) as info,
    ):
        client.send_text(TO, "hello", idempotency_key="k")
    err = info.value
    assert (err.category, err.maybe_delivered, err.retryable) == ("transient", True, False)
    assert wa_sandbox.requests()[-1].outcome == "dropped"
    after = kw.get("drop_after_accept", False)
    assert [m.idempotency_key for m in wa_sandbox.messages()] == (["k"] if after else [])


def test_dropped_read_is_retryable(wa_sandbox):
    """A GET whose connection drops is a retryable TransportError that delivered nothing."""
    wa_sandbox.set_faults(drop_rate=1.0)
    with (
        _client(wa_sandbox, wa_sandbox.issue_token()) as client,
        pytest.raises(wa_auth.TransportError) as info,
    ):
        client.get_phone_number()
    assert (info.value.retryable, info.value.maybe_delivered) == (True, False)


def test_latency_is_added(wa_sandbox):
    """The latency fault delays the answer without failing it."""
    wa_sandbox.set_faults(latency=0.2)
    with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        started = time.perf_counter()
        client.send_text(TO, "slow")
        assert time.perf_counter() - started >= 0.2
    assert len(wa_sandbox.messages()) == 1


def test_flaky_share_is_deterministic_under_the_seed(wa_sandbox):
    """Half the sends fail with 5xx codes, in the same order after every reset."""

    def run():
        wa_sandbox.reset()
        wa_sandbox.set_faults(error_rate=0.5)
        outcomes = []
        with _client(wa_sandbox, wa_sandbox.demo_tokens()["system_user"]) as client:
            for i in range(20):
                try:
                    client.send_text(TO, f"n{i}")
                    outcomes.append("ok")
                except wa_auth.TransientError as exc:
                    outcomes.append(exc.code)
        return outcomes

    first = run()
    assert first == run()
    assert {"ok"} < set(first) <= {"ok", 1, 2, 131000, 131016}
    assert first.count("ok") == len(wa_sandbox.messages())


def test_rate_limit_window_moves_with_the_clock(wa_sandbox):
    """After a 130429 the next second's window accepts again, without sleeping."""
    wa_sandbox.set_limits(throughput=1)
    with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        client.send_text(TO, "one")
        with pytest.raises(wa_auth.RateLimitError):
            client.send_text(TO, "two")
        wa_sandbox.advance(1)
        client.send_text(TO, "two")
    assert [m.payload["text"]["body"] for m in wa_sandbox.messages()] == ["one", "two"]


def test_dead_token_is_replaced_and_the_send_retried_once(wa_sandbox):
    """An expired token is invalidated and the same send goes out once with the fresh one."""
    old = wa_sandbox.issue_token(expires_in=10)
    fresh = wa_sandbox.issue_token()
    wa_sandbox.advance(11)
    with _client_provider(wa_sandbox, Rotating(old, fresh)) as client:
        result = client.send_text(TO, "hello", idempotency_key="once")
    (message,) = wa_sandbox.messages()
    assert (message.id, message.idempotency_key) == (result.message_id, "once")
    assert message.token_fingerprint == Token(fresh).fingerprint
    first, second = wa_sandbox.requests()
    assert (first.status, first.token_fingerprint) == (401, Token(old).fingerprint)
    assert (second.status, second.token_fingerprint) == (200, Token(fresh).fingerprint)


def test_new_token_does_not_help_a_locked_account(wa_sandbox):
    """A locked account fails the send without burning the next token."""
    wa_sandbox.set_account_state("locked")
    provider = Rotating(wa_sandbox.issue_token(), wa_sandbox.issue_token())
    with (
        _client_provider(wa_sandbox, provider) as client,
        pytest.raises(wa_auth.AccountStateError),
    ):
        client.send_text(TO, "hello")
    assert len(wa_sandbox.requests()) == 1
    assert len(provider.tokens) == 2
    assert wa_sandbox.messages() == ()


def _client_provider(sb, provider):
    return wa_auth.WhatsAppClient(
        transport=_TRANSPORT,
        base_url=sb.base_url,
        token_provider=provider,
        phone_number_id=sb.phone_number_id,
    )
