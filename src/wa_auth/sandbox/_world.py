"""The world's state and its setters: tokens, the business account, numbers, limits, faults.

`World` holds everything the simulated Graph API knows and the operations the Python and
admin APIs offer on it. All of it sits behind one lock, because the server's threads and the
test's thread change it at once; the request pipeline (`_pipeline`) takes the same lock and
reads and changes `World.state` while it answers one request.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterable
from typing import Any, Final

import attrs

from wa_auth._redact import fingerprint
from wa_auth.sandbox._checks import MAX_SECONDS, real, text
from wa_auth.sandbox._seeded import make_fault
from wa_auth.sandbox._specs import DEMO_SPECS, TokenSpec, check_token_state, spec_from
from wa_auth.sandbox._values import (
    ACCOUNT_STATES,
    ACCOUNT_VARIANTS,
    DEFAULT_SCOPES,
    NUMBER_STATES,
    TOKEN_VARIANTS,
    Faults,
    Limits,
    RecordedMessage,
    RecordedRequest,
    SandboxToken,
    SeededFault,
)
from wa_auth.sandbox._webhook_values import LateFailure, RecordedWebhook, WebhookSettings

__all__ = [
    "APP_ID",
    "BUSINESS_ACCOUNT_ID",
    "DEFAULT_PHONE_NUMBERS",
    "LATEST_TIME",
    "MAX_PHONE_NUMBERS",
    "Media",
    "State",
    "World",
    "check_phone_numbers",
    "display_number",
    "effective",
    "phone_number_ids",
]

#: The sandbox's fixed Graph ids: one app, one WABA (its phone numbers: `phone_number_ids`).
APP_ID: Final = "900000000000001"
BUSINESS_ACCOUNT_ID: Final = "102000000000001"
#: How many phone numbers a sandbox has unless told otherwise, and the most it can have.
DEFAULT_PHONE_NUMBERS: Final = 2
MAX_PHONE_NUMBERS: Final = 20
#: The sandbox clock stops short of the year 3000 (unix seconds), so every expiry it renders
#: (up to `MAX_SECONDS` later) still fits in what `datetime` can format.
LATEST_TIME: Final = 32503680000.0
_TRACE_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_TOKEN_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"  # noqa: S105


def check_phone_numbers(value: object) -> int:
    """Return *value*, a count of phone numbers.

    Raises:
        ValueError: *value* is not an integer from 1 to `MAX_PHONE_NUMBERS`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PHONE_NUMBERS:
        raise ValueError(
            f"phone_numbers must be an integer from 1 to {MAX_PHONE_NUMBERS}, got {value!r}"
        )
    return value


def phone_number_ids(count: int) -> tuple[str, ...]:
    """Return the ids of a sandbox with *count* numbers: 109000000000001, 109000000000002..."""
    return tuple(f"109{n:012d}" for n in range(1, count + 1))


def display_number(phone_number_id: str) -> str:
    """Return the display number of one of the sandbox's ids: 109000000000003 is +1 555-010-0003."""
    return f"+1 555-010-{phone_number_id[-4:]}"


@attrs.frozen
class Media:
    """An uploaded media object."""

    id: str
    phone_number_id: str
    mime_type: str
    data: bytes = attrs.field(repr=False)
    sha256: str


class Clock:
    """The sandbox clock: wall time at start, plus real time elapsed unless frozen, plus jumps."""

    def __init__(self, frozen: bool) -> None:
        self.frozen = frozen
        self.restart()

    def restart(self) -> None:
        """Start again from the wall clock, without jumps."""
        self._wall = time.time()
        self._mono = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        """Return the sandbox time (unix seconds)."""
        elapsed = 0.0 if self.frozen else time.monotonic() - self._mono
        return self._wall + elapsed + self._offset

    def advance(self, seconds: float) -> None:
        """Jump *seconds* ahead."""
        self._offset += seconds


