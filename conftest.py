"""Run every Python block of README.md and docs/*.md as a test, with Sybil (issue #9).

The blocks of one document run in order and share one namespace, so a page reads like one
session at the prompt. Before a document's first block, the namespace gets:

- `sandbox`: a running `wa_auth.sandbox.Sandbox` (seed 0, frozen clock), of this document
  alone, closed after its last block;
- `secrets`: an empty temporary directory, standing in for `/run/secrets`, removed after;
- `postgres_dsn` (docs/outbox.md only): the URL of a real PostgreSQL that this session started
  (`tests/pgserver.py`), for the blocks of its "PostgreSQL" section.

Each page says so in one sentence. A block that cannot run offline is preceded by
`<!-- skip: next "why" -->` and says why in the visible text too. `tests/test_docs.py` checks
that no Python block escapes collection and runs the examples.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser


def _setup(namespace: dict[str, Any]) -> None:
    from wa_auth.sandbox import Sandbox

    namespace["sandbox"] = Sandbox(seed=0, freeze_clock=True).start()
    namespace["secrets"] = Path(tempfile.mkdtemp(prefix="wa-auth-docs-"))


def _teardown(namespace: dict[str, Any]) -> None:
    namespace["sandbox"].close()
    shutil.rmtree(namespace["secrets"], ignore_errors=True)


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
    excludes=POSTGRES_DOCS,
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

pytest_collect_file = (DOCS + POSTGRES).pytest()
