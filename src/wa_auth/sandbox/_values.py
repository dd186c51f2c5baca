"""The sandbox's public values: tokens, limits, faults, and the records of what it received."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from wa_auth.sandbox._checks import (
    MAX_LATENCY,
    MAX_SECONDS,
    flag,
    iterable,
    opt_positive_int,
    real,
)

__all__ = [
    "ACCOUNT_STATES",
    "ACCOUNT_VARIANTS",
    "DEFAULT_SCOPES",
    "NUMBER_STATES",
    "TOKEN_KINDS",
    "TOKEN_STATES",
    "TOKEN_VARIANTS",
    "Faults",
    "Limits",
    "RecordedMessage",
    "RecordedRequest",
    "SandboxToken",
    "SeededFault",
]

#: The states a token can be put in; `expired` is also reached when the sandbox clock passes
#: the token's `expires_at`.
TOKEN_STATES: Final = (
    "valid",
    "expired",
    "revoked_password_changed",
    "revoked_deauthorized",
    "revoked_logged_out",
    "malformed",
    "missing_permission",
)
#: The payload variants of each token state; the first is the default.
TOKEN_VARIANTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "expired": ("subcode", "no_subcode"),
        "revoked_password_changed": ("subcode", "no_subcode"),
        "revoked_deauthorized": ("subcode", "no_subcode"),
        "revoked_logged_out": ("subcode", "no_subcode"),
        "missing_permission": ("code_10", "code_200"),
    }
)
#: The states of the WhatsApp Business Account. These are not token states: a new token does
#: not fix a locked account.
ACCOUNT_STATES: Final = ("ok", "locked", "restricted", "payment_issue", "maintenance")
#: The payload variants of each account state; the first is the default.
ACCOUNT_VARIANTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "restricted": ("code_368", "code_130497"),
    }
)
#: The states of a phone number.
NUMBER_STATES: Final = ("ok", "not_registered", "restricted")
#: The token kinds, as `debug_token` reports them (`USER`, `SYSTEM_USER`).
TOKEN_KINDS: Final = ("system_user", "user")
#: The scopes a token gets unless told otherwise.
DEFAULT_SCOPES: Final = (
    "whatsapp_business_messaging",
    "whatsapp_business_management",
    "business_management",
)


def _number(high: float, *, low_open: bool = False) -> Callable[[Any, Any, Any], None]:
    def check(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        real(attr.name, value, high=high, low_open=low_open)

    return check


def _count(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    opt_positive_int(attr.name, value)


def _flag(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    flag(attr.name, value)


_SHARE: Final = _number(1.0)
_WINDOW: Final = _number(MAX_SECONDS, low_open=True)
_LATENCY: Final = _number(MAX_LATENCY)


@attrs.frozen
class SandboxToken:
    """A token the sandbox knows, with its state as of the sandbox clock.

    The value is hidden from `repr`; `fingerprint` is the project's one fingerprint format.
    """

    id: str
    value: str = attrs.field(repr=False)
    fingerprint: str
    kind: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float | None
    state: str = "valid"
    variant: str | None = None
    allowed_wabas: tuple[str, ...] | None = None
    allowed_phone_numbers: tuple[str, ...] | None = None
    name: str | None = None

    def to_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """Return JSON-safe data; the value only when *reveal* is true."""
        data = attrs.asdict(self)
        if not reveal:
            del data["value"]
        for key in ("scopes", "allowed_wabas", "allowed_phone_numbers"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


@attrs.frozen(kw_only=True)
class Limits:
    """The sandbox's rate limits; None switches a limit off.

    Args:
        throughput: Messages accepted per second per phone number before code 130429.
        pair_limit: Messages to one recipient within *pair_window* before code 131056.
        pair_window: Seconds of the pair-limit window (Meta: about one message per 6 seconds);
            positive, at most `MAX_SECONDS`.
        app_calls: Graph calls per *app_window* before code 4; `X-App-Usage` reports the share.
        app_window: Seconds of the app-usage window.
        retry_after_header: Send `Retry-After` (seconds until the window frees a slot) with
            130429 and 131056.
    """

    throughput: int | None = attrs.field(default=None, validator=_count)
    pair_limit: int | None = attrs.field(default=None, validator=_count)
    pair_window: float = attrs.field(default=6.0, validator=_WINDOW)
    app_calls: int | None = attrs.field(default=None, validator=_count)
    app_window: float = attrs.field(default=3600.0, validator=_WINDOW)
    retry_after_header: bool = attrs.field(default=True, validator=_flag)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        return attrs.asdict(self)


#: The codes the `error_rate` fault may answer with.
FLAKY_CODES: Final = (1, 2, 131000, 131016)


def _codes(value: Any) -> tuple[int, ...]:
    codes = iterable("error_codes", value, "integers")
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or code not in FLAKY_CODES:
            raise ValueError(
                f"error_codes must be some of {', '.join(map(str, FLAKY_CODES))}, got {code!r}"
            )
    if not codes:
        raise ValueError("error_codes must not be empty")
    return codes


def _check_shares(inst: Faults, _attr: attrs.Attribute[Any], _value: object) -> None:
    if inst.error_rate + inst.html_502_rate + inst.drop_rate > 1.0:
        raise ValueError("error_rate + html_502_rate + drop_rate must not exceed 1")


def _check_latency(inst: Faults, _attr: attrs.Attribute[Any], _value: object) -> None:
    if inst.latency + inst.latency_jitter > MAX_LATENCY:
        raise ValueError(f"latency + latency_jitter must not exceed {MAX_LATENCY:g} seconds")


@attrs.frozen(kw_only=True)
class Faults:
    """Injected faults; every choice is drawn from the sandbox's seeded random generator.

    Args:
        error_rate: Share of Graph requests answered with a 500/503 error (codes from
            *error_codes*, chosen at random).
        error_codes: The codes of those errors: some of 1, 2, 131000, 131016.
        html_502_rate: Share of requests answered with a proxy's HTML 502 page.
        drop_rate: Share of requests whose connection is closed without an answer.
        drop_after_accept: Drop only after the request was processed, so a dropped send is
            recorded as accepted (the "maybe delivered" case); otherwise drop before.
        latency: Seconds added to every answer (at most `MAX_LATENCY` with the jitter).
        latency_jitter: Up to this many more seconds, at random.
        code_as_string: Send `code` and `error_subcode` as JSON strings, as a BSP re-wrapping
            Meta's error does.
    """

    error_rate: float = attrs.field(default=0.0, validator=_SHARE)
    error_codes: tuple[int, ...] = attrs.field(default=FLAKY_CODES, converter=_codes)
    html_502_rate: float = attrs.field(default=0.0, validator=_SHARE)
    drop_rate: float = attrs.field(default=0.0, validator=[_SHARE, _check_shares])
    drop_after_accept: bool = attrs.field(default=False, validator=_flag)
    latency: float = attrs.field(default=0.0, validator=_LATENCY)
    latency_jitter: float = attrs.field(default=0.0, validator=[_LATENCY, _check_latency])
    code_as_string: bool = attrs.field(default=False, validator=_flag)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        data = attrs.asdict(self)
        data["error_codes"] = list(self.error_codes)
        return data


@attrs.frozen
class RecordedMessage:
    """A message the sandbox accepted (answered with a `wamid`).

    `payload` is the JSON body as received; `idempotency_key` is its
    `biz_opaque_callback_data`.
    """

    id: str
    phone_number_id: str
    recipient: str
    type: str
    payload: Mapping[str, Any] = attrs.field(repr=False, eq=False, hash=False)
    idempotency_key: str | None
    token_fingerprint: str
    at: float
    request_seq: int

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        data = attrs.asdict(self)
        data["payload"] = dict(self.payload)
        return data


@attrs.frozen
class RecordedRequest:
    """A request the sandbox received, accepted or not.

    `outcome` is `accepted` (2xx), `error` (a Graph error answer), `fault` (an injected
    5xx or HTML 502, or a seeded fault's answer) or `dropped` (the connection was closed
    without an answer). `fault_id` names the seeded fault that answered (see
    `Sandbox.fail_next`). The path is recorded without its query string, which may carry
    tokens.
    """

    seq: int
    at: float
    method: str
    path: str
    endpoint: str
    token_fingerprint: str | None
    status: int | None
    code: int | None
    outcome: str
    phone_number_id: str | None = None
    fault_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class SeededFault:
    """A fault seeded for the next matching requests (`Sandbox.fail_next`), as it stands.

    Args:
        id: Its name in `requests()` (`RecordedRequest.fault_id`): `fault_1`, `fault_2`...
        code: The answer: a Graph error code (see `SEEDED_FAULTS`) or `drop`,
            `drop_after_accept`, `html_502`.
        times: How many matching requests it answers; None until cleared.
        remaining: How many it still answers; None until cleared.
        phone_number_id: Only requests for this phone number; None any.
        recipient: Only sends to this recipient (compared by digits); None any.
        endpoint: The requests it answers, by `RecordedRequest.endpoint` (`send_message`).
        retry_after: The `Retry-After` seconds sent with it; None sends none.
        regain_access_minutes: The `estimated_time_to_regain_access` of an 80007's
            `X-Business-Use-Case-Usage`; None for other codes.
    """

    id: str
    code: int | str
    times: int | None
    remaining: int | None
    phone_number_id: str | None = None
    recipient: str | None = None
    endpoint: str = "send_message"
    retry_after: int | None = None
    regain_access_minutes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data."""
        return attrs.asdict(self)
