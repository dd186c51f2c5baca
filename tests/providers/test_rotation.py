"""RotatingTokenProvider: fail-over, planned rotation with k-of-n rollback, fb_exchange_token.

Unit tests drive the provider directly; the end-to-end tests run the client against the
embedded sandbox (`wa_auth.sandbox.Sandbox`), revoking tokens mid-run.
"""

from __future__ import annotations

import httpx
import pytest

from helpers import graph_error
from wa_auth._client import AsyncWhatsAppClient, WhatsAppClient
from wa_auth.errors import (
    AllCandidatesRejectedError,
    InsufficientPermissionError,
    TokenRevokedError,
    TokenUnavailableError,
    TransientError,
)
from wa_auth.events import Counters, Events
from wa_auth.providers import (
    FbTokenExchanger,
    RotatingTokenProvider,
    RotationConfirmed,
    RotationRolledBack,
    StaticTokenProvider,
    Token,
    TokenActivated,
    TokenExchanged,
    TokenFailedOver,
    TokenVerdicts,
)

pytestmark = pytest.mark.anyio

A = "EAAGtokenAAAA0123456789abcdefABCDEFGHIJ"
B = "EAAGtokenBBBB0123456789abcdefABCDEFGHIJ"
C = "EAAGtokenCCCC0123456789abcdefABCDEFGHIJ"


REVOKED = graph_error(400, 190, 460, message="x")
PERMISSION = graph_error(400, 10, message="x")
TRANSIENT = graph_error(400, 2, message="x")


class Recorder:
    def __init__(self) -> None:
        self.events = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


def rotating(*candidates, **kwargs):
    rec = Recorder()
    return RotatingTokenProvider(candidates, events=Events(rec), **kwargs), rec


# --- fail-over ------------------------------------------------------------------------------------


def test_fails_over_on_token_class_failure():
    """An expired/revoked active token hands over to the next candidate, with an event."""
    provider, rec = rotating(A, B)
    first = provider.get_token()
    provider.invalidate(first, REVOKED)
    assert provider.get_token().reveal() == B
    (event,) = rec.of(TokenFailedOver)
    assert event.token_fingerprint == first.fingerprint
    assert event.category == "token_revoked"


@pytest.mark.parametrize("reason", [PERMISSION, TRANSIENT], ids=["permission", "transient"])
def test_never_fails_over_on_other_failures(reason):
    """Permission and transient failures keep the active token: another token cannot help."""
    provider, rec = rotating(A, B)
    provider.invalidate(provider.get_token(), reason)
    assert provider.get_token().reveal() == A
    assert rec.events == []


def test_skips_candidates_known_dead_and_raises_when_all_are():
    """Candidates with a verdict are skipped; with every one dead, AllCandidatesRejectedError."""
    store = TokenVerdicts()
    store.record(Token(B).fingerprint, REVOKED)
    provider, _ = rotating(A, B, C, verdicts=store)
    provider.invalidate(provider.get_token(), REVOKED)
    assert provider.get_token().reveal() == C
    store.record(Token(A).fingerprint, REVOKED)
    store.record(Token(C).fingerprint, REVOKED)
    with pytest.raises(AllCandidatesRejectedError) as info:
        provider.get_token()
    assert set(info.value.fingerprints) == {Token(x).fingerprint for x in (A, B, C)}
    assert info.value.__cause__.category == "token_revoked"


async def test_async_fail_over():
    """`aget_token` fails over the same way."""
    store = TokenVerdicts()
    provider, _ = rotating(A, B, verdicts=store)
    store.record(Token(A).fingerprint, REVOKED)
    assert (await provider.aget_token()).reveal() == B


def test_late_invalidation_of_an_old_token_does_nothing():
    """A failure reported for a token no longer active does not move the active one."""
    provider, _ = rotating(A, B, C)
    a = provider.get_token()
    provider.invalidate(a, REVOKED)
    b = provider.get_token()
    provider.invalidate(a, REVOKED)
    assert provider.get_token() == b


# --- planned rotation ----------------------------------------------------------------------------


