"""`wa-auth send` and `classify` on hostile input, as real processes against the sandbox.

One bad line (half an emoji, invalid UTF-8, JSON nested thousands deep, a duplicate key, NaN)
is that line's `invalid_request` result and changes nothing for the others; a closed stdout
stops the batch the way SIGTERM does; a peer's text that UTF-8 cannot encode is printed as
valid JSON. Every byte printed is decoded as strict UTF-8 and every line validated against
docs/wa-auth.schema.json.
"""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_peer import graph_peer
from running import TO, VALIDATOR, Run, cli, env_for, intent, validate_lines
from wa_auth._cli import _input, _output
from wa_auth.errors import ConfigurationError
from wa_auth.intents import Intent
from wa_auth.outbox import SqliteOutbox

#: What JavaScript's JSON.stringify writes for a string cut after the first half of 😀.
CUT_LINE = '{"to": "+15551234567", "type": "text", "text": {"body": "Your code \\ud83d"}, "idempotency_key": "k16"}'  # fmt: skip


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- one bad line changes nothing for the others ------------------------------------------------


def test_half_an_emoji_is_its_own_line_and_the_other_thirty_go_out(wa_sandbox):
    """31 intents, the 16th cut inside an emoji: 31 lines in order, 30 delivered, exit 9."""
    token = wa_sandbox.issue_token()
    lines = [intent(idempotency_key=f"k{i}") for i in range(1, 32)]
    lines[15] = CUT_LINE
    run = cli("send", env=env_for(wa_sandbox, token), stdin="\n".join(lines).encode())
    assert [r["line"] for r in run.lines] == list(range(1, 32))
    assert [r["state"] for r in run.lines] == ["delivered"] * 15 + ["failed"] + ["delivered"] * 15
    bad = run.lines[15]
    assert (bad["category"], bad["idempotency_key"], bad["reason"]) == (
        "invalid_request",
        "k16",
        "invalid_request",
    )
    assert "line 16: text object: text has half of a character" in bad["error"]["message"]
    assert run.code == 9
    assert (run.summary["delivered"], run.summary["failed"]) == (30, 1)
    assert len(wa_sandbox.messages()) == 30
    assert "k16" not in {m.idempotency_key for m in wa_sandbox.messages()}


def test_a_json_array_with_half_an_emoji_is_the_same(wa_sandbox, tmp_path):
    """The same batch as n8n's JSON array file: the same lines and the same 30 sends."""
    token = wa_sandbox.issue_token()
    items = [intent(idempotency_key=f"k{i}") for i in range(1, 32)]
    items[15] = CUT_LINE
    path = tmp_path / "batch.json"
    path.write_text("[" + ",\n".join(items) + "]", encoding="utf-8")
    run = cli("send", "--input", str(path), env=env_for(wa_sandbox, token))
    assert [r["state"] for r in run.lines].count("delivered") == 30
    assert run.lines[15]["category"] == "invalid_request"
    assert (run.code, len(wa_sandbox.messages())) == (9, 30)


def test_a_line_separator_inside_a_string_does_not_split_the_line(wa_sandbox):
    """U+2028 and U+0085 are characters inside a JSON string, not line breaks: one intent."""
    token = wa_sandbox.issue_token()
    body = "first\u2028second\x85third\u2029fourth"
    line = json.dumps({"to": TO, "type": "text", "text": {"body": body}}, ensure_ascii=False)
    run = cli("send", env=env_for(wa_sandbox, token), stdin=line.encode())
    assert [r["state"] for r in run.lines] == ["delivered"]
    assert wa_sandbox.messages()[-1].payload["text"]["body"] == body


def test_deep_nesting_is_that_lines_invalid_request(wa_sandbox):
    """JSON nested 100 000 deep, or 100 deep inside an intent, is that line's result only."""
    token = wa_sandbox.issue_token()
    deep_inside = json.dumps({"to": TO, "type": "text", "text": {"body": "x"}})[:-1]
    deep_inside += ', "idempotency_key": "k4", "consumer": ' + nested(100) + "}"
    lines = [
        intent(idempotency_key="k1"),
        nested(100_000),
        intent(idempotency_key="k3"),
        deep_inside,
        intent(idempotency_key="k5"),
    ]
    run = cli("send", env=env_for(wa_sandbox, token), stdin="\n".join(lines).encode())
    assert [r["state"] for r in run.lines] == [
        "delivered",
        "failed",
        "delivered",
        "failed",
        "delivered",
    ]
    for bad in (run.lines[1], run.lines[3]):
        assert bad["category"] == "invalid_request"
        assert "nested deeper than 64 levels" in bad["error"]["message"]
    assert run.code == 9
    assert sorted(m.idempotency_key for m in wa_sandbox.messages()) == ["k1", "k3", "k5"]


