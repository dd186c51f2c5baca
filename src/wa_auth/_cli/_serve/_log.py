"""The one logging path of `wa-auth serve`: every record of aiohttp and asyncio is one JSON line.

aiohttp's server logs a request it cannot parse with the parser's message, which quotes the
raw bytes it choked on: an `Authorization` header with the API key, the text of a message in a
body. asyncio logs the repr of a task, a socket or the exception that ended it. So no record is
ever formatted here: a line holds the record's logger, its level, the first line of its
unformatted message (the template, never its arguments) and the type of its exception (never
its text, never a traceback). Nothing derived from a request can reach it.

The service's own lines (the access log, the lifecycle) are written by `_process` and
`_front`; this module turns everything else into lines of the same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, Final

from wa_auth._cli._output import dumps, write, write_text

#: The loggers routed here: aiohttp's server (`aiohttp.server`, `aiohttp.access`, ...), asyncio
#: (the event loop's "exception was never retrieved", "accept() out of system resource") and
#: serve's own notes on its connections (`wa_auth.serve`).
ROUTED_LOGGERS: Final = ("aiohttp", "asyncio", "wa_auth.serve")
#: The lowest level written: what Python prints on stderr without any logging set-up.
LEVEL: Final = logging.WARNING
#: The longest template written: a template is code, but an f-string message could be long.
MAX_MESSAGE: Final = 200


def log_line(record: logging.LogRecord, ts: float) -> dict[str, Any]:
    """Return the JSON line of *record*: its logger, level, template and exception type.

    The template is `record.msg` before `%` formatting, cut at its first line: aiohttp's and
    asyncio's templates are constants, and the data (the peer, the bytes, a repr) is in the
    arguments or on the lines after the first (asyncio's exception handler puts each item of
    its context on a line of its own).
    """
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    exc = record.exc_info[1] if record.exc_info else None
    return {
        "event": "log",
        "ts": round(ts, 3),
        "logger": record.name,
        "level": record.levelname.lower(),
        "message": template.split("\n", 1)[0].strip()[:MAX_MESSAGE],
        "error": None if exc is None else type(exc).__qualname__,
        "fields": None,
    }


class JsonLineHandler(logging.Handler):
    """Write each record as one `log_line` on *stream* (stderr), and nothing else, ever."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        level: int = LEVEL,
    ) -> None:
        super().__init__(level)
        self._stream = stream
        self._clock = clock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write(log_line(record, self._clock()), self._stream or sys.stderr)
        except Exception:  # noqa: BLE001 - a closed stderr must not take the server down
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Drop the record: logging's own report would print its message and arguments."""


@contextlib.contextmanager
def routed(stream: IO[str] | None = None) -> Iterator[JsonLineHandler]:
    """Route `ROUTED_LOGGERS` to one `JsonLineHandler` on *stream*; restore them on exit.

    The loggers stop propagating, so no handler of the root logger (nor Python's last-resort
    handler, which prints a record with its traceback) sees their records.
    """
    handler = JsonLineHandler(stream)
    saved = []
    for name in ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield handler
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate


class Lines:
    """serve's access lines, written together once per turn of the event loop.

    A line is written (and flushed) on the loop's next turn after the request that made it:
    the requests answered in one turn cost one `write` to stderr, not one each. `flush`
    writes what is pending at once (before a lifecycle line, which must follow them).
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._pending: list[str] = []

    def add(self, line: Mapping[str, Any]) -> None:
        """Write *line* on the loop's next turn, with the others of this one."""
        self.add_text(dumps(line))

    def add_text(self, text: str) -> None:
        """Write the JSON line *text* (one line, without its newline) as `add` writes a line."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(text)

    def flush(self) -> None:
        """Write every pending line now."""
        if self._pending:
            text = "\n".join(self._pending) + "\n"
            self._pending.clear()
            write_text(text, self._stream)
