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
from typing import TYPE_CHECKING, Any

from wa_auth import _table
from wa_auth._delivery import Delivery
from wa_auth._sqlite import dumps
from wa_auth.errors import OutboxError
from wa_auth.outbox._pg_sql import (
    INSERT,
    OPEN,
    RETRYABLE_STATES,
    SCHEMA,
    SETTLE,
    SETTLE_HEAD,
    SETTLE_ROW,
    SETTLE_TAIL,
)
from wa_auth.outbox._sql import COLUMNS, chunks, error_json, row_from, settle_insert
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


class PgJobs:
    """The outbox's changes and reads, as functions of a connection, for one schema."""

    def __init__(self, where: str, path: str, quote: Any, channel: str) -> None:
        self.where = where
        self.path = path
        self.q = quote
        self.channel = channel
        self.insert = quote(INSERT)
        self.insert_many = quote(INSERT.split("VALUES")[0] + "VALUES ")
        self.returning = " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
        self.settle_sql = quote(SETTLE)
        self.settle_head = quote(SETTLE_HEAD)
        self.settle_tail = SETTLE_TAIL

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
        """Record outcomes: one `UPDATE ... FROM (VALUES ...)` per chunk of distinct keys.

        A row the statement did not change (an intent the outbox does not know yet, or a row
        the rules keep as it is) goes through the upsert, which adds the one and keeps the
        other; only those pay for the intent's JSON.
        """
        wake = False
        with conn.cursor() as cur:
            for rows in chunks(items, lambda item: item[0][9]):
                values = [v for n in rows for v in items[n][0][:10]]
                found = cur.execute(
                    self.settle_head + ", ".join([SETTLE_ROW] * len(rows)) + self.settle_tail,
                    values,
                ).fetchall()
                done = {r[0] for r in found}
                missed = [n for n in rows if items[n][0][9] not in done]
                if missed:
                    cur.executemany(self.settle_sql, [settle_insert(*items[n]) for n in missed])
                wake = wake or any(items[n][0][0] in RETRYABLE_STATES for n in rows)
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
                    f"WHERE state IN {OPEN} AND state = 'sending' "
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
        numbers: int = 1,
    ) -> list[OutboxRow]:
        """Lease up to *limit* replayable rows after id *after* to *owner*, in id order.

        Per-number order across the fleet: the numbers `held_numbers` names are left alone,
        and so is a number whose oldest row another transaction has locked (skipped, never
        waited for: claims do not block each other); the claim takes the leading rows of at
        most *numbers* numbers (`head_run`), up to one it could not lock. Two claims at once
        cannot both take rows of one number: the second finds the first's rows locked, or
        (once committed) leased.
        """
        self.recover(conn, now)
        waiting = "false"
        p: dict[str, Any] = {
            "after": min(after, 2**63 - 1),
            "now": now,
            "owner": owner,
            "until": lease_until,
            "token_unavailable": _table.TOKEN_UNAVAILABLE,
            "maybe": bool(include_maybe_delivered),
            "limit": min(limit, 2**62),
            "numbers": min(numbers, 2**62),
        }
        if live:
            waiting = (
                "(category = ANY(%(waits)s) AND (token_fingerprint IS NULL "
                "OR NOT token_fingerprint = ANY(%(live)s)))"
            )
            p.update(waits=sorted(TOKEN_WAIT_CATEGORIES), live=list(live))
        replayable = (
            "(state = 'pending' "
            "OR (state = 'queued' AND (not_before IS NULL OR not_before <= %(now)s)) "
            f"OR (state = 'failed' AND (category = %(token_unavailable)s OR {waiting})) "
            "OR (state = 'maybe_delivered' AND %(maybe)s))"
        )
        free = "(lease_until IS NULL OR lease_until < %(now)s OR lease_owner = %(owner)s)"
        found = conn.execute(
            self.q(
                "WITH held AS (SELECT DISTINCT coalesce(phone_number_id, '') AS num "  # noqa: S608
                f"FROM {{schema}}.outbox WHERE state IN {OPEN} AND ((lease_owner <> %(owner)s "
                "AND lease_until >= %(now)s) OR (id <= %(after)s "
                "AND lease_owner IS DISTINCT FROM %(owner)s "
                f"AND (lease_until IS NULL OR lease_until < %(now)s) AND {replayable}))), "
                "cand AS (SELECT id, coalesce(phone_number_id, '') AS num FROM {schema}.outbox o "
                f"WHERE state IN {OPEN} AND id > %(after)s AND {free} AND {replayable} "
                "AND coalesce(phone_number_id, '') NOT IN (SELECT num FROM held) "
                "AND NOT EXISTS (SELECT 1 FROM {schema}.pauses p WHERE "
                "p.phone_number_id = o.phone_number_id "
                "AND (p.until IS NULL OR p.until > %(now)s)) "
                "ORDER BY id LIMIT %(limit)s), "
                "locked AS (SELECT id FROM {schema}.outbox WHERE id IN (SELECT id FROM cand) "
                f"AND {free} AND {replayable} FOR UPDATE SKIP LOCKED), "
                "firsts AS (SELECT DISTINCT ON (num) num, id FROM cand ORDER BY num, id), "
                "rest AS (SELECT id, num FROM cand WHERE num NOT IN (SELECT num FROM firsts "
                "WHERE id NOT IN (SELECT id FROM locked))), "
                "taken AS (SELECT num FROM rest GROUP BY num ORDER BY min(id) "
                "LIMIT %(numbers)s), "
                "stop AS (SELECT min(id) AS id FROM rest "
                "WHERE num NOT IN (SELECT num FROM taken) "
                "OR id NOT IN (SELECT id FROM locked)) "
                "UPDATE {schema}.outbox u SET lease_owner = %(owner)s, lease_until = %(until)s "
                "FROM rest r WHERE u.id = r.id "
                "AND r.id < coalesce((SELECT id FROM stop), 9223372036854775807) "
                f"RETURNING {', '.join('u.' + c for c in COLUMNS.split(', '))}"
            ),
            p,
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
