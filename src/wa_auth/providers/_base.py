"""`Token`, the provider protocol, and the providers that need no I/O."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from wa_auth._redact import fingerprint

if TYPE_CHECKING:
    from wa_auth.errors import WhatsAppError

__all__ = ["StaticTokenProvider", "Token", "TokenProvider", "as_provider"]


def _fingerprint_of(self: Token) -> str:
    return fingerprint(self._value)


@attrs.frozen(repr=False)
class Token:
    """An access token; the secret is shown only by `reveal()`, everywhere else its fingerprint.

    Args:
        value: The secret.
        expires_at: Unix seconds when Meta will reject it, or None when unknown or never.
        source: Where it came from (`"static"`, `"env:WA_ACCESS_TOKEN"`, `"file:/path"`...).
    """

    _value: str = attrs.field(alias="value", eq=True)
    expires_at: float | None = None
    source: str = "static"
    fingerprint: str = attrs.field(
        init=False, eq=False, default=attrs.Factory(_fingerprint_of, takes_self=True)
    )

    def reveal(self) -> str:
        """Return the secret, for the Authorization header and nothing else."""
        return self._value

    def expires_in(self, now: float | None = None) -> float | None:
        """Return the seconds left before expiry, or None when the expiry is unknown."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def __repr__(self) -> str:
        return (
            f"Token(fingerprint={self.fingerprint!r}, source={self.source!r}, "
            f"expires_at={self.expires_at!r})"
        )

    __str__ = __repr__


@runtime_checkable
class TokenProvider(Protocol):
    """Where a client gets its token: one protocol for the sync and the async client.

    `invalidate` does no I/O and acts only when *token* is the provider's current token, so a
    burst of failures on one token causes one refresh.
    """

    def get_token(self) -> Token:
        """Return the current token, refreshing it first when needed."""
        ...

    async def aget_token(self) -> Token:
        """Return the current token without blocking the event loop."""
        ...

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Forget *token* if it is the current one, because Meta rejected it for *reason*."""
        ...


class StaticTokenProvider:
    """A fixed token: what the client uses when it is given `token=`.

    `invalidate` cannot produce a new token, so a dead static token stays dead: the client
    raises the classified error instead of retrying.
    """

    def __init__(self, token: str | Token, *, source: str = "static") -> None:
        if isinstance(token, Token):
            self._token = token
        else:
            if not isinstance(token, str) or not token.strip():
                from wa_auth.errors import RequestValidationError

                raise RequestValidationError(
                    "token must be a non-empty string (got "
                    f"{type(token).__name__ if not isinstance(token, str) else 'a blank string'})"
                )
            self._token = Token(token.strip(), source=source)

    def get_token(self) -> Token:
        """Return the token."""
        return self._token

    async def aget_token(self) -> Token:
        """Return the token."""
        return self._token

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Do nothing: a static token has no source to re-read."""

    def __repr__(self) -> str:
        return f"StaticTokenProvider(fingerprint={self._token.fingerprint!r})"


def as_provider(value: object, *, argument: str) -> TokenProvider:
    """Return *value* as a token provider: a string or `Token` becomes a static provider.

    Everywhere a provider is accepted, a plain token string is accepted too, so
    `token_provider="EAA..."` or `app_token_provider=sandbox.app_token` works as written. Any
    other object without the provider methods fails here, at construction, instead of on the
    first send with an `AttributeError`.

    Args:
        value: A `TokenProvider`, a token string or a `Token`.
        argument: The parameter's name, for the error message.

    Raises:
        RequestValidationError: *value* is neither a provider nor a token.
    """
    if isinstance(value, (str, Token)):
        return StaticTokenProvider(value)
    if all(
        callable(getattr(value, name, None)) for name in ("get_token", "aget_token", "invalidate")
    ):
        return value  # type: ignore[return-value]
    from wa_auth.errors import RequestValidationError

    raise RequestValidationError(
        f"{argument} must be a token provider (an object with get_token, aget_token and "
        f"invalidate, such as FileTokenProvider) or a token string, got a "
        f"{type(value).__name__}"
    )
