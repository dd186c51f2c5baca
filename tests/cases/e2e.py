"""The end-to-end tables: every token, account and number state and every fault of the sandbox.

`tests/client/test_e2e_sync.py` runs them with `WhatsAppClient` and
`tests/client/test_e2e_async.py` with `AsyncWhatsAppClient`. Each row's `setup` puts the
sandbox in its state and returns the token to send with; the sandbox's payloads are Meta's
literal ones, never the client's table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import wa_auth
from wa_auth.providers import Token
from wa_auth.sandbox import Sandbox

TO = "+15551234567"

#: Puts the sandbox in a state and returns the token to send with.
Setup = Callable[[Sandbox], str]


def _issue(**kw: Any) -> Setup:
    return lambda sb: sb.issue_token(**kw)


def _state(state: str, variant: str | None = None) -> Setup:
    def setup(sb: Sandbox) -> str:
        token = sb.issue_token()
        sb.set_token_state(token, state, variant=variant)
        return token

    return setup


def _clock_expiry(sb: Sandbox) -> str:
    token = sb.issue_token(expires_in=60)
    sb.advance(61)
    return token


def _account(state: str, variant: str | None = None) -> Setup:
    def setup(sb: Sandbox) -> str:
        sb.set_account_state(state, variant=variant)
        return sb.issue_token()

    return setup


def _number(sb: Sandbox) -> str:
    sb.set_number_state(sb.phone_number_id, "not_registered")
    return sb.issue_token()


def _limits(**kw: Any) -> Setup:
    def setup(sb: Sandbox) -> str:
        sb.set_limits(**kw)
        return sb.issue_token()

    return setup


def _faults(**kw: Any) -> Setup:
    def setup(sb: Sandbox) -> str:
        sb.set_faults(**kw)
        return sb.issue_token()

    return setup


class SendFailure(NamedTuple):
    """A sandbox state whose send fails, and everything the client's error must say about it."""

    id: str
    setup: Setup
    cls: type[wa_auth.WhatsAppError]
    category: str
    retryable: bool
    retry_after: float | None
    http_status: int
    code: int | None
    subcode: int | None
    #: How many sends succeed first (to fill a limit).
    sends: int


