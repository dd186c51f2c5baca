"""End to end: the async client against the sandbox, for every token, account and number state
and every fault (`tests/cases/e2e.py`, the sync module's tables too); the sandbox's payloads
are Meta's literal ones, never the client's table."""

from __future__ import annotations

import asyncio
import time

import pytest

import wa_auth
from cases import case_id
from cases.e2e import SEND_FAILURES, STRING_CODES, TO, Rotating
from helpers import araised
from wa_auth import testing
from wa_auth.providers import Token

# The plugin's fixtures, for runs where its pytest11 entry point is not installed.
wa_sandbox_server = testing.wa_sandbox_server
wa_sandbox = testing.wa_sandbox

pytestmark = pytest.mark.anyio


def _client(sb, token, **kw):
    return wa_auth.AsyncWhatsAppClient(
        base_url=sb.base_url,
        token=token,
        phone_number_id=sb.phone_number_id,
        business_account_id=sb.business_account_id,
        **kw,
    )


@pytest.mark.parametrize("case", SEND_FAILURES, ids=case_id)
async def test_send_failure_is_classified(wa_sandbox, case):
    """Each state and fault of the sandbox surfaces as its class, category and retry policy."""
    token = case.setup(wa_sandbox)
    async with _client(wa_sandbox, token) as client:
        for i in range(case.sends):
            await client.send_text(TO, f"fill {i}")
        err = await araised(
            case.cls, lambda: client.send_text(TO, "hello", idempotency_key="key-1")
        )
    assert (err.category, err.retryable, err.retry_after) == (
        case.category,
        case.retryable,
        case.retry_after,
    )
    assert (err.http_status, err.code, err.subcode) == (case.http_status, case.code, case.subcode)
    assert err.token_fingerprint == Token(token).fingerprint
    assert err.operator_action
    assert len(wa_sandbox.messages()) == case.sends
    assert "key-1" not in {m.idempotency_key for m in wa_sandbox.messages()}
    last = wa_sandbox.requests()[-1]
    assert (last.status, last.code, last.token_fingerprint) == (
        case.http_status,
        case.code,
        err.token_fingerprint,
    )
    assert last.outcome == ("fault" if case.category == "transient" else "error")


@pytest.mark.parametrize("case", STRING_CODES, ids=case_id)
async def test_code_as_string_is_classified_the_same(wa_sandbox, case):
    """A BSP's string `code` and `error_subcode` classify like Meta's integers."""
    token = case.setup(wa_sandbox)
    wa_sandbox.set_faults(**{**wa_sandbox.info()["faults"], "code_as_string": True})
    async with _client(wa_sandbox, token) as client:
        err = await araised(case.cls, lambda: client.send_text(TO, "hello"))
    assert (err.code, err.subcode) == (case.code, case.subcode)


async def test_accepted_send_is_recorded_once(wa_sandbox):
    """An accepted send is recorded with its id, recipient, payload, key and fingerprint."""
    token = wa_sandbox.issue_token()
    async with _client(wa_sandbox, token) as client:
        result = await client.send_text(TO, "hello", idempotency_key="order-42")
    (message,) = wa_sandbox.messages()
    assert message.id == result.message_id
    assert (message.recipient, message.type, message.idempotency_key) == (TO, "text", "order-42")
    assert message.token_fingerprint == Token(token).fingerprint


async def test_every_endpoint_works(wa_sandbox):
    """Every endpoint of the async client gets Meta's success shape from the sandbox."""
    async with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        sent = [
            await client.send_template(TO, "hello_world", "en_US"),
            await client.send_media(
                TO, "document", link="https://example.com/a.pdf", filename="a.pdf"
            ),
            await client.send_interactive_buttons(TO, "pick", [("a", "A")]),
            await client.send_interactive_list(
                TO, "pick", "open", [{"title": "s", "rows": [("r1", "R1")]}]
            ),
            await client.send_reaction(TO, "wamid.X", "👍"),
            await client.send_location(TO, 52.5, 13.4),
        ]
        assert (await client.mark_as_read("wamid.X")).success
        upload = await client.upload_media(b"%PDF-1.7", "application/pdf")
        assert (await client.download_media(upload.media_id)).content == b"%PDF-1.7"
        assert (await client.delete_media(upload.media_id)).success
        assert (await client.get_phone_number()).id == wa_sandbox.phone_number_id
        assert len((await client.list_phone_numbers()).items) == 2
        assert (await client.get_business_profile()).email == "sandbox@example.com"
        assert (await client.list_templates(limit=2)).after is not None
        assert (await client.debug_token()).is_valid
    assert [m.id for m in wa_sandbox.messages()] == [s.message_id for s in sent]


