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
import uuid
from pathlib import Path
from typing import Any

import pytest

from cases.n8n import EXAMPLES, NODE_OUTPUTS, NODE_SEND, ROOT, RUNTIME, Scenario
from running import TO, valid
from serving import KEY, serving, text
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


#: The other operations' scenario: its serve has an outbox that holds one queued and one
#: maybe_delivered intent before n8n starts.
OPS = "operations"
#: Meta's answer to a send with an expired token, as the HTTP Request node's error output has it.
GRAPH = "Graph API with an expired token"


def _operations(graph: str, expired: str) -> tuple[list[Any], dict[str, Any]]:
    """Check token -> Outbox: List -> Outbox: Replay, and a failing Graph call -> Classify Error.

    The HTTP Request node calls the sandbox's Graph API with an expired token and passes its
    error on its error output, the way a workflow that keeps n8n's own nodes meets one.
    """
    credentials = {"waAuthApi": {"id": "waAuthServeApiOps", "name": f"wa-auth serve {OPS}"}}

    def node(name: str, y: int, parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            "name": name,
            "type": "CUSTOM.waAuth",
            "typeVersion": 1,
            "position": [440, y],
            "parameters": parameters,
            "credentials": credentials,
            **extra,
        }

    nodes = [
        node("Check token", 1600, {"operation": "checkToken", "warnDays": 14}),
        node("Outbox: List", 1800, {"operation": "outboxList", "limit": 10}),
        node("Outbox: Replay", 2000, {"operation": "outboxReplay", "includeMaybeDelivered": True}),
        node("Classify error", 2200, {"operation": "classifyError", "httpStatus": 0}),
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, GRAPH)),
            "name": GRAPH,
            "type": "n8n-nodes-base.httpRequest",
            "typeVersion": 4.2,
            "position": [220, 2200],
            "onError": "continueErrorOutput",
            "parameters": {
                "method": "POST",
                "url": graph,
                "sendHeaders": True,
                "headerParameters": {
                    "parameters": [{"name": "Authorization", "value": f"Bearer {expired}"}]
                },
                "sendBody": True,
                "specifyBody": "json",
                "jsonBody": json.dumps(
                    {
                        "messaging_product": "whatsapp",
                        "to": TO,
                        "type": "text",
                        "text": {"body": "hi"},
                    }
                ),
                "options": {},
            },
        },
    ]

    def link(target: str) -> dict[str, Any]:
        return {"node": target, "type": "main", "index": 0}

    connections = {
        "Check token": {"main": [[link("Outbox: List")]]},
        "Outbox: List": {"main": [[link("Outbox: Replay")]]},
        GRAPH: {"main": [[], [link("Classify error")]]},
    }
    return nodes, connections


def _seed_outbox(sandbox: Sandbox, svc: Any) -> dict[str, str]:
    """One intent queued by a 131049, one whose answer was lost: the states the outbox keeps."""
    keys = {"queued": "ops-queued", "maybe_delivered": "ops-lost-answer"}
    # Two recipients: the 131049 holds back every send to its own for a while.
    for state, code, to in (
        ("queued", 131049, TO),
        ("maybe_delivered", "drop_after_accept", "+15551230099"),
    ):
        sandbox.fail_next(code)
        answer = svc.call("POST", "/send", json=text(idempotency_key=keys[state], to=to))
        assert answer.json()["state"] == state, answer.json()
    return keys


