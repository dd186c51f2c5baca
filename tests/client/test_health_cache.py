"""`health_cache=`: `token_health()` reads and writes a pluggable `HealthCache` through effects.

The flow (`wa_auth._endpoints.tokens.token_health`) yields `ReadHealth` / `StoreHealth`; the
shell performs them (`get` / `put` blocking, `aget` / `aput` on the event loop). Clients given
one cache ask `debug_token` once per token per the cache's TTL, together; a cache that does
not answer is skipped, told as a `StateFellBack` event.
"""

from __future__ import annotations

import pytest

from wa_auth._client import AsyncWhatsAppClient, WhatsAppClient
from wa_auth._context import Context, TTLCache
from wa_auth._core import GetToken, ReadHealth, StoreHealth
from wa_auth._endpoints.tokens import token_health
from wa_auth.errors import ConfigurationError, StateUnavailableError
from wa_auth.events import Counters, Events, StateFellBack
from wa_auth.models import TokenHealth
from wa_auth.providers import StaticTokenProvider, Token
from wa_auth.sandbox import Sandbox
from wa_auth.state import HealthCache, StateFile

pytestmark = pytest.mark.anyio


class Recording:
    """A `HealthCache` in a dict that records which of its methods ran."""

    def __init__(self, fail: bool = False) -> None:
        self.items: dict[str, TokenHealth] = {}
        self.calls: list[str] = []
        self.fail = fail

    def _answer(self, name: str) -> None:
        self.calls.append(name)
        if self.fail:
            raise StateUnavailableError("Redis at 127.0.0.1:1 is unreachable", address="x:1")

    def get(self, fingerprint: str) -> TokenHealth | None:
        self._answer("get")
        return self.items.get(fingerprint)

    def put(self, fingerprint: str, health: TokenHealth) -> None:
        self._answer("put")
        self.items[fingerprint] = health

    async def aget(self, fingerprint: str) -> TokenHealth | None:
        self._answer("aget")
        return self.items.get(fingerprint)

    async def aput(self, fingerprint: str, health: TokenHealth) -> None:
        self._answer("aput")
        self.items[fingerprint] = health


@pytest.fixture
def sandbox():
    with Sandbox() as sb:
        yield sb


def _debug_tokens(sb: Sandbox) -> int:
    return sum(1 for r in sb.requests() if r.path.endswith("/debug_token"))


def _client(sb: Sandbox, token: str, cls=WhatsAppClient, **kw):
    return cls(token=token, phone_number_id=sb.phone_number_id, base_url=sb.base_url, **kw)


def test_the_flow_yields_the_cache_as_effects_and_does_no_io_itself():
    """The core asks for the cached report with `ReadHealth`: it never touches the cache."""
    cache = Recording()
    ctx = Context(provider=StaticTokenProvider("EAAflow-aaaaaaaaaaaa"), events=Events())
    object.__setattr__(ctx, "health_cache", cache)
    flow = token_health(ctx)
    assert isinstance(next(flow), GetToken)
    token = Token("EAAflow-aaaaaaaaaaaa")
    effect = flow.send(token)
    assert effect == ReadHealth(token.fingerprint)
    report = TokenHealth(valid=True, token_fingerprint=token.fingerprint)
    with pytest.raises(StopIteration) as stop:
        flow.send(report)
    assert stop.value.value is report
    assert cache.calls == []  # the flow asked; only a shell performs


def test_the_in_memory_cache_is_a_health_cache():
    """The client's default (`TTLCache`) and the state file's are `HealthCache`s."""
    assert isinstance(TTLCache[TokenHealth](1.0), HealthCache)
    assert isinstance(Recording(), HealthCache)


def test_a_state_files_health_is_a_health_cache(tmp_path):
    with StateFile(tmp_path / "state.db") as state:
        assert isinstance(state.health, HealthCache)


def test_clients_given_one_cache_ask_debug_token_once(sandbox):
    """Two clients (two processes, in effect) share one report: one `debug_token`."""
    token = sandbox.issue_token()
    cache = Recording()
    with _client(sandbox, token, health_cache=cache) as a:
        first = a.token_health()
    with _client(sandbox, token, health_cache=cache) as b:
        second = b.token_health()
    assert first.valid
    assert second == first
    assert _debug_tokens(sandbox) == 1
    assert cache.calls == ["get", "put", "get"]


async def test_the_async_client_awaits_the_cache(sandbox):
    """`AsyncWhatsAppClient` reads and writes with `aget` / `aput`, never the blocking pair."""
    token = sandbox.issue_token()
    cache = Recording()
    async with _client(sandbox, token, AsyncWhatsAppClient, health_cache=cache) as client:
        await client.token_health()
        await client.token_health()
    assert cache.calls == ["aget", "aput", "aget"]
    assert _debug_tokens(sandbox) == 1


def test_a_state_files_cache_serves_the_next_process(sandbox, tmp_path):
    """`StateFile(...).health`: the next client (another execution) asks Meta nothing."""
    token = sandbox.issue_token()
    with (
        StateFile(tmp_path / "state.db") as state,
        _client(sandbox, token, health_cache=state.health) as client,
    ):
        client.token_health()
    with (
        StateFile(tmp_path / "state.db") as state,
        _client(sandbox, token, health_cache=state.health) as client,
    ):
        assert client.token_health().valid
    assert _debug_tokens(sandbox) == 1


def test_a_cache_that_does_not_answer_is_skipped_and_told(sandbox):
    """The cache raises `StateUnavailableError`: Meta is asked, a `StateFellBack` is told."""
    token = sandbox.issue_token()
    counters = Counters()
    seen: list[StateFellBack] = []
    events = Events(counters, lambda e: seen.append(e) if isinstance(e, StateFellBack) else None)
    with _client(sandbox, token, health_cache=Recording(fail=True), events=events) as client:
        assert client.token_health().valid
    assert [e.store for e in seen] == ["health", "health"]  # the read, then the write
    assert counters.get("fleet.fallback") == 2
    assert _debug_tokens(sandbox) == 1


@pytest.mark.parametrize("bad", [object(), {}, "redis://localhost"])
def test_a_health_cache_without_the_methods_is_refused(bad):
    with pytest.raises(ConfigurationError, match="health_cache must have get, put"):
        WhatsAppClient(token="EAAbad-aaaaaaaaaaaa", health_cache=bad)


def test_a_cached_report_is_returned_as_stored(sandbox):
    """What another process stored is what `token_health()` returns (no request)."""
    token = sandbox.issue_token()
    cache = Recording()
    stored = TokenHealth(valid=True, token_fingerprint=Token(token).fingerprint, app_id="42")
    cache.items[stored.token_fingerprint] = stored
    with _client(sandbox, token, health_cache=cache) as client:
        assert client.token_health() is stored
    assert _debug_tokens(sandbox) == 0
    assert StoreHealth(stored.token_fingerprint, stored).health is stored
