"""`wa-auth outbox list|stats|replay|purge|export`: the SQLite outbox, for an operator and cron.

Every subcommand opens the file `--outbox PATH` (or `WA_AUTH_OUTBOX`) names, without creating
it, and prints JSON lines: a row per line (`list`, `export`), one stats line, one count line
(`purge`, `export --output`), or `replay`'s result lines and summary, as `send` prints them.
The rules (what is replayable, what a dead letter is) are the outbox's own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from wa_auth._cli import _codes, _config
from wa_auth._cli._output import delivery_line, summary_line, write
from wa_auth._cli._send import _guard_options, open_outbox
from wa_auth.errors import ConfigurationError, OutboxError


def _path(args: argparse.Namespace) -> str:
    path = args.outbox or _config.environ().get("WA_AUTH_OUTBOX") or None
    if path is None:
        raise ConfigurationError("say which outbox: --outbox PATH or WA_AUTH_OUTBOX")
    return str(path)


def row_line(row: Any) -> dict[str, Any]:
    """Return the line of one outbox row (the schema's `outbox_row`)."""
    return dict(row.to_dict())


def _list(outbox: Any, args: argparse.Namespace) -> int:
    rows = outbox.list(
        args.state,
        category=args.category,
        consumer=args.consumer,
        dead_letters=args.dead_letters,
        limit=args.limit,
    )
    for row in rows:
        if args.format == "text":
            sys.stdout.write(
                f"{row.id} {row.idempotency_key} {row.state} {row.category or '-'} "
                f"{row.reason or '-'} to {row.intent.to}\n"
            )
        else:
            write(row_line(row))
    return _codes.OK


def _stats(outbox: Any, path: str, fmt: str) -> int:
    stats = outbox.stats()
    if fmt == "text":
        states = ", ".join(f"{n} {s}" for s, n in stats.by_state.items() if n)
        categories = ", ".join(f"{n} {c}" for c, n in stats.by_category.items() if n)
        oldest = (
            f"; oldest waiting {(time.time() - stats.oldest_waiting) / 60:.0f} min"
            if stats.oldest_waiting is not None
            else ""
        )
        sys.stdout.write(
            f"outbox {path}: {stats.total} rows ({states or 'empty'}); "
            f"failures: {categories or 'none'}; dead letters: {stats.dead_letters}{oldest}\n"
        )
    else:
        write({"ok": True, "exit_code": _codes.OK, "outbox": path, "stats": stats.to_dict()})
    return _codes.OK


def _count(action: str, count: int, path: str | None) -> int:
    write({"ok": True, "exit_code": _codes.OK, "action": action, "count": count, "path": path})
    return _codes.OK


def _replay(outbox: Any, args: argparse.Namespace) -> int:
    from wa_auth.guards import Guard

    started = time.monotonic()
    options = _config.client_options(args, _config.environ())
    guard_options = {**_guard_options(args), "outbox": outbox}
    kwargs = {"include_maybe_delivered": args.include_maybe_delivered, "limit": args.limit}

    async def areplay() -> Any:
        from wa_auth._client import AsyncWhatsAppClient

        async with AsyncWhatsAppClient(**options) as client:
            guard = Guard(client, **guard_options)
            return await outbox.areplay(guard, concurrency=args.concurrency, **kwargs)

    with _config.state_file(args, _config.environ(), options, guard_options):
        replay = asyncio.run(areplay())
    lines = [delivery_line(d, i) for i, d in enumerate(replay.deliveries, 1)]
    for line in lines:
        if line["consumer"] is None:
            line["consumer"] = options["consumer"]
        write(line)
    counts: dict[str, int] = {}
    for line in lines:
        counts[line["state"]] = counts.get(line["state"], 0) + 1
    code = _codes.most_severe(line["exit_code"] for line in lines)
    write(
        summary_line(
            counts,
            code,
            time.monotonic() - started,
            interrupted=False,
            skipped=replay.skipped,
        ),
        sys.stderr,
    )
    return code


def run(args: argparse.Namespace) -> int:
    """Run one outbox subcommand; return its exit code."""
    path = _path(args)
    outbox = open_outbox(path, create=False)
    try:
        action = args.outbox_command
        if action == "list":
            return _list(outbox, args)
        if action == "stats":
            return _stats(outbox, path, args.format)
        if action == "purge":
            if args.delivered_older_than is None and args.expired_older_than is None:
                raise ConfigurationError(
                    "purge needs --delivered-older-than S or --expired-older-than S"
                )
            count = outbox.purge(
                delivered_older_than=args.delivered_older_than,
                expired_older_than=args.expired_older_than,
            )
            return _count("purge", count, path)
        if action == "export":
            if args.output is None:
                for row in outbox.dead_letters():
                    write(row_line(row))
                return _codes.OK
            try:
                count = outbox.export_dead_letters(args.output)
            except OutboxError as exc:
                raise ConfigurationError(f"--output {args.output}: {exc.message}") from None
            return _count("export", count, args.output)
        return _replay(outbox, args)
    finally:
        outbox.close()
