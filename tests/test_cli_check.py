"""`wa-auth check` is one flow of effects: `check` and `acheck` drive the same steps.

The flow (`_check.checking`) asks for the token's health, then, when the token can manage the
number, for the number; a test drives it with `next()` / `.send()`, and each scenario below
gives the blocking and the asyncio driver the same client answers and expects the same line.
"""

from __future__ import annotations

from typing import Any

import pytest

from wa_auth._cli import _check
from wa_auth.errors import RateLimitError, TokenExpiredError, TokenSourceMissingError
from wa_auth.models import MANAGEMENT_SCOPES, MESSAGING_SCOPES, PhoneNumber, TokenHealth

pytestmark = pytest.mark.anyio

PHONE = "106540352242922"
OPTIONS = {"phone_number_id": PHONE, "business_account_id": None}
SCOPES = (*MESSAGING_SCOPES, *MANAGEMENT_SCOPES)
HEALTHY = TokenHealth(valid=True, token_fingerprint="sha256:abcd", scopes=SCOPES, expires_in=None)
NUMBER = PhoneNumber(id=PHONE, status="CONNECTED", can_send_message="AVAILABLE")
BLOCKED = PhoneNumber(id=PHONE, status="CONNECTED", can_send_message="BLOCKED")


class Client:
    """A blocking client whose two calls answer (or raise) what a scenario says."""

    def __init__(self, health: Any, number: Any) -> None:
        self.answers = {"token_health": health, "get_phone_number": number}
        self.calls: list[str] = []

    def _answer(self, name: str) -> Any:
        self.calls.append(name)
        value = self.answers[name]
        if isinstance(value, BaseException):
            raise value
        return value

    def token_health(self, *, refresh: bool) -> Any:
        assert refresh is True
        return self._answer("token_health")

    def get_phone_number(self) -> Any:
        return self._answer("get_phone_number")


class AsyncClient(Client):
    """The same client with awaited calls."""

    async def token_health(self, *, refresh: bool) -> Any:  # type: ignore[override]
        assert refresh is True
        return self._answer("token_health")

    async def get_phone_number(self) -> Any:  # type: ignore[override]
        return self._answer("get_phone_number")


SCENARIOS = {
    "healthy": (HEALTHY, NUMBER),
    "number-blocked": (HEALTHY, BLOCKED),
    "token-expired": (TokenExpiredError("Session has expired", code=190, subcode=463), NUMBER),
    "number-rate-limited": (HEALTHY, RateLimitError("(#4) Application request limit reached")),
    "invalid-token": (
        TokenHealth(valid=False, error="revoked", error_category="token_revoked"),
        NUMBER,
    ),
}


def test_the_flow_asks_for_the_health_then_the_number():
    """Driven by hand: a health effect, then a number effect, then the line as the result."""
    flow = _check.checking(OPTIONS, None, refresh=False)

    assert next(flow) == _check.Health(refresh=False)
    assert flow.send(HEALTHY) == _check.Number()
    with pytest.raises(StopIteration) as done:
        flow.send(NUMBER)

    line = done.value.value
    assert (line["exit_code"], line["number_access"], line["valid"]) == (0, True, True)


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(SCENARIOS))
async def test_check_and_acheck_give_the_same_line(scenario):
    """The blocking and the asyncio check make the same calls and print the same line."""
    health, number = SCENARIOS[scenario]
    client, aclient = Client(health, number), AsyncClient(health, number)

    line = _check.check(client, OPTIONS, 7.0)
    async_line = await _check.acheck(aclient, OPTIONS, 7.0)

    assert line == async_line
    assert client.calls == aclient.calls


async def test_a_failure_that_is_no_api_error_propagates_from_both():
    """A token source that fails at the number's call is not a line: both drivers raise it."""
    missing = TokenSourceMissingError("the token file is gone")

    with pytest.raises(TokenSourceMissingError):
        _check.check(Client(HEALTHY, missing), OPTIONS, None)
    with pytest.raises(TokenSourceMissingError):
        await _check.acheck(AsyncClient(HEALTHY, missing), OPTIONS, None)
