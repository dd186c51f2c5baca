"""What a guard does with a webhook event (`Guard.apply`): the same as with a raised error.

Half of the token and account failures never reach a send as an error: Meta accepts the
message and reports the failure later in a status webhook, or announces that the app was
uninstalled, that the account was restricted, that a number's throughput changed. `applying`
is that policy, written once as a generator of effects and driven blocking or on the loop like
the guard's `deliver`, through the same steps a raised error of the same category takes:

- a failed status: its outbox row turns `failed` (`Outbox.apply_status`), the category's
  handlers are called once (with the intent, when the outbox knows it), and `learn` records
  what the failure says about the number (an account-state failure pauses it, exactly like a
  131031 answering a send);
- an account event that stops sending (`AccountUpdate`, `AccountReviewUpdate`): its handlers
  once; `account_state` pauses the numbers the guard knows for that WABA; `token_revoked`
  (`PARTNER_APP_UNINSTALLED`) records a verdict on the tokens the client's provider hands out
  for that WABA, and invalidates them, as a raised 190 would; one that resumes sending clears
  those numbers' pauses;
- a throughput change (`THROUGHPUT_UPGRADE`): the limiter paces the number at its new rate.

What the guard knows of a WABA is its client's: the client's `business_account_id` and
`phone_number_id`, and a `RoutingTokenProvider`'s route keyed by the WABA id. `numbers_for` and
`WabaTokens` say exactly what that covers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from wa_auth import _table
from wa_auth._delivery import FAILED
from wa_auth._effects import PolicyFlow
from wa_auth.errors import ApiError, ConfigurationError, WhatsAppError, error_class_for
from wa_auth.events import SenderResumed, TokenInvalidated
from wa_auth.guards._effects import NOW, ClearPause, GetPause, Handle, Runtime
from wa_auth.guards._flows import learn
from wa_auth.pacing import ACCOUNT, CIRCUIT, Pause, check_rate
from wa_auth.webhooks import (
    RESUMES,
    STOPS,
    AccountReviewUpdate,
    AccountUpdate,
    MessageStatus,
    MessagingError,
    QualityUpdate,
    WebhookApplied,
    WebhookEvent,
)

if TYPE_CHECKING:
    from wa_auth.guards._values import Config
    from wa_auth.outbox._protocol import OutboxRow
    from wa_auth.providers import Token, TokenProvider

__all__ = [
    "ACTIONS",
    "HIGH_THROUGHPUT",
    "THROUGHPUT_EVENTS",
    "Applied",
    "WabaTokens",
    "applying",
    "numbers_for",
]

#: Messages per second of Meta's higher throughput tier (a number upgraded automatically).
HIGH_THROUGHPUT: Final = 1000.0
#: `phone_number_quality_update` events that set a number's throughput, and the rate.
#: A messaging-limit tier (`TIER_2K`: business-initiated conversations per 24 hours) is no
#: per-second rate: a `DOWNGRADE` or `UPGRADE` of it leaves the pacing alone.
THROUGHPUT_EVENTS: Final[Mapping[str, float]] = {"THROUGHPUT_UPGRADE": HIGH_THROUGHPUT}
#: What `Applied.actions` may name, in the order they are taken.
ACTIONS: Final = ("outbox", "handlers", "paused", "resumed", "verdicts", "rate")


@attrs.frozen(kw_only=True)
class Applied:
    """What a guard did with one webhook event (`Guard.apply`).

    Args:
        key: The event's dedupe key.
        type: The event's type (`status`, `account_update`, ...).
        category: The failure's category (a failed status's, a stopping account event's).
        actions: What was done, in order (`ACTIONS`); empty when nothing changes for sending.
        phone_number_ids: The numbers it acted on (paused, resumed, paced, or learned about).
        paused_until: When the pause it put on those numbers is next probed.
        token_fingerprints: The tokens given a verdict (an uninstalled app's).
        rate: The messages per second the numbers are paced at from now on.
        row: The outbox row of the status's intent after it was applied, or None.
    """

    key: str
    type: str
    category: str | None = None
    actions: tuple[str, ...] = ()
    phone_number_ids: tuple[str, ...] = ()
    paused_until: float | None = None
    token_fingerprints: tuple[str, ...] = ()
    rate: float | None = None
    row: OutboxRow | None = attrs.field(default=None, eq=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data (the row by its key and state only: never a message's text)."""
        return {
            "key": self.key,
            "type": self.type,
            "category": self.category,
            "actions": list(self.actions),
            "phone_number_ids": list(self.phone_number_ids),
            "paused_until": self.paused_until,
            "token_fingerprints": list(self.token_fingerprints),
            "rate": self.rate,
            "outbox_state": self.row.state if self.row is not None else None,
        }


# --- the steps it adds to the guard's ----------------------------------------------------------


@attrs.frozen
class ApplyStatus:
    """Apply a status webhook to the guard's outbox (`Outbox.apply_status`)."""

    event: MessageStatus

    def perform(self, env: Runtime, /) -> OutboxRow | None:
        assert env.outbox is not None
        return env.outbox.apply_status(self.event)

    async def aperform(self, env: Runtime, /) -> OutboxRow | None:
        assert env.outbox is not None
        return await env.outbox.aapply_status(self.event)


@attrs.frozen
class SetRate:
    """Pace a number at a new rate; a limiter without `set_rate` (an older one) is left: False."""

    route: str
    per_second: float

    def perform(self, env: Runtime, /) -> bool:
        set_rate = getattr(env.limiter, "set_rate", None)
        if set_rate is None:
            return False
        set_rate(self.route, self.per_second)
        return True

    async def aperform(self, env: Runtime, /) -> bool:
        aset_rate = getattr(env.limiter, "aset_rate", None)
        if aset_rate is None:
            return False
        await aset_rate(self.route, self.per_second)
        return True


@attrs.frozen
class WabaTokens:
    """The tokens the client's provider hands out now for a WABA or a number: (provider, token).

    Known: a `RoutingTokenProvider`'s route keyed by the WABA id; for a number (a failed
    status names the number that sent), the route `provider_for` gives that number, which is
    the provider the client sends from it with; and the client's own provider when the client
    was made with this WABA as its `business_account_id` or this number as its
    `phone_number_id` (a plain provider is the client's for every call). Not known: a token no
    provider hands out now (an older one, rotated since the send; another process's), and
    which of a routing provider's per-number routes belong to a WABA (a webhook names the
    WABA, not its numbers). A provider that cannot hand out a token now is skipped.
    """

    business_account_id: str | None
    phone_number_id: str | None = None

    def _providers(self, env: Runtime) -> list[TokenProvider]:
        client = env.client
        provider = getattr(client, "token_provider", None)
        if provider is None:
            return []
        found: list[TokenProvider] = []
        waba, number = self.business_account_id, self.phone_number_id
        routes = getattr(provider, "routes", None)
        if waba is not None and isinstance(routes, Mapping) and waba in routes:
            found.append(routes[waba])
        routing = hasattr(provider, "provider_for")
        if number is not None and routing:
            with contextlib.suppress(WhatsAppError):  # no route and no default
                found.append(provider.provider_for(number))
        own_waba = waba is not None and getattr(client, "business_account_id", None) == waba
        own_number = number is not None and getattr(client, "phone_number_id", None) == number
        if own_waba or own_number:
            if routing:
                with contextlib.suppress(WhatsAppError):
                    found.append(provider.provider_for(client.phone_number_id))
            else:
                found.append(provider)
        return list({id(p): p for p in found}.values())

    def perform(self, env: Runtime, /) -> list[tuple[TokenProvider, Token]]:
        pairs = []
        for provider in self._providers(env):
            with contextlib.suppress(WhatsAppError):
                pairs.append((provider, provider.get_token()))
        return pairs

    async def aperform(self, env: Runtime, /) -> list[tuple[TokenProvider, Token]]:
        pairs = []
        for provider in self._providers(env):
            with contextlib.suppress(WhatsAppError):
                pairs.append((provider, await provider.aget_token()))
        return pairs


@attrs.frozen
class Revoke:
    """Record a verdict on a token in the client's verdict store, and invalidate it."""

    provider: Any
    token: Token
    error: ApiError = attrs.field(eq=False)

    def perform(self, env: Runtime, /) -> None:
        env.client.verdicts.record(self.token.fingerprint, self.error)
        self.provider.invalidate(self.token, self.error)

    async def aperform(self, env: Runtime, /) -> None:
        await env.client.verdicts.arecord(self.token.fingerprint, self.error)
        self.provider.invalidate(self.token, self.error)


# --- the policy --------------------------------------------------------------------------------


def numbers_for(cfg: Config, event: WebhookEvent, route: str | None, waba: str | None) -> list[str]:
    """The numbers an event is about: *route* (the caller's), the event's, else the WABA's.

    A WABA-wide event (an account update) names no number: it is about the guard's own number
    when its client was made for that WABA (*waba*, the client's `business_account_id`). A
    quality update names its number by the display number only: pass *route* for it.
    """
    if route is not None:
        return [route]
    if event.phone_number_id is not None:
        return [event.phone_number_id]
    wide = isinstance(event, (AccountUpdate, AccountReviewUpdate))
    if wide and waba is not None and event.business_account_id == waba and cfg.default_route:
        return [cfg.default_route]
    return []


def applying(
    cfg: Config, event: WebhookEvent, route: str | None, waba: str | None
) -> PolicyFlow[Applied]:
    """Apply *event* as the guard would a raised error of its category; return what it did."""
    wall, _ = yield NOW
    if isinstance(event, (MessageStatus, MessagingError)):
        applied = yield from _failure(cfg, event, route, wall)
    elif isinstance(event, (AccountUpdate, AccountReviewUpdate)):
        applied = yield from _account(cfg, event, numbers_for(cfg, event, route, waba), wall)
    elif isinstance(event, QualityUpdate):
        applied = yield from _quality(cfg, event, numbers_for(cfg, event, route, waba))
    else:
        applied = Applied(key=event.key, type=event.type, category=event.category)
    cfg.events.emit(
        WebhookApplied(
            consumer=cfg.consumer,
            type=event.type,
            key=event.key,
            message_id=event.message_id,
            status=getattr(event, "status", None),
            phone_number_id=applied.phone_number_ids[0] if applied.phone_number_ids else None,
            business_account_id=event.business_account_id,
            category=applied.category,
            actions=applied.actions,
        )
    )
    return applied


def _failure(
    cfg: Config, event: MessageStatus | MessagingError, route: str | None, wall: float
) -> PolicyFlow[Applied]:
    """A failed status or a `messages` error: the outbox, handlers once, what it teaches."""
    actions: list[str] = []
    row: OutboxRow | None = None
    if isinstance(event, MessageStatus) and cfg.outbox:
        row = yield ApplyStatus(event)
        if row is not None and row.state == FAILED and (row.reason or "").startswith("webhook"):
            actions.append("outbox")
    error = event.error
    if error is None:
        if not (isinstance(event, MessageStatus) and event.status == FAILED):
            return Applied(key=event.key, type=event.type, actions=tuple(actions), row=row)
        error = error_class_for(_table.UNKNOWN)(
            f"message {event.id} failed, by webhook, without an error object",
            rule="webhook/status",
        )
    intent = row.intent if row is not None else None
    number = route or event.phone_number_id or (intent.phone_number_id if intent else None)
    if cfg.handlers is not None:
        handlers = tuple(cfg.handlers.for_category(error.category))
        if handlers:
            yield Handle(handlers, intent, error)
            actions.append("handlers")
    consumer = intent.consumer if intent is not None else None
    recipient = intent.to if intent is not None else None
    stop = yield from learn(cfg, consumer, recipient, number, error, wall)
    paused = error.category == _table.ACCOUNT_STATE and number is not None
    if paused:
        actions.append("paused")
    fingerprints: tuple[str, ...] = ()
    if error.category in _table.TOKEN_CLASS:
        # The token that sent is not named by Meta: the one the provider hands out now for
        # that number (or WABA) is recorded, as a raised 190 records the token of its call.
        fingerprints = yield from _revoke(cfg, WabaTokens(event.business_account_id, number), error)
        if fingerprints:
            actions.append("verdicts")
    return Applied(
        key=event.key,
        type=event.type,
        category=error.category,
        actions=tuple(actions),
        phone_number_ids=(number,) if number is not None else (),
        paused_until=wall + stop if paused and stop is not None else None,
        token_fingerprints=fingerprints,
        row=row,
    )


def _revoke(cfg: Config, known: WabaTokens, error: ApiError) -> PolicyFlow[tuple[str, ...]]:
    """Record a verdict on each token *known* finds, invalidate it; return their fingerprints."""
    fingerprints: list[str] = []
    pairs: list[tuple[TokenProvider, Token]] = yield known
    for provider, token in pairs:
        yield Revoke(provider, token, error)
        fingerprints.append(token.fingerprint)
        cfg.events.emit(
            TokenInvalidated(
                consumer=cfg.consumer,
                token_fingerprint=token.fingerprint,
                category=error.category,
            )
        )
    return tuple(fingerprints)


def _account_error(
    event: AccountUpdate | AccountReviewUpdate, fingerprint: str | None = None
) -> ApiError:
    """The error a send would have raised for what the account event announces."""
    category = event.category or _table.UNKNOWN
    cls = error_class_for(category)
    name = event.event or "?"
    return cls(
        f"{event.type} {name} for WABA {event.business_account_id}: {event.operator_action}",
        rule=f"webhook/{name}",
        operator_action=event.operator_action or None,
        token_fingerprint=fingerprint,
    )


def _account(
    cfg: Config, event: AccountUpdate | AccountReviewUpdate, numbers: list[str], wall: float
) -> PolicyFlow[Applied]:
    """An account event: handlers, pauses and verdicts when it stops sending; resumes."""
    actions: list[str] = []
    if event.effect == RESUMES:
        resumed = yield from _resume(cfg, numbers)
        return Applied(
            key=event.key,
            type=event.type,
            actions=("resumed",) if resumed else (),
            phone_number_ids=tuple(resumed),
        )
    if event.effect != STOPS or event.category is None:
        return Applied(key=event.key, type=event.type, category=event.category)
    error = _account_error(event)
    if cfg.handlers is not None:
        handlers = tuple(cfg.handlers.for_category(error.category))
        if handlers:
            yield Handle(handlers, None, error)
            actions.append("handlers")
    until: float | None = None
    if error.category == _table.ACCOUNT_STATE:
        for number in numbers:
            stop = yield from learn(cfg, None, None, number, error, wall)
            until = wall + stop if stop is not None else None
        if numbers:
            actions.append("paused")
    fingerprints: list[str] = []
    if error.category == _table.TOKEN_REVOKED and event.business_account_id is not None:
        pairs: list[tuple[TokenProvider, Token]] = yield WabaTokens(event.business_account_id)
        for provider, token in pairs:
            yield Revoke(provider, token, _account_error(event, token.fingerprint))
            fingerprints.append(token.fingerprint)
            cfg.events.emit(
                TokenInvalidated(
                    consumer=cfg.consumer,
                    token_fingerprint=token.fingerprint,
                    category=error.category,
                )
            )
        if fingerprints:
            actions.append("verdicts")
    return Applied(
        key=event.key,
        type=event.type,
        category=error.category,
        actions=tuple(actions),
        phone_number_ids=tuple(numbers),
        paused_until=until,
        token_fingerprints=tuple(fingerprints),
    )


def _resume(cfg: Config, numbers: list[str]) -> PolicyFlow[list[str]]:
    """Clear the pauses of *numbers* that have one (an account reinstated or reconnected)."""
    resumed = []
    for number in numbers:
        pause: Pause | None = yield GetPause(ACCOUNT, number)
        if pause is None:
            continue
        yield ClearPause(ACCOUNT, number)
        yield ClearPause(CIRCUIT, number)
        resumed.append(number)
        cfg.events.emit(SenderResumed(consumer=cfg.consumer, phone_number_id=number, by="webhook"))
    return resumed


def _quality(cfg: Config, event: QualityUpdate, numbers: list[str]) -> PolicyFlow[Applied]:
    """A throughput change paces the number at its new rate (when the guard has a limiter)."""
    rate = THROUGHPUT_EVENTS.get(event.event or "")
    if rate is not None and cfg.limiter and not numbers:
        # Meta names the number by its display number only, which no client knows: saying
        # nothing would leave the number paced at its old tier without anyone noticing.
        shown = event.display_phone_number if (event.display_phone_number or "").isdigit() else None
        raise ConfigurationError(
            f"{event.type} {event.event} names its number by the display number "
            f"{shown or '(none)'} only: pass the number's id, "
            "guard.apply(event, phone_number_id=...), to pace it at its new tier"
        )
    if rate is None or not cfg.limiter or not numbers:
        return Applied(key=event.key, type=event.type, phone_number_ids=tuple(numbers))
    per_second = check_rate(rate)
    changed = False
    for number in numbers:
        changed = (yield SetRate(number, per_second)) or changed
    return Applied(
        key=event.key,
        type=event.type,
        actions=("rate",) if changed else (),
        phone_number_ids=tuple(numbers),
        rate=per_second if changed else None,
    )
