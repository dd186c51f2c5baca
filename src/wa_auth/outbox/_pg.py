"""`PostgresOutbox`'s tables and jobs: the rules of `SqliteOutbox`, stated for PostgreSQL.

Each job is a function of a connection inside the writer's transaction, and refuses (raises
`OutboxError`) before it writes anything. The same conditions as `_jobs` (SQLite), with what
a fleet adds: a claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`, so workers on
many hosts claim at once without waiting for each other and never take the same row; the rows
of a number paused until later (the `pauses` table, which `PostgresState` writes) are not
claimed; and every change that makes work for the others `NOTIFY`s the schema's channel.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final

from wa_auth import _table
from wa_auth._delivery import Delivery
from wa_auth._postgres import PAUSES_TABLE, PgSchema
from wa_auth._sqlite import dumps
from wa_auth.errors import OutboxError
from wa_auth.outbox._sql import COLUMNS, error_json, row_from, settle_insert
from wa_auth.outbox._values import (
    OUTBOX_STATES,
    REPLAYED_FAILURES,
    SENDING,
    TOKEN_WAIT_CATEGORIES,
    OutboxRow,
    OutboxStats,
    begin_refusal,
    status_failure,
)

if TYPE_CHECKING:
    from wa_auth.webhooks import MessageStatus

__all__ = ["SCHEMA", "PgJobs"]

_log = logging.getLogger("wa_auth.outbox")

_OPEN: Final = "('pending', 'sending', 'queued', 'failed', 'maybe_delivered')"
#: Version 1. Never edit a released migration: append the next one.
SCHEMA: Final = PgSchema(
    component="outbox",
    what="outbox",
    migrations=(
        (
            """
            CREATE TABLE {schema}.outbox (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                idempotency_key TEXT NOT NULL UNIQUE,
                intent TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                category TEXT,
                reason TEXT,
                error TEXT,
                message_id TEXT,
                token_fingerprint TEXT,
                not_before DOUBLE PRECISION,
                not_after DOUBLE PRECISION,
                consumer TEXT,
                phone_number_id TEXT,
                lease_owner TEXT,
                lease_until DOUBLE PRECISION,
                created_at DOUBLE PRECISION NOT NULL,
                enqueued_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
            f"CREATE INDEX outbox_open ON {{schema}}.outbox (id) WHERE state IN {_OPEN}",
            (
                "CREATE INDEX outbox_lease ON {schema}.outbox (lease_owner) "
                "WHERE lease_owner IS NOT NULL"
            ),
            PAUSES_TABLE,
        ),
    ),
)

_INSERT: Final = (
    "INSERT INTO {schema}.outbox (idempotency_key, intent, state, consumer, phone_number_id, "
    "created_at, not_after, lease_owner, lease_until, enqueued_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING"
)
# One statement for an outcome: the row's update, or the row of an intent the outbox did not
# know yet (the guard held it back before `begin`). A delivered row stays delivered, an
# expired one expired unless it was delivered after all.
_SETTLE: Final = (
    "INSERT INTO {schema}.outbox AS o (idempotency_key, intent, state, attempts, category, "
    "reason, error, message_id, token_fingerprint, not_before, not_after, consumer, "
    "phone_number_id, created_at, enqueued_at, updated_at) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (idempotency_key) DO UPDATE SET state = excluded.state, "
    "attempts = o.attempts + excluded.attempts, category = excluded.category, "
    "reason = excluded.reason, error = excluded.error, "
    "message_id = coalesce(excluded.message_id, o.message_id), "
    "token_fingerprint = coalesce(excluded.token_fingerprint, o.token_fingerprint), "
    "not_before = excluded.not_before, lease_owner = NULL, lease_until = NULL, "
    "updated_at = excluded.updated_at WHERE o.state != 'delivered' "
    "AND (o.state != 'expired' OR excluded.state = 'delivered') "
    # A status webhook failed this very wamid before its send was settled: it stays failed.
    "AND NOT coalesce(o.state = 'failed' AND o.message_id = excluded.message_id, false)"
)
_RETRYABLE_STATES: Final = frozenset({"queued", "pending", "failed"})


