"""`Event`, the base of every event type, and `Subscriber`, what an `Events` hub calls.

Imports nothing from the package, so both the event types (`wa_auth.events`) and the counters
(`wa_auth._counters`) build on it from the top of their modules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

__all__ = ["Event", "Subscriber"]


@attrs.frozen(kw_only=True)
class Event:
    """Something worth knowing happened; `name` is stable, for routing and dashboards."""

    name: ClassVar[str] = "event"
    #: `"auth"` for token/credential events, `"http"` for other API outcomes.
    kind: ClassVar[str] = "http"
    #: The level `LoggingSubscriber` logs it at: WARNING for a failed call, INFO otherwise.
    level: ClassVar[int] = logging.INFO

    consumer: str | None = None
    token_fingerprint: str | None = None
    at: float = attrs.field(factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data, with the event's name."""
        # Every field is a plain value: a shallow copy, without asdict's recursion.
        data = {f.name: getattr(self, f.name) for f in attrs.fields(type(self))}
        data["event"] = self.name
        return data


#: What a hub hands each event to: any callable of one event.
Subscriber = Callable[[Event], None]
