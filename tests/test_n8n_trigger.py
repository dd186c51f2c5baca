"""The wa_auth trigger in a real n8n server, fed by a real `wa-auth serve` and the sandbox.

Two workflows, each a WhatsApp (wa_auth) Trigger for one phone number followed by an HTTP
Request node that posts what it got to a receiver of the test's, are imported, published and
started in `n8n start` (a throwaway user folder, loopback only). Activation registers each
trigger's webhook URL as a route on serve (contract 5). The sandbox's signed status webhooks
then go to serve, which verifies them and forwards each one, signed with the route's secret, to
the workflow of its number. A delivery with a wrong signature sent straight to n8n is refused
with a 401 and starts nothing; a forward delivered again (serve's retry when n8n's answer was
lost) is answered as a duplicate and starts nothing either. In the same n8n, through the REST
API its editor uses (the owner set up, signed in): the credential test passes with the right key
and fails with a wrong one against serve, and deactivating a workflow removes its route from
serve. Loaded, like tests/test_n8n_node.py, from the packed tarball as a
custom extension (node type `CUSTOM.waAuthTrigger`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest

import wa_auth
from cases.n8n import ROOT, n8n_path
from serving import HARD, KEY, PostServer, serve_env, start
from wa_auth.sandbox import Sandbox

BUILD = ROOT / "n8n-nodes-wa-auth" / "scripts" / "build.sh"
#: The key of the credential test that must fail: it appears in no answer and no log either.
WRONG_KEY = "wrong-key-0123456789abcdef"
#: Seconds n8n may take to start and register both routes on this (busy, 2-core) machine.
STARTUP = 240.0

pytestmark = [pytest.mark.real_component("n8n"), pytest.mark.once]


class Receiver(PostServer):
    """Where the workflows' HTTP Request nodes post each event they got: `/<workflow>`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        super().__init__()

    def answer(self, path: str, headers: Message, body: bytes) -> int:
        with self.lock:
            self.posts.append((path.strip("/"), json.loads(body)))
        return 200

    def got(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.posts)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workflow(name: str, number: str, receiver: Receiver, index: int) -> dict[str, Any]:
    trigger = f"WhatsApp (wa_auth) Trigger {name}"
    return {
        "id": f"waAuthTrigger{name}",
        "name": f"wa_auth trigger {name}",
        "active": False,
        "settings": {"executionOrder": "v1"},
        "nodes": [
            {
                "id": str(uuid.UUID(int=2 * index + 1)),
                "name": trigger,
                "type": "CUSTOM.waAuthTrigger",
                "typeVersion": 1,
                "position": [0, 0],
                "webhookId": str(uuid.UUID(int=1000 + index)),
                "parameters": {"kinds": ["statuses", "failures"], "phoneNumberIds": number},
                "credentials": {"waAuthApi": {"id": "waAuthServeApi00", "name": "wa-auth serve"}},
            },
            {
                "id": str(uuid.UUID(int=2 * index + 2)),
                "name": "Tell the test",
                "type": "n8n-nodes-base.httpRequest",
                "typeVersion": 4.2,
                "position": [300, 0],
                "parameters": {
                    "method": "POST",
                    "url": f"{receiver.url}/{name}",
                    "sendBody": True,
                    "specifyBody": "json",
                    "jsonBody": "={{ JSON.stringify($json) }}",
                    "options": {},
                },
            },
        ],
        "connections": {
            trigger: {"main": [[{"node": "Tell the test", "type": "main", "index": 0}]]}
        },
    }


def _env(n8n: str, folder: Path, extension: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "N8N_"))}
    env["PATH"] = n8n_path(n8n, env.get("PATH", ""))
    env.update(
        N8N_USER_FOLDER=str(folder),
        N8N_CUSTOM_EXTENSIONS=str(extension),
        N8N_PORT=str(port),
        N8N_LISTEN_ADDRESS="127.0.0.1",
        WEBHOOK_URL=f"http://127.0.0.1:{port}/",
        N8N_RUNNERS_MODE="internal",
        N8N_RUNNERS_BROKER_LISTEN_ADDRESS="127.0.0.1",
        N8N_RUNNERS_BROKER_PORT=str(_port()),
        N8N_DIAGNOSTICS_ENABLED="false",
        N8N_VERSION_NOTIFICATIONS_ENABLED="false",
        N8N_TEMPLATES_ENABLED="false",
        N8N_PERSONALIZATION_ENABLED="false",
        N8N_COMMUNITY_PACKAGES_ENABLED="false",
        N8N_LICENSE_AUTO_RENEW_ENABLED="false",
        N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS="true",
        DB_TYPE="sqlite",
        EXECUTIONS_MODE="regular",
        GENERIC_TIMEZONE="UTC",
    )
    return env