def test_rotate_to_activates_and_confirms():
    """`rotate_to` activates the new token; a full window without failures confirms it."""
    provider, rec = rotating(A, window=5, max_failures=2)
    new = provider.rotate_to(B)
    assert provider.get_token() == new
    (activated,) = rec.of(TokenActivated)
    assert activated.previous_fingerprint == Token(A).fingerprint
    for _ in range(5):
        provider.observe_outcome(new, None)
    (confirmed,) = rec.of(RotationConfirmed)
    assert (confirmed.calls, confirmed.failures) == (5, 0)
    assert not provider.watching


def test_k_of_n_token_failures_roll_back():
    """When k of the last n calls fail with a token-class error, the previous token returns."""
    provider, rec = rotating(A, B, window=10, max_failures=3)
    provider.get_token()
    new = provider.rotate_to(1)
    for outcome in (None, REVOKED, None, REVOKED):
        provider.observe_outcome(new, outcome)
        provider.invalidate(new, outcome) if outcome else None
    assert provider.get_token() == new  # two failures: still watching
    provider.observe_outcome(new, REVOKED)
    assert provider.get_token().reveal() == A
    (rolled,) = rec.of(RotationRolledBack)
    assert (rolled.failures, rolled.calls) == (3, 5)
    assert rolled.restored_fingerprint == Token(A).fingerprint


@pytest.mark.parametrize("reason", [PERMISSION, TRANSIENT], ids=["permission", "transient"])
def test_transient_and_permission_failures_never_roll_back(reason):
    """However many permission or transient failures the new token sees, no rollback."""
    provider, rec = rotating(A, B, window=5, max_failures=2)
    new = provider.rotate_to(1)
    for _ in range(20):
        provider.observe_outcome(new, reason)
        provider.invalidate(new, reason)
    assert provider.get_token() == new
    assert rec.of(RotationRolledBack) == []
    assert provider.watching


def test_rotate_to_validates_window():
    """`max_failures` must lie within the window."""
    provider, _ = rotating(A, B)
    with pytest.raises(ValueError, match="max_failures"):
        provider.rotate_to(1, window=2, max_failures=3)


# --- fb_exchange_token (respx-free, MockTransport) -------------------------------------------------


def test_exchanger_posts_secrets_in_the_body_and_writes_back():
    """The exchange sends the secret in a POST form (not the URL) and calls the write-back hook."""
    seen = []

    def handle(request):
        seen.append(request)
        return httpx.Response(
            200, json={"access_token": B, "token_type": "bearer", "expires_in": 5183944}
        )

    written = []
    now = 1_000_000.0
    exchanger = FbTokenExchanger(
        "123",
        "app-secret-value",
        on_new_token=written.append,
        transport=httpx.MockTransport(handle),
        clock=lambda: now,
    )
    rec = Recorder()
    provider = RotatingTokenProvider(
        [Token(A, expires_at=now + 3600)], refresher=exchanger, events=Events(rec)
    )
    token = provider.get_token()
    assert token.reveal() == B
    assert token.expires_at == now + 5183944
    (request,) = seen
    assert request.method == "POST"
    assert "app-secret-value" not in str(request.url)
    assert A not in str(request.url)
    assert b"client_secret=app-secret-value" in request.content
    assert written == [token]
    (event,) = rec.of(TokenExchanged)
    assert event.persisted
    assert event.new_token_fingerprint == token.fingerprint


def test_exchange_failure_names_the_cause_without_secrets():
    """A refused exchange raises TokenUnavailableError whose chain holds no secret."""
    body = {
        "error": {
            "message": f"bad secret app-secret-value for {A}",
            "type": "OAuthException",
            "code": 1,
        }
    }
    exchanger = FbTokenExchanger(
        "123",
        "app-secret-value",
        transport=httpx.MockTransport(lambda r: httpx.Response(400, json=body)),
        clock=lambda: 0.0,
    )
    provider = RotatingTokenProvider(
        [Token(A, expires_at=3600)], refresher=exchanger, events=Events()
    )
    with pytest.raises(TokenUnavailableError) as info:
        provider.get_token()
    chain = info.value
    while chain is not None:
        assert "app-secret-value" not in str(chain)
        assert A not in str(chain)
        chain = chain.__cause__


