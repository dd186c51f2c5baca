"""The `wa-auth` CLI: send, check and classify as real processes against the sandbox.

Every line a run prints (stdout and stderr) is validated against docs/wa-auth.schema.json.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import sys

import jsonschema
import pytest

from running import ROOT, SCHEMA, TO, Run, cli, env_for, intent, validate_lines
from wa_auth import _table
from wa_auth._cli import _codes, _schema, main

# --- send ---------------------------------------------------------------------------------------


def test_send_from_flags_is_delivered(wa_sandbox):
    """One message from flags: a delivered line with the wamid and fingerprint, exit 0."""
    token = wa_sandbox.issue_token()
    run = cli(
        "send",
        "--to",
        TO,
        "--text",
        "hello",
        "--idempotency-key",
        "order-1",
        env=env_for(wa_sandbox, token),
    )
    assert run.code == 0
    line = run.line
    assert line["ok"] is True
    assert line["state"] == "delivered"
    assert line["idempotency_key"] == "order-1"
    assert line["phone_number_id"] == wa_sandbox.phone_number_id
    (message,) = wa_sandbox.messages()
    assert line["message_id"] == message.id
    assert line["token_fingerprint"] == message.token_fingerprint
    assert run.summary["delivered"] == 1
    assert token not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("setup", "category", "code"),
    [
        pytest.param(lambda sb, t: sb.set_token_state(t, "expired"), "token_expired", 3, id="expired"),
        pytest.param(lambda sb, t: sb.set_token_state(t, "expired", variant="no_subcode"), "token_expired", 3, id="expired-no-subcode"),
        pytest.param(lambda sb, t: sb.set_token_state(t, "revoked_password_changed"), "token_revoked", 4, id="revoked"),
        pytest.param(lambda sb, t: sb.set_token_state(t, "missing_permission"), "insufficient_permission", 5, id="de-scoped"),
        pytest.param(lambda sb, t: sb.set_account_state("locked"), "account_state", 6, id="locked"),
        pytest.param(lambda sb, t: sb.fail_next(131047), "invalid_request", 9, id="window-closed"),
    ],
)  # fmt: skip
def test_send_failure_is_its_category_exit_code(wa_sandbox, setup, category, code):
    """Each failure is a failed line with its category and the category's exit code."""
    token = wa_sandbox.issue_token()
    setup(wa_sandbox, token)
    run = cli("send", "--to", TO, "--text", "hi", env=env_for(wa_sandbox, token))
    assert run.code == code
    line = run.line
    assert (line["state"], line["category"], line["exit_code"]) == ("failed", category, code)
    assert line["error"]["category"] == category
    assert line["error"]["operator_action"]
    assert wa_sandbox.messages() == ()
    assert token not in run.stdout + run.stderr


