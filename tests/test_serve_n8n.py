"""The `wa-auth serve` workflows of examples/n8n/, run in the real current n8n (2.41.1, on Node 24) against serve + the sandbox.

Each scenario starts its own sandbox on 127.0.0.1 (a valid, expired, revoked or de-scoped
token, a locked account, a seeded fault) and its own `wa-auth serve` in front of it, points the
workflow's URLs at that service, and runs it headlessly with `tests/n8n/run-workflow.sh
--summary`. The HTTP Request nodes authenticate with an n8n "Header Auth" credential, imported
headlessly (`N8N_CREDENTIALS_FILE`: `n8n import:credentials`); the Code node reads the key from
n8n's environment. Which branch ran is read from n8n's own execution output, and every answer
the service gave n8n, and every line it logged, is validated against docs/wa-auth.schema.json.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cases.n8n import (
    EXAMPLES,
    HEALTH_BRANCHES,
    PARALLEL,
    RUNTIME,
    SEND_BRANCHES,
    SERVE_CODE_NODE_BATCH,
    SERVE_HEALTH_CHECK,
    SERVE_SEND_AND_BRANCH,
    Scenario,
    branch_taken,
)
from running import valid
from serving import KEY, serving
from wa_auth.sandbox import Sandbox

#: The address the examples call; each run replaces it with its own service's.
EXAMPLE_URL = "http://127.0.0.1:8787"
#: The examples' credential, by the id and name their nodes reference.
CREDENTIAL = {"id": "waAuthServeKey01", "name": "wa-auth serve API key", "type": "httpHeaderAuth"}

pytestmark = [pytest.mark.real_component("n8n"), pytest.mark.once]


def _run(n8n: str, workflow: Path, scenario: Scenario, tmp: Path) -> dict[str, Any]:
    """Run *workflow* against serve + a fresh sandbox prepared by *scenario*; return n8n's summary."""
    with Sandbox(seed=7) as sandbox:
        token = sandbox.issue_token(**scenario.token_options)
        scenario.setup(sandbox, token)
        with serving(sandbox, token) as svc:
            wf = json.loads(workflow.read_text(encoding="utf-8"))
            for node in wf["nodes"]:
                url = node["parameters"].get("url")
                if url is not None:
                    assert url.startswith(EXAMPLE_URL), url
                    node["parameters"]["url"] = url.replace(EXAMPLE_URL, svc.url)
            path = tmp / f"{workflow.stem}-{scenario.name}.json"
            path.write_text(json.dumps(wf), encoding="utf-8")
            credentials = tmp / f"{workflow.stem}-{scenario.name}-credentials.json"
            data = {"name": "Authorization", "value": f"Bearer {KEY}"}
            credentials.write_text(json.dumps([{**CREDENTIAL, "data": data}]), encoding="utf-8")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "N8N_"))}
            env.update(
                N8N_BIN=n8n,
                N8N_CREDENTIALS_FILE=str(credentials),
                # The Code node's settings (examples/n8n/serve-batch-code-node.json).
                WA_AUTH_SERVE_URL=svc.url,
                WA_AUTH_API_KEY=KEY,
                N8N_BLOCK_ENV_ACCESS_IN_NODE="false",
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
            assert svc.stop() == 0  # validates every line the service printed
            access = [line for line in svc.lines() if line["event"] == "access"]
        summary = json.loads(proc.stdout)
        summary["messages"] = len(sandbox.messages())
        summary["access"] = access
        for secret in (token, KEY):
            assert secret not in proc.stdout, f"{scenario}: a secret appears in n8n's output"
            assert secret not in svc.stderr, f"{scenario}: a secret appears in serve's log"
        return summary


def _run_all(n8n: str, workflow: Path, scenarios: list[Scenario], tmp: Path) -> dict[str, Any]:
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        futures = {s.name: pool.submit(_run, n8n, workflow, s, tmp) for s in scenarios}
        return {name: f.result() for name, f in futures.items()}


def _answers(summary: dict[str, Any], node: str) -> list[dict[str, Any]]:
    """Validate and return the JSON items a node got from the service."""
    return [valid(item) for item in summary["nodes"][node]["outputs"][0]]


def test_http_request_node_send_and_branch(n8n_bin, tmp_path):
    """Example 5: the HTTP Request node posts one intent to /send; a Switch on error.category branches."""
    results = _run_all(
        n8n_bin, EXAMPLES / "serve-send-and-branch.json", SERVE_SEND_AND_BRANCH, tmp_path
    )
    for s in SERVE_SEND_AND_BRANCH:
        summary = results[s.name]
        branch, item = branch_taken(summary, SEND_BRANCHES)
        assert branch == s.branch, s
        (answer,) = _answers(summary, "POST /send")
        assert answer["category"] == item["category"] == s.expect["category"], s
        assert item["exit_code"] == answer["exit_code"], s
        assert summary["messages"] == s.expect.get("messages", 0), s
        assert [(a["route"], a["status"]) for a in summary["access"]] == [("/send", 200)], s
        if branch == "Alert operator":
            assert item["operator_action"], s


def test_code_node_batch(n8n_bin, tmp_path):
    """Example 6: a Code node posts every item to /send with this.helpers.httpRequest and branches each."""
    results = _run_all(
        n8n_bin, EXAMPLES / "serve-batch-code-node.json", SERVE_CODE_NODE_BATCH, tmp_path
    )
    for s in SERVE_CODE_NODE_BATCH:
        summary = results[s.name]
        nodes = summary["nodes"]
        answers = _answers(summary, "POST /send (batch)")
        assert [a["line"] for a in answers] == [1, 2, 3, 4, 5], s
        delivered = nodes.get("Delivered", {"outputs": [[]]})["outputs"][0]
        failed = nodes.get("Not delivered", {"outputs": [[]]})["outputs"][0]
        assert len(delivered) == summary["messages"] == s.expect["delivered"], s
        assert sorted(i["category"] for i in failed) == sorted(s.expect["categories"]), s
        assert [i["line"] for i in failed if i["category"] == "invalid_request"] == [3], s
        # One request for the whole batch: the service kept one pool for the five intents.
        assert [(a["route"], a["intents"]) for a in summary["access"]] == [("/send", 5)], s


def test_scheduled_readyz_health_check(n8n_bin, tmp_path):
    """Example 7: the scheduled GET /readyz alerts before expiry and when the token cannot send."""
    results = _run_all(n8n_bin, EXAMPLES / "serve-health-check.json", SERVE_HEALTH_CHECK, tmp_path)
    for s in SERVE_HEALTH_CHECK:
        summary = results[s.name]
        branch, item = branch_taken(summary, HEALTH_BRANCHES)
        assert branch == s.branch, s
        (answer,) = _answers(summary, "GET /readyz")
        assert [(a["route"], a["status"]) for a in summary["access"]] == [
            ("/readyz", s.expect["status"])
        ], s
        if "category" in s.expect:
            assert (item["category"], item["exit_code"]) == (
                s.expect["category"],
                s.expect["exit_code"],
            ), s
            assert answer["ok"] is False
        if branch == "Alert: token expires soon":
            assert 2.9 < item["expires_in_days"] <= 3
            assert answer["exit_code"] == 12
        assert summary["messages"] == 0