# --- against the sandbox --------------------------------------------------------------------------


@pytest.fixture
def sandbox():
    from wa_auth.sandbox import Sandbox

    with Sandbox() as sb:
        yield sb


def _client(sb, provider, store, **kw):
    return WhatsAppClient(
        token_provider=provider,
        phone_number_id=sb.phone_number_id,
        base_url=sb.base_url,
        verdicts=store,
        events=Events(),
        **kw,
    )


def test_sandbox_failover_when_active_token_is_revoked(sandbox):
    """A token revoked mid-run: the failing call is retried once with the standby and succeeds."""
    old, standby = sandbox.issue_token(), sandbox.issue_token()
    store = TokenVerdicts()
    provider, rec = rotating(old, standby, verdicts=store)
    with _client(sandbox, provider, store) as client:
        client.send_text("15551234567", "one")
        sandbox.set_token_state(old, "revoked_password_changed")
        client.send_text("15551234567", "two")
        client.send_text("15551234567", "three")
    assert len(sandbox.messages()) == 3
    assert len(rec.of(TokenFailedOver)) == 1
    assert store.get(Token(old).fingerprint).category == "token_revoked"


def test_sandbox_rotation_rolls_back_after_k_of_n(sandbox):
    """A planned rotation to a token revoked mid-run rolls back after k failed calls."""
    old, new = sandbox.issue_token(), sandbox.issue_token()
    store = TokenVerdicts()
    provider, rec = rotating(old, verdicts=store, window=10, max_failures=3)
    sent_ok = failed = 0
    with _client(sandbox, provider, store) as client:
        client.send_text("15551234567", "before")
        provider.rotate_to(new)
        client.send_text("15551234567", "with new")
        sandbox.set_token_state(new, "revoked_deauthorized")
        for _ in range(6):
            try:
                client.send_text("15551234567", "hi")
                sent_ok += 1
            except TokenRevokedError:
                failed += 1
    (rolled,) = rec.of(RotationRolledBack)
    assert rolled.failures == 3
    assert failed == 2  # the third failure rolls back and its call is retried with the old token
    assert sent_ok == 4
    assert provider.get_token().reveal() == old
    # Only one request went out with the dead token: the verdict failed the others fast.
    dead = [
        r
        for r in sandbox.requests()
        if getattr(r, "token_fingerprint", None) == Token(new).fingerprint
    ]
    assert len(dead) in (0, 2)  # 0 when the sandbox does not record fingerprints


def test_sandbox_transient_failures_do_not_roll_back(sandbox):
    """Transient faults during a watched rotation never roll it back."""
    old, new = sandbox.issue_token(), sandbox.issue_token()
    store = TokenVerdicts()
    provider, rec = rotating(old, verdicts=store, window=10, max_failures=2)
    with _client(sandbox, provider, store) as client:
        provider.rotate_to(new)
        sandbox.set_faults(error_rate=1.0)
        for _ in range(5):
            with pytest.raises(TransientError):
                client.send_text("15551234567", "hi")
        sandbox.set_faults()
        client.send_text("15551234567", "hi")
    assert rec.of(RotationRolledBack) == []
    assert provider.get_token().reveal() == new


def test_sandbox_permission_failures_do_not_roll_back(sandbox):
    """Permission failures of the new token never roll back (another token cannot fix them)."""
    old, new = sandbox.issue_token(), sandbox.issue_token()
    store = TokenVerdicts()
    provider, rec = rotating(old, verdicts=store, window=10, max_failures=2)
    with _client(sandbox, provider, store) as client:
        provider.rotate_to(new)
        sandbox.set_token_state(new, "missing_permission")
        for _ in range(5):
            with pytest.raises(InsufficientPermissionError):
                client.send_text("15551234567", "hi")
    assert rec.of(RotationRolledBack) == []
    assert len(store) == 0