def test_a_deep_json_array_is_a_usage_error_and_nothing_is_sent(wa_sandbox, tmp_path):
    """An array file that cannot be read as a whole is one usage error (exit 2): nothing goes."""
    token = wa_sandbox.issue_token()
    path = tmp_path / "deep.json"
    path.write_text(
        "[" + intent(idempotency_key="k1") + "," + nested(100_000) + "]", encoding="utf-8"
    )
    run = cli("send", "--input", str(path), env=env_for(wa_sandbox, token))
    assert run.code == 2
    (line,) = run.lines
    assert line["category"] == "usage"
    assert "nested deeper than 64 levels" in line["error"]["message"]
    assert wa_sandbox.requests() == ()


@pytest.mark.parametrize("source", ["stdin", "file"])
def test_invalid_utf8_is_that_lines_result_from_stdin_and_from_a_file(wa_sandbox, tmp_path, source):
    """A line of Latin-1 bytes is that line's invalid_request, the same on stdin and in a file."""
    token = wa_sandbox.issue_token()
    data = b"\n".join(
        [
            intent(idempotency_key="k1").encode(),
            b'{"to": "+15551234567", "type": "text", "text": {"body": "na\xefve"}}',
            intent(idempotency_key="k3").encode(),
        ]
    )
    if source == "file":
        path = tmp_path / "in.jsonl"
        path.write_bytes(data)
        run = cli("send", "--input", str(path), env=env_for(wa_sandbox, token))
    else:
        run = cli("send", env=env_for(wa_sandbox, token), stdin=data)
    assert [r["state"] for r in run.lines] == ["delivered", "failed", "delivered"]
    message = run.lines[1]["error"]["message"]
    assert "line 2: not UTF-8: byte 0xef at column 60" in message
    assert run.code == 9
    assert len(wa_sandbox.messages()) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('{"to": "+15551234567", "type": "text", "text": {"body": "x"}, "to": "+15550000000"}', "the key 'to' appears twice", id="duplicate-to"),
        pytest.param('{"to": "+15551234567", "type": "text", "text": {"body": "x", "body": "y"}}', "the key 'body' appears twice", id="duplicate-body"),
        pytest.param('{"to": "+15551234567", "type": "text", "text": {"body": "x", "preview_url": NaN}}', "NaN is not JSON", id="nan"),
        pytest.param('{"to": "+15551234567", "type": "text", "text": {"body": "x"}, "created_at": 1e999}', "1e999 is out of range", id="huge-number"),
        pytest.param('{"v": true, "to": "+15551234567", "type": "text", "text": {"body": "x"}}', "v must be the intent version", id="v-true"),
        pytest.param('{"to": "+15551234567", "type": "text", "text": {"body": "x"}, "idempotency_key": "k\\u0000"}', "idempotency_key has a control character", id="nul-key"),
    ],
)  # fmt: skip
def test_smaller_input_mistakes_are_that_lines_invalid_request(wa_sandbox, line, message):
    """Duplicate keys, NaN, 1e999, `"v": true` and a NUL in a key: refused, never guessed."""
    token = wa_sandbox.issue_token()
    run = cli(
        "send",
        env=env_for(wa_sandbox, token),
        stdin=(line + "\n" + intent(idempotency_key="ok")).encode(),
    )
    assert [r["state"] for r in run.lines] == ["failed", "delivered"]
    assert run.lines[0]["category"] == "invalid_request"
    assert message in run.lines[0]["error"]["message"]
    assert [m.idempotency_key for m in wa_sandbox.messages()] == ["ok"]


def test_invalid_utf8_in_a_flag_is_an_invalid_request(wa_sandbox):
    """`--text` with bytes that are not UTF-8 reaches Python as half surrogates: refused."""
    token = wa_sandbox.issue_token()
    run = cli(
        "send", "--to", TO, "--text", os.fsdecode(b"na\xefve"), env=env_for(wa_sandbox, token)
    )
    (line,) = run.lines
    assert (line["category"], run.code) == ("invalid_request", 9)
    assert "text has half of a character" in line["error"]["message"]
    assert wa_sandbox.requests() == ()