SEND_FAILURES = [
    SendFailure("expired-463", _state("expired"), wa_auth.TokenExpiredError, "token_expired", False, None, 401, 190, 463, 0),
    SendFailure("expired-no-subcode", _state("expired", "no_subcode"), wa_auth.TokenExpiredError, "token_expired", False, None, 401, 190, None, 0),
    SendFailure("expired-by-clock", _clock_expiry, wa_auth.TokenExpiredError, "token_expired", False, None, 401, 190, 463, 0),
    SendFailure("password-changed-460", _state("revoked_password_changed"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, 460, 0),
    SendFailure("password-changed-no-subcode", _state("revoked_password_changed", "no_subcode"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    SendFailure("deauthorized-458", _state("revoked_deauthorized"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, 458, 0),
    SendFailure("deauthorized-no-subcode", _state("revoked_deauthorized", "no_subcode"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    SendFailure("logged-out-467", _state("revoked_logged_out"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, 467, 0),
    SendFailure("logged-out-no-subcode", _state("revoked_logged_out", "no_subcode"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    SendFailure("malformed", _state("malformed"), wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    SendFailure("unknown-token", lambda sb: "EAAnot-a-token-the-sandbox-issued", wa_auth.TokenRevokedError, "token_revoked", False, None, 401, 190, None, 0),
    SendFailure("missing-permission-10", _state("missing_permission"), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 10, None, 0),
    SendFailure("missing-permission-200", _state("missing_permission", "code_200"), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 200, None, 0),
    SendFailure("scope-missing-10", _issue(scopes=["whatsapp_business_management"]), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 10, None, 0),
    SendFailure("waba-not-assigned-200", _issue(allowed_wabas=["102999999999999"]), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 200, None, 0),
    SendFailure("number-not-assigned-200", _issue(allowed_phone_numbers=["109000000000002"]), wa_auth.InsufficientPermissionError, "insufficient_permission", False, None, 403, 200, None, 0),
    SendFailure("account-locked-131031", _account("locked"), wa_auth.AccountStateError, "account_state", False, None, 403, 131031, None, 0),
    SendFailure("account-restricted-368", _account("restricted"), wa_auth.AccountStateError, "account_state", False, 3600.0, 403, 368, None, 0),
    SendFailure("account-restricted-130497", _account("restricted", "code_130497"), wa_auth.AccountStateError, "account_state", False, None, 403, 130497, None, 0),
    SendFailure("account-payment-131042", _account("payment_issue"), wa_auth.AccountStateError, "account_state", False, 3600.0, 400, 131042, None, 0),
    SendFailure("account-maintenance-131057", _account("maintenance"), wa_auth.AccountStateError, "account_state", True, 300.0, 500, 131057, None, 0),
    SendFailure("number-not-registered-133010", _number, wa_auth.AccountStateError, "account_state", False, None, 400, 133010, None, 0),
    SendFailure("throughput-130429-retry-after", _limits(throughput=2), wa_auth.RateLimitError, "rate_limited", True, 1.0, 400, 130429, None, 2),
    SendFailure("throughput-130429-no-header", _limits(throughput=1, retry_after_header=False), wa_auth.RateLimitError, "rate_limited", True, 1.0, 400, 130429, None, 1),
    SendFailure("pair-131056-retry-after", _limits(pair_limit=1, pair_window=30), wa_auth.RateLimitError, "rate_limited", True, 30.0, 400, 131056, None, 1),
    SendFailure("pair-131056-no-header", _limits(pair_limit=2, retry_after_header=False), wa_auth.RateLimitError, "rate_limited", True, 6.0, 400, 131056, None, 2),
    SendFailure("app-usage-4", _limits(app_calls=2), wa_auth.RateLimitError, "rate_limited", True, 300.0, 400, 4, None, 2),
    SendFailure("flaky-500-code-1", _faults(error_rate=1.0, error_codes=[1]), wa_auth.TransientError, "transient", True, 1.0, 500, 1, None, 0),
    SendFailure("flaky-503-code-2", _faults(error_rate=1.0, error_codes=[2]), wa_auth.TransientError, "transient", True, 1.0, 503, 2, None, 0),
    SendFailure("flaky-500-code-131000", _faults(error_rate=1.0, error_codes=[131000]), wa_auth.TransientError, "transient", True, 1.0, 500, 131000, None, 0),
    SendFailure("flaky-503-code-131016", _faults(error_rate=1.0, error_codes=[131016]), wa_auth.TransientError, "transient", True, 2.0, 503, 131016, None, 0),
    SendFailure("proxy-html-502", _faults(html_502_rate=1.0), wa_auth.TransientError, "transient", True, 1.0, 502, None, None, 0),
]  # fmt: skip


class StringCode(NamedTuple):
    """A Meta error re-wrapped by a BSP, with `code` (and `error_subcode`) as strings."""

    id: str
    setup: Setup
    cls: type[wa_auth.WhatsAppError]
    code: int
    subcode: int | None


STRING_CODES = [
    StringCode("expired-463", _state("expired"), wa_auth.TokenExpiredError, 190, 463),
    StringCode("logged-out-467", _state("revoked_logged_out"), wa_auth.TokenRevokedError, 190, 467),
    StringCode("locked-131031", _account("locked"), wa_auth.AccountStateError, 131031, None),
    StringCode("flaky-131016", _faults(error_rate=1.0, error_codes=[131016]), wa_auth.TransientError, 131016, None),
]  # fmt: skip


class Rotating:
    """A provider that moves to its next token when told the current one is dead."""

    def __init__(self, *values: str) -> None:
        self.tokens = [Token(v) for v in values]

    def get_token(self) -> Token:
        return self.tokens[0]

    async def aget_token(self) -> Token:
        return self.tokens[0]

    def invalidate(self, token: Token, reason: object) -> None:
        if len(self.tokens) > 1 and token == self.tokens[0]:
            self.tokens.pop(0)
