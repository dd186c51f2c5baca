"""The Graph API defaults every layer may import (the core, the providers, the CLI)."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_API_VERSION", "DEFAULT_BASE_URL"]

#: The Graph API version requests go to unless `api_version=` says otherwise.
DEFAULT_API_VERSION: Final = "v23.0"
#: Meta's Graph host; the sandbox's `base_url` replaces it in tests.
DEFAULT_BASE_URL: Final = "https://graph.facebook.com"
