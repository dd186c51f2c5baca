"""The simulated Graph API: tokens, the business account, numbers, limits, faults, records.

`World.handle` turns one parsed HTTP request into one `Reply`; it does no socket I/O, so the
server is a thin shell around it. All state sits behind one lock, because the server's
threads and the admin API (or the Python API, from the test's thread) change it at once.
"""

from __future__ import annotations

import base64
import collections
import email.parser
import email.policy
import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from wa_auth._redact import fingerprint
from wa_auth.sandbox._catalogue import FLAKY_ENTRIES, Reply, html_502, json_reply, meta_time, render
from wa_auth.sandbox._checks import (
    MAX_SECONDS,
    check_keys,
    loads_strict,
    opt_text,
    real,
    text,
    text_list,
)
from wa_auth.sandbox._messages import check_message, check_read
from wa_auth.sandbox._values import (
    ACCOUNT_STATES,
    ACCOUNT_VARIANTS,
    DEFAULT_SCOPES,
    NUMBER_STATES,
    TOKEN_KINDS,
    TOKEN_STATES,
    TOKEN_VARIANTS,
    Faults,
    Limits,
    RecordedMessage,
    RecordedRequest,
    SandboxToken,
)

__all__ = ["HttpRequest", "TokenSpec", "World", "load_token_specs"]

#: The sandbox's fixed Graph ids: one app, one WABA, two phone numbers.
APP_ID: Final = "900000000000001"
BUSINESS_ACCOUNT_ID: Final = "102000000000001"
PHONE_NUMBER_IDS: Final = ("109000000000001", "109000000000002")
_DISPLAY_NUMBERS: Final = ("+1 555-010-0001", "+1 555-010-0002")
_SYSTEM_USER_ID: Final = "122000000000001"
_USER_ID: Final = "10000000000000001"
#: Meta's long-lived user token lifetime as the exchange reports it (about 60 days).
LONG_LIVED_SECONDS: Final = 5183944
#: A short-lived user token (the demo `user` token) lives about an hour.
SHORT_LIVED_SECONDS: Final = 3600
_DATA_ACCESS_SECONDS: Final = 90 * 24 * 3600
#: The sandbox clock stops short of the year 3000 (unix seconds), so every expiry it renders
#: (up to `MAX_SECONDS` later) still fits in what `datetime` can format.
LATEST_TIME: Final = 32503680000.0
_VERSION_RE: Final = re.compile(r"v\d+\.\d+")
_RECIPIENT_RE: Final = re.compile(r"\+?[0-9]{7,15}")
_MESSAGING: Final = "whatsapp_business_messaging"
_MANAGEMENT: Final = "whatsapp_business_management"
_TRACE_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_TOKEN_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"  # noqa: S105

_TEMPLATES: Final = (
    ("hello_world", "en_US", "UTILITY", "Hello World"),
    ("order_update", "en_US", "UTILITY", "Your order {{1}} has shipped."),
    ("appointment_reminder", "en_US", "UTILITY", "Reminder: your appointment is at {{1}}."),
    ("welcome_offer", "en_US", "MARKETING", "Welcome! Here is {{1}} off your first order."),
    ("login_code", "en_US", "AUTHENTICATION", "{{1}} is your verification code."),
)


