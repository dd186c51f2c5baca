"""What serve's webhook endpoint is told: the app secret, the verify token, the files, the limits.

The endpoint is on when an app secret is configured: `WA_AUTH_WEBHOOK_APP_SECRET`, or a file
(`--webhook-app-secret-file` / `WA_AUTH_WEBHOOK_APP_SECRET_FILE`) read through a
`FileTokenProvider`, so a rotated secret is picked up without a restart. The verify token of
the GET handshake comes the same way (`WA_AUTH_WEBHOOK_VERIFY_TOKEN`, or
`--webhook-verify-token-file` / `..._FILE`). Deliveries, the ledger and the forward queue go to
one file: `--webhook-queue` (`WA_AUTH_WEBHOOK_QUEUE`), else the state file, else the outbox's
file. No aiohttp here: the parser and `_settings` read it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, Final

import attrs

from wa_auth._postgres import is_postgres_url
from wa_auth.errors import ConfigurationError, WhatsAppError

__all__ = [
    "DEFAULT_FORWARD_ATTEMPTS",
    "DEFAULT_FORWARD_BACKOFF",
    "DEFAULT_FORWARD_TIMEOUT",
    "MAX_BACKOFF",
    "HookSettings",
    "hook_settings",
]

#: Seconds a route has to answer a forward before the attempt counts as failed.
DEFAULT_FORWARD_TIMEOUT: Final = 10.0
#: Attempts of one forward before it becomes a dead letter (`wa-auth webhook list --failed`).
DEFAULT_FORWARD_ATTEMPTS: Final = 12
#: Seconds before the second attempt; each later wait doubles, up to `MAX_BACKOFF`.
DEFAULT_FORWARD_BACKOFF: Final = 1.0
MAX_BACKOFF: Final = 300.0


@attrs.frozen(kw_only=True)
class HookSettings:
    """serve's webhook settings; the secrets are providers or text, never shown in a repr."""

    app_secret: Any = attrs.field(repr=False)
    verify_token: Any = attrs.field(repr=False, default=None)
    queue: str
    config: str | None = None
    forward_timeout: float = DEFAULT_FORWARD_TIMEOUT
    forward_attempts: int = DEFAULT_FORWARD_ATTEMPTS
    forward_backoff: float = DEFAULT_FORWARD_BACKOFF


def _secret(args: argparse.Namespace, environ: Mapping[str, str], flag: str, variable: str) -> Any:
    """Return the secret from its file (a provider) or its variable (text), or None."""
    path = getattr(args, flag.lstrip("-").replace("-", "_"), None) or environ.get(
        f"{variable}_FILE"
    )
    inline = environ.get(variable)
    if path and inline is not None:
        raise ConfigurationError(f"configure one source of it, not both {flag} and {variable}")
    if path:
        from wa_auth.providers import FileTokenProvider

        provider = FileTokenProvider(path, format="text")
        try:  # at start-up, not at Meta's first delivery
            provider.get_token()
        except WhatsAppError as exc:
            raise ConfigurationError(f"{flag}: {exc.message}") from None
        return provider
    if inline is not None:
        if not inline.strip():
            raise ConfigurationError(f"{variable} is set but blank")
        return inline.strip()
    return None


def hook_settings(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    *,
    state: str | None,
    outbox: str | None,
) -> HookSettings | None:
    """Return the webhook settings, or None when no app secret is configured (no endpoint).

    Raises:
        ConfigurationError: Two sources of one secret, a blank one, a secret file that cannot
            be read, a verify token or routes without an app secret, or no file for the
            queue; the message never shows a secret.
    """
    app_secret = _secret(args, environ, "--webhook-app-secret-file", "WA_AUTH_WEBHOOK_APP_SECRET")
    verify = _secret(args, environ, "--webhook-verify-token-file", "WA_AUTH_WEBHOOK_VERIFY_TOKEN")
    config = getattr(args, "webhook_config", None) or environ.get("WA_AUTH_WEBHOOK_CONFIG") or None
    if app_secret is None:
        if verify is not None or config is not None:
            raise ConfigurationError(
                "the webhook endpoint needs the app secret to verify Meta's signatures: set "
                "WA_AUTH_WEBHOOK_APP_SECRET or --webhook-app-secret-file"
            )
        return None
    if outbox and is_postgres_url(outbox):
        outbox = None  # a PostgreSQL outbox is no file to share: say --webhook-queue
    queue = (
        getattr(args, "webhook_queue", None)
        or environ.get("WA_AUTH_WEBHOOK_QUEUE")
        or state
        or (outbox.removeprefix("sqlite:///") if outbox else None)
    )
    if not queue:
        raise ConfigurationError(
            "the webhook endpoint stores each delivery before it answers 200: give it a file, "
            "--webhook-queue PATH (or --state / --outbox, which it then shares)"
        )
    return HookSettings(
        app_secret=app_secret,
        verify_token=verify,
        queue=queue,
        config=config,
        forward_timeout=getattr(args, "forward_timeout", None) or DEFAULT_FORWARD_TIMEOUT,
        forward_attempts=getattr(args, "forward_attempts", None) or DEFAULT_FORWARD_ATTEMPTS,
        forward_backoff=getattr(args, "forward_backoff", None) or DEFAULT_FORWARD_BACKOFF,
    )
