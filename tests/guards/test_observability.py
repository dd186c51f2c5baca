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


def test_prometheus_counts_each_label_set_on_its_own_series():
    """Each event lands on its label set's series, also once the series is known (issue 19).

    The subscriber keeps each label set's counter after the first event; a second set must
    not reuse the first one's, nor the calls counter the events counter's.
    """
    pytest.importorskip("prometheus_client")
    from wa_auth.events import MessageDelivered
    from wa_auth.prometheus import PrometheusSubscriber

    metrics = PrometheusSubscriber()
    for consumer in ("orders", "orders", "alerts"):
        metrics(MessageDelivered(consumer=consumer, phone_number_id="1", token_fingerprint="f"))
    text = metrics.exposition().decode()
    series = 'wa_auth_calls_total{{category="ok",consumer="{}",phone_number_id="1",token_fingerprint="f"}}'
    assert series.format("orders") + " 2.0" in text
    assert series.format("alerts") + " 1.0" in text
    assert 'wa_auth_events_total{category="",event="guard.delivered"} 3.0' in text


def test_prometheus_without_the_extra_names_it(monkeypatch):
    """Without prometheus_client the subscriber's ImportError names the extra."""
    import sys

    from wa_auth.prometheus import PrometheusSubscriber

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match="'prometheus' extra"):
        PrometheusSubscriber()


def test_prometheus_gauges_read_the_client_and_the_outbox_at_scrape_time(sandbox):
    """`exposition(client=, outbox=)` shows the token's validity and expiry and the outbox's
    rows and dead letters; without them those gauges have no sample at all (never a 0)."""
    pytest.importorskip("prometheus_client")
    from wa_auth.outbox import MemoryOutbox
    from wa_auth.prometheus import PrometheusSubscriber

    metrics = PrometheusSubscriber()
    assert "outbox" not in metrics.exposition().decode()
    assert "wa_auth_token" not in metrics.exposition().decode()
    token = sandbox.issue_token(expires_in=10 * 86400)
    box = MemoryOutbox()
    with wa_auth.WhatsAppClient(
        base_url=sandbox.base_url,
        token=token,
        phone_number_id=sandbox.phone_number_id,
        consumer="orders",
    ) as client:
        guard = Guard(client, outbox=box)
        sandbox.fail_next(131009)
        assert guard.send(Intent.text(TO, "hi")).category == "invalid_request"
        text = metrics.exposition(client=client, outbox=box).decode()
    fingerprint = Token(token).fingerprint
    labels = f'consumer="orders",token_fingerprint="{fingerprint}"'
    assert f"wa_auth_token_valid{{{labels}}} 1.0" in text
    expiry = sandbox.now() + 10 * 86400
    (line,) = [ln for ln in text.splitlines() if ln.startswith("wa_auth_token_expiry")]
    assert abs(float(line.split()[-1]) - expiry) < 60
    assert 'wa_auth_outbox_rows{state="failed"} 1.0' in text
    assert "wa_auth_outbox_dead_letters 1.0" in text
    assert token not in text


@pytest.mark.anyio
async def test_prometheus_aexposition_reads_an_async_client_and_survives_failures(sandbox):
    """`aexposition` reads an async client and outbox; a failing read is logged, the health
    keeps its last value, the outbox's gauges go away, and the scrape still answers."""
    pytest.importorskip("prometheus_client")
    from wa_auth.errors import OutboxError, TransportError
    from wa_auth.outbox import MemoryOutbox
    from wa_auth.prometheus import PrometheusSubscriber

    metrics = PrometheusSubscriber()
    box = MemoryOutbox()
    async with wa_auth.AsyncWhatsAppClient(
        base_url=sandbox.base_url,
        token=sandbox.issue_token(expires_in=3600),
        phone_number_id=sandbox.phone_number_id,
    ) as client:
        text = (await metrics.aexposition(client=client, outbox=box)).decode()
    assert 'wa_auth_token_valid{consumer="",' in text
    assert 'wa_auth_outbox_rows{state="pending"} 0.0' in text

    class Broken:
        consumer = "orders"

        async def token_health(self):
            raise TransportError("ConnectError: Meta is down", maybe_delivered=False)

        async def astats(self):
            raise OutboxError("the outbox is closed", kind="closed")

    broken = Broken()
    after = (await metrics.aexposition(client=broken, outbox=broken)).decode()
    assert 'wa_auth_token_valid{consumer="",' in after  # what was known stays
    assert "wa_auth_outbox" not in after  # counts that cannot be read are not shown stale
