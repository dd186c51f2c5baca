"""`wa-auth serve`: a real process on 127.0.0.1 in front of the sandbox, over real sockets.

Every JSON body it answers, its stdout info line and every stderr line (access log, shutdown)
are validated against docs/wa-auth.schema.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from wa_auth._cli._serve import _settings as _serve_app
from wa_auth.outbox import SqliteOutbox
from wa_auth.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "wa-auth.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
KEY = "test-key-0123456789-abcdefghijklmnop"
TO = "+15551234567"


def text(body: str = "hello", **extra) -> dict:
    return {"to": TO, "type": "text", "text": {"body": body}, **extra}


def valid(obj: dict) -> dict:
    VALIDATOR.validate(obj)
    return obj


class Service:
    """A running `wa-auth serve` process: its URL, an HTTP client, and its output."""

    def __init__(self, proc: subprocess.Popen[str], info: dict) -> None:
        self.proc = proc
        self.info = info
        self.url = info["url"]
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.stderr = ""

    def call(self, method: str, path: str, *, key: str | None = KEY, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.headers.get("content-type", "").startswith("application/json"):
            valid(response.json())
        return response

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process, wait for it, and validate every line it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        self.http.close()
        self.stderr = err
        assert "Traceback" not in err, err
        for raw in (out + err).splitlines():
            if raw.strip():
                valid(json.loads(raw))
        return self.proc.returncode

    def lines(self) -> list[dict]:
        return [json.loads(raw) for raw in self.stderr.splitlines() if raw.strip()]


def serve_env(sandbox: Sandbox, token: str | None, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "VAULT_"))}
    env.update(
        WA_BASE_URL=sandbox.base_url,
        WA_PHONE_NUMBER_ID=sandbox.phone_number_id,
        WA_AUTH_API_KEY=KEY,
    )
    if token is not None:
        env["WA_ACCESS_TOKEN"] = token
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


#: Runs the CLI with prometheus_client hidden, as if the `prometheus` extra were not installed.
WITHOUT_PROMETHEUS = (
    "import sys; sys.modules['prometheus_client'] = None; "
    "from wa_auth._cli import main; sys.exit(main(sys.argv[1:]))"
)


def start(env: dict[str, str], *args: str, python: tuple[str, ...] = ("-m", "wa_auth")) -> Service:
    proc = subprocess.Popen(
        [sys.executable, *python, "serve", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready, "wa-auth serve printed nothing within 60 s"
    line = proc.stdout.readline()
    if not line:
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"wa-auth serve exited {proc.returncode}: {out}{err}")
    return Service(proc, valid(json.loads(line)))


@contextlib.contextmanager
def serving(sandbox: Sandbox, token: str | None, *args: str, **env) -> Iterator[Service]:
    service = start(serve_env(sandbox, token, **env), *args)
    try:
        yield service
    finally:
        if service.proc.poll() is None:
            service.stop()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=3) as sb:
        yield sb


@pytest.fixture
def token(sandbox: Sandbox) -> str:
    return sandbox.issue_token()


# --- the routes ----------------------------------------------------------------------------------


def test_routes_answer_the_cli_contract(sandbox, token, tmp_path):
    """Every route answers one of the schema's shapes; a processed intent is HTTP 200 either way."""
    with serving(sandbox, token, "--outbox", str(tmp_path / "o.db")) as svc:
        assert svc.info["host"] == "127.0.0.1"  # loopback unless told otherwise
        assert svc.info["metrics"] is True
        one = svc.call("POST", "/send", json=text(idempotency_key="k-1"))
        assert one.status_code == 200
        assert one.json()["state"] == "delivered"
        assert one.json()["phone_number_id"] == sandbox.phone_number_id
        batch = svc.call("POST", "/send", json=[text(), {"to": TO, "type": "nope"}, text()])
        assert batch.status_code == 200
        body = batch.json()
        assert [r["line"] for r in body["results"]] == [1, 2, 3]
        assert [r["state"] for r in body["results"]] == ["delivered", "failed", "delivered"]
        assert body["results"][1]["category"] == "invalid_request"
        assert (body["exit_code"], body["summary"]["total"]) == (9, 3)
        sandbox.fail_next(131048)
        capped = svc.call("POST", "/send", json=text()).json()
        assert (capped["state"], capped["category"], capped["exit_code"]) == (
            "queued",
            "rate_limited",
            14,
        )
        check = svc.call("POST", "/check", json={"warn_days": 14})
        assert (check.status_code, check.json()["valid"], check.json()["warn_days"]) == (
            200,
            True,
            14,
        )
        assert svc.call("GET", "/readyz").json()["ok"] is True
        graph = {"error": {"code": 190, "error_subcode": 460, "message": "changed password"}}
        classified = svc.call("POST", "/classify", json=graph).json()
        assert (classified["source"], classified["category"]) == ("graph", "token_revoked")
        listing = svc.call("GET", "/outbox", params={"state": "delivered"}).json()
        assert listing["stats"]["total"] == 4
        assert {r["state"] for r in listing["rows"]} == {"delivered"}
        assert svc.call("GET", "/outbox", params={"state": "nope"}).status_code == 400
        replay = svc.call("POST", "/outbox/replay", json={"limit": 10}).json()
        assert replay["summary"]["total"] == 0  # the queued row waits for its not_before
        health = svc.call("GET", "/healthz", key=None).json()
        assert health["status"] == "alive"
        assert svc.call("GET", "/nowhere").status_code == 404
        wrong_method = svc.call("GET", "/send")
        assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")
        assert svc.stop() == 0
    assert len(sandbox.messages()) == 3
    access = [line for line in svc.lines() if line["event"] == "access"]
    assert [a["route"] for a in access][:2] == ["/send", "/send"]
    assert access[1]["intents"] == 3
    assert [line["event"] for line in svc.lines()][-2:] == ["stopping", "stopped"]


