"""A token file rewritten in place by a writer that pauses mid-token, against the sandbox.

Atomic replacement is the supported way to rotate a token file; a writer that truncates the
file and pauses longer than the debounce still gets its half-written token read. Such a
token must fail safe: Meta's rejection of it is re-read before a verdict is recorded against
it, and the sends go out with the whole token once the writer has finished.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from wa_auth import AsyncWhatsAppClient, WhatsAppClient
from wa_auth.models import SendResult
from wa_auth.providers import FileTokenProvider, Token, TokenVerdicts
from wa_auth.sandbox import Sandbox

pytestmark = pytest.mark.anyio

#: Senders that hold the half-written token when Meta rejects it.
SENDERS = 6
#: How long the writer pauses, once Meta has rejected the half token: longer than the
#: provider's 0.25 s debounce (the pause of the report), a pause and not a timing claim.
PAUSE = 0.4
#: A bound on waiting for what the test waits for: a hang guard, not a timing claim.
HANG = 20.0


class PausingWriter:
    """Rewrites *path* in place: half of *token*, a pause until released, then the rest."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self.token = token
        self.half = token[: len(token) // 2]
        self.halfway = threading.Event()
        self.resume = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)

    def _write(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, self.half.encode())
            self.halfway.set()
            self.resume.wait(HANG)
            time.sleep(PAUSE)
            os.write(fd, (self.token[len(self.half) :] + "\n").encode())
        finally:
            os.close(fd)

    def start(self) -> None:
        self.thread.start()
        assert self.halfway.wait(HANG)


def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + HANG
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def _setup(tmp_path: Path, sandbox: Sandbox) -> tuple[FileTokenProvider, str, str]:
    old, new = sandbox.issue_token(), sandbox.issue_token()
    path = tmp_path / "token"
    path.write_text(old + "\n")
    path.chmod(0o600)
    # The default debounce (0.25 s), which the writer's pause outlasts.
    return FileTokenProvider(path, check_interval=0.05), old, new


def _half_token_was_read(provider: FileTokenProvider, writer: PausingWriter) -> None:
    """Let the provider see the half-written file, and check that it did read the half."""
    _until(lambda: provider.get_token().reveal() == writer.half, "the half token was read")


def test_a_half_written_token_is_reread_before_any_verdict(tmp_path):
    """Sends that got a half-written token go out with the whole one; no verdict on the half."""
    with Sandbox() as sandbox:
        provider, _old, new = _setup(tmp_path, sandbox)
        verdicts = TokenVerdicts()
        with WhatsAppClient(
            token_provider=provider,
            phone_number_id=sandbox.phone_number_id,
            base_url=sandbox.base_url,
            verdicts=verdicts,
        ) as client:
            assert client.send_text("15551234567", "with the old token").message_id
            writer = PausingWriter(provider.path, new)
            writer.start()
            _half_token_was_read(provider, writer)
            half = Token(writer.half)
            results: list[object] = [None] * SENDERS

            def send(i: int) -> None:
                try:
                    results[i] = client.send_text("15551234567", f"m{i}")
                except Exception as exc:  # compared below
                    results[i] = exc

            threads = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
            for t in threads:
                t.start()
            _until(
                lambda: any(r.token_fingerprint == half.fingerprint for r in sandbox.requests()),
                "Meta saw the half token",
            )
            writer.resume.set()
            for t in threads:
                t.join(HANG)
            writer.thread.join(HANG)
        assert [type(r).__name__ for r in results] == ["SendResult"] * SENDERS, results
        assert verdicts.get(half.fingerprint) is None
        assert {r.token_fingerprint for r in results if isinstance(r, SendResult)} == {
            Token(new).fingerprint
        }
        assert provider.get_token().reveal() == new


async def test_a_half_written_token_is_reread_before_any_verdict_async(tmp_path):
    """The same with the async client: every send goes out with the whole token."""
    with Sandbox() as sandbox:
        provider, _old, new = _setup(tmp_path, sandbox)
        verdicts = TokenVerdicts()
        async with AsyncWhatsAppClient(
            token_provider=provider,
            phone_number_id=sandbox.phone_number_id,
            base_url=sandbox.base_url,
            verdicts=verdicts,
        ) as client:
            assert (await client.send_text("15551234567", "with the old token")).message_id
            writer = PausingWriter(provider.path, new)
            writer.start()
            await asyncio.to_thread(_half_token_was_read, provider, writer)
            half = Token(writer.half)

            async def release() -> None:
                await asyncio.to_thread(
                    _until,
                    lambda: any(
                        r.token_fingerprint == half.fingerprint for r in sandbox.requests()
                    ),
                    "Meta saw the half token",
                )
                writer.resume.set()

            results = await asyncio.wait_for(
                asyncio.gather(
                    release(),
                    *(client.send_text("15551234567", f"m{i}") for i in range(SENDERS)),
                    return_exceptions=True,
                ),
                HANG,  # a hang guard, not a timing claim
            )
            await asyncio.to_thread(writer.thread.join, HANG)
        sends = results[1:]
        assert [type(r).__name__ for r in sends] == ["SendResult"] * SENDERS, sends
        assert verdicts.get(half.fingerprint) is None
        assert {r.token_fingerprint for r in sends if isinstance(r, SendResult)} == {
            Token(new).fingerprint
        }
