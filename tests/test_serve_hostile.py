"""`wa-auth serve` under hostile clients: nothing secret in its output, every wait bounded.

Each test starts a real `wa-auth serve` process on 127.0.0.1 in front of the sandbox (see
`tests/test_serve.py`) and talks to it over raw sockets: requests aiohttp cannot parse, with the
API key, tokens, a Vault token and the app secret in them; half-sent headers; more connections
than its open-file limit allows (set in the child by `resource.setrlimit`); a client that does not
read its answer. stderr goes to a file, so a test can read it while the service runs; every line
it holds, and every JSON answer, is validated against docs/wa-auth.schema.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiohttp import http_exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import LONG, Clock, record_reliability
from running import valid
from serving import KEY, http_args, serve_env, text
from wa_auth._cli._serve import _connections as _serve_net
from wa_auth._cli._serve import _log as _serve_log
from wa_auth.sandbox import Sandbox

#: Every hard wait of these tests: nothing here may hang longer.
HARD: float = 30.0
#: The file-descriptor limit of the slowloris test's service, and its slow connections.
FD_LIMIT = 1024
SLOW = 2000 if LONG else 1100


class Logged:
    """A running `wa-auth serve` whose stderr goes to a file that can be read at any time."""

    def __init__(self, proc: subprocess.Popen[str], info: dict, stderr: Path) -> None:
        self.proc = proc
        self.info = info
        self.url = info["url"]
        self.port = int(info["port"])
        self.stderr = stderr
        self.stdout = ""

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=HARD)

    def post(self, path: str, body: object, *, key: str = KEY, timeout: float = HARD):
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=timeout)

    def lines(self) -> list[dict]:
        """Every line on stderr so far, each validated against the schema."""
        raw = self.stderr.read_text(encoding="utf-8")
        return [valid(json.loads(line)) for line in raw.splitlines() if line.strip()]

    def wait_for(self, predicate: Callable[[dict], bool]) -> dict:
        """Return the first stderr line *predicate* accepts, waiting up to `HARD` seconds."""
        deadline = time.monotonic() + HARD
        while True:
            found = [line for line in self.lines() if predicate(line)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no such line on stderr: {self.lines()[-5:]}"
            time.sleep(0.05)

    def stop(self) -> str:
        """SIGTERM, wait, and return everything it printed (stdout and stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=HARD)
        self.stdout += out
        err = self.stderr.read_text(encoding="utf-8")
        assert "Traceback" not in err, err
        for raw in (self.stdout + err).splitlines():
            if raw.strip():
                valid(json.loads(raw))
        assert self.proc.returncode == 0, err
        return self.stdout + err


@contextlib.contextmanager
def logged(
    env: dict[str, str],
    tmp_path: Path,
    *args: str,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Logged]:
    stderr = tmp_path / f"serve-{time.monotonic_ns()}.stderr"
    with stderr.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wa_auth", "serve", "--port", "0", *http_args(), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            preexec_fn=preexec_fn,  # noqa: PLW1509 - only setrlimit, before exec
        )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "wa-auth serve printed nothing within 60 s"
        line = proc.stdout.readline()
        if not line:
            proc.wait(HARD)
            pytest.fail(f"wa-auth serve exited {proc.returncode}: {stderr.read_text()}")
        service = Logged(proc, valid(json.loads(line)), stderr)
        yield service
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(HARD)
        proc.stdout.close()


def _exchange(service: Logged, request: bytes) -> tuple[int, bytes]:
    """Send *request* on a new connection; return the status and the body it answered."""
    data = b""
    with service.connect() as sock, contextlib.suppress(ConnectionResetError):
        sock.sendall(request)
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=5) as sb:
        yield sb


# --- requests aiohttp cannot parse ----------------------------------------------------------------

CANARY = "CANARY-text-5be2d0"


