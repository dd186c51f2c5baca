"""The dead-token promise under concurrency: once Meta has proved a token dead, no caller sends with
it again, however many callers were already waiting for a connection.

Every client checks the verdict when its request holds a slot (the sync client's and the async
client's in-flight gate, the fast client's connection limit) and frees the slot only after the
answer is classified and the verdict recorded. So at most the requests already on the wire -- the
gate's size -- go out with a revoked token, for 2,000 callers as for 20. The sandbox counts.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import wa_auth
from wa_auth import TokenRevokedError
from wa_auth.providers import Token
from wa_auth.sandbox import Sandbox

CALLERS = 2_000
TO = "+15551234567"


@pytest.fixture
def revoked():
    """A sandbox, a token it has revoked, and a little latency so that callers pile up."""
    with Sandbox(seed=7) as sb:
        token = sb.issue_token()
        sb.set_token_state(token, "revoked_password_changed")
        sb.set_faults(latency=0.02)
        yield sb, token


def _sent_with(sb: Sandbox, token: str) -> int:
    fingerprint = Token(token).fingerprint
    return sum(1 for r in sb.requests() if r.token_fingerprint == fingerprint)


def test_sync_client_sends_at_most_its_gate_with_a_dead_token(revoked):
    """2,000 threads on one sync client: at most `max_in_flight` requests carry the dead token."""
    sb, token = revoked
    sb.set_faults(latency=0.2)  # every thread is past its start before the first 401 is back
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(CALLERS)
    with wa_auth.WhatsAppClient(
        base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id
    ) as client:
        gate = client.max_in_flight

        def one(i: int) -> None:
            start.wait()
            try:
                client.send_text(TO, f"m{i}")
            except BaseException as exc:  # collected and checked below
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(CALLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(errors) == CALLERS
    assert all(isinstance(e, TokenRevokedError) for e in errors), {type(e) for e in errors}
    assert 1 <= _sent_with(sb, token) <= gate


@pytest.mark.anyio
@pytest.mark.parametrize(
    "client_class",
    ["AsyncWhatsAppClient", "FastAsyncWhatsAppClient", "FastAsyncWhatsAppClient:raw"],
)
async def test_async_clients_send_at_most_their_gate_with_a_dead_token(revoked, client_class):
    """2,000 tasks on one async client: at most `max_in_flight` requests carry the dead token."""
    sb, token = revoked
    name, _, transport = client_class.partition(":")
    cls = getattr(wa_auth, name)
    more = {"transport": transport} if transport else {}
    async with cls(
        base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id, **more
    ) as client:
        gate = client.max_in_flight
        results = await asyncio.gather(
            *(client.send_text(TO, f"m{i}") for i in range(CALLERS)), return_exceptions=True
        )
    assert all(isinstance(r, TokenRevokedError) for r in results), {type(r) for r in results}
    assert 1 <= _sent_with(sb, token) <= gate


@pytest.mark.anyio
async def test_a_small_gate_bounds_the_dead_token_requests_exactly(revoked):
    """With `max_in_flight=4`, 500 callers send at most 4 requests with the revoked token."""
    sb, token = revoked
    async with wa_auth.AsyncWhatsAppClient(
        base_url=sb.base_url, token=token, phone_number_id=sb.phone_number_id, max_in_flight=4
    ) as client:
        results = await asyncio.gather(
            *(client.send_text(TO, f"m{i}") for i in range(500)), return_exceptions=True
        )
    assert all(isinstance(r, TokenRevokedError) for r in results)
    assert 1 <= _sent_with(sb, token) <= 4


def test_max_in_flight_is_validated():
    """`max_in_flight` must be a positive integer: a clear error at construction."""
    for bad in (0, -1, 1.5, "8", True):
        with pytest.raises(wa_auth.RequestValidationError, match="max_in_flight"):
            wa_auth.WhatsAppClient(token="x" * 40, phone_number_id="1", max_in_flight=bad)
