"""Storms end to end: 64 guarded intents in flight against the sandbox's seeded 130429, 131056
and 5xx answers, on the async and the fast client, counted at the sandbox.

The storms are `benchmarks/reliability/storms.py`'s, which also writes the reliability report's
figures; time is its `VirtualTime` (it moves only when every sender sleeps), so the counts do
not depend on the machine's speed and nothing here asserts a duration.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "reliability" / "storms.py"
#: Seconds of wall time one storm may take before the test fails as hung.
HARD_TIMEOUT = 90

pytestmark = pytest.mark.anyio


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wa_auth_storms", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


storms = _load()


@pytest.mark.parametrize("client", ["async", "fast"])
async def test_a_130429_storm_costs_about_one_extra_request_per_in_flight_intent(client):
    """5 s of 130429 with 64 intents in flight: each in-flight intent spends one request on the
    storm, one probe per hold asks Meta, and every intent is delivered after it, at about 2
    requests per intent (each intent retrying alone spent 4: 256 requests)."""
    with anyio.fail_after(HARD_TIMEOUT):
        row = await storms.rate_limit_storm(client, intents=64, storm=5.0, retry_after=1)
    assert row["requests"] <= 2 * 64 + row["holds"]
    assert row["per_intent"] < 2.1
    assert row["fault"] <= 64 + row["holds"]  # one per intent in flight, one probe per hold
    assert row["deliveries"] == {"delivered": 64}
    assert row["accepted"] == 64


@pytest.mark.parametrize("client", ["async", "fast"])
async def test_a_131056_storm_holds_the_pair_not_the_number(client):
    """12 s of 131056 for one user, 32 of 64 intents to that user: the pair backs off as one
    (about 2 requests per intent to it), and the 32 intents to other users go out once each."""
    with anyio.fail_after(HARD_TIMEOUT):
        row = await storms.pair_storm(client, intents=64, stormed=32, storm=12.0)
    assert row["deliveries"] == {"delivered": 64}
    assert row["other_requests"] == 32
    holds = 12 // 6
    assert row["pair_requests"] <= 2 * 32 + holds
    assert row["fault"] <= 32 + holds


@pytest.mark.parametrize("client", ["async", "fast"])
async def test_a_5xx_storm_opens_the_circuit_once(client):
    """300 intents, 16 in flight, every send a 500: the circuit holds all but the first wave,
    and the sends that were in flight when it opened do not open it again (its cool-down stays
    30 s instead of doubling per straggler to the 600 s cap)."""
    with anyio.fail_after(HARD_TIMEOUT):
        row = await storms.circuit_storm(client, intents=300, concurrency=16)
    assert row["deliveries"] == {"queued": 300}
    assert row["requests"] <= 16 + row["circuit_threshold"]
    assert row["held_by_circuit"] >= 300 - 16
    assert row["circuit_opens"] == 1
    assert row["cooldown"] <= 30.0


def test_the_reliability_script_reports_its_figures(tmp_path):
    """`storms.py --quick` (what the reliability report runs) writes every row as JSON."""
    out = tmp_path / "storms.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=HARD_TIMEOUT * 2,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert json.loads(proc.stdout)["rows"] == rows
    by = {(r["storm"], r.get("limiter"), r.get("concurrency")): r for r in rows}
    assert by["130429", True, None]["per_intent"] < by["130429", False, None]["per_intent"]
    assert by["5xx (131000)", None, 1]["requests"] <= 5
