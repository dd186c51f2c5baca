"""Observability against the sandbox: calls counted by token, consumer and category, the
dependents of a token, the rotation report, and the Prometheus subscriber's series."""

from __future__ import annotations

import pytest

import wa_auth
from wa_auth.events import Counters, Events
from wa_auth.guards import Guard, RetryPolicy
from wa_auth.intents import Intent
from wa_auth.providers import RotatingTokenProvider, Token
from wa_auth.sandbox import Sandbox

TO = "+15551234567"


@pytest.fixture
def sandbox():
    with Sandbox(seed=5) as sb:
        yield sb


def test_dependents_show_which_workflows_use_a_token(sandbox):
    """Three consumers share one token: `dependents()` names each with its call count."""
    token = sandbox.issue_token()
    counters = Counters()
    with wa_auth.WhatsAppClient(
        base_url=sandbox.base_url,
        token=token,
        phone_number_id=sandbox.phone_number_id,
        events=Events(counters),
    ) as client:
        guard = Guard(client, policy=RetryPolicy(max_attempts=1))
        for consumer, n in (("orders", 3), ("otp", 2), ("marketing", 1)):
            for i in range(n):
                assert guard.send(Intent.text(TO, f"{consumer} {i}", consumer=consumer)).ok
        sandbox.set_token_state(token, "revoked_deauthorized")
        guard.send(Intent.text(TO, "after the revocation", consumer="otp"))
    fingerprint = Token(token).fingerprint
    assert counters.dependents(fingerprint) == {"orders": 3, "otp": 3, "marketing": 1}
    assert counters.calls(token_fingerprint=fingerprint, category="ok") == 6
    assert counters.calls(consumer="otp", category="token_revoked") == 1
    assert counters.by_token()[(fingerprint, "otp", "token_revoked")] == 1


def test_rotation_report_shows_failures_before_and_after_an_activation(sandbox):
    """A rotation to a bad token: the report's `after` window has the token failures."""
    good, bad, spare = sandbox.issue_token(), sandbox.issue_token(), sandbox.issue_token()
    sandbox.set_token_state(bad, "revoked_password_changed")
    counters = Counters()
    events = Events(counters)
    provider = RotatingTokenProvider([good, spare], events=events)
    with wa_auth.WhatsAppClient(
        base_url=sandbox.base_url,
        token_provider=provider,
        phone_number_id=sandbox.phone_number_id,
        events=events,
    ) as client:
        guard = Guard(client, policy=RetryPolicy(max_attempts=1))
        for i in range(4):
            assert guard.send(Intent.text(TO, f"before {i}", consumer="orders")).ok
        provider.rotate_to(bad)
        for i in range(4):
            guard.send(Intent.text(TO, f"after {i}", consumer="orders"))
    report = counters.rotation_report()
    # The activation, then the rollback that brought the good token back.
    assert [w.token_fingerprint for w in report] == [
        Token(bad).fingerprint,
        Token(good).fingerprint,
    ]
    assert report[1].previous_fingerprint == Token(bad).fingerprint
    window = report[0]
    assert window.token_fingerprint == Token(bad).fingerprint
    assert window.previous_fingerprint == Token(good).fingerprint
    assert (window.before.calls, window.before.failure_rate) == (4, 0.0)
    assert window.after.failures.get("token_revoked", 0) >= 1
    assert window.after.failure_rate is not None
    assert window.after.failure_rate > 0
    assert report[1].after.failures == {}  # after the rollback: the good token again
    assert window.to_dict()["after"]["failures"]["token_revoked"] >= 1


def test_prometheus_subscriber_exports_the_labelled_series(sandbox):
    """`PrometheusSubscriber` exports calls by category, consumer, number and fingerprint."""
    pytest.importorskip("prometheus_client")
    from wa_auth.prometheus import PrometheusSubscriber

    metrics = PrometheusSubscriber()
    token = sandbox.issue_token()
    with wa_auth.WhatsAppClient(
        base_url=sandbox.base_url,
        token=token,
        phone_number_id=sandbox.phone_number_id,
        events=Events(metrics),
    ) as client:
        guard = Guard(client)
        assert guard.send(Intent.text(TO, "hi", consumer="orders")).ok
        sandbox.set_token_state(token, "expired")
        assert guard.send(Intent.text(TO, "hi", consumer="orders")).category == "token_expired"
    text = metrics.exposition().decode()
    fingerprint = Token(token).fingerprint
    assert (
        f'wa_auth_calls_total{{category="ok",consumer="orders",'
        f'phone_number_id="{sandbox.phone_number_id}",token_fingerprint="{fingerprint}"}} 1.0'
    ) in text
    assert 'category="token_expired"' in text
    assert 'wa_auth_events_total{category="token_expired",event="guard.failed"} 1.0' in text
    assert token not in text


def test_prometheus_without_the_extra_names_it(monkeypatch):
    """Without prometheus_client the subscriber's ImportError names the extra."""
    import sys

    from wa_auth.prometheus import PrometheusSubscriber

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match="'prometheus' extra"):
        PrometheusSubscriber()
