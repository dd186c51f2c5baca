"""A smoke run of the benchmark harness with tiny counts: it starts, measures, reports, stops.

No timing is asserted; the real run is `make bench` on a quiet machine.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@pytest.mark.real_component("nginx")
def test_harness_smoke_run(tmp_path, require_component):
    """`run.py --smoke` runs a few variants against its own nginx and writes the JSON report."""
    if _nginx() is None:
        require_component("nginx", "the benchmark peer; apt-get install -y nginx")
    only = ["sync.httpx.raw", "sync.wa_auth", "error.sync.wa_auth.401", "micro.classify.*"]
    # The stdlib transport's rows (issue 19) and the one-message CLI against the httpx script.
    only += ["sync.wa_auth.stdlib*", "sync.http_client.raw", "cli.send.*"]
    # The guarded send with and without an outbox, and the enqueue baseline (it once named a
    # private name of the package that moved, and broke).
    only += ["guard.sync.send", "outbox.sync.none", "outbox.sync.sqlite", "outbox.executemany"]
    only += ["outbox.enqueue_many"]
    if importlib.util.find_spec("aiohttp") is not None:
        only += ["async.aiohttp.raw", "async.wa_auth.fast"]
    out = tmp_path / "latest.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--n", "5"]
    cmd += ["--out", str(out), "--timeout", "60"]
    if importlib.util.find_spec("matplotlib") is None:
        cmd.append("--no-plot")
    for pattern in only:
        cmd += ["--only", pattern]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    rows = {(r["name"], r["concurrency"]): r for r in report["rows"]}
    assert rows[("sync.wa_auth", 1)]["status"] == "ok"
    assert rows[("sync.wa_auth", 1)]["msgs_per_s"] > 0
    assert rows[("sync.wa_auth", 1)]["ratio"] is not None
    assert rows[("error.sync.wa_auth.401", 1)]["status"] == "ok"
    for name in (
        "sync.wa_auth.stdlib",
        "sync.wa_auth.stdlib_vs_http_client",
        "cli.send.one",
        "guard.sync.send",
        "outbox.sync.sqlite",
        "outbox.enqueue_many",
    ):
        assert rows[(name, 1)]["status"] == "ok", rows[(name, 1)]
        assert rows[(name, 1)]["ratio"] is not None
    assert rows[("micro.classify.190_463", 1)]["us_per_op"] > 0
    assert "nginx" in report["machine"]["nginx"]
    if report["plot"]:
        assert Path(report["plot"]).stat().st_size > 0
    assert "ratio" in proc.stdout


def test_a_run_without_async_rows_draws_no_plot(tmp_path, monkeypatch):
    """`--only` over rows of no async group writes no (empty) throughput plot."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    run = importlib.import_module("run")
    png = tmp_path / "throughput.png"
    rows = [{"group": "sync", "label": "raw", "concurrency": 1, "msgs_per_s": 100.0}]
    assert run.plot(rows, png) is not None
    assert not png.exists()
