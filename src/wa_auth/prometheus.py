"""`PrometheusSubscriber`: the events of clients and guards as Prometheus counters.

An `Events` subscriber (`Events(PrometheusSubscriber())`) that needs the `prometheus` extra
(`prometheus_client`, imported when a subscriber is made). It exports:

- `wa_auth_calls_total{category, consumer, phone_number_id, token_fingerprint}`: each answer
  from Meta (a failed attempt by its category, an accepted guarded send as `ok`), so a
  dashboard shows which workflows depend on which token and whether failures rose after a
  rotation;
- `wa_auth_events_total{event, category}`: every event by name (retries, queued intents,
  paused numbers, open circuits, rotations);
- gauges of what it was last shown (`observe_outbox`, `observe_health`, or the `client` and
  `outbox` handed to `exposition` / `aexposition`, which read them at scrape time): the
  outbox's rows by state and its dead letters, and each consumer's token validity and expiry.
  A gauge nothing was shown yet has no sample, so a dashboard reads "no data", never a 0.

Labels carry token fingerprints, never tokens, and never message text. The `serve` front door
exposes the registry on `/metrics`; elsewhere use `prometheus_client.generate_latest(registry)`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from wa_auth._counters import OK
from wa_auth._exports import claim as _claim
from wa_auth.errors import WhatsAppError
from wa_auth.events import ApiCallFailed, AuthFailed, Event, MessageDelivered

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from wa_auth.models import TokenHealth
    from wa_auth.outbox import OutboxStats

__all__ = ["PrometheusSubscriber"]

_HINT: Final = "PrometheusSubscriber needs prometheus_client: install the 'prometheus' extra"

_log = logging.getLogger("wa_auth.http")

T = TypeVar("T")


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
        self._gauges = _Gauges(namespace)
        self.registry.register(self._gauges)
        # Each label set's counter, found once: `labels()` takes a lock and checks its
        # arguments on every call, and a busy service counts the same few label sets.
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, event: Event) -> None:
        """Count one event."""
        category = getattr(event, "category", None)
        self._child(self._events, ("events", event.name, category or "")).inc()
        if isinstance(event, (AuthFailed, ApiCallFailed)):
            self._call(event, category or "unknown")
        elif isinstance(event, MessageDelivered):
            self._call(event, OK)

    def _call(self, event: Event, category: str) -> None:
        key = (
            "calls",
            category,
            event.consumer or "",
            getattr(event, "phone_number_id", None) or "",
            event.token_fingerprint or "",
        )
        self._child(self._calls, key).inc()

    def _child(self, counter: Any, key: tuple[str, ...]) -> Any:
        """The child of *counter* with the labels `key[1:]` (`key[0]` names the counter)."""
        child = self._children.get(key)
        if child is None:
            # Thread-safe: `labels` returns the one child of a label set, whoever asks first.
            child = self._children.setdefault(key, counter.labels(*key[1:]))
        return child

    def observe_outbox(self, stats: OutboxStats | None) -> None:
        """Show the gauges an outbox's `stats()`; None drops them (no outbox, or unreadable)."""
        with self._gauges.lock:
            self._gauges.outbox = stats

    def observe_health(self, health: TokenHealth, *, consumer: str | None = None) -> None:
        """Show the gauges *consumer*'s token health: the latest report replaces the last."""
        with self._gauges.lock:
            self._gauges.health[consumer or ""] = health

    def exposition(self, *, client: Any = None, outbox: Any = None) -> bytes:
        """Return the registry in Prometheus' text format (what `/metrics` serves).

        With a blocking *client*, its (cached) `token_health()` is read first; with an
        *outbox*, its `stats()`. A failure to read either is logged and leaves that gauge as
        it was (the health) or without a sample (the outbox): a scrape never fails for it.
        """
        health = _read(client.token_health) if client is not None else None
        stats = _read(outbox.stats) if outbox is not None else None
        return self._shown(client, health, outbox, stats)

    async def aexposition(self, *, client: Any = None, outbox: Any = None) -> bytes:
        """Return the registry's text after reading an async *client* and *outbox*.

        The same as `exposition`, with `await client.token_health()` and `outbox.astats()`.
        """
        health = await _aread(client.token_health) if client is not None else None
        stats = await _aread(outbox.astats) if outbox is not None else None
        return self._shown(client, health, outbox, stats)

    def _shown(self, client: Any, health: Any, outbox: Any, stats: Any) -> bytes:
        """Show the gauges what was read (an error read is logged), and render the registry."""
        if isinstance(health, WhatsAppError):
            _log.warning("metrics: token health not read (%s)", health.category)
        elif health is not None:
            self.observe_health(health, consumer=client.consumer)
        if isinstance(stats, WhatsAppError):
            _log.warning("metrics: outbox stats not read (%s)", stats.category)
            self.observe_outbox(None)
        elif outbox is not None:
            self.observe_outbox(stats)
        return self._generate()

    def _generate(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _read(read: Callable[[], T]) -> T | WhatsAppError:
    try:
        return read()
    except WhatsAppError as exc:
        return exc


async def _aread(read: Callable[[], Awaitable[T]]) -> T | WhatsAppError:
    try:
        return await read()
    except WhatsAppError as exc:
        return exc


class _Gauges:
    """A collector of what the subscriber was last shown: outbox rows and token health.

    Written as a collector rather than `Gauge`s so that a gauge nothing was shown yet has no
    sample at all (a `Gauge` without labels would read 0 dead letters without any outbox).
    """

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}_" if namespace else ""
        self.lock = threading.Lock()
        self.outbox: OutboxStats | None = None
        self.health: dict[str, TokenHealth] = {}

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        with self.lock:
            stats, health = self.outbox, dict(self.health)
        p = self.prefix
        if stats is not None:
            rows = GaugeMetricFamily(
                f"{p}outbox_rows", "Outbox rows by state, when last read.", labels=["state"]
            )
            for state, count in sorted(stats.by_state.items()):
                rows.add_metric([state], float(count))
            yield rows
            yield GaugeMetricFamily(
                f"{p}outbox_dead_letters",
                "Failed outbox rows no replay sends (invalid_request, unknown, ...).",
                value=float(stats.dead_letters),
            )
            if stats.oldest_waiting is not None:
                yield GaugeMetricFamily(
                    f"{p}outbox_oldest_waiting_timestamp_seconds",
                    "created_at of the oldest pending or queued intent (unix seconds).",
                    value=float(stats.oldest_waiting),
                )
        if health:
            labels = ["consumer", "token_fingerprint"]
            valid = GaugeMetricFamily(
                f"{p}token_valid", "1 when Meta called the token valid, else 0.", labels=labels
            )
            expiry = GaugeMetricFamily(
                f"{p}token_expiry_timestamp_seconds",
                "When the token expires (unix seconds); no sample for a token that never does.",
                labels=labels,
            )
            for consumer, report in sorted(health.items()):
                key = [consumer, report.token_fingerprint or ""]
                valid.add_metric(key, 1.0 if report.valid else 0.0)
                if report.expires_at is not None:
                    expiry.add_metric(key, float(report.expires_at))
            yield valid
            yield expiry


_claim(__name__, globals())
