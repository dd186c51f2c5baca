"""`--outbox postgresql://...`, `sqlite:///path` and `WA_AUTH_OUTBOX`, as real processes.

Against the session's real PostgreSQL (a database of each test's own): `wa-auth outbox
migrate` creates the schema, `send` records there and `outbox stats|list|replay` read it,
the URL's password never appears in any line; a refused password or a schema never migrated
is a usage error naming the server. Every printed line is validated against the schema.
"""

from __future__ import annotations

import json
import queue
import secrets
import signal
import subprocess
import sys
import threading

import pytest

from running import TO, cli, env_for

pytestmark = pytest.mark.real_component("postgresql")


@pytest.fixture
def url(postgres_server):
    name = f"cli_{secrets.token_hex(5)}"
    postgres_server.psql(f"CREATE DATABASE {name}", database="postgres")
    return postgres_server.url(name)


def _no_password(run, password: str) -> None:
    assert password not in run.stdout
    assert password not in run.stdout + run.stderr


def test_migrate_send_and_read_through_a_postgres_url(wa_sandbox, url, postgres_server):
    token = wa_sandbox.issue_token()
    run = cli("outbox", "list", "--outbox", url, env=env_for(wa_sandbox))
    assert run.code != 0  # never created but by migrate
    assert "wa-auth outbox migrate" in run.stdout + run.stderr
    _no_password(run, postgres_server.password)
    run = cli("outbox", "migrate", "--outbox", url, env=env_for(wa_sandbox))
    assert run.code == 0
    (line,) = run.lines
    assert (line["action"], line["count"]) == ("migrate", 1)
    assert "***" in line["path"]
    _no_password(run, postgres_server.password)
    env = env_for(wa_sandbox, token, WA_AUTH_OUTBOX=url)
    run = cli("send", "--to", TO, "--text", "hi", "--idempotency-key", "pg-1", env=env)
    assert (run.code, run.lines[0]["state"]) == (0, "delivered")
    run = cli("outbox", "stats", env=env)
    assert run.lines[0]["stats"]["by_state"]["delivered"] == 1
    _no_password(run, postgres_server.password)
    run = cli("outbox", "list", "--outbox", url, env=env_for(wa_sandbox))
    assert [r["idempotency_key"] for r in run.lines] == ["pg-1"]
    run = cli("send", "--to", TO, "--text", "hi", "--idempotency-key", "pg-1", env=env)
    assert run.lines[0]["message_id"] == wa_sandbox.messages()[0].id  # not sent twice
    assert len(wa_sandbox.messages()) == 1


def test_a_refused_password_is_a_usage_error_without_it(wa_sandbox, postgres_server):
    wrong = "wrong-" + secrets.token_hex(4)
    run = cli(
        "outbox", "stats", "--outbox", postgres_server.url(password=wrong), env=env_for(wa_sandbox)
    )
    assert run.code != 0
    assert "refused the user name or password" in run.stdout + run.stderr
    assert f"127.0.0.1:{postgres_server.port}" in run.stdout + run.stderr
    _no_password(run, wrong)


def test_a_sqlite_url_is_the_file(wa_sandbox, tmp_path):
    token = wa_sandbox.issue_token()
    db = tmp_path / "outbox.db"
    env = env_for(wa_sandbox, token)
    run = cli("send", "--outbox", f"sqlite:///{db}", "--to", TO, "--text", "hi", env=env)
    assert run.code == 0
    assert db.exists()
    run = cli("outbox", "stats", "--outbox", str(db), env=env)
    assert run.lines[0]["stats"]["by_state"]["delivered"] == 1


def test_serve_with_a_postgres_outbox(wa_sandbox, url, postgres_server):
    """`wa-auth serve --outbox postgresql://...`: sends are recorded there, the outbox routes
    read it, /healthz says it works, and no line shows the password."""
    from running import text_intent
    from serving import serving

    token = wa_sandbox.issue_token()
    with serving(wa_sandbox, token, "--outbox", url) as service:
        assert postgres_server.password not in json.dumps(service.info)
        assert "***" in service.info["outbox"]
        sent = service.call("POST", "/send", json=text_intent(idempotency_key="srv-1"))
        assert sent.json()["state"] == "delivered"
        listing = service.call("GET", "/outbox")
        assert [r["idempotency_key"] for r in listing.json()["rows"]] == ["srv-1"]
        health = service.call("GET", "/healthz")
        assert (health.status_code, health.json()["outbox"]["ok"]) == (200, True)
        assert service.stop() == 0
        assert postgres_server.password not in service.stdout + service.stderr


def test_replay_follow_is_woken_by_an_enqueue_in_another_process(wa_sandbox, url):
    """`replay --follow` idles on LISTEN: an intent another process enqueues goes out well
    before its poll (120 s) would look again; SIGTERM ends it with its summary."""
    from wa_auth.intents import Intent
    from wa_auth.outbox import PostgresOutbox

    env = env_for(wa_sandbox, wa_sandbox.issue_token(), WA_AUTH_OUTBOX=url)
    assert cli("outbox", "migrate", env=env).code == 0
    with PostgresOutbox(url) as box:
        box.enqueue(Intent.text(TO, "first", idempotency_key="w-1"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_auth", "outbox", "replay", "--follow", "--poll", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    try:
        first = json.loads(lines.get(timeout=60))
        assert (first["idempotency_key"], first["state"]) == ("w-1", "delivered")
        with PostgresOutbox(url) as box:  # another process's enqueue
            box.enqueue(Intent.text(TO, "second", idempotency_key="w-2"))
        second = json.loads(lines.get(timeout=60))  # a generous bound, far below the poll
        assert (second["idempotency_key"], second["state"]) == ("w-2", "delivered")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(err.splitlines()[-1])["summary"]["delivered"] == 2
    assert [m.idempotency_key for m in wa_sandbox.messages()] == ["w-1", "w-2"]
