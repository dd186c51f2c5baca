"""Redis behind 200 ms of added latency: a loopback proxy of this test's own, real sockets.

With a timeout above the latency the fleet works as usual (slower, no fall-back); with one
below it, the verdicts, pauses and limiter fall back and the ledger says so with a typed error.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from wa_auth.errors import StateUnavailableError, from_response
from wa_auth.fleet import RedisState
from wa_auth.pacing import Pause

pytestmark = pytest.mark.real_component("redis")

DELAY = 0.2
FP = "sha256:0123456789ab"
REVOKED = {"error": {"code": 190, "error_subcode": 460, "message": "Session invalidated"}}


class SlowProxy:
    """Forward 127.0.0.1:port to Redis, holding every chunk *delay* seconds each way."""

    def __init__(self, port: int, delay: float) -> None:
        self.upstream = ("127.0.0.1", port)
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                time.sleep(self.delay)
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def slow(redis_server):
    redis_server.flush()
    proxy = SlowProxy(redis_server.port, DELAY)
    yield f"redis://127.0.0.1:{proxy.port}/0"
    proxy.close()


def _pause() -> Pause:
    return Pause(
        kind="account", phone_number_id="1", category="account_state", since=1.0, until=9e9
    )


def test_a_slow_redis_within_the_timeout_is_still_the_fleets(slow, redis_server):
    """200 ms each way, a 2 s timeout: reservations, verdicts and the ledger work, no fall-back."""
    with RedisState(slow, timeout=2.0) as far, RedisState(redis_server.url) as near:
        limiter = far.limiter(rate=10, pair_interval=None)
        assert limiter.acquire("1", None) is not None
        assert limiter.fallbacks == 0
        far.verdicts.record(FP, from_response(401, REVOKED))
        assert far.verdicts.fallbacks == 0
        deadline = time.monotonic() + 10
        while near.verdicts.get(FP) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert near.verdicts.get(FP) is not None
        assert far.ledger().claim("k") is True
        assert near.ledger().claim("k") is False


def test_a_redis_slower_than_the_timeout_falls_back(slow):
    """A 0.05 s timeout behind 200 ms: verdicts, pauses and the limiter answer locally."""
    with RedisState(slow, timeout=0.05) as state:
        state.verdicts.record(FP, from_response(401, REVOKED))
        assert state.verdicts.get(FP) is not None
        state.pauses.put(_pause())
        assert state.pauses.get("account", "1") == _pause()
        limiter = state.limiter(rate=10, expected_workers=4)
        assert limiter.acquire("1", None) is not None
        assert (state.verdicts.fallbacks, state.pauses.fallbacks, limiter.fallbacks) == (1, 1, 1)
        with pytest.raises(StateUnavailableError, match=r"127\.0\.0\.1"):
            state.ledger().claim("k")