class PgJobs:
    """The outbox's changes and reads, as functions of a connection, for one schema."""

    def __init__(self, where: str, path: str, quote: Any, channel: str) -> None:
        self.where = where
        self.path = path
        self.q = quote
        self.channel = channel
        self.insert = quote(_INSERT)
        self.insert_many = quote(_INSERT.split("VALUES")[0] + "VALUES ")
        self.returning = " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
        self.settle_sql = quote(_SETTLE)

    def notify(self, conn: Any) -> None:
        """Wake the idle workers (delivered at commit; one per transaction is enough)."""
        conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    def _refused(self, key: str, kind: str, why: str) -> OutboxError:
        return OutboxError(
            f"intent {key!r} in the outbox of {self.where} {why}: not sent again",
            path=self.path,
            kind=kind,
            retryable=kind == "busy",
        )

    def begin(
        self, conn: Any, values: tuple[Any, ...], owner: str, until: float, now: float
    ) -> None:
        """Record the intent as `sending`, leased to *owner*, or refuse (`begin_refusal`)."""
        if conn.execute(self.insert, values).rowcount == 1:
            return
        key = values[0]
        state, lease_owner, held_until = conn.execute(
            self.q(
                "SELECT state, lease_owner, lease_until FROM {schema}.outbox "
                "WHERE idempotency_key = %s FOR UPDATE"
            ),
            (key,),
        ).fetchone()
        refusal = begin_refusal(state, lease_owner, held_until, owner, now)
        if refusal is not None:
            raise self._refused(key, *refusal)
        conn.execute(
            self.q(
                "UPDATE {schema}.outbox SET state = 'sending', lease_owner = %s, "
                "lease_until = %s, updated_at = %s, intent = CASE WHEN phone_number_id IS NULL "
                "AND %s::text IS NOT NULL THEN %s ELSE intent END, "
                "phone_number_id = coalesce(phone_number_id, %s) WHERE idempotency_key = %s"
            ),
            (owner, until, now, values[4], values[1], values[4], key),
        )

    def begin_many(
        self, conn: Any, items: list[tuple[tuple[Any, ...], str, float, float]]
    ) -> list[tuple[bool, Any]]:
        """`begin` for many intents: the new ones in one multi-row INSERT, the rest one by one.

        Each item is (`INSERT` values, owner, lease_until, now). A key already in the outbox
        (or repeated in the batch) goes through `begin`, which refuses what must be refused.
        """
        results: list[tuple[bool, Any] | None] = [None] * len(items)
        first: dict[str, int] = {}
        for n, item in enumerate(items):
            first.setdefault(item[0][0], n)
        fresh = sorted(first.values())
        if len(fresh) > 1:
            one = "(" + ", ".join(["%s"] * 11) + ")"
            found = conn.execute(
                self.insert_many + ", ".join([one] * len(fresh)) + self.returning,
                [v for n in fresh for v in items[n][0]],
            ).fetchall()
            taken = {r[0] for r in found}
            for n in fresh:
                if items[n][0][0] in taken:
                    results[n] = (True, None)
        for n, result in enumerate(results):
            if result is None:
                try:
                    self.begin(conn, *items[n])
                    results[n] = (True, None)
                except OutboxError as exc:
                    results[n] = (False, exc)
        return results  # type: ignore[return-value]

    def settle_many(
        self, conn: Any, items: list[tuple[tuple[Any, ...], Delivery]]
    ) -> list[tuple[bool, Any]]:
        """Record outcomes: one upsert each, sent together (psycopg's pipeline)."""
        rows = [settle_insert(update, delivery) for update, delivery in items]
        wake = any(update[0] in _RETRYABLE_STATES for update, _ in items)
        with conn.cursor() as cur:
            cur.executemany(self.settle_sql, rows)
        if wake:
            self.notify(conn)
        return [(True, None)] * len(items)

    def enqueue(self, conn: Any, rows: Sequence[tuple[Any, ...]]) -> int:
        """Add `pending` rows; a key already in the outbox keeps its row. Return rows added."""
        if not rows:
            return 0
        added = 0
        with conn.cursor() as cur:
            cur.executemany(self.insert, rows, returning=False)
            added = cur.rowcount
        if added:
            self.notify(conn)
        return int(added)

    def recover(self, conn: Any, now: float) -> int:
        """Turn `sending` rows whose lease lapsed into `maybe_delivered`; return how many."""
        count = int(
            conn.execute(
                self.q(
                    "UPDATE {schema}.outbox SET state = 'maybe_delivered', "  # noqa: S608
                    "reason = 'lease_expired', lease_owner = NULL, lease_until = NULL, "
                    "updated_at = %s WHERE id IN (SELECT id FROM {schema}.outbox "
                    f"WHERE state IN {_OPEN} AND state = 'sending' "
                    "AND (lease_until IS NULL OR lease_until < %s) FOR UPDATE SKIP LOCKED)"
                ),
                (now, now),
            ).rowcount
        )
        if count:
            _log.warning(
                "outbox of %s: %d intent(s) were left in sending by a worker that stopped "
                "(their lease lapsed): now maybe_delivered, not replayed unless asked",
                self.where,
                count,
                extra={"wa_auth": {"event": "outbox.recovered", "count": count}},
            )
        return count

    def claim(
        self,
        conn: Any,
        *,
        owner: str,
        now: float,
        lease_until: float,
        limit: int,
        after: int,
        live: Collection[str] | None,
        include_maybe_delivered: bool,
    ) -> list[OutboxRow]:
        """Lease up to *limit* replayable rows after id *after* to *owner*, in id order."""
        self.recover(conn, now)
        clause = "false"
        params: list[Any] = [min(after, 2**63 - 1), now, owner, now, _table.TOKEN_UNAVAILABLE]
        if live:
            clause = (
                "(category = ANY(%s) AND (token_fingerprint IS NULL "
                "OR NOT token_fingerprint = ANY(%s)))"
            )
            params.extend((sorted(TOKEN_WAIT_CATEGORIES), list(live)))
        params.extend((bool(include_maybe_delivered), now, min(limit, 2**62)))
        picked = self.q(
            f"SELECT id FROM {{schema}}.outbox o WHERE state IN {_OPEN} AND id > %s "  # noqa: S608
            "AND (lease_until IS NULL OR lease_until < %s OR lease_owner = %s) AND ("
            "state = 'pending' "
            "OR (state = 'queued' AND (not_before IS NULL OR not_before <= %s)) "
            f"OR (state = 'failed' AND (category = %s OR {clause})) "
            "OR (state = 'maybe_delivered' AND %s)) "
            "AND NOT EXISTS (SELECT 1 FROM {schema}.pauses p WHERE "
            "p.phone_number_id = o.phone_number_id AND p.until > %s) "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
        )
        found = conn.execute(
            self.q(
                f"UPDATE {{schema}}.outbox SET lease_owner = %s, lease_until = %s "  # noqa: S608
                f"WHERE id IN ({picked}) RETURNING {COLUMNS}"
            ),
            [owner, lease_until, *params],
        ).fetchall()
        claimed: list[OutboxRow] = []
        unreadable: list[tuple[int, str]] = []
        for r in sorted(found, key=lambda r: r[0]):
            try:
                claimed.append(row_from(r, self.path))
            except OutboxError as exc:
                unreadable.append((r[0], exc.message))
        for row_id, message in unreadable:  # a dead letter for an operator, not a stuck replay
            conn.execute(
                self.q(
                    "UPDATE {schema}.outbox SET state = 'failed', category = 'invalid_request', "
                    "reason = 'unreadable', error = %s, lease_owner = NULL, lease_until = NULL, "
                    "updated_at = %s WHERE id = %s"
                ),
                (
                    dumps(
                        {"type": "OutboxError", "category": "invalid_request", "message": message}
                    ),
                    now,
                    row_id,
                ),
            )
        return claimed

    def release(self, conn: Any, owner: str) -> int:
        """Give back *owner*'s claims that were not sent; return how many."""
        count = int(
            conn.execute(
                self.q(
                    "UPDATE {schema}.outbox SET lease_owner = NULL, lease_until = NULL "
                    "WHERE lease_owner = %s AND state != 'sending'"
                ),
                (owner,),
            ).rowcount
        )
        if count:
            self.notify(conn)
        return count

    def mark(
        self,
        conn: Any,
        key: str,
        state: str,
        now: float,
        reason: str | None,
        message_id: str | None,
    ) -> OutboxRow:
        """Set an operator's *state* on the row of *key*; refuse one in flight."""
        found = conn.execute(
            self.q(
                "SELECT state, lease_until FROM {schema}.outbox WHERE idempotency_key = %s "
                "FOR UPDATE"
            ),
            (key,),
        ).fetchone()
        if found is None:
            raise OutboxError(
                f"the outbox of {self.where} has no intent {key!r}",
                path=self.path,
                kind="not_found",
            )
        if found[0] == SENDING and found[1] is not None and found[1] >= now:
            raise self._refused(key, "busy", "is being sent right now")
        conn.execute(
            self.q(
                "UPDATE {schema}.outbox SET state = %s, reason = %s, "
                "message_id = coalesce(%s, message_id), "
                "not_before = CASE WHEN %s = 'pending' THEN NULL ELSE not_before END, "
                "lease_owner = NULL, lease_until = NULL, updated_at = %s "
                "WHERE idempotency_key = %s"
            ),
            (state, reason, message_id, state, now, key),
        )
        if state == "pending":
            self.notify(conn)
        row = self.get(conn, key)
        assert row is not None
        return row

    def apply_status(self, conn: Any, event: MessageStatus, now: float) -> OutboxRow | None:
        """Apply a status webhook to the row its key names (`status_failure`); return the row."""
        key = event.idempotency_key
        if not key:
            return None
        found = conn.execute(
            self.q(
                "SELECT state, message_id FROM {schema}.outbox WHERE idempotency_key = %s "
                "FOR UPDATE"
            ),
            (key,),
        ).fetchone()
        if found is None:
            return None
        fields = status_failure(found[0], found[1], event)
        if fields is not None:
            error = fields["error"]
            conn.execute(
                self.q(
                    "UPDATE {schema}.outbox SET state = %s, category = %s, reason = %s, "
                    "error = %s, message_id = %s, not_before = NULL, lease_owner = NULL, "
                    "lease_until = NULL, updated_at = %s WHERE idempotency_key = %s"
                ),
                (
                    fields["state"],
                    fields["category"],
                    fields["reason"],
                    error_json(error) if error is not None else None,
                    fields["message_id"],
                    now,
                    key,
                ),
            )
        return self.get(conn, key)

    def get(self, conn: Any, key: str) -> OutboxRow | None:
        """Return the row of *key*, or None."""
        found = conn.execute(
            self.q(f"SELECT {COLUMNS} FROM {{schema}}.outbox WHERE idempotency_key = %s"),  # noqa: S608
            (key,),
        ).fetchone()
        return row_from(found, self.path) if found is not None else None

    def select(
        self,
        conn: Any,
        *,
        state: str | None,
        category: str | None,
        consumer: str | None,
        dead_letters: bool,
        limit: int | None,
    ) -> list[OutboxRow]:
        """Return the rows that match, in id order."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("category", category), ("consumer", consumer)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if dead_letters:
            where.append("state = 'failed' AND (category IS NULL OR NOT category = ANY(%s))")
            params.append(sorted(REPLAYED_FAILURES))
        sql = f"SELECT {COLUMNS} FROM {{schema}}.outbox"  # noqa: S608 - columns are constants
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(min(limit, 2**62))
        rows: list[OutboxRow] = []
        for r in conn.execute(self.q(sql), params):
            try:
                rows.append(row_from(r, self.path))
            except OutboxError as exc:  # one hand-edited row must not hide the others
                _log.warning("%s; left out of the listing", exc.message)
        return rows

    def stats(self, conn: Any) -> OutboxStats:
        """Count the rows by state, by category, and the dead letters."""
        by_state = dict.fromkeys(OUTBOX_STATES, 0)
        for state, count in conn.execute(
            self.q("SELECT state, count(*) FROM {schema}.outbox GROUP BY state")
        ):
            by_state[state] = int(count)
        by_category = {
            c: int(n)
            for c, n in conn.execute(
                self.q(
                    "SELECT category, count(*) FROM {schema}.outbox WHERE state != 'delivered' "
                    "AND category IS NOT NULL GROUP BY category ORDER BY category"
                )
            )
        }
        dead = conn.execute(
            self.q(
                "SELECT count(*) FROM {schema}.outbox WHERE state = 'failed' "
                "AND (category IS NULL OR NOT category = ANY(%s))"
            ),
            (sorted(REPLAYED_FAILURES),),
        ).fetchone()[0]
        oldest = conn.execute(
            self.q(
                "SELECT min(created_at) FROM {schema}.outbox WHERE state IN ('pending', 'queued')"
            )
        ).fetchone()[0]
        return OutboxStats(
            total=sum(by_state.values()),
            by_state=by_state,
            by_category=by_category,
            dead_letters=int(dead),
            oldest_waiting=oldest,
        )

    def purge(self, conn: Any, states_before: Sequence[tuple[str, float]]) -> int:
        """Delete the rows in each (state, before) pair last changed before that time."""
        total = 0
        for state, before in states_before:
            total += conn.execute(
                self.q("DELETE FROM {schema}.outbox WHERE state = %s AND updated_at < %s"),
                (state, before),
            ).rowcount
        return total

    def next_due(self, conn: Any, now: float) -> float | None:
        """When the next `queued` row becomes due (for a waiting worker's bounded sleep)."""
        found = conn.execute(
            self.q(
                "SELECT min(not_before) FROM {schema}.outbox WHERE state = 'queued' "
                "AND not_before > %s"
            ),
            (now,),
        ).fetchone()
        return float(found[0]) if found and found[0] is not None else None
