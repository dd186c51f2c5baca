"""Fleet mode with real processes: workers share a verdict, a pause and the limiter on real Redis.

Each worker is `tests/fleet_worker.py` in its own Python process (the `fleet` fixture of
`tests/fleet/conftest.py`), sending to the embedded sandbox through a client and a guard wired to
one `RedisState`; the sandbox counts the requests.
"""

from __future__ import annotations

import bisect
import itertools

import pytest

from wa_auth.providers import Token
from wa_auth.sandbox import Sandbox

pytestmark = [pytest.mark.real_component("redis"), pytest.mark.once]

TO = "+15551234567"


def _with(sb: Sandbox, token: str) -> int:
    fingerprint = Token(token).fingerprint
    return sum(1 for r in sb.requests() if r.token_fingerprint == fingerprint)


def test_a_verdict_learned_by_one_worker_refuses_the_token_in_every_other(fleet):
    """After worker A's 401, the other workers refuse the token before any request."""
    sb, token, start = fleet
    a, *others = start(4)
    assert a.ask(op="send", to=TO)["state"] == "delivered"
    sb.set_token_state(token, "revoked_password_changed")

    failed = a.ask(op="send", to=TO)
    assert failed["error"] == "TokenRevokedError", failed
    after_first_failure = _with(sb, token)
    fingerprint = Token(token).fingerprint
    for worker in others:
        assert worker.ask(op="wait_verdict", fp=fingerprint) == {"seen": True}
    answers = [worker.ask(op="send", to=TO) for worker in others]

    assert all(answer["error"] == "TokenRevokedError" for answer in answers), answers
    assert _with(sb, token) == after_first_failure  # not one more request with the dead token


def test_workers_that_send_at_once_after_the_revocation_send_at_most_one_more_each(fleet):
    """Without waiting for the copy, each other worker sends at most one more dead request."""
    sb, token, start = fleet
    a, *others = start(4)
    sb.set_token_state(token, "revoked_password_changed")
    assert a.ask(op="send", to=TO)["error"] == "TokenRevokedError"
    first = _with(sb, token)
    for worker in others:
        worker.tell(op="send", to=TO)
    answers = [worker.read() for worker in others]

    assert all(answer["error"] == "TokenRevokedError" for answer in answers), answers
    assert _with(sb, token) - first <= len(others)


def test_an_account_lock_learned_by_one_worker_pauses_the_number_in_all(fleet):
    """A's account-state failure pauses the number for B (no request); B's resume frees A."""
    sb, _token, start = fleet
    a, b = start(2)
    sb.set_account_state("locked")
    locked = a.ask(op="send", to=TO)
    assert locked["error"] == "AccountStateError", locked
    requests = len(sb.requests())

    assert b.ask(op="wait_pause", number=sb.phone_number_id, present=True) == {"ok": True}
    paused = b.ask(op="send", to=TO)
    assert paused["state"] != "delivered"
    assert paused["attempts"] == 0
    assert len(sb.requests()) == requests  # B asked Meta nothing

    sb.set_account_state("ok")
    assert b.ask(op="resume", number=sb.phone_number_id) == {"ok": True}
    assert a.ask(op="wait_pause", number=sb.phone_number_id, present=False) == {"ok": True}
    assert a.ask(op="send", to=TO)["state"] == "delivered"


RATE = 50.0
#: The issue's figures are 2,000 messages at 50 msg/s (40 s, the `fleet.limiter.4proc` bench
#: row); the test keeps the 2,000 and the ratios at 200 msg/s, so it takes 10 s.
FAST_RATE = 200.0
MESSAGES = 2_000


def _window_ratios(slots: list[float], rate: float) -> tuple[float, float]:
    """The worst 2 s window and the steady-state average (first and last second left out)."""
    worst = max(bisect.bisect_left(slots, s + 2.0, lo=i) - i for i, s in enumerate(slots))
    lo = bisect.bisect_left(slots, slots[0] + 1.0)
    hi = bisect.bisect_left(slots, slots[-1] - 1.0) - 1
    return worst / 2.0 / rate, (hi - lo) / (slots[hi] - slots[lo]) / rate


def test_four_processes_sending_2000_never_exceed_the_fleet_rate(fleet):
    """4 processes, 2,000 reservations at 200/s: no 2 s window above 1.05x, average >= 0.95x."""
    _sb, _token, start = fleet
    workers = start(4)
    for worker in workers:
        worker.tell(
            op="reserve", n=MESSAGES // 4, rate=FAST_RATE, recipient=None, pair_interval=None
        )
    answers = [worker.read() for worker in workers]
    assert all(answer["fallbacks"] == 0 for answer in answers)
    slots = sorted((a + b) / 2 for answer in answers for a, b in answer["slots"])
    assert len(slots) == MESSAGES

    worst, average = _window_ratios(slots, FAST_RATE)
    print(
        f"fleet limiter, 2,000 at {FAST_RATE:g}/s: worst 2 s {worst:.3f}x, average {average:.3f}x"
    )
    assert worst <= 1.05
    assert average >= 0.95


def test_the_pair_limit_holds_across_processes(fleet):
    """4 processes writing to one recipient: consecutive slots are a pair interval apart."""
    _sb, _token, start = fleet
    workers = start(4)
    for worker in workers:
        worker.tell(op="reserve", n=3, rate=RATE, recipient=TO, pair_interval=0.2)
    slots = sorted(tuple(slot) for worker in workers for slot in worker.read()["slots"])

    # The widest each gap can have been, given when each slot was asked for and answered.
    gaps = [later[1] - earlier[0] for earlier, later in itertools.pairwise(slots)]
    assert min(gaps) >= 0.2 - 0.01, gaps