# --- classify -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stdin",
    [nested(100_000).encode(), b'{"error": ' * 100 + b"1" + b"}" * 100],
    ids=["100000-deep", "100-deep"],
)
def test_classify_of_deep_json_is_a_usage_error(stdin):
    """`classify` of JSON nested too deep exits 2 with a usage line, never 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    run = cli("classify", env=env, stdin=stdin)
    assert run.code == 2
    assert "nested deeper than 64 levels" in run.lines[0]["error"]["message"]


def test_classify_of_invalid_utf8_is_the_same_from_stdin_and_a_file(tmp_path):
    """Bytes that are not UTF-8 are a usage error (exit 2) on stdin as in a file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    data = b'{"error": {"code": 190, "message": "na\xefve"}}'
    path = tmp_path / "e.json"
    path.write_bytes(data)
    runs = [cli("classify", env=env, stdin=data), cli("classify", "--input", str(path), env=env)]
    assert [r.code for r in runs] == [2, 2]
    for run in runs:
        assert "not UTF-8" in run.lines[0]["error"]["message"]


# --- a peer's text that UTF-8 cannot encode -----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "category"),
    [
        pytest.param(400, b'{"error": {"message": "(#100) Invalid parameter \\ud800 here", "type": "OAuthException", "code": 100, "fbtrace_id": "A\\udfff"}}', "invalid_request", id="error-message"),
        pytest.param(200, b'{"messaging_product": "whatsapp", "contacts": [{"input": "x", "wa_id": "\\ud83d"}], "messages": [{"id": "wamid.\\ud83d"}]}', None, id="message-id"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("format_", ["json", "text"])
def test_a_peers_half_surrogate_is_printed_as_valid_utf8(status, body, category, format_):
    """Graph text holding half a surrogate pair prints as valid UTF-8 JSON (or text), not exit 1."""
    with graph_peer(status, body) as peer:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "VAULT_"))}
        env.update(
            WA_BASE_URL=peer.base_url, WA_PHONE_NUMBER_ID="1", WA_ACCESS_TOKEN="EAA" + "x" * 40
        )
        proc = subprocess.run(
            [sys.executable, "-m", "wa_auth", "send", "--format", format_, "--input", "-"],
            input=(intent(idempotency_key="a") + "\n" + intent(idempotency_key="b")).encode(), capture_output=True, env=env,
            timeout=120, check=False,
        )  # fmt: skip
    stdout, stderr = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert "Traceback" not in stderr
    assert "internal" not in stdout + stderr
    if format_ == "json":
        run = Run(proc.returncode, proc.stdout, proc.stderr)
        assert [r["category"] for r in run.lines] == [category, category]
        assert "\ufffd" in json.dumps(run.lines[0], ensure_ascii=False)
        if category is not None:  # one U+FFFD for the one half
            assert run.lines[0]["error"]["message"] == "(#100) Invalid parameter \ufffd here"
    else:
        assert stdout.count("\n") == 2
    assert proc.returncode == (0 if category is None else 9)


# --- a closed stdout ----------------------------------------------------------------------------


def test_a_closed_stdout_stops_the_batch_like_sigterm(wa_sandbox, tmp_path):
    """`send | head -1`: no traceback; in-flight sends settle; the rest stay pending in the outbox."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_faults(latency=0.3)
    outbox = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_auth", "send", "--outbox", str(outbox), "--concurrency", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env_for(wa_sandbox, token),
    )  # fmt: skip
    try:
        proc.stdin.write("\n".join(intent(idempotency_key=f"k{i}") for i in range(12)).encode())
        proc.stdin.close()
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()  # what `head -1` does after its line
        code = proc.wait(timeout=60)  # stderr holds a few lines: no pipe fills up
        stderr = proc.stderr.read()
        proc.stderr.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = stderr.decode("utf-8")
    assert "Traceback" not in text
    assert "BrokenPipe" not in text
    assert first["state"] == "delivered"
    summary = validate_lines(text)[-1]
    assert summary["summary"]["interrupted"] is True
    assert summary["summary"]["total"] == 12
    with SqliteOutbox(outbox) as box:
        states = {row.intent.idempotency_key: row.state for row in box.list(limit=100)}
    assert "sending" not in states.values()
    delivered = {m.idempotency_key for m in wa_sandbox.messages()}
    assert {k for k, s in states.items() if s == "delivered"} == delivered
    assert {s for k, s in states.items() if k not in delivered} == {"pending"}
    assert 1 <= len(delivered) < 12
    assert code == 14  # the most severe line: the rest are queued in the outbox


def test_a_closed_stdout_without_an_outbox_reports_on_stderr(wa_sandbox):
    """Without an outbox the summary on stderr still counts every intent; exit 8 (not sent)."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_faults(latency=0.3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_auth", "send", "--concurrency", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env_for(wa_sandbox, token),
    )  # fmt: skip
    try:
        proc.stdin.write("\n".join(intent(idempotency_key=f"k{i}") for i in range(6)).encode())
        proc.stdin.close()
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready
        proc.stdout.readline()
        proc.stdout.close()
        code = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode("utf-8")
        proc.stderr.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr
    summary = validate_lines(stderr)[-1]["summary"]
    assert (summary["total"], summary["interrupted"]) == (6, True)
    assert summary["delivered"] == len(wa_sandbox.messages()) < 6
    assert code == 8


