"""What a fleet's worker asks of a `PostgresOutbox` besides its rows: is it up, is there work.

`Waiting` is the part of `PostgresOutbox` that answers a health probe (`check`, a round trip
through the writer) and lets an idle worker sleep until there may be work (`wait_for_work`:
`LISTEN` on the schema's channel, cut short when a `queued` row becomes due, bounded).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wa_auth.errors import OutboxError, OutboxUnavailableError
from wa_auth.outbox._common import check_seconds

if TYPE_CHECKING:
    from wa_auth._postgres import PgDatabase
    from wa_auth.outbox._pg import PgJobs

__all__ = ["DEFAULT_CHECK_TIMEOUT", "DEFAULT_POLL", "Waiting"]

#: Seconds `check()` waits for a round trip through the writer.
DEFAULT_CHECK_TIMEOUT = 6.0
#: Seconds `wait_for_work` waits at most without a notification (the bounded poll).
DEFAULT_POLL = 5.0
#: Seconds one thread of `await_for_work` blocks at most.
_SLICE = 1.0


class Waiting:
    """Health and idling over the outbox's `_db` and `_jobs` (see `PostgresOutbox`)."""

    _db: PgDatabase
    _jobs: PgJobs
    _listener: Any
    path: str
    clock: Callable[[], float]

    # --- health ---------------------------------------------------------------------------------

    def _problem(self, exc: BaseException) -> OutboxError:
        if isinstance(exc, OutboxError):
            return exc
        return OutboxUnavailableError(
            f"the outbox of {self.path} did not answer in time (its writer is busy or the "
            "server slow)",
            path=self._db.target.where,
            kind="stuck",
        )

    def check(self, timeout: float = DEFAULT_CHECK_TIMEOUT) -> OutboxError | None:
        """Return None when the outbox takes changes now, else the `OutboxError` saying why not.

        A round trip through the writer (a transaction on the server) must answer within
        *timeout* seconds. A health probe's question (`wa-auth serve`'s `/readyz`).
        """
        limit = check_seconds("timeout", timeout) or DEFAULT_CHECK_TIMEOUT
        try:
            self._db.run(_ping, timeout=limit)
        except (OutboxError, TimeoutError) as exc:
            return self._problem(exc)
        return None

    async def acheck(self, timeout: float = DEFAULT_CHECK_TIMEOUT) -> OutboxError | None:
        """Return None when the outbox takes changes now (see `check`); the loop runs on."""
        import asyncio

        limit = check_seconds("timeout", timeout) or DEFAULT_CHECK_TIMEOUT
        try:
            await asyncio.wait_for(self._db.arun(_ping), limit)
        except (OutboxError, TimeoutError) as exc:
            return self._problem(exc)
        return None

    # --- waiting for work -----------------------------------------------------------------------

    def wait_for_work(self, timeout: float = DEFAULT_POLL) -> bool:
        """Block until another worker enqueues or gives back intents, or *timeout* passes.

        `LISTEN`s on the schema's channel; the wait is also cut short when a `queued` row
        becomes due. Return True when notified (a claim may find work), or at once when it
        starts listening (a notification before that is lost: look again); False on the
        timeout or when the server cannot be reached (the caller claims anyway: a bounded
        poll).
        """
        limit = check_seconds("timeout", timeout) or DEFAULT_POLL
        try:
            due = self._db.read(lambda c: self._jobs.next_due(c, self.clock()))
        except Exception:  # noqa: BLE001 - the poll is the fall-back
            due = None
        if due is not None:
            limit = max(0.0, min(limit, due - self.clock()))
        conn = self._listener
        try:
            if conn is None or conn.closed:
                conn = self._listener = self._db.connect()
                conn.execute(f'LISTEN "{self._jobs.channel}"')
                # What was notified before it listened is lost: look again once, then wait.
                return True
            for _ in conn.notifies(timeout=limit, stop_after=1):
                return True
        except Exception:  # noqa: BLE001 - a lost listener: poll, and listen anew next time
            self._close_listener()
            time.sleep(min(limit, 1.0))
        return False

    async def await_for_work(self, timeout: float = DEFAULT_POLL) -> bool:
        """`wait_for_work` in a thread: the loop runs on while this worker idles.

        The thread waits a second at a time (a notification in between waits on the
        connection), so a cancelled wait leaves no thread blocked for long.
        """
        import asyncio

        end = time.monotonic() + (check_seconds("timeout", timeout) or DEFAULT_POLL)
        while (left := end - time.monotonic()) > 0:
            if await asyncio.to_thread(self.wait_for_work, min(left, _SLICE)):
                return True
        return False

    def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _ping(conn: Any) -> None:
    conn.execute("SELECT 1")
