"""`wa-auth send`: intents in, one result line per intent out, through the guard.

The input is one message from flags, JSON lines (or a JSON array) from `--input FILE` or
stdin, or one intent as `--input-b64` (`_input`). A line that is not an intent is that line's
`invalid_request` result; the other lines still go out. One intent is sent with the blocking
client (the smallest cold start); a batch goes concurrently over one connection pool, on the
aiohttp client when `wa_auth[fast]` is installed. SIGTERM and SIGINT stop new sends: what is
in flight finishes, the rest is reported as not sent, and the summary is printed.
"""

from __future__ import annotations

import argparse
import functools
import math
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from wa_auth._cli import _codes, _config
from wa_auth._cli._input import Item, read_items
from wa_auth._cli._output import (
    crashed_line,
    delivery_line,
    error_object,
    fill_defaults,
    not_sent_line,
    refused_line,
    summary_line,
    write,
    write_text,
)
from wa_auth.errors import ConfigurationError, OutboxError
from wa_auth.intents import Intent

if TYPE_CHECKING:
    from wa_auth.guards import Delivery

_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


# --- output --------------------------------------------------------------------------------------


class _Printer:
    """Prints result lines in input order as soon as every earlier one is decided.

    When stdout's reader goes away (`wa-auth send ... | head -1`), *on_closed* is called once
    and nothing more is printed there; the lines are still kept for the summary on stderr.
    """

    def __init__(
        self, total: int, fmt: str, defaults: dict[str, Any], on_closed: Callable[[], None]
    ) -> None:
        self.lines: list[dict[str, Any] | None] = [None] * total
        self._next = 0
        self._done = 0
        self._fmt = fmt
        #: The client's sender and consumer, printed for intents that leave them to it.
        self._defaults = defaults
        self._progress = sys.stderr.isatty() and total > 1
        self._step = max(1, total // 100)
        self._on_closed = on_closed
        self.closed = False

    def put(self, index: int, line: dict[str, Any]) -> None:
        self.lines[index] = fill_defaults(line, self._defaults)
        self._done += 1
        while self._next < len(self.lines) and self.lines[self._next] is not None:
            if not self.closed and not _print_result(self.lines[self._next], self._fmt):  # type: ignore[arg-type]
                self.closed = True
                self._on_closed()
            self._next += 1
        if self._progress and (self._done % self._step == 0 or self._done == len(self.lines)):
            end = "\n" if self._done == len(self.lines) else ""
            write_text(f"\rwa-auth send: {self._done}/{len(self.lines)} done{end}", sys.stderr)


def _print_result(line: dict[str, Any], fmt: str) -> bool:
    """Print one result line; return False when stdout's reader has gone."""
    if fmt == "json":
        return write(line)
    where = f"line {line['line']}"
    if line["ok"]:
        text = f"{where}: delivered to {line['to']} ({line['message_id']})"
    else:
        error = line["error"] or {}
        text = (
            f"{where}: {line['state']} {line['category']} (exit {line['exit_code']}): "
            f"{error.get('message')}"
        )
    return write_text(text + "\n")


def _summary(printer: _Printer, seconds: float, fmt: str, *, interrupted: bool) -> int:
    lines = [line for line in printer.lines if line is not None]
    counts: dict[str, int] = {}
    for line in lines:
        counts[line["state"]] = counts.get(line["state"], 0) + 1
    code = _codes.most_severe(line["exit_code"] for line in lines)
    summary = summary_line(counts, code, seconds, interrupted=interrupted)
    if fmt == "json":
        write(summary, sys.stderr)
    else:
        parts = ", ".join(f"{n} {state}" for state, n in counts.items())
        stopped = " (interrupted)" if interrupted else ""
        write_text(
            f"wa-auth send: {len(lines)} intents: {parts} in {seconds:.1f} s{stopped}; "
            f"exit {code}\n",
            sys.stderr,
        )
    return code


# --- sending -------------------------------------------------------------------------------------


def _guard_options(args: argparse.Namespace) -> dict[str, Any]:
    from wa_auth.guards import RetryPolicy

    options: dict[str, Any] = {
        "policy": RetryPolicy(max_attempts=args.max_attempts, budget=args.budget)
    }
    from wa_auth.pacing import LocalRateLimiter

    # Without --rate the limiter paces nothing but still holds a number (or a pair) for Meta's
    # Retry-After, so a 130429 storm costs about one extra request per intent in flight, not
    # --max-attempts each.
    if args.rate is None:
        options["limiter"] = LocalRateLimiter(rate=math.inf, pair_interval=None)
    else:
        options["limiter"] = LocalRateLimiter(rate=args.rate)
    return options


class _Stop:
    """Set by SIGTERM, SIGINT or a closed stdout: no new send starts; what is in flight finishes."""

    def __init__(self) -> None:
        #: What stopped the run (`SIGTERM`, ...), as result lines name it.
        self.signal_name: str | None = None

    def __call__(self, signum: int, _frame: object = None) -> None:
        self.signal_name = signal.Signals(signum).name

    def stdout_closed(self) -> None:
        """Stop as for a signal: nobody reads the results any more (`| head -1`)."""
        if self.signal_name is None:
            self.signal_name = "a closed stdout (its reader went away)"

    @property
    def is_set(self) -> bool:
        return self.signal_name is not None


def _not_sent(stop: _Stop, intent: Intent, line: int, *, queued: bool) -> dict[str, Any]:
    return not_sent_line(intent, line, queued=queued, signal_name=stop.signal_name or "a signal")


def _refused(exc: OutboxError, intent: Intent, line: int) -> dict[str, Any]:
    """The line of an intent the outbox would not let go out (already delivered, in flight)."""
    return refused_line(error_object(exc), intent, line)


def _sent(send: Callable[[], Delivery], intent: Intent, line: int) -> dict[str, Any]:
    """Return the result line of one send: the guard's delivery, or the line of its failure.

    A failure of this intent is this intent's line and nothing else's, even a bug.
    """
    try:
        return delivery_line(send(), line)
    except OutboxError as exc:
        return _refused(exc, intent, line)
    except Exception as exc:  # noqa: BLE001 - a bug ends this intent, never the batch
        return crashed_line(intent, line, exc)


async def _asent(send: Awaitable[Delivery], intent: Intent, line: int) -> dict[str, Any]:
    """`_sent` for an awaitable send."""
    try:
        return delivery_line(await send, line)
    except OutboxError as exc:
        return _refused(exc, intent, line)
    except Exception as exc:  # noqa: BLE001 - a bug ends this intent, never the batch
        return crashed_line(intent, line, exc)


def _send_one(
    items: list[Item],
    printer: _Printer,
    client_options: dict[str, Any],
    guard_options: dict[str, Any],
    stop: _Stop,
    transport: str,
) -> None:
    from wa_auth._client import WhatsAppClient
    from wa_auth.guards import Guard

    # Only the main thread may set signal handlers (a test may call main() from another).
    handle = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS} if handle else {}
    queued = guard_options.get("outbox") is not None
    try:
        with WhatsAppClient(
            transport="httpx" if transport == "httpx" else "stdlib", **client_options
        ) as client:
            guard = Guard(client, **guard_options)
            for index, (line, item) in enumerate(items):
                if not isinstance(item, Intent):
                    printer.put(index, item)
                elif stop.is_set:
                    printer.put(index, _not_sent(stop, item, line, queued=queued))
                else:
                    printer.put(index, _sent(functools.partial(guard.send, item), item, line))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _send_many(
    items: list[Item],
    printer: _Printer,
    client_options: dict[str, Any],
    guard_options: dict[str, Any],
    stop: _Stop,
    concurrency: int,
) -> None:
    import asyncio
    import importlib.util  # a batch's only: `wa-auth send` as a script does not import it

    from wa_auth.guards import Guard

    client_class: Callable[..., Any]
    if importlib.util.find_spec("aiohttp") is not None:
        from wa_auth._client import FastAsyncWhatsAppClient

        client_class = FastAsyncWhatsAppClient
    else:
        from wa_auth._client import AsyncWhatsAppClient

        client_class = AsyncWhatsAppClient
    loop = asyncio.get_running_loop()
    handled = []
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
            handled.append(sig)
    # Not guard.asend_many: a signal must stop the sends that have not started, and the lines
    # are printed as they are decided; the decisions are the guard's, one asend per intent.
    slots = asyncio.Semaphore(concurrency)
    queued = guard_options.get("outbox") is not None
    try:
        async with client_class(**client_options) as client:
            guard = Guard(client, **guard_options)

            async def one(index: int, line: int, intent: Intent) -> None:
                async with slots:
                    if stop.is_set:
                        printer.put(index, _not_sent(stop, intent, line, queued=queued))
                        return
                    result = await _asent(guard.asend(intent), intent, line)
                printer.put(index, result)

            tasks = []
            for index, (line, item) in enumerate(items):
                if isinstance(item, Intent):
                    tasks.append(one(index, line, item))
                else:
                    printer.put(index, item)
            await asyncio.gather(*tasks)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    """Send the inputs; print a line per input and the summary; return the exit code."""
    started = time.monotonic()
    environ = _config.environ()
    items = read_items(args)
    client_options = _config.client_options(args, environ)
    intents = [item for _, item in items if isinstance(item, Intent)]
    if client_options["phone_number_id"] is None and any(
        i.phone_number_id is None for i in intents
    ):
        raise ConfigurationError(
            "no sender: set WA_PHONE_NUMBER_ID or --phone-number-id (or phone_number_id in "
            "each intent)"
        )
    guard_options = _guard_options(args)
    with _config.state_file(args, environ, client_options, guard_options):
        return _with_outbox(args, items, intents, client_options, guard_options, started)


