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
from typing import TYPE_CHECKING, Final

from wa_auth._redact import fingerprint
from wa_auth.errors import ConfigurationError, WebhookSignatureError
from wa_auth.webhooks._observed import WebhookRejected, WebhookVerified
from wa_auth.webhooks._secret import aread, read

if TYPE_CHECKING:
    from wa_auth.events import Events
    from wa_auth.webhooks._secret import Secrets

__all__ = ["SIGNATURE_HEADER", "averify_signature", "check_signature", "verify_signature"]

#: The header Meta signs each webhook POST with.
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
_SCHEME: Final = "sha256"
#: A SHA-256 digest in hex.
_HEX_DIGITS: Final = 64
#: The longest scheme name repeated in a message (only letters and digits are ever shown).
_SHOWN_SCHEME: Final = 16
_DIGEST_BYTES: Final = 32
#: `sha256=` and the digest's hex digits, the length of a header as Meta writes it.
_PLAIN_LENGTH: Final = len("sha256=") + _HEX_DIGITS
_HEX: Final = frozenset("0123456789abcdefABCDEF")


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
        sent = _plain_digest(header)
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
        index = _match(raw_body, header, secrets)
    except WebhookSignatureError as exc:
        if events is not None:
            events.emit(WebhookRejected(check="signature", reason=exc.reason))
        raise
    if events is not None:
        events.emit(
            WebhookVerified(check="signature", secret_index=index, body_bytes=len(raw_body))
        )


def _match(raw_body: bytes, header: str | None, secrets: tuple[str, ...]) -> int:
    """Return the index of the secret whose HMAC of *raw_body* is *header*'s digest."""
    if not isinstance(raw_body, (bytes, bytearray, memoryview)):
        raise ConfigurationError(
            f"raw_body must be the request's raw bytes, got a {type(raw_body).__name__}: "
            "a decoded or re-serialised body does not match Meta's signature"
        )
    sent = _digest(header)
    for index, secret in enumerate(secrets):
        key = secret.encode("utf-8", "surrogatepass")
        if hmac.compare_digest(hmac.digest(key, raw_body, hashlib.sha256), sent):
            return index
    tried = ", ".join(fingerprint(s) for s in secrets)
    raise WebhookSignatureError(
        f"{SIGNATURE_HEADER} does not match the HMAC-SHA256 of the raw body with the app "
        f"secret ({tried}): the secret is another app's or was rotated, or the body was "
        "changed (parsed and serialised again) before the check",
        reason="mismatch",
    )


def _plain_digest(header: object) -> bytes | None:
    """Return the digest of a header that is exactly `sha256=` + 64 hex digits, else None."""
    if type(header) is str and len(header) == _PLAIN_LENGTH and header.startswith("sha256="):
        try:
            sent = bytes.fromhex(header[len("sha256=") :])
        except ValueError:
            return None
        # fromhex skips whitespace between pairs: 32 bytes means 64 hex digits and no space.
        return sent if len(sent) == _DIGEST_BYTES else None
    return None


def _digest(header: object) -> bytes:
    """Return the 32-byte digest a `sha256=<hex>` header carries."""
    if header is None or (isinstance(header, (str, bytes)) and not header.strip()):
        raise WebhookSignatureError(
            f"the request has no {SIGNATURE_HEADER} header: Meta signs every webhook POST "
            "(the GET handshake is not signed; use handle_verification for it)",
            reason="missing_header",
        )
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not isinstance(header, str):
        raise ConfigurationError(
            f"header must be the {SIGNATURE_HEADER} value as a string or None, "
            f"got a {type(header).__name__}"
        )
    scheme, sep, value = header.strip().partition("=")
    if not sep or scheme.strip().lower() != _SCHEME:
        shown = scheme.strip()
        named = (
            repr(shown)
            if sep and shown.isascii() and shown.isalnum() and len(shown) <= _SHOWN_SCHEME
            else "no scheme"
        )
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} has {named}, not sha256=<hex>",
            reason="wrong_scheme",
        )
    value = value.strip()
    if len(value) != _HEX_DIGITS or not _HEX.issuperset(value):
        raise WebhookSignatureError(
            f"{SIGNATURE_HEADER} is not sha256= followed by {_HEX_DIGITS} hexadecimal digits "
            f"({len(value)} characters after the scheme)",
            reason="malformed_signature",
        )
    return bytes.fromhex(value)
