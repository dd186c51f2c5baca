"""`wa-auth webhook list|replay`: serve's forward queue, for an operator.

`list` prints the forwards waiting for their route (or, `--failed`, the dead letters: the
forwards whose last attempt failed), one JSON line each, oldest first; `replay` puts dead
letters back in their routes' queues, where a running serve picks them up within a second.
The queue file is serve's (`--queue PATH` or `WA_AUTH_WEBHOOK_QUEUE`); it must exist.
"""

from __future__ import annotations

import argparse

from wa_auth._cli import _codes, _config
from wa_auth._cli._output import write
from wa_auth.errors import ConfigurationError

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Run `wa-auth webhook list|replay`; print its lines; return 0.

    Raises:
        ConfigurationError: No queue file is named.
        OutboxError: The file cannot be opened (missing, corrupt, another program's).
    """
    from wa_auth._cli._serve._queue import WebhookQueue
    from wa_auth.webhooks import DEFAULT_MAX_KEYS, DEFAULT_WINDOW

    path = args.queue or _config.environ().get("WA_AUTH_WEBHOOK_QUEUE")
    if not path:
        raise ConfigurationError(
            "name serve's webhook queue file: --queue PATH or WA_AUTH_WEBHOOK_QUEUE"
        )
    queue = WebhookQueue(path, window=DEFAULT_WINDOW, max_keys=DEFAULT_MAX_KEYS, create=False)
    try:
        if args.webhook_command == "list":
            for forward in queue.forwards(failed=args.failed, limit=args.limit):
                write(forward.to_json())
        else:
            replayed = queue.replay(args.seq or None)
            write(
                {
                    "ok": True,
                    "exit_code": _codes.OK,
                    "action": "replay",
                    "queue": queue.path,
                    "replayed": replayed,
                }
            )
    finally:
        queue.close()
    return _codes.OK
