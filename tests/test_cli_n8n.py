"""The example workflows of examples/n8n/, run in the real current n8n (2.41.1, on Node 24) against the sandbox.

Each scenario starts its own sandbox on 127.0.0.1 (a valid, expired, revoked or de-scoped
token, a locked account, a seeded fault), runs a workflow headlessly with
`tests/n8n/run-workflow.sh --summary`, and asserts from n8n's own execution output which branch
ran. Every JSON line the CLI printed inside n8n is validated against docs/wa-auth.schema.json.
The runtime is installed by `bash tests/n8n/ensure.sh` (a cache under $HOME keyed by the
lockfile's hash); under CI=true a missing runtime fails the run instead of skipping.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cases.n8n import (
    BATCH_FILE,
    CLASSIFY_BRANCHES,
    CLASSIFY_HTTP_REQUEST_ERROR,
    EXAMPLES,
    HEALTH_BRANCHES,
    PARALLEL,
    RUNTIME,
    SEND_AND_BRANCH,
    SEND_BRANCHES,
    TOKEN_HEALTH_CHECK,
    Scenario,
    branch_taken,
)
from running import VALIDATOR
from wa_auth.sandbox import Sandbox

pytestmark = [pytest.mark.real_component("n8n"), pytest.mark.once]


def _cli_lines(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate and return every JSON line an Execute Command node's CLI printed."""
    lines = []
    for item in node["outputs"][0]:
        assert item["exitCode"] == 0, item  # --exit-zero: n8n keeps stdout
        for stream in ("stdout", "stderr"):
            for raw in item[stream].splitlines():
                if raw.strip():
                    obj = json.loads(raw)
                    VALIDATOR.validate(obj)
                    lines.append(obj)
    return lines


