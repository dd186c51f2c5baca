"""`wa-auth send --redis URL` (and `WA_AUTH_REDIS_URL`): separate CLI processes share a verdict.

Real `python -m wa_auth` processes against the sandbox and the session's real Redis; every
printed line is validated against the JSON Schema (`running.cli`).
"""

from __future__ import annotations

import pytest

from running import TO, cli, env_for
from wa_auth.errors import from_response
from wa_auth.fleet import RedisState
from wa_auth.pacing import Pause
from wa_auth.providers import Token

pytestmark = pytest.mark.real_component("redis")

REVOKED = {"error": {"code": 190, "error_subcode": 460, "message": "Session invalidated"}}


def test_a_verdict_learned_by_one_run_refuses_the_next_without_a_request(wa_sandbox, redis_server):
    """Run 1 meets the revoked token; run 2 (WA_AUTH_REDIS_URL) refuses it before any request."""
    redis_server.flush()
    token = wa_sandbox.demo_tokens()["system_user"]
    wa_sandbox.set_token_state(token, "revoked_logged_out")
    first = cli(
        "send",
        "--to",
        TO,
        "--text",
        "a",
        "--redis",
        redis_server.url,
        env=env_for(wa_sandbox, token),
    )
    assert first.line["category"] == "token_revoked"
    sent = len(wa_sandbox.requests())

    env = env_for(wa_sandbox, token, WA_AUTH_REDIS_URL=redis_server.url)
    second = cli("send", "--to", TO, "--text", "b", env=env)
    assert (second.code, second.line["category"]) == (first.code, "token_revoked")
    assert len(wa_sandbox.requests()) == sent


def test_state_and_redis_together_are_a_usage_error(wa_sandbox, redis_server, tmp_path):
    """`--state` and `--redis` both name the shared state: refused, naming both."""
    env = env_for(wa_sandbox, "EAAnothing", WA_AUTH_STATE=str(tmp_path / "s.db"))
    run = cli("send", "--to", TO, "--text", "a", "--redis", redis_server.url, env=env)
    assert run.code != 0
    assert "--redis" in run.line["error"]["message"]
    assert wa_sandbox.requests() == ()


def test_state_list_and_clear_on_redis(wa_sandbox, redis_server):
    """`wa-auth state list|clear --redis URL` shows and drops the fleet's verdicts and pauses."""
    redis_server.flush()
    with RedisState(redis_server.url) as state:
        state.pauses.put(
            Pause(kind="account", phone_number_id="109", category="account_state", since=1.0, until=4e9)
        )  # fmt: skip
        state.verdicts.record("sha256:0123456789ab", from_response(401, REVOKED))
    url = redis_server.url.replace("redis://", "redis://:pw-canary@")
    listed = cli("state", "list", "--redis", url, env=env_for(None))
    assert listed.code == 0
    assert [v["token_fingerprint"] for v in listed.line["verdicts"]] == ["sha256:0123456789ab"]
    assert [p["phone_number_id"] for p in listed.line["pauses"]] == ["109"]
    assert "pw-canary" not in listed.stdout + listed.stderr
    cleared = cli("state", "clear", "--all", env=env_for(None, WA_AUTH_REDIS_URL=url))
    assert cleared.code == 0
    empty = cli("state", "list", "--redis", url, env=env_for(None)).line
    assert (empty["verdicts"], empty["pauses"]) == ([], [])


def test_check_with_redis_shares_the_token_health_report(wa_sandbox, redis_server):
    """`wa-auth check --redis URL` keeps Meta's report on Redis for the fleet (no token in it)."""
    redis_server.flush()
    token = wa_sandbox.demo_tokens()["system_user"]
    run = cli("check", "--redis", redis_server.url, env=env_for(wa_sandbox, token))
    assert run.code == 0, run.stdout + run.stderr
    fingerprint = Token(token).fingerprint
    with RedisState(redis_server.url) as state:
        report = state.health.get(fingerprint)
        raw = state.connection.client.get(state.connection.key("health", fingerprint))
    assert report is not None
    assert report.valid
    assert token.encode() not in raw
