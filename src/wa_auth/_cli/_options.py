"""What the parsers of `wa-auth`'s commands share: the option groups and the docs' address."""

from __future__ import annotations

import argparse
import functools
from typing import Final

from wa_auth._cli._usage import positive_seconds

__all__ = ["common", "configuration", "docs_url", "output_options"]

#: The `[project.urls]` entry the help points at.
_DOCS_LABEL: Final = "Documentation"


@functools.cache
def _docs_base() -> str | None:
    """Return the documentation URL of the installed package's metadata, or None."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("wa-auth").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip() == _DOCS_LABEL and url.strip():
            return str(url).strip().rstrip("/") + "/"
    return None


def docs_url(page: str) -> str:
    """Return where *page* of the docs (`cli.md`) is read: the project's URL, else a hint.

    The URL is the `Documentation` entry of the package's `Project-URL` metadata. Until the
    project has a public home there is none, and the help names the page in the source
    distribution, which carries docs/ (a wheel does not).
    """
    base = _docs_base()
    if base is not None:
        return f"{base}{page}"
    return f"docs/{page} in wa-auth's source distribution (pip download --no-binary :all: wa-auth)"


def common(parser: argparse.ArgumentParser) -> None:
    """Add the options every command that talks to the Graph API shares."""
    configuration(parser)
    output_options(parser)


def configuration(parser: argparse.ArgumentParser) -> None:
    """Add the flags that configure the client (each wins over its environment variable)."""
    g = parser.add_argument_group("configuration (flags win over the environment)")
    g.add_argument("--phone-number-id", metavar="ID", help="sender (WA_PHONE_NUMBER_ID)")
    g.add_argument("--business-account-id", metavar="ID", help="the WABA (WA_BUSINESS_ACCOUNT_ID)")
    g.add_argument("--base-url", metavar="URL", help="Graph API base URL (WA_BASE_URL)")
    g.add_argument("--api-version", metavar="V", help="e.g. v23.0 (WA_API_VERSION)")
    g.add_argument(
        "--token-file", metavar="PATH", help="read the token from this file (WA_TOKEN_FILE)"
    )
    g.add_argument(
        "--consumer", metavar="NAME", help="who sends: the n8n workflow (WA_AUTH_CONSUMER)"
    )
    g.add_argument(
        "--timeout", type=positive_seconds, metavar="S", help="HTTP timeout in seconds (above 0)"
    )
    g.add_argument(
        "--state",
        metavar="PATH",
        help="SQLite state file that short-lived runs share (WA_AUTH_STATE)",
    )
    g.add_argument(
        "--redis",
        metavar="URL",
        help="Redis that a fleet of processes shares, instead of --state (WA_AUTH_REDIS_URL)",
    )


def output_options(parser: argparse.ArgumentParser) -> None:
    """Add the flags of the output: its format, `--exit-zero`, `--verbose`."""
    g = parser.add_argument_group("output")
    g.add_argument(
        "--format",
        choices=("json", "text"),
        default="json",
        help="json lines, or a short summary for a person",
    )
    g.add_argument(
        "--exit-zero",
        action="store_true",
        help="always exit 0; the JSON carries exit_code (n8n; WA_AUTH_EXIT_ZERO=1)",
    )
    g.add_argument("--verbose", action="store_true", help="log wa_auth's events on stderr")
