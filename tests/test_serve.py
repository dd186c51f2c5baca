"""`wa-auth serve`: a real process on 127.0.0.1 in front of the sandbox, over real sockets.

Every JSON body it answers, its stdout info line and every stderr line (access log, shutdown)
are validated against docs/wa-auth.schema.json. One service with an outbox serves the whole
module (the `service` fixture): each route, each wrong key and each malformed body is a test of
its own against it, and reads only what the sandbox and the access log got during that test
(`Traffic`). A test that needs another configuration, a token of its own or a signal starts
its own service.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from running import TO, valid
from serving import KEY, WITHOUT_PROMETHEUS, Service, serve_env, serving, start, text
from wa_auth._cli._serve import _settings as _serve_app
from wa_auth.outbox import SqliteOutbox
from wa_auth.sandbox import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=3) as sb:
        yield sb


@pytest.fixture
def token(sandbox: Sandbox) -> str:
    return sandbox.issue_token()


# --- the module's service ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[Sandbox]:
    """The sandbox behind the module's service; a test that changes its state restores it."""
    with Sandbox(seed=3) as sb:
        yield sb


@pytest.fixture(scope="module")
def module_token(module_sandbox: Sandbox) -> str:
    """The token of the module's service."""
    return module_sandbox.issue_token()


