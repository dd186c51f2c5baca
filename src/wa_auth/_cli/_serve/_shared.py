"""serve's webhook admission on the fleet's Redis (`--redis URL`): one ledger for every host.

Without `--redis`, serve admits each event in its queue file's own ledger, in the transaction
that queues the event's forwards (`_queue.WebhookQueue.aadmit`). Two serve processes behind a
load balancer have a file each, so a redelivery reaching the other one would be forwarded
again. With `--redis`, `SharedLedger.adecide` admits a batch's events in the fleet's
`RedisWebhookLedger` first (the same policy, `wa_auth.webhooks._admission.admission`, driven
over Redis), and the queue's one commit records those verdicts and queues the forwards.

Two stores, and a kill may fall between them. Each stored delivery has an owner (a random
word kept with it in the queue file), and its claims and advances are made as that owner
(`RedisWebhookLedger.owned`): a delivery claimed in Redis but never committed here stays
`received` in the file, is processed again after the restart, and its own claims are
accepted again, its own advance answers as the first time did. So it is forwarded once; a
redelivery of it to another process, which has another owner, is a duplicate.

Redis down: the batch is admitted in the queue file's ledger instead, as without `--redis`,
and a `StateFellBack` event (store `webhooks`) says so, with one warning line on stderr when
the fall-back starts and one when Redis answers again. Meta is still answered 200 and nothing
is lost; only a redelivery reaching another process while Redis is down may be forwarded by
both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

from wa_auth._effects import arun
from wa_auth.errors import StateUnavailableError
from wa_auth.fleet._connection import fell_back
from wa_auth.webhooks._admission import Admission, admission

if TYPE_CHECKING:
    from wa_auth._cli._serve._queue import Delivery
    from wa_auth.events import Events
    from wa_auth.fleet._ledger import RedisWebhookLedger

__all__ = ["SharedLedger"]

_log: Final = logging.getLogger("wa_auth.serve")


class SharedLedger:
    """Admit serve's deliveries in the fleet's ledger (see the module docstring).

    Args:
        ledger: The fleet's ledger (`RedisState.ledger()`).
        events: Where a fall-back is told (`StateFellBack`); None: logged.
    """

    def __init__(self, ledger: RedisWebhookLedger, events: Events | None = None) -> None:
        self.ledger = ledger
        self.events = events
        #: Batches admitted in the queue file's ledger because Redis did not answer.
        self.fallbacks = 0
        self._down = False

    async def adecide(
        self, batch: Sequence[tuple[Delivery, Sequence[Any]]]
    ) -> list[list[Admission]] | None:
        """Admit each delivery's events as its owner; None: Redis did not answer (fall back)."""
        found: list[list[Any]] = [[None] * len(events) for _, events in batch]
        # One chain per message, in the batch's order (a status never overtakes an earlier
        # one of its message); the chains run together, so their scripts leave as pipelines.
        chains: dict[object, list[tuple[int, int]]] = {}
        for i, (_, events) in enumerate(batch):
            for j, event in enumerate(events):
                chain = event.message_id if event.message_id is not None else (i, j)
                chains.setdefault(chain, []).append((i, j))

        async def admit(chain: list[tuple[int, int]]) -> None:
            for i, j in chain:
                delivery, events = batch[i]
                owned = self.ledger.owned(delivery.owner)
                found[i][j] = await arun(admission(events[j]), owned)

        try:
            await _gather([admit(chain) for chain in chains.values()])
        except StateUnavailableError as exc:
            self.fallbacks += 1
            fell_back(self.events, "webhooks", exc, self.fallbacks)
            if not self._down:
                self._down = True
                _log.warning(
                    "fleet.fallback: Redis did not answer: webhook events are admitted in this "
                    "queue file's ledger"
                )
            return None
        if self._down:
            self._down = False
            _log.warning(
                "fleet.fallback: Redis answers again: webhook events are admitted in the "
                "fleet's ledger"
            )
        return found

    def __repr__(self) -> str:
        return f"SharedLedger({self.ledger!r})"


async def _gather(coros: list[Coroutine[Any, Any, None]]) -> None:
    """Run *coros* together; raise the first error once every one has ended."""
    errors = [e for e in await asyncio.gather(*coros, return_exceptions=True) if e is not None]
    if errors:
        raise errors[0]
