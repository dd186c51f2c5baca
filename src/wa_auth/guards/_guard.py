"""`Guard`, and the decorators `@guarded` and `@requires_scopes`: the guard's front door.

`Guard.send` / `asend` drive the policy of `_flows` (blocking or on the running loop) against
a `Runtime` of this guard's client, limiter, pauses, outbox and clocks (`_effects`); the
decorators put the same retry policy, handlers and fallback around a function of your own.
"""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from wa_auth._delivery import FAILED, Delivery
from wa_auth._effects import arun, run
from wa_auth._hub import Events
from wa_auth.errors import ConfigurationError, InsufficientPermissionError, OutboxError
from wa_auth.guards._effects import Look, Runtime
from wa_auth.guards._flows import deliver, retrying
from wa_auth.guards._values import Config, Handlers, RetryPolicy
from wa_auth.intents import Intent
from wa_auth.pacing import ACCOUNT, CIRCUIT, MemoryPauseStore, Pause, PauseStore, RateLimiter

if TYPE_CHECKING:
    from wa_auth.guards._apply import Applied
    from wa_auth.models import TokenHealth
    from wa_auth.outbox._protocol import Outbox
    from wa_auth.webhooks import WebhookEvent

__all__ = ["Guard", "guarded", "requires_scopes"]

P = ParamSpec("P")
T = TypeVar("T")


