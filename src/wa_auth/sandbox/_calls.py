"""One Graph request while it is answered: its working state and the answers every handler gives.

A `Call` carries the request, the sandbox time it arrived at, the token it presented and what
the pipeline learned so far (the endpoint, the phone number, the authenticated token). Its
methods render Meta's answers with the world's trace ids and usage headers, and make the
checks every handler shares: the token, the app-usage budget, the permission, the account.
The caller holds `World.lock` throughout.
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

from wa_auth.sandbox._catalogue import (
    SEEDED_ENTRIES,
    Reply,
    html_502,
    json_reply,
    meta_time,
    render,
)
from wa_auth.sandbox._seeded import fault_values, take
from wa_auth.sandbox._values import SandboxToken
from wa_auth.sandbox._wire import HttpRequest
from wa_auth.sandbox._world import APP_ID, BUSINESS_ACCOUNT_ID, World, effective

__all__ = ["MANAGEMENT", "MESSAGING", "Call", "token_entry"]

MESSAGING: Final = "whatsapp_business_messaging"
MANAGEMENT: Final = "whatsapp_business_management"

_ACCOUNT_ENTRIES: Final = {
    "locked": "account_locked",
    "payment_issue": "account_payment_issue",
    "maintenance": "account_maintenance",
}


def token_entry(token: SandboxToken) -> str | None:
    """Return the catalogue entry a call with *token* is answered with; None if it may call."""
    state = token.state
    if state in ("valid", "missing_permission"):
        return None
    if state == "malformed":
        return "malformed"
    return state + ("_no_subcode" if token.variant == "no_subcode" else "")


def _buc_usage(minutes: int) -> str:
    # Meta's documented shape of a throttled business use case: usage at 100%, and the wait.
    usage = {
        BUSINESS_ACCOUNT_ID: [
            {
                "type": "whatsapp_business_management",
                "call_count": 100,
                "total_cputime": 25,
                "total_time": 25,
                "estimated_time_to_regain_access": minutes,
            }
        ]
    }
    return json.dumps(usage, separators=(",", ":"))


@attrs.define
class Call:
    """The working state of one request while the world answers it."""

    world: World
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
    #: The seeded fault that answered, for the record.
    fault_id: str | None = None

    # --- answers ----------------------------------------------------------------------------

    def error(
        self, name: str, /, headers: tuple[tuple[str, str], ...] = (), **values: Any
    ) -> Reply:
        """Render the catalogue entry *name* with a trace id and the usage headers."""
        return render(
            name,
            fbtrace_id=self.world.trace_id(),
            code_as_string=self.world.state.faults.code_as_string,
            headers=headers + self.usage_headers(),
            app_id=APP_ID,
            **values,
        )

    def ok(self, data: Any) -> Reply:
        """Answer 200 with *data* and the usage headers."""
        return json_reply(200, data, self.usage_headers())

    def usage_headers(self) -> tuple[tuple[str, str], ...]:
        """Return `X-App-Usage` when an app-call budget is set."""
        state = self.world.state
        limit = state.limits.app_calls
        if limit is None:
            return ()
        share = int(100 * state.app_calls[1] / limit)
        usage = {"call_count": share, "total_cputime": share // 4, "total_time": share // 2}
        return (("X-App-Usage", json.dumps(usage, separators=(",", ":"))),)

    def base(self) -> str:
        """Return the URL the client reached the sandbox at (for URLs in answers)."""
        return f"http://{self.host}" if self.host else self.world.base_url

    def seeded(
        self, phone: str | None, *, recipient: str | None = None, body: Any = None
    ) -> Reply | None:
        """Answer with the seeded fault this request meets; None lets it go on.

        A `drop_after_accept` fault also lets it go on: the pipeline drops the connection
        after the request is processed.
        """
        is_template = isinstance(body, dict) and body.get("type") == "template"
        fault = take(
            self.world.state.seeded,
            endpoint=self.endpoint,
            phone=phone,
            recipient=recipient,
            template=is_template,
        )
        if fault is None:
            return None
        self.fault_id = fault.id
        if fault.code == "drop_after_accept":
            self.drop_after = True
            return None
        self.fault = True
        if fault.code == "drop":
            return Reply(0, drop=True)
        if fault.code == "html_502":
            return html_502()
        assert isinstance(fault.code, int)
        headers: tuple[tuple[str, str], ...] = ()
        if fault.retry_after is not None:
            headers += (("Retry-After", str(fault.retry_after)),)
        if fault.regain_access_minutes is not None:
            headers += (("X-Business-Use-Case-Usage", _buc_usage(fault.regain_access_minutes)),)
        return self.error(SEEDED_ENTRIES[fault.code], headers=headers, **fault_values(fault, body))

    # --- the checks every handler shares --------------------------------------------------

    def authenticate(self) -> SandboxToken | Reply:
        """Return the presented token if it may call, else Meta's answer for it."""
        if not self.token:
            return self.error("no_token")
        found = self.world.state.tokens.get(self.token)
        if found is None:
            return self.error("malformed")
        token = effective(found, self.now)
        refused = self.token_error(token)
        return refused if refused is not None else token

    def token_error(self, token: SandboxToken) -> Reply | None:
        """Return Meta's answer to a call with *token*, or None if it may call."""
        name = token_entry(token)
        if name is None:
            return None
        expires_at = token.expires_at if token.expires_at is not None else self.now
        return self.error(name, expired_on=meta_time(expires_at), current_time=meta_time(self.now))

    def count_app_call(self) -> Reply | None:
        """Count the call against the app-usage budget; code 4 once it is spent."""
        state = self.world.state
        limits = state.limits
        if limits.app_calls is None:
            return None
        window = int(self.now // limits.app_window)
        start, count = state.app_calls
        count = count + 1 if start == window else 1
        state.app_calls = (window, count)
        if count > limits.app_calls:
            return self.error("app_usage")
        return None

    def permitted(self, scope: str | None, phone: str | None) -> Reply | None:
        """Return code 10 or 200 if the token lacks *scope* or the WABA / *phone* asset."""
        token = self.auth
        assert token is not None
        if token.state == "missing_permission":
            name = "missing_permission_200" if token.variant == "code_200" else "missing_permission"
            return self.error(name)
        if scope is not None and scope not in token.scopes:
            return self.error("missing_permission")
        if token.allowed_wabas is not None and BUSINESS_ACCOUNT_ID not in token.allowed_wabas:
            return self.error("missing_permission_200")
        if (
            phone is not None
            and token.allowed_phone_numbers is not None
            and phone not in token.allowed_phone_numbers
        ):
            return self.error("missing_permission_200")
        return None

    def account_block(self) -> Reply | None:
        """Return the account's or the phone number's refusal of a send, or None."""
        state = self.world.state
        if state.account != "ok":
            if state.account == "restricted":
                restricted = state.account_variant == "code_130497"
                return self.error(
                    "account_restricted_130497" if restricted else "account_restricted"
                )
            return self.error(_ACCOUNT_ENTRIES[state.account])
        if self.phone is not None and state.numbers.get(self.phone) == "not_registered":
            return self.error("number_not_registered")
        return None
