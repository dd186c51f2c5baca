"""`wa-auth outbox list|stats|replay|mark|purge|export|migrate`: the outbox, for operators.

Every subcommand opens the outbox `--outbox` (or `WA_AUTH_OUTBOX`) names (a SQLite file, as a
path or `sqlite:///path`, or a `postgresql://` URL) without creating it (`migrate` creates or
migrates its schema), and prints JSON lines: a row per line (`list`, `export`, `mark`), one
stats line, one count line (`purge`, `export --output`, `migrate`), or `replay`'s result
lines and summary, as `send` prints them. `list`, `stats` and `export` read a read-only file
too (a read-only mount). The rules (what is replayable, what a dead letter is) are the
outbox's own.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any, Final

from wa_auth._cli import _codes, _config
from wa_auth._cli._output import delivery_line, summary_line, write
from wa_auth._cli._send import _guard_options, _print_result
from wa_auth._postgres import is_postgres_url, redact
from wa_auth.errors import ConfigurationError, OutboxError, OutboxUnavailableError

#: The subcommands that only read: they open a read-only file read-only.
_READS: Final = frozenset({"list", "stats", "export"})
#: The events of an intent's outcome (one per intent a replay decides).
_OUTCOMES: Final = frozenset(
    {
        "MessageDelivered",
        "MessageQueued",
        "MessageFailed",
        "MessageMaybeDelivered",
        "MessageExpired",
    }
)


def _path(args: argparse.Namespace) -> str:
    path = args.outbox or _config.environ().get("WA_AUTH_OUTBOX") or None
    if path is None:
        raise ConfigurationError(
            "say which outbox: --outbox PATH (or sqlite:///PATH, postgresql://...) or "
            "WA_AUTH_OUTBOX"
        )
    return str(path)


def _open(path: str, action: str) -> Any:
    """Open the outbox *path* names (a file, `sqlite:///path` or `postgresql://...`).

    Never created, except by `migrate`; a read-only file is opened read-only for a
    subcommand that only reads.

    Raises:
        OutboxUnavailableError: The disk is full, the file locked or the server unreachable
            (`transient`: try again).
        ConfigurationError: The outbox cannot be used (missing, corrupt, read-only for a
            change, a refused password).
    """
    from wa_auth._cli._send import open_outbox, outbox_of

    if action == "migrate":
        return open_outbox(path, create=True)
    try:
        try:
            return outbox_of(path, create=False)
        except OutboxError as exc:
            if exc.kind != "readonly" or action not in _READS or is_postgres_url(path):
                raise
        return outbox_of(path, create=False, read_only=True)
    except OutboxUnavailableError:
        raise
    except OutboxError as exc:
        raise ConfigurationError(f"--outbox {redact(path)}: {exc.message}") from None


def row_line(row: Any) -> dict[str, Any]:
    """Return the line of one outbox row (the schema's `outbox_row`)."""
    return dict(row.to_dict())


def _row_text(row: Any) -> str:
    return (
        f"{row.id} {row.idempotency_key} {row.state} {row.category or '-'} "
        f"{row.reason or '-'} to {row.intent.to}\n"
    )


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
            sys.stdout.write(_row_text(row))
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


def _mark(outbox: Any, args: argparse.Namespace) -> int:
    """Set a row's state by hand (`SqliteOutbox.mark`) and print the row as it is now."""
    try:
        row = outbox.mark(args.key, args.mark_state, reason=args.reason, message_id=args.message_id)
    except OutboxError as exc:
        if exc.kind != "not_found":
            raise
        raise ConfigurationError(exc.message) from None
    if args.format == "text":
        sys.stdout.write(_row_text(row))
    else:
        write(row_line(row))
    return _codes.OK


class _Progress:
    """Counts a replay's outcomes on a terminal: `wa-auth outbox replay: 120 of at most 1000`.

    A replay claims in batches and decides each intent as its send ends; the outcome events
    say when. *most* is what the outbox holds that a replay may send (its bound, not a promise:
    an intent queued for later is not due yet).
    """

    def __init__(self, most: int) -> None:
        self.most = most
        self.done = 0
        self._step = max(1, most // 100)
        self.on = sys.stderr.isatty() and most > 1

    def __call__(self, event: object) -> None:
        if type(event).__name__ not in _OUTCOMES:
            return
        self.done += 1
        if self.done % self._step == 0:
            self._show()

    def _show(self) -> None:
        sys.stderr.write(f"\rwa-auth outbox replay: {self.done} of at most {self.most} done")
        sys.stderr.flush()

    def end(self) -> None:
        if self.on and self.done:
            self._show()
            sys.stderr.write("\n")


def _replayable(outbox: Any, args: argparse.Namespace) -> int:
    """The most a replay may send now: what waits, failed rows that are not dead letters."""
    stats = outbox.stats()
    by_state = stats.by_state
    most = by_state["pending"] + by_state["queued"] + by_state["failed"] - stats.dead_letters
    if args.include_maybe_delivered:
        most += by_state["maybe_delivered"]
    return int(min(most, args.limit)) if args.limit is not None else int(most)


class _Lines:
    """Prints a replay's result lines as its passes end, and counts them for the summary."""

    def __init__(self, args: argparse.Namespace, consumer: str | None) -> None:
        self.args = args
        self.consumer = consumer
        self.counts: dict[str, int] = {}
        self.codes: list[int] = []
        self.skipped = 0

    def add(self, replay: Any) -> None:
        for delivery in replay.deliveries:
            line = delivery_line(delivery, len(self.codes) + 1)
            if line["consumer"] is None:
                line["consumer"] = self.consumer
            _print_result(line, self.args.format)
            self.counts[line["state"]] = self.counts.get(line["state"], 0) + 1
            self.codes.append(line["exit_code"])
        self.skipped += replay.skipped

    @property
    def left(self) -> int | None:
        """How many more intents `--limit` lets a pass send (None: no limit)."""
        limit = self.args.limit
        return None if limit is None else limit - len(self.codes) - self.skipped


async def _idle(outbox: Any, poll: float, stop: asyncio.Event) -> None:
    """Wait until there may be work, or a signal (*stop*).

    The outbox's `await_for_work` (PostgreSQL's LISTEN, a bounded poll), else *poll* seconds.
    """
    waiting = getattr(outbox, "await_for_work", None)
    work = asyncio.ensure_future(waiting(poll) if waiting else asyncio.sleep(poll))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if stop.is_set() and not work.done():
        work.cancel()  # a thread's wait ends by itself within *poll*


def _replay(outbox: Any, args: argparse.Namespace) -> int:
    from wa_auth.guards import Guard

    started = time.monotonic()
    options = _config.client_options(args, _config.environ())
    guard_options = {**_guard_options(args), "outbox": outbox}
    progress = _Progress(_replayable(outbox, args))
    lines = _Lines(args, options["consumer"])

    async def areplay() -> None:
        from wa_auth._client import AsyncWhatsAppClient

        stop = asyncio.Event()
        if args.follow:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        async with AsyncWhatsAppClient(**options) as client:
            guard = Guard(client, **guard_options)
            if progress.on:
                guard.events.subscribe(progress)
            while not stop.is_set() and (lines.left is None or lines.left > 0):
                replay = await outbox.areplay(
                    guard,
                    concurrency=args.concurrency,
                    include_maybe_delivered=args.include_maybe_delivered,
                    limit=lines.left,
                )
                lines.add(replay)
                if not args.follow:
                    return
                if not replay.deliveries:
                    await _idle(outbox, args.poll, stop)

    with _config.state_file(args, _config.environ(), options, guard_options):
        try:
            asyncio.run(areplay())
        finally:
            progress.end()
    code = _codes.most_severe(lines.codes)
    seconds = time.monotonic() - started
    if args.format == "text":
        parts = ", ".join(f"{n} {state}" for state, n in lines.counts.items()) or "nothing to send"
        sys.stderr.write(
            f"wa-auth outbox replay: {len(lines.codes)} intents: {parts}; {lines.skipped} "
            f"skipped in {seconds:.1f} s; exit {code}\n"
        )
    else:
        summary = summary_line(
            lines.counts, code, seconds, interrupted=False, skipped=lines.skipped
        )
        write(summary, sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    """Run one outbox subcommand; return its exit code."""
    path = _path(args)
    action = args.outbox_command
    outbox = _open(path, action)
    shown = redact(path)
    try:
        if action == "migrate":
            version = 1  # the schema version this wa_auth writes (both stores: 1)
            return _count("migrate", version, shown)
        if action == "list":
            return _list(outbox, args)
        if action == "stats":
            return _stats(outbox, shown, args.format)
        if action == "mark":
            return _mark(outbox, args)
        if action == "purge":
            if args.delivered_older_than is None and args.expired_older_than is None:
                raise ConfigurationError(
                    "purge needs --delivered-older-than S or --expired-older-than S"
                )
            count = outbox.purge(
                delivered_older_than=args.delivered_older_than,
                expired_older_than=args.expired_older_than,
            )
            return _count("purge", count, shown)
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