def test_exit_zero_keeps_the_code_in_the_json(wa_sandbox):
    """--exit-zero and WA_AUTH_EXIT_ZERO=1 exit 0; the line still carries exit_code 3."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(token, "expired")
    flag = cli("send", "--to", TO, "--text", "hi", "--exit-zero", env=env_for(wa_sandbox, token))
    env = cli(
        "send", "--to", TO, "--text", "hi", env=env_for(wa_sandbox, token, WA_AUTH_EXIT_ZERO="1")
    )
    for run in (flag, env):
        assert run.code == 0
        assert run.line["exit_code"] == 3


def test_batch_prints_one_line_per_input_in_order(wa_sandbox):
    """Bad lines are their own invalid_request results; the other lines still go out, in order."""
    token = wa_sandbox.issue_token()
    lines = [
        intent("one", idempotency_key="k1"),
        "{not json",
        json.dumps({"to": TO, "type": "text", "idempotency_key": "k3"}),
        json.dumps({"to": TO, "type": "telegram", "telegram": {}}),
        "",
        intent("five", idempotency_key="k5"),
    ]
    run = cli("send", env=env_for(wa_sandbox, token), stdin="\n".join(lines) + "\n")
    assert run.code == 9
    got = [(r["line"], r["state"], r["idempotency_key"]) for r in run.lines]
    assert got == [
        (1, "delivered", "k1"),
        (2, "failed", None),
        (3, "failed", "k3"),
        (4, "failed", None),
        (6, "delivered", "k5"),
    ]
    assert "not valid JSON" in run.lines[1]["error"]["message"]
    assert "text" in run.lines[2]["error"]["message"]
    assert "type must be one of" in run.lines[3]["error"]["message"]
    assert sorted(m.idempotency_key for m in wa_sandbox.messages()) == ["k1", "k5"]
    assert run.end["exit_code"] == 9
    assert run.summary | {"seconds": 0} == {
        "total": 5, "delivered": 2, "queued": 0, "failed": 3, "maybe_delivered": 0,
        "expired": 0, "skipped": 0, "seconds": 0, "interrupted": False,
    }  # fmt: skip


def test_batch_exits_with_its_most_severe_line(wa_sandbox, tmp_path):
    """A rate-limited line (7) outranks an invalid one (9); a revoked token (4) outranks both."""
    token = wa_sandbox.issue_token()
    # A pair limit: it holds that recipient only (a 130429 would hold the whole number).
    wa_sandbox.fail_next(131056, recipient="+15550000007", times=None)
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        "\n".join(
            [
                intent("a"),
                "[]",
                json.dumps({"to": "+15550000007", "type": "text", "text": {"body": "b"}}),
            ]
        ),
        encoding="utf-8",
    )
    run = cli("send", "--input", str(batch), "--budget", "0", env=env_for(wa_sandbox, token))
    assert [r["category"] for r in run.lines] == [None, "invalid_request", "rate_limited"]
    assert run.code == 7
    wa_sandbox.set_token_state(token, "revoked_deauthorized")
    run = cli("send", "--input", str(batch), "--budget", "0", env=env_for(wa_sandbox, token))
    assert [r["exit_code"] for r in run.lines] == [4, 9, 4]
    assert run.code == 4


def test_severity_order_is_the_documented_one():
    """account_state > token_revoked > token_expired > permission > unavailable > unknown > transient > rate_limited > queued > invalid_request."""
    order = [
        "account_state",
        "token_revoked",
        "token_expired",
        "insufficient_permission",
        "token_unavailable",
        "unknown",
        "transient",
        "rate_limited",
    ]
    codes = [_codes.BY_CATEGORY[c] for c in order] + [
        _codes.QUEUED,
        _codes.BY_CATEGORY["invalid_request"],
        0,
    ]
    for i, code in enumerate(codes):
        assert _codes.most_severe(codes[i:]) == code
        assert _codes.most_severe(reversed(codes[i:])) == code
    assert _codes.most_severe([]) == 0


def test_input_b64_and_json_array(wa_sandbox, tmp_path):
    """--input-b64 carries one intent; a JSON array file is a batch; bad base64 is line 1's error."""
    token = wa_sandbox.issue_token()
    env = env_for(wa_sandbox, token)
    b64 = base64.b64encode(
        intent('quotes " and $(rm -rf /) stay text', idempotency_key="b64").encode()
    ).decode()
    run = cli("send", "--input-b64", b64, env=env)
    assert run.code == 0
    assert wa_sandbox.messages()[-1].payload["text"]["body"] == 'quotes " and $(rm -rf /) stay text'
    bad = cli("send", "--input-b64", "***", env=env)
    assert (bad.code, bad.line["category"], bad.line["line"]) == (9, "invalid_request", 1)
    array = tmp_path / "items.json"
    array.write_text(
        json.dumps([json.loads(intent("x", idempotency_key=f"a{i}")) for i in range(3)]),
        encoding="utf-8",
    )
    run = cli("send", "--input", str(array), env=env)
    assert [r["idempotency_key"] for r in run.lines] == ["a0", "a1", "a2"]
    assert run.code == 0


