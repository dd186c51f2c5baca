"""Assertions the tests share, importable as `helpers` (`pythonpath = ["tests"]`).

`tests/conftest.py` registers this module for pytest's assertion rewriting, so a failed
`assert` here shows its values the way one in a test does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

E = TypeVar("E", bound=Exception)


def raised(cls: type[E], call: Callable[[], object]) -> E:
    """Call *call* and return the error it raised, an instance of *cls*.

    Unlike `pytest.raises`, an error of another class is not re-raised with its traceback: the
    test fails on an assertion that compares the two class names (a diff) and shows the error's
    repr. A call that raises nothing fails the same way.
    """
    __tracebackhide__ = True
    caught: Exception | None = None
    try:
        call()
    except Exception as exc:  # any class is a result to compare
        caught = exc
    return _expect(cls, caught)


async def araised(cls: type[E], call: Callable[[], Awaitable[object]]) -> E:
    """Await *call()* and return the error it raised, an instance of *cls* (see `raised`)."""
    __tracebackhide__ = True
    caught: Exception | None = None
    try:
        await call()
    except Exception as exc:  # any class is a result to compare
        caught = exc
    return _expect(cls, caught)


def _expect(cls: type[E], caught: Exception | None) -> E:
    # Outside the `except` block, so the failure carries no "during handling" traceback.
    __tracebackhide__ = True
    if isinstance(caught, cls):
        return caught
    if caught is None:
        actual, shown = "nothing raised", "the call returned without raising"
    else:
        actual, shown = _name(type(caught)), f"caught {caught!r}"
    assert actual == _name(cls), shown
    # Two class objects of one name (a module imported twice): the names cannot show it.
    raise AssertionError(f"caught {caught!r}, not an instance of this {actual}")


def _name(cls: type[Exception]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


#: `make reliability` sets WA_AUTH_RELIABILITY=long: the reliability tests run at full size.
LONG = os.environ.get("WA_AUTH_RELIABILITY", "") == "long"


def record_reliability(name: str, figures: Mapping[str, Any]) -> None:
    """Append *figures* of the trial *name* to `$WA_AUTH_RELIABILITY_OUT` (JSON lines), if set.

    `scripts/reliability.py` reads the file to write docs/reliability.md; without the variable
    (a plain `make test`) nothing is written.
    """
    out = os.environ.get("WA_AUTH_RELIABILITY_OUT")
    if out:
        with Path(out).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"trial": name, "figures": dict(figures)}, sort_keys=True) + "\n")


def eventually(check: Callable[[], object], *, within: float = 20.0, every: float = 0.2) -> None:
    """Call *check* until it returns something true; fail after *within* seconds.

    For a state that settles on its own (a health probe that re-tests at most once a second):
    a bounded wait, not a timing assertion.
    """
    __tracebackhide__ = True
    import time

    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not true within {within} s: {check}"
        time.sleep(every)
