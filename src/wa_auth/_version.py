"""The package's version, read once from its installed metadata (stdlib only: no httpx)."""

from __future__ import annotations

import functools

__all__ = ["package_version"]


@functools.cache
def package_version() -> str:
    """Return the installed distribution's version, or `0+unknown` in a bare source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wa-auth")
    except PackageNotFoundError:
        return "0+unknown"