class Guard:
    """Send intents through *client* with retries, pacing, pauses, an outbox and handlers.

    Args:
        client: A `WhatsAppClient` for `send`, an `AsyncWhatsAppClient` or
            `FastAsyncWhatsAppClient` for `asend` and `asend_many`.
        policy: Retries, the time budget, the circuit and the probe interval.
        limiter: Paces sends per number and per (number, recipient), and holds the number
            (or the pair) for a rate limit's retry_after, so its waiting intents back off as
            one; None sends unpaced, and each intent retries its own 130429.
        outbox: Where intents are recorded before they are sent and what became of them after;
            with one, what cannot be sent now is `queued` there, without one it is `failed`.
        handlers: Callables per failure category, for alerts (`Handlers`).
        fallback: `fallback(intent, error)` routes a failed or queued intent elsewhere
            (another number, another channel): a `Delivery` or `SendResult` it returns
            becomes the outcome; None keeps the original one.
        pauses: Where paused numbers and circuits live; default: a fresh in-memory store.
            Share one store between guards (or a state file) to share what they learn.
        required_scopes: Scopes the token must have (from its cached `token_health()`); an
            intent is refused as `InsufficientPermissionError` without a send otherwise.
        health_warning_days: Emit `TokenHealthWarning` when the token expires within this many
            days (checked with the required scopes).
        events: The hub to emit to; default: the client's.
        consumer: The label for events when an intent has none; default: the client's.
        clock: Wall clock (deadlines, pauses).
        monotonic: Interval clock (the time budget).
        sleep: Blocking sleep (back-off, pacing waits).
        asleep: Async sleep (default: `asyncio.sleep`).
        seed: Seeds the back-off jitter (reproducible tests); None: random.
    """

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        outbox: Outbox | None = None,
        handlers: Handlers | None = None,
        fallback: Callable[..., Any] | None = None,
        pauses: PauseStore | None = None,
        required_scopes: Iterable[str] = (),
        health_warning_days: float = 7.0,
        events: Events | None = None,
        consumer: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] | None = None,
        seed: int | None = None,
    ) -> None:
        if not hasattr(client, "send") or not hasattr(client, "token_health"):
            raise TypeError(f"Guard needs a wa_auth client, got {type(client).__name__}")
        self.client = client
        self.policy = policy if policy is not None else RetryPolicy()
        self.limiter = limiter
        self.outbox = outbox
        self.handlers = handlers
        self.fallback = fallback
        self.pauses: PauseStore = pauses if pauses is not None else MemoryPauseStore()
        self._runtime = Runtime(
            client=client,
            limiter=limiter,
            pauses=self.pauses,
            outbox=outbox,
            clock=clock,
            monotonic=monotonic,
            sleep=sleep,
            asleep=asleep,
            on_health=self._noted,
            budget=f"the guard's {self.policy.budget:g} s budget",
        )
        self.required_scopes = tuple(required_scopes)
        self._warn_within = health_warning_days * 86400.0
        self._warned: set[str] = set()
        self.events: Events = events if events is not None else client.events
        default_route = getattr(client, "phone_number_id", None)
        self._cfg = Config(
            policy=self.policy,
            events=self.events,
            rng=random.Random(seed),  # noqa: S311 - jitter, not crypto
            default_route=default_route,
            consumer=consumer if consumer is not None else client.consumer,
            limiter=limiter is not None,
            outbox=outbox is not None,
            handlers=handlers,
            fallback=fallback,
            required_scopes=self.required_scopes,
            look=Look(default_route),
        )

    def _noted(self, health: TokenHealth) -> None:
        """Emit a `TokenHealthWarning` once per token that expires soon or lacks scopes."""
        fingerprint = health.token_fingerprint or ""
        missing = tuple(s for s in self.required_scopes if s not in health.scopes)
        soon = health.expires_in is not None and health.expires_in < self._warn_within
        if health.valid and (soon or missing) and fingerprint not in self._warned:
            self._warned.add(fingerprint)
            from wa_auth.events import TokenHealthWarning

            self.events.emit(
                TokenHealthWarning(
                    consumer=self._cfg.consumer,
                    token_fingerprint=health.token_fingerprint,
                    expires_in=health.expires_in if soon else None,
                    missing_scopes=missing,
                )
            )

    # --- sending --------------------------------------------------------------------------------

    def send(self, intent: Intent) -> Delivery:
        """Send *intent* and return what became of it; never raises for an API failure.

        Raises:
            TypeError: *intent* is not an `Intent`, or the client is an async one.
        """
        return run(deliver(self._cfg, _checked(intent)), self._runtime)

    async def asend(self, intent: Intent) -> Delivery:
        """Send *intent* on the running loop and return what became of it.

        Raises:
            TypeError: *intent* is not an `Intent`, or the client is a blocking one.
        """
        runtime = self._runtime
        if type(intent) is not Intent:  # the common case without a call
            intent = _checked(intent)
        return await arun(deliver(self._cfg, intent), runtime, inline=runtime.inline)

    async def asend_many(
        self, intents: Iterable[Intent], *, concurrency: int = 16
    ) -> list[Delivery]:
        """Send many intents, *concurrency* at a time; the deliveries come in input order.

        One intent never changes what becomes of the others: an intent the outbox refuses
        (`OutboxError`: being sent by another worker, expired, cannot be recorded) is that
        intent's `failed` Delivery with reason `outbox` and the error, not an exception that
        would lose the deliveries of the rest.

        Raises:
            TypeError: An item is not an `Intent`, or the client is a blocking one.
            ValueError: *concurrency* is not a positive integer.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a positive integer, got {concurrency!r}")
        items = [_checked(i) for i in intents]
        import asyncio

        slots = asyncio.Semaphore(concurrency)

        async def one(intent: Intent) -> Delivery:
            async with slots:
                try:
                    return await self.asend(intent)
                except OutboxError as exc:
                    return Delivery(state=FAILED, intent=intent, error=exc, reason="outbox")

        return list(await asyncio.gather(*(one(i) for i in items)))

    # --- webhooks -------------------------------------------------------------------------------

    def _applying(self, event: object, phone_number_id: str | None) -> Any:
        if not hasattr(event, "key") or not hasattr(event, "type"):
            raise TypeError(
                f"guard.apply() takes a webhook event (wa_auth.webhooks.parse), "
                f"got {type(event).__name__}"
            )
        route = None if phone_number_id is None else str(phone_number_id)
        waba = getattr(self.client, "business_account_id", None)
        # Imported here: the webhooks' classes cost nothing to a process that only sends.
        from wa_auth.guards._apply import applying

        return applying(self._cfg, event, route, waba)  # type: ignore[arg-type]

    def apply(self, event: WebhookEvent, *, phone_number_id: str | None = None) -> Applied:
        """Do for a webhook *event* what a raised error of its category does; return what.

        A failed status turns its outbox row `failed`, calls the category's handlers once
        (with the intent, when the outbox has it) and teaches the number what a send's failure
        would: a late 131031 pauses it. An account update that stops sending calls its
        handlers, pauses the number of an account-state failure and, for an uninstalled app
        (`PARTNER_APP_UNINSTALLED`), records a verdict on the tokens the client's provider
        hands out for that WABA; one that resumes sending clears the pause; a throughput
        upgrade sets the limiter's rate. Emits `WebhookApplied`. Apply each event once: pass
        only what `wa_auth.webhooks.admit` lets through.

        Args:
            event: A webhook event (`wa_auth.webhooks.parse`).
            phone_number_id: The number the event is about when it names none (a quality
                update names its number by the display number only; an account update names
                the WABA: without this, the client's number when the client was made for
                that WABA).

        Raises:
            TypeError: *event* is not a webhook event, or the outbox or verdict store is an
                async-only one.
            ConfigurationError: A throughput change (`THROUGHPUT_UPGRADE`) names its number by
                the display number only, the guard has a limiter and no *phone_number_id*
                was given.
            WhatsAppError: The outbox or pause store failed (`OutboxError`, ...): nothing
                reported it applied; release the admission so a redelivery is applied.
        """
        return run(self._applying(event, phone_number_id), self._runtime)  # type: ignore[no-any-return]

    async def aapply(self, event: WebhookEvent, *, phone_number_id: str | None = None) -> Applied:
        """Do for a webhook *event* what a raised error of its category does (see `apply`).

        Raises:
            TypeError: *event* is not a webhook event.
            ConfigurationError: See `apply`.
            WhatsAppError: The outbox or pause store failed.
        """
        runtime = self._runtime
        return await arun(self._applying(event, phone_number_id), runtime, inline=runtime.inline)

    # --- operators ------------------------------------------------------------------------------

    def resume(self, phone_number_id: str) -> None:
        """Resume a paused number (and close its circuit) now: an operator knows it is fixed."""
        self.pauses.clear(ACCOUNT, str(phone_number_id))
        self.pauses.clear(CIRCUIT, str(phone_number_id))
        self._resumed(str(phone_number_id))

    async def aresume(self, phone_number_id: str) -> None:
        """Resume a paused number (see `resume`)."""
        await self.pauses.aclear(ACCOUNT, str(phone_number_id))
        await self.pauses.aclear(CIRCUIT, str(phone_number_id))
        self._resumed(str(phone_number_id))

    def _resumed(self, phone_number_id: str) -> None:
        from wa_auth.events import SenderResumed

        self.events.emit(
            SenderResumed(
                consumer=self._cfg.consumer, phone_number_id=phone_number_id, by="operator"
            )
        )

    def paused(self) -> list[Pause]:
        """Return the pauses and open circuits this guard's store holds."""
        return [p for p in self.pauses.list() if p.kind == ACCOUNT or p.until is not None]

    def __repr__(self) -> str:
        return (
            f"Guard(client={self.client!r}, policy={self.policy!r}, limiter={self.limiter!r}, "
            f"outbox={self.outbox!r})"
        )


