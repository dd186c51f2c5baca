"""The fleet tests' worker processes: `tests/fleet_worker.py`, each its own Python, on one Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from wa_auth.sandbox import Sandbox

WORKER = Path(__file__).resolve().parent.parent / "fleet_worker.py"


class Worker:
    """One worker process, driven by JSON lines."""

    def __init__(self, redis_url: str, sb: Sandbox, token: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), redis_url, sb.base_url, token, sb.phone_number_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the worker ended (exit {self.process.poll()})"
        return json.loads(line)

    def ask(self, **command: Any) -> dict[str, Any]:
        self.tell(**command)
        return self.read()

    def tell(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


Start = Callable[..., list[Worker]]


@pytest.fixture
def fleet(redis_server: Any) -> Iterator[tuple[Sandbox, str, Start]]:
    """A fresh Redis, a sandbox, a token, and a factory of worker processes.

    `start(n)` starts *n* workers with the token; `start(n, tokens=[...])` with a rotating
    provider over *tokens* whose active candidate the fleet shares.
    """
    redis_server.flush()
    workers: list[Worker] = []
    with Sandbox(seed=3) as sb:
        token = sb.issue_token()

        def start(n: int, tokens: Sequence[str] = ()) -> list[Worker]:
            given = ",".join(tokens) if tokens else token
            started = [Worker(redis_server.url, sb, given) for _ in range(n)]
            workers.extend(started)
            for worker in started:
                assert worker.read()["ready"]
            return started

        yield sb, token, start
        for worker in workers:
            worker.close()
