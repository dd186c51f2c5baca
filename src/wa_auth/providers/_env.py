"""`EnvTokenProvider`: the token from an environment variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from wa_auth.errors import ConfigurationError, TokenSourceMissingError
from wa_auth.providers._base import Token, clean_token

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
        TokenSourceMalformedError: From `get_token`, when it is blank or holds whitespace or
            any other character that is not printable ASCII (a leading BOM is dropped).
    """

    def __init__(
        self, var: str = "WA_ACCESS_TOKEN", *, environ: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(var, str) or not var:
            raise ConfigurationError("var must be a non-empty environment variable name")
        self.var = var
        self._environ = os.environ if environ is None else environ
        self._source = f"env:{var}"
        #: The variable's text and the token read from it: one reference, swapped at once.
        self._cached: tuple[str, Token] | None = None

    def get_token(self) -> Token:
        """Return the variable's token.

        Raises:
            TokenSourceMissingError: The variable is not set.
            TokenSourceMalformedError: The variable is blank or holds a character that is not
                printable ASCII.
        """
        value = self._environ.get(self.var)
        cached = self._cached
        if cached is not None and cached[0] == value:
            return cached[1]
        if value is None:
            raise TokenSourceMissingError(
                f"environment variable {self.var} is not set", source=self._source
            )
        stripped = clean_token(value, what=f"environment variable {self.var}", source=self._source)
        token = Token(stripped, source=self._source)
        self._cached = (value, token)
        return token

    async def aget_token(self) -> Token:
        """Return the variable's token (no I/O)."""
        return self.get_token()

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Do nothing: every call re-reads the variable anyway."""

    def __repr__(self) -> str:
        return f"EnvTokenProvider(var={self.var!r})"