def _with_outbox(
    args: argparse.Namespace,
    items: list[Item],
    intents: list[Intent],
    client_options: dict[str, Any],
    guard_options: dict[str, Any],
    started: float,
) -> int:
    outbox_path = args.outbox or _config.environ().get("WA_AUTH_OUTBOX") or None
    if outbox_path is None:
        return _send(args, items, intents, client_options, guard_options, started)
    from wa_auth.outbox._common import with_sender

    outbox = open_outbox(outbox_path, create=True)
    try:
        # Every intent is in the outbox (pending) before the first send: one a signal stops
        # stays there for `wa-auth outbox replay`, from the number it was meant for.
        outbox.enqueue_many(with_sender(intents, client_options["phone_number_id"]))
        guard_options["outbox"] = outbox
        return _send(args, items, intents, client_options, guard_options, started)
    finally:
        outbox.close()


def open_outbox(spec: str, *, create: bool, read_only: bool = False) -> Any:
    """Open the outbox *spec* names: `postgresql://...`, `sqlite:///path` or a plain path.

    A PostgreSQL URL opens a `PostgresOutbox` (its password never shown in a message); a
    path, or `sqlite:///path` (`sqlite:////abs/path` for an absolute one), a `SqliteOutbox`.

    Raises:
        ConfigurationError: The outbox cannot be used (missing, read-only, corrupt, newer
            schema, a refused password, psycopg not installed).
        OutboxUnavailableError: The disk is full, the file locked or the server unreachable
            (`transient`: try again).
    """
    from wa_auth._postgres import redact
    from wa_auth.errors import OutboxUnavailableError

    try:
        return outbox_of(spec, create=create, read_only=read_only)
    except OutboxUnavailableError:
        raise  # the outbox is fine: try again later (exit 8), not a usage error
    except OutboxError as exc:
        raise ConfigurationError(f"--outbox {redact(spec)}: {exc.message}") from None


