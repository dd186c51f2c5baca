"""`SqliteOutbox`'s table: its schema, its SQL, and the conversion of rows and outcomes.

Each job is a function of a connection inside the writer's transaction. A job that refuses
(an intent already in flight, a row that does not exist) raises `OutboxError` before it
writes anything, so the other jobs of the same transaction commit unharmed.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Final

from wa_auth._convert import json_encoder
from wa_auth._delivery import DELIVERED, DELIVERY_STATES, Delivery
from wa_auth._sqlite import Schema, dumps, encodable, error_from_dict, loads_object, printable
from wa_auth.errors import OutboxError, WhatsAppError
from wa_auth.intents import INTENT_SCHEMA_VERSION, Intent
from wa_auth.models import SendResult
from wa_auth.outbox._values import OutboxRow

__all__ = [
    "COLUMNS",
    "DELIVERED_PICK",
    "INSERT",
    "INSERT_MANY",
    "MANY",
    "ON_CONFLICT_RETURNING",
    "OPEN",
    "OPEN_STATES",
    "SCHEMA",
    "SETTLE",
    "SETTLE_DELIVERED",
    "SETTLE_DELIVERED_HEAD",
    "SETTLE_DELIVERED_TAIL",
    "SETTLE_MANY_HEAD",
    "SETTLE_MANY_TAIL",
    "SETTLE_NEW",
    "SQLITE_MAX_INT",
    "begin_insert",
    "chunks",
    "error_json",
    "intent_row",
    "many_rows",
    "marks",
    "plain_delivery",
    "row_from",
    "settle_insert",
    "settle_values",
]

_log = logging.getLogger("wa_auth.outbox")

#: The open states as schema version 1's partial index named them (a released migration).
OPEN_STATES: Final = "('pending', 'sending', 'queued', 'failed', 'maybe_delivered')"
#: The rows that are not over (every state but the two final ones): what a claim or a lease
#: check looks at, the condition of the partial index `wa_outbox_open` since version 2. A
#: query repeats it word for word, so that SQLite uses the index. Two values, not the five
#: open ones: SQLite evaluates an `IN` list of three constants or more through a temporary
#: b-tree it builds each time a statement runs, and the index's condition is evaluated on
#: every INSERT and every UPDATE of a row (a send's begin and its outcome); one or two values
#: it compares directly (a third less of SQLite's work per begin, measured).
OPEN: Final = "state NOT IN ('delivered', 'expired')"

#: Version 1, the first release; 2, the open index's condition (`OPEN`). Never edit a released
#: migration: append the next one.
SCHEMA: Final = Schema(
    component="outbox",
    what="outbox file",
    migrations=(
        (
            """
            CREATE TABLE wa_outbox (
                id INTEGER PRIMARY KEY,
                idempotency_key TEXT NOT NULL UNIQUE,
                intent TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                category TEXT,
                reason TEXT,
                error TEXT,
                message_id TEXT,
                token_fingerprint TEXT,
                not_before REAL,
                not_after REAL,
                consumer TEXT,
                phone_number_id TEXT,
                lease_owner TEXT,
                lease_until REAL,
                created_at REAL NOT NULL,
                enqueued_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
            # The open rows in id order: claims and lapsed leases never scan the delivered
            # majority, and a delivered row leaves the index. Stats, listings and purges (an
            # operator's, not a sender's) scan the table: one index less to keep per send.
            f"CREATE INDEX wa_outbox_open ON wa_outbox (id) WHERE state IN {OPEN_STATES}",
        ),
        # Version 2: the same rows in the index, under a condition SQLite evaluates without a
        # temporary b-tree per statement (`OPEN`). Rebuilt once, in the migration's transaction.
        (
            "DROP INDEX IF EXISTS wa_outbox_open",
            f"CREATE INDEX wa_outbox_open ON wa_outbox (id) WHERE {OPEN}",
        ),
    ),
)

