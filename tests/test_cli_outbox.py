"""`wa-auth send --outbox` and `wa-auth outbox list|stats|replay|purge|export`, as real processes.

Every printed line is validated against docs/wa-auth.schema.json.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys

from mounts import fill_disk, read_only_mount, tiny_filesystem
from running import TO, cli, env_for, intent, validate_lines
from wa_auth import Intent, SqliteOutbox


def _cli(*args, env, stdin=""):
    """`running.cli` as (exit code, stdout lines, stderr lines), for unpacking."""
    run = cli(*args, env=env, stdin=stdin)
    return run.code, run.lines, run.err_lines


def test_send_with_an_outbox_queues_and_replay_sends(wa_sandbox, tmp_path):
    """A long rate cap is queued (14); a missing token is replayed once the token is there."""
    db = str(tmp_path / "outbox.db")
    token = wa_sandbox.issue_token()
    wa_sandbox.fail_next(131048)
    code, lines, err = _cli(
        "send",
        "--outbox",
        db,
        "--input",
        "-",
        env=env_for(wa_sandbox, token),
        stdin=intent(idempotency_key="k1"),
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
        env=env_for(wa_sandbox),
    )
    assert (code, lines[0]["category"]) == (10, "token_unavailable")
    code, (stats,), _ = _cli("outbox", "stats", "--outbox", db, env=env_for(wa_sandbox))
    assert stats["stats"]["by_state"]["queued"] == 1
    assert stats["stats"]["by_state"]["failed"] == 1
    code, rows, _ = _cli(
        "outbox", "list", "--outbox", db, "--state", "failed", env=env_for(wa_sandbox)
    )
    assert [r["idempotency_key"] for r in rows] == ["k2"]
    assert rows[0]["intent"]["text"]["body"] == "x"
    code, lines, err = _cli("outbox", "replay", "--outbox", db, env=env_for(wa_sandbox, token))
    assert code == 0
    assert [(r["idempotency_key"], r["state"]) for r in lines] == [("k2", "delivered")]
    assert err[-1]["summary"]["delivered"] == 1
    assert [m.idempotency_key for m in wa_sandbox.messages()] == ["k2"]


def test_a_delivered_key_is_its_delivery_not_a_failure(wa_sandbox, tmp_path):
    """A key the outbox delivered: exit 0, the original message id, `duplicate`; nothing sent."""
    db = str(tmp_path / "outbox.db")
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
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
        env=env_for(wa_sandbox, token), text=True,
    )  # fmt: skip
    try:
        proc.stdin.write("\n".join(intent(idempotency_key=f"k{i}") for i in range(6)))
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
    lines = validate_lines(first + rest)
    validate_lines(err)
    stopped = [r for r in lines if r["reason"] == "interrupted"]
    assert stopped
    assert all(r["state"] == "queued" and r["exit_code"] == 14 for r in stopped)
    assert proc.returncode == 14
    wa_sandbox.set_faults()
    _, (stats,), _ = _cli("outbox", "stats", "--outbox", db, env=env_for(wa_sandbox))
    assert stats["stats"]["by_state"]["pending"] == len(stopped)
    _, replayed, _ = _cli("outbox", "replay", "--outbox", db, env=env_for(wa_sandbox, token))
    assert sorted(r["idempotency_key"] for r in replayed) == sorted(
        r["idempotency_key"] for r in stopped
    )
    assert len(wa_sandbox.messages()) == 6


def test_export_purge_and_a_missing_outbox(wa_sandbox, tmp_path):
    """Dead letters export as rows; purge counts; a missing file is a usage error, not created."""
    db = str(tmp_path / "outbox.db")
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    wa_sandbox.fail_next(131047, recipient="+15550000047")
    _cli(
        "send",
        "--outbox",
        db,
        "--input",
        "-",
        env=env,
        stdin=intent(idempotency_key="dead", to="+15550000047")
        + "\n"
        + intent(idempotency_key="fine"),
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
    env = env_for(wa_sandbox, token, WA_AUTH_STATE=state)
    for _ in range(2):
        code, (line,), _ = _cli("send", "--to", TO, "--text", "x", env=env)
        assert (code, line["category"]) == (4, "token_revoked")
    sends = [r for r in wa_sandbox.requests() if r.endpoint == "send_message"]
    assert len(sends) == 1
    code, (line,), _ = _cli(
        "send", "--state", state, "--to", TO, "--text", "x", env=env_for(wa_sandbox, token)
    )
    assert code == 4
    assert len([r for r in wa_sandbox.requests() if r.endpoint == "send_message"]) == 1


# --- issue 17: the outbox commands' rough edges -------------------------------------------------


def _run(*args, env, stdin=""):
    """The CLI's raw result: (exit code, stdout text, stderr text); never a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def _queued(sandbox, db, keys, env):
    """Send *keys* with a long rate cap on each: the outbox holds them `queued`.

    The first cap pauses the number, so a later key may be queued without a request and leave
    its seeded fault unspent: the faults left are cleared, or the next send would meet one.
    """
    sandbox.fail_next(131048, times=len(keys))
    stdin = "\n".join(intent(idempotency_key=k) for k in keys)
    _, lines, _ = _cli("send", "--outbox", db, "--input", "-", env=env, stdin=stdin)
    assert {line["state"] for line in lines} == {"queued"}
    sandbox.clear_seeded_faults()


