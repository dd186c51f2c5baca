"""What an app secret or a verify token may be, and reading it: text, a rotation window, a provider.

A webhook's secrets rotate like tokens, so wherever a secret is taken, a token provider is taken
too (a file, an environment variable, Vault: anything with `get_token()` / `aget_token()`), and
a sequence of them is a rotation window in which any one may match. The providers are read on
every call (they cache and re-read on their own schedule); `read` blocks, `aread` awaits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wa_auth.errors import ConfigurationError

if TYPE_CHECKING:
    from typing import TypeAlias

    from wa_auth.providers import Token, TokenProvider

    #: One secret: its text, a `Token`, or a provider of it.
    Secret: TypeAlias = str | Token | TokenProvider
    #: One secret, or a rotation window of them (any may match).
    Secrets: TypeAlias = Secret | Sequence[Secret]

__all__ = ["Secrets", "aread", "parts", "read", "text"]


def parts(value: Secrets, *, argument: str) -> tuple[str | Any, ...]:
    """Return the secrets of *value*: each a checked text, or an object to read a token from.

    Raises:
        ConfigurationError: *value* is blank, empty, or neither text, a `Token`, a provider
            nor a sequence of them; the message names *argument* and never shows a secret.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return (_one(value, argument),)
    if not value:
        raise ConfigurationError(f"{argument} is an empty sequence: give at least one secret")
    return tuple(_one(item, f"{argument}[{i}]") for i, item in enumerate(value))


def _one(value: object, argument: str) -> str | Any:
    if isinstance(value, str):
        return text(value, argument)
    if callable(getattr(value, "get_token", None)) and callable(getattr(value, "aget_token", None)):
        return value
    if callable(getattr(value, "reveal", None)):
        return text(value.reveal(), argument)  # type: ignore[attr-defined]
    raise ConfigurationError(
        f"{argument} must be a string, a Token, a token provider (get_token and aget_token) "
        f"or a sequence of them, got a {type(value).__name__}"
    )


def text(value: object, argument: str) -> str:
    """Return *value* without surrounding whitespace, checked to be a non-blank string.

    Raises:
        ConfigurationError: *value* is not a string or is blank.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{argument} must be a string, got a {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise ConfigurationError(f"{argument} is blank")
    return stripped


def read(value: Secrets, *, argument: str) -> tuple[str, ...]:
    """Return the texts of *value*'s secrets, asking each provider for its current token.

    Raises:
        ConfigurationError: See `parts`.
        TokenUnavailableError: A provider could not produce its secret.
    """
    if type(value) is str:  # the common case, without the checks of a sequence
        return (text(value, argument),)
    return tuple(
        p if isinstance(p, str) else text(p.get_token().reveal(), argument)
        for p in parts(value, argument=argument)
    )


async def aread(value: Secrets, *, argument: str) -> tuple[str, ...]:
    """Return the texts of *value*'s secrets without blocking the event loop.

    Raises:
        ConfigurationError: See `parts`.
        TokenUnavailableError: A provider could not produce its secret.
    """
    return tuple(
        [
            p if isinstance(p, str) else text((await p.aget_token()).reveal(), argument)
            for p in parts(value, argument=argument)
        ]
    )
