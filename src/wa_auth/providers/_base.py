"""`Token`, the provider protocol, and the providers that need no I/O."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
import unicodedata
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import attrs

from wa_auth._redact import fingerprint
from wa_auth.errors import ConfigurationError, TokenSourceMalformedError

if TYPE_CHECKING:
    from wa_auth.errors import WhatsAppError

__all__ = [
    "ObservesOutcomes",
    "RoutesTokens",
    "StaticTokenProvider",
    "Token",
    "TokenProvider",
    "as_provider",
    "clean_token",
    "parse_expires_at",
]

#: What Notepad writes before "UTF-8 with BOM" text, and some pages put before pasted text.
_BOM: Final = "\ufeff"
#: An `expires_at` before 2000-01-01 is no expiry date: most likely a lifetime (`expires_in`).
EARLIEST_EXPIRY: Final = 946_684_800.0
#: An `expires_at` after 2100-01-01 is a unit mistake (a millisecond timestamp is the year
#: 50000 and more), not a token that lasts a century.
LATEST_EXPIRY: Final = 4_102_444_800.0
_BAD_EXPIRY: Final = "has an expires_at that is neither Unix seconds nor ISO 8601"
_UNITS: Final = ((1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds"))


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


# --- what every source checks -------------------------------------------------------------------


def clean_token(value: str, *, what: str, source: str) -> str:
    """Return *value* as a token: without a leading BOM and surrounding whitespace, checked.

    A token goes into an HTTP header, which holds printable ASCII only. Anything else (a
    zero-width space pasted from a web page, a BOM in the middle, a smart quote) would pass
    here and fail at the send with a `UnicodeEncodeError` whose text holds `Bearer <token>`,
    so it is refused at load with the character's position. The message names invisible and
    non-ASCII characters by code point (none is part of a token) and never shows the token.

    Args:
        value: The text read from the source.
        what: The source in words, the subject of the message (`"token file /run/wa"`).
        source: The error's non-secret `source` locator.

    Raises:
        TokenSourceMalformedError: *value* is blank or holds a character that is not
            printable ASCII.
    """
    text = value.strip()
    if text.startswith(_BOM):
        text = text[1:].strip()
    if not text:
        raise TokenSourceMalformedError(f"{what} is blank", source=source)
    if text.isascii() and text.isprintable() and " " not in text:
        return text  # the common case, in C
    for i, c in enumerate(text, start=1):
        if "!" <= c <= "~":
            continue
        at = f"at character {i} of {len(text)}"
        if c.isspace():
            problem = f"holds more than one word (whitespace {at}); a token has none"
        else:
            name = unicodedata.name(c, "a control character")
            problem = f"holds U+{ord(c):04X} ({name}) {at}; a token is printable ASCII"
        raise TokenSourceMalformedError(f"{what} {problem}", source=source)
    raise AssertionError  # pragma: no cover - the loop found the character


def parse_expires_at(value: object) -> float | None:
    """Return an `expires_at` (Unix seconds, or ISO 8601 text) as Unix seconds, or None.

    None and 0 mean "no known expiry". Everything else must be a real date between
    `EARLIEST_EXPIRY` and `LATEST_EXPIRY`: NaN or infinity would switch expiry-driven refresh
    off, and a millisecond timestamp would be read as a date tens of thousands of years away,
    so each is refused with the likely mistake named.

    Raises:
        ValueError: The value is no usable expiry; the message (which starts with "has an
            expires_at") names the likely mistake and does not repeat the value.
    """
    if value is None or value == 0:
        return None
    if isinstance(value, str):
        number: float | None = None
        # `float()`'s error quotes the text (maybe a token in the wrong field): not chained.
        with contextlib.suppress(ValueError):
            number = float(value)
        return _iso_expiry(value) if number is None else _checked_expiry(number)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
        return _checked_expiry(number)
    raise ConfigurationError(_BAD_EXPIRY)


def _checked_expiry(seconds: float) -> float:
    if not math.isfinite(seconds):
        raise ConfigurationError("has an expires_at that is not a finite number (NaN or infinity)")
    if seconds < 0:
        raise ConfigurationError("has a negative expires_at")
    if seconds < EARLIEST_EXPIRY:
        raise ConfigurationError(
            "has an expires_at before the year 2000: it looks like a lifetime in seconds "
            "(expires_in), not the Unix time of the expiry"
        )
    if seconds > LATEST_EXPIRY:
        for scale, unit in _UNITS:
            if EARLIEST_EXPIRY <= seconds / scale <= LATEST_EXPIRY:
                raise ConfigurationError(
                    f"has an expires_at that looks like {unit} since the epoch; give Unix seconds"
                )
        raise ConfigurationError(
            "has an expires_at after the year 2100; give Unix seconds, or leave it out (or 0) "
            "for a token that does not expire"
        )
    return seconds


def _iso_expiry(text: str) -> float:
    when: dt.datetime | None = None
    with contextlib.suppress(ValueError):  # its error quotes the text, like float()'s
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when is None:
        raise ConfigurationError(_BAD_EXPIRY)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    seconds = when.timestamp()
    if not EARLIEST_EXPIRY <= seconds <= LATEST_EXPIRY:
        raise ConfigurationError("has an expires_at date outside the years 2000 to 2100")
    return seconds


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


@runtime_checkable
class RoutesTokens(Protocol):
    """A provider that picks another provider per call, by the call's route.

    `RoutingTokenProvider` is one: one token per business, chosen by the call's phone number
    id (or WABA id). The client asks it once per call and uses the provider it names for the
    call, its invalidation and its retry.
    """

    def provider_for(self, route: str | None) -> TokenProvider:
        """Return the provider for a call routed by *route* (phone number id or WABA id)."""
        ...


@runtime_checkable
class ObservesOutcomes(Protocol):
    """A provider that wants to know how each call with its token went.

    `RotatingTokenProvider` is one: a planned rotation rolls back when the new token fails too
    often. The client tells it after every answer (`error` None for a success).
    """

    def observe_outcome(self, token: Token, error: WhatsAppError | None) -> None:
        """Record that a call with *token* succeeded (None) or failed with *error*."""
        ...


class StaticTokenProvider:
    """A fixed token: what the client uses when it is given `token=`.

    `invalidate` cannot produce a new token, so a dead static token stays dead: the client
    raises the classified error instead of retrying.

    Raises:
        RequestValidationError: *token* is not a string, or is blank.
        TokenSourceMalformedError: *token* holds a character that is not printable ASCII (a
            leading BOM is dropped).
    """

    def __init__(self, token: str | Token, *, source: str = "static") -> None:
        if isinstance(token, Token):
            value = clean_token(token.reveal(), what="the token", source=token.source)
            if value != token.reveal():
                token = Token(value, expires_at=token.expires_at, source=token.source)
            self._token = token
        else:
            if not isinstance(token, str) or not token.strip():
                raise ConfigurationError(
                    "token must be a non-empty string (got "
                    f"{type(token).__name__ if not isinstance(token, str) else 'a blank string'})"
                )
            self._token = Token(clean_token(token, what="the token", source=source), source=source)

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
        ConfigurationError: *value* is neither a provider nor a token.
    """
    if isinstance(value, (str, Token)):
        return StaticTokenProvider(value)
    if all(
        callable(getattr(value, name, None)) for name in ("get_token", "aget_token", "invalidate")
    ):
        return value  # type: ignore[return-value]
    raise ConfigurationError(
        f"{argument} must be a token provider (an object with get_token, aget_token and "
        f"invalidate, such as FileTokenProvider) or a token string, got a "
        f"{type(value).__name__}"
    )
