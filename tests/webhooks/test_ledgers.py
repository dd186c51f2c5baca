"""Every webhook ledger keeps the same promises: the memory ledger and the SQLite one run the
same tests (claim, advance, release, retreat, the window, the size bound, both drivers, threads),
and the SQLite one keeps them across a reopening and between processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from helpers import Clock
from wa_auth.errors import ConfigurationError, OutboxError
from wa_auth.webhooks import (
    APPLY,
    DUPLICATE,
    STALE,
    AccountUpdate,
    MemoryWebhookLedger,
    MessageStatus,
    SqliteWebhookLedger,
    WebhookLedger,
    aadmit,
    admit,
    arelease,
    release,
)

WINDOW = 100.0
Make = Callable[..., Any]


def status(message: str, name: str) -> MessageStatus:
    return MessageStatus(id=message, status=name, key=f"status:{message}:{name}")


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """A factory of the ledger under test; the SQLite ones are closed after the test."""
    opened: list[SqliteWebhookLedger] = []

    def factory(**kwargs: Any) -> Any:
        if request.param == "memory":
            return MemoryWebhookLedger(**kwargs)
        ledger = SqliteWebhookLedger(tmp_path / "ledger.db", **kwargs)
        opened.append(ledger)
        return ledger

    yield factory
    for ledger in opened:
        ledger.close()


def test_is_a_webhook_ledger(make: Make) -> None:
    """The ledger implements the protocol (both forms of every method)."""
    assert isinstance(make(), WebhookLedger)


def test_an_event_without_order_is_applied_once(make: Make) -> None:
    """An account update is deduped by its key and applied, never ordered."""
    ledger = make()
    event = AccountUpdate(key="sha256:abc", event="DISABLED_UPDATE")

    assert admit(event, ledger).verdict == APPLY
    assert admit(event, ledger).verdict == DUPLICATE


def test_statuses_out_of_order_never_go_back(make: Make) -> None:
    """read, then delivered, then sent: only read applies; a late failed still applies."""
    ledger = make()
    verdicts = [admit(status("m", s), ledger).verdict for s in ("read", "delivered", "sent")]

    assert verdicts == [APPLY, STALE, STALE]
    assert admit(status("m", "failed"), ledger).verdict == APPLY
    assert admit(status("m", "read"), ledger).verdict == DUPLICATE
    assert admit(status("m", "delivered"), ledger).verdict == DUPLICATE


def test_an_unknown_status_is_deduped_but_not_ordered(make: Make) -> None:
    """A status outside sent/delivered/read/failed is applied once, the order left alone."""
    ledger = make()
    admit(status("m", "read"), ledger)

    assert admit(status("m", "deleted"), ledger).verdict == APPLY
    assert admit(status("m", "deleted"), ledger).verdict == DUPLICATE
    assert admit(status("m", "delivered"), ledger).verdict == STALE


def test_release_lets_the_redelivery_apply(make: Make) -> None:
    """release() forgets the key and puts the message back."""
    ledger = make()
    admit(status("m", "sent"), ledger)
    admitted = admit(status("m", "delivered"), ledger)

    release(admitted, ledger)

    assert admit(status("m", "delivered"), ledger).verdict == APPLY


def test_release_keeps_a_later_status_recorded_meanwhile(make: Make) -> None:
    """Putting a message back is compare-and-set: a read recorded since stays."""
    ledger = make()
    delivered = admit(status("m", "delivered"), ledger)
    admit(status("m", "read"), ledger)

    release(delivered, ledger)

    assert ledger.advance("m", 3) == 3
    assert admit(status("m", "delivered"), ledger).verdict == STALE


def test_retreat_to_nothing_forgets_the_message(make: Make) -> None:
    """A first status undone leaves the message unknown again."""
    ledger = make()
    admitted = admit(status("m", "read"), ledger)
    release(admitted, ledger)

    assert ledger.advance("m", 1) is None


def test_release_of_a_duplicate_changes_nothing(make: Make) -> None:
    """Undoing a duplicate must not forget the first delivery's key."""
    ledger = make()
    admit(status("m", "sent"), ledger)
    duplicate = admit(status("m", "sent"), ledger)

    release(duplicate, ledger)

    assert admit(status("m", "sent"), ledger).verdict == DUPLICATE


