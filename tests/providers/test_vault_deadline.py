"""Every Vault read has a deadline: a Vault that trickles its answer cannot hold a read past it.

The Vault here is a loopback peer of the test's own (`trickle.TricklePeer`) that answers a KV
v2 read with Vault's status, headers and JSON, then sends the body one byte every half second,
so no read ever times out while the answer never completes. Calls run in a thread or under
`asyncio.wait_for` with a hard limit, so a read the deadline fails to end fails the test
instead of hanging it; the only timing claim is the generous bound the issue asks for.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import record_reliability
from trickle import TricklePeer, timed
from wa_auth import ConfigurationError, TokenUnavailableError, VaultUnreachableError, WhatsAppClient
from wa_auth.providers import VaultTokenProvider

pytestmark = pytest.mark.anyio

VAULT_TOKEN = "hvs.deadline-test-0123456789"
CANARY = "EAAGcanaryVAULTdeadline0123456789abcdef"
#: A KV v2 read's answer, padded with whitespace (still JSON) so that it trickles for minutes.
ANSWER = (
    json.dumps({"data": {"data": {"access_token": CANARY}, "metadata": {"version": 3}}}).encode()
    + b" " * 2000
)
#: The deadline of the reads under test: far shorter than the 5 s per-request timeout.
DEADLINE = 1.5
#: A read still running this long after it started has hung: the test fails, never waits.
HANG = 20.0
#: The generous bound the issue demands: the read ends about when its deadline passes.
BOUND = DEADLINE + 6.0


@pytest.fixture
def vault() -> Iterator[TricklePeer]:
    """A Vault whose every answer trickles in, one byte every 0.5 s."""
    with TricklePeer(0.5, body=ANSWER) as peer:
        yield peer


def provider(vault: TricklePeer, **options: Any) -> VaultTokenProvider:
    return VaultTokenProvider(vault.url, "wa/prod", vault_token=VAULT_TOKEN, timeout=5.0, **options)


def _no_secret(error: BaseException) -> None:
    text = f"{error} {error!r} {error.__cause__!r}"
    assert VAULT_TOKEN not in text
    assert CANARY not in text


@pytest.mark.reliability
def test_a_trickling_vault_read_ends_at_its_deadline(vault):
    """get_token: the read fails at its deadline, as VaultUnreachableError naming it."""
    took, error = timed(provider(vault, deadline=DEADLINE).get_token, HANG)
    record_reliability(
        "hostile.trickle",
        {
            "name": f"VaultTokenProvider.get_token, deadline {DEADLINE} s",
            "seconds": round(took, 2),
            "outcome": type(error).__name__,
        },
    )
    assert isinstance(error, VaultUnreachableError), error
    assert took < BOUND
    assert "the Vault read's 1.5 s deadline passed" in str(error)
    _no_secret(error)


def test_a_trickling_vault_read_ends_at_its_deadline_async(vault):
    """aget_token: the same on the event loop."""
    source = provider(vault, deadline=DEADLINE)
    took, error = timed(lambda: asyncio.run(source.aget_token()), HANG)
    assert isinstance(error, VaultUnreachableError), error
    assert took < BOUND
    assert "the Vault read's 1.5 s deadline passed" in str(error)
    _no_secret(error)


def test_the_vault_read_of_a_call_ends_by_the_call_deadline(vault):
    """A read for a client call ends by the call's deadline when that comes first."""

    def send() -> Any:
        with WhatsAppClient(
            token_provider=provider(vault),  # its own deadline: the default 15 s
            phone_number_id="1234567890",
            base_url="http://127.0.0.1:9",
            deadline=DEADLINE,
        ) as client:
            return client.send_text("+15551234567", "hi")

    took, error = timed(send, HANG)
    assert isinstance(error, VaultUnreachableError), error
    assert took < BOUND
    assert "the client's 1.5 s deadline passed" in str(error)


def test_a_wait_for_another_callers_read_ends_at_the_callers_deadline(vault):
    """A caller waiting for a read another caller leads stops at its own deadline."""
    source = provider(vault, deadline=HANG)
    leader = threading.Thread(target=timed, args=(source.get_token, HANG), daemon=True)
    leader.start()
    _until(lambda: len(vault.requests) == 1)  # the leader's read is under way

    def send() -> Any:
        with WhatsAppClient(
            token_provider=source,
            phone_number_id="1234567890",
            base_url="http://127.0.0.1:9",
            deadline=DEADLINE,
        ) as client:
            return client.send_text("+15551234567", "hi")

    took, error = timed(send, HANG)
    vault.stop()  # ends the leader's read
    leader.join(HANG)
    assert isinstance(error, TokenUnavailableError), error
    assert took < BOUND
    assert "waiting for another caller's refresh" in str(error)
    assert "the client's 1.5 s deadline passed" in str(error)


async def test_a_wait_for_another_tasks_read_ends_at_the_callers_deadline(vault):
    """The same on the event loop: the waiting task stops at its deadline."""
    source = provider(vault, deadline=HANG)
    leader = asyncio.create_task(source.aget_token())
    await asyncio.to_thread(_until, lambda: len(vault.requests) == 1)
    from wa_auth import AsyncWhatsAppClient

    async with AsyncWhatsAppClient(
        token_provider=source,
        phone_number_id="1234567890",
        base_url="http://127.0.0.1:9",
        deadline=DEADLINE,
    ) as client:
        started = time.monotonic()
        with pytest.raises(TokenUnavailableError, match=r"the client's 1\.5 s deadline passed"):
            await asyncio.wait_for(client.send_text("+15551234567", "hi"), HANG)
        took = time.monotonic() - started
    leader.cancel()
    await asyncio.gather(leader, return_exceptions=True)
    assert took < BOUND


def test_the_default_deadline_is_15_seconds(vault):
    """The documented default."""
    assert provider(vault).deadline == 15.0


@settings(deadline=None, max_examples=30)
@given(
    value=st.one_of(
        st.floats(max_value=0.0),
        st.just(math.inf),
        st.just(math.nan),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
    )
)
def test_a_vault_deadline_that_is_no_positive_number_is_refused(value):
    """deadline= must be a positive, finite number of seconds; the error names it."""
    with pytest.raises(ConfigurationError, match="deadline must be a positive"):
        VaultTokenProvider("http://127.0.0.1:9", "wa/prod", vault_token="x", deadline=value)


def _until(predicate: Any) -> None:
    """Wait until *predicate()* holds (a hang guard bounds the wait)."""
    end = time.monotonic() + HANG
    while not predicate():
        assert time.monotonic() < end, "never happened"
        time.sleep(0.01)


def test_every_provider_drive_that_sends_has_a_deadline(vault):
    """A provider's HTTP conversation (an exchange too) ends by its drive's deadline."""
    import httpx

    from wa_auth.providers._effects import DEFAULT_READ_DEADLINE, Http, Send, drive

    def flow() -> Any:
        return (yield Send("GET", vault.url + "/v1/secret/data/wa/prod"))

    took, error = timed(lambda: drive(flow(), Http(deadline=DEADLINE)), HANG)
    assert isinstance(error, httpx.ReadTimeout), error
    assert took < BOUND
    assert "the token read's 1.5 s deadline passed" in str(error)
    assert Http().deadline == DEFAULT_READ_DEADLINE == 30.0
