"""`wa-auth webhook verify|parse` as real processes; every printed line schema-valid.

Signatures are computed here with `hmac`/`hashlib` over the exact bytes. The app secret comes
from `WA_AUTH_APP_SECRET` or `--app-secret-file`, never a flag, and appears in no output. A
bad signature is exit 13 with the reason; `--exit-zero` keeps it in the JSON. `parse` prints
one line per typed event of each of Meta's payloads in `tests/payloads/webhooks/`. A property
test runs `main` in-process over any body and header: never a traceback, and only the right
signature passes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from running import cli, env_for, valid
from wa_auth._cli import main

PAYLOADS = Path(__file__).resolve().parent / "payloads" / "webhooks"
SECRET = "6f1c3a0d9e8b7a65f4e3d2c1b0a99887"
OLD_SECRET = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def body_of(name: str) -> bytes:
    data = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    # Meta's bytes: compact, non-ASCII escaped.
    return json.dumps(data["payload"], separators=(",", ":")).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def env(**extra: str | None) -> dict[str, str]:
    extra.setdefault("WA_AUTH_APP_SECRET", SECRET)
    return env_for(None, None, **extra)


BODY = body_of("status_failed_131031")


# --- verify --------------------------------------------------------------------------------------


def test_a_signed_body_is_verified_from_stdin_or_a_file(tmp_path):
    """The signature from --signature, or from WA_AUTH_WEBHOOK_SIGNATURE; exit 0."""
    path = tmp_path / "body.json"
    path.write_bytes(BODY)
    runs = [
        cli("webhook", "verify", "--signature", sign(BODY), env=env(), stdin=BODY),
        cli(
            "webhook", "verify", "--input", str(path), env=env(WA_AUTH_WEBHOOK_SIGNATURE=sign(BODY))
        ),
        cli(
            "webhook",
            "verify",
            "--input-b64",
            base64.b64encode(BODY).decode(),
            "--signature",
            sign(BODY),
            env=env(),
        ),
    ]
    for run in runs:
        assert run.code == 0
        line = run.line
        assert (line["verified"], line["reason"], line["secret_index"]) == (True, None, 0)
        assert (line["body_bytes"], line["events"]) == (len(BODY), None)
        assert SECRET not in run.stdout + run.stderr


def test_parse_adds_the_events_for_a_switch_to_route_on():
    """--parse: the failed status, classified, in the verify line."""
    run = cli("webhook", "verify", "--parse", "--signature", sign(BODY), env=env(), stdin=BODY)
    (event,) = run.line["events"]
    assert (event["type"], event["status"], event["category"], event["idempotency_key"]) == (
        "status",
        "failed",
        "account_state",
        "order-7",
    )
    assert event["error"]["code"] == 131031


def test_a_signed_body_of_another_shape_is_verified_with_no_events():
    """--parse on a body Meta signed that is no payload: verified, `events` empty, exit 0."""
    body = b'{"object": "page", "entry": "not a list"}'
    run = cli("webhook", "verify", "--parse", "--signature", sign(body), env=env(), stdin=body)
    assert (run.code, run.line["verified"], run.line["events"]) == (0, True, [])


def test_a_rotation_window_in_the_secret_file(tmp_path):
    """One secret per line: the second one matches (secret_index 1); the file's text unseen."""
    secrets_file = tmp_path / "app_secret"
    secrets_file.write_text(f"{OLD_SECRET}\n{SECRET}\n", encoding="utf-8")
    run = cli(
        "webhook",
        "verify",
        "--app-secret-file",
        str(secrets_file),
        "--signature",
        sign(BODY),
        env=env(WA_AUTH_APP_SECRET=None),
        stdin=BODY,
    )
    assert (run.code, run.line["secret_index"]) == (0, 1)
    assert OLD_SECRET not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("header", "body", "reason"),
    [
        (None, BODY, "missing_header"),
        ("", BODY, "missing_header"),
        ("sha1=" + "0" * 40, BODY, "wrong_scheme"),
        ("sha256=zz", BODY, "malformed_signature"),
        (sign(BODY), BODY.replace(b"order-7", b"order-8"), "mismatch"),
        (sign(BODY, "not the app secret"), BODY, "mismatch"),
    ],
    ids=["unsigned", "empty", "sha1", "malformed", "tampered", "other-secret"],
)
def test_a_bad_signature_is_exit_13_naming_the_reason(header, body, reason):
    """Exit 13, category invalid_signature, the reason; --exit-zero keeps 13 in the JSON."""
    args = ["webhook", "verify"] + (["--signature", header] if header is not None else [])
    run = cli(*args, env=env(), stdin=body)
    assert run.code == 13
    line = run.line
    assert (line["ok"], line["verified"], line["reason"], line["category"]) == (
        False,
        False,
        reason,
        "invalid_signature",
    )
    assert line["error"]["category"] == "invalid_signature"
    assert SECRET not in run.stdout + run.stderr
    zero = cli(*args, "--exit-zero", env=env(), stdin=body)
    assert (zero.code, zero.line["exit_code"], zero.line["reason"]) == (0, 13, reason)


