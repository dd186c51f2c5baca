"""What `wa-auth serve` is told: its settings, their defaults, and the API key.

The key is read from one source (a file or `WA_AUTH_API_KEY`), kept only as its SHA-256
digest, and matched in constant time. Nothing here imports aiohttp: the parser reads the
defaults without the `serve` extra.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

import attrs

from wa_auth.errors import ConfigurationError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_HOST",
    "DEFAULT_HTTP",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PORT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_TRANSPORT",
    "HTTP_PATHS",
    "MAX_LINE",
    "MIN_KEY_LENGTH",
    "TRANSPORTS",
    "Settings",
    "api_key",
    "key_digest",
    "key_matches",
    "presented_key",
    "settings",
]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8787
#: 1 MiB: about 5,000 text intents in one batch.
DEFAULT_MAX_BODY: Final = 1 << 20
DEFAULT_REQUEST_TIMEOUT: Final = 60.0
DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0
DEFAULT_CONCURRENCY: Final = 64
#: A connection must finish a request's headers within this many seconds of connecting or of
#: its previous answer; an idle keep-alive connection is closed after as long. Longer than the
#: idle timeout of n8n's (Node's) and httpx's pools (5 s), so the client closes first.
DEFAULT_HEADER_TIMEOUT: Final = 10.0
#: The most connections open at once, lowered to fit the open-file limit (`_connections`).
DEFAULT_MAX_CONNECTIONS: Final = 1024
#: How the service's client reaches Meta: `FastAsyncWhatsAppClient(transport=...)`. "raw" (the
#: client's own HTTP/1.1 on asyncio) spends about half aiohttp's CPU per send.
TRANSPORTS: Final = ("raw", "aiohttp")
DEFAULT_TRANSPORT: Final = "raw"
#: How serve reads its callers' requests: its own lane for the plain ones (`_lane`), or
#: aiohttp's server for every request.
HTTP_PATHS: Final = ("lane", "aiohttp")
DEFAULT_HTTP: Final = "lane"
#: The longest request line and header line, in bytes (aiohttp's default): a longer one is a 400.
MAX_LINE: Final = 8190
#: A shorter key is refused: it could be guessed, and whoever has it sends as the business.
MIN_KEY_LENGTH: Final = 16


@attrs.frozen(kw_only=True)
class Settings:
    """What `wa-auth serve` was told: where to listen, the key's digest and the limits.

    Args:
        host: The address to bind (loopback unless told otherwise).
        port: The port to bind; 0 picks a free one.
        key_digest: The SHA-256 digest of the API key (`key_digest`); the key itself is not kept.
        max_body: The largest request body accepted, in bytes.
        request_timeout: Seconds a request may take to arrive, and after which no send of it
            starts; a send that started always finishes.
        shutdown_timeout: Seconds SIGTERM waits for the requests in flight before it cancels them.
        concurrency: The most sends in flight at once, over every request.
        header_timeout: Seconds a connection has to finish a request's headers, from its
            start or its previous answer (also how long an idle keep-alive connection stays).
        max_connections: The most connections open at once, before the open-file limit
            lowers it (`_connections.connection_cap`).
        outbox: The outbox file, or None.
        state: The state file, or None.
        transport: The client's transport to Meta (`TRANSPORTS`).
        http: How requests are read (`HTTP_PATHS`): `lane` (serve's own, aiohttp's server
            for any other request) or `aiohttp` (aiohttp's server for every request).
    """

    host: str
    port: int
    key_digest: bytes = attrs.field(repr=False)
    max_body: int
    request_timeout: float
    shutdown_timeout: float
    concurrency: int
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    outbox: str | None = None
    state: str | None = None
    transport: str = DEFAULT_TRANSPORT
    http: str = DEFAULT_HTTP


def key_digest(key: str) -> bytes:
    """Return the SHA-256 digest of an API key: the service keeps only this, never the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def key_matches(presented: str | None, digest: bytes) -> bool:
    """Return whether *presented* is the key of *digest*, in constant time.

    Both sides are SHA-256 digests of equal length, so `hmac.compare_digest` takes the same
    time whatever the presented key's length or how much of it is right.
    """
    if presented is None:
        return False
    return hmac.compare_digest(key_digest(presented), digest)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """Return the key a request presents: `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    auth = headers.get("Authorization")
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("X-API-Key")
    return key.strip() if key is not None and key.strip() else None


def api_key(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """Return the API key: the file `--api-key-file`/`WA_AUTH_API_KEY_FILE`, or `WA_AUTH_API_KEY`.

    Raises:
        ConfigurationError: No key, two sources, an unreadable file, or a key shorter than
            `MIN_KEY_LENGTH`; the message never holds the key.
    """
    flag = getattr(args, "api_key_file", None)
    source = "--api-key-file" if flag else "WA_AUTH_API_KEY_FILE"
    path = flag or environ.get("WA_AUTH_API_KEY_FILE") or None
    inline = environ.get("WA_AUTH_API_KEY")
    if path is not None and inline is not None:
        raise ConfigurationError(
            "configure one API key source, not both --api-key-file/WA_AUTH_API_KEY_FILE and "
            "WA_AUTH_API_KEY"
        )
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:  # noqa: PTH123 - one read
                key = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            # The file's name is not shown: a key pasted in its place would be printed.
            raise ConfigurationError(
                f"{source}: cannot read it ({reason}; the file's name is not shown)"
            ) from None
    elif inline is not None:
        key = inline.strip()
    else:
        raise ConfigurationError(
            "wa-auth serve refuses to start without an API key: whoever reaches it can send as "
            "the business. Set WA_AUTH_API_KEY or --api-key-file PATH (make one with: python "
            '-c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigurationError(
            f"the API key has {len(key)} characters: use at least {MIN_KEY_LENGTH} (make one "
            'with: python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    return key


def settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Return the service's `Settings` from *args* and *environ*.

    Raises:
        ConfigurationError: A setting is missing or out of range; the message names it.
    """
    if not 0 <= args.port <= 65535:
        raise ConfigurationError(f"--port must be 0-65535, got {args.port}")
    if args.max_body < 1024:
        raise ConfigurationError(f"--max-body must be at least 1024 bytes, got {args.max_body}")
    for name in ("request_timeout", "shutdown_timeout", "header_timeout"):
        if getattr(args, name) <= 0:
            flag = "--" + name.replace("_", "-")
            raise ConfigurationError(f"{flag} must be more than 0 seconds")
    return Settings(
        host=args.host,
        port=args.port,
        key_digest=key_digest(api_key(args, environ)),
        max_body=args.max_body,
        request_timeout=args.request_timeout,
        shutdown_timeout=args.shutdown_timeout,
        concurrency=args.concurrency,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
        outbox=args.outbox or environ.get("WA_AUTH_OUTBOX") or None,
        state=getattr(args, "state", None) or environ.get("WA_AUTH_STATE") or None,
        transport=getattr(args, "transport", None) or DEFAULT_TRANSPORT,
        http=getattr(args, "http", None) or DEFAULT_HTTP,
    )
