"""The package's version, read once from its installed metadata (stdlib only: no httpx)."""

from __future__ import annotations

import functools
import os
import sys

__all__ = ["package_version"]


@functools.cache
def package_version() -> str:
    """Return the installed distribution's version, or `0+unknown` in a bare source tree."""
    found = _dist_info_version()
    if found is not None:
        return found
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wa-auth")
    except PackageNotFoundError:
        return "0+unknown"


def _dist_info_version() -> str | None:
    """The `Version:` of the first `wa_auth-*.dist-info` on `sys.path`, or None.

    What `importlib.metadata.version` finds for an installed (or editable) package, in the same
    path order, without importing it: its zipfile, csv and email imports are ~6 ms of a
    one-message `wa-auth send`, which sends the version in its User-Agent. Anything else (a zip
    on the path, an egg) is left to `importlib.metadata`.
    """
    for entry in sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)  # noqa: PTH208
        except OSError:
            continue
        for name in names:
            lowered = name.lower()
            if not (lowered.startswith("wa_auth-") and lowered.endswith(".dist-info")):
                continue
            try:
                path = os.path.join(folder, name, "METADATA")  # noqa: PTH118
                with open(path, encoding="utf-8") as meta:  # noqa: PTH123
                    for line in meta:
                        if line.startswith("Version:"):
                            return line.removeprefix("Version:").strip()
                        if not line.strip():  # the headers end: no version there
                            break
            except OSError:
                continue
    return None