def _checked(intent: object) -> Intent:
    if not isinstance(intent, Intent):
        raise TypeError(f"a guard sends Intent values, got {type(intent).__name__}")
    return intent


# --- decorators ---------------------------------------------------------------------------------


@overload
def guarded(
    fn: Callable[P, T],
    /,
) -> Callable[P, T]: ...


@overload
def guarded(
    *,
    policy: RetryPolicy | None = None,
    handlers: Handlers | None = None,
    fallback: Callable[..., Any] | None = None,
    events: Events | None = None,
    consumer: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    asleep: Callable[[float], Awaitable[None]] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    seed: int | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def guarded(
    fn: Callable[P, T] | None = None,
    /,
    *,
    policy: RetryPolicy | None = None,
    handlers: Handlers | None = None,
    fallback: Callable[..., Any] | None = None,
    events: Events | None = None,
    consumer: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    asleep: Callable[[float], Awaitable[None]] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    seed: int | None = None,
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """Guard a function of yours that calls the client: the same policy, as a decorator.

    Works on plain and coroutine functions alike (one implementation, dispatching on the
    function's kind) and keeps their signature. Transient and rate-limited failures are retried
    within the policy's budget; a final failure calls the category's handlers, then the
    fallback (`fallback(None, error)`), whose value is returned; without a fallback the
    classified error is raised again.

    Args:
        fn: The function, when used as a bare `@guarded`.
        policy: Retries and the time budget (`RetryPolicy()`).
        handlers: Callables per failure category, given `(None, error)`.
        fallback: Its return value replaces a final failure.
        events: Where `MessageRetrying` events go; None: nowhere.
        consumer: The label for those events.
        sleep: Blocking sleep (tests pass a fake).
        asleep: Async sleep (default: `asyncio.sleep`).
        monotonic: The budget's clock.
        seed: Seeds the back-off jitter.
    """
    cfg = Config(
        policy=policy if policy is not None else RetryPolicy(),
        events=events if events is not None else Events(),
        rng=random.Random(seed),  # noqa: S311 - jitter, not crypto
        consumer=consumer,
        handlers=handlers,
        fallback=fallback,
    )
    env = Runtime(monotonic=monotonic, sleep=sleep, asleep=asleep)

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def acall(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await arun(retrying(cfg, func, args, kwargs), env, inline=env.inline)

            return acall  # type: ignore[return-value]

        @functools.wraps(func)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return run(retrying(cfg, func, args, kwargs), env)  # type: ignore[no-any-return]

        return call

    return decorate(fn) if fn is not None else decorate


def requires_scopes(*scopes: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Refuse to call the function when the client's token lacks one of *scopes*.

    The client is the function's first argument that is a wa_auth client; its cached
    `token_health()` is checked before the call, and a missing scope raises
    `InsufficientPermissionError` naming it, without a send.

    Raises:
        TypeError: From the call, when no argument is a wa_auth client.
    """
    required = tuple(scopes)

    def find_client(args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        for value in (*args, *kwargs.values()):
            if hasattr(value, "token_health") and hasattr(value, "send_text"):
                return value
        raise TypeError("@requires_scopes needs a wa_auth client among the call's arguments")

    def check(health: TokenHealth) -> None:
        missing = [s for s in required if s not in health.scopes]
        if health.valid and missing:
            raise InsufficientPermissionError(
                f"the token {health.token_fingerprint} lacks the required scope(s) "
                f"{', '.join(missing)}: nothing was sent",
                token_fingerprint=health.token_fingerprint,
                rule="required_scopes",
            )

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def acall(*args: P.args, **kwargs: P.kwargs) -> Any:
                check(await find_client(args, kwargs).token_health())
                return await func(*args, **kwargs)

            return acall  # type: ignore[return-value]

        @functools.wraps(func)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            check(find_client(args, kwargs).token_health())
            return func(*args, **kwargs)

        return call

    return decorate
