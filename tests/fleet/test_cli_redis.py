"""`wa-auth send --redis URL` (and `WA_AUTH_REDIS_URL`): separate CLI processes share a verdict.

Real `python -m wa_auth` processes against the sandbox and the session's real Redis; every
printed line is validated against the JSON Schema (`running.cli`).
"""

from __future__ import annotations

import pytest

from running import TO, cli, env_for

pytestmark = pytest.mark.real_component("redis")


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
