"""The receiver's events reach every subscriber: logging, Counters and Prometheus, secret-free."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest

from wa_auth.events import Counters, Events, LoggingSubscriber
from wa_auth.webhooks import (
    MemoryWebhookLedger,
    MessageStatus,
    WebhookAccepted,
    admit,
    parse,
    verify_signature,
)

SECRET = "0123456789abcdef0123456789abcdef"


def test_counters_snapshot_takes_a_category_that_is_sometimes_none():
    """One event name with and without a category (a status that failed or not) is counted."""
    counters = Counters()
    counters(WebhookAccepted(type="status", key="a"))
    counters(WebhookAccepted(type="status", key="b", category="invalid_request"))
    counters(WebhookAccepted(type="status", key="c"))

    assert counters.snapshot() == {"webhook.accepted": 2, "webhook.accepted:invalid_request": 1}


def _delivery() -> tuple[bytes, str]:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "9"},
                            "messages": [
                                {
                                    "id": "wamid.in",
                                    "from": "5",
                                    "type": "text",
                                    "text": {"body": "secret plan"},
                                }
                            ],
                            "statuses": [
                                {
                                    "id": "wamid.out",
                                    "status": "failed",
                                    "errors": [{"code": 131047, "title": "Re-engagement message"}],
                                }
                            ],
                        },
                    },
                    {"field": "brand_new", "value": {"x": 1}},
                ],
            }
        ],
    }
    body = json.dumps(payload).encode()
    return body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_a_delivery_logs_its_outcomes_without_text_or_secret(caplog):
    """Verified, accepted (with the failed status's category), unknown: logged, no text, no secret."""
    events = Events(LoggingSubscriber())
    body, header = _delivery()
    ledger = MemoryWebhookLedger()
    with caplog.at_level(logging.INFO, logger="wa_auth"):
        verify_signature(body, header, SECRET, events=events)
        for event in parse(body, events=events):
            admit(event, ledger, events=events)

    names = [r.wa_auth["event"] for r in caplog.records]
    assert names == [
        "webhook.verified",
        "webhook.unknown",
        "webhook.accepted",
        "webhook.accepted",
        "webhook.accepted",
    ]
    accepted = [r.wa_auth for r in caplog.records if r.wa_auth["event"] == "webhook.accepted"]
    assert {a.get("category") for a in accepted} == {None, "invalid_request"}
    text = caplog.text + json.dumps([r.wa_auth for r in caplog.records], default=str)
    assert "secret plan" not in text
    assert SECRET not in text


def test_a_status_event_has_no_text_fields():
    """The accepted event of a status holds ids and its status, nothing of the payload's text."""
    seen = []
    admit(
        MessageStatus(id="wamid.x", status="read", key="status:wamid.x:read", raw={"t": "hi"}),
        MemoryWebhookLedger(),
        events=Events(seen.append),
    )
    assert set(seen[0].to_dict()) == {
        "consumer",
        "token_fingerprint",
        "at",
        "type",
        "key",
        "message_id",
        "status",
        "phone_number_id",
        "business_account_id",
        "category",
        "event",
    }


def test_prometheus_counts_webhook_events():
    """PrometheusSubscriber exports wa_auth_events_total for each webhook event."""
    prometheus = pytest.importorskip("prometheus_client")
    from wa_auth.prometheus import PrometheusSubscriber

    subscriber = PrometheusSubscriber()
    events = Events(subscriber)
    body, header = _delivery()
    verify_signature(body, header, SECRET, events=events)
    ledger = MemoryWebhookLedger()
    for event in parse(body, events=events):
        admit(event, ledger, events=events)
        admit(event, ledger, events=events)

    text = prometheus.generate_latest(subscriber.registry).decode()
    assert 'wa_auth_events_total{category="",event="webhook.verified"} 1.0' in text
    assert 'wa_auth_events_total{category="invalid_request",event="webhook.accepted"} 1.0' in text
    assert 'wa_auth_events_total{category="",event="webhook.duplicate"} 3.0' in text
    assert SECRET not in text
