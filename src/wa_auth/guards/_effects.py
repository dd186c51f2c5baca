"""The guard's effects: each performs one step of the policy, blocking or on the event loop.

The policy (`_flows`) yields them and `wa_auth._effects` drives them against a
`Runtime`: the client, the limiter, the pause store, the outbox, the clock and the sleep of one
guard (or of one decorated function, which has no client).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TypeVar

from wa_auth import _deadline
from wa_auth._effects import Step, init
from wa_auth.errors import WhatsAppError
from wa_auth.intents import Intent
from wa_auth.pacing import (
    ACCOUNT,
    CIRCUIT,
    LocalRateLimiter,
    MemoryPauseStore,
    Pause,
    PauseStore,
    RateLimiter,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from wa_auth._delivery import Delivery
    from wa_auth.guards._values import Handler
    from wa_auth.models import PhoneNumber, SendResult, TokenHealth
    from wa_auth.outbox._protocol import Outbox

__all__ = [
    "NOW",
    "NO_FALLBACK",
    "Acquire",
    "Begin",
    "Call",
    "ClearPause",
    "Fallback",
    "GetPause",
    "Handle",
    "Health",
    "Held",
    "Look",
    "Penalize",
    "Probe",
    "PutPause",
    "Runtime",
    "SendIntent",
    "Settle",
    "Sleep",
    "sending",
]

T = TypeVar("T")

_log = logging.getLogger("wa_auth.guards")


async def asyncio_sleep(seconds: float) -> None:
    """`asyncio.sleep`, the default async sleep: asyncio loads when an async guard first waits."""
    import asyncio

    await asyncio.sleep(seconds)


class Runtime:
    """What one guard's effects act on; the decorator's has no client, limiter or outbox."""

    def __init__(
        self,
        *,
        client: Any = None,
        limiter: RateLimiter | None = None,
        pauses: PauseStore | None = None,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] | None = None,
        on_health: Callable[[TokenHealth], None] | None = None,
        budget: str = "the guard's budget",
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.pauses: PauseStore = pauses if pauses is not None else MemoryPauseStore()
        #: The store's optional `get_records(route)`, both of a number's records in one
        #: call (`MemoryPauseStore.get_records`), or None: `Look` then calls `get` twice.
        self.get_records: Callable[[str], tuple[Pause | None, Pause | None]] | None = getattr(
            self.pauses, "get_records", None
        )
        self.outbox = outbox
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.asleep = asleep if asleep is not None else asyncio_sleep
        self.on_health = on_health
        #: The budget in words, for the errors of a call it ends (`"the guard's 30 s budget"`).
        self.budget = budget
        #: Whether the client's methods are coroutine functions (looked up once, not per send).
        self.is_async = inspect.iscoroutinefunction(getattr(client, "send", None))
        #: wa_auth's own async clients take a deadline with `send` (`_send_within`): the
        #: budget is handed to the call, not set in a context variable around it. Another
        #: client (a test's, a wrapper, a subclass with a `send` of its own) gets the context
        #: variable, and its own `send` called.
        self.send_within: Callable[[Intent, float, str], Coroutine[Any, Any, Any]] | None = None
        shells = sys.modules.get("wa_auth._client._async")  # loaded if the client is one
        base = None if shells is None else shells.AsyncClientBase
        if base is not None and isinstance(client, base) and type(client).send is base.send:
            self.send_within = client._send_within  # noqa: SLF001 - the package's own client
        #: The effects that do no I/O here, which the async driver performs without a
        #: coroutine each (`wa_auth._effects.arun`): the clock, and the stores kept in memory.
        inline: set[type] = {Now}
        if type(self.pauses) is MemoryPauseStore:
            inline |= {Look, GetPause, PutPause, ClearPause}
        if type(limiter) is LocalRateLimiter:
            inline |= {Acquire, Penalize, Held}
        self.inline: frozenset[type] = frozenset(inline)

    def sync_client(self) -> Any:
        """Return the client, which must be a blocking one."""
        if self.is_async:
            raise TypeError("guard.send() needs a WhatsAppClient; use `await guard.asend()`")
        return self.client

    def async_client(self) -> Any:
        """Return the client, which must be an async one."""
        if not self.is_async:
            raise TypeError("guard.asend() needs an async client; use guard.send()")
        return self.client

    def within(self, until: float) -> AbstractContextManager[None]:
        """Bound the client's call in the block by *until* (the budget's end, `monotonic`).

        The guard's clock may be a test's: only the seconds left on it are carried over to the
        real clock the client's waits run on.
        """
        if not math.isfinite(until):
            return contextlib.nullcontext()
        return _deadline.scope(until - self.monotonic(), self.budget)

    def noted(self, health: TokenHealth) -> TokenHealth:
        """Pass a fresh health report to the guard (its warnings), and return it."""
        if self.on_health is not None:
            self.on_health(health)
        return health


class Now(Step):
    def perform(self, env: Runtime, /) -> tuple[float, float]:
        return env.clock(), env.monotonic()

    async def aperform(self, env: Runtime, /) -> tuple[float, float]:
        return env.clock(), env.monotonic()


NOW: Final = Now()


class Sleep(Step):
    __slots__ = ("seconds",)
    seconds: float

    def __init__(self, seconds: float) -> None:
        init(self, "seconds", seconds)

    def perform(self, env: Runtime, /) -> None:
        env.sleep(self.seconds)

    async def aperform(self, env: Runtime, /) -> None:
        await env.asleep(self.seconds)


class _SendIntentSlots:
    """The slots of `SendIntent`, in a base of their own (see `sending`)."""

    __slots__ = ("intent", "until")
    intent: Intent
    until: float


class SendIntent(Step, _SendIntentSlots):
    """Send the intent; the call ends by *until*, the budget's end (see `Runtime.within`)."""

    __slots__ = ()
    compared = shown = _SendIntentSlots.__slots__

    def __init__(self, intent: Intent, until: float = math.inf) -> None:
        init(self, "intent", intent)
        init(self, "until", until)

    def perform(self, env: Runtime, /) -> SendResult:
        with env.within(self.until):
            return env.sync_client().send(self.intent)  # type: ignore[no-any-return]

    def aperform(self, env: Runtime, /) -> Coroutine[Any, Any, SendResult]:
        # Not a coroutine of its own when wa_auth's client takes the budget with the call: it
        # returns the client's, one coroutine fewer in the await chain of every resumption of
        # the request (the driver awaits what it returns at once, in the same `try`).
        until = self.until
        if until != _INF and env.send_within is not None:
            return env.send_within(self.intent, until - env.monotonic(), env.budget)
        return self._aperform(env)

    async def _aperform(self, env: Runtime, /) -> SendResult:
        # `within` and `async_client`, written out: this runs once per message.
        if not env.is_async:
            env.async_client()  # raises
        until = self.until
        if until == _INF:  # no budget: the client's own deadline only
            return await env.client.send(self.intent)  # type: ignore[no-any-return]
        token = _deadline.enter(until - env.monotonic(), env.budget)
        try:
            return await env.client.send(self.intent)  # type: ignore[no-any-return]
        finally:
            _deadline.leave(token)


