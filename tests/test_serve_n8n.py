"""The `wa-auth serve` workflows of examples/n8n/, run in a real n8n (2.8.4) against serve + the sandbox.

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

import test_cli_n8n
from test_cli_n8n import PARALLEL, RUNTIME, Scenario, _branch, _fault, _lock, _nothing, _state
from test_serve import KEY, serving, valid
from wa_auth.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "n8n"
#: The address the examples call; each run replaces it with its own service's.
EXAMPLE_URL = "http://127.0.0.1:8787"
#: The examples' credential, by the id and name their nodes reference.
CREDENTIAL = {"id": "waAuthServeKey01", "name": "wa-auth serve API key", "type": "httpHeaderAuth"}

pytestmark = pytest.mark.real_component("n8n")

#: The CLI's runs' fixture: the n8n binary that tests/n8n/ensure.sh installed.
n8n_bin = test_cli_n8n.n8n_bin


def _run(n8n: str, workflow: Path, scenario: Scenario, tmp: Path) -> dict[str, Any]:
    """Run *workflow* against serve + a fresh sandbox prepared by *scenario*; return n8n's summary."""
    with Sandbox(seed=7) as sandbox:
        token = sandbox.issue_token(**scenario.expect.pop("token_options", {}))
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


SEND_BRANCHES = {
    "Delivered",
    "Maybe delivered: check before resending",
    "Store and retry later",
    "Drop invalid",
    "Alert operator",
}


def test_http_request_node_send_and_branch(n8n_bin, tmp_path):
    """Example 5: the HTTP Request node posts one intent to /send; a Switch on error.category branches."""
    scenarios = [
        Scenario("valid", _nothing, "Delivered", category=None, messages=1),
        Scenario("expired", _state("expired"), "Alert operator", category="token_expired"),
        Scenario("revoked", _state("revoked_password_changed"), "Alert operator", category="token_revoked"),
        Scenario("descoped", _state("missing_permission"), "Alert operator", category="insufficient_permission"),
        Scenario("locked", _lock, "Alert operator", category="account_state"),
        Scenario("lost-answer", _fault("drop_after_accept"), "Maybe delivered: check before resending", category="transient", messages=1),
        Scenario("spam-cap", _fault(131048), "Store and retry later", category="rate_limited"),
    ]  # fmt: skip
    results = _run_all(n8n_bin, EXAMPLES / "serve-send-and-branch.json", scenarios, tmp_path)
    for s in scenarios:
        summary = results[s.name]
        branch, item = _branch(summary, SEND_BRANCHES)
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
    scenarios = [
        Scenario("valid", _nothing, "", delivered=4, categories=["invalid_request"]),
        Scenario("revoked", _state("revoked_password_changed"), "", delivered=0, categories=["token_revoked"] * 4 + ["invalid_request"]),
    ]  # fmt: skip
    results = _run_all(n8n_bin, EXAMPLES / "serve-batch-code-node.json", scenarios, tmp_path)
    for s in scenarios:
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


HEALTH_BRANCHES = {"Healthy", "Alert: token expires soon", "Alert: token cannot send"}


def test_scheduled_readyz_health_check(n8n_bin, tmp_path):
    """Example 7: the scheduled GET /readyz alerts before expiry and when the token cannot send."""
    scenarios = [
        Scenario("valid", _nothing, "Healthy", status=200),
        Scenario("expiring", _nothing, "Alert: token expires soon", status=200, token_options={"expires_in": 3 * 86400}),
        Scenario("expired", _state("expired"), "Alert: token cannot send", category="token_expired", exit_code=3, status=503),
        Scenario("revoked", _state("revoked_deauthorized"), "Alert: token cannot send", category="token_revoked", exit_code=4, status=503),
        Scenario("descoped", _nothing, "Alert: token cannot send", category="insufficient_permission", exit_code=5, status=503, token_options={"scopes": ["whatsapp_business_management"]}),
        Scenario("locked", _lock, "Alert: token cannot send", category="account_state", exit_code=6, status=503),
    ]  # fmt: skip
    results = _run_all(n8n_bin, EXAMPLES / "serve-health-check.json", scenarios, tmp_path)
    for s in scenarios:
        summary = results[s.name]
        branch, item = _branch(summary, HEALTH_BRANCHES)
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
