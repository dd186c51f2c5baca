"""serve's durable webhook queue: the deliveries, the forwards, the API's routes, one file.

One SQLite file (`--webhook-queue`, else the state file, else the outbox's file) holds, as a
schema component of its own (`serve_webhooks`):

- `wa_serve_deliveries`: each verified POST's raw body, committed before the 200. A delivery
  is `received`, then `admitted` (its events admitted and its forwards queued, in one
  transaction with the ledger's claims), then deleted once its events were applied. Each has
  an `owner`, a random word drawn when it is stored: with `--redis`, the fleet's ledger
  records the delivery's claims under it, so processing the delivery again after a kill
  (claimed in Redis, never committed here) is decided the same way (`_shared`).
- the webhook ledger's tables (`wa_auth.webhooks._sqlite_ledger`, shared with a
  `SqliteWebhookLedger` on the same file): admitting an event and queueing its forwards are
  one commit, so a kill between the two can neither lose a forward nor queue it twice.
- `wa_serve_forwards`: one row per (route, event), `pending` until the route answered 2xx
  (then deleted) or `dead` after the last attempt; a route's rows go out in `seq` order.
- `wa_serve_routes`: the routes the API registered (their secrets too: they sign the
  forwards after a restart), by id, one per URL.

Every change is a job of the file's one writer thread (`wa_auth._sqlite.Database`).
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from wa_auth._cli._serve._routes import Route, forward_body, matches
from wa_auth._effects import run
from wa_auth._sqlite import Database, Schema
from wa_auth._sqlite._stored import printable
from wa_auth.webhooks._admission import APPLY, Admission, admission
from wa_auth.webhooks._sqlite_ledger import LEDGER_TABLES, Bounds, advance, claim, release, retreat

__all__ = ["SCHEMA", "Delivery", "Forward", "WebhookQueue"]

SCHEMA: Final = Schema(
    component="serve_webhooks",
    what="webhook queue file",
    migrations=(
        (
            *LEDGER_TABLES,
            """
            CREATE TABLE wa_serve_deliveries (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                body BLOB NOT NULL,
                received_at REAL NOT NULL,
                state TEXT NOT NULL DEFAULT 'received',
                verdicts TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at REAL NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE wa_serve_forwards (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                route_id TEXT NOT NULL,
                key TEXT NOT NULL,
                type TEXT NOT NULL,
                body BLOB NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at REAL NOT NULL DEFAULT 0,
                last_error TEXT,
                created_at REAL NOT NULL,
                UNIQUE (route_id, key)
            )
            """,
            "CREATE INDEX wa_serve_forwards_route ON wa_serve_forwards (route_id, state, seq)",
            """
            CREATE TABLE wa_serve_routes (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL UNIQUE,
                secret TEXT NOT NULL,
                spec TEXT NOT NULL,
                created_at REAL NOT NULL
            )
            """,
        ),
        (
            "ALTER TABLE wa_serve_deliveries ADD COLUMN owner TEXT",
            "UPDATE wa_serve_deliveries SET owner = lower(hex(randomblob(12))) WHERE owner IS NULL",
        ),
    ),
)


@attrs.frozen
class Delivery:
    """A stored delivery: its id, raw body, state (`received` or `admitted`) and owner."""

    id: int
    body: bytes = attrs.field(repr=False)
    state: str
    verdicts: tuple[str, ...] | None
    attempts: int
    #: The random word the fleet's ledger records this delivery's claims under.
    owner: str = ""


@attrs.frozen
class Forward:
    """One queued forward of one event to one route."""

    seq: int
    route_id: str
    key: str
    type: str
    body: bytes = attrs.field(repr=False)
    state: str
    attempts: int
    next_at: float
    last_error: str | None
    created_at: float

    def to_json(self) -> dict[str, Any]:
        """The row as `wa-auth webhook list` prints it (the event's key, never its body)."""
        return {
            "seq": self.seq,
            "route_id": self.route_id,
            "key": self.key,
            "type": self.type,
            "state": self.state,
            "attempts": self.attempts,
            "next_at": round(self.next_at, 3),
            "last_error": self.last_error,
            "created_at": round(self.created_at, 3),
        }


_FORWARD: Final = (
    "SELECT seq, route_id, key, type, body, state, attempts, next_at, last_error, created_at "
    "FROM wa_serve_forwards"
)


class _ConnLedger:
    """The ledger's operations on a connection inside the writer's transaction."""

    def __init__(self, conn: sqlite3.Connection, bounds: Bounds) -> None:
        self._conn, self._bounds = conn, bounds

    def claim(self, key: str) -> bool:
        return claim(self._conn, key, self._bounds)

    def advance(self, message_id: str, order: int) -> int | None:
        return advance(self._conn, message_id, order, self._bounds)

    def release(self, key: str) -> None:
        release(self._conn, key)

    def retreat(self, message_id: str, order: int, previous: int | None) -> None:
        retreat(self._conn, message_id, order, previous)


class WebhookQueue:
    """The queue file of serve's webhooks (see the module docstring).

    Args:
        path: The file (created with its tables).
        window: The ledger's window, in seconds.
        max_keys: The ledger's size bound.
        clock: The wall clock.
        create: Create the file when it does not exist (`wa-auth webhook` never does).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        window: float,
        max_keys: int,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        self.db = Database(path, SCHEMA, flush_interval=0.0, create=create)
        self.path = self.db.path
        self.window = window
        self.max_keys = max_keys
        self._clock = clock

    def close(self) -> None:
        """Stop the writer and close the file."""
        self.db.close()

    # --- deliveries -------------------------------------------------------------------------

    async def astore(self, body: bytes) -> int:
        """Commit a verified delivery's raw body; return its id once it is on disk."""
        now = self._clock()
        owner = secrets.token_hex(12)

        def job(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO wa_serve_deliveries (body, received_at, owner) VALUES (?, ?, ?)",
                (body, now, owner),
            )
            return int(cursor.lastrowid or 0)

        return await self.db.arun(job)

    def due(self, limit: int = 8) -> list[Delivery]:
        """Return the deliveries to work on, oldest first.

        A read of the committed rows on the caller's thread (an indexed read: no hop to the
        writer, which the POSTs' commits keep busy).
        """
        now = self._clock()

        def read(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                "SELECT id, body, state, verdicts, attempts, owner FROM wa_serve_deliveries "
                "WHERE next_at <= ? ORDER BY id LIMIT ?",
                (now, limit),
            ).fetchall()
            return [
                Delivery(
                    r[0],
                    bytes(r[1]),
                    r[2],
                    tuple(json.loads(r[3])) if r[3] else None,
                    r[4],
                    r[5] or f"row{r[0]}",
                )
                for r in rows
            ]

        return self.db.read(read)

    async def aadmit(
        self,
        batch: Sequence[tuple[Delivery, Sequence[Any]]],
        routes: Sequence[Route],
        *,
        decided: Sequence[Sequence[Admission]] | None = None,
    ) -> list[list[Admission]]:
        """Admit each delivery's events and queue their forwards: one commit for *batch*.

        Only the events to apply are forwarded; each delivery is marked `admitted` with its
        verdicts. Returns each delivery's admissions, in order. *decided*: the admissions the
        fleet's ledger made already (`_shared.SharedLedger`), one list per delivery: they are
        the verdicts, and this file's ledger only records the events.
        """
        bounds = Bounds(self._clock(), self.window, self.max_keys)
        bodies = [[forward_body(event) for event in events] for _, events in batch]

        def job(conn: sqlite3.Connection) -> list[list[Admission]]:
            ledger = _ConnLedger(conn, bounds)
            found = []
            for i, ((delivery, events), forwards) in enumerate(zip(batch, bodies, strict=True)):
                # With the fleet's verdicts, this file's ledger records the events too, so
                # that a fall-back on this host still knows what this host admitted.
                admitted = [run(admission(event), ledger) for event in events]
                if decided is not None:
                    admitted = list(decided[i])
                for event, body, one in zip(events, forwards, admitted, strict=True):
                    if one.verdict != APPLY:
                        continue
                    for route in routes:
                        if matches(route, event):
                            conn.execute(
                                "INSERT OR IGNORE INTO wa_serve_forwards (route_id, key, type, "
                                "body, created_at) VALUES (?, ?, ?, ?, ?)",
                                (route.id, event.key, event.type, body, bounds.now),
                            )
                conn.execute(
                    "UPDATE wa_serve_deliveries SET state = 'admitted', verdicts = ? WHERE id = ?",
                    (json.dumps([a.verdict for a in admitted]), delivery.id),
                )
                found.append(admitted)
            return found

        return await self.db.arun(job)

    async def adone(self, deliveries: Sequence[Delivery]) -> None:
        """Forget deliveries whose events were all applied."""
        ids = [(delivery.id,) for delivery in deliveries]
        if ids:
            await self.db.arun(
                lambda c: c.executemany("DELETE FROM wa_serve_deliveries WHERE id = ?", ids)
            )

    async def aretry(self, delivery: Delivery, delay: float) -> None:
        """Come back to a delivery whose events could not all be applied, in *delay* s."""
        at = self._clock() + delay
        await self.db.arun(
            lambda c: c.execute(
                "UPDATE wa_serve_deliveries SET attempts = attempts + 1, next_at = ? WHERE id = ?",
                (at, delivery.id),
            )
        )

    # --- forwards ---------------------------------------------------------------------------

    def heads(self, route_id: str, limit: int = 16) -> list[Forward]:
        """Return the route's oldest pending forwards, in order (a read on this thread)."""
        return self.db.read(
            lambda c: [
                _forward(row)
                for row in c.execute(
                    f"{_FORWARD} WHERE route_id = ? AND state = 'pending' ORDER BY seq LIMIT ?",
                    (route_id, limit),
                )
            ]
        )

    async def adelivered(self, forward: Forward) -> None:
        """Forget a forward the route accepted."""
        await self.db.arun(
            lambda c: c.execute("DELETE FROM wa_serve_forwards WHERE seq = ?", (forward.seq,))
        )

    async def afailed(self, forward: Forward, error: str, *, delay: float | None) -> None:
        """Record a failed attempt: retry in *delay* seconds, or (None) a dead letter."""
        at = self._clock() + (delay or 0.0)
        state = "pending" if delay is not None else "dead"
        text = printable(error)[:500]
        await self.db.arun(
            lambda c: c.execute(
                "UPDATE wa_serve_forwards SET attempts = attempts + 1, next_at = ?, state = ?, "
                "last_error = ? WHERE seq = ?",
                (at, state, text, forward.seq),
            )
        )

    def forwards(self, *, failed: bool = False, limit: int = 100) -> builtins.list[Forward]:
        """Return the pending forwards (or, *failed*, the dead letters), oldest first."""
        state = "dead" if failed else "pending"
        return self.db.read(
            lambda c: [
                _forward(r)
                for r in c.execute(
                    f"{_FORWARD} WHERE state = ? ORDER BY seq LIMIT ?",
                    (state, limit),
                )
            ]
        )

    def replay(self, seqs: Sequence[int] | None = None) -> int:
        """Put dead letters (all, or those of *seqs*) back in their routes' queues."""
        now = self._clock()

        def job(conn: sqlite3.Connection) -> int:
            sql = (
                "UPDATE wa_serve_forwards SET state = 'pending', attempts = 0, next_at = ? "
                "WHERE state = 'dead'"
            )
            if seqs is None:
                return conn.execute(sql, (now,)).rowcount
            return sum(conn.execute(f"{sql} AND seq = ?", (now, s)).rowcount for s in seqs)

        return self.db.run(job)

    # --- the API's routes -------------------------------------------------------------------

    async def aroutes(self) -> list[Route]:
        """Return the routes the API registered."""

        def job(conn: sqlite3.Connection) -> list[Route]:
            rows = conn.execute(
                "SELECT id, url, secret, spec FROM wa_serve_routes ORDER BY created_at, id"
            )
            return [_route(*row) for row in rows]

        return await self.db.arun(job, write=False)

    async def aput_route(self, route: Route) -> Route:
        """Register *route*, or replace the route of the same URL and keep its id."""
        now = self._clock()

        def job(conn: sqlite3.Connection) -> Route:
            found = conn.execute(
                "SELECT id FROM wa_serve_routes WHERE url = ?", (route.url,)
            ).fetchone()
            kept = route if found is None else attrs.evolve(route, id=found[0])
            conn.execute(
                "INSERT INTO wa_serve_routes (id, url, secret, spec, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET secret = excluded.secret, "
                "spec = excluded.spec",
                (kept.id, kept.url, kept.secret, json.dumps(kept.spec()), now),
            )
            return kept

        return await self.db.arun(job)

    async def adelete_route(self, route_id: str) -> bool:
        """Drop a route registered by the API and its pending forwards; False: no such route."""

        def job(conn: sqlite3.Connection) -> bool:
            gone = conn.execute("DELETE FROM wa_serve_routes WHERE id = ?", (route_id,)).rowcount
            if gone:
                conn.execute("DELETE FROM wa_serve_forwards WHERE route_id = ?", (route_id,))
            return bool(gone)

        return await self.db.arun(job)


def _forward(row: Sequence[Any]) -> Forward:
    return Forward(
        row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6], row[7], row[8], row[9]
    )


def _route(route_id: str, url: str, secret: str, spec: str) -> Route:
    data = json.loads(spec)
    filters = {
        name: None if data.get(name) is None else tuple(data[name])
        for name in ("phone_number_ids", "business_account_ids", "fields", "types")
    }
    name = data.get("name")
    return Route(id=route_id, url=url, secret=secret, name=name, source="api", **filters)
