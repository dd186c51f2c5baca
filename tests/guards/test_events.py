"""The `LoggingSubscriber`: which logger and level each event goes to, and what the record holds."""

from __future__ import annotations

import logging
import pickle

import pytest

from wa_auth.events import ApiCallFailed, AuthFailed, Events, LoggingSubscriber, TokenInvalidated


def _failed() -> AuthFailed:
    return AuthFailed(
        consumer="orders",
        token_fingerprint="sha256:0123456789ab",
        category="token_expired",
        operation="send_text",
        code=190,
        subcode=463,
        operator_action="Issue a new token.",
    )


def test_auth_failure_is_a_warning_on_the_auth_logger(caplog):
    """An auth failure logs one WARNING on `wa_auth.auth` with its fields as `key=value`."""
    caplog.set_level(logging.DEBUG, logger="wa_auth")
    Events(LoggingSubscriber()).emit(_failed())

    [record] = caplog.records
    assert record.name == "wa_auth.auth"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "auth.failed consumer=orders token_fingerprint=sha256:0123456789ab "
        "category=token_expired operation=send_text code=190 subcode=463"
    )
    assert record.wa_auth["operator_action"] == "Issue a new token."
    assert record.wa_auth["event"] == "auth.failed"
    # The record names the subscriber as its origin, as `Logger.log` would have found it.
    assert record.filename == "_hub.py"
    assert record.funcName == "__call__"


def test_other_events_go_to_their_loggers_and_levels(caplog):
    """Business failures go to `wa_auth.http` at WARNING; invalidations are INFO on auth."""
    caplog.set_level(logging.DEBUG, logger="wa_auth")
    hub = Events(LoggingSubscriber())
    hub.emit(ApiCallFailed(category="rate_limited", operation="send_text", retry_after=6.0))
    hub.emit(TokenInvalidated(token_fingerprint="sha256:0123456789ab", category="token_revoked"))

    got = [(r.name, r.levelno, r.getMessage().split()[0]) for r in caplog.records]
    assert got == [
        ("wa_auth.http", logging.WARNING, "api.failed"),
        ("wa_auth.auth", logging.INFO, "auth.token_invalidated"),
    ]


def test_disabled_level_builds_no_record(caplog):
    """Below the logger's level nothing is logged (and no record is built)."""
    caplog.set_level(logging.ERROR, logger="wa_auth")
    Events(LoggingSubscriber()).emit(_failed())
    assert caplog.records == []


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_record_survives_pickling(caplog, protocol):
    """A record can cross a process boundary (QueueHandler, SocketHandler) with its message."""
    caplog.set_level(logging.WARNING, logger="wa_auth")
    Events(LoggingSubscriber()).emit(_failed())
    [record] = caplog.records

    copy = pickle.loads(pickle.dumps(record, protocol))
    assert copy.getMessage() == record.getMessage()


def test_a_hub_wants_what_one_of_its_subscribers_would_use():
    """`wants(kind)`: a subscriber without `wants` takes everything; the logger asks its level."""
    from wa_auth.events import Counters, MessageDelivered

    auth, http = logging.getLogger("test.wants.auth"), logging.getLogger("test.wants.http")
    auth.setLevel(logging.WARNING)
    http.setLevel(logging.WARNING)
    logs = Events(LoggingSubscriber(auth, http))

    assert not Events().wants(MessageDelivered)
    assert not logs.wants(MessageDelivered)  # an INFO event, the logger at WARNING
    assert logs.wants(AuthFailed)
    assert logs.wants(ApiCallFailed)
    http.setLevel(logging.INFO)
    assert logs.wants(MessageDelivered)
    http.setLevel(logging.WARNING)
    assert Events(LoggingSubscriber(auth, http), Counters()).wants(MessageDelivered)
    assert Events(lambda event: None).wants(MessageDelivered)


def test_a_hub_asks_again_after_its_subscribers_change():
    """What a hub learnt about a kind is forgotten when a subscriber comes or goes."""
    from wa_auth.events import MessageDelivered

    http = logging.getLogger("test.wants.changes")
    http.setLevel(logging.WARNING)
    events = Events(LoggingSubscriber(http, http))
    assert not events.wants(MessageDelivered)

    unsubscribe = events.subscribe(lambda event: None)  # no `wants`: takes everything
    assert events.wants(MessageDelivered)
    unsubscribe()
    assert not events.wants(MessageDelivered)
    http.setLevel(logging.INFO)  # the logger's answer is asked each time
    assert events.wants(MessageDelivered)


def test_a_delivered_send_builds_its_event_only_for_a_listener(wa_sandbox):
    """A guard's delivered message reaches a listener, and costs nothing without one."""
    import wa_auth
    from wa_auth.events import MessageDelivered
    from wa_auth.guards import Guard
    from wa_auth.intents import Intent

    seen: list[object] = []
    for events in (Events(seen.append), Events()):
        with wa_auth.WhatsAppClient(
            transport="stdlib",
            token=wa_sandbox.issue_token(),
            base_url=wa_sandbox.base_url,
            phone_number_id=wa_sandbox.phone_number_id,
        ) as client:
            guard = Guard(client, events=events)
            assert guard.send(Intent.text("+15551234567", "hi")).ok
    assert [type(e) for e in seen if isinstance(e, MessageDelivered)] == [MessageDelivered]