def _cli(n8n: str, env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(
        [n8n, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"n8n {args[0]}: {proc.stdout}{proc.stderr}"


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory, require_component: Any) -> Path:
    """The packed n8n-nodes-wa-auth, unpacked into a folder n8n loads custom nodes from."""
    proc = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0 and "npm" in proc.stderr and "not found" in proc.stderr:
        require_component("npm", "Node.js and npm are needed to build n8n-nodes-wa-auth")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path_factory.mktemp("n8n-extension")
    with tarfile.open(proc.stdout.strip().splitlines()[-1]) as archive:
        archive.extractall(folder, filter="data")
    return folder / "package"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)
    return value


class Editor:
    """n8n's REST API as its editor uses it: the owner set up, then signed in (a cookie)."""

    BROWSER = "wa-auth-test-browser"

    def __init__(self, port: int) -> None:
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/rest",
            headers={"browser-id": self.BROWSER},
            timeout=HARD,
        )
        owner = {
            "email": "owner@wa-auth.invalid",
            "firstName": "wa",
            "lastName": "auth",
            "password": "Owner-password-1",
        }
        setup = self.http.post("/owner/setup", json=owner)
        assert setup.status_code == 200, setup.text
        # The cookie is `Secure`, which a client keeps to HTTPS: carried by hand on loopback.
        self.http.cookies.clear()
        self.http.headers["Cookie"] = f"n8n-auth={setup.cookies['n8n-auth']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.http.request(method, path, **kwargs)
        assert answer.status_code == 200, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()["data"]

    def close(self) -> None:
        self.http.close()


def _credential_tests(editor: Editor, url: str) -> dict[str, dict[str, Any]]:
    """n8n's credential test of the stored credential and of one with a wrong key."""
    results = {}
    for name, key in (("right", KEY), ("wrong", WRONG_KEY)):
        credentials = {
            "id": "waAuthServeApi00",
            "name": "wa-auth serve",
            "type": "waAuthApi",
            "data": {"baseUrl": url, "apiKey": key},
        }
        results[name] = editor.call("POST", "/credentials/test", json={"credentials": credentials})
    return results


