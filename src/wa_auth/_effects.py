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
from typing import Any, ClassVar, Protocol, TypeVar

from wa_auth.errors import WhatsAppError

__all__ = ["Effect", "PolicyFlow", "Step", "arun", "init", "run"]

T = TypeVar("T")


#: Sets a field of a `Step` in its `__init__` (the class refuses `setattr` after).
init = object.__setattr__


class Step:
    """A base for effects (and the guard's config): slotted, immutable, equal by fields.

    Plain classes, not attrs: an effect is an internal carrier that lives for one step of a
    flow, and the guard's and the client's two dozen of them are created at every import (a
    one-message `wa-auth send` imports both), where attrs' generated methods cost some 8 ms.
    A subclass lists its fields in `__slots__`, annotates them, and sets each in `__init__`
    with `init(self, name, value)`.
    """

    __slots__: tuple[str, ...] = ()
    #: The fields `==` and `hash()` compare; None: every field.
    compared: ClassVar[tuple[str, ...] | None] = None
    #: The fields `repr()` shows; None: every field.
    shown: ClassVar[tuple[str, ...] | None] = None

    def _fields(self, names: tuple[str, ...] | None = None) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in (names or self.__slots__))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Step)
        return self._fields(self.compared) == other._fields(self.compared)

    def __hash__(self) -> int:
        return hash((type(self), self._fields(self.compared)))

    def __getstate__(self) -> dict[str, Any]:
        # `copy` and `pickle` rebuild a step through `__setstate__`, not the refused `setattr`.
        names = {name for cls in type(self).__mro__ for name in getattr(cls, "__slots__", ())}
        return {name: getattr(self, name) for name in sorted(names)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            init(self, name, value)

    def __repr__(self) -> str:
        names = self.shown if self.shown is not None else self.__slots__
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({fields})"


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