async def test_sandbox_async_rotation_rollback(sandbox):
    """The async client drives the same rollback."""
    old, new = sandbox.issue_token(), sandbox.issue_token()
    store = TokenVerdicts()
    provider, rec = rotating(old, verdicts=store, window=4, max_failures=1)
    async with AsyncWhatsAppClient(
        token_provider=provider,
        phone_number_id=sandbox.phone_number_id,
        base_url=sandbox.base_url,
        verdicts=store,
        events=Events(Counters()),
    ) as client:
        await provider.arotate_to(new)
        sandbox.set_token_state(new, "expired")
        result = await client.send_text("15551234567", "hi")  # fails, rolls back, retried
    assert result.message_id
    assert len(rec.of(RotationRolledBack)) == 1


def test_sandbox_fb_exchange_token(sandbox):
    """A user token near expiry is exchanged at the sandbox and the new one sends."""
    user = sandbox.issue_token(kind="user", expires_in=3600)
    written = []
    exchanger = FbTokenExchanger(
        sandbox.app_id,
        StaticTokenProvider(sandbox.app_secret),
        on_new_token=written.append,
        base_url=sandbox.base_url,
        clock=sandbox.now,
    )
    store = TokenVerdicts()
    provider = RotatingTokenProvider(
        [Token(user, expires_at=sandbox.now() + 3600)],
        refresher=exchanger,
        verdicts=store,
        events=Events(),
    )
    with _client(sandbox, provider, store) as client:
        client.send_text("15551234567", "hi")
    (new,) = written
    assert new.reveal() != user
    assert new.expires_at > sandbox.now() + 50 * 86400


# --- one event per real switch (issue 9) ----------------------------------------------------------


def test_two_dead_candidates_log_one_failover():
    """With both candidates dead, one event for the one real switch, none for dead ends."""
    store = TokenVerdicts()
    provider, rec = rotating(A, B, verdicts=store)
    a = provider.get_token()
    store.record(a.fingerprint, REVOKED)
    provider.invalidate(a, REVOKED)
    b = provider.get_token()
    assert b.reveal() == B
    store.record(b.fingerprint, REVOKED)
    provider.invalidate(b, REVOKED)
    for _ in range(3):
        with pytest.raises(AllCandidatesRejectedError) as info:
            provider.get_token()
        assert set(info.value.fingerprints) == {a.fingerprint, b.fingerprint}
    (event,) = rec.of(TokenFailedOver)
    assert event.token_fingerprint == a.fingerprint
    assert provider.active == 1


def test_failover_skips_known_dead_candidates_in_one_event():
    """Past a dead standby to the third candidate: one event, from the token that failed."""
    store = TokenVerdicts()
    store.record(Token(B).fingerprint, REVOKED)
    provider, rec = rotating(A, B, C, verdicts=store)
    a = provider.get_token()
    provider.invalidate(a, REVOKED)
    assert provider.get_token().reveal() == C
    (event,) = rec.of(TokenFailedOver)
    assert (event.token_fingerprint, event.category) == (a.fingerprint, "token_revoked")


def test_operator_invalidation_of_a_single_candidate_raises_without_a_switch():
    """An explicit invalidation of the only candidate: AllCandidatesRejectedError, no event."""
    provider, rec = rotating(A)
    provider.invalidate(provider.get_token(), "leaked")
    with pytest.raises(AllCandidatesRejectedError) as info:
        provider.get_token()
    assert info.value.__cause__ is None
    assert rec.of(TokenFailedOver) == []


def test_sandbox_two_revoked_candidates_log_one_failover(sandbox):
    """Both tokens revoked at the sandbox: sends fail, and `auth.token_failover` is logged once."""
    first, standby = sandbox.issue_token(), sandbox.issue_token()
    store = TokenVerdicts()
    provider, rec = rotating(first, standby, verdicts=store)
    with _client(sandbox, provider, store) as client:
        client.send_text("15551234567", "ok")
        sandbox.set_token_state(first, "revoked_password_changed")
        sandbox.set_token_state(standby, "revoked_password_changed")
        with pytest.raises(TokenRevokedError):
            client.send_text("15551234567", "both dead")
        for _ in range(3):
            with pytest.raises((TokenRevokedError, AllCandidatesRejectedError)):
                client.send_text("15551234567", "still dead")
    (event,) = rec.of(TokenFailedOver)
    assert event.token_fingerprint == Token(first).fingerprint