@attrs.define
class State:
    """Everything that `reset()` forgets; read and changed only with `World.lock` held."""

    rng: random.Random
    max_records: int
    app_secret: str = ""
    tokens: dict[str, SandboxToken] = attrs.Factory(dict)
    token_seq: int = 0
    account: str = "ok"
    account_variant: str | None = None
    #: Each phone number's state, in the order of `World.phone_number_ids`.
    numbers: dict[str, str] = attrs.Factory(dict)
    limits: Limits = attrs.Factory(Limits)
    faults: Faults = attrs.Factory(Faults)
    messages: collections.deque[RecordedMessage] = attrs.field(init=False)
    requests: collections.deque[RecordedRequest] = attrs.field(init=False)
    #: The number of the last Graph request received.
    seq: int = 0
    media: dict[str, Media] = attrs.Factory(dict)
    #: Per phone number: (the second, messages accepted in it).
    throughput: dict[str, tuple[int, int]] = attrs.Factory(dict)
    #: Per (phone number, recipient): when each recent message was accepted.
    pairs: dict[tuple[str, str], collections.deque[float]] = attrs.Factory(dict)
    #: (the app-usage window, calls in it).
    app_calls: tuple[int, int] = (0, 0)
    #: The seeded faults still to answer, oldest first.
    seeded: list[SeededFault] = attrs.Factory(list)
    fault_seq: int = 0
    #: Where webhooks go (None: nowhere), how, and what was delivered.
    webhook_url: str | None = None
    webhook_settings: WebhookSettings = attrs.Factory(WebhookSettings)
    webhooks: collections.deque[RecordedWebhook] = attrs.field(init=False)
    webhook_seq: int = 0
    #: The late failures still to give, oldest first.
    late: list[LateFailure] = attrs.Factory(list)
    late_seq: int = 0

    def __attrs_post_init__(self) -> None:
        self.messages = collections.deque(maxlen=self.max_records)
        self.requests = collections.deque(maxlen=self.max_records)
        self.webhooks = collections.deque(maxlen=self.max_records)


def effective(token: SandboxToken, now: float) -> SandboxToken:
    """Return *token* as of *now*: a valid token past its `expires_at` is expired."""
    if token.state == "valid" and token.expires_at is not None and now >= token.expires_at:
        return attrs.evolve(token, state="expired", variant="subcode")
    return token


