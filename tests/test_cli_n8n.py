"""The example workflows of examples/n8n/, run in a real n8n (2.8.4) against the sandbox.

Each scenario starts its own sandbox on 127.0.0.1 (a valid, expired, revoked or de-scoped
token, a locked account, a seeded fault), runs a workflow headlessly with
`tests/n8n/run-workflow.sh --summary`, and asserts from n8n's own execution output which branch
ran. Every JSON line the CLI printed inside n8n is validated against docs/wa-auth.schema.json.
The runtime is installed by `bash tests/n8n/ensure.sh` (a cache under $HOME keyed by the
lockfile's hash); under CI=true a missing runtime fails the run instead of skipping.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wa_auth.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "n8n"
RUNTIME = ROOT / "tests" / "n8n"
SCHEMA = json.loads((ROOT / "docs" / "wa-auth.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: n8n runs at once: each is a Node process of about 1.5 CPU-seconds a second.
PARALLEL = 3

pytestmark = pytest.mark.real_component("n8n")


def require_component(name: str, reason: str) -> None:
    """Skip (or, under CI=true, fail) because the real component *name* is unavailable."""
    message = f"REAL COMPONENT MISSING: {name}: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing component fails the run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def n8n_bin() -> str:
    """The n8n binary that tests/n8n/ensure.sh installed (or $N8N_BIN)."""
    if os.environ.get("N8N_BIN"):
        return os.environ["N8N_BIN"]
    digest = hashlib.sha256((RUNTIME / "package-lock.json").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("WA_AUTH_N8N_CACHE", Path.home() / ".cache" / "wa-auth-n8n"))
    binary = cache / digest / "node_modules" / ".bin" / "n8n"
    if not os.access(binary, os.X_OK):
        require_component("n8n", f"not installed at {binary}: run `bash tests/n8n/ensure.sh`")
    return str(binary)


class Scenario:
    """One run: how to break the sandbox, and the branch n8n must take."""

    def __init__(self, name: str, setup: Callable[[Sandbox, str], Any], branch: str, **expect: Any):
        self.name = name
        self.setup = setup
        self.branch = branch
        self.expect = expect

    def __repr__(self) -> str:
        return self.name


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
        token = sandbox.issue_token(**scenario.expect.pop("token_options", {}))
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


def _branch(summary: dict[str, Any], branches: set[str]) -> tuple[str, dict[str, Any]]:
    ran = sorted(branches & set(summary["nodes"]))
    assert len(ran) == 1, f"branches that ran: {ran}"
    (item,) = summary["nodes"][ran[0]]["outputs"][0]
    return ran[0], item


def _lock(sb: Sandbox, _token: str) -> None:
    sb.set_account_state("locked")


def _state(state: str) -> Callable[[Sandbox, str], None]:
    return lambda sb, token: sb.set_token_state(token, state)


def _fault(code: int | str) -> Callable[[Sandbox, str], None]:
    return lambda sb, _token: sb.fail_next(code)


def _nothing(_sb: Sandbox, _token: str) -> None:
    return None


SEND_BRANCHES = {
    "Delivered",
    "Maybe delivered: check before resending",
    "Store and retry later",
    "Drop invalid",
    "Alert operator",
}


def test_send_and_branch(n8n_bin, tmp_path):
    """Example 1: `wa-auth send --input-b64 ... --exit-zero` and a Switch take the right branch."""
    scenarios = [
        Scenario("valid", _nothing, "Delivered", category=None, messages=1),
        Scenario("expired", _state("expired"), "Alert operator", category="token_expired"),
        Scenario("revoked", _state("revoked_password_changed"), "Alert operator", category="token_revoked"),
        Scenario("descoped", _state("missing_permission"), "Alert operator", category="insufficient_permission"),
        Scenario("locked", _lock, "Alert operator", category="account_state"),
        Scenario("lost-answer", _fault("drop_after_accept"), "Maybe delivered: check before resending", category="transient", messages=1),
        Scenario("spam-cap", _fault(131048), "Store and retry later", category="rate_limited"),
        Scenario("window-closed", _fault(131047), "Drop invalid", category="invalid_request"),
    ]  # fmt: skip
    results = _run_all(n8n_bin, EXAMPLES / "send-and-branch.json", scenarios, tmp_path)
    for s in scenarios:
        summary = results[s.name]
        branch, item = _branch(summary, SEND_BRANCHES)
        assert branch == s.branch, s
        assert item["category"] == s.expect["category"], s
        assert summary["messages"] == s.expect.get("messages", 0), s
        (result, end) = _cli_lines(summary["nodes"]["wa-auth send"])
        assert result["category"] == s.expect["category"]
        assert item["exit_code"] == result["exit_code"] == end["exit_code"]
        if branch == "Alert operator":
            assert item["operator_action"], s


HEALTH_BRANCHES = {"Healthy", "Alert: token expires soon", "Alert: token cannot send"}


def test_token_health_check(n8n_bin, tmp_path):
    """Example 2: the scheduled `wa-auth check --warn-days 14` alerts before expiry and on failure."""
    scenarios = [
        Scenario("valid", _nothing, "Healthy"),
        Scenario("expiring", _nothing, "Alert: token expires soon", token_options={"expires_in": 3 * 86400}),
        Scenario("expired", _state("expired"), "Alert: token cannot send", category="token_expired", exit_code=3),
        Scenario("revoked", _state("revoked_deauthorized"), "Alert: token cannot send", category="token_revoked", exit_code=4),
        Scenario("descoped", _nothing, "Alert: token cannot send", category="insufficient_permission", exit_code=5, token_options={"scopes": ["whatsapp_business_management"]}),
        Scenario("locked", _lock, "Alert: token cannot send", category="account_state", exit_code=6),
    ]  # fmt: skip
    results = _run_all(n8n_bin, EXAMPLES / "token-health-check.json", scenarios, tmp_path)
    for s in scenarios:
        summary = results[s.name]
        branch, item = _branch(summary, HEALTH_BRANCHES)
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


CLASSIFY_BRANCHES = {"Sent", "Retry later", "Drop invalid", "Alert operator"}


def test_classify_http_request_error(n8n_bin, tmp_path):
    """Example 3: n8n's HTTP Request node's error output, classified by `wa-auth classify`."""
    scenarios = [
        Scenario("valid", _nothing, "Sent", messages=1),
        Scenario("expired", _state("expired"), "Alert operator", category="token_expired"),
        Scenario("revoked", _state("revoked_logged_out"), "Alert operator", category="token_revoked"),
        Scenario("descoped", _state("missing_permission"), "Alert operator", category="insufficient_permission"),
        Scenario("locked", _lock, "Alert operator", category="account_state"),
        Scenario("throughput", _fault(130429), "Retry later", category="rate_limited"),
        Scenario("window-closed", _fault(131047), "Drop invalid", category="invalid_request"),
    ]  # fmt: skip
    results = _run_all(n8n_bin, EXAMPLES / "classify-http-request-error.json", scenarios, tmp_path)
    for s in scenarios:
        summary = results[s.name]
        branch, item = _branch(summary, CLASSIFY_BRANCHES)
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
    scenarios = [
        Scenario("valid", _nothing, "", delivered=4, categories=["invalid_request"]),
        Scenario("revoked", _state("revoked_password_changed"), "", delivered=0, categories=["token_revoked", "token_revoked", "invalid_request", "token_revoked", "token_revoked"]),
    ]  # fmt: skip
    results = _run_all(n8n_bin, EXAMPLES / "batch-file.json", scenarios, tmp_path, _batch_dir)
    for s in scenarios:
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
