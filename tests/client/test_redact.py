"""Fingerprints, redaction, and the one global thing: the filter on httpx's request log line."""

from __future__ import annotations

import hashlib
import logging
import re

import httpx
import pytest

from wa_auth import WhatsAppClient
from wa_auth._redact import (
    REDACTED,
    RedactingFilter,
    fingerprint,
    install_log_redaction,
    redact_text,
)

TOKEN = "EAAGredacttoken0123456789abcdefghijkl"
INSPECTED = "EAAGinspectedtoken0123456789abcdefgh"


def test_fingerprint_format():
    """A fingerprint is `sha256:` and the first 12 hex digits of the token's SHA-256."""
    fp = fingerprint(TOKEN)

    assert re.fullmatch(r"sha256:[0-9a-f]{12}", fp)
    assert fp == "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
    assert fingerprint(TOKEN) == fp
    assert fingerprint(TOKEN + "x") != fp


def test_fingerprint_of_odd_strings():
    """Empty and non-ASCII tokens fingerprint without errors."""
    assert fingerprint("").startswith("sha256:")
    assert fingerprint("tök\udc80en").startswith("sha256:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET /debug_token?input_token=EAAGabc&access_token=1|secret",
            "GET /debug_token?input_token=[REDACTED]&access_token=[REDACTED]",
        ),
        (
            "fb_exchange_token=abc&client_secret=def",
            "fb_exchange_token=[REDACTED]&client_secret=[REDACTED]",
        ),
        ("input_token%3DEAAGabc", "input_token%3D[REDACTED]"),
        ('{"access_token": "EAAGabc"}', '{"access_token": "[REDACTED]"}'),
        ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer [REDACTED]"),
        ('OAuth "Facebook Platform" "invalid_token"', 'OAuth "Facebook Platform" "invalid_token"'),
        (
            "Malformed access token EAAGm0PX4ZCpsBAabcdefghijklmnop",
            "Malformed access token [REDACTED]",
        ),
        ("app token 1234567890|abcdefghijklmnopqrstuvwxyz", "app token [REDACTED]"),
        ("(#131056) pair rate limit hit", "(#131056) pair rate limit hit"),
        (
            "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
            "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA",
        ),
    ],
    ids=[
        "query",
        "exchange",
        "encoded",
        "json",
        "bearer",
        "oauth-header",
        "meta-token",
        "app-token",
        "plain",
        "wamid",
    ],
)
def test_redact_text(text, expected):
    """Token-bearing parameters, bearer credentials and Meta-shaped tokens are redacted; the rest stays."""
    assert redact_text(text) == expected


def test_redact_text_named_secrets():
    """Explicit secrets are redacted wherever they appear."""
    assert redact_text(f"x{TOKEN}y {TOKEN}", TOKEN) == f"x{REDACTED}y {REDACTED}"
    assert redact_text("nothing", "") == "nothing"


def test_httpx_info_line_for_debug_token_is_redacted(respx_mock, caplog):
    """httpx's own INFO request line for debug_token shows input_token redacted."""
    caplog.set_level(logging.INFO, logger="httpx")
    respx_mock.get(url__startswith="https://graph.facebook.com/v23.0/debug_token").respond(
        200, json={"data": {"is_valid": True}}
    )

    with WhatsAppClient(token=TOKEN, phone_number_id="106540352242922") as client:
        client.debug_token(INSPECTED)
        client.debug_token()

    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(lines) == 2
    assert all("debug_token?input_token=[REDACTED]" in line for line in lines), lines
    assert INSPECTED not in caplog.text
    assert TOKEN not in caplog.text


def test_filter_redacts_args_and_message():
    """The filter rewrites both the format string and its arguments, and keeps the record."""
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "GET %s access_token=abc",
        (httpx.URL("https://x/?input_token=EAAGsecret"),),
        None,
    )

    assert RedactingFilter("t").filter(record)
    assert record.getMessage() == "GET https://x/?input_token=[REDACTED] access_token=[REDACTED]"


def test_filter_keeps_non_string_args():
    """Numbers and None pass through the filter untouched."""
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "%d %s", (200, None), None)
    RedactingFilter("t").filter(record)

    assert record.args == (200, None)


def _our_filters(name: str) -> list[logging.Filter]:
    return [
        f for f in logging.getLogger(name).filters if getattr(f, "name", None) == "wa_auth.redact"
    ]


def test_filter_installed_once():
    """However many clients are created, each of httpx and httpcore carries exactly one filter."""
    for _ in range(5):
        install_log_redaction()
        WhatsAppClient(token=TOKEN).close()

    assert len(_our_filters("httpx")) == 1
    assert len(_our_filters("httpcore")) == 1


def test_filter_reinstalled_after_removal():
    """If an application removes the filter, the next client puts it back (once)."""
    for flt in _our_filters("httpx"):
        logging.getLogger("httpx").removeFilter(flt)

    WhatsAppClient(token=TOKEN).close()
    WhatsAppClient(token=TOKEN).close()

    assert len(_our_filters("httpx")) == 1
