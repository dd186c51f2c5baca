"""A `RedisState` made before `fork()` serves the child: its listeners start again on first use.

`fork()` copies only the calling thread, so the child of a process holding a `RedisState` has
no pub/sub listener: without the at-fork hooks, its local copies would never hear of a verdict
or a pause again. Each test forks the pytest process itself (`os.fork`), runs a body in the
child, and reads the child's answer from a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from wa_auth.errors import from_response
from wa_auth.fleet import RedisState
from wa_auth.pacing import Pause

pytestmark = [
    pytest.mark.real_component("redis"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here"),
]

REVOKED = {"error": {"code": 190, "error_subcode": 460, "message": "Session invalidated"}}
FP = "sha256:" + "a" * 64
FP_CHILD = "sha256:" + "b" * 64
FP_ASYNC = "sha256:" + "c" * 64


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _fork(body: Callable[[Callable[[str], None]], dict[str, Any]]) -> tuple[int, Any, Any]:
    """Run *body(tell)* in a forked child; return (pid, the child's pipe, its answer pipe)."""
    told_r, told_w = os.pipe()
    answer_r, answer_w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that a process with threads forks: that is this test's point.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(told_r)
            os.close(answer_r)

            def tell(word: str) -> None:
                os.write(told_w, word.encode() + b"\n")

            result = body(tell)
        except BaseException as exc:  # everything goes back to the parent
            result = {"crash": repr(exc)}
        with contextlib.suppress(BaseException):
            os.write(answer_w, json.dumps(result).encode())
        os._exit(0)
    os.close(told_w)
    os.close(answer_w)
    return pid, told_r, answer_r


def _read(fd: int, seconds: float = 30.0) -> bytes:
    """Read *fd* to its end, within *seconds*."""
    chunks = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            raise TimeoutError("the forked child did not answer")
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _line(fd: int, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    got = b""
    while not got.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            raise TimeoutError("the forked child did not tell")
        byte = os.read(fd, 1)
        if not byte:
            raise EOFError("the forked child ended")
        got += byte
    return got.decode().strip()


def _finish(pid: int, *fds: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    for fd in fds:
        os.close(fd)


async def _async_use(state: RedisState) -> None:
    await state.verdicts.arecord(FP_ASYNC, from_response(401, REVOKED))
    await state.verdicts.aforget(FP_ASYNC)
    await state.connection.aclient().aclose()  # this loop ends here


def test_a_state_made_before_fork_hears_the_fleet_in_the_child(redis_server):
    """The child's copies follow Redis again: a verdict and a pause recorded by another worker
    after the fork reach the child; what the child records reaches the parent."""
    redis_server.flush()
    with RedisState(redis_server.url) as parent, RedisState(redis_server.url) as other:
        # The parent used its asyncio client and its limiter before the fork.
        asyncio.run(_async_use(parent))
        assert parent.limiter(rate=1000.0, pair_interval=None).acquire("1", None) is not None

        def child(tell: Callable[[str], None]) -> dict[str, Any]:
            synced = parent.verdicts.synced.is_set() and parent.pauses.synced.is_set()
            tell("up")
            heard = _eventually(lambda: parent.verdicts.get(FP) is not None)
            paused = _eventually(lambda: parent.pauses.get("account", "109") is not None)
            parent.verdicts.record(FP_CHILD, from_response(401, REVOKED))
            asyncio.run(parent.verdicts.arecord(FP_ASYNC, from_response(401, REVOKED)))
            limiter = parent.limiter(rate=1000.0, pair_interval=None)
            limiter.acquire("1", None)
            return {
                "synced": synced,
                "heard": heard,
                "paused": paused,
                "fallbacks": parent.verdicts.fallbacks + limiter.fallbacks,
                "threads": sorted(t.name for t in threading.enumerate()),
            }

        pid, told, answer = _fork(child)
        try:
            assert _line(told) == "up"
            other.verdicts.record(FP, from_response(401, REVOKED))
            other.pauses.put(
                Pause(kind="account", phone_number_id="109", category="account_state", since=1.0)
            )
            result = json.loads(_read(answer))
        finally:
            _finish(pid, told, answer)

        assert "crash" not in result, result
        assert result["synced"] is True
        assert result["heard"] is True
        assert result["paused"] is True
        assert result["fallbacks"] == 0
        assert {"wa_auth-verdicts", "wa_auth-pauses"} <= set(result["threads"])
        assert _eventually(lambda: parent.verdicts.get(FP_CHILD) is not None)
        assert _eventually(lambda: other.verdicts.get(FP_ASYNC) is not None)


def test_a_state_closed_before_fork_stays_closed_in_the_child(redis_server):
    """No listener starts again in the child of a closed state; its copy still answers."""
    redis_server.flush()
    state = RedisState(redis_server.url)
    state.verdicts.record(FP, from_response(401, REVOKED))
    state.close()

    def child(_tell: Callable[[str], None]) -> dict[str, Any]:
        found = state.verdicts.get(FP) is not None
        return {"found": found, "threads": [t.name for t in threading.enumerate()]}

    pid, told, answer = _fork(child)
    try:
        result = json.loads(_read(answer))
    finally:
        _finish(pid, told, answer)
    assert result["found"] is True
    assert not any(name.startswith("wa_auth-") for name in result["threads"]), result


def test_a_lock_held_at_the_fork_does_not_hang_the_child(redis_server):
    """A listener thread applying a message holds the store's lock when another thread forks:
    the child's copy of that lock stays held forever, so the child takes fresh locks."""
    redis_server.flush()
    with RedisState(redis_server.url) as parent:

        def child(_tell: Callable[[str], None]) -> dict[str, Any]:
            parent.verdicts.record(FP_CHILD, from_response(401, REVOKED))
            parent.pauses.put(
                Pause(kind="account", phone_number_id="109", category="account_state", since=1.0)
            )
            return {"listed": len(parent.verdicts.list()) + len(parent.pauses.list())}

        # Held here as the listener would hold them while applying a message.
        with parent.verdicts._lock, parent.pauses._lock:
            pid, told, answer = _fork(child)
        try:
            result = json.loads(_read(answer, seconds=15))
        finally:
            _finish(pid, told, answer)
        assert result == {"listed": 2}