def test_readyz_reports_a_token_a_send_proved_dead(sandbox, token):
    """/readyz is 503 once a send proved the token dead, though its health was cached valid."""
    with serving(sandbox, token) as svc:
        assert svc.call("GET", "/readyz").status_code == 200
        sandbox.set_token_state(token, "revoked_password_changed")
        sent = svc.call("POST", "/send", json=text()).json()
        assert sent["category"] == "token_revoked"
        ready = svc.call("GET", "/readyz")
        assert ready.status_code == 503
        assert (ready.json()["valid"], ready.json()["category"]) == (False, "token_revoked")


def test_metrics_parse_with_prometheus_clients_parser(sandbox, token):
    """/metrics is Prometheus text that prometheus_client's own parser reads."""
    from prometheus_client.parser import text_string_to_metric_families

    with serving(sandbox, token, "--consumer", "orders") as svc:
        svc.call("POST", "/send", json=[text(), text()])
        metrics = svc.call("GET", "/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
        (sample,) = [s for s in families["wa_auth_calls"].samples if s.name.endswith("_total")]
        assert sample.labels["category"] == "ok"
        assert sample.labels["consumer"] == "orders"
        assert sample.value == 2.0
        assert svc.call("GET", "/metrics", key=None).status_code == 401


def test_metrics_without_prometheus_client_say_what_to_install(sandbox, token):
    """Without prometheus_client, /metrics is a 501 JSON error naming the extra; the rest works."""
    service = start(serve_env(sandbox, token), python=("-c", WITHOUT_PROMETHEUS))
    try:
        assert service.info["metrics"] is False
        metrics = service.call("GET", "/metrics")
        assert metrics.status_code == 501
        assert "wa-auth[prometheus]" in metrics.json()["error"]["message"]
        assert service.call("POST", "/send", json=text()).json()["state"] == "delivered"
    finally:
        assert service.stop() == 0


# --- the API key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789-abcdefghijklmnop"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Basic {KEY}"},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "prefix", "longer", "basic-scheme", "wrong-x-api-key", "empty"],
)
def test_without_the_right_key_nothing_is_sent(sandbox, token, headers):
    """A missing or wrong API key is a 401 JSON error, and no request reaches Meta."""
    with serving(sandbox, token) as svc:
        for path in ("/send", "/check", "/classify", "/outbox/replay"):
            r = svc.call("POST", path, key=None, headers=dict(headers), json=text())
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert (r.json()["category"], r.json()["error"]["rule"]) == ("usage", "serve/api_key")
        for path in ("/readyz", "/metrics", "/outbox"):
            assert svc.call("GET", path, key=None, headers=dict(headers)).status_code == 401
        assert svc.call("GET", "/healthz", key=None, headers=dict(headers)).status_code == 200
        ok = svc.call("POST", "/send", key=None, headers={"X-API-Key": KEY}, json=text())
        assert ok.json()["state"] == "delivered"
    assert len(sandbox.messages()) == 1
    assert [r.endpoint for r in sandbox.requests()] == ["send_message"]


