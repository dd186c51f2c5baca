r"""`verify_signature`: `X-Hub-Signature-256` checked over the exact raw bytes Meta sent.

Meta signs each POST with `sha256=` + the hex HMAC-SHA256 of the raw body, keyed with the app
secret. The check must run on the bytes as received: a framework that parses the JSON and
serialises it again changes them (Meta escapes non-ASCII as `\uXXXX` and writes no spaces),
and the HMAC no longer matches. Every failure is a `WebhookSignatureError` whose `reason` names
the check (`missing_header`, `wrong_scheme`, `malformed_signature`, `mismatch`); no message
shows a secret or the signature sent.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from wa_auth._signature_check import SIGNATURE_HEADER, match, plain_digest
from wa_auth.errors import WebhookSignatureError
from wa_auth.webhooks._observed import WebhookRejected, WebhookVerified
from wa_auth.webhooks._secret import aread, read

if TYPE_CHECKING:
    from wa_auth.events import Events
    from wa_auth.webhooks._secret import Secrets

__all__ = ["SIGNATURE_HEADER", "averify_signature", "check_signature", "verify_signature"]


def verify_signature(
    raw_body: bytes,
    header: str | None,
    app_secret: Secrets,
    *,
    events: Events | None = None,
) -> None:
    """Check a webhook POST's `X-Hub-Signature-256` against its raw body; return if it matches.

    Args:
        raw_body: The request body exactly as received (bytes), never a re-serialised JSON.
        header: The `X-Hub-Signature-256` header's value, or None when it is absent.
        app_secret: The app secret: its text, a `Token`, a token provider (read on each call),
            or a sequence of them for a rotation window (any may match).
        events: Where to emit `WebhookVerified` or `WebhookRejected`.

    Raises:
        WebhookSignatureError: The header is missing, not `sha256=` + 64 hex digits, or does
            not match; `reason` says which.
        ConfigurationError: *raw_body* is not bytes, or *app_secret* is blank or no secret.
        TokenUnavailableError: A provider could not produce the secret.
    """
    # The fast path: one secret as text, bytes and a well-formed header, as nearly every
    # delivery comes; anything else, or a mismatch, takes the full check and its errors.
    if type(app_secret) is str and type(raw_body) is bytes and events is None:
        sent = plain_digest(header)
        secret = app_secret.strip()
        if sent is not None and secret:
            key = secret.encode("utf-8", "surrogatepass")
            if hmac.compare_digest(hmac.digest(key, raw_body, hashlib.sha256), sent):
                return
    check_signature(raw_body, header, read(app_secret, argument="app_secret"), events)


async def averify_signature(
    raw_body: bytes,
    header: str | None,
    app_secret: Secrets,
    *,
    events: Events | None = None,
) -> None:
    """Check a webhook POST's signature, reading a provider's secret without blocking.

    The same check as `verify_signature`, with `await provider.aget_token()`.

    Raises:
        WebhookSignatureError: See `verify_signature`.
        ConfigurationError: See `verify_signature`.
        TokenUnavailableError: A provider could not produce the secret.
    """
    check_signature(raw_body, header, await aread(app_secret, argument="app_secret"), events)


def check_signature(
    raw_body: bytes, header: str | None, secrets: tuple[str, ...], events: Events | None
) -> None:
    """Check *header* against *raw_body* with each of *secrets*; the pure part of the two above.

    Raises:
        WebhookSignatureError: See `verify_signature`.
        ConfigurationError: *raw_body* is not bytes.
    """
    try:
        index = match(raw_body, header, secrets)
    except WebhookSignatureError as exc:
        if events is not None:
            events.emit(WebhookRejected(check="signature", reason=exc.reason))
        raise
    if events is not None:
        events.emit(
            WebhookVerified(check="signature", secret_index=index, body_bytes=len(raw_body))
        )
