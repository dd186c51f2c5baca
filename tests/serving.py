"""A real `wa-auth serve` process for the tests, importable as `serving` (`pythonpath = ["tests"]`).

`start()` runs `python -m wa_auth serve --port 0` in front of a sandbox and returns a `Service`
once the process printed its info line; `serving()` is the same as a context manager that stops
it. Every JSON answer and every line the process prints is validated against
docs/wa-auth.schema.json. Two threads read the process's stdout and stderr as it writes them,
so a test can read the access log while the service runs (`Service.wait_for`), and a service
can serve a whole module (`tests/test_serve.py`'s module-scoped fixture).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from typing import IO, Any

import httpx
import pytest

import wa_auth
from running import env_for, text_intent, valid
from wa_auth.sandbox import Sandbox

#: The API key of the tests' services.
KEY = "test-key-0123456789-abcdefghijklmnop"
#: Every wait on a service is bounded by this many seconds: nothing here may hang longer.
HARD = 60.0

#: Runs the CLI with prometheus_client hidden, as if the `prometheus` extra were not installed.
WITHOUT_PROMETHEUS = (
    "import sys; sys.modules['prometheus_client'] = None; "
    "from wa_auth._cli import main; sys.exit(main(sys.argv[1:]))"
)


def text(body: str = "hello", **fields: Any) -> dict[str, Any]:
    """A text intent as the JSON object `/send` takes (`running.text_intent`)."""
    return text_intent(body, **fields)


class _Reader:
    """Collect what a pipe carries, line by line, in a thread of its own."""

    def __init__(self, pipe: IO[str]) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._thread.start()

    def _run(self, pipe: IO[str]) -> None:
        with pipe:
            for line in pipe:
                with self._lock:
                    self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the pipe stayed open after the process ended"


class Service:
    """A running `wa-auth serve` process: its URL, an HTTP client, and what it printed."""

    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        assert proc.stdout is not None
        assert proc.stderr is not None
        self.proc = proc
        self.info = info
        self.url: str = info["url"]
        self.http = httpx.Client(base_url=self.url, timeout=HARD)
        #: The requests `call` made that were answered: each has its access line.
        self.answered = 0
        self._out = _Reader(proc.stdout)
        self._err = _Reader(proc.stderr)

    def call(
        self, method: str, path: str, *, key: str | None = KEY, **kwargs: Any
    ) -> httpx.Response:
        """One request with the API key (unless *key* is None); a JSON answer is validated."""
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        response = self.http.request(method, path, headers=headers, **kwargs)
        self.answered += 1
        if response.headers.get("content-type", "").startswith("application/json"):
            valid(response.json())
        return response

    @property
    def stdout(self) -> str:
        """Everything the process wrote to stdout so far, its info line aside."""
        return self._out.text()

    @property
    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self._err.text()

    def lines(self) -> list[dict[str, Any]]:
        """Every line on stderr so far (the access log, the shutdown), each validated."""
        return [valid(json.loads(raw)) for raw in self.stderr.splitlines() if raw.strip()]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """Wait until *predicate* accepts the lines on stderr; return them.

        The access line of a request is written once its answer went out, so it may come a
        moment after the answer did.
        """
        deadline = time.monotonic() + HARD
        while not predicate(lines := self.lines()):
            assert time.monotonic() < deadline, f"not on stderr within {HARD} s: {lines[-5:]}"
            time.sleep(0.02)
        return lines

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process, wait for it, and validate every line it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(HARD)
            pytest.fail(f"wa-auth serve did not stop within {timeout} s of {sig!r}")
        finally:
            self.http.close()
        self._out.join(timeout)
        self._err.join(timeout)
        err = self.stderr
        assert "Traceback" not in err, err
        for raw in (self.stdout + err).splitlines():
            if raw.strip():
                valid(json.loads(raw))
        return self.proc.returncode


def serve_env(sandbox: Any | None, token: str | None, **extra: str | None) -> dict[str, str]:
    """The environment of a service in front of *sandbox* with *token* and the API key `KEY`.

    In front of another peer, *extra* names `WA_BASE_URL` and `WA_PHONE_NUMBER_ID`.
    """
    return env_for(sandbox, token, **{"WA_AUTH_API_KEY": KEY, **extra})


def http_args() -> tuple[str, ...]:
    """`--http PATH` when `WA_AUTH_TEST_SERVE_HTTP` names one: the suite over aiohttp's path.

    Without it the services read requests with serve's default (its own lane); an explicit
    `--http` among a test's arguments comes after, and wins.
    """
    path = os.environ.get("WA_AUTH_TEST_SERVE_HTTP")
    return ("--http", path) if path else ()


def start(env: dict[str, str], *args: str, python: tuple[str, ...] = ("-m", "wa_auth")) -> Service:
    """Start `wa-auth serve --port 0 ARGS` and return it once it printed its info line."""
    proc = subprocess.Popen(
        [sys.executable, *python, "serve", "--port", "0", *http_args(), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], HARD)
    if not ready:
        proc.kill()
        proc.communicate(timeout=HARD)
        pytest.fail(f"wa-auth serve printed nothing within {HARD} s")
    line = proc.stdout.readline()
    if not line:
        out, err = proc.communicate(timeout=HARD)
        pytest.fail(f"wa-auth serve exited {proc.returncode}: {out}{err}")
    return Service(proc, valid(json.loads(line)))


@contextlib.contextmanager
def serving(
    sandbox: Any | None, token: str | None, *args: str, **env: str | None
) -> Iterator[Service]:
    """`start` a service in front of *sandbox*; stop it (if still running) on the way out."""
    service = start(serve_env(sandbox, token, **env), *args)
    try:
        yield service
    finally:
        if service.proc.poll() is None:
            service.stop()


# --- webhooks: the app's secrets, a route's receiver, sends that make statuses --------------

VERIFY_TOKEN = "verify-token-canary-5b1e0c7d"
SECRET_A = "route-a-secret-canary-8f2d4c1a"
SECRET_B = "route-b-secret-canary-3e9b7a60"
TO = "+15551234567"


class PostServer:
    """A loopback HTTP server that hands each POST to `answer` and replies with its status.

    The receivers of the tests (a route's endpoint, Meta's callback URL, a workflow's sink)
    differ only in `answer`: the server, its thread and its shutdown are this class's.
    *path* is appended to the URL, which is what a test gives the code under test.
    """

    def __init__(self, path: str = "") -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answer(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def answer(self, path: str, headers: Message, body: bytes) -> int:
        """Return the status for one POST (its path, headers and body)."""
        raise NotImplementedError

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(HARD)


class Receiver(PostServer):
    """A route's endpoint on 127.0.0.1: records each forward, answers `status` (200)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.lock = threading.Lock()
        super().__init__("/hook")

    def answer(self, path: str, headers: Message, body: bytes) -> int:
        with self.lock:
            status = self.status
            if status == 200:
                self.posts.append((dict(headers), body))
        return status

    def forwards(self, secret: str) -> list[dict[str, Any]]:
        """Every forward received, its signature checked with *secret*."""
        with self.lock:
            posts = list(self.posts)
        found = []
        for headers, body in posts:
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Wa-Auth-Signature-256"] == f"sha256={expected}"
            data = json.loads(body)
            assert headers["X-Wa-Auth-Event-Key"] == data["key"]
            found.append(data)
        return found

    def wait_for(self, secret: str, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + HARD
        while len(found := self.forwards(secret)) < count:
            assert time.monotonic() < deadline, f"{len(found)} forwards of {count}"
            time.sleep(0.05)
        return found


def hook_env(sb: Sandbox, **extra: str | None) -> dict[str, str]:
    variables: dict[str, str | None] = {
        "WA_AUTH_WEBHOOK_APP_SECRET": sb.app_secret,
        "WA_AUTH_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "ROUTE_A_SECRET": SECRET_A,
        "ROUTE_B_SECRET": SECRET_B,
    }
    return serve_env(sb, sb.issue_token(), **{**variables, **extra})


def send(sb: Sandbox, number: str, n: int, key: str) -> list[str]:
    with wa_auth.WhatsAppClient(
        base_url=sb.base_url, token=sb.issue_token(), phone_number_id=number
    ) as client:
        return [
            client.send_text(TO, f"hello {i}", idempotency_key=f"{key}-{i}").message_id
            for i in range(n)
        ]