def _hostile(secret: str) -> list[tuple[str, bytes]]:
    """Requests aiohttp's parser refuses, each quoting *secret* and `CANARY` in its bytes."""
    bearer = f"Authorization: Bearer {secret}".encode()
    body = json.dumps(text(f"{CANARY} {secret}")).encode()
    return [
        # The issue's cases: a control character after the key; a body after Connection: close.
        ("key-then-control", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + bearer + b"\x01\r\n\r\n"),
        (
            "body-after-close",
            b"POST /send HTTP/1.0\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n" + bearer + b"\r\n\r\n" + body,
        ),
        ("method", secret.encode() + b" /send HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("target", b"GET /" + secret.encode() + b"\xff HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "no-colon",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + bearer + b"\r\nX " + body + b"\r\n\r\n",
        ),
        ("too-long", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + bearer + b"x" * 9000 + b"\r\n\r\n"),
        (
            "bad-chunk",
            b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n"
            + bearer
            + b"\r\n\r\n"
            + secret.encode()
            + b"\r\n"
            + body
            + b"\r\n0\r\n\r\n",
        ),
        (
            "two-lengths",
            b"POST /send HTTP/1.1\r\nHost: x\r\n" + bearer + b"\r\nContent-Length: 5\r\n"
            b"Content-Length: 6\r\n\r\n" + body,
        ),
        ("tls", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + secret.encode()),
    ]


def test_unparsable_requests_are_json_400s_that_quote_nothing(sandbox, tmp_path):
    """A request aiohttp cannot parse: a JSON 400 naming the fault, its bytes neither echoed nor logged."""
    env = serve_env(sandbox, sandbox.issue_token())
    cases = _hostile(KEY)
    with logged(env, tmp_path) as svc:
        for name, request in cases:
            status, body = _exchange(svc, request)
            assert status == 400, name
            answer = valid(json.loads(body))
            assert (answer["category"], answer["error"]["rule"]) == (
                "invalid_request",
                "serve/http",
            )
            assert KEY.encode() not in body, name
            assert CANARY.encode() not in body, name
        assert svc.post("/send", text()).json()["state"] == "delivered"
        log = svc.stop()
    assert KEY not in log
    assert CANARY not in log
    access = [line for line in svc.lines() if line["event"] == "access"]
    assert [a["route"] for a in access].count("malformed") == len(cases)
    assert {a["category"] for a in access if a["route"] == "malformed"} == {"invalid_request"}
    assert [line for line in svc.lines() if line["event"] == "log"] == []
    assert len(sandbox.messages()) == 1


