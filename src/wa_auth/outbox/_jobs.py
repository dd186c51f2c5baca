"""The jobs `SqliteOutbox`'s writer thread runs, one function of a connection per change.

Each job is a function of a connection inside the writer's transaction. A job that refuses
(an intent already in flight, a row that does not exist) raises `OutboxError` before it
writes anything, so the other jobs of the same transaction commit unharmed.
"""

from __future__ import annotations

import logging
import operator
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from wa_auth import _table
from wa_auth._delivery import Delivery
from wa_auth._sqlite import dumps
from wa_auth.errors import OutboxError
from wa_auth.outbox._sql import (
    COLUMNS,
    DELIVERED_PICK,
    INSERT,
    INSERT_MANY,
    MANY,
    ON_CONFLICT_RETURNING,
    OPEN,
    SETTLE,
    SETTLE_DELIVERED,
    SETTLE_DELIVERED_HEAD,
    SETTLE_DELIVERED_TAIL,
    SETTLE_MANY_HEAD,
    SETTLE_MANY_TAIL,
    SETTLE_NEW,
    SQLITE_MAX_INT,
    chunks,
    error_json,
    many_rows,
    marks,
    row_from,
    settle_insert,
)
from wa_auth.outbox._values import (
    OUTBOX_STATES,
    REPLAYED_FAILURES,
    SENDING,
    TOKEN_WAIT_CATEGORIES,
    OutboxRow,
    OutboxStats,
    begin_refusal,
    head_run,
    status_failure,
)

if TYPE_CHECKING:
    from wa_auth.webhooks import MessageStatus

__all__ = ["Jobs"]

_log = logging.getLogger("wa_auth.outbox")


