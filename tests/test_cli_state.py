"""What a front-door user meets after a fix at Meta, and the small things a new user hit.

`wa-auth state list|clear` and `serve`'s `POST /state/clear` drop verdicts and pauses once
their cause is fixed; the token-health probe drops a verdict Meta no longer confirms;
`--verbose` shows wa_auth's events; `check` speaks plainly; the sandbox's start-up line names
its tokens' ids. Real processes against the sandbox; every printed line and every answer is
validated against the JSON Schema.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import Clock, graph_error
from running import TO, cli, env_for, text_intent, validate_lines
from serving import Service, serving
from wa_auth.pacing import ACCOUNT, Pause
from wa_auth.sandbox import Sandbox
from wa_auth.state import StateFile

# --- wa-auth state list | clear -----------------------------------------------------------------


def test_a_fixed_token_is_refused_until_its_verdict_is_cleared(wa_sandbox, tmp_path):
    """After a sandbox reset the state file refuses the token; `state clear` lets it send again."""
    token = wa_sandbox.demo_tokens()["system_user"]
    state = str(tmp_path / "state.db")
    env = env_for(wa_sandbox, token, WA_AUTH_STATE=state)
    wa_sandbox.set_token_state(token, "expired")
    assert cli("send", "--to", TO, "--text", "a", env=env).code == 3
    wa_sandbox.reset()  # the demo token is valid again
    refused = cli("send", "--to", TO, "--text", "b", env=env)
    assert (refused.code, refused.line["category"]) == (3, "token_expired")
    assert wa_sandbox.requests() == ()  # refused by the verdict, without a request
    listed = cli("state", "list", env=env).line
    assert listed["action"] == "list"
    (verdict,) = listed["verdicts"]
    assert verdict["token_fingerprint"] == refused.line["token_fingerprint"]
    assert verdict["category"] == "token_expired"
    cleared = cli("state", "clear", "--fingerprint", verdict["token_fingerprint"], env=env)
    assert (cleared.code, cleared.line["verdicts"]) == (0, [verdict["token_fingerprint"]])
    assert cli("state", "list", env=env).line["verdicts"] == []
    assert cli("send", "--to", TO, "--text", "c", env=env).code == 0


def test_state_clear_all_drops_verdicts_and_pauses(wa_sandbox, tmp_path):
    """`state clear --all` drops every verdict and every paused number; text output says so."""
    state_path = tmp_path / "state.db"
    with StateFile(state_path) as state:
        state.pauses.put(
            Pause(kind=ACCOUNT, phone_number_id="109000000000002", category="account_state", since=1.0, until=4e9)
        )  # fmt: skip
    token = wa_sandbox.demo_tokens()["system_user"]
    env = env_for(wa_sandbox, token, WA_AUTH_STATE=str(state_path))
    wa_sandbox.set_token_state(token, "revoked_logged_out")
    cli("send", "--to", TO, "--text", "a", env=env)
    listed = cli("state", "list", env=env).line
    assert [v["category"] for v in listed["verdicts"]] == ["token_revoked"]
    assert [(p["kind"], p["phone_number_id"]) for p in listed["pauses"]] == [
        ("account", "109000000000002")
    ]
    text = subprocess.run(
        [sys.executable, "-m", "wa_auth", "state", "clear", "--all", "--format", "text"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert text.returncode == 0
    assert text.stdout.startswith("cleared 1 verdict(s) and 1 pause(s)")
    empty = cli("state", "list", env=env).line
    assert (empty["verdicts"], empty["pauses"]) == ([], [])


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        pytest.param(["state", "clear"], {"WA_AUTH_STATE": "{tmp}/s.db"}, "say what to clear", id="nothing-named"),
        pytest.param(["state", "list"], {}, "name the state file", id="no-file"),
        pytest.param(["state", "list", "--state", "{tmp}/absent.db"], {}, "--state", id="missing-file"),
    ],
)  # fmt: skip
def test_state_usage_errors(args, extra, message, wa_sandbox, tmp_path):
    """`state` without a file, or `clear` without saying what, is a usage error (exit 2)."""
    StateFile(tmp_path / "s.db").close()
    fill = {k: v.replace("{tmp}", str(tmp_path)) for k, v in extra.items()}
    run = cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), env=env_for(wa_sandbox, **fill))
    assert (run.code, run.line["category"]) == (2, "usage")
    assert message in run.line["error"]["message"]
    assert not (tmp_path / "absent.db").exists()  # never created here


# --- wa-auth serve: POST /state/clear and /readyz?refresh ----------------------------------------


def _send(svc: Service) -> dict:
    """POST one text intent to *svc*'s /send; return its answer."""
    return svc.call("POST", "/send", json=text_intent()).json()


