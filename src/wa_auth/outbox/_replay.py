"""Replay: the outbox's waiting intents sent through a guard, written once as effects.

`replay` is a generator of effects driven by `wa_auth._effects.run` (`outbox.replay`) or
`arun` (`outbox.areplay`): it asks which tokens the provider hands out now, claims a batch of
replayable rows (a lease: no other worker sends them meanwhile), ends those past their
deadline as `expired` without a send, and hands the rest to the guard, which records
`sending` before each request and the outcome after it, exactly as for a fresh intent. It walks
the outbox once, in claim order: an intent queued again during the replay waits for the next
one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from wa_auth._delivery import EXPIRED, Delivery
from wa_auth._effects import PolicyFlow
from wa_auth.errors import OutboxError, WhatsAppError
from wa_auth.events import MessageExpired
from wa_auth.outbox._values import OutboxRow, Replay

if TYPE_CHECKING:
    from wa_auth.intents import Intent
    from wa_auth.outbox._protocol import Outbox, Replayer
    from wa_auth.providers import TokenProvider

__all__ = ["Config", "Env", "replay"]

#: `OutboxError.kind`s of a claimed intent that another worker began first: skipped, not sent.
_TAKEN = frozenset({"busy", "duplicate", "expired"})


@attrs.frozen(kw_only=True)
class Config:
    """What one replay was asked for."""

    batch: int
    limit: int | None
    include_maybe_delivered: bool
    max_age: float | None
    #: Phone numbers a claim may take (`Outbox.claim`): one when sends go one at a time.
    numbers: int = 1


class Env:
    """What the replay's effects act on: the outbox, the guard, the clock, the concurrency."""

    def __init__(
        self, outbox: Outbox, guard: Replayer, clock: Callable[[], float], concurrency: int = 1
    ) -> None:
        self.outbox = outbox
        self.guard = guard
        self.clock = clock
        self.concurrency = concurrency


def _providers(provider: Any) -> list[TokenProvider]:
    """The providers a routing provider chooses among (and its default), or the provider."""
    routes = getattr(provider, "routes", None)
    found: list[Any] = list(routes.values()) if isinstance(routes, Mapping) else []
    if hasattr(provider, "provider_for"):
        with contextlib.suppress(WhatsAppError):  # no default route
            found.append(provider.provider_for(None))
    else:
        found.append(provider)
    unique: dict[int, Any] = {id(p): p for p in found}
    return list(unique.values())


@attrs.frozen
class LiveTokens:
    """The fingerprints of the tokens the guard's client is handed out now (None: unknown)."""

    def perform(self, env: Env, /) -> frozenset[str] | None:
        live = set()
        for provider in _providers(getattr(env.guard.client, "token_provider", None)):
            try:
                live.add(provider.get_token().fingerprint)
            except WhatsAppError:
                continue  # this route cannot send now; its rows wait
        return frozenset(live) or None

    async def aperform(self, env: Env, /) -> frozenset[str] | None:
        live = set()
        for provider in _providers(getattr(env.guard.client, "token_provider", None)):
            try:
                live.add((await provider.aget_token()).fingerprint)
            except WhatsAppError:
                continue
        return frozenset(live) or None


@attrs.frozen
class Claim:
    limit: int
    after: int
    live: frozenset[str] | None
    include_maybe_delivered: bool
    numbers: int = 1

    def perform(self, env: Env, /) -> list[OutboxRow]:
        return env.outbox.claim(
            self.limit,
            after=self.after,
            live_fingerprints=self.live,
            include_maybe_delivered=self.include_maybe_delivered,
            numbers=self.numbers,
        )

    async def aperform(self, env: Env, /) -> list[OutboxRow]:
        return await env.outbox.aclaim(
            self.limit,
            after=self.after,
            live_fingerprints=self.live,
            include_maybe_delivered=self.include_maybe_delivered,
            numbers=self.numbers,
        )


@attrs.frozen
class Now:
    def perform(self, env: Env, /) -> float:
        return env.clock()

    async def aperform(self, env: Env, /) -> float:
        return env.clock()


@attrs.frozen
class Expire:
    delivery: Delivery

    def perform(self, env: Env, /) -> None:
        env.outbox.settle(self.delivery)

    async def aperform(self, env: Env, /) -> None:
        await env.outbox.asettle(self.delivery)


@attrs.frozen
class SendAll:
    """Send each intent through the guard; None for one another worker took first."""

    intents: tuple[Intent, ...]

    def perform(self, env: Env, /) -> list[Delivery | None]:
        out: list[Delivery | None] = []
        for intent in self.intents:
            try:
                out.append(env.guard.send(intent))
            except OutboxError as exc:
                if exc.kind not in _TAKEN:
                    raise
                out.append(None)
        return out

    async def aperform(self, env: Env, /) -> list[Delivery | None]:
        slots = asyncio.Semaphore(env.concurrency)

        async def one(intent: Intent) -> Delivery | None:
            async with slots:
                try:
                    return await env.guard.asend(intent)
                except OutboxError as exc:
                    if exc.kind not in _TAKEN:
                        raise
                    return None

        # Every send finishes (and settles) before an outbox failure is raised.
        results = await asyncio.gather(*(one(i) for i in self.intents), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]


def late(intent: Intent, now: float, max_age: float | None) -> str | None:
    """Return why *intent* must not go out any more (`deadline`, `max_age`), or None."""
    if intent.expired(now):
        return "deadline"
    if max_age is not None and now - intent.created_at > max_age:
        return "max_age"
    return None


def replay(cfg: Config, guard: Replayer) -> PolicyFlow[Replay]:
    """Send what is replayable through *guard*, batch by batch, in claim order."""
    live: frozenset[str] | None = yield LiveTokens()
    after = 0
    out: list[Delivery] = []
    skipped = 0
    while cfg.limit is None or len(out) + skipped < cfg.limit:
        size = cfg.batch if cfg.limit is None else min(cfg.batch, cfg.limit - len(out) - skipped)
        rows: list[OutboxRow] = yield Claim(
            size, after, live, cfg.include_maybe_delivered, cfg.numbers
        )
        if not rows:
            break
        after = rows[-1].id
        now: float = yield Now()
        sending: list[Intent] = []
        for row in rows:
            why = late(row.intent, now, cfg.max_age)
            if why is None:
                sending.append(row.intent)
                continue
            expired = Delivery(state=EXPIRED, intent=row.intent, reason=why)
            guard.events.emit(
                MessageExpired(
                    consumer=row.intent.consumer or guard.client.consumer,
                    phone_number_id=row.intent.phone_number_id,
                    idempotency_key=row.idempotency_key,
                    operation=row.intent.operation,
                    attempts=row.attempts,
                )
            )
            yield Expire(expired)
            out.append(expired)
        if sending:
            outcomes: list[Delivery | None] = yield SendAll(tuple(sending))
            for outcome in outcomes:
                if outcome is None:
                    skipped += 1
                else:
                    out.append(outcome)
    return Replay(tuple(out), skipped)