# --- in process: any bytes are items or a usage error -------------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from([intent(idempotency_key="k").encode(), CUT_LINE.encode(), nested(5000).encode(), b"\xff\xfe", b"\r", b"\n", b"[", b"\xef\xbb\xbf", "\u2028".encode()]),
            st.text().map(lambda t: t.encode("utf-8", "surrogatepass")),
        ),
        max_size=8,
    )
)  # fmt: skip
def test_any_bytes_are_one_item_per_line_or_a_usage_error(chunks):
    """`parse_input` on any bytes: intents and invalid_request lines, or ConfigurationError."""
    data = b"".join(chunks)
    try:
        items = _input.parse_input(data)
    except ConfigurationError:
        return  # a usage error for the whole input (a JSON array that cannot be read)
    numbers = [line for line, _ in items]
    assert numbers == sorted(set(numbers))
    for line, item in items:
        if not isinstance(item, Intent):
            VALIDATOR.validate(item)
            assert item["category"] == "invalid_request"
            assert item["error"]["message"].startswith(f"line {line}: ")
        _output.write(item if isinstance(item, dict) else {"line": line}, _strict_stream())


def _strict_stream() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(st.characters(codec=None)), inner, max_size=4),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(st.text(st.characters(codec=None)), JSONISH, max_size=5))
@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_the_printer_writes_one_valid_line_for_any_data(obj, encoding):
    """Surrogates, NaN and infinities from a peer: one valid JSON line, on any stream encoding."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, errors="strict", write_through=True)
    _output.write(obj, stream)
    text = raw.getvalue().decode(encoding)
    assert text.endswith("\n")
    assert text.count("\n") == 1
    parsed = json.loads(text, parse_constant=_no_constant)
    assert isinstance(parsed, dict)
    assert len(parsed) <= len(obj)


def _no_constant(name: str) -> object:
    raise AssertionError(f"{name} printed")


#: Runs the CLI with a bug planted in the guard: the intent keyed `boom` raises a TypeError.
WITH_A_BUG = (
    "import sys, wa_auth.guards as g\n"
    "asend = g.Guard.asend\n"
    "async def planted(self, intent):\n"
    "    if intent.idempotency_key == 'boom':\n"
    "        raise TypeError('a planted bug')\n"
    "    return await asend(self, intent)\n"
    "g.Guard.asend = planted\n"
    "from wa_auth._cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_a_bug_in_one_send_is_that_intents_line_only(wa_sandbox):
    """A bug while sending one intent is its own `internal` line; the rest are sent, in order."""
    token = wa_sandbox.issue_token()
    proc = subprocess.run(
        [sys.executable, "-c", WITH_A_BUG, "send"],
        input="\n".join([intent(idempotency_key="k1"), intent(idempotency_key="boom"), intent(idempotency_key="k3")]).encode(),
        capture_output=True, env=env_for(wa_sandbox, token), timeout=120, check=False,
    )  # fmt: skip
    stdout = proc.stdout.decode("utf-8")
    assert "Traceback" not in proc.stderr.decode("utf-8")
    lines = validate_lines(stdout)
    assert [r["state"] for r in lines] == ["delivered", "maybe_delivered", "delivered"]
    assert (lines[1]["category"], lines[1]["idempotency_key"]) == ("internal", "boom")
    assert "TypeError: a planted bug" in lines[1]["error"]["message"]
    assert proc.returncode == 1
    assert sorted(m.idempotency_key for m in wa_sandbox.messages()) == ["k1", "k3"]


def test_write_reports_a_reader_that_went_away():
    """A closed pipe, a full disk or a closed stream: `write` returns False, never raises."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w", encoding="utf-8") as pipe:
        assert _output.write({"a": 1}, pipe) is False
        assert _output.write({"a": 2}, pipe) is True  # now the null device
    with open(os.devnull, "w", encoding="utf-8") as closed:  # noqa: PTH123
        pass
    assert _output.write({"a": 1}, closed) is False
    if os.path.exists("/dev/full"):  # noqa: PTH110
        with open("/dev/full", "w", encoding="utf-8") as full:  # noqa: PTH123
            assert _output.write_text("x" * 10_000, full) is False