def test_the_secret_is_never_a_flag_and_must_be_configured(tmp_path):
    """--app-secret is refused before parsing; none, both or an empty file: usage, exit 2."""
    refused = cli("webhook", "verify", f"--app-secret={SECRET}", env=env(), stdin=BODY)
    assert (refused.code, refused.line["category"]) == (2, "usage")
    assert SECRET not in refused.stdout + refused.stderr
    missing = cli("webhook", "verify", env=env(WA_AUTH_APP_SECRET=None), stdin=BODY)
    assert missing.code == 2
    assert "WA_AUTH_APP_SECRET" in missing.line["error"]["message"]
    secrets_file = tmp_path / "s"
    secrets_file.write_text(SECRET, encoding="utf-8")
    both = cli("webhook", "verify", "--app-secret-file", str(secrets_file), env=env(), stdin=BODY)
    assert both.code == 2
    empty = tmp_path / "empty"
    empty.write_text("\n \n", encoding="utf-8")
    for path in (empty, tmp_path / "absent"):
        run = cli(
            "webhook",
            "verify",
            "--app-secret-file",
            str(path),
            env=env(WA_AUTH_APP_SECRET=None),
            stdin=BODY,
        )
        assert run.code == 2
        assert "--app-secret-file" in run.line["error"]["message"]


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        ((), b"", "empty"),
        (("--input", "/nonexistent/body.json"), b"", "cannot read"),
        (("--input-b64", "!!!"), b"", "not base64"),
    ],
    ids=["empty", "missing-file", "bad-base64"],
)
def test_bad_input_is_a_usage_error_naming_it(args, stdin, words):
    """No body, a missing file, bad base64: one usage line, exit 2, never a traceback."""
    run = cli("webhook", "verify", *args, "--signature", sign(BODY), env=env(), stdin=stdin)
    assert (run.code, run.line["category"]) == (2, "usage")
    assert words in run.line["error"]["message"]


def text_run(*args: str, stdin: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wa_auth", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
        check=False,
    )


def test_text_format_is_one_sentence():
    """--format text: a sentence for a person."""
    ok = text_run("webhook", "verify", "--format", "text", "--signature", sign(BODY), stdin=BODY)
    bad = text_run("webhook", "verify", "--format", "text", stdin=BODY)
    assert ok.stdout.startswith("verified")
    assert bad.stdout.startswith("rejected: missing_header")
    assert (ok.returncode, bad.returncode) == (0, 13)
    assert "Traceback" not in ok.stderr + bad.stderr


# --- parse ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in PAYLOADS.glob("*.json")))
def test_parse_prints_one_line_per_typed_event(name):
    """Each of Meta's payloads: as many lines as events, their types and categories (in-process)."""
    data = json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))
    b64 = base64.b64encode(body_of(name)).decode()
    code, lines = run_main("webhook", "parse", "--input-b64", b64)
    assert code == 0
    assert [line["type"] for line in lines] == [e["type"] for e in data["expect"]]
    for line, expect in zip(lines, data["expect"], strict=True):
        if "category" in expect:
            assert line["category"] == expect["category"]
        assert "raw" not in line


def test_parse_raw_adds_the_raw_object_and_text_is_short():
    """--raw: the event's raw object (an inbound message's content); --format text: a line each."""
    body = body_of("message_text")
    raw = cli("webhook", "parse", "--raw", env=env(), stdin=body)
    (line,) = raw.lines
    assert line["type"] == "message"
    assert line["raw"]["type"] == "text"
    text = text_run("webhook", "parse", "--format", "text", stdin=BODY)
    assert text.stdout.split() == [
        "status",
        "failed",
        "account_state",
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
    ]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"entry": [], "entry": []}', b"[1, 2]", b'{"object": "page"}', b"\xff\xfe"],
    ids=["not-json", "duplicate-key", "array", "no-entry", "not-utf8"],
)
def test_parse_refuses_what_is_no_payload(body):
    """Not JSON, a key twice, not an object with an entry list, not UTF-8: exit 2, named."""
    run = cli("webhook", "parse", env=env(), stdin=body)
    assert (run.code, run.line["category"]) == (2, "usage")
    assert "webhook body" in run.line["error"]["message"]