COLUMNS: Final = (
    "id, idempotency_key, intent, state, attempts, category, reason, error, message_id, "
    "token_fingerprint, not_before, not_after, consumer, phone_number_id, lease_owner, "
    "lease_until, created_at, enqueued_at, updated_at"
)
INSERT: Final = (
    "INSERT INTO wa_outbox (idempotency_key, intent, state, consumer, phone_number_id, "
    "created_at, not_after, lease_owner, lease_until, enqueued_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING"
)
SETTLE: Final = (
    "UPDATE wa_outbox SET state = ?, attempts = attempts + ?, category = ?, reason = ?, "
    "error = ?, message_id = coalesce(?, message_id), "
    "token_fingerprint = coalesce(?, token_fingerprint), not_before = ?, lease_owner = NULL, "
    "lease_until = NULL, updated_at = ? WHERE idempotency_key = ? AND state != 'delivered' "
    "AND (state != 'expired' OR ? = 'delivered') "
    # A status webhook failed this very wamid before its send was settled: it stays failed.
    "AND NOT coalesce(state = 'failed' AND message_id = ?, 0)"
)
INSERT_MANY: Final = (
    "INSERT INTO wa_outbox (idempotency_key, intent, state, consumer, phone_number_id, "
    "created_at, not_after, lease_owner, lease_until, enqueued_at, updated_at) VALUES "
)
ON_CONFLICT_RETURNING: Final = " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
# `v.column1` to `v.column10` are the VALUES' columns: state, attempts, category, reason,
# error, message_id, token_fingerprint, not_before, updated_at, idempotency_key (as `SETTLE`).
SETTLE_MANY_HEAD: Final = (
    "UPDATE wa_outbox SET state = v.column1, attempts = wa_outbox.attempts + v.column2, "
    "category = v.column3, reason = v.column4, error = v.column5, "
    "message_id = coalesce(v.column6, wa_outbox.message_id), "
    "token_fingerprint = coalesce(v.column7, wa_outbox.token_fingerprint), "
    "not_before = v.column8, lease_owner = NULL, lease_until = NULL, updated_at = v.column9 "
    "FROM (VALUES "
)
SETTLE_MANY_TAIL: Final = (
    ") AS v WHERE wa_outbox.idempotency_key = v.column10 AND wa_outbox.state != 'delivered' "
    "AND (wa_outbox.state != 'expired' OR v.column1 = 'delivered') "
    "AND NOT coalesce(wa_outbox.state = 'failed' AND wa_outbox.message_id = v.column6, 0) "
    "RETURNING wa_outbox.idempotency_key"
)
# A plain delivery (no category, reason, error nor `not_before`: a send Meta accepted) has
# its NULLs and its state written in the statement, not bound: `sqlite3` binds a None through
# its adapter lookup, about 3,300 instructions each, four per outcome. Its values are
# `settle_values`' attempts, message_id, token_fingerprint, updated_at and idempotency_key
# (`DELIVERED_PICK`); the single-row form takes message_id once more at its end.
SETTLE_DELIVERED: Final = (
    "UPDATE wa_outbox SET state = 'delivered', attempts = attempts + ?, category = NULL, "
    "reason = NULL, error = NULL, message_id = coalesce(?, message_id), "
    "token_fingerprint = coalesce(?, token_fingerprint), not_before = NULL, "
    "lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE idempotency_key = ? "
    "AND state != 'delivered' AND NOT coalesce(state = 'failed' AND message_id = ?, 0)"
)
SETTLE_DELIVERED_HEAD: Final = (
    "UPDATE wa_outbox SET state = 'delivered', attempts = wa_outbox.attempts + v.column1, "
    "category = NULL, reason = NULL, error = NULL, "
    "message_id = coalesce(v.column2, wa_outbox.message_id), "
    "token_fingerprint = coalesce(v.column3, wa_outbox.token_fingerprint), "
    "not_before = NULL, lease_owner = NULL, lease_until = NULL, updated_at = v.column4 "
    "FROM (VALUES "
)
SETTLE_DELIVERED_TAIL: Final = (
    ") AS v WHERE wa_outbox.idempotency_key = v.column5 AND wa_outbox.state != 'delivered' "
    "AND NOT coalesce(wa_outbox.state = 'failed' AND wa_outbox.message_id = v.column2, 0) "
    "RETURNING wa_outbox.idempotency_key"
)
#: The places in `settle_values` of a plain delivery's bound values (`SETTLE_DELIVERED`).
DELIVERED_PICK: Final = (1, 5, 6, 8, 9)
SETTLE_NEW: Final = (
    "INSERT INTO wa_outbox (idempotency_key, intent, state, attempts, category, reason, error, "
    "message_id, token_fingerprint, not_before, not_after, consumer, phone_number_id, "
    "created_at, enqueued_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)


#: One encoder, made once: `json.dumps` with these options would build one per call.
_ENCODE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
#: `Intent.to_dict()` as compact JSON: a row's intent, encoded in the sender's thread. Without
#: the circular-reference check (an intent is JSON-shaped when it is made): a cycle would end
#: in a `RecursionError`, which `intent_json` refuses as it does a NaN.
_ENCODE_INTENT: Final = json_encoder(",", ":")
#: `RETURNING` (3.35) and `UPDATE ... FROM` (3.33): many rows per statement; older SQLite
#: libraries (a Linux distribution's) take the same changes one row at a time.
MANY: Final = sqlite3.sqlite_version_info >= (3, 35, 0)
#: Rows per multi-row statement (under the 999 variables of old SQLite builds).
_CHUNK: Final = 64
#: SQLite's largest integer: a larger limit or id means "all", not an `OverflowError`.
SQLITE_MAX_INT: Final = 2**63 - 1


def intent_json(intent: Intent) -> str:
    """Return `Intent.to_dict()` as compact JSON, without its defensive deep copy.

    Raises:
        OutboxError: The intent cannot be JSON (`invalid`): nested too deep, a NaN, an object
            JSON has no form for. Its constructors refuse such content; this is the outbox's
            own guard, so nothing but a typed error leaves it.
    """
    content = intent.content
    try:
        return _encode_intent(intent, content)
    except (ValueError, TypeError, RecursionError) as exc:
        problem = printable(f"{type(exc).__name__}: {exc}")[:300]
        raise OutboxError(
            f"intent {intent.idempotency_key!r:.200} cannot be written as JSON ({problem}): "
            "not recorded",
            kind="invalid",
        ) from None


#: A JSON string of a `str` as `json.dumps(ensure_ascii=False)` writes it (the C function).
_STRING: Final = json.encoder.encode_basestring
_FINITE: Final = math.isfinite
#: The intent dict's own keys, beside its type's.
_KEYS: Final = frozenset(
    ("v", "to", "type", "idempotency_key", "phone_number_id", "consumer", "created_at", "not_after")
)


def _encode_intent(intent: Intent, content: Any) -> str:
    """The intent's JSON: its fixed keys written out, its values through the C encoder's parts.

    Byte for byte `_ENCODE_INTENT`'s output (the same order, separators and number forms:
    `float.__repr__`, as the encoder writes a float), at about half its cost: the encoder
    makes a list of the dict's items and encodes each key anew. An intent whose values are
    not the plain types (a float subclass, a number that is not finite, an int time) goes
    through the encoder itself, which writes or refuses it as before.
    """
    to, kind, key = intent.to, intent.type, intent.idempotency_key
    sender, consumer = intent.phone_number_id, intent.consumer
    created, until = intent.created_at, intent.not_after
    if (
        type(to) is str
        and type(kind) is str
        and kind not in _KEYS  # a dict's key would be written once
        and type(key) is str
        and (sender is None or type(sender) is str)
        and (consumer is None or type(consumer) is str)
        and type(created) is float
        and _FINITE(created)
        and (until is None or (type(until) is float and _FINITE(until)))
    ):
        name = _STRING(kind)
        body = _ENCODE_INTENT(content if isinstance(content, dict) else dict(content))
        return (
            f'{{"v":{INTENT_SCHEMA_VERSION},"to":{_STRING(to)},"type":{name},{name}:{body},'
            f'"idempotency_key":{_STRING(key)},'
            f'"phone_number_id":{"null" if sender is None else _STRING(sender)},'
            f'"consumer":{"null" if consumer is None else _STRING(consumer)},'
            f'"created_at":{created!r},"not_after":{"null" if until is None else repr(until)}}}'
        )
    return _ENCODE_INTENT(
        {
            "v": INTENT_SCHEMA_VERSION,
            "to": intent.to,
            "type": intent.type,
            intent.type: content if isinstance(content, dict) else dict(content),
            "idempotency_key": intent.idempotency_key,
            "phone_number_id": intent.phone_number_id,
            "consumer": intent.consumer,
            "created_at": intent.created_at,
            "not_after": intent.not_after,
        }
    )


def intent_row(
    intent: Intent, state: str, owner: str | None, lease_until: float | None, now: float
) -> tuple[Any, ...]:
    """Return the values of `INSERT` for *intent* (built in the caller's thread)."""
    return (
        intent.idempotency_key,
        intent_json(intent),
        state,
        intent.consumer,
        intent.phone_number_id,
        intent.created_at,
        intent.not_after,
        owner,
        lease_until,
        now,
        now,
    )


#: `consumer`, `phone_number_id` and `not_after`: the places in `intent_row` of the values a
#: begin often has none of (`begin_insert`).
_NULLABLE: Final = (3, 4, 6)


def _insert_with_nulls(mask: int) -> tuple[str, Callable[[Sequence[Any]], tuple[Any, ...]]]:
    marks_ = ["?"] * 11
    for bit, place in enumerate(_NULLABLE):
        if mask >> bit & 1:
            marks_[place] = "NULL"
    keep = [n for n, m in enumerate(marks_) if m == "?"]
    sql = INSERT.replace("VALUES (" + ", ".join("?" * 11) + ")", f"VALUES ({', '.join(marks_)})")
    return sql, operator.itemgetter(*keep)


#: `INSERT` with NULL written in place of each combination of the nullable values left out.
_INSERTS: Final = tuple(_insert_with_nulls(mask) for mask in range(1 << len(_NULLABLE)))


def begin_insert(values: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """Return `INSERT` for *values* (`intent_row`'s) with its None values written as NULL.

    `sqlite3` binds a None through its adapter lookup (about 3,300 instructions each; a
    begin has two or three); the statement with NULL in their place binds the rest, from
    eight kept prepared.
    """
    mask = (values[3] is None) | (values[4] is None) << 1 | (values[6] is None) << 2
    if not mask:
        return INSERT, values
    sql, pick = _INSERTS[mask]
    return sql, pick(values)


def plain_delivery(delivery: Delivery) -> bool:
    """True for a delivered outcome with nothing more to record (`SETTLE_DELIVERED`)."""
    return (
        delivery.state == DELIVERED
        and delivery.error is None  # and so no category
        and delivery.reason is None
        and delivery.not_before is None
    )


def settle_values(delivery: Delivery, now: float) -> tuple[Any, ...]:
    """Return the values of `SETTLE` for *delivery* (built in the caller's thread)."""
    result = delivery.result
    error = delivery.error
    message_id = fingerprint = None
    if result is not None:
        message_id, fingerprint = result.message_id, result.token_fingerprint
    if fingerprint is None and error is not None:
        fingerprint = getattr(error, "token_fingerprint", None)
    if message_id is not None and not encodable(message_id):
        message_id = printable(message_id)  # a peer's id that no file can hold as it is
    return (
        delivery.state,
        delivery.attempts,
        delivery.category,
        delivery.reason,
        error_json(error.to_dict()) if error is not None else None,
        message_id,
        fingerprint,
        delivery.not_before,
        now,
        delivery.intent.idempotency_key,
        delivery.state,
        message_id,
    )


def error_json(data: dict[str, Any]) -> str:
    """Return an error's JSON, always storable: a peer's lone surrogate is escaped in it."""
    text = _ENCODE(data)
    return text if encodable(text) else dumps(data)


def settle_insert(update: tuple[Any, ...], delivery: Delivery) -> tuple[Any, ...]:
    """Return the values of `SETTLE_NEW`: the row of an intent the outbox did not know."""
    state, attempts, category, reason, error, message_id, fingerprint, not_before, now = update[:9]
    intent = delivery.intent
    return (
        intent.idempotency_key,
        intent_json(intent),
        state,
        attempts,
        category,
        reason,
        error,
        message_id,
        fingerprint,
        not_before,
        intent.not_after,
        intent.consumer,
        intent.phone_number_id,
        intent.created_at,
        now,
        now,
    )


def chunks(items: Sequence[Any], key: Callable[[Any], str]) -> Iterator[range]:
    """Ranges of at most `_CHUNK` items in which no key repeats (a statement's rows)."""
    start, seen = 0, set[str]()
    for n, item in enumerate(items):
        k = key(item)
        if k in seen or n - start >= _CHUNK:
            yield range(start, n)
            start, seen = n, set[str]()
        seen.add(k)
    if start < len(items):
        yield range(start, len(items))


def row_from(r: Sequence[Any], path: str) -> OutboxRow:
    """Return the `OutboxRow` of a selected row (`COLUMNS` order)."""
    (
        row_id,
        key,
        intent_json,
        state,
        attempts,
        category,
        reason,
        error_text,
        message_id,
        fingerprint,
        not_before,
        _not_after,
        _consumer,
        _phone,
        lease_owner,
        lease_until,
        _created_at,
        enqueued_at,
        updated_at,
    ) = r
    intent = _intent_of(intent_json, row_id, key, path)
    error = loads_object(error_text)
    delivery = None
    if state in DELIVERY_STATES:
        delivery = Delivery(
            state=state,
            intent=intent,
            result=(
                SendResult(
                    message_id=message_id,
                    wa_id=None,
                    idempotency_key=key,
                    token_fingerprint=fingerprint,
                )
                if message_id
                else None
            ),
            error=error_from_dict(error) if error is not None else None,
            attempts=attempts,
            not_before=not_before,
            reason=reason,
        )
    return OutboxRow(
        intent=intent,
        state=state,
        delivery=delivery,
        updated_at=updated_at,
        id=row_id,
        attempts=attempts,
        category=category,
        reason=reason,
        error=error,
        message_id=message_id,
        token_fingerprint=fingerprint,
        not_before=not_before,
        lease_owner=lease_owner,
        lease_until=lease_until,
        enqueued_at=enqueued_at,
    )


def _intent_of(text: object, row_id: object, key: object, path: str) -> Intent:
    """Return the intent a row stores, or refuse a row that cannot be sent as it is (`corrupt`).

    Whatever a hand-edited file holds (not JSON, nested too deep, another key than the row's
    own), the row becomes a dead letter for an operator, never a send under another key.
    """
    problem: str | None = None
    try:
        data = json.loads(text) if isinstance(text, (str, bytes)) else None
        intent = Intent.from_dict(data)
    except (ValueError, RecursionError, WhatsAppError) as exc:
        problem = f"holds an intent that cannot be read: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a hand edit put there, a typed refusal
        problem = f"holds an intent that cannot be read ({type(exc).__name__}: {exc})"
    else:
        if intent.idempotency_key == key:
            return intent
        problem = (
            f"holds an intent with another idempotency key ({intent.idempotency_key!r}): "
            "edited by hand?"
        )
    raise OutboxError(
        printable(f"outbox file {path}: row {row_id} ({key!r:.200}) {problem[:500]}"),
        path=path,
        kind="corrupt",
    ) from None


def marks(values: Collection[str]) -> str:
    return ", ".join("?" * len(values))


def many_rows(rows: int, width: int) -> str:
    """`(?, ?), (?, ?)` for *rows* rows of *width* values."""
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)
