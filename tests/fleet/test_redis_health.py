"""The fleet's health cache in the client: `WhatsAppClient(..., health_cache=state.health)`.

One `debug_token` per token per TTL for every worker on one real Redis; the async client
awaits the cache (no blocking call on its loop); Redis down, `token_health()` still answers
(Meta is asked) and says so in a `StateFellBack` (store `health`).
"""

from __future__ import annotations

import socket

import pytest

from wa_auth._client import AsyncWhatsAppClient, WhatsAppClient
from wa_auth.events import Counters, Events, StateFellBack
from wa_auth.fleet import RedisState
from wa_auth.sandbox import Sandbox
from wa_auth.state import HealthCache

pytestmark = [pytest.mark.real_component("redis"), pytest.mark.anyio]


@pytest.fixture
def sandbox():
    with Sandbox() as sb:
        yield sb


def _debug_tokens(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r.path.endswith("/debug_token"))


def _client(sb: Sandbox, token: str, cls=WhatsAppClient, **kw):
    return cls(token=token, phone_number_id=sb.phone_number_id, base_url=sb.base_url, **kw)


def test_the_redis_health_cache_is_a_health_cache(redis_server):
    with RedisState(redis_server.url) as state:
        assert isinstance(state.health, HealthCache)


def test_two_workers_ask_debug_token_once(redis_server, sandbox):
    """Worker A's report serves worker B (another `RedisState`): one `debug_token`."""
    redis_server.flush()
    token = sandbox.issue_token()
    with RedisState(redis_server.url) as a, RedisState(redis_server.url) as b:
        with _client(sandbox, token, health_cache=a.health) as client:
            first = client.token_health()
        with _client(sandbox, token, health_cache=b.health) as client:
            second = client.token_health()
            assert client.token_health(refresh=True).valid  # refresh asks Meta again
    assert first.valid
    assert second.token_fingerprint == first.token_fingerprint
    assert _debug_tokens(sandbox) == 2


async def test_the_async_client_shares_the_fleets_report(redis_server, sandbox):
    """The async client reads and writes Redis with redis-py's asyncio client."""
    redis_server.flush()
    token = sandbox.issue_token()
    async with RedisState(redis_server.url) as a, RedisState(redis_server.url) as b:
        async with _client(sandbox, token, AsyncWhatsAppClient, health_cache=a.health) as c:
            assert (await c.token_health()).valid
        async with _client(sandbox, token, AsyncWhatsAppClient, health_cache=b.health) as c:
            assert (await c.token_health()).valid
    assert _debug_tokens(sandbox) == 1


def test_redis_down_token_health_asks_meta_and_says_so(sandbox):
    """No Redis: the report is Meta's, unshared; a `StateFellBack` event and a count."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = sandbox.issue_token()
    counters = Counters()
    seen: list[StateFellBack] = []
    events = Events(counters, lambda e: seen.append(e) if isinstance(e, StateFellBack) else None)
    url = f"redis://:pw-canary@127.0.0.1:{port}/0"
    with (
        RedisState(url, timeout=0.3) as state,
        _client(sandbox, token, health_cache=state.health, events=events) as client,
    ):
        assert client.token_health().valid
    assert seen
    assert {e.store for e in seen} == {"health"}
    assert seen[0].address == f"127.0.0.1:{port}"
    assert "pw-canary" not in repr([e.to_dict() for e in seen])
    assert counters.get("fleet.fallback") == len(seen)
    assert _debug_tokens(sandbox) == 1


@pytest.mark.once
def test_three_worker_processes_ask_debug_token_once(fleet):
    """Three processes check the token's health in turn: Meta is asked once."""
    sb, _token, start = fleet
    workers = start(3)
    answers = [worker.ask(op="health") for worker in workers]
    assert all(answer["valid"] for answer in answers), answers
    assert _debug_tokens(sb) == 1
