"""The CLI's log lines on stderr: wa_auth's warnings always, its events with `--verbose`.

A library never prints (`wa_auth`'s logger has only a `NullHandler`), so without a handler the
client's events and the providers' warnings (a token file others can read, a token source that
fails while a cached token is still served) would never be seen. For the run of a command the
CLI gives the `wa_auth` logger one handler on stderr: WARNING and above always, INFO and above
with `--verbose` (the client then logs every event). Each record is one JSON line (the
schema's `log`): the event's name and fields (token fingerprints, never tokens), or the
warning's text, redacted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Final

from wa_auth._redact import redact_text

__all__ = ["LogLines", "logging_to_stderr"]

_LOGGER: Final = "wa_auth"
_DROPPED: Final = frozenset({"event", "at"})


def _plain(value: Any) -> Any:
    """Return *value* as JSON data: tuples as lists, NaN and infinities as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return redact_text(value) if isinstance(value, str) else value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return redact_text(str(value))


class LogLines(logging.Formatter):
    """Format a record as one JSON line: `{"event": "log", "ts", "level", "logger", ...}`.

    An event's record (from `LoggingSubscriber`) carries its name as `message` and its fields;
    any other record its text as `message` and no fields. A traceback is never printed: it may
    hold a request's data.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's line."""
        fields = getattr(record, "wa_auth", None)
        if isinstance(fields, Mapping):
            # `ts` is the record's time; a field that does not apply (None) is left out.
            data = {k: v for k, v in fields.items() if k not in _DROPPED and v is not None}
            message = str(fields.get("event", record.msg))
            shown: Any = _plain(data)
        else:
            message = redact_text(record.getMessage())
            shown = None
        exc = record.exc_info[1] if record.exc_info else None
        line = {
            "event": "log",
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
            "error": None if exc is None else type(exc).__qualname__,
            "fields": shown,
        }
        return json.dumps(line, ensure_ascii=False, allow_nan=False)


@contextlib.contextmanager
def logging_to_stderr(*, verbose: bool) -> Iterator[None]:
    """Print `wa_auth`'s records on stderr for the block (INFO with *verbose*, else WARNING)."""
    logger = logging.getLogger(_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogLines())
    level = logging.INFO if verbose else logging.WARNING
    handler.setLevel(level)
    previous = logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(level):  # lower the threshold, never raise one set before
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
