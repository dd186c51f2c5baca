"""`EnvTokenProvider`: the token from an environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from wa_auth.errors import TokenSourceMalformedError, TokenSourceMissingError
from wa_auth.providers._base import Token

if TYPE_CHECKING:
    from wa_auth.errors import WhatsAppError

__all__ = ["EnvTokenProvider"]


class EnvTokenProvider:
    """The token held by an environment variable, read on every call (a dictionary lookup).

    Reading the mapping each time is the periodic re-check: an application that sets the
    variable anew is picked up at once, and `invalidate` needs to do nothing. The `Token` is
    rebuilt only when the value changes.

    Args:
        var: The variable's name.
        environ: The mapping to read (default `os.environ`), for tests and embedding.

    Raises:
        TokenSourceMissingError: From `get_token`, when the variable is not set.
        TokenSourceMalformedError: From `get_token`, when it is blank or holds whitespace.
    """

    def __init__(
        self, var: str = "WA_ACCESS_TOKEN", *, environ: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(var, str) or not var:
            raise ValueError("var must be a non-empty environment variable name")
        self.var = var
        self._environ = os.environ if environ is None else environ
        self._source = f"env:{var}"
        self._cached: Token | None = None

    def get_token(self) -> Token:
        """Return the variable's token.

        Raises:
            TokenSourceMissingError: The variable is not set.
            TokenSourceMalformedError: The variable is blank or contains whitespace.
        """
        value = self._environ.get(self.var)
        cached = self._cached
        if cached is not None and value is not None and cached.reveal() == value.strip():
            return cached
        if value is None:
            raise TokenSourceMissingError(
                f"environment variable {self.var} is not set", source=self._source
            )
        stripped = value.strip()
        if not stripped:
            raise TokenSourceMalformedError(
                f"environment variable {self.var} is blank", source=self._source
            )
        if any(c.isspace() for c in stripped):
            raise TokenSourceMalformedError(
                f"environment variable {self.var} contains whitespace; a token has none",
                source=self._source,
            )
        token = Token(stripped, source=self._source)
        self._cached = token
        return token

    async def aget_token(self) -> Token:
        """Return the variable's token (no I/O)."""
        return self.get_token()

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Do nothing: every call re-reads the variable anyway."""

    def __repr__(self) -> str:
        return f"EnvTokenProvider(var={self.var!r})"
