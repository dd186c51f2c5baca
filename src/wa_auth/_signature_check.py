r"""The `X-Hub-Signature-256` check itself: hmac over the raw bytes, every failure typed.

`wa_auth.webhooks.verify_signature` reads the secrets (text, `Token`s, providers) and emits
the events; this module is the check alone, so that `wa-auth webhook verify` runs it with
`hmac` and `wa_auth.errors` loaded and nothing of `wa_auth.webhooks` (its cold start).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from wa_auth._redact import fingerprint
from wa_auth.errors import ConfigurationError, WebhookSignatureError

__all__ = ["SIGNATURE_HEADER", "match", "plain_digest"]

#: The header Meta signs each webhook POST with.
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
_SCHEME: Final = "sha256"
#: A SHA-256 digest in hex.
_HEX_DIGITS: Final = 64
_DIGEST_BYTES: Final = 32
#: `sha256=` and the digest's hex digits, the length of a header as Meta writes it.
_PLAIN_LENGTH: Final = len("sha256=") + _HEX_DIGITS
#: The longest scheme name repeated in a message (only letters and digits are ever shown).
_SHOWN_SCHEME: Final = 16
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def match(raw_body: bytes, header: str | None, secrets: tuple[str, ...]) -> int:
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


def plain_digest(header: object) -> bytes | None:
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