def _request(path: str, body: bytes, *extra: bytes, method: bytes = b"POST") -> bytes:
    head = [
        method + b" " + path.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Authorization: Bearer " + KEY.encode(),
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
        b"Connection: close",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_expect_100_continue_is_met_and_other_expectations_are_a_json_417(sandbox, tmp_path):
    """The low-level server answers `Expect` as aiohttp's router did: 100 Continue, else 417."""
    env = serve_env(sandbox, sandbox.issue_token())
    body = json.dumps(text()).encode()
    with logged(env, tmp_path) as svc:
        with svc.connect() as sock:
            sock.sendall(
                _request("/send", b"", b"Expect: 100-continue").replace(
                    b"Content-Length: 0", b"Content-Length: " + str(len(body)).encode()
                )
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, answer = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert json.loads(answer)["state"] == "delivered"
        status, answer = _exchange(svc, _request("/send", body, b"Expect: 200-ok"))
        assert status == 417
        assert valid(json.loads(answer))["error"]["rule"] == "serve/expect"
        status, answer = _exchange(svc, _request("/send", body, b"Expect: "))  # asks nothing
        assert (status, json.loads(answer)["state"]) == (200, "delivered")
        # The routes API's one pattern, and paths beside it, as the router matched them.
        status, answer = _exchange(svc, _request("/webhook/routes/a/b", b"", method=b"DELETE"))
        assert (status, json.loads(answer)["error"]["rule"]) == (404, "serve/route")
        status, answer = _exchange(svc, _request("/webhook/routes/abc", b"", method=b"DELETE"))
        assert (status, json.loads(answer)["error"]["rule"]) == (404, "serve/no_webhooks")
        status, answer = _exchange(svc, _request("/send", b"", method=b"HEAD"))
        assert status == 405
        svc.stop()
    assert len(sandbox.messages()) == 2


@pytest.mark.parametrize(
    "encoding",
    [b"Content-Encoding: gzip", b"Content-Encoding: deflate"],
    ids=["gzip", "deflate"],
)
def test_an_undecodable_body_is_a_400_not_an_internal_error(sandbox, tmp_path, encoding):
    """A body its Content-Encoding cannot decode: a JSON 400 quoting nothing, not a 500 `internal`."""
    env = serve_env(sandbox, sandbox.issue_token())
    with logged(env, tmp_path) as svc:
        request = (
            b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\n" + encoding + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(CANARY) + CANARY.encode()
        )
        status, body = _exchange(svc, request)
        answer = valid(json.loads(body))
        assert (status, answer["category"], answer["error"]["rule"]) == (
            400,
            "invalid_request",
            "serve/json",
        )
        assert CANARY.encode() not in body
        log = svc.stop()
    assert CANARY not in log
    assert [line["category"] for line in svc.lines() if line["event"] == "access"] == [
        "invalid_request"
    ]
    assert [
        line for line in svc.lines() if line["event"] == "log"
    ] == []  # no "Unhandled exception"
    assert sandbox.messages() == ()


# --- the canary: every line serve prints ----------------------------------------------------------

VAULT_CANARY = "hvs.CANARYvaultTOKEN0123456789abcdef"
BAD_TOKEN_CANARY = "EAAGCANARYbadTOKENx7Q2mZ9kLp4RtV8wYb3NcD6fHj1"


class FakeVault:
    """A KV v2 Vault on 127.0.0.1 that serves *token* to `VAULT_CANARY` (a Bearer), or denies it."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.deny = False
        vault = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                authorised = (
                    self.headers.get("Authorization") == f"Bearer {VAULT_CANARY}" and not vault.deny
                )
                if not authorised:
                    status, body = 403, {"errors": ["permission denied"]}
                elif self.path.startswith("/v1/secret/data/"):
                    data = {"access_token": vault.token}
                    status, body = 200, {"data": {"data": data, "metadata": {"version": 3}}}
                else:
                    status, body = 200, {"data": {"policies": ["wa"]}}
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(HARD)


def _drive(svc: Logged, sandbox: Sandbox, secrets: tuple[str, ...]) -> None:
    """Every path a request can take, with the secrets in its headers, body, path and query."""
    for secret in secrets:
        for _, request in _hostile(secret):
            _exchange(svc, request)
        svc.post("/send", text(secret), key=secret)  # a wrong key that is another secret
        httpx.get(svc.url + f"/{secret}", params={"q": secret}, timeout=HARD)
        svc.post("/classify", {"error": {"code": 190, "message": f"bad token {secret}"}})
        svc.post("/send", [text(f"{CANARY} {secret}"), {"to": secret, "type": "text"}])
        half = svc.connect()  # a half-sent request with the secret: closed at the timeout
        half.sendall(b"POST /send HTTP/1.1\r\nAuthorization: Bearer " + secret.encode())
        assert half.recv(1024) == b""
        half.close()
    svc.post("/check", {})
    svc.post("/send", text(CANARY, idempotency_key="order-canary"))  # a key is no secret
    httpx.get(svc.url + "/readyz", headers={"X-API-Key": KEY}, timeout=HARD)
    sandbox.set_token_state(secrets[0], "revoked_password_changed")
    svc.post("/send", text(CANARY))
    svc.post("/check", {})
    httpx.get(svc.url + "/readyz", headers={"X-API-Key": KEY}, timeout=HARD)


def test_no_line_serve_prints_holds_a_secret(sandbox, tmp_path):
    """Tokens, the API key, the app secret: in no stdout or stderr line, whatever the requests."""
    token = sandbox.issue_token()
    env = serve_env(sandbox, token, WA_APP_TOKEN=sandbox.app_token)
    args = ("--header-timeout", "1", "--outbox", str(tmp_path / "o.db"), "--verbose")
    with logged(env, tmp_path, *args) as svc:
        _drive(svc, sandbox, (token, KEY, sandbox.app_secret, BAD_TOKEN_CANARY))
        log = svc.stop()
    assert len([line for line in svc.lines() if line["event"] == "access"]) > 50
    for secret in (token, KEY, sandbox.app_secret, sandbox.app_token, BAD_TOKEN_CANARY, CANARY):
        assert secret not in log


def test_no_line_serve_prints_holds_the_vault_token(sandbox, tmp_path):
    """With the token in Vault: the Vault token and the token it holds reach no line, nor a denial."""
    token = sandbox.issue_token()
    vault = FakeVault(token)
    env = serve_env(
        sandbox,
        None,
        WA_VAULT_ADDR=vault.url,
        WA_VAULT_PATH="wa/token",
        WA_VAULT_TOKEN=VAULT_CANARY,
    )
    try:
        with logged(env, tmp_path, "--header-timeout", "1", "--verbose") as svc:
            assert svc.post("/send", text()).json()["state"] == "delivered"
            _drive(svc, sandbox, (token, VAULT_CANARY))
            vault.deny = True
            sandbox.set_token_state(token, "expired")
            denied = svc.post("/send", text(CANARY)).json()
            assert denied["state"] == "failed"
            svc.post("/check", {})
            log = svc.stop()
    finally:
        vault.close()
    for secret in (token, VAULT_CANARY, KEY, CANARY):
        assert secret not in log


# --- every wait bounded ---------------------------------------------------------------------------


def _closed_by_peer(sock: socket.socket) -> bool:
    """Wait up to `HARD` seconds for the service to close *sock*; False if it did not."""
    sock.settimeout(HARD)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_half_sent_request_is_closed_at_the_header_timeout(sandbox, tmp_path):
    """Half-sent headers, an idle keep-alive connection, an unread body: closed after --header-timeout."""
    env = serve_env(sandbox, sandbox.issue_token())
    with logged(env, tmp_path, "--header-timeout", "1") as svc:
        half = svc.connect()
        half.sendall(b"GET /hea")
        idle = svc.connect()
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        unread = svc.connect()  # a body that never comes, after a 401 that did not need it
        unread.sendall(b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n{")
        assert unread.recv(65536).startswith(b"HTTP/1.1 401")
        for sock in (half, idle, unread):
            assert _closed_by_peer(sock)
            sock.close()
        assert svc.post("/send", text()).json()["state"] == "delivered"
        svc.stop()


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Let this process open `SLOW` sockets and more, whatever the machine's soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = SLOW + 512
    if soft >= need:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the open-file limit's hard cap ({hard}) is below {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _gone(socks: list[socket.socket]) -> int:
    """Return how many of *socks* the service has closed (readable: EOF or reset)."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return len(poller.poll(0))


@pytest.mark.reliability
def test_a_slowloris_does_not_lock_out_an_authorised_request(sandbox, tmp_path, many_fds):
    """1,100 connections that sent `GET /hea` to a service limited to 1,024 files: /send answers in 1 s."""
    env = serve_env(sandbox, sandbox.issue_token())
    with logged(env, tmp_path, preexec_fn=_limit_fds) as svc:
        cap = svc.info["max_connections"]
        assert cap < FD_LIMIT
        assert svc.post("/send", text()).json()["state"] == "delivered"  # the pool is warm
        slow: list[socket.socket] = []
        answered: list[float] = []
        try:
            for _ in range(SLOW):
                sock = svc.connect()
                sock.sendall(b"GET /hea")
                slow.append(sock)
            for _ in range(3):
                started = time.monotonic()
                answer = svc.post("/send", text(), timeout=10)
                seconds = time.monotonic() - started
                answered.append(round(seconds, 3))
                assert answer.json()["state"] == "delivered"
                assert seconds < 1.0, f"/send took {seconds:.2f} s under the slowloris"
            held = SLOW - _gone(slow)
            assert 0 < held <= cap
            note = svc.wait_for(lambda line: line["event"] == "connections")
            record_reliability(
                "hostile.slowloris",
                {
                    "name": f"{SLOW} half-sent requests, open-file limit {FD_LIMIT}",
                    "connection_cap": cap,
                    "held_open": held,
                    "evicted": note["evicted"],
                    "authorised_send_seconds": answered,
                },
            )
            assert (note["cap"], note["refused"]) == (cap, 0)
            assert note["evicted"] >= 1
            svc.stop()  # SIGTERM under the slowloris: a graceful stop, exit 0
        finally:
            for sock in slow:
                sock.close()
    # Never out of descriptors: no asyncio "accept() out of system resource" line.
    assert [line for line in svc.lines() if line["event"] == "log"] == []
    assert len(sandbox.messages()) == 4


def test_at_the_cap_the_longest_waiting_connection_makes_room(sandbox, tmp_path):
    """--max-connections 3 with three idle connections: a new one closes the oldest, and is served."""
    env = serve_env(sandbox, sandbox.issue_token())
    with logged(env, tmp_path, "--max-connections", "3", "--header-timeout", "60") as svc:
        first, second, third = svc.connect(), svc.connect(), svc.connect()
        # Answered one after the other: each waits for its next request from then on.
        for sock in (first, second, third):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert svc.post("/send", text()).json()["state"] == "delivered"
        assert _closed_by_peer(first)
        assert _gone([second, third]) == 0
        for sock in (first, second, third):
            sock.close()
        svc.stop()


def test_a_burst_past_the_cap_is_answered_never_cut(sandbox, tmp_path):
    """--max-connections 4, 24 clients connecting at once and sending at once: each gets an answer.

    Before, a connection accepted at the cap closed the one that had waited longest for its
    request, however young: a burst's own connections were cut before they could send.
    """
    env = serve_env(sandbox, sandbox.issue_token())
    with logged(env, tmp_path, "--max-connections", "4", "--header-timeout", "60") as svc:
        socks = [svc.connect() for _ in range(24)]
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = []
        for sock in socks:
            sock.settimeout(HARD)
            data = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    data += chunk
            answers.append(data.split(b"\r\n", 1)[0])
            sock.close()
        assert all(
            line in (b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable") for line in answers
        ), answers
        svc.stop()


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(sandbox, tmp_path):
    """--max-connections 2, both busy with a send: a third connection is a JSON 503, then served."""
    sandbox.set_faults(latency=2.0)
    env = serve_env(sandbox, sandbox.issue_token())
    with logged(env, tmp_path, "--max-connections", "2") as svc:
        answers: list[httpx.Response] = []
        callers = [
            threading.Thread(target=lambda: answers.append(svc.post("/send", text())))
            for _ in range(2)
        ]
        for caller in callers:
            caller.start()
        deadline = time.monotonic() + HARD
        while len(sandbox.requests()) < 2:
            assert time.monotonic() < deadline, "the two sends did not start"
            time.sleep(0.02)
        status, body = _exchange(svc, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503
        assert valid(json.loads(body))["error"]["rule"] == "serve/connections"
        for caller in callers:
            caller.join(HARD)
        assert [a.json()["state"] for a in answers] == ["delivered", "delivered"]
        sandbox.set_faults()
        assert svc.post("/send", text()).json()["state"] == "delivered"
        svc.stop()
    note = [line for line in svc.lines() if line["event"] == "connections"]
    assert note[0]["refused"] == 1


def test_an_answer_the_client_does_not_read_is_aborted(sandbox, tmp_path):
    """A client that stops reading a large answer holds its connection only --request-timeout."""
    env = serve_env(sandbox, sandbox.issue_token())
    items = json.dumps([{"to": "x"}] * 30_000).encode()
    with logged(env, tmp_path, "--request-timeout", "2") as svc:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(HARD)
        sock.connect(("127.0.0.1", svc.port))
        sock.sendall(
            b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(items) + items
        )
        note = svc.wait_for(lambda line: line["event"] == "connections")
        assert note["aborted"] == 1
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 20):
                data += chunk
        sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(
                h.split(b":")[1]
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length")
            )
        )
        assert len(body) < length  # cut off: the service did not wait for the reader
        assert svc.post("/send", text()).json()["state"] == "delivered"
        svc.stop()


def test_an_open_file_limit_too_low_for_any_connection_refuses_to_start(sandbox, tmp_path):
    """With 150 open files, the client's pool leaves no room: exit 2, saying what to raise."""

    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (150, 150))

    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", "serve", "--port", "0"],
        env=serve_env(sandbox, sandbox.issue_token()),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=low,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = [valid(json.loads(raw)) for raw in proc.stdout.splitlines() if raw.strip()]
    assert "open-file limit (150)" in line["error"]["message"]
    assert "ulimit -n" in line["error"]["message"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--header-timeout", "0"), ("--max-connections", "0"), ("--header-timeout", "nan")],
    ids=["header-timeout-zero", "max-connections-zero", "header-timeout-nan"],
)
def test_the_new_limits_refuse_bad_values(sandbox, flag, value):
    """A zero or non-number header timeout or connection cap is a usage error (exit 2)."""
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", "serve", "--port", "0", flag, value],
        env=serve_env(sandbox, "t"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert flag in output
    assert "unrecognized" not in output  # a flag serve knows, refusing the value
    assert "Traceback" not in proc.stderr


# --- the pieces, without a process -----------------------------------------------------------------


class _Writes(io.StringIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_access_lines_of_one_loop_turn_are_written_together_on_the_next():
    """`Lines`: one write per turn of the event loop, every line whole; `flush` writes at once."""
    stream = _Writes()

    async def main() -> list[str]:
        lines = _serve_log.Lines(stream)
        seen = []
        for n in range(3):
            lines.add({"event": "access", "n": n})
        seen.append(stream.getvalue())  # nothing yet: the turn is not over
        await asyncio.sleep(0)
        seen.append(stream.getvalue())
        lines.add({"event": "access", "n": 3})
        lines.flush()  # before a lifecycle line: at once
        seen.append(stream.getvalue())
        await asyncio.sleep(0)  # the turn's own flush finds nothing left
        return seen

    before, after_turn, after_flush = asyncio.run(main())
    assert before == ""
    assert [json.loads(line)["n"] for line in after_turn.splitlines()] == [0, 1, 2]
    assert [json.loads(line)["n"] for line in after_flush.splitlines()] == [0, 1, 2, 3]
    assert stream.writes == 2


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(min_size=8, max_size=40).filter(lambda t: t.strip() == t and "\n" not in t),
    template=st.sampled_from(
        [
            "Error handling request from %s",
            "Unhandled exception",
            "socket.accept() out of system resource\nsocket: %r",
            "Task exception was never retrieved\nfuture: %r",
        ]
    ),
    where=st.sampled_from(["args", "exception", "second-line"]),
)
def test_a_log_line_holds_the_template_never_the_data(secret, template, where):
    """A routed record keeps its template's first line and its exception's type, nothing else."""
    secret = "SECRET:" + secret
    args: tuple[object, ...] = ()
    exc: BaseException | None = None
    msg = template
    if where == "args":
        args = (secret,) * template.count("%")
    elif where == "exception":
        exc = ValueError(f"400, message: {secret!r}")
    else:
        msg = template.split("\n")[0] + "\n" + secret
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, msg, args or None, None
    )
    if exc is not None:
        record.exc_info = (type(exc), exc, None)
    line = valid(_serve_log.log_line(record, 1.5))
    assert secret not in json.dumps(line)
    assert line["message"] == template.split("\n")[0]
    assert line["error"] == (None if exc is None else "ValueError")


def test_routed_loggers_write_json_lines_and_are_restored(capsys):
    """Inside `routed`, aiohttp's and asyncio's records are JSON lines; outside, as before."""
    logger = logging.getLogger("aiohttp.server")
    before = (logger.handlers[:], logger.propagate)
    stream = io.StringIO()
    with _serve_log.routed(stream):
        try:
            raise ValueError(KEY)
        except ValueError:
            logger.exception("Error handling request from %s", KEY)
        logging.getLogger("asyncio").error("Task was destroyed\ntask: %r", KEY)
        logging.getLogger("aiohttp.access").info("not written: below WARNING")
    assert (logger.handlers, logger.propagate) == before
    lines = [valid(json.loads(raw)) for raw in stream.getvalue().splitlines()]
    assert [(x["logger"], x["message"], x["error"]) for x in lines] == [
        ("aiohttp.server", "Error handling request from %s", "ValueError"),
        ("asyncio", "Task was destroyed", None),
    ]
    assert KEY not in stream.getvalue()
    assert KEY not in capsys.readouterr().err


def test_a_failing_stream_loses_the_line_not_the_secret(capsys):
    """A stream that cannot be written drops the record; logging's own report is never printed."""

    class Broken(io.StringIO):
        def write(self, _text: str) -> int:
            raise OSError("closed")

    handler = _serve_log.JsonLineHandler(Broken())
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "x %s", (KEY,), None)
    handler.handle(record)
    assert capsys.readouterr().err == ""


