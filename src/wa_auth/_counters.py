"""`Counters`: events counted by name and category, and calls by token, consumer and category.

Part of `wa_auth.events` (re-exported there); in a module of its own so the events module holds
only the event types, the hub and the logging subscriber.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import attrs

from wa_auth._event import Event

__all__ = ["OK", "Counters", "RotationWindow", "WindowStats"]


#: The rotating provider's events that start a new window of the rotation report: a rotation,
#: and the rollback that brings the previous token back.
_NEW_WINDOW: Final = frozenset({"auth.token_activated", "auth.rotation_rolled_back"})
#: Windows kept by the rotation report (one per token activation, the oldest dropped first).
_MAX_WINDOWS: Final = 32
#: The events of a failed attempt (`AuthFailed`, `ApiCallFailed`) and of an accepted guarded
#: send (`MessageDelivered`), by their stable names: each is one call.
_FAILURES: Final = frozenset({"auth.failed", "api.failed"})
_DELIVERED: Final = "guard.delivered"
#: The category under which a successful call is counted beside the failures.
OK: Final = "ok"


@attrs.frozen(kw_only=True)
class WindowStats:
    """Calls in one window of the rotation report: how many, and how many failed, by category."""

    calls: int = 0
    failures: Mapping[str, int] = attrs.field(factory=dict)

    @property
    def failure_rate(self) -> float | None:
        """Failed calls over all calls, or None when there were none."""
        return sum(self.failures.values()) / self.calls if self.calls else None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        return {
            "calls": self.calls,
            "failures": dict(self.failures),
            "failure_rate": self.failure_rate,
        }


@attrs.frozen(kw_only=True)
class RotationWindow:
    """One token activation and the calls before and after it: did failures increase?"""

    token_fingerprint: str | None
    previous_fingerprint: str | None
    at: float
    before: WindowStats
    after: WindowStats

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        return {
            "token_fingerprint": self.token_fingerprint,
            "previous_fingerprint": self.previous_fingerprint,
            "at": self.at,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


class _Window:
    __slots__ = ("at", "calls", "failures", "fingerprint", "previous")

    def __init__(self, fingerprint: str | None, previous: str | None, at: float) -> None:
        self.fingerprint = fingerprint
        self.previous = previous
        self.at = at
        self.calls = 0
        self.failures: Counter[str] = Counter()

    def stats(self) -> WindowStats:
        return WindowStats(calls=self.calls, failures=dict(self.failures))


class Counters:
    """Count events: by name and category, and calls by token, consumer and category.

    A call is one attempt: each failed one (`auth.failed`, `api.failed`, from
    every client) and each accepted guarded send (`guard.delivered`; an unguarded client emits
    no event for a success). From those it answers what an operator asks during an incident:
    which workflows depend on a token (`dependents`), and whether failures increased after a
    rotation (`rotation_report`, one window per `auth.token_activated`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str | None]] = Counter()
        self._calls: Counter[tuple[str | None, str | None, str]] = Counter()
        self._windows: list[_Window] = [_Window(None, None, time.time())]

    def __call__(self, event: Event) -> None:
        """Count one event."""
        category = getattr(event, "category", None)
        with self._lock:
            self._counts[(event.name, category)] += 1
            if event.name in _FAILURES:
                self._call(event, category or "unknown")
            elif event.name == _DELIVERED:
                self._call(event, OK)
            elif event.name in _NEW_WINDOW:
                if hasattr(event, "restored_fingerprint"):  # a rollback: the old token is back
                    active, previous = event.restored_fingerprint, event.token_fingerprint
                else:
                    active = event.token_fingerprint
                    previous = getattr(event, "previous_fingerprint", None)
                self._windows.append(_Window(active, previous, event.at))
                del self._windows[:-_MAX_WINDOWS]

    def _call(self, event: Event, category: str) -> None:
        self._calls[(event.token_fingerprint, event.consumer, category)] += 1
        window = self._windows[-1]
        window.calls += 1
        if category != OK:
            window.failures[category] += 1

    def get(self, name: str, category: str | None = None) -> int:
        """Return how many events of *name* (and *category*, when given) were seen."""
        with self._lock:
            if category is not None:
                return self._counts[(name, category)]
            return sum(n for (ev, _), n in self._counts.items() if ev == name)

    def snapshot(self) -> dict[str, int]:
        """Return all event counts as `{"name" or "name:category": n}`."""
        with self._lock:
            # An event's category may be None one time and a string the next (a webhook status
            # that failed or did not): sorted by text, None first.
            counts = sorted(self._counts.items(), key=lambda item: (item[0][0], item[0][1] or ""))
            return {(f"{n}:{c}" if c else n): v for (n, c), v in counts}

    def calls(
        self,
        *,
        token_fingerprint: str | None = None,
        consumer: str | None = None,
        category: str | None = None,
    ) -> int:
        """Return how many calls match every given filter (`category="ok"`: successes)."""
        with self._lock:
            return sum(
                n
                for (fp, who, cat), n in self._calls.items()
                if (token_fingerprint is None or fp == token_fingerprint)
                and (consumer is None or who == consumer)
                and (category is None or cat == category)
            )

    def by_token(self) -> dict[tuple[str | None, str | None, str], int]:
        """Return every call count by (token fingerprint, consumer, category)."""
        with self._lock:
            return dict(self._calls)

    def dependents(self, token_fingerprint: str) -> dict[str, int]:
        """Return the consumers that made calls with the token, and how many: what it takes down.

        Calls without a consumer label are counted under `""`.
        """
        found: Counter[str] = Counter()
        with self._lock:
            for (fp, who, _), n in self._calls.items():
                if fp == token_fingerprint:
                    found[who or ""] += n
        return dict(found)

    def rotation_report(self) -> list[RotationWindow]:
        """Return, for each token activation, the calls before it and after it (until the next).

        The failure rates by category show whether a rotation made things worse.
        """
        with self._lock:
            windows = list(self._windows)
            stats = [w.stats() for w in windows]
        return [
            RotationWindow(
                token_fingerprint=windows[i].fingerprint,
                previous_fingerprint=windows[i].previous,
                at=windows[i].at,
                before=stats[i - 1],
                after=stats[i],
            )
            for i in range(1, len(windows))
        ]
