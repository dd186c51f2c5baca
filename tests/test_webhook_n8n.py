"""examples/n8n/webhook-verify-and-route.json in a real n8n: `wa-auth webhook verify` and a Switch.

Run twice. Headlessly (`run-workflow.sh`, which reaches no Webhook node), its Manual Trigger
feeds fixed deliveries: bodies signed with the example's app secret, a tampered one and an
unsigned one. Live (`n8n start` on 127.0.0.1, the workflow published), signed, tampered,
unsigned and hostile-header POSTs reach its Webhook node, whose raw body goes through the same
command (the test answers with the last node's data, to read the branch). Each goes through `wa-auth webhook verify --parse --exit-zero` in an Execute Command node;
the Switch rejects what Meta did not sign and routes failed statuses by category, so a 131031
that arrives by webhook takes the same "Alert operator" branch as one raised by a send. Every
JSON line the CLI printed inside n8n is validated against docs/wa-auth.schema.json. The
runtime is installed by `bash tests/n8n/ensure.sh`; under CI=true a missing one fails the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cases.n8n import EXAMPLES, RUNTIME, n8n_path
from running import VALIDATOR

pytestmark = [pytest.mark.real_component("n8n"), pytest.mark.once]

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
        PATH=n8n_path(n8n_bin, f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"),
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


# --- live: the Webhook node on 127.0.0.1 ---------------------------------------------------------

#: The environment run-workflow.sh gives n8n, for `n8n start` (no outbound calls, loopback).
QUIET = {
    "NODES_EXCLUDE": "[]",
    "N8N_DIAGNOSTICS_ENABLED": "false",
    "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
    "N8N_TEMPLATES_ENABLED": "false",
    "N8N_PERSONALIZATION_ENABLED": "false",
    "N8N_HIRING_BANNER_ENABLED": "false",
    "N8N_DYNAMIC_BANNERS_ENABLED": "false",
    "N8N_COMMUNITY_PACKAGES_ENABLED": "false",
    "N8N_LICENSE_AUTO_RENEW_ENABLED": "false",
    "DB_TYPE": "sqlite",
    "EXECUTIONS_MODE": "regular",
    "N8N_RUNNERS_MODE": "internal",
    "N8N_RUNNERS_BROKER_LISTEN_ADDRESS": "127.0.0.1",
    "N8N_LISTEN_ADDRESS": "127.0.0.1",
    "N8N_SECURE_COOKIE": "false",
}


def _free_port() -> int:
    """A free port below the ephemeral range (see run-workflow.sh: no outgoing socket takes it)."""
    for _ in range(100):
        port = random.randrange(20000, 30000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def live_n8n(n8n_bin: str, workflow: dict[str, Any], tmp: Path, probe: str) -> Iterator[str]:
    """Import and publish *workflow*, run `n8n start`; yield its base URL once a POST of `{}`
    to its webhook path *probe* is answered 200 (n8n 2.41 logs no line per activated workflow,
    and answers 404 until the webhook is registered); stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "N8N_"))}
    port = _free_port()
    env.update(
        QUIET,
        N8N_USER_FOLDER=str(tmp / "user"),
        N8N_PORT=str(port),
        N8N_RUNNERS_BROKER_PORT=str(_free_port()),
        N8N_RESTRICT_FILE_ACCESS_TO=str(tmp),
        PATH=n8n_path(n8n_bin, f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"),
        WA_AUTH_APP_SECRET=EXAMPLE_SECRET,
    )
    (tmp / "user").mkdir()
    path = tmp / "workflow.json"
    path.write_text(json.dumps(workflow), encoding="utf-8")
    for args in (
        ["import:workflow", f"--input={path}"],
        ["publish:workflow", f"--id={workflow['id']}"],
    ):
        done = subprocess.run(
            [n8n_bin, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp / "n8n.log").open("w")
    proc = subprocess.Popen(
        [n8n_bin, "start"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # n8n 2.41 starts slower on a busy machine
        while True:
            assert proc.poll() is None, (tmp / "n8n.log").read_text()
            with contextlib.suppress(OSError):  # urllib's HTTPError (a 404) is an OSError
                request = urllib.request.Request(
                    f"{url}/webhook/{probe}",
                    data=b"{}",
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=30) as answer:
                    if answer.status == 200:
                        break
            assert time.monotonic() < deadline, (tmp / "n8n.log").read_text()
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # n8n and its task runner: our process group
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _post(url: str, body: bytes, signature: str | None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200
        data: dict[str, Any] = json.loads(answer.read())
        return data


def test_the_live_webhook_node(n8n_bin, tmp_path):
    """POSTs to the Webhook node: the raw body verified; a hostile header never reaches a shell."""
    workflow = json.loads((EXAMPLES / "webhook-verify-and-route.json").read_text(encoding="utf-8"))
    for node in workflow["nodes"]:
        if node["name"] == "Webhook (Meta)":
            node["parameters"]["responseMode"] = "lastNode"  # the test reads the branch
    payload = json.loads(
        (Path(__file__).parent / "payloads" / "webhooks" / "status_failed_131031.json").read_text(
            encoding="utf-8"
        )
    )["payload"]
    # Non-ASCII escaped as Meta does: the bytes n8n hands on must be these, not re-serialised.
    payload["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = (
        "pedido-ñ"
    )
    body = json.dumps(payload, separators=(",", ":")).encode()
    signed = "sha256=" + hmac.new(EXAMPLE_SECRET.encode(), body, hashlib.sha256).hexdigest()
    marker = tmp_path / "injected"
    with live_n8n(n8n_bin, workflow, tmp_path, "whatsapp") as url:
        hook = f"{url}/webhook/whatsapp"
        ok = _post(hook, body, signed)
        tampered = _post(hook, body.replace(b"pedido", b"pedidx"), signed)
        unsigned = _post(hook, body, None)
        hostile = _post(hook, body, f"sha256=$(touch {marker})")
    assert (ok["branch"], ok["category"], ok["idempotency_key"]) == (
        "alert",
        "account_state",
        "pedido-ñ",
    )
    assert (tampered["branch"], tampered["reason"]) == ("reject", "mismatch")
    assert (unsigned["branch"], unsigned["reason"]) == ("reject", "missing_header")
    assert (hostile["branch"], hostile["reason"]) == ("reject", "wrong_scheme")
    assert not marker.exists()
