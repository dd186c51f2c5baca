"""`wa-auth send`: intents in, one result line per intent out, through the guard.

The input is one message from flags, JSON lines (or a JSON array) from `--input FILE` or
stdin, or one intent as `--input-b64`. A line that is not an intent is that line's
`invalid_request` result; the other lines still go out. One intent is sent with the blocking
client (the smallest cold start); a batch goes concurrently over one connection pool, on the
aiohttp client when `wa_auth[fast]` is installed. SIGTERM and SIGINT stop new sends: what is
in flight finishes, the rest is reported as not sent, and the summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import importlib.util
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from wa_auth._cli import _codes, _config
from wa_auth._cli._output import (
    bad_line,
    delivery_line,
    error_object,
    fill_defaults,
    not_sent_line,
    refused_line,
    summary_line,
    write,
)
from wa_auth.errors import ConfigurationError, OutboxError, RequestValidationError
from wa_auth.intents import Intent

#: One input: its line number and the intent, or the result line of a line that is not one.
Item = tuple[int, "Intent | dict[str, Any]"]

_KINDS: Final = ("text", "template", "image", "document")
_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


# --- input ---------------------------------------------------------------------------------------


def _from_flags(args: argparse.Namespace) -> list[Item]:
    """Return the one intent the flags describe (or its invalid_request line)."""
    if args.to is None:
        raise ConfigurationError("--to is required with --text, --template, --image, --document")
    kind = next((k for k in _KINDS if getattr(args, k) is not None), None)
    if kind is None:
        raise ConfigurationError(
            "say what to send: --text, --template, --image or --document (or --input)"
        )
    options: dict[str, Any] = {}
    if args.idempotency_key is not None:
        options["idempotency_key"] = args.idempotency_key
    if args.not_after is not None:
        options["not_after"] = args.not_after
    try:
        if kind == "text":
            intent = Intent.text(args.to, args.text, preview_url=args.preview_url, **options)
        elif kind == "template":
            params = [{"type": "text", "text": p} for p in args.param]
            components = [{"type": "body", "parameters": params}] if params else None
            intent = Intent.template(args.to, args.template, args.lang, components, **options)
        else:
            intent = Intent.media(
                args.to,
                kind,
                link=getattr(args, kind),
                caption=args.caption,
                filename=args.filename if kind == "document" else None,
                **options,
            )
    except RequestValidationError as exc:
        return [(1, bad_line(exc.message, 1, args.idempotency_key))]
    return [(1, intent)]


def parse_item(value: object, line: int) -> Item:
    """Return the intent *value* describes, or the invalid_request line naming the field."""
    try:
        return (line, Intent.from_dict(value))
    except RequestValidationError as exc:
        key = value.get("idempotency_key") if isinstance(value, Mapping) else None
        return (line, bad_line(exc.message, line, key if isinstance(key, str) else None))


def parse_text(text: str) -> list[Item]:
    """Return the items of JSON lines, or of a JSON array of intents.

    A file whose first character is `[` is one JSON array (what n8n's "Convert to File" node
    writes); otherwise each non-blank line is one intent. Line numbers count from 1 and name
    the physical line (or the array position).
    """
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        try:
            values = json.loads(stripped)
        except ValueError as exc:
            raise ConfigurationError(f"the input is not a valid JSON array: {exc}") from None
        return [parse_item(v, i) for i, v in enumerate(values, 1)]
    items: list[Item] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            items.append((number, bad_line(f"not valid JSON: {exc}", number)))
            continue
        items.append(parse_item(value, number))
    return items


def _from_b64(data: str) -> list[Item]:
    """Return the one intent (or JSON array of intents) the base64 *data* holds."""
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(data.strip())
        except (binascii.Error, ValueError):
            return [(1, bad_line("--input-b64 is not valid base64", 1))]
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return [(1, bad_line(f"--input-b64 does not hold JSON: {exc}", 1))]
    if isinstance(value, list):
        return [parse_item(v, i) for i, v in enumerate(value, 1)]
    return [parse_item(value, 1)]


def read_items(args: argparse.Namespace) -> list[Item]:
    """Return the inputs of this run, in input order.

    Raises:
        ConfigurationError: Both flags and an input were given, a file cannot be read, or
            there is no input at all.
    """
    flags = args.to is not None or any(getattr(args, k) is not None for k in _KINDS)
    if flags and (args.input is not None or args.input_b64 is not None):
        raise ConfigurationError("give one message as flags or intents as input, not both")
    if flags:
        return _from_flags(args)
    if args.input_b64 is not None:
        return _from_b64(args.input_b64)
    if args.input is not None and args.input != "-":
        try:
            with open(args.input, encoding="utf-8-sig") as f:  # noqa: PTH123 - one read
                text = f.read()
        except OSError as exc:
            raise ConfigurationError(
                f"--input {args.input}: cannot read it ({exc.strerror or exc})"
            ) from None
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"--input {args.input}: not UTF-8 text ({exc})") from None
    elif args.input is None and sys.stdin is not None and sys.stdin.isatty():
        raise ConfigurationError(
            "nothing to send: give --to and --text, --input FILE, --input-b64, or pipe JSON "
            "lines to stdin"
        )
    else:
        text = "" if sys.stdin is None else sys.stdin.read()
    items = parse_text(text)
    if not items:
        raise ConfigurationError("nothing to send: the input has no intent")
    return items


# --- output --------------------------------------------------------------------------------------


class _Printer:
    """Prints result lines in input order as soon as every earlier one is decided."""

    def __init__(self, total: int, fmt: str, defaults: dict[str, Any]) -> None:
        self.lines: list[dict[str, Any] | None] = [None] * total
        self._next = 0
        self._done = 0
        self._fmt = fmt
        #: The client's sender and consumer, printed for intents that leave them to it.
        self._defaults = defaults
        self._progress = sys.stderr.isatty() and total > 1
        self._step = max(1, total // 100)

    def put(self, index: int, line: dict[str, Any]) -> None:
        self.lines[index] = fill_defaults(line, self._defaults)
        self._done += 1
        while self._next < len(self.lines) and self.lines[self._next] is not None:
            _print_result(self.lines[self._next], self._fmt)  # type: ignore[arg-type]
            self._next += 1
        if self._progress and (self._done % self._step == 0 or self._done == len(self.lines)):
            sys.stderr.write(f"\rwa-auth send: {self._done}/{len(self.lines)} done")
            if self._done == len(self.lines):
                sys.stderr.write("\n")
            sys.stderr.flush()


def _print_result(line: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        write(line)
        return
    where = f"line {line['line']}"
    if line["ok"]:
        text = f"{where}: delivered to {line['to']} ({line['message_id']})"
    else:
        error = line["error"] or {}
        text = (
            f"{where}: {line['state']} {line['category']} (exit {line['exit_code']}): "
            f"{error.get('message')}"
        )
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


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
        sys.stderr.write(
            f"wa-auth send: {len(lines)} intents: {parts} in {seconds:.1f} s{stopped}; "
            f"exit {code}\n"
        )
    return code


# --- sending -------------------------------------------------------------------------------------


def _guard_options(args: argparse.Namespace) -> dict[str, Any]:
    from wa_auth.guards import RetryPolicy

    options: dict[str, Any] = {
        "policy": RetryPolicy(max_attempts=args.max_attempts, budget=args.budget)
    }
    if args.rate is not None:
        from wa_auth.pacing import LocalRateLimiter

        options["limiter"] = LocalRateLimiter(rate=args.rate)
    return options


class _Stop:
    """Set by SIGTERM or SIGINT: no new send starts; what is in flight finishes."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, _frame: object = None) -> None:
        self.signal_name = signal.Signals(signum).name

    @property
    def is_set(self) -> bool:
        return self.signal_name is not None