def outbox_of(spec: str, *, create: bool, read_only: bool = False) -> Any:
    """The outbox *spec* names (see `open_outbox`); its `OutboxError` as it is."""
    from wa_auth._postgres import is_postgres_url

    if is_postgres_url(spec):
        from wa_auth.outbox import PostgresOutbox

        return PostgresOutbox(spec, create=create)
    from wa_auth.outbox import SqliteOutbox

    path = spec.removeprefix("sqlite:///")
    return SqliteOutbox(path, create=create and not read_only, read_only=read_only)


def _send(
    args: argparse.Namespace,
    items: list[Item],
    intents: list[Intent],
    client_options: dict[str, Any],
    guard_options: dict[str, Any],
    started: float,
) -> int:
    defaults = {k: client_options[k] for k in ("phone_number_id", "consumer")}
    stop = _Stop()
    printer = _Printer(len(items), args.format, defaults, stop.stdout_closed)
    if len(intents) <= 1:
        _send_one(
            items,
            printer,
            client_options,
            guard_options,
            stop,
            getattr(args, "transport", "stdlib"),
        )
    else:
        import asyncio  # a batch only: one message never loads the event loop

        asyncio.run(
            _send_many(items, printer, client_options, guard_options, stop, args.concurrency)
        )
    return _summary(printer, time.monotonic() - started, args.format, interrupted=stop.is_set)
