"""End to end: the sync client against the sandbox, for every token, account and number state
and every fault; the sandbox's payloads are Meta's literal ones, never the client's table."""

from __future__ import annotations

import time

import pytest

import wa_auth
from wa_auth import testing
from wa_auth.providers import Token

# The plugin's fixtures, for runs where its pytest11 entry point is not installed.
wa_sandbox_server = testing.wa_sandbox_server
wa_sandbox = testing.wa_sandbox

TO = "+15551234567"


def _issue(**kw):
    return lambda sb: sb.issue_token(**kw)


def _state(state, variant=None):
    def setup(sb):
        token = sb.issue_token()
        sb.set_token_state(token, state, variant=variant)
        return token

    return setup


def _clock_expiry(sb):
    token = sb.issue_token(expires_in=60)
    sb.advance(61)
    return token


def _account(state, variant=None):
    def setup(sb):
        sb.set_account_state(state, variant=variant)
        return sb.issue_token()

    return setup


def _number(sb):
    sb.set_number_state(sb.phone_number_id, "not_registered")
    return sb.issue_token()


def _limits(**kw):
    def setup(sb):
        sb.set_limits(**kw)
        return sb.issue_token()

    return setup


def _faults(**kw):
    def setup(sb):
        sb.set_faults(**kw)
        return sb.issue_token()

    return setup