_INF: Final = math.inf


class _UnfrozenSend(_SendIntentSlots):
    """A `SendIntent` being made by `sending`: its fields are stored, then its class changes."""

    __slots__ = ()


def sending(intent: Intent, until: float) -> SendIntent:
    """Return `SendIntent(intent, until)`, made without `__init__`: the guard's every send.

    A plain store per field on a class of the same slots, which then becomes a `SendIntent`
    (`__class__` assigned), where `__init__` cost a type call and a `setattr` through
    `object.__setattr__` per field (some 3,700 instructions against 2,400).
    """
    effect = object.__new__(_UnfrozenSend)
    effect.intent = intent
    effect.until = until
    effect.__class__ = SendIntent  # type: ignore[assignment]
    return effect  # type: ignore[return-value]


class Call(Step):
    """The decorator's step: call the user's function (awaited when it is a coroutine one)."""

    __slots__ = ("args", "fn", "kwargs")
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        init(self, "fn", fn)
        init(self, "args", args)
        init(self, "kwargs", kwargs)

    def perform(self, _env: Runtime, /) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def aperform(self, _env: Runtime, /) -> Any:
        return await self.fn(*self.args, **self.kwargs)


class Acquire(Step):
    __slots__ = ("max_wait", "recipient", "route")
    route: str
    recipient: str
    max_wait: float

    def __init__(self, route: str, recipient: str, max_wait: float) -> None:
        init(self, "route", route)
        init(self, "recipient", recipient)
        init(self, "max_wait", max_wait)

    def perform(self, env: Runtime, /) -> float | None:
        assert env.limiter is not None
        return env.limiter.acquire(self.route, self.recipient, max_wait=self.max_wait)

    async def aperform(self, env: Runtime, /) -> float | None:
        assert env.limiter is not None
        return await env.limiter.aacquire(self.route, self.recipient, max_wait=self.max_wait)