class _Conn:
    """A stand-in connection: `Connections` only asks it to abort."""

    def __init__(self) -> None:
        self.aborts = 0

    def aborted(self) -> bool:
        self.aborts += 1
        return True


def test_at_the_cap_the_oldest_waiting_connection_is_evicted_once():
    """Full: the longest-waiting connection is closed, once, and the listener waits for it."""
    log = io.StringIO()
    clock = Clock(100.0)
    conns = _serve_net.Connections(3, write_timeout=1, log=log, monotonic=clock)
    a, b, c = _Conn(), _Conn(), _Conn()
    for conn in (a, b, c):
        assert conns.has_room()
        conns.opened(conn)
    conns.begin(a)
    conns.written(a)  # answered: now the one that waited least
    assert not conns.has_room()
    clock.t += _serve_net.EVICT_AFTER
    assert conns.make_room() == "wait"
    assert (a.aborts, b.aborts, c.aborts) == (0, 1, 0)
    assert conns.make_room() == "wait"  # b is still closing: nobody else is closed for it
    assert b.aborts == 1
    conns.closed(b)
    assert conns.has_room()
    (note,) = [valid(json.loads(raw)) for raw in log.getvalue().splitlines()]
    assert (note["event"], note["open"], note["cap"], note["evicted"]) == ("connections", 2, 3, 1)