# (id, setup, error class, category, retryable, retry_after, http_status, code, subcode, sends)
# `sends` is how many successful sends come first (to fill a limit).
ERROR_CASES = [
    ("expired-463", _state("expired"), wa_auth.TokenExpiredError, "token_expired", False, None, 401, 190, 463, 0),
    ("expired-no-subcode", _state("expired", "no_subcode"), wa_auth.TokenExpiredError, "token_expired", False, None, 401, 190, None, 0),
    ("expired-by-clock", _clock_expiry, wa_auth.TokenExpiredError, "token_expired", False, None, 401, 190, 463, 0),
    ("password-changed-460", _state("revoked_password_changed"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, 460, 0),
    ("password-changed-no-subcode", _state("revoked_password_changed", "no_subcode"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    ("deauthorized-458", _state("revoked_deauthorized"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, 458, 0),
    ("deauthorized-no-subcode", _state("revoked_deauthorized", "no_subcode"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    ("logged-out-467", _state("revoked_logged_out"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, 467, 0),
    ("logged-out-no-subcode", _state("revoked_logged_out", "no_subcode"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    ("malformed", _state("malformed"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    ("unknown-token", lambda sb: "EAAnot-a-token-the-sandbox-issued", wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    ("missing-permission-10", _state("missing_permission"), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 10, None, 0),
    ("missing-permission-200", _state("missing_permission", "code_200"), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 200, None, 0),
    ("scope-missing-10", _issue(scopes=["whatsapp_business_management"]), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 10, None, 0),
    ("waba-not-assigned-200", _issue(allowed_wabas=["102999999999999"]), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 200, None, 0),
    ("number-not-assigned-200", _issue(allowed_phone_numbers=["109000000000002"]), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 200, None, 0),
    ("account-locked-131031", _account("locked"), wa_auth.AccountStateError, "account_state", False, None, 403, 131031, None, 0),
    ("account-restricted-368", _account("restricted"), wa_auth.AccountStateError, "account_state", False, 3600.0, 403, 368, None, 0),
    ("account-restricted-130497", _account("restricted", "code_130497"), wa_auth.AccountStateError, "account_state", False, None, 403, 130497, None, 0),
    ("account-payment-131042", _account("payment_issue"), wa_auth.AccountStateError, "account_state", False, 3600.0, 400, 131042, None, 0),
    ("account-maintenance-131057", _account("maintenance"), wa_auth.AccountStateError, "account_state", True, 300.0, 500, 131057, None, 0),
    ("number-not-registered-133010", _number, wa_auth.AccountStateError, "account_state", False, None, 400, 133010, None, 0),
    ("throughput-130429-retry-after", _limits(throughput=2), wa_auth.RateLimitError, "rate_limited", True, 1.0, 400, 130429, None, 2),
    ("throughput-130429-no-header", _limits(throughput=1, retry_after_header=False), wa_auth.RateLimitError, "rate_limited", True, 1.0, 400, 130429, None, 1),
    ("pair-131056-retry-after", _limits(pair_limit=1, pair_window=30), wa_auth.RateLimitError, "rate_limited", True, 30.0, 400, 131056, None, 1),
    ("pair-131056-no-header", _limits(pair_limit=2, retry_after_header=False), wa_auth.RateLimitError, "rate_limited", True, 6.0, 400, 131056, None, 2),
    ("app-usage-4", _limits(app_calls=2), wa_auth.RateLimitError, "rate_limited", True, 300.0, 400, 4, None, 2),
    ("flaky-500-code-1", _faults(error_rate=1.0, error_codes=[1]), wa_auth.TransientError, "transient", True, 1.0, 500, 1, None, 0),
    ("flaky-503-code-2", _faults(error_rate=1.0, error_codes=[2]), wa_auth.TransientError, "transient", True, 1.0, 503, 2, None, 0),
    ("flaky-500-code-131000", _faults(error_rate=1.0, error_codes=[131000]), wa_auth.TransientError, "transient", True, 1.0, 500, 131000, None, 0),
    ("flaky-503-code-131016", _faults(error_rate=1.0, error_codes=[131016]), wa_auth.TransientError, "transient", True, 2.0, 503, 131016, None, 0),
    ("proxy-html-502", _faults(html_502_rate=1.0), wa_auth.TransientError, "transient", True, 1.0, 502, None, None, 0),
]  # fmt: skip

# The same Meta errors re-wrapped by a BSP, with `code` (and `error_subcode`) as strings.
STRING_CODE_CASES = [
    ("expired-463", _state("expired"), wa_auth.TokenExpiredError, 190, 463),
    ("logged-out-467", _state("revoked_logged_out"), wa_auth.TokenRevokedError, 190, 467),
    ("locked-131031", _account("locked"), wa_auth.AccountStateError, 131031, None),
    ("flaky-131016", _faults(error_rate=1.0, error_codes=[131016]), wa_auth.TransientError, 131016, None),
]  # fmt: skip


def _client(sb, token, **kw):
    return wa_auth.WhatsAppClient(
        base_url=sb.base_url,
        token=token,
        phone_number_id=sb.phone_number_id,
        business_account_id=sb.business_account_id,
        **kw,
    )


@pytest.mark.parametrize("case", [pytest.param(case[1:], id=case[0]) for case in ERROR_CASES])
def test_send_failure_is_classified(wa_sandbox, case):
    """Each state and fault of the sandbox surfaces as its class, category and retry policy."""
    setup, cls, category, retryable, retry_after, status, code, subcode, sends = case
    token = setup(wa_sandbox)
    with _client(wa_sandbox, token) as client:
        for i in range(sends):
            client.send_text(TO, f"fill {i}")
        with pytest.raises(cls) as info:
            client.send_text(TO, "hello", idempotency_key="key-1")
    err = info.value
    assert (err.category, err.retryable, err.retry_after) == (category, retryable, retry_after)
    assert (err.http_status, err.code, err.subcode) == (status, code, subcode)
    assert err.token_fingerprint == Token(token).fingerprint
    assert err.operator_action
    assert len(wa_sandbox.messages()) == sends
    assert "key-1" not in {m.idempotency_key for m in wa_sandbox.messages()}
    last = wa_sandbox.requests()[-1]
    assert (last.status, last.code, last.token_fingerprint) == (status, code, err.token_fingerprint)
    assert last.outcome == ("fault" if category == "transient" else "error")


@pytest.mark.parametrize(
    ("setup", "cls", "code", "subcode"),
    [pytest.param(*case[1:], id=case[0]) for case in STRING_CODE_CASES],
)
def test_code_as_string_is_classified_the_same(wa_sandbox, setup, cls, code, subcode):
    """A BSP's string `code` and `error_subcode` classify like Meta's integers."""
    token = setup(wa_sandbox)
    wa_sandbox.set_faults(**{**wa_sandbox.info()["faults"], "code_as_string": True})
    with _client(wa_sandbox, token) as client, pytest.raises(cls) as info:
        client.send_text(TO, "hello")
    assert (info.value.code, info.value.subcode) == (code, subcode)


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


class _Rotating:
    """A provider that moves to its next token when told the current one is dead."""

    def __init__(self, *values):
        self.tokens = [Token(v) for v in values]

    def get_token(self):
        return self.tokens[0]

    async def aget_token(self):
        return self.tokens[0]

    def invalidate(self, token, reason):
        if len(self.tokens) > 1 and token == self.tokens[0]:
            self.tokens.pop(0)


def test_dead_token_is_replaced_and_the_send_retried_once(wa_sandbox):
    """An expired token is invalidated and the same send goes out once with the fresh one."""
    old = wa_sandbox.issue_token(expires_in=10)
    fresh = wa_sandbox.issue_token()
    wa_sandbox.advance(11)
    with _client_provider(wa_sandbox, _Rotating(old, fresh)) as client:
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
    provider = _Rotating(wa_sandbox.issue_token(), wa_sandbox.issue_token())
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
        base_url=sb.base_url, token_provider=provider, phone_number_id=sb.phone_number_id
    )
