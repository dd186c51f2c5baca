"""What the tests share, importable as `helpers` (`pythonpath = ["tests"]`).

The assertions `raised`/`araised` and `eventually`, the one fake `Clock`, the one builder of
Meta's error answers (`graph_body`, `graph_error`) and the reliability records. No test module
defines its own clock or error builder, and no test module imports another (`test_layout.py`).

`tests/conftest.py` registers this module for pytest's assertion rewriting, so a failed
`assert` here shows its values the way one in a test does.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from wa_auth.errors import ApiError, from_response

E = TypeVar("E", bound=Exception)

#: A wall-clock time in 2027: where the fake wall clock starts (`Clock.wall` at t=0).
EPOCH = 1_800_000_000.0


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


# --- a fake clock ---------------------------------------------------------------------------------


class Clock:
    """A fake clock: time moves only when a test sets `t` or something sleeps.

    Pass it where the code under test takes a clock: `clock` itself (or `clock.monotonic`)
    reads `t`, and `clock.wall` reads `epoch + t`; `sleep` and `asleep` move `t` forward at
    once, recording each wait in `sleeps`, so nothing waits for real. Start it where the code
    expects its time: `Clock(EPOCH)` where one callable stands for the wall clock too,
    `Clock()` with `clock.wall` and `clock.monotonic` where the code takes both. Threads may
    sleep on it at once.
    """

    def __init__(self, t: float = 0.0, *, epoch: float = EPOCH) -> None:
        self.t = t
        self.epoch = epoch
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def __repr__(self) -> str:
        return f"Clock(t={self.t!r})"

    def monotonic(self) -> float:
        """The monotonic time: `t`."""
        return self.t

    def wall(self) -> float:
        """The wall-clock time: `epoch + t`."""
        return self.epoch + self.t

    def sleep(self, seconds: float) -> None:
        """Move the clock *seconds* forward at once (a negative wait is a bug: it fails)."""
        assert seconds >= 0, f"a sleep of {seconds} s"
        with self._lock:
            self.sleeps.append(seconds)
            self.t += seconds

    async def asleep(self, seconds: float) -> None:
        """`sleep`, then let the other tasks run once, as a real `asyncio.sleep` would."""
        self.sleep(seconds)
        await asyncio.sleep(0)


# --- Meta's error answers -------------------------------------------------------------------------


def graph_body(
    code: int,
    subcode: int | None = None,
    *,
    message: str | None = None,
    error_type: str | None = "OAuthException",
    fbtrace_id: str | None = "AbCdEfGh",
    **extra: Any,
) -> dict[str, Any]:
    """Meta's error envelope `{"error": {...}}` for *code* (and *subcode*).

    The message defaults to Meta's `(#code) ...` form; *error_type* and *fbtrace_id* are left
    out when None, and *extra* adds fields (`is_transient`, `error_data`, `error_user_msg`).
    """
    error: dict[str, Any] = {"message": f"(#{code}) test" if message is None else message}
    if error_type is not None:
        error["type"] = error_type
    error["code"] = code
    if subcode is not None:
        error["error_subcode"] = subcode
    if fbtrace_id is not None:
        error["fbtrace_id"] = fbtrace_id
    error.update(extra)
    return {"error": error}


def graph_error(
    status: int,
    code: int,
    subcode: int | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    fingerprint: str | None = None,
    **body: Any,
) -> ApiError:
    """The error `wa_auth.errors.from_response` makes of Meta's answer *status* + `graph_body`.

    *body* goes to `graph_body`; *fingerprint* sets the token fingerprint, as a client does
    for the token it sent.
    """
    error = from_response(status, graph_body(code, subcode, **body), headers or {})
    if fingerprint is not None:
        error.token_fingerprint = fingerprint
    return error
