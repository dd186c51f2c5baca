"""The guard's values: its retry policy and the decision it makes, `Handlers`, the `Config`.

Plain values, no I/O; `Delivery`, what a guard returns, is `wa_auth._delivery`'s.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, Final

import attrs

from wa_auth import _table
from wa_auth._effects import Step, init
from wa_auth._hub import Events
from wa_auth.errors import ConfigurationError, WhatsAppError
from wa_auth.intents import Intent

__all__ = [
    "LATER_CATEGORIES",
    "PAIR_LIMIT_CODES",
    "Config",
    "Decision",
    "Handler",
    "Handlers",
    "RetryPolicy",
    "decide",
]


#: The categories a retry can fix; every other failure is final for this intent.
_RETRYABLE: Final = frozenset({_table.TRANSIENT, _table.RATE_LIMITED})
#: The failures an outbox holds for later (the number or Meta will recover).
LATER_CATEGORIES: Final = frozenset({_table.TRANSIENT, _table.RATE_LIMITED, _table.ACCOUNT_STATE})
#: Limits per (number, recipient), not per number: the pair rate limit (131056) and the
#: per-user marketing cap (131049); their Retry-After holds back that recipient only.
PAIR_LIMIT_CODES: Final = frozenset({131056, 131049})


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a guard retries, how long it may take, and when it stops a number's sends.

    Args:
        max_attempts: Sends of one intent at most (each error's own `max_attempts` may lower
            it: Meta's 131056 pair limit allows 3).
        budget: Seconds one intent may take, waits included: a bound on the wall time of
            the send, whose every call to Meta ends by it. 30 s keeps a guarded call inside
            an n8n node's or an HTTP handler's patience; a wait longer than what is left (the
            hours-long 131048/131049 caps, 80007's minutes) queues the intent instead. 0
            leaves no time for waits: one attempt, bounded by the client's deadline.
        backoff: The first retry's back-off ceiling; it doubles per attempt (full jitter: a
            random delay up to the ceiling, so a fleet does not retry in lockstep).
        max_backoff: The ceiling's cap.
        retry_maybe_delivered: Retry a send whose answer was lost. Off by default: Meta does not
            deduplicate sends, so the retry can deliver the message twice.
        circuit_threshold: Consecutive transient failures of one number that open its circuit.
        circuit_cooldown: Seconds an open circuit holds the number's sends; it doubles each
            time the half-open probe fails, up to *max_circuit_cooldown*.
        max_circuit_cooldown: The cool-down's cap.
        probe_interval: Seconds between probes (`get_phone_number`) of a paused number.
    """

    max_attempts: int = 4
    budget: float = 30.0
    backoff: float = 0.5
    max_backoff: float = 8.0
    retry_maybe_delivered: bool = False
    circuit_threshold: int = 5
    circuit_cooldown: float = 30.0
    max_circuit_cooldown: float = 600.0
    probe_interval: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1 or self.circuit_threshold < 1:
            raise ConfigurationError("max_attempts and circuit_threshold must be at least 1")
        for name in ("budget", "backoff", "max_backoff", "circuit_cooldown", "probe_interval"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(
                    f"{name} must be a finite number of seconds, got {value!r}"
                )


class Decision(Step):
    """What the policy does after a failure: retry after *delay*, or stop."""

    __slots__ = ("delay", "later", "retry")
    retry: bool
    delay: float
    #: When stopping: seconds until a retry could work (Meta's retry_after), if known.
    later: float | None

    def __init__(self, retry: bool, delay: float = 0.0, later: float | None = None) -> None:
        init(self, "retry", retry)
        init(self, "delay", delay)
        init(self, "later", later)


def decide(
    policy: RetryPolicy, error: WhatsAppError, attempt: int, elapsed: float, rng: random.Random
) -> Decision:
    """Decide whether attempt *attempt* (1-based) that failed with *error* is retried.

    Pure: the policy's property tests call it with a seeded generator and no clock.
    """
    later = error.retry_after
    if error.category not in _RETRYABLE:
        return Decision(retry=False, later=later)
    maybe = bool(getattr(error, "maybe_delivered", False))
    if maybe and not policy.retry_maybe_delivered:
        return Decision(retry=False, later=later)
    if not error.retryable and not maybe:
        return Decision(retry=False, later=later)
    limit = policy.max_attempts if maybe else min(policy.max_attempts, max(error.max_attempts, 1))
    if attempt >= limit:
        return Decision(retry=False, later=later)
    ceiling = min(policy.max_backoff, policy.backoff * 2.0 ** (attempt - 1))
    delay = rng.uniform(0.0, ceiling)
    if later is not None:
        delay = max(delay, later)
    if elapsed + delay > policy.budget:
        return Decision(retry=False, later=delay)
    return Decision(retry=True, delay=delay)


Handler = Callable[[Intent | None, WhatsAppError], Any]


@attrs.frozen(kw_only=True)
class Handlers:
    """Callables per failure category, for alerts; each is given the intent and the error.

    A handler may be a plain function or a coroutine function. It is called once per final
    failure (not per retry), after the retries, and a handler that raises is logged and never
    breaks the send. *on_auth* is called for every token, permission and account failure, after
    the category's own handler.
    """

    on_token_expired: Handler | None = None
    on_token_revoked: Handler | None = None
    on_permission: Handler | None = None
    on_account_state: Handler | None = None
    on_rate_limited: Handler | None = None
    on_transient: Handler | None = None
    on_invalid_request: Handler | None = None
    on_auth: Handler | None = None

    def for_category(self, category: str) -> list[Handler]:
        """Return the handlers to call for a failure of *category*, in order."""
        own = {
            _table.TOKEN_EXPIRED: self.on_token_expired,
            _table.TOKEN_REVOKED: self.on_token_revoked,
            _table.INSUFFICIENT_PERMISSION: self.on_permission,
            _table.ACCOUNT_STATE: self.on_account_state,
            _table.RATE_LIMITED: self.on_rate_limited,
            _table.TRANSIENT: self.on_transient,
            _table.INVALID_REQUEST: self.on_invalid_request,
        }.get(category)
        found = [h for h in (own,) if h is not None]
        if category in _table.AUTH_CATEGORIES and self.on_auth is not None:
            found.append(self.on_auth)
        return found


class Config(Step):
    """What the policy (`_flows`) needs to know about its guard: decisions, no I/O objects.

    A plain `Step` class (an internal carrier, made once per guard), not an attrs class
    created at every import of the guard.
    """

    __slots__ = (
        "consumer",
        "default_route",
        "events",
        "fallback",
        "handlers",
        "limiter",
        "look",
        "outbox",
        "policy",
        "required_scopes",
        "rng",
    )
    #: A random generator is not a value; the `Look` is made from *default_route*.
    compared = tuple(sorted(set(__slots__) - {"rng", "look"}))
    shown = tuple(name for name in __slots__ if name != "look")
    policy: RetryPolicy
    events: Events
    rng: random.Random
    default_route: str | None
    consumer: str | None
    limiter: bool
    outbox: bool
    handlers: Handlers | None
    fallback: Callable[..., Any] | None
    required_scopes: tuple[str, ...]
    #: The guard's `Look` at *default_route* (`_effects`, above this module): the first step
    #: of its intents, made once (it holds no state); None: one is made per intent.
    look: Any

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        events: Events,
        rng: random.Random,
        default_route: str | None = None,
        consumer: str | None = None,
        limiter: bool = False,
        outbox: bool = False,
        handlers: Handlers | None = None,
        fallback: Callable[..., Any] | None = None,
        required_scopes: tuple[str, ...] = (),
        look: Any = None,
    ) -> None:
        init(self, "policy", policy)
        init(self, "events", events)
        init(self, "rng", rng)
        init(self, "default_route", default_route)
        init(self, "consumer", consumer)
        init(self, "limiter", limiter)
        init(self, "outbox", outbox)
        init(self, "handlers", handlers)
        init(self, "fallback", fallback)
        init(self, "required_scopes", required_scopes)
        init(self, "look", look)
