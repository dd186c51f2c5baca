"""`PostgresOutbox`'s schema and statements (`{schema}` stands for the quoted schema name).

Version 1 of the `outbox` component: the table, its partial index of the open rows, the lease
index and the pauses table `PostgresState` shares; the insert, the upsert of an outcome and the
multi-row update of many outcomes that `_pg`'s jobs run.
"""

from __future__ import annotations

from typing import Final

from wa_auth._postgres import PAUSES_TABLE, PgSchema

__all__ = [
    "INSERT",
    "OPEN",
    "RETRYABLE_STATES",
    "SCHEMA",
    "SETTLE",
    "SETTLE_HEAD",
    "SETTLE_ROW",
    "SETTLE_TAIL",
]

OPEN: Final = "('pending', 'sending', 'queued', 'failed', 'maybe_delivered')"
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
            f"CREATE INDEX outbox_open ON {{schema}}.outbox (id) WHERE state IN {OPEN}",
            (
                "CREATE INDEX outbox_lease ON {schema}.outbox (lease_owner) "
                "WHERE lease_owner IS NOT NULL"
            ),
            PAUSES_TABLE,
        ),
    ),
)

INSERT: Final = (
    "INSERT INTO {schema}.outbox (idempotency_key, intent, state, consumer, phone_number_id, "
    "created_at, not_after, lease_owner, lease_until, enqueued_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING"
)
# One statement for an outcome: the row's update, or the row of an intent the outbox did not
# know yet (the guard held it back before `begin`). A delivered row stays delivered, an
# expired one expired unless it was delivered after all.
SETTLE: Final = (
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
# `settle_values`' first ten: state, attempts, category, reason, error, message_id,
# token_fingerprint, not_before, updated_at, idempotency_key (typed: a column may be all NULL).
SETTLE_ROW: Final = (
    "(%s::text, %s::integer, %s::text, %s::text, %s::text, %s::text, %s::text, "
    "%s::double precision, %s::double precision, %s::text)"
)
SETTLE_HEAD: Final = (
    "UPDATE {schema}.outbox AS o SET state = v.state, attempts = o.attempts + v.attempts, "
    "category = v.category, reason = v.reason, error = v.error, "
    "message_id = coalesce(v.message_id, o.message_id), "
    "token_fingerprint = coalesce(v.fingerprint, o.token_fingerprint), "
    "not_before = v.not_before, lease_owner = NULL, lease_until = NULL, updated_at = v.now "
    "FROM (VALUES "
)
SETTLE_TAIL: Final = (
    ") AS v(state, attempts, category, reason, error, message_id, fingerprint, not_before, "
    "now, key) WHERE o.idempotency_key = v.key AND o.state != 'delivered' "
    "AND (o.state != 'expired' OR v.state = 'delivered') "
    "AND NOT coalesce(o.state = 'failed' AND o.message_id = v.message_id, false) "
    "RETURNING o.idempotency_key"
)
RETRYABLE_STATES: Final = frozenset({"queued", "pending", "failed"})
