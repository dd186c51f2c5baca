"""The outbox: where a guard hands what it could not deliver, so no message intent is lost.

`Outbox` is the protocol a guard writes to: `begin(intent)` just before the intent's request
goes out, `settle(delivery)` with what became of it (delivered, queued with its earliest retry,
failed with its category, maybe delivered, expired). Both have `a`-prefixed async forms, so a
store doing I/O never blocks an event loop. `MemoryOutbox` keeps the rows in memory (for tests
and short scripts); a durable outbox implements the same protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from wa_auth.guards import Delivery
    from wa_auth.intents import Intent

__all__ = ["SENDING", "MemoryOutbox", "Outbox", "OutboxRow"]

#: The state of a row whose request is (or was, when the process died) on its way to Meta.
SENDING: Final = "sending"


@runtime_checkable
class Outbox(Protocol):
    """Where a guard records each intent before sending it and what became of it after."""

    def begin(self, intent: Intent) -> None:
        """Record that *intent* is about to be sent (before its request goes out)."""
        ...

    def settle(self, delivery: Delivery) -> None:
        """Record what became of the intent of *delivery*, keyed by its idempotency key."""
        ...

    async def abegin(self, intent: Intent) -> None:
        """Record that *intent* is about to be sent."""
        ...

    async def asettle(self, delivery: Delivery) -> None:
        """Record what became of the intent of *delivery*."""
        ...


@attrs.frozen(kw_only=True)
class OutboxRow:
    """One intent in an outbox and its latest state (`sending` or a `Delivery` state)."""

    intent: Intent
    state: str
    delivery: Delivery | None = attrs.field(default=None, eq=False)
    updated_at: float = 0.0

    @property
    def category(self) -> str | None:
        """The category of the last failure, or None."""
        error = self.delivery.error if self.delivery is not None else None
        return error.category if error is not None else None


class MemoryOutbox:
    """An in-memory outbox: one row per idempotency key, for tests and scripts.

    Args:
        clock: Wall clock for `updated_at`.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._rows: dict[str, OutboxRow] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending`."""
        with self._lock:
            self._rows[intent.idempotency_key] = OutboxRow(
                intent=intent, state=SENDING, updated_at=self._clock()
            )

    def settle(self, delivery: Delivery) -> None:
        """Record what became of the intent."""
        with self._lock:
            self._rows[delivery.intent.idempotency_key] = OutboxRow(
                intent=delivery.intent,
                state=delivery.state,
                delivery=delivery,
                updated_at=self._clock(),
            )

    async def abegin(self, intent: Intent) -> None:
        """Record *intent* as `sending` (no I/O)."""
        self.begin(intent)

    async def asettle(self, delivery: Delivery) -> None:
        """Record what became of the intent (no I/O)."""
        self.settle(delivery)

    def rows(self, state: str | None = None) -> list[OutboxRow]:
        """Return the rows, oldest first, optionally only those in *state*."""
        with self._lock:
            rows = list(self._rows.values())
        return [r for r in rows if state is None or r.state == state]

    def get(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        return self._rows.get(idempotency_key)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"MemoryOutbox(rows={len(self._rows)})"