@pytest.mark.anyio
async def test_the_async_driver_decides_the_same(make: Make) -> None:
    """aadmit / arelease run the same flow with the ledger's a-methods."""
    ledger = make()
    first = await aadmit(status("m", "delivered"), ledger)
    assert first.verdict == APPLY
    assert (await aadmit(status("m", "sent"), ledger)).verdict == STALE
    await arelease(first, ledger)
    assert (await aadmit(status("m", "delivered"), ledger)).verdict == APPLY
    assert await ledger.aclaim("k")
    assert not await ledger.aclaim("k")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"window": -1},
        {"window": "7d"},
        {"window": float("inf")},
        {"max_keys": 0},
        {"max_keys": 1.5},
    ],
    ids=["zero-window", "negative-window", "text-window", "infinite", "zero-keys", "float-keys"],
)
def test_bad_bounds_are_configuration_errors(make: Make, kwargs: dict[str, Any]) -> None:
    """A window or size bound that cannot work is refused by name."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        make(**kwargs)


def test_a_key_is_forgotten_after_the_window(make: Make) -> None:
    """Past the window a key is new again, and so is a message's furthest status."""
    clock = Clock()
    ledger = make(window=WINDOW, clock=clock)
    assert ledger.claim("k")
    assert ledger.advance("m", 3) is None
    clock.t = WINDOW - 1
    assert not ledger.claim("k")
    assert ledger.advance("m", 1) == 3
    clock.t = WINDOW + 1
    assert ledger.claim("k")
    assert ledger.advance("m", 1) is None


def test_the_size_bound_forgets_the_oldest_first(make: Make) -> None:
    """Past max_keys the oldest key goes first, and the ledger never grows beyond it."""
    ledger = make(max_keys=3)
    for key in "abcd":
        assert ledger.claim(key)

    assert len(ledger) == 3
    assert ledger.claim("a")
    assert not ledger.claim("d")
    for message in ("m1", "m2", "m3", "m4"):
        assert ledger.advance(message, 1) is None
    assert ledger.advance("m4", 2) == 1
    assert ledger.advance("m1", 2) is None  # forgotten: the oldest of four, over a bound of 3


def test_claims_from_many_threads_admit_each_key_once(make: Make) -> None:
    """Eight threads deliver the same events: no key is applied twice, every key decided once."""
    ledger = make()
    events = [status(f"m{i}", s) for i in range(20) for s in ("sent", "delivered", "failed")]
    decided: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait(timeout=30)
        for event in events:
            verdict = admit(event, ledger).verdict
            if verdict != DUPLICATE:
                with lock:
                    decided.append((event.key, verdict))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    keys = [key for key, _ in decided]
    assert sorted(keys) == sorted({e.key for e in events})
    applied = {key for key, verdict in decided if verdict == APPLY}
    assert {f"status:m{i}:failed" for i in range(20)} <= applied


# --- the SQLite ledger alone ------------------------------------------------------------------


def test_the_sqlite_ledger_survives_a_reopening(tmp_path: Path) -> None:
    """What one process claimed is a duplicate for the next one to open the file."""
    path = tmp_path / "ledger.db"
    with SqliteWebhookLedger(path) as ledger:
        assert admit(status("m", "read"), ledger).verdict == APPLY
    with SqliteWebhookLedger(path) as ledger:
        assert admit(status("m", "read"), ledger).verdict == DUPLICATE
        assert admit(status("m", "delivered"), ledger).verdict == STALE


def test_the_sqlite_ledger_shares_the_state_file(tmp_path: Path) -> None:
    """Its tables are a component of their own: the state file keeps working beside them."""
    from wa_auth.state import StateFile

    path = tmp_path / "state.db"
    with StateFile(path) as state, SqliteWebhookLedger(path) as ledger:
        state.pauses.list()
        assert ledger.claim("k")
    with StateFile(path) as state, SqliteWebhookLedger(path, create=False) as ledger:
        assert not ledger.claim("k")