def test_serve_state_clear_lets_a_fixed_token_send(wa_sandbox):
    """After a reset, serve refuses the token until POST /state/clear; /readyz follows."""
    token = wa_sandbox.demo_tokens()["system_user"]
    with serving(wa_sandbox, token) as svc:
        assert svc.call("GET", "/readyz").status_code == 200
        wa_sandbox.set_token_state(token, "expired")
        fingerprint = _send(svc)["token_fingerprint"]
        assert svc.call("GET", "/readyz").status_code == 503
        wa_sandbox.reset()
        assert _send(svc)["category"] == "token_expired"  # the verdict, without a request
        assert wa_sandbox.requests() == ()
        assert svc.call("GET", "/readyz").status_code == 503  # the cached health agrees
        cleared = svc.call("POST", "/state/clear")
        assert cleared.status_code == 200
        assert (cleared.json()["verdicts"], cleared.json()["state"]) == ([fingerprint], None)
        assert svc.call("GET", "/readyz").status_code == 200  # no verdict: Meta asked again
        assert _send(svc)["state"] == "delivered"
        assert svc.stop() == 0
        lines = svc.lines()
    assert [line["route"] for line in lines if line.get("event") == "access"].count(
        "/state/clear"
    ) == 1


def test_serve_state_clear_names_what_it_dropped(wa_sandbox, tmp_path):
    """POST /state/clear with fingerprints drops only those; a bad body is a 400 without values."""
    token = wa_sandbox.demo_tokens()["system_user"]
    with serving(wa_sandbox, token, "--state", str(tmp_path / "s.db")) as svc:
        wa_sandbox.set_token_state(token, "revoked_password_changed")
        fingerprint = _send(svc)["token_fingerprint"]
        other = svc.call("POST", "/state/clear", json={"fingerprints": ["sha256:000000000000"]})
        assert (other.json()["verdicts"], other.json()["state"]) == ([], str(tmp_path / "s.db"))
        bad = svc.call("POST", "/state/clear", json={"fingerprints": ["EAAGnotafingerprint1234"]})
        assert bad.status_code == 400
        assert "EAAG" not in bad.text
        assert svc.call("POST", "/state/clear", json={"nope": 1}).status_code == 400
        dropped = svc.call("POST", "/state/clear", json={"fingerprints": [fingerprint]}).json()
        assert dropped["verdicts"] == [fingerprint]


def test_readyz_refresh_drops_a_verdict_meta_no_longer_confirms(wa_sandbox):
    """/readyz?refresh=true asks Meta now: a token it calls valid again loses its verdict."""
    token = wa_sandbox.demo_tokens()["system_user"]
    with serving(wa_sandbox, token) as svc:
        wa_sandbox.set_token_state(token, "expired")
        assert _send(svc)["category"] == "token_expired"
        wa_sandbox.reset()
        assert svc.call("GET", "/readyz").status_code == 503
        ready = svc.call("GET", "/readyz", params={"refresh": "true"})
        assert (ready.status_code, ready.json()["valid"]) == (200, True)
        assert _send(svc)["state"] == "delivered"
        assert svc.call("GET", "/readyz", params={"refresh": "maybe"}).status_code == 400