@pytest.mark.parametrize(
    ("state", "variant", "subcode"),
    [
        pytest.param("expired", None, 463, id="expired"),
        pytest.param("expired", "no_subcode", None, id="expired-no-subcode"),
        pytest.param("revoked_password_changed", None, 460, id="password-changed"),
        pytest.param("revoked_deauthorized", None, 458, id="deauthorized"),
        pytest.param("revoked_logged_out", None, 467, id="logged-out"),
    ],
)
async def test_debug_token_reports_an_invalid_token_as_a_result(
    wa_sandbox, state, variant, subcode
):
    """debug_token on a dead token answers is_valid=False with data.error, not an exception."""
    dead = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(dead, state, variant=variant)
    async with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        info = await client.debug_token(dead)
    assert info.is_valid is False
    assert info.error is not None
    assert (info.error.code, info.error.subcode) == (190, subcode)


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"drop_rate": 1.0}, id="send-dropped-before"),
        pytest.param({"drop_rate": 1.0, "drop_after_accept": True}, id="send-dropped-after-accept"),
    ],
)
async def test_dropped_send_is_maybe_delivered(wa_sandbox, kw):
    """A send whose connection drops is a TransportError that may have been delivered."""
    wa_sandbox.set_faults(**kw)
    async with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        with pytest.raises(wa_auth.TransportError) as info:
            await client.send_text(TO, "hello", idempotency_key="k")
    err = info.value
    assert (err.category, err.maybe_delivered, err.retryable) == ("transient", True, False)
    assert wa_sandbox.requests()[-1].outcome == "dropped"
    after = kw.get("drop_after_accept", False)
    assert [m.idempotency_key for m in wa_sandbox.messages()] == (["k"] if after else [])


async def test_dropped_read_is_retryable(wa_sandbox):
    """A GET whose connection drops is a retryable TransportError that delivered nothing."""
    wa_sandbox.set_faults(drop_rate=1.0)
    async with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        with pytest.raises(wa_auth.TransportError) as info:
            await client.get_phone_number()
    assert (info.value.retryable, info.value.maybe_delivered) == (True, False)


async def test_latency_is_added(wa_sandbox):
    """The latency fault delays the answer without failing it."""
    wa_sandbox.set_faults(latency=0.2)
    async with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        started = time.perf_counter()
        await client.send_text(TO, "slow")
        assert time.perf_counter() - started >= 0.2


async def test_flaky_share_is_deterministic_under_the_seed(wa_sandbox):
    """Half the sends fail with 5xx codes, in the same order after every reset."""

    async def run():
        wa_sandbox.reset()
        wa_sandbox.set_faults(error_rate=0.5)
        outcomes = []
        async with _client(wa_sandbox, wa_sandbox.demo_tokens()["system_user"]) as client:
            for i in range(20):
                try:
                    await client.send_text(TO, f"n{i}")
                    outcomes.append("ok")
                except wa_auth.TransientError as exc:
                    outcomes.append(exc.code)
        return outcomes

    first = await run()
    assert first == await run()
    assert {"ok"} < set(first) <= {"ok", 1, 2, 131000, 131016}


async def test_concurrent_sends_are_each_recorded_once(wa_sandbox):
    """100 concurrent sends with distinct keys are each recorded exactly once."""
    async with _client(wa_sandbox, wa_sandbox.issue_token()) as client:
        results = await asyncio.gather(
            *(client.send_text(TO, "hi", idempotency_key=f"k{i}") for i in range(100))
        )
    keys = sorted(m.idempotency_key for m in wa_sandbox.messages())
    assert keys == sorted(f"k{i}" for i in range(100))
    assert {m.id for m in wa_sandbox.messages()} == {r.message_id for r in results}


async def test_dead_token_is_replaced_and_the_send_retried_once(wa_sandbox):
    """A revoked token is invalidated and the same send goes out once with the fresh one."""
    old, fresh = wa_sandbox.issue_token(), wa_sandbox.issue_token()
    wa_sandbox.set_token_state(old, "revoked_password_changed", variant="no_subcode")
    async with _client_provider(wa_sandbox, Rotating(old, fresh)) as client:
        result = await client.send_text(TO, "hello", idempotency_key="once")
    (message,) = wa_sandbox.messages()
    assert (message.id, message.token_fingerprint) == (result.message_id, Token(fresh).fingerprint)
    assert [r.status for r in wa_sandbox.requests()] == [401, 200]


async def test_new_token_does_not_help_a_locked_account(wa_sandbox):
    """A locked account fails the send without burning the next token."""
    wa_sandbox.set_account_state("locked")
    provider = Rotating(wa_sandbox.issue_token(), wa_sandbox.issue_token())
    async with _client_provider(wa_sandbox, provider) as client:
        with pytest.raises(wa_auth.AccountStateError):
            await client.send_text(TO, "hello")
    assert len(wa_sandbox.requests()) == 1
    assert len(provider.tokens) == 2


def _client_provider(sb, provider):
    return wa_auth.AsyncWhatsAppClient(
        base_url=sb.base_url, token_provider=provider, phone_number_id=sb.phone_number_id
    )
