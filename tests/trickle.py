"""A trickling peer: a loopback HTTP server that answers, then sends its body one byte at a time.

`TricklePeer` listens on 127.0.0.1. To every request it sends a status line and headers that
promise a body (`Content-Length`), then one body byte every *interval* seconds, so no single
read ever waits long enough for a read timeout while the answer never completes. It stands in
for a stalled proxy in front of the Graph API or Vault. `stop()` closes every connection, which
also ends a client still reading, so a test that failed to bound its wait still finishes.

Importable as `trickle` (`pythonpath = ["tests"]`); `python tests/trickle.py` measures how long
each client and the CLI take against one (the figures in the deadline's report).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from typing_extensions import Self

BODY_LENGTH = 100_000


class TricklePeer:
    """A loopback server whose answers arrive one body byte every *interval* seconds.

    Args:
        interval: Seconds between two body bytes.
        status: The status line's code (200: a Graph send that seems to succeed).
        body: The answer that trickles; by default a JSON object padded to `BODY_LENGTH`.
        headers_first: Send the status line and headers at once (True), or trickle them too.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        status: int = 200,
        body: bytes | None = None,
        headers_first: bool = True,
    ) -> None:
        self.interval = interval
        self.status = status
        self.body = b"{" + b" " * (BODY_LENGTH - 2) + b"}" if body is None else body
        self.headers_first = headers_first
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        #: The request lines received, in order (`POST /v23.0/1/messages HTTP/1.1`).
        self.requests: list[str] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> Self:
        """Start accepting connections."""
        self._accepter.start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop, and close every connection (a client still reading sees the end)."""
        self._stop.set()
        self._server.close()
        with self._lock:
            for conn in self._conns:
                _close(conn)
            threads = list(self._threads)
        for t in threads:
            t.join(10)
        self._accepter.join(10)

    def _accept(self) -> None:
        self._server.settimeout(0.1)  # a blocked accept() would outlive close(): look up often
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._conns.append(conn)
                self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = _read_head(conn)
            if head is None:
                return
            with self._lock:
                self.requests.append(head.split("\r\n", 1)[0])
            status = (
                f"HTTP/1.1 {self.status} OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            ).encode()
            if self.headers_first:
                conn.sendall(status)
                body = self.body
            else:
                body = status + self.body
            for i in range(len(body)):
                if self._stop.wait(self.interval):
                    return
                conn.sendall(body[i : i + 1])
        except OSError:
            return
        finally:
            _close(conn)


def _read_head(conn: socket.socket) -> str | None:
    """Read the request up to the end of its headers (the body is not needed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data.decode("latin-1")


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def timed(call: Any, limit: float) -> tuple[float, Any]:
    """Run *call* in a thread; return (seconds taken, its result or exception).

    A call still running after *limit* seconds is reported as `TimeoutError` (the peer's
    `stop()` then ends it): the hang guard of the tests, not a timing claim.
    """
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # handed back to the test
            out.append(exc)

    started = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    took = time.monotonic() - started
    if t.is_alive():
        return took, TimeoutError(f"still running after {limit:g} s")
    return took, out[0]


# --- the measurement: `python tests/trickle.py [LIMIT]` ------------------------------------------

_TOKEN = "EAAGmeasure0123456789abcdefghij"
_VAULT_ANSWER = b'{"data": {"data": {"access_token": "EAAGx"}, "metadata": {}}}' + b" " * 1000


def _measure(limit: float) -> None:  # pragma: no cover - a script, not a test
    """Print how long each client, guarded or not, and `wa-auth send` take against a peer that
    trickles one byte every 2 s: timeout 5 s, budget 10 s, every scenario in parallel."""
    import asyncio
    import os
    import subprocess
    import sys
    from pathlib import Path

    from wa_auth import AsyncWhatsAppClient, FastAsyncWhatsAppClient, WhatsAppClient
    from wa_auth.guards import Guard, RetryPolicy
    from wa_auth.intents import Intent
    from wa_auth.providers import VaultTokenProvider

    timeout, budget, to = 5.0, 10.0, "+15551234567"
    wa_auth = str(Path(sys.executable).with_name("wa-auth"))

    def options(url: str) -> dict[str, Any]:
        return {"token": _TOKEN, "phone_number_id": "1234567890", "base_url": url, "timeout": 5.0}

    def client(cls: Any, guarded: bool) -> Any:
        def run(peer: TricklePeer) -> Any:
            policy = RetryPolicy(budget=budget)
            if cls is WhatsAppClient:
                with cls(**options(peer.url)) as c:
                    if guarded:
                        return Guard(c, policy=policy).send(Intent.text(to, "hi"))
                    return c.send_text(to, "hi")

            async def main() -> Any:
                async with cls(**options(peer.url)) as c:
                    if guarded:
                        return await Guard(c, policy=policy).asend(Intent.text(to, "hi"))
                    return await c.send_text(to, "hi")

            return asyncio.run(main())

        return run

    def vault(asynchronous: bool) -> Any:
        def run(peer: TricklePeer) -> Any:
            source = VaultTokenProvider(peer.url, "wa/prod", vault_token="hvs.x", timeout=timeout)
            return asyncio.run(source.aget_token()) if asynchronous else source.get_token()

        return run

    def cli(env: Any) -> Any:
        def run(peer: TricklePeer) -> Any:
            base = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
            argv = [wa_auth, "send", "--to", to, "--text", "hi"]
            argv += ["--timeout", str(timeout), "--budget", str(budget)]
            done = subprocess.run(
                argv, env={**base, **env(peer.url)}, capture_output=True, text=True, check=False
            )
            return f"exit {done.returncode}: {done.stdout.strip()[:150]}"

        return run

    graph = {"WA_ACCESS_TOKEN": _TOKEN, "WA_PHONE_NUMBER_ID": "1234567890"}
    cases: dict[str, tuple[Any, bytes | None]] = {
        "WhatsAppClient.send_text": (client(WhatsAppClient, False), None),
        "AsyncWhatsAppClient.send_text": (client(AsyncWhatsAppClient, False), None),
        "FastAsyncWhatsAppClient.send_text": (client(FastAsyncWhatsAppClient, False), None),
        "Guard(WhatsAppClient).send": (client(WhatsAppClient, True), None),
        "Guard(AsyncWhatsAppClient).asend": (client(AsyncWhatsAppClient, True), None),
        "Guard(FastAsyncWhatsAppClient).asend": (client(FastAsyncWhatsAppClient, True), None),
        "wa-auth send": (cli(lambda url: {**graph, "WA_BASE_URL": url}), None),
        "VaultTokenProvider.get_token": (vault(False), _VAULT_ANSWER),
        "VaultTokenProvider.aget_token": (vault(True), _VAULT_ANSWER),
        "wa-auth send (Vault)": (
            cli(
                lambda url: {
                    "WA_VAULT_ADDR": url,
                    "WA_VAULT_PATH": "wa/prod",
                    "WA_VAULT_TOKEN": "hvs.x",
                    "WA_PHONE_NUMBER_ID": "1234567890",
                    "WA_BASE_URL": "http://127.0.0.1:9",
                }
            ),
            _VAULT_ANSWER,
        ),
    }
    results: dict[str, tuple[float, Any]] = {}
    peers: list[TricklePeer] = []

    def one(name: str, run: Any, body: bytes | None) -> None:
        peer = TricklePeer(2.0, body=body).start()
        peers.append(peer)
        results[name] = timed(lambda: run(peer), limit)

    threads = [threading.Thread(target=one, args=(n, *c)) for n, c in cases.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for peer in peers:
        peer.stop()
    for name in cases:
        took, out = results[name]
        shown = f"still running after {limit:g} s" if isinstance(out, TimeoutError) else repr(out)
        print(f"{name:38} {took:6.1f} s  {shown[:160]}")


if __name__ == "__main__":
    import sys

    _measure(float(sys.argv[1]) if len(sys.argv) > 1 else 75.0)