def test_a_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    """create=False on no file: an OutboxError naming the ledger's file."""
    with pytest.raises(OutboxError, match="webhook ledger file"):
        SqliteWebhookLedger(tmp_path / "none.db", create=False)


_WORKER = """
import json, sys
from wa_auth.webhooks import SqliteWebhookLedger, MessageStatus, admit
path, = sys.argv[1:]
ledger = SqliteWebhookLedger(path, busy_timeout=30)
sys.stdin.readline()  # every process starts together
decided = []
for i in range(30):
    for s in ("sent", "delivered", "read", "failed"):
        e = MessageStatus(id=f"m{i}", status=s, key=f"status:m{i}:{s}")
        verdict = admit(e, ledger).verdict
        if verdict != "duplicate":
            decided.append([e.key, verdict])
ledger.close()
print(json.dumps(decided))
"""


def test_processes_sharing_the_file_admit_each_key_once(tmp_path: Path) -> None:
    """Four processes deliver the same 120 events into one file: each key decided once, over
    all of them, and every message's final `failed` applied exactly once."""
    path = str(tmp_path / "ledger.db")
    SqliteWebhookLedger(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    decided: list[tuple[str, str]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        decided.extend((key, verdict) for key, verdict in json.loads(out))

    keys = [key for key, _ in decided]
    assert len(keys) == len(set(keys)) == 120
    applied = [key for key, verdict in decided if verdict == APPLY]
    assert all(applied.count(f"status:m{i}:failed") == 1 for i in range(30))


# --- the SQLite ledger against the model ------------------------------------------------------

_MESSAGES = ("m1", "m2")
_STATUSES = ("sent", "delivered", "read", "failed", "deleted")


class SqliteLedgerMachine(RuleBasedStateMachine):
    """Deliveries in any order, redelivered at any time, the clock moving, releases: the SQLite
    ledger's verdicts match a model in which a key is remembered for the window and a message
    only moves on (the memory ledger's machine, on a file)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.directory = tempfile.mkdtemp(prefix="wa-auth-ledger-")
        self.ledger = SqliteWebhookLedger(
            Path(self.directory) / "l.db", window=WINDOW, max_keys=1000, clock=self.clock
        )
        self.claimed: dict[str, float] = {}
        self.furthest: dict[str, tuple[int, float]] = {}
        self.last: Any = None

    def _live(self, when: float) -> bool:
        return self.clock.t < when + WINDOW

    @rule(message=st.sampled_from(_MESSAGES), name=st.sampled_from(_STATUSES))
    def deliver(self, message: str, name: str) -> None:
        event = status(message, name)
        admitted = admit(event, self.ledger)
        verdict = admitted.verdict
        seen = event.key in self.claimed and self._live(self.claimed[event.key])
        if seen:
            assert verdict == DUPLICATE
            return
        self.claimed[event.key] = self.clock.t
        order = event.order
        held = self.furthest.get(message)
        previous = held[0] if held is not None and self._live(held[1]) else None
        if order is None:
            assert verdict == APPLY
        elif previous is not None and previous >= order:
            assert verdict == STALE
        else:
            assert verdict == APPLY
            self.furthest[message] = (order, self.clock.t)
        self.last = (admitted, previous)

    @rule()
    def undo_the_last(self) -> None:
        """release() of the last admission: its key is new again, its message put back."""
        if self.last is None:
            return
        admitted, previous = self.last
        self.last = None
        release(admitted, self.ledger)
        self.claimed.pop(admitted.event.key, None)
        message, order = admitted.event.message_id, admitted.event.order
        held = self.furthest.get(message)
        if admitted.advanced and held is not None and held[0] == order:
            if previous is None:
                del self.furthest[message]
            else:
                self.furthest[message] = (previous, held[1])

    @rule(seconds=st.sampled_from([1.0, WINDOW / 2, WINDOW + 1]))
    def wait(self, seconds: float) -> None:
        self.clock.t += seconds

    @invariant()
    def bounded(self) -> None:
        assert len(self.ledger) <= 1000

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.directory, ignore_errors=True)


SqliteLedgerMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None
)
TestSqliteLedger = SqliteLedgerMachine.TestCase