async def test_sandbox_two_revoked_candidates_log_one_failover_async(sandbox):
    """The async client and `aget_token`: one event for the one switch as well."""
    first, standby = sandbox.issue_token(), sandbox.issue_token()
    store = TokenVerdicts()
    provider, rec = rotating(first, standby, verdicts=store)
    async with AsyncWhatsAppClient(
        token_provider=provider,
        phone_number_id=sandbox.phone_number_id,
        base_url=sandbox.base_url,
        verdicts=store,
        events=Events(),
    ) as client:
        sandbox.set_token_state(first, "revoked_password_changed")
        sandbox.set_token_state(standby, "revoked_password_changed")
        for _ in range(4):
            with pytest.raises((TokenRevokedError, AllCandidatesRejectedError)):
                await client.send_text("15551234567", "dead")
    assert len(rec.of(TokenFailedOver)) == 1


# --- anything that is a provider, or a token string (issue 9) -------------------------------------


def test_candidates_and_app_secret_refuse_non_providers_at_construction():
    """A candidate or app secret that is neither provider nor token fails at construction."""
    with pytest.raises(ValueError, match=r"candidates must be a token provider .* got a dict"):
        RotatingTokenProvider([A, {"token": B}])
    with pytest.raises(ValueError, match=r"app_secret must be a token provider .* got a int"):
        FbTokenExchanger("123", 42)
    provider, _ = rotating(A)
    with pytest.raises(ValueError, match="got a bytes"):
        provider.rotate_to(B.encode())


def test_exchanger_refuses_a_token_a_header_cannot_carry():
    """An exchanged token with a zero-width space or a NaN lifetime is refused, token-free."""
    answers = iter(
        [
            httpx.Response(200, json={"access_token": B[:4] + "\u200b" + B[4:]}),
            httpx.Response(
                200, content=b'{"access_token": "' + B.encode() + b'", "expires_in": NaN}'
            ),
        ]
    )
    exchanger = FbTokenExchanger(
        "123",
        "app-secret-value",
        transport=httpx.MockTransport(lambda r: next(answers)),
        clock=lambda: 1_000_000.0,
    )
    for words in (r"U\+200B", "expires_in that is not a finite number"):
        with pytest.raises(TokenUnavailableError, match=words) as info:
            exchanger.exchange(Token(A, expires_at=1_000_000.0 + 3600))
        assert B[5:] not in str(info.value)


def test_exchanged_file_candidate_sees_a_fixed_file_at_once(tmp_path):
    """A file candidate behind the exchanger: a token written after a failure is used at once."""
    from wa_auth.providers import FileTokenProvider

    path = tmp_path / "token"
    path.write_text(A + "\n")
    exchanger = FbTokenExchanger(
        "123", "app-secret-value", transport=httpx.MockTransport(lambda r: httpx.Response(500))
    )
    provider, _ = rotating(FileTokenProvider(path, check_interval=60), refresher=exchanger)
    a = provider.get_token()
    provider.invalidate(a, REVOKED)
    with pytest.raises(AllCandidatesRejectedError):
        provider.get_token()  # the file still holds A: nothing newer
    tmp = tmp_path / "token.tmp"
    tmp.write_text(B + "\n")
    tmp.replace(path)
    provider.invalidate(a, REVOKED)  # the next verdict fast-fail
    assert provider.get_token().reveal() == B


def test_rotation_events_live_in_events_and_stay_importable_from_providers():
    """The rotation events are `wa_auth.events` classes, re-exported by `wa_auth.providers`."""
    import attrs

    from wa_auth import events, providers
    from wa_auth.providers._rotating import DEFAULT_ROLLBACK_FAILURES, DEFAULT_ROLLBACK_WINDOW

    for name in (
        "TokenActivated",
        "RotationConfirmed",
        "RotationRolledBack",
        "TokenFailedOver",
        "TokenExchanged",
    ):
        assert getattr(providers, name) is getattr(events, name)
    assert attrs.fields(TokenActivated).window.default == DEFAULT_ROLLBACK_WINDOW
    assert attrs.fields(TokenActivated).max_failures.default == DEFAULT_ROLLBACK_FAILURES