def _run(n8n: str, workflow: Path, scenario: Scenario, tmp: Path, edit=None) -> dict[str, Any]:
    """Run *workflow* against a fresh sandbox prepared by *scenario*; return n8n's summary."""
    # Each run gets a folder of its own: every headless run starts a fresh n8n database, so
    # `$execution.id` is the same in parallel runs and their files would collide.
    tmp = tmp / scenario.name
    tmp.mkdir()
    with Sandbox(seed=7) as sandbox:
        token = sandbox.issue_token(**scenario.token_options)
        scenario.setup(sandbox, token)
        wf = json.loads(workflow.read_text(encoding="utf-8"))
        if edit is not None:
            edit(wf, tmp)
        path = tmp / f"{scenario.name}.json"
        path.write_text(json.dumps(wf), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "N8N_"))}
        env.update(
            N8N_BIN=n8n,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            WA_BASE_URL=sandbox.base_url,
            WA_PHONE_NUMBER_ID=sandbox.phone_number_id,
            WA_BUSINESS_ACCOUNT_ID=sandbox.business_account_id,
            WA_ACCESS_TOKEN=token,
            # Example 3's HTTP Request node reads its settings with $env (docs/n8n.md).
            N8N_BLOCK_ENV_ACCESS_IN_NODE="false",
            N8N_RESTRICT_FILE_ACCESS_TO=str(tmp),
        )
        proc = subprocess.run(
            ["bash", str(RUNTIME / "run-workflow.sh"), "--summary", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"{scenario}: n8n failed\n{proc.stdout}\n{proc.stderr}"
        summary = json.loads(proc.stdout)
        summary["messages"] = len(sandbox.messages())
        assert token not in proc.stdout, f"{scenario}: the token appears in n8n's output"
        return summary


def _run_all(n8n, workflow, scenarios, tmp_path, edit=None) -> dict[str, dict[str, Any]]:
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {s.name: pool.submit(_run, n8n, workflow, s, tmp_path, edit) for s in scenarios}
        return {name: f.result() for name, f in futures.items()}


def test_send_and_branch(n8n_bin, tmp_path):
    """Example 1: `wa-auth send --input-b64 ... --exit-zero` and a Switch take the right branch."""
    results = _run_all(n8n_bin, EXAMPLES / "send-and-branch.json", SEND_AND_BRANCH, tmp_path)
    for s in SEND_AND_BRANCH:
        summary = results[s.name]
        branch, item = branch_taken(summary, SEND_BRANCHES)
        assert branch == s.branch, s
        assert item["category"] == s.expect["category"], s
        assert summary["messages"] == s.expect.get("messages", 0), s
        (result, end) = _cli_lines(summary["nodes"]["wa-auth send"])
        assert result["category"] == s.expect["category"]
        assert item["exit_code"] == result["exit_code"] == end["exit_code"]
        if branch == "Alert operator":
            assert item["operator_action"], s


def test_token_health_check(n8n_bin, tmp_path):
    """Example 2: the scheduled `wa-auth check --warn-days 14` alerts before expiry and on failure."""
    results = _run_all(n8n_bin, EXAMPLES / "token-health-check.json", TOKEN_HEALTH_CHECK, tmp_path)
    for s in TOKEN_HEALTH_CHECK:
        summary = results[s.name]
        branch, item = branch_taken(summary, HEALTH_BRANCHES)
        assert branch == s.branch, s
        (line,) = _cli_lines(summary["nodes"]["wa-auth check"])
        if "category" in s.expect:
            assert (item["category"], item["exit_code"]) == (
                s.expect["category"],
                s.expect["exit_code"],
            ), s
        if branch == "Alert: token expires soon":
            assert 2.9 < item["expires_in_days"] <= 3
            assert line["exit_code"] == 12


def test_classify_http_request_error(n8n_bin, tmp_path):
    """Example 3: n8n's HTTP Request node's error output, classified by `wa-auth classify`."""
    results = _run_all(
        n8n_bin,
        EXAMPLES / "classify-http-request-error.json",
        CLASSIFY_HTTP_REQUEST_ERROR,
        tmp_path,
    )
    for s in CLASSIFY_HTTP_REQUEST_ERROR:
        summary = results[s.name]
        branch, item = branch_taken(summary, CLASSIFY_BRANCHES)
        assert branch == s.branch, s
        assert summary["messages"] == s.expect.get("messages", 0), s
        if branch == "Sent":
            assert item["message_id"].startswith("wamid.")
            continue
        (line,) = _cli_lines(summary["nodes"]["wa-auth classify"])
        assert line["source"] == "n8n_http_request"
        assert item["category"] == line["category"] == s.expect["category"], s


def _batch_dir(wf: dict[str, Any], tmp: Path) -> None:
    """Point the example's Settings node at a directory n8n may write (N8N_RESTRICT_FILE_ACCESS_TO)."""
    (settings,) = [n for n in wf["nodes"] if n["name"] == "Settings"]
    settings["parameters"]["assignments"]["assignments"][0]["value"] = str(tmp)


def test_batch_file(n8n_bin, tmp_path):
    """Example 4: items to one file, one `wa-auth send --input FILE`, results back as items."""
    results = _run_all(n8n_bin, EXAMPLES / "batch-file.json", BATCH_FILE, tmp_path, _batch_dir)
    for s in BATCH_FILE:
        summary = results[s.name]
        nodes = summary["nodes"]
        lines = _cli_lines(nodes["wa-auth send --input"])
        assert [r["line"] for r in lines[:-1]] == [1, 2, 3, 4, 5]
        assert len(nodes["Split results"]["outputs"][0]) == 5
        delivered = nodes.get("Delivered", {"outputs": [[]]})["outputs"][0]
        failed = nodes.get("Not delivered", {"outputs": [[]]})["outputs"][0]
        assert len(delivered) == summary["messages"] == s.expect["delivered"], s
        assert sorted(i["category"] for i in failed) == sorted(s.expect["categories"]), s
        assert [i["line"] for i in failed if i["category"] == "invalid_request"] == [3]
        assert lines[-1]["summary"]["total"] == 5
    assert not list(tmp_path.glob("*/wa-auth-batch-*")), "the batch file was not removed"
