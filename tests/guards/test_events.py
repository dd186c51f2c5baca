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
    assert record.filename == "events.py"
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