@attrs.frozen
class HttpRequest:
    """One parsed HTTP request, as the server hands it to `World.handle`."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes = attrs.field(default=b"", repr=False)


@attrs.frozen(kw_only=True)
class TokenSpec:
    """How to create a token at start and on every `reset()` (one entry of a tokens file)."""

    value: str | None = attrs.field(default=None, repr=False)
    name: str | None = None
    kind: str = "system_user"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    expires_in: float | None = None
    state: str = "valid"
    variant: str | None = None
    allowed_wabas: tuple[str, ...] | None = None
    allowed_phone_numbers: tuple[str, ...] | None = None


_SPEC_KEYS: Final = frozenset(attrs.fields_dict(TokenSpec))


def _spec_from(entry: Any, where: str) -> TokenSpec:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: each token must be a JSON object")  # noqa: TRY004 - a bad file
    check_keys(where, entry, _SPEC_KEYS)
    value = entry.get("value")
    if value is not None and (
        not isinstance(value, str)
        or not value
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"{where}: value must be a non-empty string without spaces")
    name = opt_text(f"{where}: name", entry.get("name"))
    kind = entry.get("kind", "system_user")
    if kind not in TOKEN_KINDS:
        raise ValueError(f"{where}: kind must be one of {list(TOKEN_KINDS)}, got {kind!r}")
    expires_in = entry.get("expires_in")
    if expires_in is not None:
        expires_in = real(f"{where}: expires_in", expires_in, high=MAX_SECONDS)
    state = entry.get("state", "valid")
    variant = entry.get("variant")
    _check_token_state(state, variant, where)
    scopes = text_list(f"{where}: scopes", entry.get("scopes", list(DEFAULT_SCOPES)))
    return TokenSpec(
        value=value,
        name=name,
        kind=kind,
        scopes=scopes,
        expires_in=expires_in,
        state=state,
        variant=variant,
        allowed_wabas=_ids(entry.get("allowed_wabas"), f"{where}: allowed_wabas"),
        allowed_phone_numbers=_ids(
            entry.get("allowed_phone_numbers"), f"{where}: allowed_phone_numbers"
        ),
    )


def _ids(value: Any, name: str) -> tuple[str, ...] | None:
    return None if value is None else text_list(name, value, ids=True)


def _check_token_state(state: Any, variant: Any, where: str = "token") -> None:
    if not isinstance(state, str) or state not in TOKEN_STATES:
        raise ValueError(f"{where}: state must be one of {list(TOKEN_STATES)}, got {state!r}")
    allowed = TOKEN_VARIANTS.get(state, ())
    if variant is not None and (not isinstance(variant, str) or variant not in allowed):
        raise ValueError(
            f"{where}: variant of state {state!r} must be one of {list(allowed)}, got {variant!r}"
        )


def load_token_specs(tokens: Any) -> tuple[TokenSpec, ...] | None:
    """Read the `tokens=` argument: None, a path to a JSON tokens file, or a list of objects.

    The file holds `{"tokens": [...]}` or a bare list; each entry has the keys of `TokenSpec`.

    Raises:
        ValueError: The file is missing, not JSON, or an entry is invalid.
    """
    if tokens is None:
        return None
    if isinstance(tokens, (str, bytes)) or hasattr(tokens, "__fspath__"):
        try:
            with open(tokens, encoding="utf-8") as fh:  # noqa: PTH123 - str, bytes or PathLike
                data = json.load(fh)
        except OSError as exc:
            raise ValueError(f"cannot read the tokens file: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValueError(f"the tokens file is not valid JSON: {exc}") from None
    else:
        data = tokens
    if isinstance(data, Mapping):
        extra = sorted(set(data) - {"tokens"})
        if extra or "tokens" not in data:
            raise ValueError('the tokens file must be {"tokens": [...]} or a JSON list')
        data = data["tokens"]
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence) or not data:
        raise ValueError("tokens must be a non-empty list of token objects")
    specs = tuple(_spec_from(entry, f"tokens[{i}]") for i, entry in enumerate(data))
    values = [s.value for s in specs if s.value is not None]
    if len(values) != len(set(values)):
        raise ValueError("tokens: two entries have the same value")
    return specs


_DEMO_SPECS: Final = (
    TokenSpec(name="system_user", kind="system_user"),
    TokenSpec(name="user", kind="user", expires_in=SHORT_LIVED_SECONDS),
)


@attrs.frozen
class _Media:
    id: str
    phone_number_id: str
    mime_type: str
    data: bytes = attrs.field(repr=False)
    sha256: str


class _Clock:
    """The sandbox clock: wall time at start, plus real time elapsed unless frozen, plus jumps."""

    def __init__(self, frozen: bool) -> None:
        self.frozen = frozen
        self.restart()

    def restart(self) -> None:
        self._wall = time.time()
        self._mono = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        elapsed = 0.0 if self.frozen else time.monotonic() - self._mono
        return self._wall + elapsed + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


class World:
    """The whole simulated state and the Graph API logic; thread-safe.

    Args:
        seed: Seeds every random choice (token values, ids, faults); None picks one.
        tokens: Token specs to create at start and on `reset()`; None creates the demo tokens.
        freeze_clock: The clock moves only through `advance()`.
        max_records: How many requests and messages are kept (oldest dropped first).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        tokens: tuple[TokenSpec, ...] | None = None,
        freeze_clock: bool = False,
        max_records: int = 100_000,
    ) -> None:
        self._lock = threading.RLock()
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self._specs = tokens if tokens is not None else _DEMO_SPECS
        self._clock = _Clock(freeze_clock)
        self._max_records = max_records
        self.base_url = ""
        self.reset()

    # --- admin operations -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything since start: tokens, states, limits, faults, records, clock."""
        with self._lock:
            self._rng = random.Random(self.seed)  # noqa: S311 - simulation, not security
            self._clock.restart()
            self.app_secret = self._hex(32)
            self._tokens: dict[str, SandboxToken] = {}
            self._token_seq = 0
            self._account = "ok"
            self._account_variant: str | None = None
            self._numbers = dict.fromkeys(PHONE_NUMBER_IDS, "ok")
            self._limits = Limits()
            self._faults = Faults()
            self._messages: collections.deque[RecordedMessage] = collections.deque(
                maxlen=self._max_records
            )
            self._requests: collections.deque[RecordedRequest] = collections.deque(
                maxlen=self._max_records
            )
            self._seq = 0
            self._media: dict[str, _Media] = {}
            self._throughput: dict[str, tuple[int, int]] = {}
            self._pairs: dict[tuple[str, str], collections.deque[float]] = {}
            self._app_calls: tuple[int, int] = (0, 0)
            self.initial_tokens = tuple(self._create(spec) for spec in self._specs)

    @property
    def app_token(self) -> str:
        """The app access token `{app_id}|{app_secret}`, accepted by `debug_token`."""
        return f"{APP_ID}|{self.app_secret}"

    def now(self) -> float:
        """Return the sandbox clock's time (unix seconds)."""
        with self._lock:
            return self._clock.now()

    def advance(self, seconds: float) -> float:
        """Move the clock forward by *seconds*; return the new time.

        Raises:
            ValueError: *seconds* is not a finite number in [0, `MAX_SECONDS`], or the clock
                would pass `LATEST_TIME`.
        """
        step = real("seconds", seconds, high=MAX_SECONDS)
        with self._lock:
            if self._clock.now() + step > LATEST_TIME:
                raise ValueError("advance: the sandbox clock cannot pass the year 3000")
            self._clock.advance(step)
            return self._clock.now()

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
        spec = _spec_from(
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
        with self._lock:
            if spec.value is not None and spec.value in self._tokens:
                raise ValueError("issue_token: a token with this value exists")
            return self._create(spec)

    def _create(self, spec: TokenSpec) -> SandboxToken:
        now = self._clock.now()
        self._token_seq += 1
        value = spec.value or "EAAS" + "".join(self._rng.choices(_TOKEN_ALPHABET, k=120))
        token = SandboxToken(
            id=f"tok_{self._token_seq}",
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
        self._tokens[value] = token
        if spec.state != "valid":
            self._set_state(token, spec.state, spec.variant, now)
        return self._tokens[value]

    def tokens(self) -> tuple[SandboxToken, ...]:
        """Return every token, with its state as of now."""
        with self._lock:
            now = self._clock.now()
            return tuple(self._effective(t, now) for t in self._tokens.values())

    def find_token(self, token: str) -> SandboxToken:
        """Return the token whose value, id or fingerprint is *token*."""
        text("token", token)
        with self._lock:
            found = self._tokens.get(token)
            if found is None:
                found = next(
                    (t for t in self._tokens.values() if token in (t.id, t.fingerprint)), None
                )
            if found is None:
                raise ValueError("unknown token (pass its value, id or fingerprint)")
            return self._effective(found, self._clock.now())

    def set_token_state(self, token: str, state: str, variant: str | None = None) -> SandboxToken:
        """Put a token in *state* (see `TOKEN_STATES`), with an optional payload *variant*."""
        text("set_token_state: token", token)
        _check_token_state(state, variant, "set_token_state")
        with self._lock:
            found = self.find_token(token)
            self._set_state(self._tokens[found.value], state, variant, self._clock.now())
            return self._effective(self._tokens[found.value], self._clock.now())

    def _set_state(self, token: SandboxToken, state: str, variant: str | None, now: float) -> None:
        expires_at = token.expires_at
        if state == "expired" and (expires_at is None or expires_at > now):
            expires_at = now
        elif state == "valid" and expires_at is not None and expires_at <= now:
            # A token made valid again must not expire at once by the clock.
            expires_at = None
        if variant is None and state in TOKEN_VARIANTS:
            variant = TOKEN_VARIANTS[state][0]
        self._tokens[token.value] = attrs.evolve(
            token, state=state, variant=variant, expires_at=expires_at
        )

    def _effective(self, token: SandboxToken, now: float) -> SandboxToken:
        if token.state == "valid" and token.expires_at is not None and now >= token.expires_at:
            return attrs.evolve(token, state="expired", variant="subcode")
        return token

    def set_account_state(self, state: str, variant: str | None = None) -> None:
        """Put the WhatsApp Business Account in *state* (see `ACCOUNT_STATES`)."""
        if not isinstance(state, str) or state not in ACCOUNT_STATES:
            raise ValueError(f"state must be one of {list(ACCOUNT_STATES)}, got {state!r}")
        allowed = ACCOUNT_VARIANTS.get(state, ())
        if variant is not None and (not isinstance(variant, str) or variant not in allowed):
            raise ValueError(f"variant of {state!r} must be one of {list(allowed)}")
        with self._lock:
            self._account = state
            self._account_variant = variant or (allowed[0] if allowed else None)

    def account_state(self) -> tuple[str, str | None]:
        """Return the account state and its variant."""
        with self._lock:
            return self._account, self._account_variant

    def set_number_state(self, phone_number_id: str, state: str) -> None:
        """Put a phone number in *state* (see `NUMBER_STATES`)."""
        text("phone_number_id", phone_number_id)
        if not isinstance(state, str) or state not in NUMBER_STATES:
            raise ValueError(f"state must be one of {list(NUMBER_STATES)}, got {state!r}")
        with self._lock:
            if phone_number_id not in self._numbers:
                raise ValueError(
                    f"unknown phone number id {phone_number_id!r}; "
                    f"the sandbox's are {list(PHONE_NUMBER_IDS)}"
                )
            self._numbers[phone_number_id] = state

    def number_states(self) -> dict[str, str]:
        """Return each phone number's state."""
        with self._lock:
            return dict(self._numbers)

    def set_limits(self, limits: Limits) -> Limits:
        """Replace the rate limits (and restart their windows)."""
        with self._lock:
            self._limits = limits
            self._throughput.clear()
            self._pairs.clear()
            self._app_calls = (0, 0)
            return limits

    def limits(self) -> Limits:
        """Return the rate limits."""
        with self._lock:
            return self._limits

    def set_faults(self, faults: Faults) -> Faults:
        """Replace the injected faults."""
        with self._lock:
            self._faults = faults
            return faults

    def faults(self) -> Faults:
        """Return the injected faults."""
        with self._lock:
            return self._faults

    def messages(self) -> tuple[RecordedMessage, ...]:
        """Return every accepted message, oldest first."""
        with self._lock:
            return tuple(self._messages)

    def requests(self) -> tuple[RecordedRequest, ...]:
        """Return every request received, oldest first."""
        with self._lock:
            return tuple(self._requests)

    # --- random choices -------------------------------------------------------------------

    def _hex(self, n: int) -> str:
        return "".join(self._rng.choices("0123456789abcdef", k=n))

    def _trace(self) -> str:
        return "A" + "".join(self._rng.choices(_TRACE_ALPHABET, k=22))

    def _digits(self, n: int) -> str:
        return str(self._rng.randrange(10 ** (n - 1), 10**n))

    # --- the Graph API --------------------------------------------------------------------

    def handle(self, req: HttpRequest, host: str | None = None) -> Reply:
        """Answer one Graph API request and record it."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            now = self._clock.now()
            token = _bearer(req)
            ctx = _Call(seq=seq, now=now, req=req, token=token, host=host)
            reply = self._faulted(ctx)
            if reply is None:
                reply = self._route(ctx)
                if ctx.drop_after:
                    # Processed (a send is recorded), but the answer never reaches the client.
                    reply = Reply(0, drop=True, code=reply.code)
            latency = self._latency()
            if latency:
                reply = attrs.evolve(reply, delay=latency)
            self._record(ctx, reply)
            return reply

    def _latency(self) -> float:
        faults = self._faults
        if faults.latency_jitter:
            return faults.latency + faults.latency_jitter * self._rng.random()
        return faults.latency

    def _record(self, ctx: _Call, reply: Reply) -> None:
        if reply.drop:
            outcome, status = "dropped", None
        elif 200 <= reply.status < 300:
            outcome, status = "accepted", reply.status
        elif ctx.fault:
            outcome, status = "fault", reply.status
        else:
            outcome, status = "error", reply.status
        self._requests.append(
            RecordedRequest(
                seq=ctx.seq,
                at=ctx.now,
                method=ctx.req.method,
                path=ctx.req.path,
                endpoint=ctx.endpoint,
                token_fingerprint=fingerprint(ctx.token) if ctx.token else None,
                status=status,
                code=reply.code,
                outcome=outcome,
                phone_number_id=ctx.phone,
            )
        )

    def _faulted(self, ctx: _Call) -> Reply | None:
        faults = self._faults
        ctx.endpoint = _endpoint_name(ctx.req)
        total = faults.drop_rate + faults.html_502_rate + faults.error_rate
        if total <= 0:
            return None
        draw = self._rng.random()
        if draw < faults.drop_rate:
            if faults.drop_after_accept:
                ctx.drop_after = True
                return None
            ctx.fault = True
            return Reply(0, drop=True)
        draw -= faults.drop_rate
        if draw < faults.html_502_rate:
            ctx.fault = True
            return html_502()
        draw -= faults.html_502_rate
        if draw < faults.error_rate:
            ctx.fault = True
            code = self._rng.choice(faults.error_codes)
            return self._error(FLAKY_ENTRIES[code])
        return None

    def _error(self, name: str, headers: tuple[tuple[str, str], ...] = (), **values: Any) -> Reply:
        return render(
            name,
            fbtrace_id=self._trace(),
            code_as_string=self._faults.code_as_string,
            headers=headers + self._usage_headers(),
            app_id=APP_ID,
            **values,
        )

    def _ok(self, data: Any) -> Reply:
        return json_reply(200, data, self._usage_headers())

    def _usage_headers(self) -> tuple[tuple[str, str], ...]:
        limit = self._limits.app_calls
        if limit is None:
            return ()
        share = int(100 * self._app_calls[1] / limit)
        usage = {"call_count": share, "total_cputime": share // 4, "total_time": share // 2}
        return (("X-App-Usage", json.dumps(usage, separators=(",", ":"))),)

    def _authenticate(self, ctx: _Call) -> SandboxToken | Reply:
        if not ctx.token:
            return self._error("no_token")
        found = self._tokens.get(ctx.token)
        if found is None:
            return self._error("malformed")
        token = self._effective(found, ctx.now)
        error = self._token_error(token, ctx.now)
        return error if error is not None else token

    def _token_error(self, token: SandboxToken, now: float) -> Reply | None:
        name = _token_entry(token)
        if name is None:
            return None
        return self._error(
            name,
            expired_on=meta_time(token.expires_at if token.expires_at is not None else now),
            current_time=meta_time(now),
        )

    def _count_app_call(self, ctx: _Call) -> Reply | None:
        limits = self._limits
        if limits.app_calls is None:
            return None
        window = int(ctx.now // limits.app_window)
        start, count = self._app_calls
        count = count + 1 if start == window else 1
        self._app_calls = (window, count)
        if count > limits.app_calls:
            return self._error("app_usage")
        return None

    def _route(self, ctx: _Call) -> Reply:
        req = ctx.req
        parts = [p for p in req.path.split("/") if p]
        if parts[:2] == ["whatsapp_business", "attachments"]:
            return self._guarded(ctx, self._download)
        if parts and _VERSION_RE.fullmatch(parts[0]):
            parts = parts[1:]
        ctx.parts = parts
        if parts == ["oauth", "access_token"]:
            return self._exchange(ctx)
        if parts == ["debug_token"]:
            return self._debug_token(ctx)
        return self._guarded(ctx, self._object)

    def _guarded(self, ctx: _Call, then: Any) -> Reply:
        auth = self._authenticate(ctx)
        if isinstance(auth, Reply):
            return auth
        ctx.auth = auth
        limited = self._count_app_call(ctx)
        if limited is not None:
            return limited
        reply: Reply = then(ctx)
        return reply

    def _permitted(self, ctx: _Call, scope: str | None, phone: str | None) -> Reply | None:
        token = ctx.auth
        assert token is not None
        if token.state == "missing_permission":
            name = "missing_permission_200" if token.variant == "code_200" else "missing_permission"
            return self._error(name)
        if scope is not None and scope not in token.scopes:
            return self._error("missing_permission")
        if token.allowed_wabas is not None and BUSINESS_ACCOUNT_ID not in token.allowed_wabas:
            return self._error("missing_permission_200")
        if (
            phone is not None
            and token.allowed_phone_numbers is not None
            and phone not in token.allowed_phone_numbers
        ):
            return self._error("missing_permission_200")
        return None

    def _object(self, ctx: _Call) -> Reply:
        parts, method = ctx.parts, ctx.req.method
        if not parts:
            return self._error("unknown_path", path="/")
        object_id, edge = parts[0], "/".join(parts[1:])
        if object_id in self._numbers:
            ctx.phone = object_id
            handlers = {
                ("POST", "messages"): self._send,
                ("POST", "media"): self._upload,
                ("GET", ""): self._phone_number,
                ("GET", "whatsapp_business_profile"): self._profile,
            }
        elif object_id == BUSINESS_ACCOUNT_ID:
            handlers = {
                ("GET", ""): self._waba,
                ("GET", "phone_numbers"): self._phone_numbers,
                ("GET", "message_templates"): self._templates,
            }
        elif object_id in self._media:
            handlers = {("GET", ""): self._media_info, ("DELETE", ""): self._delete_media}
        else:
            return self._missing(method, object_id)
        handler = handlers.get((method, edge))
        if handler is not None:
            reply: Reply = handler(ctx)
            return reply
        if edge and not any(e == edge for _, e in handlers):
            return self._error("unknown_path", path="/" + edge)
        return self._missing(method, object_id)

    def _missing(self, method: str, object_id: str) -> Reply:
        return self._error("object_not_found", verb=method.lower(), object_id=object_id)

    # --- messages ---------------------------------------------------------------------------

    def _account_block(self, ctx: _Call) -> Reply | None:
        if self._account != "ok":
            name = {
                "locked": "account_locked",
                "restricted": (
                    "account_restricted_130497"
                    if self._account_variant == "code_130497"
                    else "account_restricted"
                ),
                "payment_issue": "account_payment_issue",
                "maintenance": "account_maintenance",
            }[self._account]
            return self._error(name)
        if ctx.phone is not None and self._numbers.get(ctx.phone) == "not_registered":
            return self._error("number_not_registered")
        return None

    def _send(self, ctx: _Call) -> Reply:
        denied = self._permitted(ctx, _MESSAGING, ctx.phone)
        if denied is not None:
            return denied
        body = _json_body(ctx.req)
        if body is None:
            return self._error("invalid_parameter", details="The request body is not a JSON object")
        if body.get("messaging_product") != "whatsapp":
            return self._error("required_parameter", parameter="messaging_product")
        if body.get("status") == "read":
            problem = check_read(body)
            if problem is not None:
                return self._error(problem[0], **problem[1])
            blocked = self._account_block(ctx)
            return blocked if blocked is not None else self._ok({"success": True})
        to = body.get("to")
        if to is None or to == "":
            return self._error("required_parameter", parameter="to")
        if not isinstance(to, str):
            return self._error("param_type", param="to", expected="a string")
        if not _RECIPIENT_RE.fullmatch(to):
            return self._error(
                "invalid_parameter", details=f"Invalid WhatsApp recipient: {to[:20]!r}"
            )
        problem = check_message(body)
        if problem is not None:
            return self._error(problem[0], **problem[1])
        kind = body.get("type") or "text"
        blocked = self._account_block(ctx) or self._rate_limited(ctx, to)
        if blocked is not None:
            return blocked
        return self._accept(ctx, body, to, kind)

    def _rate_limited(self, ctx: _Call, to: str) -> Reply | None:
        limits, phone = self._limits, ctx.phone
        assert phone is not None
        if limits.throughput is not None:
            second = int(ctx.now)
            start, count = self._throughput.get(phone, (second, 0))
            if start == second and count >= limits.throughput:
                wait = max(1, math.ceil(second + 1 - ctx.now))
                return self._error("throughput", headers=_retry_after(limits, wait))
        if limits.pair_limit is not None:
            sent = self._pairs.get((phone, _digits_of(to)))
            if sent is not None:
                while sent and sent[0] <= ctx.now - limits.pair_window:
                    sent.popleft()
                if len(sent) >= limits.pair_limit:
                    wait = max(1, math.ceil(sent[0] + limits.pair_window - ctx.now))
                    return self._error("pair_limit", headers=_retry_after(limits, wait))
        return None

    def _accept(self, ctx: _Call, body: Mapping[str, Any], to: str, kind: str) -> Reply:
        phone = ctx.phone
        token = ctx.auth
        assert phone is not None
        assert token is not None
        second = int(ctx.now)
        start, count = self._throughput.get(phone, (second, 0))
        self._throughput[phone] = (second, count + 1 if start == second else 1)
        if self._limits.pair_limit is not None:
            self._pairs.setdefault((phone, _digits_of(to)), collections.deque()).append(ctx.now)
        # Digits, colons and upper-case hex encode to base64 without "+" or "/", like wamids.
        raw = f"{_digits_of(to)}:{ctx.seq}:{self._hex(18).upper()}".encode()
        message_id = "wamid.HBgL" + base64.b64encode(raw).decode().rstrip("=")
        key = body.get("biz_opaque_callback_data")
        self._messages.append(
            RecordedMessage(
                id=message_id,
                phone_number_id=phone,
                recipient=to,
                type=kind,
                payload=json.loads(json.dumps(body)),
                idempotency_key=key if isinstance(key, str) else None,
                token_fingerprint=token.fingerprint,
                at=ctx.now,
                request_seq=ctx.seq,
            )
        )
        message: dict[str, Any] = {"id": message_id}
        if kind == "template":
            message["message_status"] = "accepted"
        return self._ok(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": _digits_of(to)}],
                "messages": [message],
            }
        )

    # --- media ------------------------------------------------------------------------------

    def _upload(self, ctx: _Call) -> Reply:
        denied = self._permitted(ctx, _MESSAGING, ctx.phone) or self._account_block(ctx)
        if denied is not None:
            return denied
        fields = _multipart(ctx.req)
        if fields is None or "file" not in fields:
            return self._error("required_parameter", parameter="file")
        if fields.get("messaging_product", (b"", ""))[0] != b"whatsapp":
            return self._error("required_parameter", parameter="messaging_product")
        data, mime = fields["file"]
        declared = fields.get("type", (b"", ""))[0].decode("utf-8", "replace")
        media_id = self._digits(16)
        assert ctx.phone is not None
        self._media[media_id] = _Media(
            media_id,
            ctx.phone,
            declared or mime or "application/octet-stream",
            data,
            hashlib.sha256(data).hexdigest(),
        )
        return self._ok({"id": media_id})

    def _media_info(self, ctx: _Call) -> Reply:
        media = self._media[ctx.parts[0]]
        denied = self._permitted(ctx, _MESSAGING, media.phone_number_id)
        if denied is not None:
            return denied
        base = f"http://{ctx.host}" if ctx.host else self.base_url
        url = (
            f"{base}/whatsapp_business/attachments/?mid={media.id}"
            f"&ext={int(ctx.now)}&hash={media.sha256[:16]}"
        )
        return self._ok(
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": len(media.data),
                "id": media.id,
            }
        )

    def _download(self, ctx: _Call) -> Reply:
        ctx.endpoint = "download_media"
        media = self._media.get(ctx.req.query.get("mid", ""))
        if media is None:
            return self._error("object_not_found", verb="get", object_id=ctx.req.query.get("mid"))
        denied = self._permitted(ctx, _MESSAGING, media.phone_number_id)
        if denied is not None:
            return denied
        return Reply(200, media.data, content_type=media.mime_type, headers=self._usage_headers())

    def _delete_media(self, ctx: _Call) -> Reply:
        media = self._media[ctx.parts[0]]
        denied = self._permitted(ctx, _MESSAGING, media.phone_number_id)
        if denied is not None:
            return denied
        del self._media[media.id]
        return self._ok({"success": True})

    # --- the account, numbers, profile, templates -----------------------------------------

    def _number_data(self, phone: str) -> dict[str, Any]:
        registered = self._numbers[phone] == "ok"
        return {
            "id": phone,
            "display_phone_number": _DISPLAY_NUMBERS[PHONE_NUMBER_IDS.index(phone)],
            "verified_name": "wa_auth Sandbox",
            "quality_rating": "GREEN",
            "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API" if registered else "NOT_APPLICABLE",
            "throughput": {"level": "STANDARD"},
            "name_status": "APPROVED",
        }

    def _phone_number(self, ctx: _Call) -> Reply:
        assert ctx.phone is not None
        denied = self._permitted(ctx, _MANAGEMENT, ctx.phone)
        return denied if denied is not None else self._ok(self._number_data(ctx.phone))

    def _profile(self, ctx: _Call) -> Reply:
        denied = self._permitted(ctx, _MANAGEMENT, ctx.phone)
        if denied is not None:
            return denied
        profile = {
            "about": "Rehearsing failures since today.",
            "address": "1 Loopback Way, 127.0.0.1",
            "description": "The wa_auth sandbox's business profile.",
            "email": "sandbox@example.com",
            "profile_picture_url": f"{self.base_url}/whatsapp_business/profile.jpg",
            "websites": ["https://example.com/"],
            "vertical": "PROF_SERVICES",
            "messaging_product": "whatsapp",
        }
        return self._ok({"data": [profile]})

    def _waba(self, ctx: _Call) -> Reply:
        denied = self._permitted(ctx, _MANAGEMENT, None)
        if denied is not None:
            return denied
        return self._ok(
            {
                "id": BUSINESS_ACCOUNT_ID,
                "name": "wa_auth Sandbox",
                "currency": "USD",
                "timezone_id": "1",
                "message_template_namespace": "sandbox_" + BUSINESS_ACCOUNT_ID,
            }
        )

    def _phone_numbers(self, ctx: _Call) -> Reply:
        denied = self._permitted(ctx, _MANAGEMENT, None)
        if denied is not None:
            return denied
        return self._page(ctx, [self._number_data(p) for p in PHONE_NUMBER_IDS])

    def _templates(self, ctx: _Call) -> Reply:
        denied = self._permitted(ctx, _MANAGEMENT, None)
        if denied is not None:
            return denied
        items = [
            {
                "name": name,
                "language": language,
                "status": "APPROVED",
                "category": category,
                "components": [{"type": "BODY", "text": text}],
                "id": f"77000000000000{i}",
            }
            for i, (name, language, category, text) in enumerate(_TEMPLATES, start=1)
        ]
        return self._page(ctx, items)

    def _page(self, ctx: _Call, items: list[dict[str, Any]]) -> Reply:
        query = ctx.req.query
        try:
            limit = int(query.get("limit", "25"))
            start = _decode_cursor(query["after"]) + 1 if "after" in query else 0
        except ValueError:
            return self._error("invalid_parameter", details="Invalid limit or cursor")
        if limit < 1:
            return self._error("invalid_parameter", details="limit must be positive")
        chunk = items[start : start + limit]
        data: dict[str, Any] = {"data": chunk}
        if chunk:
            end = start + len(chunk) - 1
            paging: dict[str, Any] = {
                "cursors": {"before": _encode_cursor(start), "after": _encode_cursor(end)}
            }
            if end + 1 < len(items):
                base = f"http://{ctx.host}" if ctx.host else self.base_url
                paging["next"] = f"{base}{ctx.req.path}?limit={limit}&after={_encode_cursor(end)}"
            data["paging"] = paging
        return self._ok(data)

    # --- tokens: debug_token and the long-lived exchange ------------------------------------

    def _debug_token(self, ctx: _Call) -> Reply:
        ctx.endpoint = "debug_token"
        caller = ctx.token or ctx.req.query.get("access_token")
        ctx.token = caller
        if caller != self.app_token:
            auth = self._authenticate(ctx)
            if isinstance(auth, Reply):
                return auth
        limited = self._count_app_call(ctx)
        if limited is not None:
            return limited
        inspected = ctx.req.query.get("input_token")
        if not inspected:
            return self._error("required_parameter", parameter="input_token")
        return self._ok({"data": self._token_data(inspected, ctx.now)})

    def _token_data(self, value: str, now: float) -> dict[str, Any]:
        if value == self.app_token:
            return {
                "app_id": APP_ID,
                "type": "APP",
                "application": "wa_auth sandbox",
                "is_valid": True,
                "scopes": [],
            }
        found = self._tokens.get(value)
        if found is None:
            return {
                "error": {
                    "code": 190,
                    "message": "Invalid OAuth access token - Cannot parse access token",
                },
                "is_valid": False,
                "scopes": [],
            }
        token = self._effective(found, now)
        system = token.kind == "system_user"
        targets = list(token.allowed_wabas or (BUSINESS_ACCOUNT_ID,))
        data: dict[str, Any] = {
            "app_id": APP_ID,
            "type": "SYSTEM_USER" if system else "USER",
            "application": "wa_auth sandbox",
            "data_access_expires_at": 0 if system else int(token.issued_at + _DATA_ACCESS_SECONDS),
            "expires_at": 0 if token.expires_at is None else int(token.expires_at),
            "is_valid": True,
            "issued_at": int(token.issued_at),
            "scopes": list(token.scopes),
            "granular_scopes": [
                {"scope": s, "target_ids": targets}
                for s in token.scopes
                if s in (_MESSAGING, _MANAGEMENT)
            ],
            "user_id": _SYSTEM_USER_ID if system else _USER_ID,
        }
        entry = _token_entry(token)
        if entry is not None:
            error = json.loads(self._token_error(token, now).body)["error"]  # type: ignore[union-attr]
            data["is_valid"] = False
            data["error"] = {"code": 190, "message": error["message"]}
            if "error_subcode" in error:
                data["error"]["subcode"] = int(error["error_subcode"])
        return data

    def _exchange(self, ctx: _Call) -> Reply:
        ctx.endpoint = "exchange_token"
        query = dict(ctx.req.query)
        if ctx.req.method == "POST" and ctx.req.body:
            query.update(_form(ctx.req.body))
        if query.get("grant_type") != "fb_exchange_token":
            return self._error("required_parameter", parameter="grant_type")
        if query.get("client_id") != APP_ID:
            return self._error("bad_app_id")
        if query.get("client_secret") != self.app_secret:
            return self._error("bad_client_secret")
        value = query.get("fb_exchange_token")
        if not value:
            return self._error("required_parameter", parameter="fb_exchange_token")
        ctx.token = value
        auth = self._authenticate(ctx)
        if isinstance(auth, Reply):
            return auth
        fresh = self._create(
            TokenSpec(
                kind=auth.kind,
                scopes=auth.scopes,
                expires_in=LONG_LIVED_SECONDS,
                allowed_wabas=auth.allowed_wabas,
                allowed_phone_numbers=auth.allowed_phone_numbers,
                name=(auth.name or auth.id) + ":long_lived",
            )
        )
        return self._ok(
            {"access_token": fresh.value, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS}
        )


@attrs.define
class _Call:
    """The working state of one request while `World` answers it."""

    seq: int
    now: float
    req: HttpRequest
    token: str | None
    host: str | None
    endpoint: str = "unknown"
    parts: list[str] = attrs.Factory(list)
    phone: str | None = None
    auth: SandboxToken | None = None
    fault: bool = False
    drop_after: bool = False


def _token_entry(token: SandboxToken) -> str | None:
    state = token.state
    if state in ("valid", "missing_permission"):
        return None
    if state == "malformed":
        return "malformed"
    return state + ("_no_subcode" if token.variant == "no_subcode" else "")


def _bearer(req: HttpRequest) -> str | None:
    auth = req.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return req.query.get("access_token") or None


def _endpoint_name(req: HttpRequest) -> str:
    parts = [p for p in req.path.split("/") if p]
    if parts[:2] == ["whatsapp_business", "attachments"]:
        return "download_media"
    if parts and _VERSION_RE.fullmatch(parts[0]):
        parts = parts[1:]
    if parts == ["debug_token"]:
        return "debug_token"
    if parts == ["oauth", "access_token"]:
        return "exchange_token"
    if len(parts) == 2:
        edge = parts[1]
        if edge == "messages":
            return "send_message"
        return {
            "media": "upload_media",
            "phone_numbers": "list_phone_numbers",
            "message_templates": "list_templates",
            "whatsapp_business_profile": "get_business_profile",
        }.get(edge, "unknown")
    if len(parts) == 1:
        if parts[0] in PHONE_NUMBER_IDS:
            return "get_phone_number"
        if parts[0] == BUSINESS_ACCOUNT_ID:
            return "get_business_account"
        return "delete_media" if req.method == "DELETE" else "get_media"
    return "unknown"


def _retry_after(limits: Limits, seconds: int) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", str(seconds)),) if limits.retry_after_header else ()


def _digits_of(recipient: str) -> str:
    return recipient.lstrip("+")


def _json_body(req: HttpRequest) -> dict[str, Any] | None:
    try:
        data = loads_strict(req.body or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(body.decode("utf-8", "replace")))


def _multipart(req: HttpRequest) -> dict[str, tuple[bytes, str]] | None:
    content_type = req.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    raw = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + req.body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not message.is_multipart():
        return None
    fields: dict[str, tuple[bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = (data, part.get_content_type())
    return fields


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("bad cursor") from None
    index = decoded.removeprefix("idx:")
    if index == decoded or not index.isascii() or not index.isdigit():
        raise ValueError("bad cursor")
    return int(index)
