"""`Guard.asend` drives the policy in its own coroutine: what it must keep doing.

It runs `wa_auth._effects.arun`'s loop written out (one coroutine fewer per message and per
resumption of the request), so it must stay a coroutine function, throw a failure into the
policy as `arun` does, and emit the delivered event whenever a subscriber wants it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from wa_auth import AsyncWhatsAppClient, Events
from wa_auth.errors import TransientError
from wa_auth.guards import Guard, RetryPolicy
from wa_auth.intents import Intent

TOKEN = "EAAG" + "a" * 60
PHONE = "106540352242922"
TO = "15551234567"
ANSWER = b'{"contacts": [{"input": "15551234567", "wa_id": "15551234567"}], "messages": [{"id": "wamid.d"}]}'


class _Answering(AsyncWhatsAppClient):
    """An async client whose transport answers at once, after failing *fail* times."""

    def __init__(self, fail: int = 0, **options: Any) -> None:
        super().__init__(token=TOKEN, phone_number_id=PHONE, **options)
        self.fail = fail
        self.calls = 0

    async def _send(self, request: Any, token: Any) -> Any:
        from wa_auth._core import Response

        self.calls += 1
        await asyncio.sleep(0)  # a resumption through the guard's coroutine
        if self.calls <= self.fail:
            raise TransientError("the peer hung up", rule="test", retryable=True)
        return Response(200, {"content-type": "application/json"}, ANSWER)

    def _open_pool(self) -> None:
        pass

    async def _close_pool(self) -> None:
        pass


def test_asend_is_a_coroutine_function():
    """Callers (and frameworks that dispatch on it) see `asend` as `async def`."""
    assert inspect.iscoroutinefunction(Guard.asend)
    assert inspect.iscoroutinefunction(Guard(_Answering()).asend)


def test_a_failure_is_thrown_into_the_policy_and_retried():
    """A transient failure of the send reaches the policy, which retries within the budget."""

    async def main() -> Any:
        client = _Answering(fail=1)
        slept: list[float] = []

        async def asleep(seconds: float) -> None:
            slept.append(seconds)

        guard = Guard(client, policy=RetryPolicy(budget=30.0), asleep=asleep, seed=1)
        return await guard.asend(Intent.text(TO, "hi")), client.calls, slept

    delivery, calls, slept = asyncio.run(main())
    assert (delivery.state, delivery.attempts, calls) == ("delivered", 2, 2)
    assert len(slept) == 1


def test_every_delivered_send_emits_its_event_to_a_subscriber():
    """The delivered event's class is looked up once; whether to emit is asked per message:
    a subscriber added between two sends gets the second one's event, and only that."""
    from wa_auth.events import MessageDelivered

    async def main() -> list[Any]:
        events = Events()
        seen: list[Any] = []
        guard = Guard(_Answering(), events=events)
        first = await guard.asend(Intent.text(TO, "one"))
        events.subscribe(seen.append)
        second = await guard.asend(Intent.text(TO, "two"))
        third = await guard.asend(Intent.text(TO, "three"))
        assert [d.state for d in (first, second, third)] == ["delivered"] * 3
        return [(type(e), e.idempotency_key) for e in seen], [second, third]

    seen, (second, third) = asyncio.run(main())
    assert seen == [
        (MessageDelivered, second.intent.idempotency_key),
        (MessageDelivered, third.intent.idempotency_key),
    ]
