"""examples/n8n/webhook-verify-and-route.json in a real n8n: `wa-auth webhook verify` and a Switch.

The workflow's Manual Trigger feeds fixed deliveries (a Webhook node cannot be reached by a
headless run): bodies signed with the example's app secret, a tampered one and an unsigned
one. Each goes through `wa-auth webhook verify --parse --exit-zero` in an Execute Command node;
the Switch rejects what Meta did not sign and routes failed statuses by category, so a 131031
that arrives by webhook takes the same "Alert operator" branch as one raised by a send. Every
JSON line the CLI printed inside n8n is validated against docs/wa-auth.schema.json. The
runtime is installed by `bash tests/n8n/ensure.sh`; under CI=true a missing one fails the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cases.n8n import EXAMPLES, RUNTIME
from running import VALIDATOR

pytestmark = pytest.mark.real_component("n8n")

#: The app secret the example's fixed deliveries are signed with (its Code node says so).
EXAMPLE_SECRET = "example-app-secret-0123456789abcdef"

#: Each fixed delivery's name, the branch it must take, and what that branch records.
EXPECTED = {
    "signed: account locked after the send (131031)": ("Alert operator", "account_state"),
    "signed: the business uninstalled the app": ("Alert operator", "token_revoked"),
    "signed: marketing cap for this user (131049)": ("Retry later", "rate_limited"),
    "signed: undeliverable (131026)": ("Drop invalid", "invalid_request"),
    "signed: delivered": ("No failure", None),
    "tampered: the body changed after signing": ("Reject: not signed by Meta", "mismatch"),
    "unsigned: no X-Hub-Signature-256": ("Reject: not signed by Meta", "missing_header"),
}
BRANCHES = {branch for branch, _ in EXPECTED.values()}


def test_verify_and_route(n8n_bin, tmp_path):
    """Every delivery takes its branch; the CLI's lines are schema-valid; the secret unseen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "N8N_"))}
    env.update(
        N8N_BIN=n8n_bin,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        WA_AUTH_APP_SECRET=EXAMPLE_SECRET,
        N8N_RESTRICT_FILE_ACCESS_TO=str(tmp_path),
    )
    proc = subprocess.run(
        [
            "bash",
            str(RUNTIME / "run-workflow.sh"),
            "--summary",
            str(EXAMPLES / "webhook-verify-and-route.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"n8n failed\n{proc.stdout}\n{proc.stderr}"
    summary = json.loads(proc.stdout)
    nodes = summary["nodes"]

    lines: list[dict[str, Any]] = []
    for item in nodes["wa-auth webhook verify"]["outputs"][0]:
        assert item["exitCode"] == 0, item  # --exit-zero: n8n keeps stdout
        for raw in (item["stdout"] + "\n" + item["stderr"]).splitlines():
            if raw.strip():
                line = json.loads(raw)
                VALIDATOR.validate(line)
                lines.append(line)
    assert len(lines) == len(EXPECTED)
    assert sorted(line["exit_code"] for line in lines) == [0] * 5 + [13] * 2

    taken: dict[str, tuple[str, str | None]] = {}
    for branch in BRANCHES:
        for item in nodes.get(branch, {"outputs": [[]]})["outputs"][0]:
            recorded = item.get("reason") if branch.startswith("Reject") else item.get("category")
            taken[item["name"]] = (branch, recorded or None)
    assert taken == EXPECTED
    (locked,) = [
        i for i in nodes["Alert operator"]["outputs"][0] if i["category"] == "account_state"
    ]
    assert locked["idempotency_key"] == "order-41"
    assert locked["operator_action"]
    assert EXAMPLE_SECRET not in proc.stdout
