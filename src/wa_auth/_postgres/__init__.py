"""One PostgreSQL database shared by the workers of a fleet, for the outbox and the state.

- `_connect`: psycopg 3 imported lazily (the `postgres` extra), a URL taken apart (the server
  and database that messages name; never the password), every psycopg error translated into
  an `OutboxError` naming the server and the problem (`translate`).
- `_schema`: a component's tables (`PgSchema`), created and migrated under an advisory lock,
  a newer version refused (`migrate`); the pauses table both components share.
- `_database`: `PgDatabase`: one writer thread that commits waiting changes together (group
  commit), reads in the caller's thread.

`wa_auth.outbox._postgres` and `wa_auth.state._postgres` build on it; it knows neither.
"""

from __future__ import annotations

from wa_auth._postgres._connect import Target, is_postgres_url, psycopg, redact, translate
from wa_auth._postgres._database import DURABILITY, Many, PgDatabase
from wa_auth._postgres._schema import PAUSES_TABLE, PgSchema

__all__ = [
    "DURABILITY",
    "PAUSES_TABLE",
    "Many",
    "PgDatabase",
    "PgSchema",
    "Target",
    "is_postgres_url",
    "psycopg",
    "redact",
    "translate",
]
