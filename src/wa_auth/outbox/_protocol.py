"""The `Outbox` protocol, and `Replayer`: all a replay needs of a guard.

`Outbox` is what a guard records each send in, and what a queue worker drives: its stores
(`_memory`, `_sqlite`, and a fleet's Redis or Postgres store next) implement it. `Replayer` is
the narrow face of a guard that `replay` takes: its outbox, its client, its events and its
`send` / `asend`; `wa_auth.guards.Guard` is one, and `wa_auth.guards` imports this module
only, never the stores.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from wa_auth.intents import Intent
from wa_auth.outbox._values import DEFAULT_BATCH, OutboxRow, OutboxStats, Replay

if TYPE_CHECKING:
    from collections.abc import Collection

    from wa_auth._delivery import Delivery
    from wa_auth.events import Events
    from wa_auth.providers import TokenProvider
    from wa_auth.webhooks import MessageStatus

__all__ = ["Outbox", "OutboxRow", "OutboxStats", "Replay", "ReplayClient", "Replayer"]


@runtime_checkable
class Outbox(Protocol):
    """Where intents wait, and where a guard records each send before and after it."""

    def begin(self, intent: Intent) -> None:
        """Record *intent* as `sending` before its request goes out (committed on return).

        Raises:
            OutboxError: The intent is being sent by another worker (`busy`), or was
                delivered, may have been, or expired (`duplicate`, `expired`).
        """
        ...

    def settle(self, delivery: Delivery) -> None:
        """Record what became of the intent of *delivery*.

        A delivered row stays delivered, and an expired one expired (unless a slow worker
        reports that it was delivered after all).
        """
        ...

    def enqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending`; return False when its key is already in the outbox."""
        ...

    def enqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction; return how many were new."""
        ...

    def claim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
        numbers: int = 1,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows (id greater than *after*) to this outbox.

        The leading rows of at most *numbers* phone numbers, none of a number another worker
        holds: each number's intents go out in order.
        """
        ...

    def release(self) -> int:
        """Give back this outbox's claims that were not sent; return how many."""
        ...

    def mark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set a row's state by hand (`MARKABLE_STATES`): an operator's decision."""
        ...

    def apply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row its `idempotency_key` names; return that row.

        Meta echoes the `biz_opaque_callback_data` a guard sends, which is the intent's
        idempotency key. A `failed` status turns a `delivered`, `sending` or `maybe_delivered`
        row `failed`, with the event's category and the reason `webhook:<Graph code>`; any
        other status, or a row already over, is left as it is (`status_failure`). Applying
        the same event twice changes nothing the second time. None when the event names no
        key, or a key this outbox does not hold.
        """
        ...

    def get(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        ...

    def list(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:
        """Return the rows that match every filter given, oldest first."""
        ...

    def stats(self) -> OutboxStats:
        """Count the rows by state and category."""
        ...

    def purge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete delivered (and expired) rows unchanged for that many seconds; return how many."""
        ...

    def replay(
        self,
        guard: Replayer,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> Replay:
        """Send what is replayable through *guard* (whose outbox this is)."""
        ...

    async def abegin(self, intent: Intent) -> None:
        """Record *intent* as `sending` (see `begin`)."""
        ...

    async def asettle(self, delivery: Delivery) -> None:
        """Record what became of the intent of *delivery*."""
        ...

    async def aenqueue(self, intent: Intent) -> bool:
        """Add *intent* as `pending` (see `enqueue`)."""
        ...

    async def aenqueue_many(self, intents: Iterable[Intent]) -> int:
        """Add intents as `pending` in one transaction."""
        ...

    async def aclaim(
        self,
        limit: int = DEFAULT_BATCH,
        *,
        after: int = 0,
        live_fingerprints: Collection[str] | None = None,
        include_maybe_delivered: bool = False,
        numbers: int = 1,
    ) -> builtins.list[OutboxRow]:
        """Lease up to *limit* replayable rows (see `claim`)."""
        ...

    async def arelease(self) -> int:
        """Give back this outbox's unsent claims."""
        ...

    async def amark(
        self,
        idempotency_key: str,
        state: str,
        *,
        reason: str | None = "operator",
        message_id: str | None = None,
    ) -> OutboxRow:
        """Set a row's state by hand (see `mark`)."""
        ...

    async def aapply_status(self, event: MessageStatus) -> OutboxRow | None:
        """Apply a status webhook to the row it names (see `apply_status`)."""
        ...

    async def aget(self, idempotency_key: str) -> OutboxRow | None:
        """Return the row of *idempotency_key*, or None."""
        ...

    async def alist(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:
        """Return the rows that match (see `list`)."""
        ...

    async def astats(self) -> OutboxStats:
        """Count the rows by state and category."""
        ...

    async def apurge(
        self,
        *,
        delivered_older_than: float | None = None,
        expired_older_than: float | None = None,
    ) -> int:
        """Delete old delivered (and expired) rows (see `purge`)."""
        ...

    async def areplay(
        self,
        guard: Replayer,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
        concurrency: int = 16,
    ) -> Replay:
        """Send what is replayable through *guard*, *concurrency* at a time."""
        ...


class ReplayClient(Protocol):
    """What a replay reads of a guard's client: its provider (the live tokens), its label."""

    @property
    def token_provider(self) -> TokenProvider:
        """The provider the client gets its tokens from."""
        ...

    @property
    def consumer(self) -> str | None:
        """The label the client's events carry."""
        ...


class Replayer(Protocol):
    """What a replay needs of a guard: its outbox, its client, its events and a send.

    `wa_auth.guards.Guard` is one. The replay checks that *outbox* is the outbox it replays,
    asks the client's provider which tokens it hands out now, emits `MessageExpired` for what
    it expires on *events*, and sends the rest with `send` (or `asend`), which records each
    send in the outbox before and after it.
    """

    @property
    def outbox(self) -> Outbox | None:
        """The outbox the guard records its sends in."""
        ...

    @property
    def client(self) -> ReplayClient:
        """The guard's client."""
        ...

    @property
    def events(self) -> Events:
        """Where the guard's events go."""
        ...

    def send(self, intent: Intent) -> Delivery:
        """Send *intent* and return what became of it (a blocking client)."""
        ...

    async def asend(self, intent: Intent) -> Delivery:
        """Send *intent* and return what became of it (an asyncio client)."""
        ...