def test_a_huge_limit_lists_every_row(wa_sandbox, tmp_path):
    """`outbox list --limit 99999999999999999999` lists the rows (no OverflowError, exit 0)."""
    db = str(tmp_path / "outbox.db")
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    _queued(wa_sandbox, db, ["a", "b"], env)
    code, rows, _ = _cli("outbox", "list", "--outbox", db, "--limit", "9" * 20, env=env)
    assert (code, [r["idempotency_key"] for r in rows]) == (0, ["a", "b"])


def test_mark_sets_a_rows_state_from_the_command_line(wa_sandbox, tmp_path):
    """`outbox mark KEY STATE`: the runbook's decisions without Python; a bad key or state is a
    usage error (2), and a row marked pending is sent by the next replay."""
    db = str(tmp_path / "outbox.db")
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    _queued(wa_sandbox, db, ["later", "known"], env)
    code, (row,), _ = _cli("outbox", "mark", "later", "pending", "--outbox", db, env=env)
    assert (code, row["idempotency_key"], row["state"], row["reason"]) == (
        0,
        "later",
        "pending",
        "operator",
    )
    code, (row,), _ = _cli(
        "outbox", "mark", "known", "delivered", "--message-id", "wamid.seen", "--outbox", db,
        "--reason", "webhook", env=env,
    )  # fmt: skip
    assert (row["state"], row["message_id"], row["reason"]) == (
        "delivered",
        "wamid.seen",
        "webhook",
    )
    code, (line,), _ = _cli("outbox", "mark", "nope", "failed", "--outbox", db, env=env)
    assert (code, line["category"]) == (2, "usage")
    assert "no intent 'nope'" in line["error"]["message"]
    code, (line,), _ = _cli("outbox", "mark", "later", "sending", "--outbox", db, env=env)
    assert (code, line["category"]) == (2, "usage")
    code, text, _ = _run(
        "outbox", "mark", "later", "pending", "--outbox", db, "--format", "text", env=env
    )
    assert (code, text.split()[1:3]) == (0, ["later", "pending"])
    code, lines, _ = _cli("outbox", "replay", "--outbox", db, env=env)
    assert [(r["idempotency_key"], r["state"]) for r in lines] == [("later", "delivered")]


def test_replay_honours_format_text(wa_sandbox, tmp_path):
    """`outbox replay --format text` prints a line per intent and a summary for a person."""
    db = str(tmp_path / "outbox.db")
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    _queued(wa_sandbox, db, ["t1", "t2"], env)
    for key in ("t1", "t2"):
        _cli("outbox", "mark", key, "pending", "--outbox", db, env=env)
    code, out, err = _run("outbox", "replay", "--outbox", db, "--format", "text", env=env)
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == ["line 1", "line 2"]
    assert all("delivered to" in line for line in out.splitlines())
    assert err.startswith("wa-auth outbox replay: 2 intents: 2 delivered; 0 skipped")
    assert not out.lstrip().startswith("{")


