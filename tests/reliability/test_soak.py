"""The soak against a faulty sandbox (short form here; `make reliability` runs 5,000 sends).

See `reliability/soak.py` for the scenario. What must hold at any size: no intent lost, none
delivered twice, no more requests with the revoked token after Meta first refused it than
sends were in flight, and every `maybe_delivered` intent explained by a dropped connection.
"""

from __future__ import annotations

from helpers import LONG, record_reliability
from reliability.soak import run_soak

N = 5000 if LONG else 300


def test_a_soak_with_faults_and_a_mid_run_rotation_loses_nothing_and_sends_nothing_twice(tmp_path):
    figures = run_soak(N, tmp_path, timeout=900 if LONG else 120)
    record_reliability("soak", figures)
    assert figures["lost"] == 0, figures["lost_keys"]
    assert figures["duplicated"] == 0, figures["duplicated_keys"]
    assert figures["final_states"].keys() <= {"delivered", "maybe_delivered"}
    assert figures["dead_token_requests_after_first_refusal"] < figures["concurrency_bound"]
    assert sum(figures["maybe_delivered_causes"].values()) == figures["maybe_delivered"]
    # Every answer lost is a connection the sandbox dropped; nothing else makes one.
    assert figures["maybe_delivered"] <= figures["requests_by_outcome"].get("dropped", 0)
