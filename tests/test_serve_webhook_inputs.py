"""`wa-auth serve`'s webhook endpoint against odd input: hostile and malformed POSTs on one live
serve (a 401 with a JSON error, or a stored 200 parsed into nothing: never a 500), and its
secrets read from files through a provider, rotated without a restart, never shown."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from serving import HARD, serve_env, start
from wa_auth.sandbox import Sandbox

VERIFY_TOKEN = "verify-token-canary-0e61b2f9"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(seed=5, freeze_clock=True) as sandbox:
        yield sandbox


def hook_env(sb: Sandbox, **extra: str | None) -> dict[str, str]:
    variables: dict[str, str | None] = {
        "WA_AUTH_WEBHOOK_APP_SECRET": sb.app_secret,
        "WA_AUTH_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
    }
    return serve_env(sb, sb.issue_token(), **{**variables, **extra})


def signed(sb: Sandbox, body: bytes) -> dict[str, str]:
    digest = hmac.new(sb.app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


#: (body, headers or "sign", the status) of hostile and odd POSTs.
_POSTS = [
    (b"", {}, 401),
    (b"not json", {"X-Hub-Signature-256": "sha256=zz"}, 401),
    (b"{}", {"X-Hub-Signature-256": "md5=" + "0" * 32}, 401),
    (b"{}", {"X-Hub-Signature-256": "sha256=" + "a" * 200}, 401),
    (b"\xff\xfe not utf-8", "sign", 200),
    (b'{"object": "whatsapp_business_account", "entry": "x"}', "sign", 200),
    (b"[1, 2, 3]", "sign", 200),
]


def test_any_post_is_a_401_or_a_stored_200(tmp_path, sb):
    """Unsigned or mis-signed: 401 with a JSON error; signed but not a webhook's shape: 200,
    stored, and parsed into nothing later (never a 500, never a traceback)."""
    service = start(hook_env(sb), "--webhook-queue", str(tmp_path / "queue.db"))
    try:
        for body, headers, status in _POSTS:
            sent = signed(sb, body) if headers == "sign" else headers
            answer = service.call("POST", "/webhook", key=None, content=body, headers=sent)
            assert answer.status_code == status, body
            if status == 401:
                assert answer.json()["error"]["category"] == "invalid_signature"
        assert service.call("GET", "/healthz", key=None).json()["ok"] is True
        time.sleep(0.3)  # the pipeline takes them after the 200
        assert "internal" not in service.stderr
        assert '"level": "warning"' not in service.stderr
    finally:
        assert service.stop() == 0


def test_the_secrets_come_from_files_and_rotate_without_a_restart(tmp_path, sb):
    """--webhook-app-secret-file and --webhook-verify-token-file: read through a provider, so
    a new app secret written to the file is in force without a restart, and none is shown."""
    secret_file, token_file = tmp_path / "app_secret", tmp_path / "verify_token"
    secret_file.write_text(sb.app_secret + "\n", encoding="utf-8")
    token_file.write_text(VERIFY_TOKEN + "\n", encoding="utf-8")
    env = hook_env(sb, WA_AUTH_WEBHOOK_APP_SECRET=None, WA_AUTH_WEBHOOK_VERIFY_TOKEN=None)
    args = ("--webhook-app-secret-file", str(secret_file))
    args += ("--webhook-verify-token-file", str(token_file), "--webhook-queue", str(tmp_path / "q"))
    service = start(env, *args)
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    rotated = "a-rotated-app-secret-canary-77f0"
    try:
        params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "7"}
        assert service.call("GET", "/webhook", key=None, params=params).text == "7"
        first = service.call("POST", "/webhook", key=None, content=body, headers=signed(sb, body))
        assert first.status_code == 200
        secret_file.write_text(rotated + "\n", encoding="utf-8")
        digest = hmac.new(rotated.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-Hub-Signature-256": f"sha256={digest}"}
        deadline = time.monotonic() + HARD
        while (
            answer := service.call("POST", "/webhook", key=None, content=body, headers=headers)
        ).status_code != 200:
            assert answer.status_code == 401
            assert time.monotonic() < deadline
            time.sleep(0.2)
        old = service.call("POST", "/webhook", key=None, content=body, headers=signed(sb, body))
        assert old.status_code == 401
        text = service.stdout + service.stderr + answer.text + old.text
        for secret in (sb.app_secret, rotated, VERIFY_TOKEN):
            assert secret not in text
    finally:
        service.stop()


def test_an_unreadable_secret_file_stops_serve_at_start(tmp_path, sb):
    """A missing app secret file is a usage error naming the flag, before serve listens."""
    env = hook_env(sb, WA_AUTH_WEBHOOK_APP_SECRET=None, WA_AUTH_WEBHOOK_QUEUE=str(tmp_path / "q"))
    missing = str(tmp_path / "no-such-secret")
    run = subprocess.run(
        [sys.executable, "-m", "wa_auth", "serve", "--webhook-app-secret-file", missing],
        env=env,
        capture_output=True,
        text=True,
        timeout=HARD,
        check=False,
    )
    assert run.returncode != 0
    assert "--webhook-app-secret-file" in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
