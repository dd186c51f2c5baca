"""Run every Python block of README.md and docs/*.md as a test, with Sybil (issue #9).

The blocks of one document run in order and share one namespace, so a page reads like one
session at the prompt. Before a document's first block, the namespace gets:

- `sandbox`: a running `wa_auth.sandbox.Sandbox` (seed 0, frozen clock), of this document
  alone, closed after its last block;
- `secrets`: an empty temporary directory, standing in for `/run/secrets`, removed after;
- `postgres_dsn` (docs/outbox.md only): the URL of a real PostgreSQL that this session started
  (`tests/pgserver.py`), for the blocks of its "PostgreSQL" section.

`docs/fleet.md` also gets `redis_url`, the URL of a real `redis-server` (the `redis_url`
fixture below, which `tests/` use too): started once per session on 127.0.0.1 with a random
port in a temporary directory. Without the Debian package `redis-server` its tests skip, and
under `CI=true` they fail (`.ci/run` installs it).

Each page says so in one sentence. A block that cannot run offline is preceded by
`<!-- skip: next "why" -->` and says why in the visible text too. `tests/test_docs.py` checks
that no Python block escapes collection and runs the examples.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.sybil import SybilCollection


def _setup(namespace: dict[str, Any]) -> None:
    from wa_auth.sandbox import Sandbox

    namespace["sandbox"] = Sandbox(seed=0, freeze_clock=True).start()
    namespace["secrets"] = Path(tempfile.mkdtemp(prefix="wa-auth-docs-"))


def _teardown(namespace: dict[str, Any]) -> None:
    namespace["sandbox"].close()
    shutil.rmtree(namespace["secrets"], ignore_errors=True)


#: Pages whose blocks talk to the session's real Redis (`redis_url`).
_REDIS_PAGES = ["docs/fleet.md"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL for this session (`tests/pgserver.py`); else skip (CI=true: fail)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
    from pgserver import PostgresServer, find_bin

    bindir = find_bin()
    if bindir is None or not (bindir / "pg_ctl").exists():
        message = (
            "REAL COMPONENT MISSING: postgresql: initdb/pg_ctl not found "
            "(apt-get install postgresql)"
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI=true: a missing component fails the run)", pytrace=False)
        pytest.skip(message)
    server = PostgresServer(bindir).init()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: Any) -> str:
    """The URL of the session's PostgreSQL test database (its password is a test secret)."""
    return str(postgres_server.dsn)


#: The pages whose blocks run against the session's PostgreSQL (`postgres_dsn`).
POSTGRES_DOCS = ["docs/outbox.md"]

#: The parsers and hooks, shared with `tests/test_docs.py`, which counts what they collect.
DOCS = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    excludes=[*POSTGRES_DOCS, *_REDIS_PAGES],
    setup=_setup,
    teardown=_teardown,
    name="docs",
)
POSTGRES = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=POSTGRES_DOCS,
    setup=_setup,
    teardown=_teardown,
    fixtures=["postgres_dsn"],
    name="postgres-docs",
)
REDIS_DOCS = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=_REDIS_PAGES,
    setup=_setup,
    teardown=_teardown,
    fixtures=["redis_url"],
    name="redis-docs",
)

pytest_collect_file = SybilCollection([DOCS, POSTGRES, REDIS_DOCS]).pytest()


# --- a real redis-server ---------------------------------------------------------------------

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A `redis-server` of the test session: 127.0.0.1, a random port, a temporary directory.

    `stop()` and `start()` kill and restart it on the same port (a test of Redis going away);
    `dump()` saves and returns the RDB file's bytes (the canary scan).
    """

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.dir = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, on the same port and directory) and wait for its PING."""
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        args += ["--dbfilename", "dump.rdb", "--logfile", str(self.dir / "redis.log")]
        # Uncompressed, so the canary scan of the dump reads every value as written.
        args += ["--rdbcompression", "no"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)  # noqa: S603
        import redis

        deadline = time.monotonic() + 20
        while not self._answers(redis):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start: {log}")
            time.sleep(0.02)

    def _answers(self, redis: Any) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                client.ping()
        except redis.exceptions.ConnectionError:
            return False
        return True

    def stop(self) -> None:
        """Kill the server (Redis going away)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def flush(self) -> None:
        """Drop every key."""
        import redis

        with redis.Redis.from_url(self.url) as client:
            client.flushall()

    def dump(self) -> bytes:
        """Save, and return the RDB file's bytes."""
        import redis

        with redis.Redis.from_url(self.url) as client:
            client.save()
        return (self.dir / "dump.rdb").read_bytes()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's real `redis-server`; skip without the Debian package (CI=true: fail)."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if binary is None:
        message = "REAL COMPONENT MISSING: redis: no redis-server (apt-get install redis-server)"
        if IN_CI:
            pytest.fail(message + " (CI=true: a missing component fails the run)", pytrace=False)
        pytest.skip(message)
    directory = Path(tempfile.mkdtemp(prefix="wa-auth-redis-"))
    server = RedisServer(binary, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """`redis://127.0.0.1:PORT/0` of the session's real `redis-server`."""
    return redis_server.url