class World:
    """The whole simulated state and the operations on it; thread-safe.

    Args:
        seed: Seeds every random choice (token values, ids, faults); None picks one.
        tokens: Token specs to create at start and on `reset()`; None creates the demo tokens.
        freeze_clock: The clock moves only through `advance()`.
        max_records: How many requests, messages and webhooks are kept (oldest dropped first).
        webhook_url: Where webhooks go at start and after `reset()`; None nowhere.
        app_secret: The app secret (webhook signatures, the token exchange); None draws one
            from the seed.
        phone_numbers: How many phone numbers the business account has (see
            `phone_number_ids`).

    Raises:
        ValueError: *phone_numbers* is not an integer from 1 to `MAX_PHONE_NUMBERS`.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        tokens: tuple[TokenSpec, ...] | None = None,
        freeze_clock: bool = False,
        max_records: int = 100_000,
        webhook_url: str | None = None,
        app_secret: str | None = None,
        phone_numbers: int = DEFAULT_PHONE_NUMBERS,
    ) -> None:
        #: The ids of the phone numbers, first the one demos send from; fixed for the run.
        self.phone_number_ids = phone_number_ids(check_phone_numbers(phone_numbers))
        self.lock = threading.RLock()
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self._specs = tokens if tokens is not None else DEMO_SPECS
        self.clock = Clock(freeze_clock)
        self._max_records = max_records
        self._webhook_url = webhook_url
        self._app_secret = app_secret
        self.base_url = ""
        #: Bumped by `reset()`: a webhook queued before it is not delivered after it.
        self.generation = 0
        #: The webhook deliverer (`_webhooks.Deliverer`), made on first use.
        self.deliverer: Any = None
        self.reset()

    # --- lifecycle and the clock ------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything since start: tokens, states, limits, faults, records, clock."""
        with self.lock:
            rng = random.Random(self.seed)  # noqa: S311 - simulation, not security
            self.clock.restart()
            self.state = State(
                rng=rng,
                max_records=self._max_records,
                numbers=dict.fromkeys(self.phone_number_ids, "ok"),
            )
            # Drawn even when given, so a seed's later choices do not depend on app_secret.
            self.state.app_secret = self.random_hex(32)
            if self._app_secret is not None:
                self.state.app_secret = self._app_secret
            self.state.webhook_url = self._webhook_url
            self.generation += 1
            self.initial_tokens = tuple(self.create_token(spec) for spec in self._specs)

    @property
    def app_secret(self) -> str:
        """The app secret (`client_secret` of the token exchange)."""
        return self.state.app_secret

    @property
    def app_token(self) -> str:
        """The app access token `{app_id}|{app_secret}`, accepted by `debug_token`."""
        return f"{APP_ID}|{self.state.app_secret}"

    def now(self) -> float:
        """Return the sandbox clock's time (unix seconds)."""
        with self.lock:
            return self.clock.now()

    def advance(self, seconds: float) -> float:
        """Move the clock forward by *seconds*; return the new time.

        Raises:
            ValueError: *seconds* is not a finite number in [0, `MAX_SECONDS`], or the clock
                would pass `LATEST_TIME`.
        """
        step = real("seconds", seconds, high=MAX_SECONDS)
        with self.lock:
            if self.clock.now() + step > LATEST_TIME:
                raise ValueError("advance: the sandbox clock cannot pass the year 3000")
            self.clock.advance(step)
            return self.clock.now()

    # --- tokens -----------------------------------------------------------------------------

    def issue_token(
        self,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        expires_in: float | None = None,
        kind: str = "system_user",
        allowed_wabas: Iterable[str] | None = None,
        allowed_phone_numbers: Iterable[str] | None = None,
        name: str | None = None,
        value: str | None = None,
    ) -> SandboxToken:
        """Create a new valid token.

        Raises:
            ValueError: An argument is invalid (a string where a list belongs included).
        """
        spec = spec_from(
            {
                "scopes": scopes,
                "expires_in": expires_in,
                "kind": kind,
                "allowed_wabas": allowed_wabas,
                "allowed_phone_numbers": allowed_phone_numbers,
                "name": name,
                "value": value,
            },
            "issue_token",
        )
        with self.lock:
            if spec.value is not None and spec.value in self.state.tokens:
                raise ValueError("issue_token: a token with this value exists")
            return self.create_token(spec)

    def create_token(self, spec: TokenSpec) -> SandboxToken:
        """Create the token *spec* describes (the caller holds the lock)."""
        state = self.state
        now = self.clock.now()
        state.token_seq += 1
        value = spec.value or "EAAS" + "".join(state.rng.choices(_TOKEN_ALPHABET, k=120))
        token = SandboxToken(
            id=f"tok_{state.token_seq}",
            value=value,
            fingerprint=fingerprint(value),
            kind=spec.kind,
            scopes=spec.scopes,
            issued_at=now,
            expires_at=None if spec.expires_in is None else now + spec.expires_in,
            state="valid",
            allowed_wabas=spec.allowed_wabas,
            allowed_phone_numbers=spec.allowed_phone_numbers,
            name=spec.name,
        )
        state.tokens[value] = token
        if spec.state != "valid":
            self._set_state(token, spec.state, spec.variant, now)
        return state.tokens[value]

    def tokens(self) -> tuple[SandboxToken, ...]:
        """Return every token, with its state as of now."""
        with self.lock:
            now = self.clock.now()
            return tuple(effective(t, now) for t in self.state.tokens.values())

    def find_token(self, token: str) -> SandboxToken:
        """Return the token whose value, id or fingerprint is *token*.

        Raises:
            ValueError: No such token.
        """
        text("token", token)
        with self.lock:
            tokens = self.state.tokens
            found = tokens.get(token)
            if found is None:
                found = next((t for t in tokens.values() if token in (t.id, t.fingerprint)), None)
            if found is None:
                raise ValueError("unknown token (pass its value, id or fingerprint)")
            return effective(found, self.clock.now())

    def set_token_state(self, token: str, state: str, variant: str | None = None) -> SandboxToken:
        """Put a token in *state* (see `TOKEN_STATES`), with an optional payload *variant*.

        Raises:
            ValueError: Unknown token, state or variant.
        """
        text("set_token_state: token", token)
        check_token_state(state, variant, "set_token_state")
        with self.lock:
            found = self.find_token(token)
            now = self.clock.now()
            self._set_state(self.state.tokens[found.value], state, variant, now)
            return effective(self.state.tokens[found.value], now)

    def _set_state(self, token: SandboxToken, state: str, variant: str | None, now: float) -> None:
        expires_at = token.expires_at
        if state == "expired" and (expires_at is None or expires_at > now):
            expires_at = now
        elif state == "valid" and expires_at is not None and expires_at <= now:
            # A token made valid again must not expire at once by the clock.
            expires_at = None
        if variant is None and state in TOKEN_VARIANTS:
            variant = TOKEN_VARIANTS[state][0]
        self.state.tokens[token.value] = attrs.evolve(
            token, state=state, variant=variant, expires_at=expires_at
        )

    # --- the account and its numbers ------------------------------------------------------

    def set_account_state(self, state: str, variant: str | None = None) -> None:
        """Put the WhatsApp Business Account in *state* (see `ACCOUNT_STATES`).

        Raises:
            ValueError: Unknown state or variant.
        """
        if not isinstance(state, str) or state not in ACCOUNT_STATES:
            raise ValueError(f"state must be one of {list(ACCOUNT_STATES)}, got {state!r}")
        allowed = ACCOUNT_VARIANTS.get(state, ())
        if variant is not None and (not isinstance(variant, str) or variant not in allowed):
            raise ValueError(f"variant of {state!r} must be one of {list(allowed)}")
        with self.lock:
            self.state.account = state
            self.state.account_variant = variant or (allowed[0] if allowed else None)

    def account_state(self) -> tuple[str, str | None]:
        """Return the account state and its variant."""
        with self.lock:
            return self.state.account, self.state.account_variant

    def set_number_state(self, phone_number_id: str, state: str) -> None:
        """Put a phone number in *state* (see `NUMBER_STATES`).

        Raises:
            ValueError: Unknown phone number or state.
        """
        text("phone_number_id", phone_number_id)
        if not isinstance(state, str) or state not in NUMBER_STATES:
            raise ValueError(f"state must be one of {list(NUMBER_STATES)}, got {state!r}")
        with self.lock:
            if phone_number_id not in self.state.numbers:
                raise ValueError(
                    f"unknown phone number id {phone_number_id!r}; "
                    f"the sandbox's are {list(self.phone_number_ids)}"
                )
            self.state.numbers[phone_number_id] = state

    def number_states(self) -> dict[str, str]:
        """Return each phone number's state."""
        with self.lock:
            return dict(self.state.numbers)

    # --- limits and faults ------------------------------------------------------------------

    def set_limits(self, limits: Limits) -> Limits:
        """Replace the rate limits (and restart their windows)."""
        with self.lock:
            self.state.limits = limits
            self.state.throughput.clear()
            self.state.pairs.clear()
            self.state.app_calls = (0, 0)
            return limits

    def limits(self) -> Limits:
        """Return the rate limits."""
        with self.lock:
            return self.state.limits

    def set_faults(self, faults: Faults) -> Faults:
        """Replace the injected faults."""
        with self.lock:
            self.state.faults = faults
            return faults

    def faults(self) -> Faults:
        """Return the injected faults."""
        with self.lock:
            return self.state.faults

    # --- seeded faults ---------------------------------------------------------------------

    def fail_next(
        self,
        code: object,
        *,
        times: object = 1,
        phone_number_id: object = None,
        recipient: object = None,
        endpoint: object = "send_message",
        retry_after: object = None,
        retry_after_header: object = True,
        regain_access_minutes: object = None,
    ) -> SeededFault:
        """Seed a fault for the next matching requests (see `Sandbox.fail_next`).

        Raises:
            ValueError: An unknown code, endpoint or phone number, or a bad option.
        """
        with self.lock:
            fault = make_fault(
                f"fault_{self.state.fault_seq + 1}",
                code,
                phones=self.state.numbers,
                times=times,
                phone_number_id=phone_number_id,
                recipient=recipient,
                endpoint=endpoint,
                retry_after=retry_after,
                retry_after_header=retry_after_header,
                regain_access_minutes=regain_access_minutes,
            )
            self.state.fault_seq += 1
            self.state.seeded.append(fault)
            return fault

    def seeded_faults(self) -> tuple[SeededFault, ...]:
        """Return the seeded faults still to answer, oldest first."""
        with self.lock:
            return tuple(self.state.seeded)

    def clear_seeded_faults(self) -> None:
        """Forget every seeded fault still to answer."""
        with self.lock:
            self.state.seeded.clear()

    # --- records ----------------------------------------------------------------------------

    def messages(self) -> tuple[RecordedMessage, ...]:
        """Return every accepted message, oldest first."""
        with self.lock:
            return tuple(self.state.messages)

    def requests(self) -> tuple[RecordedRequest, ...]:
        """Return every request received, oldest first."""
        with self.lock:
            return tuple(self.state.requests)

    # --- random choices (the caller holds the lock) ---------------------------------------

    def random_hex(self, n: int) -> str:
        """Return *n* random lowercase hex digits."""
        return "".join(self.state.rng.choices("0123456789abcdef", k=n))

    def trace_id(self) -> str:
        """Return a random `fbtrace_id`."""
        return "A" + "".join(self.state.rng.choices(_TRACE_ALPHABET, k=22))

    def random_digits(self, n: int) -> str:
        """Return a random *n*-digit number (a Graph id)."""
        return str(self.state.rng.randrange(10 ** (n - 1), 10**n))
