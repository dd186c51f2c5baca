"""What both outboxes share: the argument checks, and replay written once over their methods."""

from __future__ import annotations

import builtins
import json
import math
import os
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING

import attrs

from wa_auth._delivery import DELIVERED, EXPIRED
from wa_auth._effects import arun, run
from wa_auth.errors import ConfigurationError, OutboxError, RequestValidationError
from wa_auth.intents import Intent
from wa_auth.outbox import _replay
from wa_auth.outbox._values import (
    DEFAULT_BATCH,
    MARKABLE_STATES,
    OUTBOX_STATES,
    OutboxRow,
    Replay,
)

if TYPE_CHECKING:
    from wa_auth.outbox._protocol import Replayer

__all__ = [
    "Replaying",
    "check_after",
    "check_ages",
    "check_count",
    "check_filter",
    "check_intent",
    "check_listing",
    "check_markable",
    "check_seconds",
    "list_job",
    "with_sender",
    "write_lines",
]


def check_seconds(name: str, value: object, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")
    return float(value)


def check_count(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestValidationError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_after(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestValidationError(f"after must be a row id (an integer >= 0), got {value!r}")
    return value


def check_intent(value: object) -> Intent:
    if not isinstance(value, Intent):
        raise TypeError(f"an outbox holds Intent values, got {type(value).__name__}")
    return value


def check_markable(state: object) -> str:
    if state not in MARKABLE_STATES:
        raise RequestValidationError(
            f"mark() sets one of {', '.join(MARKABLE_STATES)}, got {state!r}"
        )
    return str(state)


def check_filter(name: str, value: object, allowed: tuple[str, ...] | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        known = f"one of {', '.join(allowed)}" if allowed else "a string"
        raise RequestValidationError(f"{name} must be {known}, got {value!r}")
    return value


def check_listing(
    state: object, category: object, consumer: object, limit: object
) -> tuple[str | None, str | None, str | None, int | None]:
    """The filters of every outbox's `list`, checked once: state, category, consumer, limit."""
    return (
        check_filter("state", state, OUTBOX_STATES),
        check_filter("category", category),
        check_filter("consumer", consumer),
        check_count("limit", limit, optional=True),
    )


def list_job(
    select: Callable[..., builtins.list[OutboxRow]],
    state: object,
    category: object,
    consumer: object,
    dead_letters: bool,
    limit: object,
) -> Callable[[object], builtins.list[OutboxRow]]:
    """A database outbox's `list` as a job of one connection.

    The filters are checked here, before the job is queued; *select* is the jobs' own.
    """
    state, category, consumer, most = check_listing(state, category, consumer, limit)
    return lambda conn: select(
        conn,
        state=state,
        category=category,
        consumer=consumer,
        dead_letters=bool(dead_letters),
        limit=most,
    )


def check_ages(delivered: object, expired: object, now: float) -> list[tuple[str, float]]:
    pairs: list[tuple[str, float]] = []
    for state, age in ((DELIVERED, delivered), (EXPIRED, expired)):
        if age is None:
            continue
        if isinstance(age, bool) or not isinstance(age, (int, float)) or not age >= 0:
            raise RequestValidationError(f"{state}_older_than must be seconds >= 0, got {age!r}")
        try:
            seconds = float(age)
        except OverflowError:  # an int past a float's range: older than anything can be
            seconds = math.inf
        pairs.append((state, now - seconds))
    if not pairs:
        raise RequestValidationError(
            "purge() needs delivered_older_than= or expired_older_than= (seconds)"
        )
    return pairs


class Replaying:
    """Replay and the dead-letter export, written once over the protocol's methods."""

    clock: Callable[[], float]
    max_age: float | None

    def _replay_config(
        self,
        guard: Replayer,
        include_maybe_delivered: bool,
        limit: int | None,
        batch: int,
        numbers: int = 1,
    ) -> _replay.Config:
        if getattr(guard, "outbox", None) is not self:
            raise ConfigurationError(
                "replay() needs a guard made with outbox= this outbox: it records each send there"
            )
        return _replay.Config(
            batch=check_count("batch", batch) or DEFAULT_BATCH,
            limit=check_count("limit", limit, optional=True),
            include_maybe_delivered=bool(include_maybe_delivered),
            max_age=self.max_age,
            numbers=numbers,
        )

    def replay(
        self,
        guard: Replayer,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> Replay:
        """Send what is replayable through *guard*, one at a time, and report it.

        Replayable: `pending`; `queued` past its `not_before`; `failed` for want of a token,
        or for a dead token once the provider hands out one with another fingerprint;
        `maybe_delivered` only with *include_maybe_delivered* (Meta may have it already).
        Never: dead letters (`invalid_request` and other failures no wait fixes) and rows
        another worker holds. An intent past its `not_after`, or older than the outbox's
        `max_age`, is settled `expired` and never sent.

        Args:
            guard: The guard to send with; its `outbox` must be this outbox.
            include_maybe_delivered: Send `maybe_delivered` rows again (may duplicate them).
            limit: Replay at most this many intents.
            batch: Rows claimed (leased) at a time.

        Raises:
            ConfigurationError: The guard's outbox is another one.
            OutboxError: The file cannot be used.
        """
        cfg = self._replay_config(guard, include_maybe_delivered, limit, batch)
        try:
            return run(_replay.replay(cfg, guard), _replay.Env(self, guard, self.clock))  # type: ignore[arg-type]
        finally:
            self.release()

    async def areplay(
        self,
        guard: Replayer,
        *,
        include_maybe_delivered: bool = False,
        limit: int | None = None,
        batch: int = DEFAULT_BATCH,
        concurrency: int = 16,
    ) -> Replay:
        """Send what is replayable through *guard*, *concurrency* at a time (see `replay`).

        Raises:
            ConfigurationError: The guard's outbox is another one.
            OutboxError: The file cannot be used.
        """
        slots = check_count("concurrency", concurrency) or 1
        # A batch's tail runs below *concurrency*: claim enough to keep that tail short, from
        # as many numbers as sends in flight (a claim takes one number's rows at a time else).
        cfg = self._replay_config(
            guard, include_maybe_delivered, limit, max(batch, 8 * slots), numbers=slots
        )
        env = _replay.Env(self, guard, self.clock, slots)  # type: ignore[arg-type]
        try:
            return await arun(_replay.replay(cfg, guard), env)
        finally:
            await self.arelease()

    def release(self) -> int:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    async def arelease(self) -> int:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    def list(
        self,
        state: str | None = None,
        *,
        category: str | None = None,
        consumer: str | None = None,
        dead_letters: bool = False,
        limit: int | None = None,
    ) -> builtins.list[OutboxRow]:  # pragma: no cover - each outbox defines it
        raise NotImplementedError

    def dead_letters(self) -> builtins.list[OutboxRow]:
        """Return the failed rows no replay sends, for an operator (`invalid_request`, ...)."""
        return self.list(dead_letters=True)

    def export_dead_letters(self, dest: str | os.PathLike[str] | IO[str]) -> int:
        """Write the dead letters as JSON lines (one `OutboxRow.to_dict()` each); return how many.

        Args:
            dest: A text stream, or a path to create (an existing file is not overwritten).

        Raises:
            OutboxError: *dest* exists (`exists`) or cannot be written (`unwritable`).
        """
        rows = self.dead_letters()
        if not isinstance(dest, (str, os.PathLike)):
            write_lines(dest, rows)
            return len(rows)
        path = os.fspath(dest)
        try:
            with open(path, "x", encoding="utf-8") as out:  # noqa: PTH123 - a str or PathLike
                write_lines(out, rows)
        except FileExistsError:
            raise OutboxError(
                f"dead-letter export {path} already exists: not overwritten",
                path=path,
                kind="exists",
            ) from None
        except OSError as exc:
            raise OutboxError(
                f"dead-letter export {path} cannot be written: {exc.strerror}",
                path=path,
                kind="unwritable",
            ) from exc
        return len(rows)


def with_sender(intents: Iterable[Intent], phone_number_id: str | None) -> builtins.list[Intent]:
    """Return *intents*, each without a sender given *phone_number_id* (the default one).

    What a front door enqueues records the number it was meant for: a replay sends it from
    there, not from whatever number is configured then.
    """
    if phone_number_id is None:
        return builtins.list(intents)
    return [
        i if i.phone_number_id is not None else attrs.evolve(i, phone_number_id=phone_number_id)
        for i in intents
    ]


def write_lines(out: IO[str], rows: Iterable[OutboxRow]) -> None:
    for row in rows:
        out.write(json.dumps(row.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")
