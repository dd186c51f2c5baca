"""Shared fixtures and the CI rule for real components.

A test that needs a real server (OpenBao, Redis, nginx, n8n) requests the `require_component`
fixture and calls it with the component's name and the reason (and carries the
`real_component` marker). Outside CI it skips with a loud reason; under `CI=true` the same
situation fails the run, so a missing install step cannot hide.

The case tables shared by sync and async tests (and the n8n scenarios) are `tests/cases/`; the
shared assertions, fake clock and Graph-error builder are `tests/helpers.py`; the CLI runner is
`tests/running.py` and the `wa-auth serve` process `tests/serving.py`. All are importable by
name (`pythonpath = ["tests"]`); no test module imports another (`tests/test_layout.py`).
"""

from __future__ import annotations

import gc
import hashlib
import os
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from typing_extensions import Self

from wa_auth.events import Counters

# Before any test module imports them: their asserts then report values like a test's.
pytest.register_assert_rewrite("cases", "helpers", "running", "serving")

#: `make reliability` (scripts/reliability.py) runs every property test with this profile.
settings.register_profile("reliability", max_examples=1000, deadline=None)

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _require_component(name: str, reason: str) -> None:
    """Skip (or, under CI=true, fail) because the real component *name* is unavailable."""
    message = f"REAL COMPONENT MISSING: {name}: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def require_component() -> Callable[[str, str], None]:
    """`require_component(name, reason)`: skip, or under CI=true fail, for a missing component."""
    return _require_component


@pytest.fixture(scope="module")
def n8n_bin() -> str:
    """The n8n binary that tests/n8n/ensure.sh installed (or $N8N_BIN); else skip (CI: fail)."""
    if os.environ.get("N8N_BIN"):
        return os.environ["N8N_BIN"]
    runtime = Path(__file__).resolve().parent / "n8n"
    digest = hashlib.sha256((runtime / "package-lock.json").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("WA_AUTH_N8N_CACHE", Path.home() / ".cache" / "wa-auth-n8n"))
    binary = cache / digest / "node_modules" / ".bin" / "n8n"
    if not os.access(binary, os.X_OK):
        _require_component("n8n", f"not installed at {binary}: run `bash tests/n8n/ensure.sh`")
    return str(binary)


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only (the library supports asyncio)."""
    return "asyncio"


@pytest.fixture
def counters() -> Counters:
    """A fresh `Counters`, for `Events(counters)` and asserting on what a call reported."""
    return Counters()


class GarbageProbe:
    """Collect what a block of code leaves to the cyclic garbage collector.

    `wa_auth_garbage()` lists the leftovers that belong to wa_auth: its errors and the frames of
    its code. A failed call must free those by reference counting; httpx's own cycles are not
    ours to judge.
    """

    def __init__(self) -> None:
        self.garbage: list[object] = []

    def __enter__(self) -> Self:
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            self.garbage = list(gc.garbage)
            gc.garbage.clear()
        finally:
            gc.set_debug(0)
            gc.enable()

    def wa_auth_garbage(self) -> list[str]:
        """Describe each leftover wa_auth error, and each wa_auth frame that holds an error.

        A transport library's own cycles (aiohttp's connect error keeps itself in a local) can
        carry our frames along; those frames are only reported when they hold an error.
        """
        from wa_auth.errors import WhatsAppError

        found = []
        for obj in self.garbage:
            if isinstance(obj, WhatsAppError):
                found.append(repr(obj))
            elif isinstance(obj, types.FrameType) and "wa_auth" in obj.f_code.co_filename:
                held = [k for k, v in obj.f_locals.items() if isinstance(v, WhatsAppError)]
                if held:
                    found.append(f"frame {obj.f_code.co_name} holds {held}")
        return found


@pytest.fixture
def garbage_probe() -> type[GarbageProbe]:
    """The `GarbageProbe` class: `with garbage_probe() as probe: ...`."""
    return GarbageProbe
