"""The n8n community node (n8n-nodes-wa-auth/) built, loaded into a real n8n, and run against serve.

`n8n-nodes-wa-auth/scripts/build.sh` installs the package's dev dependencies (cached by the
lockfile's hash), lints it with n8n's own rules, runs its unit tests and packs the tarball users
install. The tarball is unpacked into a folder n8n loads as a custom extension
(`N8N_CUSTOM_EXTENSIONS`), so its node types are `CUSTOM.waAuth` here (`n8n-nodes-wa-auth.waAuth`
when installed as a community package): the example workflow is rewritten to that on the way.
Each scenario of `cases.n8n.NODE_SEND` starts its own sandbox and `wa-auth serve`;
examples/n8n/node-send-and-route.json, its node repeated once per scenario with a `waAuthApi`
credential each (imported headlessly), runs once in n8n, and n8n's execution data says which of
each node's six outputs each item left by.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cases.n8n import EXAMPLES, NODE_OUTPUTS, NODE_SEND, ROOT, RUNTIME, Scenario
from running import valid
from serving import KEY, serving
from wa_auth.sandbox import Sandbox

PACKAGE = ROOT / "n8n-nodes-wa-auth"
BUILD = PACKAGE / "scripts" / "build.sh"
WORKFLOW = EXAMPLES / "node-send-and-route.json"
NODE = "WhatsApp (wa_auth)"
#: The workflow's credential, by the id and name its node references.
CREDENTIAL = {"id": "waAuthServeApi01", "name": "wa-auth serve", "type": "waAuthApi"}

pytestmark = [pytest.mark.real_component("n8n"), pytest.mark.once]


def _build(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD), *flags],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def npm(require_component: Any) -> None:
    """npm and Node (>= 20) to build the package; else skip (CI: fail)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        require_component("npm", "Node.js and npm are needed to build n8n-nodes-wa-auth")