def test_check_drops_a_verdict_meta_no_longer_confirms(wa_sandbox, tmp_path):
    """`wa-auth check` on a token Meta calls valid again clears its verdict in the state file."""
    token = wa_sandbox.demo_tokens()["system_user"]
    env = env_for(wa_sandbox, token, WA_AUTH_STATE=str(tmp_path / "s.db"))
    wa_sandbox.set_token_state(token, "expired")
    cli("send", "--to", TO, "--text", "a", env=env)
    wa_sandbox.reset()
    assert cli("check", env=env).code == 0
    assert cli("state", "list", env=env).line["verdicts"] == []


# --- --verbose and wa_auth's warnings -----------------------------------------------------------


def test_verbose_prints_each_event_as_one_line(wa_sandbox):
    """`send --verbose` prints a log line per event on stderr: fingerprints, never tokens."""
    token = wa_sandbox.issue_token()
    quiet = cli("send", "--to", TO, "--text", "hi", env=env_for(wa_sandbox, token))
    assert [line for line in quiet.err_lines if line.get("event") == "log"] == []
    run = cli("send", "--to", TO, "--text", "hi", "--verbose", env=env_for(wa_sandbox, token))
    logs = [line for line in run.err_lines if line.get("event") == "log"]
    assert [line["message"] for line in logs] == ["guard.delivered"]
    assert logs[0]["fields"]["token_fingerprint"] == run.line["token_fingerprint"]
    assert token not in run.stdout + run.stderr
    wa_sandbox.set_token_state(token, "expired")
    failed = cli("send", "--to", TO, "--text", "hi", "--verbose", env=env_for(wa_sandbox, token))
    names = [line["message"] for line in failed.err_lines if line.get("event") == "log"]
    assert "auth.failed" in names
    assert "guard.failed" in names
    assert token not in failed.stdout + failed.stderr


def test_serve_verbose_prints_events(wa_sandbox):
    """`serve --verbose` logs wa_auth's events on stderr beside the access log."""
    token = wa_sandbox.issue_token()
    with serving(wa_sandbox, token, "--verbose") as svc:
        assert _send(svc)["state"] == "delivered"
        assert svc.stop() == 0
        lines = svc.lines()
    logs = [line for line in lines if line.get("event") == "log"]
    assert "guard.delivered" in [line["message"] for line in logs]
    assert token not in json.dumps(lines)


def test_a_world_readable_token_file_is_warned_about(wa_sandbox, tmp_path):
    """The providers' warning about a token file others can read reaches stderr."""
    token = wa_sandbox.issue_token()
    path = tmp_path / "token"
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o644)
    run = cli("send", "--to", TO, "--text", "hi", env=env_for(wa_sandbox, WA_TOKEN_FILE=str(path)))
    assert run.code == 0
    warnings = [line for line in run.err_lines if line.get("level") == "warning"]
    assert any("chmod 600" in line["message"] for line in warnings), run.stderr
    assert token not in run.stderr


# --- check speaks plainly ------------------------------------------------------------------------


