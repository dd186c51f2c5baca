"""One SQLite file that several processes share, for the outbox and the state file.

- `_open`: opening the file: WAL mode and pragmas, the schema's versions and migrations
  (`Schema`), a file that is missing, foreign, newer, read-only or corrupt refused, and every
  `sqlite3` error translated into an `OutboxError` naming the file (`translate`).
- `_commit`: a batch of jobs run in one transaction (group commit), a failing job alone, each
  result handed to the caller that waits for it.
- `_database`: `Database`: the queue and the one writer thread, reads in the caller's thread,
  the health check, closing (and a forked child's own connections).
- `_stored`: what the files store beside SQL values: JSON text that SQLite can hold, and an
  error rebuilt from its `to_dict()`.

`wa_auth.state` and `wa_auth.outbox._sqlite` both build on it; it knows neither.
"""

from __future__ import annotations

from wa_auth._sqlite._database import Database
from wa_auth._sqlite._open import (
    DEFAULT_BUSY_TIMEOUT,
    DEFAULT_FLUSH_INTERVAL,
    DURABILITY,
    Bulk,
    Schema,
    translate,
)
from wa_auth._sqlite._stored import (
    dumps,
    encodable,
    error_from_dict,
    loads_object,
    printable,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_FLUSH_INTERVAL",
    "DURABILITY",
    "Bulk",
    "Database",
    "Schema",
    "dumps",
    "encodable",
    "error_from_dict",
    "loads_object",
    "printable",
    "translate",
]
