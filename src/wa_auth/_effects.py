"""The generic pair of drivers for multi-step policies written once as generators of effects.

A policy (the guard's retries, pacing and pauses) is a generator that yields effects and
receives their results. Each effect knows how to perform itself blocking (`perform`) and on
the running event loop (`aperform`), against an *env* (the guard) that holds the client, the
stores and the clock. `run` and `arun` are the only two interpreters, so the policy exists once
and a test can drive it with `next()` / `.send()` and a fake clock, without sleeping.

An exception of the *catch* classes (`WhatsAppError` by default) raised by an effect is
thrown into the flow, where the policy decides; anything else is a bug and propagates, and the
flow is closed in `finally` either way. The guards, the providers, the outbox's replay and the
CLI's check all run on this pair. (The client's own request flows have a faster, specialised
pair in `wa_auth._client._shell`.)
"""

from __future__ import annotations

from collections.abc import Container, Generator
from typing import Any, Protocol, TypeVar

from wa_auth.errors import WhatsAppError

__all__ = ["Effect", "PolicyFlow", "arun", "run"]

T = TypeVar("T")


class Effect(Protocol):
    """One step a policy asks its driver to perform."""

    def perform(self, env: Any, /) -> Any:
        """Perform the step with blocking calls and return its result."""
        ...

    async def aperform(self, env: Any, /) -> Any:
        """Perform the step on the running event loop and return its result."""
        ...


PolicyFlow = Generator[Effect, Any, T]


def run(
    flow: PolicyFlow[T], env: Any, *, catch: tuple[type[BaseException], ...] = (WhatsAppError,)
) -> T:
    """Run *flow* to completion, performing its effects with blocking calls."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value = error = None
            try:
                value = effect.perform(env)
            except catch as exc:
                error = exc
    finally:
        value = error = None  # a raised error's traceback holds this frame: no cycle
        flow.close()


async def arun(
    flow: PolicyFlow[T],
    env: Any,
    *,
    catch: tuple[type[BaseException], ...] = (WhatsAppError,),
    inline: Container[type] = (),
) -> T:
    """Run *flow* to completion on the running event loop.

    Effects of the *inline* types do no I/O in this *env* (a clock read, an in-memory store):
    they are performed blocking, without a coroutine per step.
    """
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value = error = None
            try:
                if type(effect) in inline:
                    value = effect.perform(env)
                else:
                    value = await effect.aperform(env)
            except catch as exc:
                error = exc
    finally:
        value = error = None
        flow.close()
