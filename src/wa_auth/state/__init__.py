"""What short-lived processes learn, kept in one SQLite file: the next process knows it too.

n8n starts a process per execution. Without a state file, each one learns again that a token
is dead (a request Meta refuses), that a number is paused (a request per intent until the
probe), that Meta asked for a minute's pause. `StateFile(path)` keeps all of that in one file
in WAL mode, behind the protocols the client and the guard already take:

- `state.verdicts`: a `VerdictStore` (`WhatsAppClient(..., verdicts=state.verdicts)`), so a
  token proved dead in one execution is refused without a request in the next;
- `state.pauses`: a `PauseStore` (`Guard(client, pauses=state.pauses)`): paused numbers and
  open circuits;
- `state.limiter()`: a `RateLimiter` that remembers Meta's `retry_after` penalties (130429,
  131056) across processes (`Guard(client, limiter=state.limiter())`);
- `state.health`: token-health reports by fingerprint, with a TTL: a `HealthCache`
  (`WhatsAppClient(..., health_cache=state.health)`), so one `debug_token` serves them all.

Several processes may share the file: every change is one short transaction through the
file's writer thread (busy timeout, `BEGIN IMMEDIATE`); a read in a blocking call runs in the
caller's thread, and an async one in the writer thread, off the event loop. Times are wall
clock (Unix seconds), since processes share no monotonic clock.

For a fleet on many hosts without Redis, `PostgresState(url)` keeps the verdicts and pauses
on tables of the outbox's PostgreSQL schema (`_postgres`; the `postgres` extra).

The package, by module: `_base` (the opened file, its schema and the checks every store
shares), `_verdicts`, `_pauses`, `_penalties`, `_health` (one store each) and `_file`
(`StateFile`, which opens the file and makes its stores).
"""

from __future__ import annotations

from wa_auth._context import HealthCache
from wa_auth._exports import claim as _claim
from wa_auth.state._file import StateFile
from wa_auth.state._health import DEFAULT_HEALTH_TTL, SqliteHealthCache
from wa_auth.state._pauses import SqlitePauseStore
from wa_auth.state._penalties import SqliteRateLimiter
from wa_auth.state._postgres import PostgresPauseStore, PostgresState, PostgresVerdictStore
from wa_auth.state._verdicts import SqliteVerdictStore

__all__ = [
    "DEFAULT_HEALTH_TTL",
    "HealthCache",
    "PostgresPauseStore",
    "PostgresState",
    "PostgresVerdictStore",
    "SqliteHealthCache",
    "SqlitePauseStore",
    "SqliteRateLimiter",
    "SqliteVerdictStore",
    "StateFile",
]

_claim(__name__, globals())