def _run(n8n: str, extension: Path, scenarios: list[Scenario], tmp: Path) -> dict[str, Any]:
    """Run every scenario, each against serve + a sandbox in its state, in one n8n execution.

    The other operations run in the same execution, against a serve of their own (`OPS`).
    """
    with contextlib.ExitStack() as stack:
        sandboxes, tokens, services = {}, {}, {}
        for s in scenarios:
            sandbox = stack.enter_context(Sandbox(seed=7))
            token = sandbox.issue_token(**s.token_options)
            s.setup(sandbox, token)
            args = ("--outbox", str(tmp / f"{s.name}-outbox.db")) if s.expect.get("outbox") else ()
            sandboxes[s.name], tokens[s.name] = sandbox, token
            services[s.name] = stack.enter_context(serving(sandbox, token, *args))
        ops_sandbox = stack.enter_context(Sandbox(seed=7))
        tokens[OPS] = ops_sandbox.issue_token()
        ops = stack.enter_context(
            serving(ops_sandbox, tokens[OPS], "--outbox", str(tmp / "ops-outbox.db"))
        )
        keys = _seed_outbox(ops_sandbox, ops)
        expired = ops_sandbox.issue_token()
        ops_sandbox.set_token_state(expired, "expired")
        graph = f"{ops_sandbox.base_url}/v23.0/{ops_sandbox.phone_number_id}/messages"
        wf, credentials = _workflow({name: svc.url for name, svc in services.items()})
        nodes, connections = _operations(graph, expired)
        wf["nodes"].extend(nodes)
        wf["connections"].update(connections)
        wf["connections"]["Manual Trigger"]["main"][0].extend(
            {"node": name, "type": "main", "index": 0} for name in ("Check token", GRAPH)
        )
        credentials.append(
            {
                "id": "waAuthServeApiOps",
                "name": f"wa-auth serve {OPS}",
                "type": "waAuthApi",
                "data": {"baseUrl": ops.url, "apiKey": KEY},
            }
        )
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
            summary["scenarios"][s.name] = {
                "outputs": summary["nodes"][f"{NODE} {s.name}"]["outputs"],
                "messages": len(sandboxes[s.name].messages()),
                "access": [line for line in svc.lines() if line["event"] == "access"],
            }
        assert ops.stop() == 0
        services[OPS] = ops
        for name, svc in services.items():
            for secret in (tokens[name], KEY):
                assert secret not in proc.stdout, f"{name}: a secret appears in n8n's output"
                assert secret not in proc.stderr, f"{name}: a secret appears in n8n's log"
                assert secret not in svc.stderr, f"{name}: a secret appears in serve's log"
        summary["operations"] = {
            "keys": keys,
            "messages": [m.idempotency_key for m in ops_sandbox.messages()],
            "access": [
                (line["route"], line["status"]) for line in ops.lines() if line["event"] == "access"
            ],
        }
        return summary


@pytest.fixture(scope="module")
def execution(
    n8n_bin: str, extension: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The one n8n execution of every scenario and of the other operations."""
    return _run(n8n_bin, extension, NODE_SEND, tmp_path_factory.mktemp("n8n-node"))


def test_send_routes_each_item_to_its_outcome(execution):
    """Valid, expired, revoked, de-scoped, locked, a 131049 held by the outbox, a lost answer."""
    results = execution["scenarios"]
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


def test_check_token_classify_error_and_the_outbox(execution):
    """Check token, Classify error (an HTTP Request node's error output), Outbox list and replay."""
    nodes, ops = execution["nodes"], execution["operations"]
    ((check,),) = nodes["Check token"]["outputs"]
    valid(check)
    assert (check["valid"], check["exit_code"], check["category"]) == (True, 0, None)
    # The HTTP Request node's error output, classified by serve as the client would.
    assert nodes[GRAPH]["outputs"][0] == []
    ((classified,),) = nodes["Classify error"]["outputs"]
    valid(classified)
    assert classified["category"] == "token_expired"
    assert classified["source"] != "text"
    assert classified["error"]["http_status"] == 401
    # The outbox as serve lists it: one item per row, the row's JSON unchanged.
    (rows,) = nodes["Outbox: List"]["outputs"]
    assert sorted((r["idempotency_key"], r["state"]) for r in rows) == sorted(
        (key, state) for state, key in ops["keys"].items()
    )
    # Replay runs once (not once per listed row) and sends the lost answer again: Delivered.
    # The queued intent waits for its not_before: not replayed.
    outputs = nodes["Outbox: Replay"]["outputs"]
    assert len(outputs) == len(NODE_OUTPUTS)
    delivered = outputs[NODE_OUTPUTS.index("Delivered")]
    assert [i["idempotency_key"] for i in delivered] == [ops["keys"]["maybe_delivered"]]
    assert sum(len(items) for items in outputs) == 1
    valid(delivered[0])
    assert ops["access"].count(("/outbox/replay", 200)) == 1
    assert ops["messages"].count(ops["keys"]["maybe_delivered"]) == 2
