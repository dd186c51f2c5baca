"""Rotation decided once for the fleet: `RotatingTokenProvider(..., shared=state.rotation)`.

Two `RedisState`s on one real Redis stand for two workers, each with its own provider over the
same candidates: a promotion or a rollback by one is the other's active candidate from its next
`get_token`, and of two workers promoting at once, one wins and both use its choice.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from wa_auth.errors import StateUnavailableError, from_response
from wa_auth.fleet import RedisState
from wa_auth.providers import RotatingTokenProvider, SharedRotation, Token

pytestmark = pytest.mark.real_component("redis")

CANDIDATES = [
    "EAAone-aaaaaaaaaaaaaaaaaaaa",
    "EAAtwo-bbbbbbbbbbbbbbbbbbbb",
    "EAAthree-cccccccccccccccc",
]
REVOKED = {"error": {"code": 190, "error_subcode": 460, "message": "Session invalidated"}}


def _eventually(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def workers(redis_server):
    """Two workers' states and providers over the same candidates."""
    redis_server.flush()
    with RedisState(redis_server.url) as a, RedisState(redis_server.url) as b:
        yield (
            (a, RotatingTokenProvider(CANDIDATES, shared=a.rotation)),
            (b, RotatingTokenProvider(CANDIDATES, shared=b.rotation)),
        )


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fp(i: int) -> str:
    return Token(CANDIDATES[i]).fingerprint


def test_the_rotation_store_is_the_providers_protocol(workers):
    """`RedisRotation` is a `SharedRotation`."""
    (a, _), _ = workers
    assert isinstance(a.rotation, SharedRotation)


def test_a_promotion_by_one_worker_is_used_by_the_other(workers):
    """A's `rotate_to(1)` is B's active candidate from its next `get_token`."""
    (_, pa), (b, pb) = workers
    assert pb.get_token().fingerprint == _fp(0)
    assert pa.rotate_to(1).fingerprint == _fp(1)
    assert _eventually(lambda: b.rotation.peek("main").version == 1)
    assert pb.get_token().fingerprint == _fp(1)
    assert pb.active == 1


def test_a_rollback_by_one_worker_is_used_by_the_other(workers):
    """A's promoted token fails; A rolls back and the fleet follows A's rollback."""
    (_, pa), (b, pb) = workers
    pa.rotate_to(1, window=2, max_failures=1)
    assert _eventually(lambda: b.rotation.peek("main").version == 1)
    assert pb.get_token().fingerprint == _fp(1)
    pa.observe_outcome(Token(CANDIDATES[1]), from_response(401, REVOKED))
    assert pa.active == 0  # rolled back here, at once
    assert pa.get_token().fingerprint == _fp(0)  # and told to the fleet
    assert _eventually(lambda: b.rotation.peek("main").version == 2)
    assert pb.get_token().fingerprint == _fp(0)


def test_two_workers_promoting_at_once_end_with_one_winner(workers):
    """A promotes 1 while B promotes 2 from the same version: both end on the same one."""
    (a, pa), (_, pb) = workers
    start = threading.Barrier(2)
    got: dict[str, str] = {}

    def promote(name: str, provider: RotatingTokenProvider, index: int) -> None:
        start.wait()
        got[name] = provider.rotate_to(index).fingerprint

    threads = [
        threading.Thread(target=promote, args=("a", pa, 1)),
        threading.Thread(target=promote, args=("b", pb, 2)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["a"] == got["b"]  # the loser returns the winner's token
    winner = a.rotation.get("main")
    assert winner.version == 1
    assert winner.active == got["a"]
    assert pa.get_token().fingerprint == pb.get_token().fingerprint == winner.active


@pytest.mark.anyio
async def test_async_promotion(workers):
    """`arotate_to` decides for the fleet too."""
    (a, pa), (b, pb) = workers
    assert (await pa.arotate_to(2)).fingerprint == _fp(2)
    assert _eventually(lambda: b.rotation.peek("main").version == 1)
    assert (await pb.aget_token()).fingerprint == _fp(2)
    await a.aclose()
    await b.aclose()


def test_redis_down_a_promotion_changes_nothing_and_get_token_still_works(closed_port):
    """The store does not answer: `rotate_to` raises a typed error; tokens are still served."""
    with RedisState(f"redis://127.0.0.1:{closed_port}/0", timeout=0.3) as state:
        provider = RotatingTokenProvider(CANDIDATES, shared=state.rotation)
        with pytest.raises(StateUnavailableError):
            provider.rotate_to(1)
        assert provider.active == 0
        assert provider.get_token().fingerprint == _fp(0)