def test_replay_shows_progress_on_a_terminal(wa_sandbox, tmp_path):
    """On a terminal, replay says how far it is, as send does; the JSON lines stay on stdout."""
    db = str(tmp_path / "outbox.db")
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    keys = [f"p{n}" for n in range(30)]
    with SqliteOutbox(db) as box:
        box.enqueue_many(Intent.text(TO, "hi", idempotency_key=k) for k in keys)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wa_auth", "outbox", "replay", "--outbox", db],
            stdout=subprocess.PIPE, stderr=follower, env=env, text=True,
        )  # fmt: skip
        os.close(follower)
        out, _ = proc.communicate(timeout=120)
        seen = b""
        while select.select([leader], [], [], 1)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert len(validate_lines(out)) == 30
    text = seen.decode()
    assert "wa-auth outbox replay: 30 of at most 30 done" in text
    assert "Traceback" not in text


def test_send_records_the_configured_sender_in_the_outbox(wa_sandbox, tmp_path):
    """An intent without phone_number_id is recorded with WA_PHONE_NUMBER_ID, sent or not."""
    db = str(tmp_path / "outbox.db")
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    late = json.dumps(
        {"to": TO, "type": "text", "text": {"body": "x"}, "idempotency_key": "late",
         "not_after": 1_000_000_000}
    )  # fmt: skip
    _queued(wa_sandbox, db, ["held"], env)
    _cli("send", "--outbox", db, "--input", "-", env=env, stdin=late)
    _, rows, _ = _cli("outbox", "list", "--outbox", db, env=env)
    assert {r["idempotency_key"]: r["state"] for r in rows} == {"held": "queued", "late": "expired"}
    for row in rows:
        assert row["phone_number_id"] == wa_sandbox.phone_number_id
        assert row["intent"]["phone_number_id"] == wa_sandbox.phone_number_id


def test_a_read_only_outbox_can_be_listed_and_counted(wa_sandbox, tmp_path):
    """On a read-only mount, `list`, `stats` and `export` read the file (not "missing"); a
    command that changes it says the file is read-only (usage, exit 2)."""
    data = tmp_path / "data"
    data.mkdir()
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    _queued(wa_sandbox, str(data / "outbox.db"), ["a", "b"], env)
    with read_only_mount(data) as ro:
        db = str(ro / "outbox.db")
        code, (stats,), _ = _cli("outbox", "stats", "--outbox", db, env=env)
        assert (code, stats["stats"]["by_state"]["queued"]) == (0, 2)
        code, rows, _ = _cli("outbox", "list", "--outbox", db, env=env)
        assert (code, [r["idempotency_key"] for r in rows]) == (0, ["a", "b"])
        assert _cli("outbox", "export", "--outbox", db, env=env)[0] == 0
        code, (line,), _ = _cli("outbox", "mark", "a", "pending", "--outbox", db, env=env)
        assert (code, line["category"]) == (2, "usage")
        assert "read-only" in line["error"]["message"]
        assert "missing" not in line["error"]["message"]


def test_a_full_disk_exits_8_retryable_for_a_new_and_an_existing_outbox(wa_sandbox, tmp_path):
    """A real ENOSPC: `send --outbox` on a new file and on an existing one both exit 8
    (transient), `retryable: true`: the message is not invalid, try again once there is room."""
    env = env_for(wa_sandbox, wa_sandbox.issue_token())
    with tiny_filesystem(tmp_path, 256) as disk:
        existing = str(disk / "existing.db")
        assert _cli("send", "--outbox", existing, "--to", TO, "--text", "x", env=env)[0] == 0
        fill_disk(disk)
        code, (line,), _ = _cli(
            "send", "--outbox", str(disk / "new.db"), "--to", TO, "--text", "x", env=env
        )
        assert (code, line["category"], line["error"]["retryable"]) == (8, "transient", True)
        intents = "\n".join(intent(idempotency_key=f"k{n}", body="y" * 2000) for n in range(100))
        code, lines, _ = _cli("send", "--outbox", existing, "--input", "-", env=env, stdin=intents)
        assert code == 8
        assert {(x.get("category"), x["exit_code"]) for x in lines} <= {("transient", 8)}
        assert all(x["error"]["retryable"] for x in lines)


def test_mark_offers_exactly_the_outboxs_markable_states():
    """The parser's `mark` states (kept there for a cold start) are `MARKABLE_STATES`."""
    from wa_auth._cli._admin_parsers import MARKABLE
    from wa_auth.outbox import MARKABLE_STATES

    assert MARKABLE == MARKABLE_STATES
