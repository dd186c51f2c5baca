"""`wa-auth check`: the token's health (debug_token) and the phone number's, as one line.

For a scheduled n8n workflow: exit 0 when the token can send, the failure's category code when
it cannot (expired 3, revoked 4, a missing scope or asset 5, the number or account blocked 6),
and 12 when it is valid but expires within `--warn-days`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

import attrs

from wa_auth._answers import MANAGEMENT_SCOPES, MESSAGING_SCOPES
from wa_auth._cli import _codes, _config
from wa_auth._cli._output import error_object, plain_error, write
from wa_auth._effects import PolicyFlow, arun
from wa_auth._effects import run as run_flow
from wa_auth.errors import ApiError, WhatsAppError
from wa_auth.models import PhoneNumber, TokenHealth

_DAY: Final = 86400.0


def _health_error(health: TokenHealth) -> dict[str, Any] | None:
    """Return the error object of an unhealthy token, or None when it can send."""
    if not health.valid:
        category = health.error_category or "token_revoked"
        return plain_error(
            category,
            health.error or "debug_token reports the token as invalid",
            token_fingerprint=health.token_fingerprint,
            rule="check/debug_token",
            operator_action="Generate a new access token and deploy it.",
        )
    if health.missing_messaging_scopes:
        return plain_error(
            "insufficient_permission",
            f"the token lacks {', '.join(health.missing_messaging_scopes)}: it cannot send",
            token_fingerprint=health.token_fingerprint,
            rule="check/scopes",
            operator_action="Grant the system user the missing permission and issue a new token.",
        )
    if health.waba_in_scope is False:
        return plain_error(
            "insufficient_permission",
            "the token's scopes do not include the business account (WA_BUSINESS_ACCOUNT_ID)",
            token_fingerprint=health.token_fingerprint,
            rule="check/waba",
            operator_action="Assign the WhatsApp Business Account to the system user.",
        )
    return None


def _number_error(number: PhoneNumber) -> dict[str, Any] | None:
    if number.blocked:
        return plain_error(
            "account_state",
            f"phone number {number.id} cannot send: health_status can_send_message is BLOCKED "
            f"(status {number.status})",
            rule="check/number",
            operator_action="Check the number and the account in WhatsApp Manager.",
        )
    return None


def line(
    health: TokenHealth | None,
    number: PhoneNumber | None,
    error: dict[str, Any] | None,
    *,
    phone_number_id: str | None,
    business_account_id: str | None,
    warn_days: float | None,
    number_checked: bool,
) -> dict[str, Any]:
    """Return the check line (the schema's `check` shape)."""
    expires_in = health.expires_in if health is not None else None
    expiring = (
        error is None
        and warn_days is not None
        and expires_in is not None
        and expires_in < warn_days * _DAY
    )
    if error is not None:
        code = _codes.for_category(error["category"])
    else:
        code = _codes.EXPIRING if expiring else _codes.OK
    scopes = list(health.scopes) if health is not None else []
    return {
        "ok": code == _codes.OK,
        "exit_code": code,
        "category": error["category"] if error is not None else None,
        "valid": health.valid if health is not None else None,
        "token_fingerprint": health.token_fingerprint if health is not None else None,
        "token_type": health.token_type if health is not None else None,
        "expires_at": health.expires_at if health is not None else None,
        "expires_in": round(expires_in, 1) if expires_in is not None else None,
        "expires_in_days": round(expires_in / _DAY, 2) if expires_in is not None else None,
        "warn_days": warn_days,
        "expiring": bool(expiring),
        "scopes": scopes,
        # An invalid token has no scopes to miss: Meta names none for it.
        "missing_scopes": [
            s
            for s in (*MESSAGING_SCOPES, *MANAGEMENT_SCOPES)
            if health is not None and health.valid and s not in scopes
        ],
        "business_account_id": business_account_id,
        "waba_access": health.waba_in_scope if health is not None else None,
        "phone_number_id": phone_number_id,
        "number_access": (
            None if not number_checked else number is not None and not number.blocked
        ),
        "number_status": number.status if number is not None else None,
        "can_send_message": number.can_send_message if number is not None else None,
        "error": error,
    }


def _span(seconds: float) -> str:
    """Say how long *seconds* is for a person: days, else hours, else minutes (rounded)."""
    for unit, size in (("day", _DAY), ("hour", 3600.0)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    if seconds >= 60:
        count = int(seconds // 60)
        return f"{count} minute{'s' if count != 1 else ''}"
    return "less than a minute" if seconds > 0 else "no time: it has expired"


def _text(result: dict[str, Any]) -> str:
    if result["valid"] is None:
        return f"check failed: {result['error']['message']} (exit {result['exit_code']})"
    parts = [f"token {result['token_fingerprint']}: {'valid' if result['valid'] else 'INVALID'}"]
    if result["valid"]:
        seconds = result["expires_in"]
        parts.append("never expires" if seconds is None else f"expires in {_span(seconds)}")
        missing = result["missing_scopes"]
        parts.append(f"missing scopes: {', '.join(missing) if missing else 'none'}")
    if result["number_access"] is not None:
        parts.append(
            f"number {result['phone_number_id']}: "
            f"{'can send' if result['number_access'] else 'CANNOT send'}"
        )
    if result["error"] is not None:
        parts.append(f"{result['category']}: {result['error']['message']}")
    elif result["expiring"]:
        parts.append(f"EXPIRING within {result['warn_days']:g} days")
    return "; ".join(parts) + f" (exit {result['exit_code']})"


def _ends(health: TokenHealth, options: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """Return the health's error, and whether the number is worth probing too."""
    error = _health_error(health)
    can_manage = not health.missing_management_scopes
    return error, error is None and options["phone_number_id"] is not None and can_manage


def _line(
    found: tuple[TokenHealth | None, PhoneNumber | None, dict[str, Any] | None, bool],
    options: dict[str, Any],
    warn_days: float | None,
) -> dict[str, Any]:
    health, number, error, checked = found
    return line(
        health,
        number,
        error,
        phone_number_id=options["phone_number_id"],
        business_account_id=options["business_account_id"],
        warn_days=warn_days,
        number_checked=checked,
    )


@attrs.frozen
class Health:
    """Ask the client for its token's health (`token_health`), from its cache unless *refresh*."""

    refresh: bool

    def perform(self, client: Any, /) -> TokenHealth:
        return client.token_health(refresh=self.refresh)  # type: ignore[no-any-return]

    async def aperform(self, client: Any, /) -> TokenHealth:
        return await client.token_health(refresh=self.refresh)  # type: ignore[no-any-return]


@attrs.frozen
class Number:
    """Ask the client for its phone number (`get_phone_number`)."""

    def perform(self, client: Any, /) -> PhoneNumber:
        return client.get_phone_number()  # type: ignore[no-any-return]

    async def aperform(self, client: Any, /) -> PhoneNumber:
        return await client.get_phone_number()  # type: ignore[no-any-return]


def checking(
    options: dict[str, Any], warn_days: float | None, *, refresh: bool
) -> PolicyFlow[dict[str, Any]]:
    """The check, written once as effects: the token's health, then (when it can) the number.

    `check` drives it with a blocking client, `acheck` with an asyncio one. A failure of the
    health call, or an API failure of the number's, becomes the line's error; anything else a
    client raises propagates.
    """
    health: TokenHealth | None = None
    number: PhoneNumber | None = None
    error: dict[str, Any] | None
    checked = False
    try:
        health = yield Health(refresh)
    except WhatsAppError as exc:
        error = error_object(exc)
    else:
        error, checked = _ends(health, options)
        if checked:
            try:
                number = yield Number()
            except ApiError as exc:
                error = error_object(exc)
            else:
                error = _number_error(number)
    return _line((health, number, error, checked), options, warn_days)


def check(
    client: Any, options: dict[str, Any], warn_days: float | None, *, refresh: bool = True
) -> dict[str, Any]:
    """Return the check line of *client*'s token and number (blocking client).

    *options* are the client's (`_config.client_options`): they name the number and the WABA.
    """
    return run_flow(checking(options, warn_days, refresh=refresh), client)


async def acheck(
    client: Any, options: dict[str, Any], warn_days: float | None, *, refresh: bool = True
) -> dict[str, Any]:
    """Return the check line of *client*'s token and number (asyncio client; see `check`)."""
    return await arun(checking(options, warn_days, refresh=refresh), client)


def run(args: argparse.Namespace) -> int:
    """Check the token and the number; print one line; return its exit code."""
    from wa_auth._client import WhatsAppClient

    environ = _config.environ()
    options = _config.client_options(args, environ)
    httpx = getattr(args, "transport", "stdlib") == "httpx"
    with (
        _config.state_file(args, environ, options),
        WhatsAppClient(transport="httpx" if httpx else "stdlib", **options) as client,
    ):
        result = check(client, options, args.warn_days)
    if args.format == "text":
        sys.stdout.write(_text(result) + "\n")
    else:
        write(result)
    return int(result["exit_code"])
