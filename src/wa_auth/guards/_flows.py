"""The guard's policy, written once as generators of effects (driven by `wa_auth._effects`).

`deliver` is the whole guarded send of one intent: its deadline, the number's pause and
circuit, the required scopes, pacing, the send, what a failure teaches (pause the number,
penalise the limiter, count towards the circuit), the retry decision, and the outcome (handlers
once, the fallback, the outbox, one event). `retrying` is the decorator's smaller policy around
a user's own function. Neither does I/O: every step is an effect, so both run blocking or on an
event loop, and a test drives them with a fake clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from wa_auth import _table
from wa_auth._delivery import Delivery
from wa_auth._effects import PolicyFlow
from wa_auth.errors import (
    InsufficientPermissionError,
    WhatsAppError,
)
from wa_auth.guards._effects import (
    NO_FALLBACK,
    NOW,
    Acquire,
    Call,
    ClearPause,
    Fallback,
    GetPause,
    Handle,
    Health,
    Held,
    Look,
    Penalize,
    Probe,
    PutPause,
    Sleep,
    sending,
)
from wa_auth.guards._outcomes import (
    begin,
    close_circuit,
    delivered,
    delivery_of,
    event_fields,
    expired,
    final,
    fingerprint_of,
    held_back,
)
from wa_auth.guards._values import PAIR_LIMIT_CODES, Config, decide
from wa_auth.intents import Intent
from wa_auth.pacing import ACCOUNT, CIRCUIT, Pause

if TYPE_CHECKING:
    from wa_auth.models import PhoneNumber, SendResult, TokenHealth

__all__ = ["COUNTING", "NO_CIRCUIT", "PROBE", "Config", "deliver", "learn", "retrying"]

#: What a number's circuit is to one intent (see `_held`).
NO_CIRCUIT: Final = "none"
COUNTING: Final = "counting"
PROBE: Final = "probe"

_log = logging.getLogger("wa_auth.guards")


def deliver(cfg: Config, intent: Intent) -> PolicyFlow[Delivery]:
    """The whole guarded send of one intent, as effects.

    The budget bounds every call to Meta it makes (the probe, the health check, each send):
    each ends by the budget's end, on the guard's interval clock. The common intent (its
    number neither paused nor counting failures, no deadline, no scopes, no pacing, no
    outbox) takes two steps: `Look` (the clocks and the number's records) and the send.

    Then it sends, and retries while the policy and the budget allow (`_failed` learns from
    each failure), in this one generator: a second one for the attempts cost every message a
    generator and its resumptions. The clock is read afresh before each send where a reading
    decides something (the intent's deadline, the time left for pacing): a probe or the
    outbox took some.
    """
    route = intent.phone_number_id or cfg.default_route
    look = cfg.look if route == cfg.default_route and cfg.look is not None else Look(route)
    wall, start, pause, circuit_record = yield look
    budget = cfg.policy.budget
    # A zero budget leaves no time for waits (one attempt, no retries), not none for the send:
    # that one attempt is bounded by the client's own deadline.
    until = start + budget if budget > 0 else math.inf
    if intent.not_after is not None and intent.expired(wall):
        return (yield from expired(cfg, intent, route, 0))
    circuit = NO_CIRCUIT  # what the number's circuit is to this intent (`_held`)
    if cfg.required_scopes or cfg.outbox or pause is not None or circuit_record is not None:
        ready = yield from _ready(cfg, intent, route, wall, until, pause, circuit_record)
        if isinstance(ready, Delivery):
            return ready
        intent, circuit = ready
    attempts = 0
    mono = start
    while True:
        if attempts or intent.not_after is not None or cfg.limiter:
            wall, mono = yield NOW
        # else: no deadline to check, no pacing: nothing reads a second reading
        if intent.not_after is not None and intent.expired(wall):
            yield from _probe_unanswered(route, circuit)
            return (yield from expired(cfg, intent, route, attempts))
        if cfg.limiter and route is not None:
            queued = yield from _pace(cfg, intent, route, attempts, budget - (mono - start))
            if queued is not None:
                yield from _probe_unanswered(route, circuit)
                return queued
        attempts += 1
        error = None
        try:
            result: SendResult = yield sending(intent, until)
        except WhatsAppError as exc:
            error = exc
            error.__traceback__ = None  # kept in the Delivery: no frames, no cycle
        if error is not None:  # learnt from outside the handler: no exception context
            retry = yield from _failed(cfg, intent, route, error, attempts, start, circuit)
            if isinstance(retry, Delivery):
                return retry
            circuit = retry
            continue
        if circuit == NO_CIRCUIT and not cfg.outbox:  # nothing to record: no generator
            return delivery_of(cfg, intent, route, result, attempts)
        clear = circuit != NO_CIRCUIT
        return (yield from delivered(cfg, intent, route, result, attempts, circuit=clear))


def _ready(
    cfg: Config,
    intent: Intent,
    route: str | None,
    wall: float,
    until: float,
    pause: Pause | None,
    circuit_record: Pause | None,
) -> PolicyFlow[Delivery | tuple[Intent, str]]:
    """What comes before the first send when there is more to do than send.

    The number's pause and circuit (`_held`), the required scopes, the outbox's `begin`.
    Return the Delivery of an intent held back, else the intent to send (the outbox's own,
    when it holds one) and what the number's circuit is to it.
    """
    circuit = NO_CIRCUIT
    if route is not None and (pause is not None or circuit_record is not None):
        held = yield from _held(cfg, intent, route, wall, until, pause, circuit_record)
        if isinstance(held, Delivery):
            return held
        circuit = held
    if cfg.required_scopes:
        refused = yield from _scopes(cfg, until)
        if refused is not None:
            return (yield from final(cfg, intent, route, refused, 0, None))
    if cfg.outbox:
        begun = yield from begin(intent, route)
        if isinstance(begun, Delivery):
            return begun
        intent = begun
    return intent, circuit


def _failed(
    cfg: Config,
    intent: Intent,
    route: str | None,
    error: WhatsAppError,
    attempts: int,
    start: float,
    circuit: str,
) -> PolicyFlow[Delivery | str]:
    """Learn from a failed send; wait and return the circuit to send again with, to retry.

    Otherwise return the intent's Delivery (queued, failed, or the fallback's). *start* is the
    interval clock's reading when the intent started, *circuit* what the number's circuit was
    to the send.
    """
    wall, mono = yield NOW
    if error.category == _table.TRANSIENT:
        circuit = PROBE if circuit == PROBE else COUNTING
    elif circuit != NO_CIRCUIT and route is not None and _answered(error):
        # Meta answered, if not with a success: it is up, whatever the circuit counted.
        yield from close_circuit(cfg, intent, route)
        circuit = NO_CIRCUIT
    stop = yield from learn(cfg, intent.consumer, intent.to, route, error, wall)
    decision = decide(cfg.policy, error, attempts, mono - start, cfg.rng)
    if stop is None and decision.retry:
        from wa_auth.events import MessageRetrying  # an event class loads when first emitted

        cfg.events.emit(
            MessageRetrying(
                **event_fields(cfg, intent, route, attempts),
                token_fingerprint=fingerprint_of(error),
                category=error.category,
                delay=decision.delay,
                code=getattr(error, "code", None),
            )
        )
        yield Sleep(decision.delay)
        return circuit
    later = stop if stop is not None else decision.later
    not_before = None if later is None else wall + later
    return (yield from final(cfg, intent, route, error, attempts, not_before))


def _answered(error: WhatsAppError) -> bool:
    """True when the error is an answer from Meta (not a lost or refused connection)."""
    return getattr(error, "http_status", None) is not None


def _probe_unanswered(route: str | None, circuit: str) -> PolicyFlow[None]:
    """A half-open probe that never reached Meta (deadline, pacing) hands the probe on."""
    if route is None or circuit != PROBE:
        return
    record: Pause | None = yield GetPause(CIRCUIT, route)
    if record is not None and record.probing:
        yield PutPause(attrs.evolve(record, probing=False))


def _pace(
    cfg: Config, intent: Intent, route: str, attempts: int, remaining: float
) -> PolicyFlow[Delivery | None]:
    """Wait for the limiter's slot, or return the queued Delivery when it is past the budget.

    A rate limit is the number's (or the pair's), not this intent's: when Meta's retry_after
    put a hold on it while this intent waited for its slot, the slot is void and the intent
    takes a new one after the hold, without a request and without spending an attempt. So the
    intents waiting on a rate-limited number do not each ask Meta again. Every round waits, and
    the waits count against *remaining*, so the loop ends even with a clock that stands still.
    """
    while True:
        # A budget already spent (0, or the clock moved on) still allows a send that needs no
        # wait: `budget=0` means one attempt, not none.
        remaining = max(remaining, 0.0)
        wait = yield Acquire(route, intent.to, remaining)
        if wait is None or wait > remaining:
            wall, _ = yield NOW
            later = None if wait is None else wall + wait
            return (yield from held_back(cfg, intent, route, attempts, "pacing", later))
        if not wait > 0:
            return None
        yield Sleep(wait)
        remaining -= wait
        held: float = yield Held(route, intent.to)
        if not held > 0:
            return None


def _held(
    cfg: Config,
    intent: Intent,
    route: str,
    wall: float,
    until: float,
    pause: Pause | None,
    circuit: Pause | None,
) -> PolicyFlow[Delivery | str]:
    """Return the Delivery of an intent the number's pause or open circuit holds back.

    *pause* and *circuit* are the number's records (`Look`). Otherwise return what the
    number's circuit is to this intent: `NO_CIRCUIT`, `COUNTING` (a record of recent transient
    failures, which a success clears) or `PROBE` (the circuit is half-open and this intent is
    its one probe, whose outcome closes or re-opens it).
    """
    if pause is not None:
        if pause.holds(wall):
            return (yield from held_back(cfg, intent, route, 0, "paused", pause.until))
        # The probe is due: is the number able to send again? Any failure to tell (the lock
        # again, Meta down) keeps it paused until the next probe.
        try:
            number: PhoneNumber = yield Probe(route, until)
            blocked = number.blocked
        except WhatsAppError:
            blocked = True
        if blocked:
            until = wall + cfg.policy.probe_interval
            yield PutPause(attrs.evolve(pause, until=until, failures=pause.failures + 1))
            return (yield from held_back(cfg, intent, route, 0, "paused", until))
        yield ClearPause(ACCOUNT, route)
        from wa_auth.events import SenderResumed

        cfg.events.emit(
            SenderResumed(
                consumer=intent.consumer or cfg.consumer, phone_number_id=route, by="probe"
            )
        )
    if circuit is not None and circuit.until is not None:
        if circuit.holds(wall) or circuit.probing:
            until = circuit.until if circuit.holds(wall) else wall + cfg.policy.circuit_cooldown
            return (yield from held_back(cfg, intent, route, 0, "circuit_open", until))
        # Half-open: this intent is the one probe; the others wait for its outcome.
        yield PutPause(attrs.evolve(circuit, probing=True))
        return PROBE
    return NO_CIRCUIT if circuit is None else COUNTING


def _scopes(cfg: Config, until: float) -> PolicyFlow[WhatsAppError | None]:
    """Return the error of a token that lacks a required scope (from its cached health).

    When the health cannot be read (Meta unreachable, the app token refused), the send itself
    goes ahead and reports what is wrong: a scope check never turns into an exception.
    """
    try:
        health: TokenHealth = yield Health(until)
    except WhatsAppError as exc:
        _log.info("required scopes not checked: token health failed (%s)", exc.category)
        return None
    if not health.valid:
        return None  # the send itself reports a dead token, from its verdict
    missing = [s for s in cfg.required_scopes if s not in health.scopes]
    if not missing:
        return None
    return InsufficientPermissionError(
        f"the token {health.token_fingerprint} lacks the required scope(s) "
        f"{', '.join(missing)}: nothing was sent",
        token_fingerprint=health.token_fingerprint,
        rule="required_scopes",
        operator_action=(
            "Grant the missing permission(s) to the system user or app and issue a new token."
        ),
    )


def learn(
    cfg: Config,
    consumer: str | None,
    recipient: str | None,
    route: str | None,
    error: WhatsAppError,
    wall: float,
) -> PolicyFlow[float | None]:
    """Record what a failure says about the number; return seconds until it can send, to stop.

    A send's failure and a webhook's (`Guard.apply`) both go through here: an account-state
    failure pauses the number, a rate limit's retry_after holds the number (or the pair to
    *recipient*), a transient failure counts towards the number's circuit.
    """
    if route is None:
        return None
    category = error.category
    consumer = consumer or cfg.consumer
    if category == _table.ACCOUNT_STATE:
        until = wall + cfg.policy.probe_interval
        yield PutPause(
            Pause(
                kind=ACCOUNT,
                phone_number_id=route,
                category=category,
                since=wall,
                until=until,
                error=error.to_dict(),
            )
        )
        from wa_auth.events import SenderPaused

        cfg.events.emit(
            SenderPaused(
                consumer=consumer,
                token_fingerprint=fingerprint_of(error),
                phone_number_id=route,
                category=category,
                code=getattr(error, "code", None),
                until=until,
            )
        )
        return cfg.policy.probe_interval
    if category == _table.RATE_LIMITED and cfg.limiter and error.retry_after:
        pair = getattr(error, "code", None) in PAIR_LIMIT_CODES
        if not pair or recipient is not None:
            yield Penalize(route, recipient if pair else None, error.retry_after)
    if category == _table.TRANSIENT:
        return (yield from _circuit_failure(cfg, consumer, route, error, wall))
    return None


def _circuit_failure(
    cfg: Config, consumer: str | None, route: str, error: WhatsAppError, wall: float
) -> PolicyFlow[float | None]:
    """Count a transient failure; open (or re-open) the circuit past the threshold."""
    policy = cfg.policy
    circuit: Pause | None = yield GetPause(CIRCUIT, route)
    if circuit is None:
        circuit = Pause(kind=CIRCUIT, phone_number_id=route, category=error.category, since=wall)
    failures = circuit.failures + 1
    until = circuit.until
    if until is not None and wall < until and not circuit.probing:
        # A send that was in flight when the circuit opened: the circuit knows already. Opening
        # it again for each straggler would double the cool-down per send in flight (64 in
        # flight: the 600 s cap after one storm).
        yield PutPause(attrs.evolve(circuit, failures=failures))
        return until - wall
    if not circuit.probing and failures < policy.circuit_threshold:
        yield PutPause(attrs.evolve(circuit, failures=failures, error=error.to_dict()))
        return None
    opens = circuit.opens + 1
    cooldown = min(policy.max_circuit_cooldown, policy.circuit_cooldown * 2.0 ** (opens - 1))
    until = wall + cooldown
    yield PutPause(
        attrs.evolve(
            circuit,
            failures=failures,
            opens=opens,
            until=until,
            probing=False,
            error=error.to_dict(),
        )
    )
    from wa_auth.events import CircuitOpened

    cfg.events.emit(
        CircuitOpened(
            consumer=consumer,
            token_fingerprint=fingerprint_of(error),
            phone_number_id=route,
            failures=failures,
            until=until,
        )
    )
    return cooldown


# --- a user's own function (the decorator) ---------------------------------------------------


def retrying(
    cfg: Config, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> PolicyFlow[Any]:
    """The decorator's policy: retries, then handlers and fallback, around the user's call."""
    _, start = yield NOW
    attempts = 0
    while True:
        attempts += 1
        try:
            value = yield Call(fn, args, kwargs)
        except WhatsAppError as exc:
            error = exc
        else:
            return value
        _, mono = yield NOW
        decision = decide(cfg.policy, error, attempts, mono - start, cfg.rng)
        if decision.retry:
            from wa_auth.events import MessageRetrying

            cfg.events.emit(
                MessageRetrying(
                    consumer=cfg.consumer,
                    token_fingerprint=fingerprint_of(error),
                    operation=getattr(fn, "__name__", None),
                    attempts=attempts,
                    category=error.category,
                    delay=decision.delay,
                    code=getattr(error, "code", None),
                )
            )
            yield Sleep(decision.delay)
            continue
        if cfg.handlers is not None:
            handlers = tuple(cfg.handlers.for_category(error.category))
            if handlers:
                yield Handle(handlers, None, error)
        if cfg.fallback is not None:
            answer = yield Fallback(cfg.fallback, None, error)
            if answer is not NO_FALLBACK:
                return answer
        try:
            raise error
        finally:
            del error  # the traceback holds this frame: no cycle through it
