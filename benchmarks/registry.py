"""The registry of benchmark variants: one decorated function per row of the table.

A capability adds its rows by dropping a module into `benchmarks/cases/` with functions
decorated by `@variant(...)`; the runner discovers every module there, runs each variant in a
fresh subprocess, and compares it with its *baseline* variant at the same concurrency.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Concurrency levels of the async rows (messages in flight).
ASYNC_LEVELS = (1, 16, 64, 256)


@dataclass(frozen=True)
class Ctx:
    """What a variant function gets: where the peer is and how much work to do."""

    base_url: str
    n: int
    concurrency: int
    phone_id: str
    expired_phone_id: str
    api_version: str
    to: str = "15551234567"


@dataclass(frozen=True)
class Goal:
    """A target from issue 5: a ratio against the baseline, or an absolute ceiling.

    *kind* is `min_ratio` (throughput: variant / baseline >= value), `max_ratio` (memory:
    variant / baseline <= value; micro rows with a baseline: time / baseline time) or `max_us`
    (micro: microseconds per operation <= value).
    """

    kind: str
    value: float

    def met(self, ratio: float | None, us: float | None) -> bool | None:
        """Return whether the goal is met, or None when the figures are missing."""
        if self.kind == "min_ratio":
            return None if ratio is None else ratio >= self.value
        if self.kind == "max_ratio":
            return None if ratio is None else ratio <= self.value
        return None if us is None else us <= self.value

    def __str__(self) -> str:
        return {"min_ratio": ">= {}x", "max_ratio": "<= {}x", "max_us": "<= {} us"}[
            self.kind
        ].format(self.value)


@dataclass(frozen=True)
class Variant:
    """One row family of the table.

    *kind* is `throughput` (messages per second and CPU us per message), `micro` (us per
    operation, in-process), `memory` (peak RSS of the worker) or `cpu` (a throughput row whose
    ratio is its CPU us per message over its baseline's: a `max_ratio` goal).
    """

    name: str
    label: str
    group: str
    kind: str
    fn: Callable[[Ctx], dict[str, Any]]
    concurrency: tuple[int, ...] = (1,)
    baseline: str | None = None
    goal: Goal | None = None
    requires: tuple[str, ...] = ()
    #: Work size relative to the run's N (heyoo opens a connection per message: 0.5).
    scale: float = 1.0
    #: The row's own work size at the full profile (scaled down with --quick, --smoke or a
    #: smaller --n): the fleet rows, bound by a peer's latency, not by n.
    fixed_n: int | None = None
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


REGISTRY: dict[str, Variant] = {}


def variant(
    name: str,
    *,
    label: str,
    group: str,
    kind: str = "throughput",
    concurrency: tuple[int, ...] = (1,),
    baseline: str | None = None,
    goal: Goal | None = None,
    requires: tuple[str, ...] = (),
    scale: float = 1.0,
    fixed_n: int | None = None,
    notes: str = "",
) -> Callable[[Callable[[Ctx], dict[str, Any]]], Callable[[Ctx], dict[str, Any]]]:
    """Register the decorated function as the variant *name*."""

    def register(fn: Callable[[Ctx], dict[str, Any]]) -> Callable[[Ctx], dict[str, Any]]:
        if name in REGISTRY:
            raise ValueError(f"duplicate benchmark variant {name!r}")
        REGISTRY[name] = Variant(
            name=name,
            label=label,
            group=group,
            kind=kind,
            fn=fn,
            concurrency=concurrency,
            baseline=baseline,
            goal=goal,
            requires=requires,
            scale=scale,
            fixed_n=fixed_n,
            notes=notes,
        )
        return fn

    return register


def discover() -> dict[str, Variant]:
    """Import every module of `benchmarks/cases/` and return the registry."""
    import cases

    for info in sorted(pkgutil.iter_modules(cases.__path__), key=lambda i: i.name):
        importlib.import_module(f"cases.{info.name}")
    return REGISTRY
