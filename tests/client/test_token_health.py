"""`client.token_health()` against the sandbox: validity, expiry, scopes, WABA targets, cache."""

from __future__ import annotations

import pytest

from wa_auth._client import AsyncWhatsAppClient, WhatsAppClient
from wa_auth.errors import TokenRevokedError
from wa_auth.events import Events
from wa_auth.models import TokenHealth
from wa_auth.providers import StaticTokenProvider, Token

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox():
    from wa_auth.sandbox import Sandbox

    with Sandbox() as sb:
        yield sb


def _client(sb, token, **kw):
    return WhatsAppClient(
        token=token,
        phone_number_id=sb.phone_number_id,
        business_account_id=sb.business_account_id,
        base_url=sb.base_url,
        events=Events(),
        **kw,
    )


def test_healthy_token(sandbox):
    """A valid system-user token with both scopes reports healthy, with its fingerprint."""
    token = sandbox.issue_token(expires_in=7200)
    with _client(sandbox, token) as client:
        health = client.token_health()
    assert isinstance(health, TokenHealth)
    assert health.valid
    assert health.can_message
    assert health.can_manage
    assert health.missing_messaging_scopes == () == health.missing_management_scopes
    assert health.waba_in_scope is True
    assert health.token_fingerprint == Token(token).fingerprint
    assert health.expires_in is not None
    assert 0 < health.expires_in <= 7200
    assert health.token_type
    assert token not in repr(health)
    assert token not in str(health.to_dict())


def test_cached_with_ttl(sandbox):
    """A second call within the TTL asks Meta nothing; `refresh=True` asks again."""
    token = sandbox.issue_token()
    with _client(sandbox, token) as client:
        client.token_health()
        before = len(sandbox.requests())
        client.token_health()
        assert len(sandbox.requests()) == before
        client.token_health(refresh=True)
        assert len(sandbox.requests()) == before + 1


@pytest.mark.parametrize(
    ("scopes", "missing_messaging", "missing_management"),
    [
        (["whatsapp_business_management"], ("whatsapp_business_messaging",), ()),
        (["whatsapp_business_messaging"], (), ("whatsapp_business_management",)),
    ],
    ids=["no-messaging", "no-management"],
)
def test_missing_scopes(sandbox, scopes, missing_messaging, missing_management):
    """Missing messaging or management scopes are named."""
    token = sandbox.issue_token(scopes=scopes)
    with _client(sandbox, token) as client:
        health = client.token_health()
    assert health.missing_messaging_scopes == missing_messaging
    assert health.missing_management_scopes == missing_management


def test_waba_not_in_granular_targets(sandbox):
    """A token scoped to another WABA reports `waba_in_scope=False`."""
    token = sandbox.issue_token(allowed_wabas=["999999999999999"])
    with _client(
        sandbox, token, app_token_provider=StaticTokenProvider(sandbox.app_token)
    ) as client:
        health = client.token_health()
    assert health.waba_in_scope is False
    assert not health.can_message


def test_revoked_token_with_app_token(sandbox):
    """With an app token, a revoked token is inspected and reported invalid with Meta's reason."""
    token = sandbox.issue_token()
    sandbox.set_token_state(token, "revoked_password_changed")
    with _client(
        sandbox, token, app_token_provider=StaticTokenProvider(sandbox.app_token)
    ) as client:
        health = client.token_health()
        assert not health.valid
        assert health.error
        # The category docs/providers.md promises, and the verdict: later sends fail fast.
        assert health.error_category == "token_revoked"
        assert client.verdicts.get(Token(token).fingerprint) is not None
        before = len(sandbox.requests())
        with pytest.raises(TokenRevokedError):
            client.send_text("+15551234567", "hi")
        assert len(sandbox.requests()) == before


@pytest.mark.parametrize(
    ("state", "category"),
    [("expired", "token_expired"), ("revoked_deauthorized", "token_revoked")],
)
def test_app_token_reports_the_category(sandbox, state, category):
    """With an app token, an expired or revoked token reports its category, as without one."""
    token = sandbox.issue_token()
    sandbox.set_token_state(token, state)
    with _client(sandbox, token, app_token_provider=sandbox.app_token) as client:
        health = client.token_health()
    assert (health.valid, health.error_category) == (False, category)


def test_refresh_asks_meta_despite_a_verdict(sandbox):
    """`refresh=True` asks Meta again even with a verdict; a valid answer drops the verdict."""
    token = sandbox.issue_token()
    sandbox.set_token_state(token, "expired")
    with _client(sandbox, token) as client:
        assert client.token_health().error_category == "token_expired"
        sandbox.set_token_state(token, "valid")  # the sandbox can do what Meta never does
        before = len(sandbox.requests())
        assert client.token_health().error_category == "token_expired"  # cached
        assert len(sandbox.requests()) == before
        fresh = client.token_health(refresh=True)
        assert len(sandbox.requests()) == before + 1
        assert fresh.valid
        assert client.verdicts.get(Token(token).fingerprint) is None
        client.send_text("+15551234567", "sent again")


def test_revoked_token_without_app_token(sandbox):
    """Without an app token, a revoked token reports invalid with the classified category."""
    token = sandbox.issue_token()
    sandbox.set_token_state(token, "expired")
    with _client(sandbox, token) as client:
        health = client.token_health()
        assert not health.valid
        assert health.error_category == "token_expired"
        before = len(sandbox.requests())
        again = client.token_health()  # cached: no request
        assert len(sandbox.requests()) == before
        again = client.token_health(refresh=True)  # asks Meta again, verdict or not
        assert len(sandbox.requests()) == before + 1
    assert again.error_category == "token_expired"
    assert token not in (health.error or "")


async def test_async_token_health(sandbox):
    """The async client reports the same health."""
    token = sandbox.issue_token()
    async with AsyncWhatsAppClient(
        token=token,
        phone_number_id=sandbox.phone_number_id,
        business_account_id=sandbox.business_account_id,
        base_url=sandbox.base_url,
        events=Events(),
    ) as client:
        health = await client.token_health()
    assert health.valid
    assert health.can_message