class Penalize(Step):
    __slots__ = ("recipient", "route", "seconds")
    route: str
    recipient: str | None
    seconds: float

    def __init__(self, route: str, recipient: str | None, seconds: float) -> None:
        init(self, "route", route)
        init(self, "recipient", recipient)
        init(self, "seconds", seconds)

    def perform(self, env: Runtime, /) -> None:
        assert env.limiter is not None
        env.limiter.penalize(self.route, self.recipient, self.seconds)

    async def aperform(self, env: Runtime, /) -> None:
        assert env.limiter is not None
        await env.limiter.apenalize(self.route, self.recipient, self.seconds)


class Held(Step):
    """How long a hold (Meta's retry_after) still stops the number or the pair; 0: none.

    A limiter written before `RateLimiter.held` existed never holds: 0.
    """

    __slots__ = ("recipient", "route")
    route: str
    recipient: str

    def __init__(self, route: str, recipient: str) -> None:
        init(self, "route", route)
        init(self, "recipient", recipient)

    def perform(self, env: Runtime, /) -> float:
        held = getattr(env.limiter, "held", None)
        return 0.0 if held is None else float(held(self.route, self.recipient))

    async def aperform(self, env: Runtime, /) -> float:
        aheld = getattr(env.limiter, "aheld", None)
        return 0.0 if aheld is None else float(await aheld(self.route, self.recipient))


class GetPause(Step):
    __slots__ = ("kind", "route")
    kind: str
    route: str

    def __init__(self, kind: str, route: str) -> None:
        init(self, "kind", kind)
        init(self, "route", route)

    def perform(self, env: Runtime, /) -> Pause | None:
        return env.pauses.get(self.kind, self.route)

    async def aperform(self, env: Runtime, /) -> Pause | None:
        return await env.pauses.aget(self.kind, self.route)


#: What `Look` returns: the wall clock, the interval clock, the number's account pause and its
#: circuit (None: no record, or no number).
Looked = tuple[float, float, Pause | None, Pause | None]


class Look(Step):
    """What every intent starts with: the two clocks, and its number's pause and circuit.

    One step, where the clock and each record were one each: an intent whose number has
    neither record is sent after two steps, this one and the send. The clocks are read
    before the records. No number (*route* None): no record is read. A plain slotted class
    (a guard makes the one of its default number once; nothing changes it).
    """

    __slots__ = ("route",)
    route: str | None

    def __init__(self, route: str | None) -> None:
        init(self, "route", route)

    def perform(self, env: Runtime, /) -> Looked:
        wall, mono = env.clock(), env.monotonic()
        route = self.route
        if route is None:
            return wall, mono, None, None
        get_records = env.get_records
        if get_records is not None:
            pause, circuit = get_records(route)
            return wall, mono, pause, circuit
        pauses = env.pauses
        return wall, mono, pauses.get(ACCOUNT, route), pauses.get(CIRCUIT, route)

    async def aperform(self, env: Runtime, /) -> Looked:
        wall, mono = env.clock(), env.monotonic()
        route = self.route
        if route is None:
            return wall, mono, None, None
        pauses = env.pauses
        return wall, mono, await pauses.aget(ACCOUNT, route), await pauses.aget(CIRCUIT, route)


class PutPause(Step):
    __slots__ = ("pause",)
    pause: Pause

    def __init__(self, pause: Pause) -> None:
        init(self, "pause", pause)

    def perform(self, env: Runtime, /) -> None:
        env.pauses.put(self.pause)

    async def aperform(self, env: Runtime, /) -> None:
        await env.pauses.aput(self.pause)


class ClearPause(Step):
    __slots__ = ("kind", "route")
    kind: str
    route: str

    def __init__(self, kind: str, route: str) -> None:
        init(self, "kind", kind)
        init(self, "route", route)

    def perform(self, env: Runtime, /) -> None:
        env.pauses.clear(self.kind, self.route)

    async def aperform(self, env: Runtime, /) -> None:
        await env.pauses.aclear(self.kind, self.route)


