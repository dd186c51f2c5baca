"""`PrometheusSubscriber`: the events of clients and guards as Prometheus counters.

An `Events` subscriber (`Events(PrometheusSubscriber())`) that needs the `prometheus` extra
(`prometheus_client`, imported when a subscriber is made). It exports:

- `wa_auth_calls_total{category, consumer, phone_number_id, token_fingerprint}`: each answer
  from Meta (a failed attempt by its category, an accepted guarded send as `ok`), so a
  dashboard shows which workflows depend on which token and whether failures rose after a
  rotation;
- `wa_auth_events_total{event, category}`: every event by name (retries, queued intents,
  paused numbers, open circuits, rotations).

Labels carry token fingerprints, never tokens, and never message text. The `serve` front door
exposes the registry on `/metrics`; elsewhere use `prometheus_client.generate_latest(registry)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from wa_auth._counters import OK
from wa_auth._exports import claim as _claim
from wa_auth.events import ApiCallFailed, AuthFailed, Event, MessageDelivered

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusSubscriber"]

_HINT: Final = "PrometheusSubscriber needs prometheus_client: install the 'prometheus' extra"


class PrometheusSubscriber:
    """Count events into Prometheus counters (see the module docstring for the series).

    Args:
        registry: The `prometheus_client.CollectorRegistry` to register with; default: a new
            one (see `registry`), so several subscribers never collide.
        namespace: The metric name prefix.

    Raises:
        ImportError: prometheus_client is not installed (the message names the extra).
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "wa_auth"
    ) -> None:
        try:
            import prometheus_client
        except ImportError as exc:
            raise ImportError(_HINT, name="prometheus_client") from exc
        self.registry: CollectorRegistry = (
            registry if registry is not None else prometheus_client.CollectorRegistry()
        )
        self._calls: Any = prometheus_client.Counter(
            "calls",
            "Answers from Meta: failed attempts by category, accepted guarded sends as ok.",
            ["category", "consumer", "phone_number_id", "token_fingerprint"],
            namespace=namespace,
            registry=self.registry,
        )
        self._events: Any = prometheus_client.Counter(
            "events",
            "wa_auth events by name and category.",
            ["event", "category"],
            namespace=namespace,
            registry=self.registry,
        )

    def __call__(self, event: Event) -> None:
        """Count one event."""
        category = getattr(event, "category", None)
        self._events.labels(event.name, category or "").inc()
        if isinstance(event, (AuthFailed, ApiCallFailed)):
            self._call(event, category or "unknown")
        elif isinstance(event, MessageDelivered):
            self._call(event, OK)

    def _call(self, event: Event, category: str) -> None:
        self._calls.labels(
            category,
            event.consumer or "",
            getattr(event, "phone_number_id", None) or "",
            event.token_fingerprint or "",
        ).inc()

    def exposition(self) -> bytes:
        """Return the registry in Prometheus' text format (what `/metrics` serves)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


_claim(__name__, globals())
