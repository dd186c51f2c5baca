"""serve's webhook pipeline after the 200: admit, apply, and forward to every route, in order.

`Fanout` runs on serve's event loop, over the queue file (`_queue.WebhookQueue`):

- one task takes the stored deliveries, oldest first: it parses each, admits its events and
  queues their forwards in one commit (`WebhookQueue.aadmit`; with `--redis`, admitted in
  the fleet's ledger first, `_shared`), applies the admitted events to
  the guard and the outbox, then forgets the delivery. Killed anywhere, the next start picks
  the delivery up where it was: a delivery not admitted is admitted then (nothing was
  recorded), an admitted one is applied again (the outbox's `apply_status` is idempotent; a
  handler may run a second time for a kill at that very point).
- one task per route sends that route's forwards in order: the oldest pending one, until the
  route answers 2xx, with a doubling back-off between attempts; after the last attempt it
  becomes a dead letter and the next goes. A route that is down holds back its own queue and
  nobody else's.

Every wait is bounded (the route's timeout, the poll interval), and no failure ends a task:
the queue file's problems are waited out, a receiver's are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import aiohttp

from wa_auth._cli._serve._hooks_settings import MAX_BACKOFF, HookSettings
from wa_auth._cli._serve._queue import Delivery, Forward, WebhookQueue
from wa_auth._cli._serve._routes import KEY_HEADER, SIGNATURE_HEADER, Route, sign
from wa_auth.errors import ConfigurationError, WhatsAppError
from wa_auth.webhooks import parse
from wa_auth.webhooks._admission import APPLY, _emit

__all__ = ["Fanout", "apply_event"]

#: Seconds an idle task waits before it looks at the file again (another process, `wa-auth
#: webhook replay`, may have changed it).
POLL: Final = 1.0
#: Seconds `stop` waits for the tasks to end after cancelling them.
STOP_TIMEOUT: Final = 5.0
#: Attempts to apply a delivery's events before it is given up (and logged).
APPLY_ATTEMPTS: Final = 5

_log = logging.getLogger("wa_auth.serve")


async def apply_event(guard: Any, event: Any) -> None:
    """Apply *event* to the guard (`Guard.aapply`): what a raised error of its category does.

    The guard's outbox turns a failed status's row `failed` on the way (`aapply_status`). A
    throughput change that names its number by the display number only cannot be placed
    (`Guard.apply` refuses it): it is logged, not retried, since a retry cannot place it either.
    """
    try:
        await guard.aapply(event)
    except ConfigurationError as exc:
        if getattr(event, "type", None) != "phone_number_quality_update":
            raise
        _log.warning("a webhook event was not applied: %s", exc.message)


class Fanout:
    """Admit, apply and forward what `POST /webhook` stored; see the module docstring.

    Args:
        settings: The webhook settings (the forwards' timeout, attempts and back-off).
        queue: The queue file.
        routes: The routes of the configuration file.
        guard: What admitted events are applied to (`aapply`, which applies a status to the
            guard's outbox too), or None.
        events: Where the admissions' events go (`webhook.accepted`, ...), or None.
        clock: The wall clock of the retries.
        shared: The fleet's ledger (`_shared.SharedLedger`, with `--redis`): events are
            admitted there, and in the queue file's ledger only while Redis does not answer.
    """

    def __init__(
        self,
        settings: HookSettings,
        queue: WebhookQueue,
        routes: Sequence[Route],
        *,
        guard: Any = None,
        events: Any = None,
        clock: Callable[[], float] = time.time,
        shared: Any = None,
    ) -> None:
        self.settings = settings
        self.shared = shared
        self.queue = queue
        self.guard = guard
        self.events = events
        self._clock = clock
        self.routes: dict[str, Route] = {route.id: route for route in routes}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._session: aiohttp.ClientSession | None = None
        #: Set by `stop`: every task ends at its next turn.
        self.stopping = False
        #: POSTs refused for their signature, deliveries stored, forwards sent.
        self.rejected = 0
        self.stored = 0
        self.forwarded = 0

    # --- the life of the tasks --------------------------------------------------------------

    async def start(self) -> None:
        """Load the API's routes and start the tasks."""
        for route in await self.queue.aroutes():
            self.routes.setdefault(route.id, route)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.settings.forward_timeout),
            auto_decompress=False,
        )
        self._spawn("", self._deliveries())
        for route_id in self.routes:
            self._spawn(route_id, self._route(route_id))

    def _spawn(self, name: str, coro: Any) -> None:
        self._wakes.setdefault(name, asyncio.Event())
        self._tasks[name] = asyncio.get_running_loop().create_task(coro)

    async def stop(self) -> None:
        """Stop the tasks (what they were doing stays in the queue) and close the session.

        Each task also ends at its next turn once `stopping` is set: on Python 3.11 and older,
        `asyncio.wait_for` (the tasks' naps) may swallow a cancellation that arrives as its
        wait ends, and a task that went on looping held serve's exit forever. The wait for
        them is bounded all the same (`STOP_TIMEOUT`).
        """
        self.stopping = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for wake in self._wakes.values():
            wake.set()
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in pending:
                task.cancel()
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: a task's failure is no unhandled warning
        if self._session is not None:
            await self._session.close()

    def _wake(self, name: str) -> None:
        wake = self._wakes.get(name)
        if wake is not None:
            wake.set()

    async def _nap(self, name: str, seconds: float) -> None:
        wake = self._wakes[name]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), max(0.0, min(seconds, POLL)))
        wake.clear()

    # --- what the routes API changes --------------------------------------------------------

    async def received(self, body: bytes) -> int:
        """Store a verified delivery (committed when this returns) and wake its worker."""
        delivery = await self.queue.astore(body)
        self.stored += 1
        self._wake("")
        return delivery

    async def put_route(self, route: Route) -> Route:
        """Register (or replace, same URL, same id) an API route; it survives a restart."""
        kept = await self.queue.aput_route(route)
        self.routes[kept.id] = kept
        if kept.id not in self._tasks and self._session is not None:
            self._spawn(kept.id, self._route(kept.id))
        return kept

    async def delete_route(self, route_id: str) -> bool:
        """Drop an API route and its queue; False: no API route has this id."""
        if not await self.queue.adelete_route(route_id):
            return False
        self.routes.pop(route_id, None)
        task = self._tasks.pop(route_id, None)
        if task is not None:
            task.cancel()
        return True

    # --- deliveries -------------------------------------------------------------------------

    async def _deliveries(self) -> None:
        while not self.stopping:
            try:
                batch = self.queue.due()
            except WhatsAppError:
                _log.warning("the webhook queue file cannot be read: retrying")
                await self._nap("", POLL)
                continue
            if not batch:
                await self._nap("", POLL)
                continue
            await self._batch(batch)

    async def _batch(self, batch: Sequence[Delivery]) -> None:
        """Admit the new deliveries of *batch* in one commit, apply every one, forget them."""
        parsed = [(delivery, parse(delivery.body)) for delivery in batch]
        verdicts = {d.id: d.verdicts for d in batch if d.verdicts is not None}
        fresh = [(delivery, events) for delivery, events in parsed if delivery.verdicts is None]
        # A batch that fails (a row SQLite refuses) is admitted again one delivery at a time,
        # so one bad delivery waits alone.
        groups = [fresh] if fresh else []
        for group in groups:
            try:
                decided = None if self.shared is None else await self.shared.adecide(group)
                admitted = await self.queue.aadmit(
                    group, list(self.routes.values()), decided=decided
                )
            except Exception:  # noqa: BLE001 - retried below, one delivery at a time
                if len(group) > 1:
                    groups += [[one] for one in group]
                else:
                    await self._failed(group[0][0])
                continue
            for (delivery, _), decided in zip(group, admitted, strict=True):
                for one in decided:
                    _emit(self.events, one)
                verdicts[delivery.id] = tuple(one.verdict for one in decided)
            for route_id in self.routes:
                self._wake(route_id)
        done = []
        for delivery, events in parsed:
            if delivery.id not in verdicts:
                continue
            try:
                for event, verdict in zip(events, verdicts[delivery.id], strict=False):
                    if verdict == APPLY and self.guard is not None:
                        await apply_event(self.guard, event)
            except Exception:  # noqa: BLE001 - a delivery that cannot be applied waits
                await self._failed(delivery)
                continue
            done.append(delivery)
        with contextlib.suppress(WhatsAppError):
            await self.queue.adone(done)

    async def _failed(self, delivery: Delivery) -> None:
        _log.warning("a webhook delivery could not be admitted or applied: retrying it")
        with contextlib.suppress(WhatsAppError):
            if delivery.attempts + 1 >= APPLY_ATTEMPTS:
                _log.error("a webhook delivery was given up after its last attempt")
                await self.queue.adone([delivery])
            else:
                await self.queue.aretry(delivery, self._backoff(delivery.attempts + 1))

    def _backoff(self, attempts: int) -> float:
        return float(min(self.settings.forward_backoff * 2 ** (attempts - 1), MAX_BACKOFF))

    # --- forwards ---------------------------------------------------------------------------

    async def _route(self, route_id: str) -> None:
        while route_id in self.routes and not self.stopping:
            try:
                heads = self.queue.heads(route_id)
            except WhatsAppError:
                await self._nap(route_id, POLL)
                continue
            if not heads:
                await self._nap(route_id, POLL)
                continue
            for head in heads:
                if self.stopping or not await self._forward(route_id, head):
                    break

    async def _forward(self, route_id: str, head: Forward) -> bool:
        """Send *head* if it is due; True when the route's next forward may go now."""
        now = self._clock()
        route = self.routes.get(route_id)
        if route is None:
            return False
        if head.next_at > now:
            await self._nap(route_id, head.next_at - now)
            return False
        error = await self._send(route, head)
        try:
            if error is None:
                await self.queue.adelivered(head)
                self.forwarded += 1
                return True
            attempts = head.attempts + 1
            last = attempts >= self.settings.forward_attempts
            await self.queue.afailed(head, error, delay=None if last else self._backoff(attempts))
        except WhatsAppError:
            await self._nap(route_id, POLL)
        return False

    async def _send(self, route: Route, forward: Forward) -> str | None:
        """POST one forward; None when the route answered 2xx, else what went wrong."""
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(route.secret, forward.body),
            KEY_HEADER: forward.key,
        }
        try:
            # No redirect is followed: a signed body goes to the route's own URL only.
            post = self._session.post(
                route.url, data=forward.body, headers=headers, allow_redirects=False
            )
            async with post as answer:
                await answer.read()
                if 200 <= answer.status < 300:
                    return None
                return f"the route answered HTTP {answer.status}"
        except asyncio.TimeoutError:
            return f"no answer within {self.settings.forward_timeout:g} s"
        except aiohttp.ClientError as exc:
            # The type only: an error's text may quote the URL, and its query may hold a token.
            return f"the route could not be reached ({type(exc).__name__})"