class Probe(Step):
    """Ask whether a paused number can send again: `get_phone_number` for it, by *until*."""

    __slots__ = ("route", "until")
    route: str
    until: float

    def __init__(self, route: str, until: float = math.inf) -> None:
        init(self, "route", route)
        init(self, "until", until)

    def perform(self, env: Runtime, /) -> PhoneNumber:
        with env.within(self.until):
            return env.sync_client().get_phone_number(phone_number_id=self.route)  # type: ignore[no-any-return]

    async def aperform(self, env: Runtime, /) -> PhoneNumber:
        with env.within(self.until):
            return await env.async_client().get_phone_number(phone_number_id=self.route)  # type: ignore[no-any-return]


class Health(Step):
    """The token's (cached) health, asked by *until*."""

    __slots__ = ("until",)
    until: float

    def __init__(self, until: float = math.inf) -> None:
        init(self, "until", until)

    def perform(self, env: Runtime, /) -> TokenHealth:
        with env.within(self.until):
            return env.noted(env.sync_client().token_health())

    async def aperform(self, env: Runtime, /) -> TokenHealth:
        with env.within(self.until):
            return env.noted(await env.async_client().token_health())


class Begin(Step):
    __slots__ = ("intent",)
    intent: Intent

    def __init__(self, intent: Intent) -> None:
        init(self, "intent", intent)

    def perform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        env.outbox.begin(self.intent)

    async def aperform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        await env.outbox.abegin(self.intent)


class Settle(Step):
    __slots__ = ("delivery",)
    delivery: Delivery

    def __init__(self, delivery: Delivery) -> None:
        init(self, "delivery", delivery)

    def perform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        env.outbox.settle(self.delivery)

    async def aperform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        await env.outbox.asettle(self.delivery)


class Handle(Step):
    """Call the failure's handlers; a handler that raises is logged, never propagated."""

    __slots__ = ("error", "handlers", "intent")
    compared = ("handlers", "intent")  # not the error: one error is not equal to its copy
    handlers: tuple[Handler, ...]
    intent: Intent | None
    error: WhatsAppError

    def __init__(
        self, handlers: tuple[Handler, ...], intent: Intent | None, error: WhatsAppError
    ) -> None:
        init(self, "handlers", handlers)
        init(self, "intent", intent)
        init(self, "error", error)

    def perform(self, _env: Runtime, /) -> None:
        for handler in self.handlers:
            try:
                result = handler(self.intent, self.error)
                if inspect.isawaitable(result):
                    # A coroutine handler on a blocking guard runs on a loop of its own.
                    import asyncio  # a sync guard's async handler only

                    asyncio.run(awaited(result))
            except Exception:  # noqa: BLE001 - a handler must never break a send
                _log.exception("guard handler %r failed on %s", handler, self.error.category)

    async def aperform(self, _env: Runtime, /) -> None:
        for handler in self.handlers:
            try:
                result = handler(self.intent, self.error)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - a handler must never break a send
                _log.exception("guard handler %r failed on %s", handler, self.error.category)


async def awaited(value: Awaitable[T]) -> T:
    return await value


class Fallback(Step):
    """Ask the fallback to route a failed intent elsewhere; its answer becomes the outcome."""

    __slots__ = ("error", "fallback", "intent")
    compared = ("fallback", "intent")  # not the error: one error is not equal to its copy
    fallback: Callable[..., Any]
    intent: Intent | None
    error: WhatsAppError

    def __init__(
        self, fallback: Callable[..., Any], intent: Intent | None, error: WhatsAppError
    ) -> None:
        init(self, "fallback", fallback)
        init(self, "intent", intent)
        init(self, "error", error)

    def perform(self, _env: Runtime, /) -> Any:
        try:
            result = self.fallback(self.intent, self.error)
            if not inspect.isawaitable(result):
                return result
            import asyncio  # a sync guard's async fallback only

            return asyncio.run(awaited(result))
        except Exception:  # noqa: BLE001 - a failing fallback leaves the original outcome
            _log.exception("guard fallback %r failed on %s", self.fallback, self.error.category)
            return NO_FALLBACK

    async def aperform(self, _env: Runtime, /) -> Any:
        try:
            result = self.fallback(self.intent, self.error)
            return (await result) if inspect.isawaitable(result) else result
        except Exception:  # noqa: BLE001 - a failing fallback leaves the original outcome
            _log.exception("guard fallback %r failed on %s", self.fallback, self.error.category)
            return NO_FALLBACK


NO_FALLBACK: Final = object()