def _redeliver(queue: Path, route_id: str, forward: dict[str, Any]) -> tuple[bytes, str]:
    """*forward* (already delivered) as serve sends it again: signed with its route's secret.

    What serve does when n8n's answer to a delivery is lost: the same event, the same key.
    The secret is the one the trigger registered, read from serve's queue file.
    """
    with contextlib.closing(sqlite3.connect(queue)) as db:
        (secret,) = db.execute(
            "SELECT secret FROM wa_serve_routes WHERE id = ?", (route_id,)
        ).fetchone()
    body = json.dumps(forward).encode()
    return body, "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_two_workflows_each_get_their_numbers_events_once(n8n_bin, extension, receiver, tmp_path):
    """Routes on activation, each number's events once, forgeries refused, the editor's tests."""
    with Sandbox(seed=3, freeze_clock=True) as sb:
        first, second = sb.phone_number_ids[:2]
        env = serve_env(sb, sb.issue_token(), WA_AUTH_WEBHOOK_APP_SECRET=sb.app_secret)
        service = start(env, "--webhook-queue", str(tmp_path / "queue.db"))
        n8n = None
        try:
            sb.subscribe(service.url + "/webhook")
            port = _port()
            n8n_env = _env(n8n_bin, tmp_path / "n8n", extension, port)
            credentials = tmp_path / "credentials.json"
            credentials.write_text(
                json.dumps(
                    [
                        {
                            "id": "waAuthServeApi00",
                            "name": "wa-auth serve",
                            "type": "waAuthApi",
                            "data": {"baseUrl": service.url, "apiKey": KEY},
                        }
                    ]
                ),
                encoding="utf-8",
            )
            workflows = tmp_path / "workflows.json"
            flows = [_workflow("A", first, receiver, 0), _workflow("B", second, receiver, 1)]
            workflows.write_text(json.dumps(flows), encoding="utf-8")
            _cli(n8n_bin, n8n_env, "import:credentials", f"--input={credentials}")
            _cli(n8n_bin, n8n_env, "import:workflow", f"--input={workflows}")
            for flow in flows:
                _cli(n8n_bin, n8n_env, "publish:workflow", f"--id={flow['id']}")
            with (tmp_path / "n8n.log").open("w") as log:
                n8n = subprocess.Popen(
                    [n8n_bin, "start"], env=n8n_env, stdout=log, stderr=subprocess.STDOUT
                )

            def routes() -> list[dict[str, Any]]:
                answer = service.call("GET", "/webhook/routes")
                return answer.json()["routes"] if len(answer.json()["routes"]) == 2 else []

            registered = _wait("both triggers registered a route on serve", routes, STARTUP)
            by_number = {tuple(r["phone_number_ids"]): r for r in registered}
            assert set(by_number) == {(first,), (second,)}
            for route in registered:
                assert route["url"].startswith(f"http://127.0.0.1:{port}/webhook/")
                assert route["types"] == ["error", "status"]

            with wa_auth.WhatsAppClient(
                base_url=sb.base_url, token=sb.issue_token(), phone_number_id=first
            ) as client:
                sent_a = [client.send_text("+15551234567", f"a{i}").message_id for i in range(2)]
            with wa_auth.WhatsAppClient(
                base_url=sb.base_url, token=sb.issue_token(), phone_number_id=second
            ) as client:
                sent_b = [client.send_text("+15551234567", "b").message_id]
            assert sb.flush_webhooks(HARD)
            expected = {
                "A": [r for r in sb.webhooks() if r.message_id in sent_a],
                "B": [r for r in sb.webhooks() if r.message_id in sent_b],
            }
            total = sum(len(v) for v in expected.values())
            assert total >= 3
            _wait(f"{total} events through n8n", lambda: len(receiver.got()) >= total, HARD * 2)

            # A forged delivery straight to workflow A's URL: refused, nothing runs.
            url_a = by_number[(first,)]["url"]
            body = json.dumps({"key": "forged", "type": "status", "event": {}}).encode()
            forged = httpx.post(
                url_a,
                content=body,
                headers={"X-Wa-Auth-Signature-256": "sha256=" + "0" * 64},
                timeout=HARD,
            )
            assert forged.status_code == 401
            # A tampered Meta delivery is refused by serve: it never reaches n8n.
            tampered = service.call(
                "POST",
                "/webhook",
                key=None,
                content=b'{"object":"whatsapp_business_account","entry":[]}',
                headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
            )
            assert tampered.status_code == 401
            # serve delivers a forward again when n8n's answer is lost: the trigger emits it once.
            (delivered, *_) = [forward for workflow, forward in receiver.got() if workflow == "A"]
            body, signature = _redeliver(
                tmp_path / "queue.db", by_number[(first,)]["id"], delivered
            )
            again = httpx.post(
                url_a,
                content=body,
                headers={"X-Wa-Auth-Signature-256": signature, "Content-Type": "application/json"},
                timeout=HARD,
            )
            assert again.status_code == 200, again.text
            assert again.json() == {"ok": True, "duplicate": True}
            time.sleep(2.0)  # anything more (a duplicate, a forgery) would have come by now
            got = receiver.got()
            assert len(got) == total
            for name, number in (("A", first), ("B", second)):
                mine = [forward for workflow, forward in got if workflow == name]
                assert {f["phone_number_id"] for f in mine} == {number}
                assert len({f["key"] for f in mine}) == len(mine) == len(expected[name])
                assert sorted((f["event"]["id"], f["event"]["status"]) for f in mine) == sorted(
                    (r.message_id, r.status) for r in expected[name]
                )
            # The editor: the credential test checks the key against serve (not the token), and
            # deactivating workflow B removes its route from serve.
            editor = Editor(port)
            try:
                tests = _credential_tests(editor, service.url)
                assert tests["right"]["status"] == "OK", tests
                assert tests["wrong"]["status"] == "Error", tests
                assert KEY not in json.dumps(tests)
                assert WRONG_KEY not in json.dumps(tests)
                editor.call("POST", f"/workflows/{flows[1]['id']}/deactivate", json={})
            finally:
                editor.close()

            def one_left() -> list[dict[str, Any]]:
                answer = service.call("GET", "/webhook/routes")
                return answer.json()["routes"] if len(answer.json()["routes"]) == 1 else []

            left = _wait("workflow B's route removed", one_left, 30)
            assert [r["id"] for r in left] == [by_number[(first,)]["id"]]
            n8n_log = (tmp_path / "n8n.log").read_text(encoding="utf-8", errors="replace")
            assert KEY not in n8n_log
            assert WRONG_KEY not in n8n_log
        finally:
            if n8n is not None:
                n8n.send_signal(signal.SIGTERM)
                try:
                    n8n.wait(60)
                except subprocess.TimeoutExpired:
                    n8n.kill()
                    n8n.wait(HARD)
            assert service.stop() == 0
        assert KEY not in service.stderr
