"""`wa-auth serve`: the CLI's front door over local HTTP, by module.

- `_settings`: what serve is told (the defaults, `Settings`) and the API key: read from one
  source, kept as its digest, matched in constant time. No aiohttp: the parser reads it.
- `_process`: the process: `run` checks the extra and the settings, opens the outbox and the
  state file, serves on one event loop until SIGTERM or SIGINT, and stops gracefully.
- `_http`: the HTTP plumbing: the routes' table, an `Answer`, a refusal (`Rejected`), the
  reading of a query.
- `_front`: what every route goes through (`Front`): the key, the shutdown, the body, the
  access line.
- `_app`: `Service`, the routes, one handler each, on aiohttp's low-level `web.Server`.
- `_connections`: the registry of connections under the cap below the open-file limit, and
  the write bound; `_site`: the listener that accepts only when there is room, and aiohttp's
  connection answering what it cannot parse in JSON.
- `_log`: serve's one logging path: aiohttp's and asyncio's records as JSON lines that hold
  nothing of a request.

Only `_settings` and `_process` load without aiohttp (the `serve` extra); `_process` imports
the others once it found it.
"""

from __future__ import annotations

from wa_auth._cli._serve._process import run
from wa_auth._cli._serve._settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_HOST,
    DEFAULT_HTTP,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TRANSPORT,
    HTTP_PATHS,
    MAX_LINE,
    MIN_KEY_LENGTH,
    TRANSPORTS,
    api_key,
    settings,
)

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
    "api_key",
    "run",
    "settings",
]