# --- any body, any header (in-process) -----------------------------------------------------------


@contextlib.contextmanager
def app_secret(value: str) -> Iterator[None]:
    before = os.environ.get("WA_AUTH_APP_SECRET")
    os.environ["WA_AUTH_APP_SECRET"] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ["WA_AUTH_APP_SECRET"]
        else:
            os.environ["WA_AUTH_APP_SECRET"] = before


def run_main(*args: str) -> tuple[int, list[dict[str, Any]]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), app_secret(SECRET):
        code = main(list(args))
    assert "Traceback" not in err.getvalue()
    return code, [valid(json.loads(line)) for line in out.getvalue().splitlines() if line]


@settings(max_examples=150, deadline=None)
@given(body=st.binary(min_size=1, max_size=300), header=st.one_of(st.none(), st.text(max_size=80)))
def test_any_body_and_header_never_a_traceback_and_only_the_right_signature_passes(body, header):
    """A random header fails with 13 (or 2 for an empty body); the body's own HMAC passes."""
    b64 = base64.b64encode(body).decode()
    args = ["webhook", "verify", "--input-b64", b64]
    # `--signature=VALUE`: a caller's header may start with "-", which argparse would take for
    # an option after a separate `--signature` (the help says so).
    code, lines = run_main(*args, *([f"--signature={header}"] if header is not None else []))
    if not body.strip():
        assert code == 2
        return
    assert code == (0 if header == sign(body) else 13)
    assert lines[0]["verified"] is (code == 0)
    code, lines = run_main(*args, "--signature", sign(body))
    assert (code, lines[0]["verified"]) == (0, True)


def test_a_secret_pasted_as_the_file_name_is_not_shown():
    """`--app-secret-file <the secret itself>`: unreadable, and neither the name nor the value shown."""
    pasted = "CANARYappsecret" + "0123456789abcdef0123"
    run = cli(
        "webhook",
        "verify",
        "--app-secret-file",
        pasted,
        env=env(WA_AUTH_APP_SECRET=None),
        stdin=BODY,
    )
    assert (run.code, run.line["category"]) == (2, "usage")
    assert "CANARYappsecret" not in run.stdout + run.stderr


# --- cold start ------------------------------------------------------------------------------

#: What `wa-auth webhook verify` (no --parse) must not import: the check is hmac and the errors.
VERIFY_FORBIDDEN = (
    "wa_auth.webhooks",
    "wa_auth.events",
    "wa_auth.outbox",
    "wa_auth._sqlite",
    "sqlite3",
    "asyncio",
    "httpx",
    "aiohttp",
)


def _imported(*args: str) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    """Run `wa-auth webhook` with `-X importtime`; the process and the modules it imported.

    Not measured by coverage (`make cov` starts every subprocess under it): coverage's own
    start-up imports `sqlite3` for its data file, which is not what the command imports.
    """
    unmeasured = {
        name: value
        for name, value in env().items()
        if name not in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")
    }
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wa_auth", "webhook", *args],
        input=BODY,
        capture_output=True,
        env=unmeasured,
        timeout=120,
        check=False,
    )
    lines = [
        line for line in proc.stderr.decode("utf-8").splitlines() if line.startswith("import time:")
    ]
    modules = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # [0] is the header
    assert len(modules) > 10, proc.stderr
    return proc, modules


def _loaded(modules: set[str], name: str) -> bool:
    return any(module == name or module.startswith(name + ".") for module in modules)


def test_verify_imports_only_the_check():
    """`webhook verify` loads none of wa_auth.webhooks, events, SQLite or asyncio; --parse does."""
    proc, modules = _imported("verify", "--signature", sign(BODY))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["verified"] is True
    assert [name for name in VERIFY_FORBIDDEN if _loaded(modules, name)] == []
    assert "wa_auth._signature_check" in modules

    proc, modules = _imported("verify", "--signature", sign(BODY, OLD_SECRET))
    assert proc.returncode == 13
    assert [name for name in VERIFY_FORBIDDEN if _loaded(modules, name)] == []

    proc, modules = _imported("verify", "--parse", "--signature", sign(BODY))
    assert proc.returncode == 0
    assert _loaded(modules, "wa_auth.webhooks")
