"""`wa-auth serve --outbox`: the outbox's routes and its health, as a real process on 127.0.0.1.

A broken outbox is reported by `/healthz` and `/readyz` (a full disk on a real tiny tmpfs), a
Graph error holding `\\ud800` never stops the writer (every later `/send` is answered), and
`GET /outbox?limit=` takes any integer. Every JSON body is validated against the schema.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from helpers import eventually
from mounts import fill_disk, tiny_filesystem
from running import text_intent
from serving import serving
from wa_auth.outbox import SqliteOutbox

TOKEN = "EAAGtest0000000000000000000000"


class _Graph(http.server.BaseHTTPRequestHandler):
    """A Graph API (or a proxy in front of it) whose first error message holds `\\ud800`."""

    sends = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with _Graph.lock:
            _Graph.sends += 1
            first = _Graph.sends == 1
        if first:
            status, body = (
                400,
                b'{"error": {"message": "(#131009) bad \\ud800 value", "code": 131009}}',
            )
        else:
            status, body = 200, json.dumps({"messages": [{"id": f"wamid.{_Graph.sends}"}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def graph() -> Iterator[str]:
    _Graph.sends = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Graph)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_graph_error_with_a_lone_surrogate_never_stops_the_outbox(graph, tmp_path):
    """The issue's `serve` scenario: after an outcome holding `\\ud800`, every later /send is
    answered (not timed out), the outbox records every intent, and /healthz says it works."""
    db = tmp_path / "outbox.db"
    with serving(
        None, TOKEN, "--outbox", str(db), WA_BASE_URL=graph, WA_PHONE_NUMBER_ID="1234567"
    ) as service:
        first = service.call("POST", "/send", json=text_intent(idempotency_key="k0"))
        assert first.status_code == 200
        assert first.json()["error"]["message"] == "(#131009) bad \ufffd value"
        batch = service.call(
            "POST", "/send", json=[text_intent(idempotency_key=f"k{n}") for n in range(1, 21)]
        )
        assert batch.status_code == 200
        assert batch.json()["summary"]["delivered"] == 20
        health = service.call("GET", "/healthz")
        assert (health.status_code, health.json()["outbox"]) == (200, {"ok": True, "kind": None})
    with SqliteOutbox(db, create=False) as box:
        rows = {r.idempotency_key: r for r in box.list()}
    assert rows["k0"].state == "failed"
    assert rows["k0"].error["message"] == "(#131009) bad \ufffd value"
    assert {k: r.state for k, r in rows.items() if k != "k0"} == {
        f"k{n}": "delivered" for n in range(1, 21)
    }


def test_outbox_takes_any_integer_limit(wa_sandbox, tmp_path):
    """`GET /outbox?limit=99999999999999999999` lists the rows (200), not a 500."""
    db = tmp_path / "outbox.db"
    token = wa_sandbox.issue_token()
    with serving(wa_sandbox, token, "--outbox", str(db)) as service:
        assert (
            service.call("POST", "/send", json=text_intent(idempotency_key="a")).json()["state"]
            == "delivered"
        )
        listing = service.call("GET", "/outbox", params={"limit": "9" * 20})
        assert listing.status_code == 200
        assert [r["idempotency_key"] for r in listing.json()["rows"]] == ["a"]
        assert listing.json()["rows"][0]["phone_number_id"] == wa_sandbox.phone_number_id


def test_healthz_and_readyz_report_a_full_disk_until_there_is_room(wa_sandbox, tmp_path):
    """A real ENOSPC under a running service: /send says transient (8, retryable), /healthz
    is 503 `broken` with the kind, /readyz is 503; once there is room both are 200 again."""
    token = wa_sandbox.issue_token()
    with (
        tiny_filesystem(tmp_path, 384) as disk,
        serving(wa_sandbox, token, "--outbox", str(disk / "outbox.db")) as service,
    ):
        assert service.call("GET", "/healthz").json()["outbox"] == {"ok": True, "kind": None}
        filler = fill_disk(disk)
        answer = service.call(
            "POST",
            "/send",
            json=[text_intent("y" * 2000, idempotency_key=f"k{n}") for n in range(100)],
        )
        if answer.status_code == 200:
            lines = answer.json()["results"]
            failed = [x for x in lines if x["state"] != "delivered"]
            assert failed
            assert all(x["exit_code"] == 8 and x["error"]["retryable"] for x in failed)
        else:  # the enqueue before the sends: the whole request
            assert (answer.status_code, answer.json()["category"]) == (503, "transient")
        health = service.call("GET", "/healthz")
        assert health.status_code == 503
        body = health.json()
        assert (body["ok"], body["status"], body["outbox"]) == (
            False,
            "broken",
            {"ok": False, "kind": "full"},
        )
        ready = service.call("GET", "/readyz")
        assert (ready.status_code, ready.json()["category"]) == (503, "transient")
        assert "full" in ready.json()["error"]["message"]
        filler.unlink()
        # The probes test a write at most once a second: it passes once there is room.
        eventually(lambda: service.call("GET", "/healthz").status_code == 200)
        assert service.call("GET", "/healthz").json()["outbox"] == {"ok": True, "kind": None}
        assert service.call("GET", "/readyz").status_code == 200
        assert (
            service.call("POST", "/send", json=text_intent(idempotency_key="after")).json()["state"]
            == "delivered"
        )
