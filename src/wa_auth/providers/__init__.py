"""Token providers: where a token comes from, when it is re-read, and what happens when it dies."""

from __future__ import annotations

from wa_auth.providers._base import StaticTokenProvider, Token, TokenProvider

__all__ = ["StaticTokenProvider", "Token", "TokenProvider"]
