"""Async clients across event loops: a second `asyncio.run()` reopens the client's own pool; a
pool the caller passed in, or a loop still running elsewhere, is refused with a typed error."""

from __future__ import annotations

import asyncio
import gc
import threading

import httpx
import pytest

import wa_auth
from wa_auth.sandbox import Sandbox

TO = "+15551234567"
#: The client classes by name; ":raw" is `FastAsyncWhatsAppClient(transport="raw")`.
CLIENTS = ["AsyncWhatsAppClient", "FastAsyncWhatsAppClient", "FastAsyncWhatsAppClient:raw"]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=3) as sb:
        yield sb


def _client(sb: Sandbox, name: str, **kw):
    name, _, transport = name.partition(":")
    if transport:
        kw["transport"] = transport
    return getattr(wa_auth, name)(
        base_url=sb.base_url, token=sb.issue_token(), phone_number_id=sb.phone_number_id, **kw
    )


@pytest.mark.parametrize("name", CLIENTS)
def test_a_second_asyncio_run_reopens_the_pool(sandbox, name):
    """Three `asyncio.run()` calls on one client all send; no connection outlives its loop."""
    client = _client(sandbox, name)

    async def batch() -> list[object]:
        return await asyncio.gather(
            *(client.send_text(TO, f"m{i}") for i in range(20)), return_exceptions=True
        )

    for _ in range(3):
        results = asyncio.run(batch())
        assert all(isinstance(r, wa_auth.SendResult) for r in results), results
    # Every pool was closed when its loop shut down: collecting the replaced ones warns of
    # nothing (filterwarnings=error turns an unclosed transport or session into a failure).
    gc.collect()


@pytest.mark.parametrize("name", CLIENTS)
def test_a_closed_client_stays_closed_on_a_new_loop(sandbox, name):
    """`aclose()` is final: a later loop does not silently reopen the pool."""
    client = _client(sandbox, name)

    async def send_then_close() -> None:
        await client.send_text(TO, "one")
        await client.aclose()

    asyncio.run(send_then_close())
    with pytest.raises(RuntimeError):
        asyncio.run(client.send_text(TO, "two"))


def test_a_caller_owned_pool_on_an_ended_loop_is_refused(sandbox):
    """An injected httpx.AsyncClient cannot be reopened: a typed error says one client per loop."""
    holder: dict[str, httpx.AsyncClient] = {}

    async def first() -> wa_auth.AsyncWhatsAppClient:
        holder["http"] = httpx.AsyncClient()
        client = _client(sandbox, "AsyncWhatsAppClient", http_client=holder["http"])
        await client.send_text(TO, "one")
        await holder["http"].aclose()  # the caller's pool, closed by the caller on its loop
        return client

    client = asyncio.run(first())
    with pytest.raises(wa_auth.RequestValidationError, match="loop that uses it"):
        asyncio.run(client.send_text(TO, "two"))


def test_a_loop_running_in_another_thread_is_refused(sandbox):
    """A client in use on a loop of another thread refuses a second loop, naming the rule."""
    client = _client(sandbox, "AsyncWhatsAppClient")
    ready = threading.Event()
    stop: asyncio.Event | None = None
    other: asyncio.AbstractEventLoop | None = None

    async def serve() -> None:
        nonlocal stop, other
        stop = asyncio.Event()
        other = asyncio.get_running_loop()
        await client.send_text(TO, "from the other thread")
        ready.set()
        await stop.wait()
        await client.aclose()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(10)
        with pytest.raises(wa_auth.RequestValidationError, match="one client per event loop"):
            asyncio.run(client.send_text(TO, "here"))
    finally:
        assert other is not None
        assert stop is not None
        other.call_soon_threadsafe(stop.set)
        thread.join(10)
