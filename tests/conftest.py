"""Shared fixtures and the CI rule for real components.

A test that needs a real server (OpenBao, Redis, nginx, n8n) calls `require_component(name,
reason)` (or uses the `real_component` marker). Outside CI it skips with a loud reason; under
`CI=true` the same situation fails the run, so a missing install step cannot hide.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_component(name: str, reason: str) -> None:
    """Skip (or, under CI=true, fail) because the real component *name* is unavailable."""
    message = f"REAL COMPONENT MISSING: {name}: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only (the library supports asyncio)."""
    return "asyncio"
