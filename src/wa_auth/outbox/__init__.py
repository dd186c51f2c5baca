"""The outbox: every intent recorded before it is sent and settled after, so none is lost.

`Outbox` is the protocol. A `Guard` given one calls `begin(intent)` just before the intent's
first request (the row becomes `sending`, committed before the request goes out) and
`settle(delivery)` with what became of it. A queue worker uses the rest: `enqueue` intents,
`claim` the replayable ones (a lease: no other worker sends them meanwhile), `mark` a row by
hand, `list`, `stats`, `purge`, and `replay(guard)`, which sends what is replayable through a
guard by every rule of `docs/outbox.md`. Every method has an `a`-prefixed async form, so an
outbox doing I/O never blocks an event loop, and a fleet's Redis outbox fits unchanged.

`MemoryOutbox` keeps the rows in memory (tests, scripts). `SqliteOutbox(path)` keeps them in a
SQLite file in WAL mode that several processes may share (n8n starts one per execution): one
writer thread per outbox commits the changes of concurrent sends together (group commit),
off the event loop, and a row found in `sending` with its lease lapsed becomes
`maybe_delivered`, never sent twice without the operator's say. `PostgresOutbox(url)` keeps
the same rows by the same rules in PostgreSQL, for a fleet of workers on many hosts (claims
with `FOR UPDATE SKIP LOCKED`, idle workers woken by `LISTEN/NOTIFY`; the `postgres` extra).

The package, by module: `_values` (the states, a row, the statistics, a replay's report and
the rules on a row), `_protocol` (`Outbox` and `Replayer`), `_replay` (replay, written once as
effects), `_common` (the checks and the replay both stores share), `_memory` (`MemoryOutbox`),
`_sql` (the schema and the SQL), `_jobs` (the writer's jobs), `_sqlite` (`SqliteOutbox`), `_pg_sql`
(the PostgreSQL schema and statements), `_pg` (its jobs) and `_postgres` (`PostgresOutbox`).
Nothing here imports `wa_auth.guards`: a replay takes a `Replayer`.
"""

from __future__ import annotations

from wa_auth._exports import claim as _claim
from wa_auth.outbox._memory import MemoryOutbox
from wa_auth.outbox._postgres import PostgresOutbox
from wa_auth.outbox._protocol import Outbox, Replayer
from wa_auth.outbox._sqlite import SqliteOutbox
from wa_auth.outbox._values import (
    DEFAULT_LEASE,
    MARKABLE_STATES,
    OUTBOX_STATES,
    PENDING,
    REPLAYED_FAILURES,
    SENDING,
    OutboxRow,
    OutboxStats,
    Replay,
)

__all__ = [
    "DEFAULT_LEASE",
    "MARKABLE_STATES",
    "OUTBOX_STATES",
    "PENDING",
    "REPLAYED_FAILURES",
    "SENDING",
    "MemoryOutbox",
    "Outbox",
    "OutboxRow",
    "OutboxStats",
    "PostgresOutbox",
    "Replay",
    "Replayer",
    "SqliteOutbox",
]

_claim(__name__, globals())