def test_at_the_cap_a_connection_that_just_opened_is_not_evicted():
    """A burst that connects at once is no slowloris: the listener rests, nobody is closed.

    n8n's HTTP Request node posts 1,000 items on 1,000 connections opened at once; closing the
    youngest ones for the next failed them ("socket hang up") before they could send.
    """
    clock = Clock(100.0)
    conns = _serve_net.Connections(2, write_timeout=1, log=io.StringIO(), monotonic=clock)
    a, b = _Conn(), _Conn()
    conns.opened(a)
    conns.opened(b)
    clock.t += _serve_net.EVICT_AFTER / 2
    assert conns.make_room() == "rest"
    assert (a.aborts, b.aborts, conns.evicted) == (0, 0, 0)
    clock.t += _serve_net.EVICT_AFTER / 2
    assert conns.make_room() == "wait"
    assert (a.aborts, b.aborts, conns.evicted) == (1, 0, 1)


def test_at_the_cap_with_every_connection_busy_the_new_one_is_refused():
    """Full of busy connections: nothing is closed, and the new connection is refused."""
    conns = _serve_net.Connections(2, write_timeout=1, log=io.StringIO())
    a, b = _Conn(), _Conn()
    for conn in (a, b):
        conns.opened(conn)
        conns.begin(conn)
    assert conns.make_room() == "refuse"
    assert (a.aborts, b.aborts, conns.refused) == (0, 0, 1)


