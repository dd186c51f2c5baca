"""`wa-auth send --outbox` and `wa-auth outbox list|stats|replay|purge|export`, as real processes.

Every printed line is validated against docs/wa-auth.schema.json.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((ROOT / "docs" / "wa-auth.schema.json").read_text(encoding="utf-8"))
)
TO = "+15551234567"


def _lines(text: str) -> list[dict]:
    out = []
    for raw in text.splitlines():
        if raw.strip():
            obj = json.loads(raw)
            VALIDATOR.validate(obj)
            out.append(obj)
    return out


def _env(sandbox, token=None, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update(WA_BASE_URL=sandbox.base_url, WA_PHONE_NUMBER_ID=sandbox.phone_number_id, **extra)
    if token is not None:
        env["WA_ACCESS_TOKEN"] = token
    return env


def _cli(*args, env, stdin=""):
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, _lines(proc.stdout), _lines(proc.stderr)


def _intent(key: str, body: str = "hi", to: str = TO) -> str:
    return json.dumps({"to": to, "type": "text", "text": {"body": body}, "idempotency_key": key})


def test_send_with_an_outbox_queues_and_replay_sends(wa_sandbox, tmp_path):
    """A long rate cap is queued (14); a missing token is replayed once the token is there."""
    db = str(tmp_path / "outbox.db")
    token = wa_sandbox.issue_token()
    wa_sandbox.fail_next(131048)
    code, lines, err = _cli(
        "send", "--outbox", db, "--input", "-", env=_env(wa_sandbox, token), stdin=_intent("k1")
    )
    assert (code, lines[0]["state"], lines[0]["category"]) == (14, "queued", "rate_limited")
    assert lines[0]["not_before"] > 0
    code, lines, _ = _cli(
        "send",
        "--outbox",
        db,
        "--to",
        TO,
        "--text",
        "x",
        "--idempotency-key",
        "k2",
        env=_env(wa_sandbox),
    )
    assert (code, lines[0]["category"]) == (10, "token_unavailable")
    code, (stats,), _ = _cli("outbox", "stats", "--outbox", db, env=_env(wa_sandbox))
    assert stats["stats"]["by_state"]["queued"] == 1
    assert stats["stats"]["by_state"]["failed"] == 1
    code, rows, _ = _cli(
        "outbox", "list", "--outbox", db, "--state", "failed", env=_env(wa_sandbox)
    )
    assert [r["idempotency_key"] for r in rows] == ["k2"]
    assert rows[0]["intent"]["text"]["body"] == "x"
    code, lines, err = _cli("outbox", "replay", "--outbox", db, env=_env(wa_sandbox, token))
    assert code == 0
    assert [(r["idempotency_key"], r["state"]) for r in lines] == [("k2", "delivered")]
    assert err[-1]["summary"]["delivered"] == 1
    assert [m.idempotency_key for m in wa_sandbox.messages()] == ["k2"]


def test_a_delivered_key_is_its_delivery_not_a_failure(wa_sandbox, tmp_path):
    """A key the outbox delivered: exit 0, the original message id, `duplicate`; nothing sent."""
    db = str(tmp_path / "outbox.db")
    env = _env(wa_sandbox, wa_sandbox.issue_token())
    args = ("send", "--outbox", db, "--to", TO, "--text", "x", "--idempotency-key", "once")
    code, (first,), _ = _cli(*args, env=env)
    assert code == 0
    code, (line,), _ = _cli(*args, env=env)
    assert (code, line["ok"], line["state"], line["reason"]) == (0, True, "delivered", "duplicate")
    assert (line["message_id"], line["attempts"]) == (first["message_id"], 0)
    assert line["category"] is None
    assert len(wa_sandbox.messages()) == 1


def test_sigterm_leaves_the_rest_pending_in_the_outbox(wa_sandbox, tmp_path):
    """With an outbox, what a signal stops is `queued` (14) and stays pending for a replay."""
    db = str(tmp_path / "outbox.db")
    token = wa_sandbox.issue_token()
    wa_sandbox.set_faults(latency=0.4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_auth", "send", "--outbox", db, "--concurrency", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_env(wa_sandbox, token), text=True,
    )  # fmt: skip
    try:
        proc.stdin.write("\n".join(_intent(f"k{i}") for i in range(6)))
        proc.stdin.close()
        proc.stdin = None
        assert select.select([proc.stdout], [], [], 30)[0]
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = _lines(first + rest)
    _lines(err)
    stopped = [r for r in lines if r["reason"] == "interrupted"]
    assert stopped
    assert all(r["state"] == "queued" and r["exit_code"] == 14 for r in stopped)
    assert proc.returncode == 14
    wa_sandbox.set_faults()
    _, (stats,), _ = _cli("outbox", "stats", "--outbox", db, env=_env(wa_sandbox))
    assert stats["stats"]["by_state"]["pending"] == len(stopped)
    _, replayed, _ = _cli("outbox", "replay", "--outbox", db, env=_env(wa_sandbox, token))
    assert sorted(r["idempotency_key"] for r in replayed) == sorted(
        r["idempotency_key"] for r in stopped
    )
    assert len(wa_sandbox.messages()) == 6


def test_export_purge_and_a_missing_outbox(wa_sandbox, tmp_path):
    """Dead letters export as rows; purge counts; a missing file is a usage error, not created."""
    db = str(tmp_path / "outbox.db")
    env = _env(wa_sandbox, wa_sandbox.issue_token())
    wa_sandbox.fail_next(131047, recipient="+15550000047")
    _cli(
        "send",
        "--outbox",
        db,
        "--input",
        "-",
        env=env,
        stdin=_intent("dead", to="+15550000047") + "\n" + _intent("fine"),
    )
    code, rows, _ = _cli("outbox", "export", "--outbox", db, env=env)
    assert [r["idempotency_key"] for r in rows] == ["dead"]
    out = tmp_path / "dead.jsonl"
    code, (line,), _ = _cli("outbox", "export", "--outbox", db, "--output", str(out), env=env)
    assert (line["action"], line["count"]) == ("export", 1)
    assert json.loads(out.read_text(encoding="utf-8"))["idempotency_key"] == "dead"
    code, (line,), _ = _cli("outbox", "export", "--outbox", db, "--output", str(out), env=env)
    assert (code, line["category"]) == (2, "usage")
    code, (line,), _ = _cli(
        "outbox", "purge", "--outbox", db, "--delivered-older-than", "0", env=env
    )
    assert (code, line["count"]) == (0, 1)
    missing = tmp_path / "missing.db"
    code, (line,), _ = _cli("outbox", "list", "--outbox", str(missing), env=env)
    assert (code, line["category"]) == (2, "usage")
    assert not missing.exists()


def test_a_state_file_remembers_a_dead_token_across_runs(wa_sandbox, tmp_path):
    """With --state, the second run refuses the token the first run proved dead: no request."""
    state = str(tmp_path / "state.db")
    token = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(token, "revoked_password_changed")
    env = _env(wa_sandbox, token, WA_AUTH_STATE=state)
    for _ in range(2):
        code, (line,), _ = _cli("send", "--to", TO, "--text", "x", env=env)
        assert (code, line["category"]) == (4, "token_revoked")
    sends = [r for r in wa_sandbox.requests() if r.endpoint == "send_message"]
    assert len(sends) == 1
    code, (line,), _ = _cli(
        "send", "--state", state, "--to", TO, "--text", "x", env=_env(wa_sandbox, token)
    )
    assert code == 4
    assert len([r for r in wa_sandbox.requests() if r.endpoint == "send_message"]) == 1