def test_the_key_is_compared_in_constant_time(monkeypatch):
    """Keys are compared as equal-length SHA-256 digests with hmac.compare_digest."""
    seen = []

    def compare(a, b):
        seen.append((len(a), len(b)))
        return a == b

    monkeypatch.setattr(_serve_app.hmac, "compare_digest", compare)
    digest = _serve_app.key_digest(KEY)
    assert digest == hashlib.sha256(KEY.encode()).digest()
    assert _serve_app.key_matches(KEY, digest)
    for presented in ("", "x", KEY[:-1], KEY + "x" * 1000):
        assert not _serve_app.key_matches(presented, digest)
    assert seen == [(32, 32)] * 5
    assert not _serve_app.key_matches(None, digest)
    assert "key_digest" not in repr(
        _serve_app.Settings(
            host="127.0.0.1",
            port=0,
            key_digest=digest,
            max_body=1024,
            request_timeout=1,
            shutdown_timeout=1,
            concurrency=1,
        )
    )


def _refused(env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", "serve", "--port", "0", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [valid(json.loads(raw)) for raw in proc.stdout.splitlines() if raw.strip()]
    return line


def test_refuses_to_start_without_a_usable_key(sandbox, tmp_path):
    """No key, a short key, two sources, an unreadable file or --api-key: exit 2, key never echoed."""
    env = serve_env(sandbox, "t", WA_AUTH_API_KEY=None)
    assert "refuses to start without an API key" in _refused(env)["error"]["message"]
    short = _refused({**env, "WA_AUTH_API_KEY": "short-secret"})["error"]["message"]
    assert "at least 16" in short
    assert "short-secret" not in short
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    both = _refused({**env, "WA_AUTH_API_KEY": KEY}, "--api-key-file", str(key_file))
    assert "one API key source" in both["error"]["message"]
    missing = _refused(env, "--api-key-file", str(tmp_path / "absent"))
    assert "cannot read it" in missing["error"]["message"]
    argv = _refused(env, f"--api-key={KEY}")
    assert "never accepted as a command-line argument" in argv["error"]["message"]
    assert KEY not in json.dumps(argv)
    with serving(sandbox, "t", "--api-key-file", str(key_file), WA_AUTH_API_KEY=None) as svc:
        assert svc.call("GET", "/outbox").status_code == 404  # authorised: no outbox here


# --- bodies --------------------------------------------------------------------------------------


def _raw(url: str, request: bytes) -> tuple[int, dict]:
    """Send *request* bytes on a fresh connection; return the status and the JSON body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split()[1]), valid(json.loads(body))


@pytest.mark.parametrize(
    ("body", "content_type", "status", "rule"),
    [
        (b'{"to": "+1555', "application/json", 400, "serve/json"),
        (b'{"to": NaN}', "application/json", 400, "serve/json"),
        (b"\xff\xfe not utf-8", "application/json", 400, "serve/json"),
        (b"42", "application/json", 400, "serve/body"),
        (b"", "application/json", 400, "serve/json"),
        (b'{"to": "+15551234567"}', "text/plain", 415, "serve/content_type"),
        (b'{"to": "+15551234567"}', None, 415, "serve/content_type"),
        (b"[" + b'"x",' * 800 + b'"x"]', "application/json", 413, "serve/size"),
    ],
    ids=[
        "truncated",
        "nan",
        "not-utf8",
        "a-number",
        "empty",
        "text-plain",
        "no-content-type",
        "oversized",
    ],
)
def test_malformed_bodies_are_4xx_json(sandbox, token, body, content_type, status, rule):
    """Malformed JSON, a wrong content type or an oversized body: a 4xx JSON error, nothing sent."""
    with serving(sandbox, token, "--max-body", "2048") as svc:
        headers = {} if content_type is None else {"Content-Type": content_type}
        r = svc.call("POST", "/send", content=body, headers=headers)
        assert r.status_code == status
        assert r.json()["error"]["rule"] == rule
        assert r.json()["error"]["http_status"] == status
    assert sandbox.messages() == ()


def test_an_oversized_chunked_body_is_413(sandbox, token):
    """A chunked body without Content-Length is cut at the limit too (413, connection closed)."""
    with serving(sandbox, token, "--max-body", "2048") as svc:
        chunk = b"[" + b'"x",' * 1000
        request = (
            b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n"
        )
        status, body = _raw(svc.url, request)
        assert (status, body["error"]["rule"]) == (413, "serve/size")
    assert sandbox.messages() == ()


def test_a_slow_client_does_not_block_others(sandbox, token):
    """A client stalled mid-body gets 408 at the request timeout; others are answered meanwhile."""
    with serving(sandbox, token, "--request-timeout", "3") as svc:
        host, port = svc.url.removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)), timeout=30)
        try:
            slow.sendall(
                b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 500\r\n\r\n"
                b'{"to": "+1555'
            )
            for _ in range(5):
                assert svc.call("POST", "/send", json=text()).json()["state"] == "delivered"
            data = b""
            while b"\r\n\r\n" not in data:
                data += slow.recv(65536)
            assert data.split()[1] == b"408"
            assert b'"serve/read_timeout"' in data
        finally:
            slow.close()
    assert len(sandbox.messages()) == 5


def test_no_send_starts_after_the_request_timeout(sandbox, token):
    """A batch's sends that had not started by the request timeout are answered not sent."""
    sandbox.set_faults(latency=0.4)
    with serving(sandbox, token, "--request-timeout", "1", "--concurrency", "1") as svc:
        body = svc.call("POST", "/send", json=[text() for _ in range(8)]).json()
    states = [(r["state"], r["reason"]) for r in body["results"]]
    delivered = states.count(("delivered", None))
    late = states.count(("failed", "timeout"))
    assert delivered >= 1
    assert late >= 1
    assert delivered + late == 8
    assert len(sandbox.messages()) == delivered
    late_line = next(r for r in body["results"] if r["reason"] == "timeout")
    assert (late_line["category"], late_line["error"]["rule"]) == (
        "transient",
        "serve/request_timeout",
    )


# --- SIGTERM -------------------------------------------------------------------------------------


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_sigterm_finishes_sends_in_flight_and_leaves_the_rest_in_the_outbox(
    sandbox, token, tmp_path
):
    """SIGTERM: the sends in flight finish and are answered; the rest stays pending for replay."""
    outbox = str(tmp_path / "outbox.db")
    sandbox.set_faults(latency=1.5)
    svc = start(serve_env(sandbox, token), "--outbox", outbox, "--concurrency", "2")
    answer: dict = {}

    def post() -> None:
        try:
            answer["response"] = svc.call(
                "POST", "/send", json=[text(idempotency_key=f"k-{i}") for i in range(6)]
            )
        except Exception as exc:
            answer["error"] = exc

    caller = threading.Thread(target=post)
    caller.start()
    _wait_for(lambda: len(sandbox.requests()) == 2)  # two sends in flight, four waiting
    assert svc.stop() == 0
    caller.join(30)
    assert "error" not in answer, answer
    response = answer["response"]
    assert response.status_code == 200
    body = response.json()
    assert body["summary"]["interrupted"] is True
    assert [r["state"] for r in body["results"]].count("delivered") == 2
    queued = [r for r in body["results"] if r["state"] == "queued"]
    assert len(queued) == 4
    assert {(r["reason"], r["error"]["rule"]) for r in queued} == {
        ("interrupted", "cli/interrupted")
    }
    # The batch is answered after the stop began, and before the process ends.
    assert [line["event"] for line in svc.lines()] == ["stopping", "access", "stopped"]
    assert svc.lines()[0]["in_flight"] == 2
    assert svc.lines()[0]["signal"] == "SIGTERM"
    assert len(sandbox.messages()) == 2
    with SqliteOutbox(outbox, create=False) as box:
        states = {row.idempotency_key: row.state for row in box.list()}
    assert sorted(states.values()) == ["delivered"] * 2 + ["pending"] * 4
    # The next service replays what the first one left in the outbox.
    sandbox.set_faults()
    with serving(sandbox, token, "--outbox", outbox) as again:
        replay = again.call("POST", "/outbox/replay", json={}).json()
        assert replay["summary"]["delivered"] == 4
        duplicate = again.call("POST", "/send", json=text(idempotency_key="k-0")).json()
        # A retried item the outbox delivered: its delivery (exit 0), not "drop invalid".
        assert (duplicate["state"], duplicate["reason"]) == ("delivered", "duplicate")
        assert (duplicate["exit_code"], duplicate["message_id"] is not None) == (0, True)
    assert len(sandbox.messages()) == 6


# --- the access log ------------------------------------------------------------------------------


def test_the_access_log_holds_no_token_and_no_message_text(sandbox, token):
    """Canaries in the text, headers, path, query and a wrong key never reach the log."""
    canary = "CANARY-7f3a91c2"
    with serving(sandbox, token) as svc:
        svc.call("POST", "/send", json=text(f"secret text {canary}", idempotency_key=canary))
        svc.call("POST", "/send", json=[text(f"batch {canary}"), {"to": canary}])
        svc.call("POST", "/classify", json={"error": {"message": canary, "code": 190}})
        svc.call("POST", "/send", key=f"{canary}-wrong-key-0123456789", json=text(canary))
        svc.call("POST", f"/{canary}", json=text(canary))
        svc.call("GET", "/readyz", params={"warn_days": "1", "x": canary})
        svc.call("POST", "/send", content=f'{{"{canary}": ', headers={"X-API-Key": KEY})
        assert svc.stop() == 0
    log = svc.stderr
    assert len([line for line in svc.lines() if line["event"] == "access"]) == 7
    for secret in (canary, token, KEY):
        assert secret not in log
        assert secret not in svc.proc.args  # nor in argv
