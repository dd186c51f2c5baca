"""`handle_verification`: the GET handshake Meta sends when a callback URL is subscribed.

Meta calls `GET <callback>?hub.mode=subscribe&hub.verify_token=<yours>&hub.challenge=<n>` and
expects the challenge back, as the body of a 200. The request carries no signature (checking
one rejects every handshake); what proves it is Meta is the verify token you chose, compared
in constant time. Every failure is a `WebhookSignatureError` whose `reason` names the check.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from wa_auth.errors import ConfigurationError, WebhookSignatureError
from wa_auth.webhooks._observed import WebhookRejected, WebhookVerified
from wa_auth.webhooks._secret import aread, read

if TYPE_CHECKING:
    from wa_auth.events import Events
    from wa_auth.webhooks._secret import Secrets

__all__ = ["ahandle_verification", "check_handshake", "handle_verification"]

#: The challenge goes back in the response body: only printable ASCII without blanks, and not
#: long (Meta's is a number), so the echo cannot carry markup or fill a log.
MAX_CHALLENGE: Final = 256

#: What a handshake's query may look like: one value per name, or a framework's list of them.
Params = Mapping[str, "str | Sequence[str] | None"]


def handle_verification(
    params: Params, verify_token: Secrets, *, events: Events | None = None
) -> str:
    """Answer Meta's GET subscription handshake: return `hub.challenge` when the token matches.

    Args:
        params: The query parameters (`hub.mode`, `hub.verify_token`, `hub.challenge`); a
            value may be a string or a one-item list (`parse_qs`, a multidict's `getall`).
        verify_token: The verify token you gave Meta: its text, a `Token`, a token provider,
            or a sequence of them while it rotates (any may match).
        events: Where to emit `WebhookVerified` or `WebhookRejected`.

    Returns:
        The challenge, to send back as the 200 response's body.

    Raises:
        WebhookSignatureError: `hub.mode` is not `subscribe`, the token is missing or does
            not match, or the challenge is missing or not a short printable token; `reason`
            says which, and no message shows a token.
        ConfigurationError: *params* is not a mapping, or *verify_token* is blank or no secret.
        TokenUnavailableError: A provider could not produce the verify token.
    """
    return check_handshake(params, read(verify_token, argument="verify_token"), events)


async def ahandle_verification(
    params: Params, verify_token: Secrets, *, events: Events | None = None
) -> str:
    """Answer the handshake, reading a provider's verify token without blocking.

    Raises:
        WebhookSignatureError: See `handle_verification`.
        ConfigurationError: See `handle_verification`.
        TokenUnavailableError: A provider could not produce the verify token.
    """
    return check_handshake(params, await aread(verify_token, argument="verify_token"), events)


def check_handshake(params: Params, tokens: tuple[str, ...], events: Events | None) -> str:
    """Return the challenge of *params* when its token is one of *tokens*; the pure part.

    Raises:
        WebhookSignatureError: See `handle_verification`.
        ConfigurationError: *params* is not a mapping.
    """
    try:
        challenge, index = _answer(params, tokens)
    except WebhookSignatureError as exc:
        if events is not None:
            events.emit(WebhookRejected(check="handshake", reason=exc.reason))
        raise
    if events is not None:
        events.emit(WebhookVerified(check="handshake", secret_index=index))
    return challenge


def _answer(params: Params, tokens: tuple[str, ...]) -> tuple[str, int]:
    if not isinstance(params, Mapping):
        raise ConfigurationError(
            f"params must be the query parameters as a mapping, got a {type(params).__name__}"
        )
    mode = _value(params, "hub.mode")
    if mode != "subscribe":
        raise WebhookSignatureError(
            "hub.mode is not subscribe" if mode else "the request has no hub.mode=subscribe",
            reason="wrong_mode",
        )
    sent = _value(params, "hub.verify_token")
    if not sent:
        raise WebhookSignatureError("the request has no hub.verify_token", reason="missing_token")
    given = sent.encode("utf-8", "surrogatepass")
    index = next(
        (
            i
            for i, token in enumerate(tokens)
            if hmac.compare_digest(given, token.encode("utf-8", "surrogatepass"))
        ),
        None,
    )
    if index is None:
        raise WebhookSignatureError(
            "hub.verify_token is not the verify token configured for this callback",
            reason="token_mismatch",
        )
    challenge = _value(params, "hub.challenge")
    if not challenge:
        raise WebhookSignatureError("the request has no hub.challenge", reason="missing_challenge")
    if len(challenge) > MAX_CHALLENGE or not (
        challenge.isascii() and challenge.isprintable() and " " not in challenge
    ):
        raise WebhookSignatureError(
            f"hub.challenge is not a token of at most {MAX_CHALLENGE} printable ASCII "
            "characters: it is not echoed",
            reason="malformed_challenge",
        )
    return challenge, index


def _value(params: Params, name: str) -> str | None:
    """Return the one string value of *name*; a list must hold exactly one string."""
    value = params.get(name)
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    return value if isinstance(value, str) else None