def test_check_on_an_expired_token(wa_sandbox):
    """An expired token lists no missing scopes, and its message has no request prefix."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(token, "expired")
    run = cli("check", env=env_for(wa_sandbox, token))
    assert (run.code, run.line["missing_scopes"]) == (3, [])
    assert run.line["error"]["message"].startswith("Error validating access token")
    text = subprocess.run(
        [sys.executable, "-m", "wa_auth", "check", "--format", "text"],
        capture_output=True, text=True, env=env_for(wa_sandbox, token), timeout=60, check=False,
    )  # fmt: skip
    assert "missing scopes" not in text.stdout
    assert "Request " not in text.stdout


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(3700, "expires in 1 hour"), (5 * 3600 + 100, "expires in 5 hours"), (1800, "expires in 29 minutes"), (3 * 86400, "expires in 3 days")],
    ids=["1h", "5h", "30min", "3d"],
)  # fmt: skip
def test_check_says_hours_for_a_token_with_hours_left(seconds, said):
    """A token with an hour left "expires in 1 hour", not "in 0 days"."""
    with Sandbox(seed=1) as sandbox:  # its clock runs with the wall clock check reads
        token = sandbox.issue_token(expires_in=seconds)
        proc = subprocess.run(
            [sys.executable, "-m", "wa_auth", "check", "--format", "text"],
            capture_output=True, text=True, env=env_for(sandbox, token), timeout=60, check=False,
        )  # fmt: skip
    assert said in proc.stdout, proc.stdout


# --- the sandbox's start-up line -----------------------------------------------------------------


def test_sandbox_line_names_each_tokens_id():
    """`wa-auth sandbox` prints each token's id (`tok_1`), which the admin API takes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_auth", "sandbox", "--port", "0", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("WA_")},
    )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready
        (line,) = validate_lines(proc.stdout.readline())
        ids = [t["id"] for t in line["tokens"]]
        assert ids[0] == "tok_1"
        admin = httpx.post(
            line["admin_url"] + "/set_token_state", json={"token": "tok_1", "state": "expired"}
        )
        assert admin.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_docs_name_the_sandbox_token_ids():
    """docs/sandbox.md's start-up line shows the ids its curl examples use."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "sandbox.md").read_text("utf-8")
    assert '"id": "tok_1"' in text


# --- the stores list their verdicts --------------------------------------------------------------


@pytest.mark.anyio
async def test_verdict_stores_list_what_is_in_force(tmp_path):
    """`list()`/`alist()` of the memory and SQLite stores: newest first, expired ones left out."""
    import time

    from wa_auth import TokenVerdicts

    clock = Clock(1000.0)
    memory = TokenVerdicts(ttl=60, monotonic=clock)
    with StateFile(tmp_path / "s.db", clock=clock, verdict_ttl=60) as state:
        for store, wall in ((memory, False), (state.verdicts, True)):
            clock.t = 1000.0
            await store.arecord(
                "sha256:aaaaaaaaaaaa",
                graph_error(401, 190, 463, fingerprint="sha256:aaaaaaaaaaaa"),
            )
            clock.t += 30
            await store.arecord(
                "sha256:bbbbbbbbbbbb",
                graph_error(401, 190, 463, fingerprint="sha256:bbbbbbbbbbbb"),
            )
            listed = await store.alist()
            assert [fp for fp, _, _ in listed] == ["sha256:bbbbbbbbbbbb", "sha256:aaaaaaaaaaaa"]
            assert all(error.category == "token_expired" for _, error, _ in listed)
            # Unix seconds: the SQLite store's clock is the wall clock; memory's is monotonic.
            left = listed[0][2] - (clock.t if wall else time.time())
            assert 55 < left <= 60
            clock.t += 31  # the first verdict's TTL is over
            assert [fp for fp, _, _ in store.list()] == ["sha256:bbbbbbbbbbbb"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=20,
)
_BODIES = _JSON | st.fixed_dictionaries(
    {},
    optional={
        "fingerprints": st.lists(st.text(max_size=30) | st.just("sha256:0123456789ab"), max_size=3),
        "phone_number_ids": st.lists(st.text(max_size=30), max_size=3) | _JSON,
        "all": st.booleans() | _JSON,
    },
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(body=_BODIES)
def test_a_state_clear_body_is_read_or_refused_by_name(body):
    """Any JSON body of POST /state/clear is read, or refused by a fixed text (no value shown)."""
    from wa_auth._cli import _state
    from wa_auth.errors import ConfigurationError

    refused = None
    try:
        fingerprints, numbers, everything = _state.clear_request(body)
    except ConfigurationError as exc:
        refused = exc.message
    if refused is not None:
        assert refused.startswith(
            ("the body is optional", "all must be", "fingerprints must", "phone_number_ids must")
        ), refused
        assert not any(len(v) >= 8 and v in refused for v in _strings(body)), refused
        return
    assert isinstance(everything, bool)
    assert all(f.startswith("sha256:") for f in fingerprints)
    assert everything or fingerprints or numbers


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):  # the body's own field names are not values
        known = {"fingerprints", "phone_number_ids", "all"}
        return [
            s
            for k, v in value.items()
            for s in (*_strings(k if k not in known else 0), *_strings(v))
        ]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