def test_template_and_media_from_flags(wa_sandbox):
    """--template with --param builds the body component; --document sends by link."""
    token = wa_sandbox.issue_token()
    env = env_for(wa_sandbox, token)
    assert (
        cli("send", "--to", TO, "--template", "hello_world", "--lang", "en_US", env=env).code == 0
    )
    run = cli(
        "send",
        "--to",
        TO,
        "--document",
        "https://example.com/a.pdf",
        "--filename",
        "a.pdf",
        env=env,
    )
    assert run.code == 0
    payloads = [m.payload for m in wa_sandbox.messages()]
    assert payloads[0]["template"]["name"] == "hello_world"
    assert payloads[1]["document"] == {"link": "https://example.com/a.pdf", "filename": "a.pdf"}


@pytest.mark.parametrize("args", [["--token", "EAAsecretsecretsecretsecret1"], ["--token=EAAsecretsecretsecretsecret1"], ["--access-token", "EAAsecretsecretsecretsecret1"], ["--app-token=1|secretsecretsecretsecretsecret"]], ids=["token", "token=", "access-token", "app-token"])  # fmt: skip
def test_a_token_on_the_command_line_is_refused(wa_sandbox, args):
    """A token flag is a usage error that says why and never echoes the value."""
    run = cli("send", "--to", TO, "--text", "hi", *args, env=env_for(wa_sandbox))
    assert run.code == 2
    assert run.line["category"] == "usage"
    assert "never accepted as a command-line argument" in run.line["error"]["message"]
    assert "secretsecret" not in run.stdout + run.stderr
    assert wa_sandbox.requests() == ()


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        pytest.param(["--to", TO], {}, "say what to send", id="no-kind"),
        pytest.param(["--text", "hi"], {}, "--to is required", id="no-to"),
        pytest.param(["--to", TO, "--text", "x"], {"WA_PHONE_NUMBER_ID": None}, "no sender", id="no-sender"),
        pytest.param(["--to", TO, "--text", "x"], {"WA_TOKEN_FILE": "/run/x"}, "configure one token source", id="two-sources"),
        pytest.param(["--to", TO, "--text", "x", "--input", "f"], {}, "not both", id="flags-and-input"),
        pytest.param(["--input", "/nonexistent/in.jsonl"], {}, "cannot read it", id="missing-file"),
        pytest.param(["--to", TO, "--text", "x", "--base-url", "ftp://x"], {}, "http(s) URL", id="bad-url"),
        pytest.param(["--to", TO, "--text", "x", "--concurrency", "0"], {}, "positive integer", id="bad-concurrency"),
        pytest.param(["--tok", "x"], {}, "unrecognized arguments", id="no-abbreviations"),
        pytest.param(["--input", "-"], {}, "no intent", id="empty-stdin"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_json_line_exit_2(wa_sandbox, args, extra, message):
    """Bad arguments and configuration print one usage line on stdout and exit 2; nothing is sent."""
    run = cli("send", *args, env=env_for(wa_sandbox, "EAAtokentokentokentokentoken1", **extra))
    assert run.code == 2, run.stdout
    assert run.line["category"] == "usage"
    assert message in run.line["error"]["message"]
    assert wa_sandbox.requests() == ()


def test_token_sources_file_and_missing(wa_sandbox, tmp_path):
    """WA_TOKEN_FILE is read; with no token at all each intent is token_unavailable (10)."""
    token = wa_sandbox.issue_token()
    path = tmp_path / "token"
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    assert (
        cli(
            "send", "--to", TO, "--text", "hi", env=env_for(wa_sandbox, WA_TOKEN_FILE=str(path))
        ).code
        == 0
    )
    run = cli("send", "--to", TO, "--text", "hi", env=env_for(wa_sandbox))
    assert (run.code, run.line["category"]) == (10, "token_unavailable")
    assert "WA_ACCESS_TOKEN" in run.line["error"]["message"]


def test_maybe_delivered_is_its_own_state(wa_sandbox):
    """An answer lost after Meta accepted the send is maybe_delivered, not retried."""
    token = wa_sandbox.issue_token()
    wa_sandbox.fail_next("drop_after_accept")
    run = cli("send", "--to", TO, "--text", "hi", env=env_for(wa_sandbox, token))
    line = run.line
    assert (line["state"], line["category"], run.code) == ("maybe_delivered", "transient", 8)
    assert line["error"]["maybe_delivered"] is True
    assert len(wa_sandbox.messages()) == 1


def test_retries_and_outcome_come_from_the_guard(wa_sandbox):
    """A transient failure is retried by the guard (attempts 2); the batch is concurrent."""
    token = wa_sandbox.issue_token()
    wa_sandbox.fail_next(131016, recipient="+15550000001")
    lines = [intent("x", idempotency_key=f"k{i}") for i in range(5)]
    lines.append(json.dumps({"to": "+15550000001", "type": "text", "text": {"body": "x"}}))
    run = cli("send", "--concurrency", "4", env=env_for(wa_sandbox, token), stdin="\n".join(lines))
    assert run.code == 0
    assert [r["attempts"] for r in run.lines] == [1, 1, 1, 1, 1, 2]


def test_text_format_is_short(wa_sandbox):
    """--format text prints a sentence per result and a summary, no JSON."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(token, "expired")
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", "send", "--to", TO, "--text", "hi", "--format", "text"],
        capture_output=True, text=True, env=env_for(wa_sandbox, token), timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stdout.startswith("line 1: failed token_expired (exit 3): ")
    assert "1 intents: 1 failed" in proc.stderr


def test_sigterm_finishes_in_flight_and_reports_the_rest(wa_sandbox):
    """SIGTERM: the send in flight completes, the rest are not sent and say so, then the summary."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_faults(latency=0.4)
    lines = "\n".join(intent("x", idempotency_key=f"k{i}") for i in range(8))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_auth", "send", "--concurrency", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env_for(wa_sandbox, token), text=True,
    )  # fmt: skip
    try:
        proc.stdin.write(lines)
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it again
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready
        first = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first["state"] == "delivered"
    results = [first, *validate_lines(rest)]
    assert len(results) == 8
    states = [r["state"] for r in results]
    delivered = states.count("delivered")
    assert states == ["delivered"] * delivered + ["failed"] * (8 - delivered)
    assert 1 <= delivered < 8
    assert all(r["reason"] == "interrupted" for r in results[delivered:])
    assert "SIGTERM" in results[-1]["error"]["message"]
    summary = validate_lines(err)[-1]
    assert summary["summary"]["interrupted"] is True
    assert proc.returncode == 8
    assert len(wa_sandbox.messages()) == delivered