@pytest.mark.parametrize(
    ("requested", "limit", "pool", "cap"),
    [
        (1024, None, 100, 1024),
        (1024, 1024, 100, 860),
        (64, 1024, 100, 64),
        (1024, 20000, 500, 1024),
    ],
    ids=["no-limit", "ulimit-1024", "asked-fewer", "high-limit"],
)
def test_the_connection_cap_stays_below_the_open_file_limit(requested, limit, pool, cap):
    """The cap leaves the client's pool and a reserve of descriptors below the limit."""
    assert _serve_net.connection_cap(requested, limit, pool) == cap


def test_a_limit_without_room_for_connections_is_refused():
    """A limit that leaves fewer than MIN_CONNECTIONS: a ValueError naming ulimit -n."""
    with pytest.raises(ValueError, match=r"open-file limit \(170\) leaves room for 6 .*ulimit -n"):
        _serve_net.connection_cap(1024, 170, 100)


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (http_exceptions.LineTooLong(b"x" * 10, 8190), "too long"),
        (http_exceptions.BadHttpMethod("EAAGxyz"), "not HTTP/1.x"),
        (http_exceptions.InvalidHeader(b"Authorization: Bearer x\x01"), "header is malformed"),
        (http_exceptions.TransferEncodingError("chunk"), "framing"),
        (http_exceptions.BadHttpMessage("Data after `Connection: close`"), "not valid HTTP/1.1"),
        (None, "not valid HTTP/1.1"),
    ],
    ids=["line-too-long", "method", "header", "chunks", "data-after-close", "none"],
)
def test_a_parse_fault_is_named_by_its_type_only(exc, words):
    """The answer names the kind of fault; the exception's text (the bytes) is never used."""
    said = _serve_net.fault(exc)
    assert words in said
    assert "EAAG" not in said
    assert "Bearer" not in said
