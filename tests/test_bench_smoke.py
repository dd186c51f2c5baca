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
        # Issue 19's serve rows: CPU per item (a `cpu` row's ratio) and lists of 50 intents.
        only += ["serve.cpu", "serve.list", "serve.inprocess", "serve.inprocess.list"]
        # The guarded fast send and the fast send with an outbox (group commit), at 64.
        only += ["guard.async.fast", "async.wa_auth.fast.same", "outbox.fast.none"]
        only += ["outbox.fast.sqlite"]
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
    if importlib.util.find_spec("aiohttp") is not None:
        for name in ("serve.cpu", "serve.list"):
            assert rows[(name, 16)]["status"] == "ok", rows[(name, 16)]
            assert rows[(name, 16)]["ratio"] is not None
            assert "serve_cpu_us_per_msg" in rows[(name, 16)]["figures"]
        for name in ("guard.async.fast", "outbox.fast.sqlite"):
            assert rows[(name, 64)]["status"] == "ok", rows[(name, 64)]
            assert rows[(name, 64)]["ratio"] is not None
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


BENCH_NODE = ROOT / "tests" / "n8n" / "bench_node.py"


def test_n8n_bench_report():
    """bench_node.py's report: items/s and CPU per item of each row from n8n's run data, ratios."""
    rows = {"wa_auth node": 100, "wa_auth node (raw intent)": 80}
    rows |= {"HTTP Request per item": 1000, "Code node batches": 100}
    run_data = {
        name: [{"startTime": 1000 * n, "executionTime": ms, "data": {"main": [[{}] * 3, [{}]]}}]
        for n, (name, ms) in enumerate(rows.items(), 1)
    }
    # serve's and n8n's CPU seconds at 0.5 s steps: each uses 0.1 s of CPU a second.
    samples = [(t / 2, t / 20, t / 20) for t in range(20)]
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_node; "
        "print(json.dumps(bench_node.report(*map(json.loads, sys.argv[2:]))))"
    )
    alone = {"seconds": 0.05, "items_per_s": 80.0, "cpu_us_per_item": {"serve": 9000}}
    args = [str(BENCH_NODE.parent), json.dumps(run_data), "4", json.dumps(samples)]
    args.append(json.dumps(alone))
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rows"]["wa_auth node"]["items_per_s"] == 40.0
    assert report["node_vs_http_request"] == 10.0
    assert report["raw_node_vs_code_node"] == 1.25
    assert report["node_vs_serve_alone"] == 0.5
    assert report["serve_alone"] == alone
    assert report["rows"]["wa_auth node"]["serve_share"] == 0.5  # 0.05 s of CPU in 0.1 s
    # The Code node ran from 4.0 s to 4.1 s: the samples around it, 4.0 s and 4.5 s, say 0.05 s.
    assert report["rows"]["Code node batches"]["cpu_us_per_item"] == {"serve": 12500, "n8n": 12500}


@pytest.mark.once
@pytest.mark.real_component("n8n")
def test_n8n_bench_smoke_run(n8n_bin):
    """bench_node.py runs its four rows through the real n8n (10 items) and prints the ratios."""
    env = {**os.environ, "N8N_BIN": n8n_bin}
    proc = subprocess.run(
        [sys.executable, str(BENCH_NODE), "--items", "10"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert set(report["rows"]) == {
        "wa_auth node",
        "wa_auth node (raw intent)",
        "HTTP Request per item",
        "Code node batches",
    }
    assert report["node_vs_http_request"] > 0
    assert report["raw_node_vs_code_node"] > 0
    assert report["raw_node_vs_serve_alone"] > 0