@pytest.fixture(scope="module")
def service(
    module_sandbox: Sandbox, module_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One `wa-auth serve` with an outbox, a 2 KiB body limit and a consumer, for the module.

    On the way out it must stop on SIGTERM with exit 0, its last lines `stopping`, `stopped`.
    """
    outbox = tmp_path_factory.mktemp("serve") / "o.db"
    args = ("--outbox", str(outbox), "--max-body", "2048", "--consumer", "orders")
    with serving(module_sandbox, module_token, *args) as svc:
        yield svc
        assert svc.stop() == 0
    assert [line["event"] for line in svc.lines()][-2:] == ["stopping", "stopped"]


def _accesses(lines: list[dict[str, Any]]) -> int:
    return sum(line["event"] == "access" for line in lines)


class Traffic:
    """What the module's sandbox and service saw from the start of one test on."""

    def __init__(self, sandbox: Sandbox, service: Service) -> None:
        self.sandbox = sandbox
        self.service = service
        self._messages = len(sandbox.messages())
        self._requests = len(sandbox.requests())
        # The access lines of the earlier tests' requests, once every one has come.
        self._lines = len(service.wait_for(lambda lines: _accesses(lines) >= service.answered))

    def messages(self) -> tuple[Any, ...]:
        """The messages the sandbox accepted during this test."""
        return self.sandbox.messages()[self._messages :]

    def requests(self) -> tuple[Any, ...]:
        """The Graph requests the sandbox received during this test."""
        return self.sandbox.requests()[self._requests :]

    def access(self, count: int) -> list[dict[str, Any]]:
        """The access lines of this test's requests, once there are *count* of them."""

        def mine(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [line for line in lines[self._lines :] if line["event"] == "access"]

        return mine(self.service.wait_for(lambda lines: len(mine(lines)) >= count))


@pytest.fixture
def traffic(module_sandbox: Sandbox, service: Service) -> Traffic:
    """What the module's sandbox and access log get during this test."""
    return Traffic(module_sandbox, service)


# --- the routes ----------------------------------------------------------------------------------


def test_the_service_listens_on_loopback_with_metrics(service):
    """Unless told otherwise it binds 127.0.0.1, and /metrics is on (prometheus_client)."""
    assert service.info["host"] == "127.0.0.1"
    assert service.info["metrics"] is True


def test_send_one_intent_is_delivered(service, traffic, module_sandbox):
    """POST /send with one intent: HTTP 200, delivered, through the service's number."""
    one = service.call("POST", "/send", json=text(idempotency_key="route-one"))
    assert one.status_code == 200
    assert one.json()["state"] == "delivered"
    assert one.json()["phone_number_id"] == module_sandbox.phone_number_id
    assert [m.idempotency_key for m in traffic.messages()] == ["route-one"]
    (access,) = traffic.access(1)
    assert (access["route"], access["status"], access["intents"]) == ("/send", 200, 1)


def test_send_a_batch_answers_each_line_in_order(service, traffic):
    """POST /send with a list: HTTP 200, one result per line; a bad line fails alone (exit 9)."""
    batch = service.call("POST", "/send", json=[text(), {"to": TO, "type": "nope"}, text()])
    assert batch.status_code == 200
    body = batch.json()
    assert [r["line"] for r in body["results"]] == [1, 2, 3]
    assert [r["state"] for r in body["results"]] == ["delivered", "failed", "delivered"]
    assert body["results"][1]["category"] == "invalid_request"
    assert (body["exit_code"], body["summary"]["total"]) == (9, 3)
    assert len(traffic.messages()) == 2
    (access,) = traffic.access(1)
    assert (access["route"], access["intents"]) == ("/send", 3)


def test_check_answers_the_tokens_health(service):
    """POST /check with warn_days: HTTP 200, the token valid, the window echoed."""
    check = service.call("POST", "/check", json={"warn_days": 14})
    assert (check.status_code, check.json()["valid"], check.json()["warn_days"]) == (
        200,
        True,
        14,
    )


def test_readyz_is_ok_for_a_valid_token(service):
    """GET /readyz: ok while the token can send."""
    ready = service.call("GET", "/readyz")
    assert (ready.status_code, ready.json()["ok"]) == (200, True)


def test_classify_reads_a_graph_error(service, traffic):
    """POST /classify with Meta's error body: its source and category, and no request to Meta."""
    graph = {"error": {"code": 190, "error_subcode": 460, "message": "changed password"}}
    classified = service.call("POST", "/classify", json=graph).json()
    assert (classified["source"], classified["category"]) == ("graph", "token_revoked")
    assert traffic.requests() == ()


def test_outbox_lists_the_rows_of_a_state(service, traffic):
    """GET /outbox?state=delivered lists delivered rows only; an unknown state is a 400."""
    assert (
        service.call("POST", "/send", json=text(idempotency_key="route-listed")).status_code == 200
    )
    listing = service.call("GET", "/outbox", params={"state": "delivered"}).json()
    assert "route-listed" in {r["idempotency_key"] for r in listing["rows"]}
    assert {r["state"] for r in listing["rows"]} == {"delivered"}
    assert listing["stats"]["total"] >= len(listing["rows"])
    assert service.call("GET", "/outbox", params={"state": "nope"}).status_code == 400


def test_a_capped_intent_is_queued_and_replay_leaves_it_waiting(service, traffic, module_sandbox):
    """At the spam cap (131048) an intent is queued, HTTP 200 and exit 14; replay waits for it.

    A processed intent is HTTP 200 either way. The cap holds its number back for an hour, so
    this test sends from the sandbox's second number, which no other test of the module uses.
    """
    capped_number = module_sandbox.phone_number_ids[1]
    module_sandbox.fail_next(131048, phone_number_id=capped_number)
    capped = service.call("POST", "/send", json=text(phone_number_id=capped_number))
    assert capped.status_code == 200
    body = capped.json()
    assert (body["state"], body["category"], body["exit_code"]) == ("queued", "rate_limited", 14)
    replay = service.call("POST", "/outbox/replay", json={"limit": 10}).json()
    assert replay["summary"]["total"] == 0  # the queued row waits for its not_before
    assert traffic.messages() == ()
    assert [r.endpoint for r in traffic.requests()] == ["send_message"]


def test_healthz_needs_no_key(service):
    """GET /healthz answers without the API key: the process is alive."""
    health = service.call("GET", "/healthz", key=None).json()
    assert health["status"] == "alive"


def test_an_unknown_path_is_404(service):
    """A path that is no route: 404."""
    assert service.call("GET", "/nowhere").status_code == 404


def test_a_wrong_method_is_405_with_allow(service):
    """GET on a POST route: 405, with the Allow header naming POST."""
    wrong_method = service.call("GET", "/send")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")


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


def _ok_calls(service: Service) -> float:
    """The `wa_auth_calls_total` of category ok, read with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    metrics = service.call("GET", "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    calls = families.get("wa_auth_calls")
    samples = [] if calls is None else calls.samples
    ok = [s for s in samples if s.name.endswith("_total") and s.labels["category"] == "ok"]
    assert len(ok) <= 1, ok  # one token, one number, one consumer
    for sample in ok:
        assert sample.labels["consumer"] == "orders"
    return sum(s.value for s in ok)


def test_metrics_parse_with_prometheus_clients_parser(service):
    """/metrics is Prometheus text that prometheus_client's own parser reads."""
    before = _ok_calls(service)
    service.call("POST", "/send", json=[text(), text()])
    assert _ok_calls(service) == before + 2.0
    assert service.call("GET", "/metrics", key=None).status_code == 401


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
def test_without_the_right_key_nothing_is_sent(service, traffic, headers):
    """A missing or wrong API key is a 401 JSON error, and no request reaches Meta."""
    for path in ("/send", "/check", "/classify", "/outbox/replay"):
        r = service.call("POST", path, key=None, headers=dict(headers), json=text())
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert (r.json()["category"], r.json()["error"]["rule"]) == ("usage", "serve/api_key")
    for path in ("/readyz", "/metrics", "/outbox"):
        assert service.call("GET", path, key=None, headers=dict(headers)).status_code == 401
    assert service.call("GET", "/healthz", key=None, headers=dict(headers)).status_code == 200
    ok = service.call("POST", "/send", key=None, headers={"X-API-Key": KEY}, json=text())
    assert ok.json()["state"] == "delivered"
    assert len(traffic.messages()) == 1
    assert [r.endpoint for r in traffic.requests()] == ["send_message"]


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


def test_serving_settles_the_heap_and_then_restores_the_collector():
    """While serving, start-up's objects are frozen and young collections rarer; after, as before."""
    import gc

    from wa_auth._cli._serve import _process

    before = gc.get_threshold()
    with _process._settled_heap():
        assert gc.get_threshold() == (_process.GC_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


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
def test_malformed_bodies_are_4xx_json(service, traffic, body, content_type, status, rule):
    """Malformed JSON, a wrong content type or an oversized body: a 4xx JSON error, nothing sent."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = service.call("POST", "/send", content=body, headers=headers)
    assert r.status_code == status
    assert r.json()["error"]["rule"] == rule
    assert r.json()["error"]["http_status"] == status
    assert traffic.requests() == ()


def test_an_oversized_chunked_body_is_413(service, traffic):
    """A chunked body without Content-Length is cut at the limit too (413, connection closed)."""
    chunk = b"[" + b'"x",' * 1000
    request = (
        b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n"
    )
    status, body = _raw(service.url, request)
    assert (status, body["error"]["rule"]) == (413, "serve/size")
    assert traffic.requests() == ()


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


def test_the_access_log_holds_no_token_and_no_message_text(service, traffic, module_token):
    """Canaries in the text, headers, path, query and a wrong key never reach the log."""
    canary = "CANARY-7f3a91c2"
    service.call("POST", "/send", json=text(f"secret text {canary}", idempotency_key=canary))
    service.call("POST", "/send", json=[text(f"batch {canary}"), {"to": canary}])
    service.call("POST", "/classify", json={"error": {"message": canary, "code": 190}})
    service.call("POST", "/send", key=f"{canary}-wrong-key-0123456789", json=text(canary))
    service.call("POST", f"/{canary}", json=text(canary))
    service.call("GET", "/readyz", params={"warn_days": "1", "x": canary})
    service.call("POST", "/send", content=f'{{"{canary}": ', headers={"X-API-Key": KEY})
    assert len(traffic.access(7)) == 7
    log = service.stderr
    for secret in (canary, module_token, KEY):
        assert secret not in log
        assert secret not in service.proc.args  # nor in argv


@pytest.mark.parametrize("transport", ["aiohttp", "raw"])
def test_either_client_transport_delivers(module_sandbox, module_token, transport):
    """`--transport aiohttp|raw`: the service's sends go out over either and are delivered."""
    before = len(module_sandbox.messages())
    with serving(module_sandbox, module_token, "--transport", transport) as svc:
        batch = svc.call(
            "POST", "/send", json=[text(idempotency_key=f"{transport}-{n}") for n in range(3)]
        )
        assert svc.stop() == 0
    assert [r["state"] for r in batch.json()["results"]] == ["delivered"] * 3
    keys = [m.idempotency_key for m in module_sandbox.messages()[before:]]
    assert sorted(keys) == [f"{transport}-{n}" for n in range(3)]
