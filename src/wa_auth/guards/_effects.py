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
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from wa_auth import _deadline
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
    "GetPauses",
    "Handle",
    "Health",
    "Held",
    "Penalize",
    "Probe",
    "PutPause",
    "Runtime",
    "SendIntent",
    "Settle",
    "Sleep",
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
        #: The effects that do no I/O here, which the async driver performs without a
        #: coroutine each (`wa_auth._effects.arun`): the clock, and the stores kept in memory.
        inline: set[type] = {Now}
        if type(self.pauses) is MemoryPauseStore:
            inline |= {GetPauses, GetPause, PutPause, ClearPause}
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


_set = object.__setattr__


class _Step:
    """The base of the effects: slotted, immutable, equal when of one type with equal fields.

    Plain classes, not attrs: an effect is an internal carrier that lives for one step of a
    flow, and the 17 of them are created at every import of the guard (a one-message
    `wa-auth send` imports it), where attrs' generated methods cost some 5 ms.
    """

    __slots__: tuple[str, ...] = ()
    #: The fields `==` and `hash()` compare; None: every field.
    compared: ClassVar[tuple[str, ...] | None] = None

    def _fields(self, names: tuple[str, ...] | None = None) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in (names or self.__slots__))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Step)
        return self._fields(self.compared) == other._fields(self.compared)

    def __hash__(self) -> int:
        return hash((type(self), self._fields(self.compared)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Now(_Step):
    def perform(self, env: Runtime, /) -> tuple[float, float]:
        return env.clock(), env.monotonic()

    async def aperform(self, env: Runtime, /) -> tuple[float, float]:
        return env.clock(), env.monotonic()


NOW: Final = Now()


class Sleep(_Step):
    __slots__ = ("seconds",)
    seconds: float

    def __init__(self, seconds: float) -> None:
        _set(self, "seconds", seconds)

    def perform(self, env: Runtime, /) -> None:
        env.sleep(self.seconds)

    async def aperform(self, env: Runtime, /) -> None:
        await env.asleep(self.seconds)


class SendIntent(_Step):
    """Send the intent; the call ends by *until*, the budget's end (see `Runtime.within`)."""

    __slots__ = ("intent", "until")
    intent: Intent
    until: float

    def __init__(self, intent: Intent, until: float = math.inf) -> None:
        _set(self, "intent", intent)
        _set(self, "until", until)

    def perform(self, env: Runtime, /) -> SendResult:
        with env.within(self.until):
            return env.sync_client().send(self.intent)  # type: ignore[no-any-return]

    async def aperform(self, env: Runtime, /) -> SendResult:
        # `within` and `async_client`, written out: this runs once per message.
        if not env.is_async:
            env.async_client()  # raises
        until = self.until
        if not math.isfinite(until):
            return await env.client.send(self.intent)  # type: ignore[no-any-return]
        token = _deadline.enter(until - env.monotonic(), env.budget)
        try:
            return await env.client.send(self.intent)  # type: ignore[no-any-return]
        finally:
            _deadline.leave(token)


class Call(_Step):
    """The decorator's step: call the user's function (awaited when it is a coroutine one)."""

    __slots__ = ("args", "fn", "kwargs")
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        _set(self, "fn", fn)
        _set(self, "args", args)
        _set(self, "kwargs", kwargs)

    def perform(self, _env: Runtime, /) -> Any:
        return self.fn(*self.args, **self.kwargs)

    async def aperform(self, _env: Runtime, /) -> Any:
        return await self.fn(*self.args, **self.kwargs)


class Acquire(_Step):
    __slots__ = ("max_wait", "recipient", "route")
    route: str
    recipient: str
    max_wait: float

    def __init__(self, route: str, recipient: str, max_wait: float) -> None:
        _set(self, "route", route)
        _set(self, "recipient", recipient)
        _set(self, "max_wait", max_wait)

    def perform(self, env: Runtime, /) -> float | None:
        assert env.limiter is not None
        return env.limiter.acquire(self.route, self.recipient, max_wait=self.max_wait)

    async def aperform(self, env: Runtime, /) -> float | None:
        assert env.limiter is not None
        return await env.limiter.aacquire(self.route, self.recipient, max_wait=self.max_wait)


class Penalize(_Step):
    __slots__ = ("recipient", "route", "seconds")
    route: str
    recipient: str | None
    seconds: float

    def __init__(self, route: str, recipient: str | None, seconds: float) -> None:
        _set(self, "route", route)
        _set(self, "recipient", recipient)
        _set(self, "seconds", seconds)

    def perform(self, env: Runtime, /) -> None:
        assert env.limiter is not None
        env.limiter.penalize(self.route, self.recipient, self.seconds)

    async def aperform(self, env: Runtime, /) -> None:
        assert env.limiter is not None
        await env.limiter.apenalize(self.route, self.recipient, self.seconds)


class Held(_Step):
    """How long a hold (Meta's retry_after) still stops the number or the pair; 0: none.

    A limiter written before `RateLimiter.held` existed never holds: 0.
    """

    __slots__ = ("recipient", "route")
    route: str
    recipient: str

    def __init__(self, route: str, recipient: str) -> None:
        _set(self, "route", route)
        _set(self, "recipient", recipient)

    def perform(self, env: Runtime, /) -> float:
        held = getattr(env.limiter, "held", None)
        return 0.0 if held is None else float(held(self.route, self.recipient))

    async def aperform(self, env: Runtime, /) -> float:
        aheld = getattr(env.limiter, "aheld", None)
        return 0.0 if aheld is None else float(await aheld(self.route, self.recipient))


class GetPause(_Step):
    __slots__ = ("kind", "route")
    kind: str
    route: str

    def __init__(self, kind: str, route: str) -> None:
        _set(self, "kind", kind)
        _set(self, "route", route)

    def perform(self, env: Runtime, /) -> Pause | None:
        return env.pauses.get(self.kind, self.route)

    async def aperform(self, env: Runtime, /) -> Pause | None:
        return await env.pauses.aget(self.kind, self.route)


class GetPauses(_Step):
    """Both of a number's records at once: its account pause and its circuit."""

    __slots__ = ("route",)
    route: str

    def __init__(self, route: str) -> None:
        _set(self, "route", route)

    def perform(self, env: Runtime, /) -> tuple[Pause | None, Pause | None]:
        return env.pauses.get(ACCOUNT, self.route), env.pauses.get(CIRCUIT, self.route)

    async def aperform(self, env: Runtime, /) -> tuple[Pause | None, Pause | None]:
        pauses = env.pauses
        if type(pauses) is MemoryPauseStore:  # no I/O: two dict reads, not two coroutines
            return pauses.get(ACCOUNT, self.route), pauses.get(CIRCUIT, self.route)
        return await pauses.aget(ACCOUNT, self.route), await pauses.aget(CIRCUIT, self.route)


class PutPause(_Step):
    __slots__ = ("pause",)
    pause: Pause

    def __init__(self, pause: Pause) -> None:
        _set(self, "pause", pause)

    def perform(self, env: Runtime, /) -> None:
        env.pauses.put(self.pause)

    async def aperform(self, env: Runtime, /) -> None:
        await env.pauses.aput(self.pause)


class ClearPause(_Step):
    __slots__ = ("kind", "route")
    kind: str
    route: str

    def __init__(self, kind: str, route: str) -> None:
        _set(self, "kind", kind)
        _set(self, "route", route)

    def perform(self, env: Runtime, /) -> None:
        env.pauses.clear(self.kind, self.route)

    async def aperform(self, env: Runtime, /) -> None:
        await env.pauses.aclear(self.kind, self.route)


class Probe(_Step):
    """Ask whether a paused number can send again: `get_phone_number` for it, by *until*."""

    __slots__ = ("route", "until")
    route: str
    until: float

    def __init__(self, route: str, until: float = math.inf) -> None:
        _set(self, "route", route)
        _set(self, "until", until)

    def perform(self, env: Runtime, /) -> PhoneNumber:
        with env.within(self.until):
            return env.sync_client().get_phone_number(phone_number_id=self.route)  # type: ignore[no-any-return]

    async def aperform(self, env: Runtime, /) -> PhoneNumber:
        with env.within(self.until):
            return await env.async_client().get_phone_number(phone_number_id=self.route)  # type: ignore[no-any-return]


class Health(_Step):
    """The token's (cached) health, asked by *until*."""

    __slots__ = ("until",)
    until: float

    def __init__(self, until: float = math.inf) -> None:
        _set(self, "until", until)

    def perform(self, env: Runtime, /) -> TokenHealth:
        with env.within(self.until):
            return env.noted(env.sync_client().token_health())

    async def aperform(self, env: Runtime, /) -> TokenHealth:
        with env.within(self.until):
            return env.noted(await env.async_client().token_health())


class Begin(_Step):
    __slots__ = ("intent",)
    intent: Intent

    def __init__(self, intent: Intent) -> None:
        _set(self, "intent", intent)

    def perform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        env.outbox.begin(self.intent)

    async def aperform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        await env.outbox.abegin(self.intent)


class Settle(_Step):
    __slots__ = ("delivery",)
    delivery: Delivery

    def __init__(self, delivery: Delivery) -> None:
        _set(self, "delivery", delivery)

    def perform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        env.outbox.settle(self.delivery)

    async def aperform(self, env: Runtime, /) -> None:
        assert env.outbox is not None
        await env.outbox.asettle(self.delivery)


class Handle(_Step):
    """Call the failure's handlers; a handler that raises is logged, never propagated."""

    __slots__ = ("error", "handlers", "intent")
    compared = ("handlers", "intent")  # not the error: one error is not equal to its copy
    handlers: tuple[Handler, ...]
    intent: Intent | None
    error: WhatsAppError

    def __init__(
        self, handlers: tuple[Handler, ...], intent: Intent | None, error: WhatsAppError
    ) -> None:
        _set(self, "handlers", handlers)
        _set(self, "intent", intent)
        _set(self, "error", error)

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


class Fallback(_Step):
    """Ask the fallback to route a failed intent elsewhere; its answer becomes the outcome."""

    __slots__ = ("error", "fallback", "intent")
    compared = ("fallback", "intent")  # not the error: one error is not equal to its copy
    fallback: Callable[..., Any]
    intent: Intent | None
    error: WhatsAppError

    def __init__(
        self, fallback: Callable[..., Any], intent: Intent | None, error: WhatsAppError
    ) -> None:
        _set(self, "fallback", fallback)
        _set(self, "intent", intent)
        _set(self, "error", error)

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