def _not_sent(stop: _Stop, intent: Intent, line: int, *, queued: bool) -> dict[str, Any]:
    return not_sent_line(intent, line, queued=queued, signal_name=stop.signal_name or "a signal")


def _refused(exc: OutboxError, intent: Intent, line: int) -> dict[str, Any]:
    """The line of an intent the outbox would not let go out (already delivered, in flight)."""
    return refused_line(error_object(exc), intent, line)


def _send_one(
    items: list[Item],
    printer: _Printer,
    client_options: dict[str, Any],
    guard_options: dict[str, Any],
    stop: _Stop,
) -> None:
    from wa_auth._client import WhatsAppClient
    from wa_auth.guards import Guard

    # Only the main thread may set signal handlers (a test may call main() from another).
    handle = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS} if handle else {}
    queued = guard_options.get("outbox") is not None
    try:
        with WhatsAppClient(**client_options) as client:
            guard = Guard(client, **guard_options)
            for index, (line, item) in enumerate(items):
                if not isinstance(item, Intent):
                    printer.put(index, item)
                elif stop.is_set:
                    printer.put(index, _not_sent(stop, item, line, queued=queued))
                else:
                    try:
                        printer.put(index, delivery_line(guard.send(item), line))
                    except OutboxError as exc:
                        printer.put(index, _refused(exc, item, line))
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
    from wa_auth.guards import Guard

    client_class: Callable[..., Any]
    if importlib.util.find_spec("aiohttp") is not None:
        from wa_auth._fast import FastAsyncWhatsAppClient

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
                    try:
                        delivery = await guard.asend(intent)
                    except OutboxError as exc:
                        printer.put(index, _refused(exc, intent, line))
                        return
                printer.put(index, delivery_line(delivery, line))

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
    from wa_auth._outbox_common import with_sender

    outbox = open_outbox(outbox_path, create=True)
    try:
        # Every intent is in the outbox (pending) before the first send: one a signal stops
        # stays there for `wa-auth outbox replay`, from the number it was meant for.
        outbox.enqueue_many(with_sender(intents, client_options["phone_number_id"]))
        guard_options["outbox"] = outbox
        return _send(args, items, intents, client_options, guard_options, started)
    finally:
        outbox.close()


def open_outbox(path: str, *, create: bool) -> Any:
    """Open the SQLite outbox at *path*.

    Raises:
        ConfigurationError: The file cannot be used (missing, read-only, corrupt, newer schema).
        OutboxUnavailableError: The disk is full or the file locked (`transient`: try again).
    """
    from wa_auth.errors import OutboxUnavailableError
    from wa_auth.outbox import SqliteOutbox

    try:
        return SqliteOutbox(path, create=create)
    except OutboxUnavailableError:
        raise  # the file is fine: try again later (exit 8), not a usage error
    except OutboxError as exc:
        raise ConfigurationError(f"--outbox {path}: {exc.message}") from None


def _send(
    args: argparse.Namespace,
    items: list[Item],
    intents: list[Intent],
    client_options: dict[str, Any],
    guard_options: dict[str, Any],
    started: float,
) -> int:
    defaults = {k: client_options[k] for k in ("phone_number_id", "consumer")}
    printer = _Printer(len(items), args.format, defaults)
    stop = _Stop()
    if len(intents) <= 1:
        _send_one(items, printer, client_options, guard_options, stop)
    else:
        asyncio.run(
            _send_many(items, printer, client_options, guard_options, stop, args.concurrency)
        )
    return _summary(printer, time.monotonic() - started, args.format, interrupted=stop.is_set)