class Jobs:
    """The outbox's changes and reads, as functions of a connection, for one file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _refused(self, key: str, kind: str, why: str) -> OutboxError:
        return OutboxError(
            f"intent {key!r} in outbox file {self.path} {why}: not sent again",
            path=self.path,
            kind=kind,
            retryable=kind == "busy",
        )

    def begin(
        self,
        conn: sqlite3.Connection,
        values: tuple[Any, ...],
        owner: str,
        lease_until: float,
        now: float,
    ) -> None:
        """Record the intent as `sending`, leased to *owner*, or refuse (`begin_refusal`)."""
        if conn.execute(INSERT, values).rowcount == 1:
            return
        key = values[0]
        state, lease_owner, held_until = conn.execute(
            "SELECT state, lease_owner, lease_until FROM wa_outbox WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        refusal = begin_refusal(state, lease_owner, held_until, owner, now)
        if refusal is not None:
            raise self._refused(key, *refusal)
        # A row enqueued without a sender gets the one it is sent from (`values`' intent JSON
        # and number): a later replay sends it from there, not from whatever is set up then.
        conn.execute(
            "UPDATE wa_outbox SET state = 'sending', lease_owner = ?, lease_until = ?, "
            "updated_at = ?, intent = CASE WHEN phone_number_id IS NULL AND ? IS NOT NULL "
            "THEN ? ELSE intent END, phone_number_id = coalesce(phone_number_id, ?) "
            "WHERE idempotency_key = ?",
            (owner, lease_until, now, values[4], values[1], values[4], key),
        )

    def begin_many(
        self, conn: sqlite3.Connection, items: list[tuple[tuple[Any, ...], str, float, float]]
    ) -> list[tuple[bool, Any]]:
        """`begin` for many intents: new ones in one INSERT, claimed ones in one UPDATE.

        Each item is (`INSERT` values, owner, lease_until, now). What neither statement took
        (a refusal, a row nobody claimed, an older SQLite) goes through `begin` one by one.
        """
        results: list[tuple[bool, Any] | None] = [None] * len(items)
        if MANY and len(items) > 1:  # one row: the plain statement is cheaper
            for rows in chunks(items, lambda item: item[0][0]):
                values = [v for n in rows for v in items[n][0]]
                sql = f"{INSERT_MANY}{many_rows(len(rows), 11)}{ON_CONFLICT_RETURNING}"
                self._took(items, rows, results, conn.execute(sql, values))
            rest = [n for n, r in enumerate(results) if r is None]
            for rows in chunks([items[n] for n in rest], lambda item: item[0][0]):
                chosen = [rest[n] for n in rows]
                owner = items[chosen[0]][1]
                until = max(items[n][2] for n in chosen)
                now = max(items[n][3] for n in chosen)
                keys = [items[n][0][0] for n in chosen]
                found = conn.execute(
                    "UPDATE wa_outbox SET state = 'sending', lease_until = ?, updated_at = ? "  # noqa: S608 - placeholders only
                    f"WHERE idempotency_key IN ({marks(keys)}) AND lease_owner = ? "
                    "AND state IN ('pending', 'queued', 'failed', 'maybe_delivered') "
                    # A row without its sender yet is taken by `begin`, which records it.
                    "AND phone_number_id IS NOT NULL "
                    "RETURNING idempotency_key",
                    (until, now, *keys, owner),
                )
                self._took(items, chosen, results, found)
        for n, result in enumerate(results):
            if result is None:
                try:
                    self.begin(conn, *items[n])
                    results[n] = (True, None)
                except OutboxError as exc:
                    results[n] = (False, exc)
        return results  # type: ignore[return-value]

    @staticmethod
    def _took(
        items: Sequence[Any],
        chosen: Iterable[int],
        results: list[tuple[bool, Any] | None],
        returned: Iterable[Sequence[Any]],
    ) -> None:
        """Mark as done the items whose key a statement's RETURNING named."""
        done = {r[0] for r in returned}
        for n in chosen:
            key = items[n][0][0]
            if key in done:
                done.discard(key)  # a repeated key: only its first item was taken
                results[n] = (True, None)

    @staticmethod
    def settle_many(
        conn: sqlite3.Connection, items: list[tuple[tuple[Any, ...], Delivery]]
    ) -> list[tuple[bool, Any]]:
        """Record outcomes: one UPDATE ... FROM (VALUES ...) per chunk of rows.

        Each item is (`SETTLE` values, the delivery). A delivered row stays delivered, an
        expired one expired unless it was delivered after all; an intent the outbox does not
        know yet (the guard held it back before `begin`) is added. A row the multi-row
        statement did not change (one of those, or any row with an older SQLite) is taken one
        by one.
        """
        head, tail = SETTLE_MANY_HEAD, SETTLE_MANY_TAIL
        return _settle(conn, items, head, tail, None, SETTLE, lambda update: update)

    @staticmethod
    def settle_delivered_many(
        conn: sqlite3.Connection, items: list[tuple[tuple[Any, ...], Delivery]]
    ) -> list[tuple[bool, Any]]:
        """`settle_many` for plain deliveries (`plain_delivery`): NULLs written, not bound."""
        head, tail = SETTLE_DELIVERED_HEAD, SETTLE_DELIVERED_TAIL
        return _settle(conn, items, head, tail, _PICK, SETTLE_DELIVERED, _delivered_values)

    @staticmethod
    def enqueue(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
        """Add `pending` rows; a key already in the outbox keeps its row. Return rows added."""
        before = conn.total_changes
        conn.executemany(INSERT, rows)
        return conn.total_changes - before

    def recover(self, conn: sqlite3.Connection, now: float) -> int:
        """Turn `sending` rows whose lease lapsed into `maybe_delivered`; return how many."""
        count = conn.execute(
            "UPDATE wa_outbox SET state = 'maybe_delivered', reason = 'lease_expired', "  # noqa: S608 - a constant
            "lease_owner = NULL, lease_until = NULL, updated_at = ? "
            f"WHERE {OPEN} AND state = 'sending' "
            "AND (lease_until IS NULL OR lease_until < ?)",
            (now, now),
        ).rowcount
        if count:
            _log.warning(
                "outbox file %s: %d intent(s) were left in sending by a worker that stopped "
                "(their lease lapsed): now maybe_delivered, not replayed unless asked",
                self.path,
                count,
                extra={"wa_auth": {"event": "outbox.recovered", "count": count}},
            )
        return count

    def claim(
        self,
        conn: sqlite3.Connection,
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

        The numbers `held_numbers` names are left alone, and the claim takes the leading rows
        of at most *numbers* numbers (`head_run`): each number's intents go out in order.
        """
        self.recover(conn, now)
        after = min(after, SQLITE_MAX_INT)
        token_clause = "0"  # noqa: S105 - SQL, not a secret
        if live:
            token_clause = (
                f"(category IN ({marks(TOKEN_WAIT_CATEGORIES)}) AND (token_fingerprint IS NULL "
                f"OR token_fingerprint NOT IN ({marks(live)})))"
            )
        replayable = (
            "(state = 'pending' "
            "OR (state = 'queued' AND (not_before IS NULL OR not_before <= ?)) "
            f"OR (state = 'failed' AND (category = ? OR {token_clause})) "
            "OR (state = 'maybe_delivered' AND ?))"
        )
        values: list[Any] = [now, _table.TOKEN_UNAVAILABLE]
        if live:
            values.extend(sorted(TOKEN_WAIT_CATEGORIES))
            values.extend(live)
        values.append(1 if include_maybe_delivered else 0)
        # The `OPEN` terms repeat the partial index's own condition, so SQLite uses it.
        # The subquery is `held_numbers` (per-number order across the workers sharing a file).
        sql = (
            f"SELECT {COLUMNS} FROM wa_outbox WHERE {OPEN} AND id > ? "  # noqa: S608
            f"AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?) AND {replayable} "
            "AND coalesce(phone_number_id, '') NOT IN (SELECT coalesce(phone_number_id, '') "
            f"FROM wa_outbox WHERE {OPEN} AND ((lease_owner IS NOT NULL "
            "AND lease_owner != ? "
            "AND lease_until >= ?) OR (id <= ? AND (lease_owner IS NULL OR lease_owner != ?) "
            f"AND (lease_until IS NULL OR lease_until < ?) AND {replayable}))) "
            "ORDER BY id LIMIT ?"
        )
        params = [after, now, owner, *values, owner, now, after, owner, now, *values]
        params.append(min(limit, SQLITE_MAX_INT))
        claimed: list[OutboxRow] = []
        unreadable: list[tuple[int, str]] = []
        found = conn.execute(sql, params).fetchall()
        for r in found[: head_run([r[13] for r in found], numbers)]:  # 13: phone_number_id
            try:
                row = row_from(r, self.path)
            except OutboxError as exc:
                unreadable.append((r[0], exc.message))
                continue
            claimed.append(attrs.evolve(row, lease_owner=owner, lease_until=lease_until))
        if claimed:
            conn.executemany(
                "UPDATE wa_outbox SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, lease_until, row.id) for row in claimed],
            )
        for row_id, message in unreadable:  # a dead letter for an operator, not a stuck replay
            conn.execute(
                "UPDATE wa_outbox SET state = 'failed', category = 'invalid_request', "
                "reason = 'unreadable', error = ?, lease_owner = NULL, lease_until = NULL, "
                "updated_at = ? WHERE id = ?",
                (
                    dumps(
                        {"type": "OutboxError", "category": "invalid_request", "message": message}
                    ),
                    now,
                    row_id,
                ),
            )
        return claimed

    @staticmethod
    def release(conn: sqlite3.Connection, owner: str) -> int:
        """Give back *owner*'s claims that were not sent; return how many."""
        return conn.execute(
            "UPDATE wa_outbox SET lease_owner = NULL, lease_until = NULL "
            "WHERE lease_owner = ? AND state != 'sending'",
            (owner,),
        ).rowcount

    def mark(
        self,
        conn: sqlite3.Connection,
        key: str,
        state: str,
        now: float,
        reason: str | None,
        message_id: str | None,
    ) -> OutboxRow:
        """Set an operator's *state* on the row of *key*; refuse one in flight."""
        found = conn.execute(
            "SELECT state, lease_until FROM wa_outbox WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if found is None:
            raise OutboxError(
                f"outbox file {self.path} has no intent {key!r}", path=self.path, kind="not_found"
            )
        if found[0] == SENDING and found[1] is not None and found[1] >= now:
            raise self._refused(key, "busy", "is being sent right now")
        conn.execute(
            "UPDATE wa_outbox SET state = ?, reason = ?, message_id = coalesce(?, message_id), "
            "not_before = CASE WHEN ? = 'pending' THEN NULL ELSE not_before END, "
            "lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE idempotency_key = ?",
            (state, reason, message_id, state, now, key),
        )
        row = self.get(conn, key)
        assert row is not None
        return row

    def apply_status(
        self, conn: sqlite3.Connection, event: MessageStatus, now: float
    ) -> OutboxRow | None:
        """Apply a status webhook to the row its key names (`status_failure`); return the row."""
        key = event.idempotency_key
        if not key:
            return None
        found = conn.execute(
            "SELECT state, message_id FROM wa_outbox WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if found is None:
            return None
        fields = status_failure(found[0], found[1], event)
        if fields is not None:
            error = fields["error"]
            conn.execute(
                "UPDATE wa_outbox SET state = ?, category = ?, reason = ?, error = ?, "
                "message_id = ?, not_before = NULL, lease_owner = NULL, lease_until = NULL, "
                "updated_at = ? WHERE idempotency_key = ?",
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

    def get(self, conn: sqlite3.Connection, key: str) -> OutboxRow | None:
        """Return the row of *key*, or None."""
        found = conn.execute(
            f"SELECT {COLUMNS} FROM wa_outbox WHERE idempotency_key = ?",  # noqa: S608
            (key,),
        ).fetchone()
        return row_from(found, self.path) if found is not None else None

    def select(
        self,
        conn: sqlite3.Connection,
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
                where.append(f"{column} = ?")
                params.append(value)
        if dead_letters:
            where.append(
                f"state = 'failed' AND (category IS NULL OR category NOT IN "
                f"({marks(REPLAYED_FAILURES)}))"
            )
            params.extend(sorted(REPLAYED_FAILURES))
        sql = f"SELECT {COLUMNS} FROM wa_outbox"  # noqa: S608 - columns are constants
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(min(limit, SQLITE_MAX_INT))
        rows: list[OutboxRow] = []
        for r in conn.execute(sql, params):
            try:
                rows.append(row_from(r, self.path))
            except OutboxError as exc:  # one hand-edited row must not hide the others
                _log.warning("%s; left out of the listing", exc.message)
        return rows

    @staticmethod
    def stats(conn: sqlite3.Connection) -> OutboxStats:
        """Count the rows by state, by category, and the dead letters."""
        by_state = dict.fromkeys(OUTBOX_STATES, 0)
        for state, count in conn.execute("SELECT state, count(*) FROM wa_outbox GROUP BY state"):
            by_state[state] = count
        by_category = dict(
            conn.execute(
                "SELECT category, count(*) FROM wa_outbox WHERE state != 'delivered' "
                "AND category IS NOT NULL GROUP BY category ORDER BY category"
            ).fetchall()
        )
        dead = conn.execute(
            "SELECT count(*) FROM wa_outbox WHERE state = 'failed' AND (category IS NULL OR "  # noqa: S608
            f"category NOT IN ({marks(REPLAYED_FAILURES)}))",
            sorted(REPLAYED_FAILURES),
        ).fetchone()[0]
        oldest = conn.execute(
            "SELECT min(created_at) FROM wa_outbox WHERE state IN ('pending', 'queued')"
        ).fetchone()[0]
        return OutboxStats(
            total=sum(by_state.values()),
            by_state=by_state,
            by_category=by_category,
            dead_letters=dead,
            oldest_waiting=oldest,
        )

    @staticmethod
    def purge(conn: sqlite3.Connection, states_before: Sequence[tuple[str, float]]) -> int:
        """Delete the rows in each (state, before) pair last changed before that time."""
        total = 0
        for state, before in states_before:
            total += conn.execute(
                "DELETE FROM wa_outbox WHERE state = ? AND updated_at < ?", (state, before)
            ).rowcount
        return total


#: The bound values of a plain delivery's row in `SETTLE_DELIVERED_HEAD`'s VALUES.
_PICK: Final = operator.itemgetter(*DELIVERED_PICK)


def _delivered_values(update: tuple[Any, ...]) -> tuple[Any, ...]:
    """`SETTLE_DELIVERED`'s values: the picked ones, then message_id for its last condition."""
    return (*_PICK(update), update[5])


def _settle(
    conn: sqlite3.Connection,
    items: list[tuple[tuple[Any, ...], Delivery]],
    head: str,
    tail: str,
    pick: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None,
    one: str,
    one_values: Callable[[tuple[Any, ...]], tuple[Any, ...]],
) -> list[tuple[bool, Any]]:
    """Settle *items*: many rows per *head* VALUES *tail* statement, the rest with *one*.

    *pick* takes a row's values for the multi-row statement out of `settle_values`' (None:
    its first ten); *one_values* those of the single-row statement *one*. A row *one* does
    not change either is an intent the outbox does not know yet: added (`SETTLE_NEW`).
    """
    left: Iterable[int] = range(len(items))
    if MANY and len(items) > 1:  # one row: the plain statement is cheaper
        missed: list[int] = []
        width = 10 if pick is None else len(DELIVERED_PICK)
        for rows in chunks(items, lambda item: item[0][9]):
            if pick is None:
                values = [v for n in rows for v in items[n][0][:10]]
            else:
                values = [v for n in rows for v in pick(items[n][0])]
            found = conn.execute(f"{head}{many_rows(len(rows), width)}{tail}", values)
            done = {r[0] for r in found}
            missed.extend(n for n in rows if items[n][0][9] not in done)
        left = missed
    for n in left:
        update, delivery = items[n]
        if conn.execute(one, one_values(update)).rowcount == 0:
            conn.execute(SETTLE_NEW, settle_insert(update, delivery))
    return [(True, None)] * len(items)