# --- check --------------------------------------------------------------------------------------


def test_check_valid_expiring_and_text(wa_sandbox):
    """A valid token exits 0; within --warn-days it exits 12; --format text says it plainly."""
    token = wa_sandbox.issue_token(expires_in=3 * 86400)
    env = env_for(wa_sandbox, token, WA_BUSINESS_ACCOUNT_ID=wa_sandbox.business_account_id)
    run = cli("check", env=env)
    assert run.code == 0
    line = run.line
    assert line["valid"] is True
    assert line["number_access"] is True
    assert 2.9 < line["expires_in_days"] <= 3
    assert line["missing_scopes"] == []
    warned = cli("check", "--warn-days", "7", env=env)
    assert (warned.code, warned.line["expiring"], warned.line["category"]) == (12, True, None)
    text = subprocess.run(
        [sys.executable, "-m", "wa_auth", "check", "--warn-days", "7", "--format", "text"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert "valid; expires in 3 days" in text.stdout
    assert "EXPIRING within 7 days" in text.stdout


@pytest.mark.parametrize(
    ("setup", "scopes", "category", "code"),
    [
        pytest.param(lambda sb, t: sb.set_token_state(t, "expired"), None, "token_expired", 3, id="expired"),
        pytest.param(lambda sb, t: sb.set_token_state(t, "revoked_logged_out"), None, "token_revoked", 4, id="revoked"),
        pytest.param(lambda sb, t: None, ["whatsapp_business_management"], "insufficient_permission", 5, id="de-scoped"),
        pytest.param(lambda sb, t: sb.set_account_state("locked"), None, "account_state", 6, id="locked"),
    ],
)  # fmt: skip
def test_check_failures(wa_sandbox, setup, scopes, category, code):
    """An unhealthy token or number is the failure's category and exit code."""
    token = wa_sandbox.issue_token(**({"scopes": scopes} if scopes else {}))
    setup(wa_sandbox, token)
    run = cli("check", "--warn-days", "7", env=env_for(wa_sandbox, token))
    assert (run.code, run.line["category"], run.line["ok"]) == (code, category, False)
    assert run.line["error"]["category"] == category


# --- classify -----------------------------------------------------------------------------------

PAYLOADS = ROOT / "tests" / "payloads" / "n8n"


@pytest.mark.parametrize(
    ("name", "source", "category", "ambiguous"),
    [
        ("graph-190-463.json", "graph", "token_expired", False),
        ("http-request-error-401-malformed.json", "n8n_http_request", "token_revoked", False),
        ("http-request-error-401-expired.json", "n8n_http_request", "token_expired", False),
        ("http-request-error-403-locked.json", "n8n_http_request", "account_state", False),
        ("http-request-full-response-400.json", "n8n_full_response", "rate_limited", False),
        ("whatsapp-node-error-401.json", "n8n_whatsapp", "token_revoked", True),
        ("whatsapp-node-error-403.json", "n8n_whatsapp", "insufficient_permission", True),
        ("node-api-error-500.json", "n8n_node_error", "transient", False),
        ("webhook-status-error-131031.json", "webhook", "account_state", False),
    ],
    ids=lambda v: v if isinstance(v, str) and v.endswith(".json") else None,
)
def test_classify_reads_graph_and_n8n_shapes(name, source, category, ambiguous):
    """Graph bodies and n8n 2.8.4's own error outputs are classified by the library's table."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    run = cli("classify", "--input", str(PAYLOADS / name), env=env)
    line = run.line
    assert (line["source"], line["category"], line["error"]["ambiguous"]) == (
        source,
        category,
        ambiguous,
    )
    assert run.code == _codes.for_category(category)


def test_classify_text_b64_and_status():
    """An HTML page is classified by --status; --input-b64 works; --format text is two lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", "classify", "--status", "502"],
        input=html, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    line = Run.of(proc).line
    assert (line["source"], line["category"], proc.returncode) == ("text", "transient", 8)
    body = json.dumps({"error": {"code": 131031, "message": "Business account locked"}})
    run = cli("classify", "--input-b64", base64.b64encode(body.encode()).decode(), env=env)
    assert run.line["category"] == "account_state"
    text = subprocess.run(
        [sys.executable, "-m", "wa_auth", "classify", "--format", "text"],
        input=body, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert text.stdout.startswith("account_state (exit 6, not retryable)")
    assert "operator action:" in text.stdout


# --- the contract itself ------------------------------------------------------------------------


def test_every_category_has_an_exit_code_and_the_schema_is_current():
    """Codes cover the table's categories; docs/wa-auth.schema.json is what _schema renders."""
    assert set(_codes.BY_CATEGORY) == {*_table.CATEGORIES, "usage", "internal"}
    assert SCHEMA["$defs"]["category"]["enum"] == [*_table.CATEGORIES, "usage", "internal"]
    assert SCHEMA["$defs"]["exit_code"]["enum"] == list(range(15))
    assert (ROOT / "docs" / "wa-auth.schema.json").read_text(
        encoding="utf-8"
    ) == _schema.render(), "regenerate: python -m wa_auth._cli._schema > docs/wa-auth.schema.json"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_issue_fixes_these_exit_codes():
    """The exit codes are a stable contract: the numbers of issue 13."""
    assert _codes.NAMES == {
        0: "ok", 1: "internal", 2: "usage", 3: "token_expired", 4: "token_revoked",
        5: "insufficient_permission", 6: "account_state", 7: "rate_limited", 8: "transient",
        9: "invalid_request", 10: "token_unavailable", 11: "unknown", 12: "expiring",
        13: "invalid_signature", 14: "queued",
    }  # fmt: skip


def test_docs_exit_code_table_matches_the_codes():
    """docs/cli.md lists every exit code with its name, as _codes has them."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for code, name in _codes.NAMES.items():
        assert f"| {code} | `{name}` |" in text, (code, name)


@pytest.mark.parametrize("command", ["send", "check", "classify", "sandbox"])
def test_help_shows_an_example(command):
    """`wa-auth --help` and each command's help show an example."""
    for args in (["--help"], [command, "--help"]):
        proc = subprocess.run(
            [sys.executable, "-m", "wa_auth", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0
        assert "example" in proc.stdout
        assert f"wa-auth {command}" in proc.stdout


def test_an_internal_error_is_a_json_line_not_a_traceback(monkeypatch, capsys):
    """A bug below the CLI is printed as an `internal` line with exit 1, never a traceback."""
    from wa_auth._cli import _send

    def boom(args):
        raise KeyError("EAAleakedleakedleakedleaked1")

    monkeypatch.setattr(_send, "run", boom)
    assert main(["send", "--to", TO, "--text", "hi"]) == 1
    out = capsys.readouterr().out
    (line,) = validate_lines(out)
    assert line["category"] == "internal"
    assert "KeyError" in line["error"]["message"]
    assert "EAAleaked" not in out
    assert main(["send", "--to", TO, "--text", "hi", "--exit-zero"]) == 0


def test_a_130429_storm_holds_the_number_without_rate(wa_sandbox):
    """Without --rate the CLI's guard still holds the number for Meta's Retry-After: a storm of
    130429 costs about one extra request per intent in flight, not --max-attempts each."""
    import threading

    token = wa_sandbox.issue_token()
    n = 16
    wa_sandbox.fail_next(130429, times=None)  # every send, until the storm ends
    storm = threading.Timer(4.5, wa_sandbox.clear_seeded_faults)
    storm.start()
    try:
        lines = "\n".join(intent(f"storm {i}", idempotency_key=f"storm-{i}") for i in range(n))
        # One probe a second (the sandbox's Retry-After) for 4.5 s: on a loaded machine the same
        # intent can be the one that probes in four of those seconds, which spent the default
        # four attempts (seen: one intent of 16 failed). Eight leave room, and the old
        # behaviour would cost 8n here, well past the bound below.
        args = ("send", "--concurrency", str(n), "--max-attempts", "8")
        run = cli(*args, env=env_for(wa_sandbox, token), stdin=lines)
    finally:
        storm.cancel()
    assert [line["state"] for line in run.lines] == ["delivered"] * n, run.stderr
    sends = [r for r in wa_sandbox.requests() if r.endpoint == "send_message"]
    # n first tries, about a probe per second of the storm, then n deliveries: about 2n + 5 on
    # a quiet machine; the old behaviour was 4 attempts per intent (4n), every one of them
    # queued. The bound leaves room for a loaded machine, where a slow process sees the hold
    # expire between its sends (seen: 49), and still tells the two apart.
    assert len(sends) < 4 * n, len(sends)
