"""A component's tables in a schema of its own name: versions, migrations, the shared pauses.

`PgSchema` lists a component's migrations (`outbox`, `state`); `migrate` brings a database's
schema to this wa_auth's version under an advisory lock (two workers starting together
migrate once), records it in the schema's `meta` table, and refuses a version written by a
newer wa_auth, changing nothing.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import attrs

from wa_auth.errors import OutboxError

__all__ = ["PAUSES_TABLE", "PgSchema", "migrate"]

_log = logging.getLogger("wa_auth.outbox")

#: The pauses the outbox's claims read and `PostgresState` writes (`IF NOT EXISTS`: both
#: components' first migration makes it; whichever runs first).
PAUSES_TABLE: Final = """
    CREATE TABLE IF NOT EXISTS {schema}.pauses (
        kind TEXT NOT NULL,
        phone_number_id TEXT NOT NULL,
        pause TEXT NOT NULL,
        until DOUBLE PRECISION,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (kind, phone_number_id)
    )
"""


@attrs.frozen
class PgSchema:
    """A component's tables: *migrations[i]* takes it from version i to i + 1.

    Each statement may name `{schema}` (the quoted schema). Versions only go forward.
    """

    component: str
    what: str
    migrations: tuple[tuple[str, ...], ...]

    @property
    def version(self) -> int:
        return len(self.migrations)


def migrate(db: Any, conn: Any, *, create: bool) -> None:
    """Create or migrate the component of *db* (a `PgDatabase`) in its schema, under a lock.

    Raises:
        OutboxError: The schema is newer (`newer_schema`), or missing with *create* False
            (`missing`), or the server refused (translated).
    """
    component, target = db.schema.component, db.schema.version
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"wa_auth:{db.name}",))
            found = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name = 'meta'",
                (db.name,),
            ).fetchone()
            version = 0
            if found is not None:
                row = conn.execute(
                    db.q("SELECT version FROM {schema}.meta WHERE component = %s"),
                    (component,),
                ).fetchone()
                version = int(row[0]) if row is not None else 0
            if version > target:
                raise OutboxError(
                    f"{db.schema.what} in {db.where} is at version {version} of "
                    f"{component}, written by a newer wa_auth (this one knows {target}): "
                    "upgrade wa_auth; nothing was changed",
                    path=db.target.where,
                    kind="newer_schema",
                )
            if version == target:
                return
            if not create:
                raise OutboxError(
                    f"{db.where} has no {db.schema.what} at version {target} (found "
                    f"{version}): run `wa-auth outbox migrate --outbox URL`",
                    path=db.target.where,
                    kind="missing",
                )
            conn.execute(db.q("CREATE SCHEMA IF NOT EXISTS {schema}"))
            conn.execute(
                db.q(
                    "CREATE TABLE IF NOT EXISTS {schema}.meta "
                    "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
                )
            )
            for statements in db.schema.migrations[version:]:
                for sql in statements:
                    conn.execute(db.q(sql))
            conn.execute(
                db.q(
                    "INSERT INTO {schema}.meta (component, version) VALUES (%s, %s) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version"
                ),
                (component, target),
            )
    except db.pg.Error as exc:
        raise db.error(exc) from None
    _log.info("%s: %s schema at version %d", db.where, component, target)