@pytest.fixture(scope="module")
def extension(npm: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packed n8n-nodes-wa-auth, unpacked into a folder n8n loads custom nodes from."""
    proc = _build()
    assert proc.returncode == 0, proc.stderr
    tarball = Path(proc.stdout.strip().splitlines()[-1])
    folder = tmp_path_factory.mktemp("n8n-extension")
    with tarfile.open(tarball) as archive:
        archive.extractall(folder, filter="data")
    return folder / "package"


def test_package_is_linted_and_unit_tested(npm):
    """`n8n-node lint` (n8n's community rules, strict) is clean and the unit tests pass."""
    proc = _build("--lint", "--test")
    assert proc.returncode == 0, proc.stderr
    assert "✖" not in proc.stderr
    assert "# fail 0" in proc.stderr or "ℹ fail 0" in proc.stderr, proc.stderr


def test_package_follows_community_conventions():
    """The name, keyword, licence, the `n8n` key, and no runtime dependency."""
    manifest = json.loads((PACKAGE / "package.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "n8n-nodes-wa-auth"
    assert "n8n-community-node-package" in manifest["keywords"]
    assert manifest["license"] == "MIT"
    assert "dependencies" not in manifest
    assert manifest["n8n"]["strict"] is True
    assert manifest["n8n"]["credentials"] == ["dist/credentials/WaAuthApi.credentials.js"]
    assert manifest["n8n"]["nodes"] == [
        "dist/nodes/WaAuth/WaAuth.node.js",
        "dist/nodes/WaAuthTrigger/WaAuthTrigger.node.js",
    ]
    sources = [*PACKAGE.glob("nodes/**/*.ts"), *PACKAGE.glob("credentials/*.ts")]
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for forbidden in ("process.env", "from 'fs'", 'from "fs"', "require("):
            assert forbidden not in text, f"{source.name}: {forbidden}"


def _workflow(urls: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The example with its node repeated once per scenario, each with a credential of its own.

    One n8n process runs every scenario (its start-up is most of a run's time); each copy of
    the node reaches the service of its scenario through its own `waAuthApi` credential.
    """
    wf = json.loads(WORKFLOW.read_text(encoding="utf-8"))
    (node,) = [n for n in wf["nodes"] if n["name"] == NODE]
    wf["nodes"].remove(node)
    targets = wf["connections"].pop(NODE)["main"]
    credentials = []
    wf["connections"]["Orders"]["main"] = [[]]
    for n, (name, url) in enumerate(urls.items()):
        copy = json.loads(json.dumps(node))
        copy["name"] = f"{NODE} {name}"
        copy["id"] = f"{node['id'][:-4]}{9000 + n}"
        copy["position"] = [440, 200 * n]
        ref = {"id": f"waAuthServeApi{n:02d}", "name": f"wa-auth serve {name}"}
        copy["credentials"] = {"waAuthApi": ref}
        credentials.append({**ref, "type": "waAuthApi", "data": {"baseUrl": url, "apiKey": KEY}})
        wf["nodes"].append(copy)
        wf["connections"]["Orders"]["main"][0].append(
            {"node": copy["name"], "type": "main", "index": 0}
        )
        wf["connections"][copy["name"]] = {"main": targets}
    for item in wf["nodes"]:
        item["type"] = item["type"].replace("n8n-nodes-wa-auth.", "CUSTOM.")
    return wf, credentials


def _run(n8n: str, extension: Path, scenarios: list[Scenario], tmp: Path) -> dict[str, Any]:
    """Run every scenario, each against serve + a sandbox in its state, in one n8n execution."""
    with contextlib.ExitStack() as stack:
        sandboxes, tokens, services = {}, {}, {}
        for s in scenarios:
            sandbox = stack.enter_context(Sandbox(seed=7))
            token = sandbox.issue_token(**s.token_options)
            s.setup(sandbox, token)
            args = ("--outbox", str(tmp / f"{s.name}-outbox.db")) if s.expect.get("outbox") else ()
            sandboxes[s.name], tokens[s.name] = sandbox, token
            services[s.name] = stack.enter_context(serving(sandbox, token, *args))
        wf, credentials = _workflow({name: svc.url for name, svc in services.items()})
        path = tmp / "node-send-and-route.json"
        path.write_text(json.dumps(wf), encoding="utf-8")
        credentials_file = tmp / "credentials.json"
        credentials_file.write_text(json.dumps(credentials), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "N8N_"))}
        env.update(
            N8N_BIN=n8n,
            N8N_CREDENTIALS_FILE=str(credentials_file),
            N8N_CUSTOM_EXTENSIONS=str(extension),
        )
        proc = subprocess.run(
            ["bash", str(RUNTIME / "run-workflow.sh"), "--summary", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"n8n failed\n{proc.stdout}\n{proc.stderr}"
        summary = json.loads(proc.stdout)
        summary["scenarios"] = {}
        for s in scenarios:
            svc = services[s.name]
            assert svc.stop() == 0  # validates every line the service printed
            for secret in (tokens[s.name], KEY):
                assert secret not in proc.stdout, f"{s}: a secret appears in n8n's output"
                assert secret not in proc.stderr, f"{s}: a secret appears in n8n's log"
                assert secret not in svc.stderr, f"{s}: a secret appears in serve's log"
            summary["scenarios"][s.name] = {
                "outputs": summary["nodes"][f"{NODE} {s.name}"]["outputs"],
                "messages": len(sandboxes[s.name].messages()),
                "access": [line for line in svc.lines() if line["event"] == "access"],
            }
        return summary


def test_send_routes_each_item_to_its_outcome(n8n_bin, extension, tmp_path):
    """Valid, expired, revoked, de-scoped, locked, a 131049 held by the outbox, a lost answer."""
    results = _run(n8n_bin, extension, NODE_SEND, tmp_path)["scenarios"]
    for s in NODE_SEND:
        summary = results[s.name]
        outputs = summary["outputs"]
        assert len(outputs) == len(NODE_OUTPUTS), s
        counts = {name: len(items) for name, items in zip(NODE_OUTPUTS, outputs, strict=True)}
        assert counts == {name: s.expect["outputs"].get(name, 0) for name in NODE_OUTPUTS}, s
        for name, items in zip(NODE_OUTPUTS, outputs, strict=True):
            for item in items:
                valid(item)  # serve's result line, unchanged
                if name in {"Token failure", "Permission", "Account"}:
                    assert item["category"] in s.expect["categories"], s
                if name == "Queued":
                    assert item["state"] == "queued", s
                    assert item["not_before"] is not None, s
        failed = outputs[NODE_OUTPUTS.index("Failed")]
        assert [i["to"] for i in failed if i["category"] == "invalid_request"] in (
            [None],
            ["not-a-number"],
        ), s
        # Every item paired with its order: its idempotency key says which.
        keys = sorted(i["idempotency_key"] for items in outputs for i in items if i["line"] != 3)
        assert keys == ["order-101-shipped", "order-102-shipped", "order-104-shipped"], s
        assert summary["messages"] == s.expect.get("messages", 0), s
        # One request for the four items: the node batches.
        assert [(a["route"], a["intents"]) for a in summary["access"]] == [("/send", 4)], s
