"""The sandbox itself: Meta's literal payloads, state, clock, limits, faults, records, admin
API, tokens file and the `wa-auth sandbox` command, over real loopback sockets (raw httpx,
no wa_auth client)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import httpx
import pytest

from wa_auth import testing
from wa_auth._redact import fingerprint
from wa_auth.sandbox import TOKEN_STATES, Sandbox

# The plugin's fixtures, for runs where its pytest11 entry point is not installed.
wa_sandbox_server = testing.wa_sandbox_server
wa_sandbox = testing.wa_sandbox

TO = "+15551234567"


@pytest.fixture
def http(wa_sandbox):
    with httpx.Client(base_url=wa_sandbox.base_url) as client:
        yield client


def _send(http, sb, token, to=TO, key=None):
    body = {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}
    if key is not None:
        body["biz_opaque_callback_data"] = key
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post(f"/v23.0/{sb.phone_number_id}/messages", json=body, headers=headers)


def _error(response):
    return response.json()["error"]


@pytest.mark.parametrize(
    ("state", "variant", "message", "subcode"),
    [
        pytest.param("expired", None, "Session has expired on ", 463, id="expired"),
        pytest.param("expired", "no_subcode", "Session has expired on ", None, id="expired-no-subcode"),
        pytest.param("revoked_password_changed", None, "changed their password", 460, id="password-changed"),
        pytest.param("revoked_deauthorized", None, "has not authorized application", 458, id="deauthorized"),
        pytest.param("revoked_logged_out", None, "because the user logged out", 467, id="logged-out"),
        pytest.param("revoked_logged_out", "no_subcode", "because the user logged out", None, id="logged-out-no-subcode"),
        pytest.param("malformed", None, "Invalid OAuth access token - Cannot parse access token", None, id="malformed"),
    ],
)  # fmt: skip
def test_token_state_answers_metas_literal_190(wa_sandbox, http, state, variant, message, subcode):
    """A dead token gets HTTP 401, code 190 with or without subcode, and WWW-Authenticate."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(token, state, variant=variant)
    response = _send(http, wa_sandbox, token)
    error = _error(response)
    assert response.status_code == 401
    assert (error["code"], error.get("error_subcode"), error["type"]) == (
        190,
        subcode,
        "OAuthException",
    )
    assert message in error["message"]
    assert error["fbtrace_id"]
    assert response.headers["WWW-Authenticate"].startswith(
        'OAuth "Facebook Platform" "invalid_token" "'
    )
    assert error["message"] in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("variant", "code"),
    [pytest.param(None, 10, id="code-10"), pytest.param("code_200", 200, id="code-200")],
)
def test_missing_permission_answers_403(wa_sandbox, http, variant, code):
    """A token without the permission gets 403 with code 10 or 200 and insufficient_scope."""
    token = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(token, "missing_permission", variant=variant)
    response = _send(http, wa_sandbox, token)
    assert (response.status_code, _error(response)["code"]) == (403, code)
    assert '"insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_unknown_and_missing_tokens(wa_sandbox, http):
    """An unknown token is 190 "Cannot parse"; no token at all is Graph's 2500."""
    unknown = _send(http, wa_sandbox, "EAAnever-issued")
    assert (unknown.status_code, _error(unknown)["code"]) == (401, 190)
    assert "Cannot parse access token" in _error(unknown)["message"]
    missing = _send(http, wa_sandbox, None)
    assert (missing.status_code, _error(missing)["code"]) == (400, 2500)
    assert [r.token_fingerprint for r in wa_sandbox.requests()] == [
        fingerprint("EAAnever-issued"),
        None,
    ]


@pytest.mark.parametrize(
    ("state", "variant", "status", "code"),
    [
        pytest.param("locked", None, 403, 131031, id="locked"),
        pytest.param("restricted", None, 403, 368, id="restricted-368"),
        pytest.param("restricted", "code_130497", 403, 130497, id="restricted-130497"),
        pytest.param("payment_issue", None, 400, 131042, id="payment-issue"),
        pytest.param("maintenance", None, 500, 131057, id="maintenance"),
    ],
)
def test_account_state_blocks_every_token(wa_sandbox, http, state, variant, status, code):
    """An account state fails sends whatever the token, with WhatsApp's error_data.details."""
    wa_sandbox.set_account_state(state, variant=variant)
    for token in (wa_sandbox.issue_token(), wa_sandbox.issue_token(kind="user")):
        response = _send(http, wa_sandbox, token)
        error = _error(response)
        assert (response.status_code, error["code"]) == (status, code)
        assert error["message"].startswith(f"(#{code}) ")
        assert error["error_data"]["messaging_product"] == "whatsapp"
    wa_sandbox.set_account_state("ok")
    assert _send(http, wa_sandbox, token).status_code == 200


def test_number_state_is_per_number(wa_sandbox, http):
    """An unregistered number answers 133010; the other number still sends."""
    token = wa_sandbox.issue_token()
    first, second = wa_sandbox.phone_number_ids
    wa_sandbox.set_number_state(first, "not_registered")
    body = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "x"}}
    auth = {"Authorization": f"Bearer {token}"}
    blocked = http.post(f"/v23.0/{first}/messages", json=body, headers=auth)
    assert _error(blocked)["code"] == 133010
    assert http.post(f"/v23.0/{second}/messages", json=body, headers=auth).status_code == 200
    number = http.get(f"/v23.0/{first}", headers=auth).json()
    assert number["platform_type"] == "NOT_APPLICABLE"


def test_token_expires_by_the_clock(wa_sandbox, http):
    """A token expires when the sandbox clock passes its expiry, without sleeping."""
    token = wa_sandbox.issue_token(expires_in=60, kind="user")
    wa_sandbox.advance(59)
    assert _send(http, wa_sandbox, token).status_code == 200
    wa_sandbox.advance(2)
    response = _send(http, wa_sandbox, token)
    assert (_error(response)["code"], _error(response)["error_subcode"]) == (190, 463)
    assert wa_sandbox.token(token).state == "expired"


def test_throughput_limit_sends_retry_after(wa_sandbox, http):
    """Past the per-number throughput the send gets 130429 with a Retry-After."""
    wa_sandbox.set_limits(throughput=2)
    token = wa_sandbox.issue_token()
    assert [_send(http, wa_sandbox, token).status_code for _ in range(2)] == [200, 200]
    limited = _send(http, wa_sandbox, token)
    assert _error(limited)["code"] == 130429
    assert limited.headers["Retry-After"] == "1"
    wa_sandbox.advance(1)
    assert _send(http, wa_sandbox, token).status_code == 200


def test_pair_limit_is_per_recipient(wa_sandbox, http):
    """A second message to one recipient within the window gets 131056; others pass."""
    wa_sandbox.set_limits(pair_limit=1, pair_window=6)
    token = wa_sandbox.issue_token()
    assert _send(http, wa_sandbox, token).status_code == 200
    limited = _send(http, wa_sandbox, token)
    assert (_error(limited)["code"], limited.headers["Retry-After"]) == (131056, "6")
    assert _send(http, wa_sandbox, token, to="+15550000000").status_code == 200
    wa_sandbox.advance(6)
    assert _send(http, wa_sandbox, token).status_code == 200


def test_app_usage_limit_reports_x_app_usage(wa_sandbox, http):
    """Every answer carries X-App-Usage; past the budget the call gets code 4."""
    wa_sandbox.set_limits(app_calls=4)
    token = wa_sandbox.issue_token()
    first = _send(http, wa_sandbox, token)
    assert json.loads(first.headers["X-App-Usage"])["call_count"] == 25
    for _ in range(3):
        _send(http, wa_sandbox, token)
    limited = _send(http, wa_sandbox, token)
    assert (_error(limited)["code"], _error(limited)["is_transient"]) == (4, True)
    assert json.loads(limited.headers["X-App-Usage"])["call_count"] >= 100


@pytest.mark.parametrize(
    ("code", "status"),
    [pytest.param(1, 500, id="1"), pytest.param(2, 503, id="2"), pytest.param(131000, 500, id="131000"), pytest.param(131016, 503, id="131016")],
)  # fmt: skip
def test_flaky_errors(wa_sandbox, http, code, status):
    """The error-rate fault answers each flaky code with its HTTP status."""
    wa_sandbox.set_faults(error_rate=1.0, error_codes=[code])
    response = _send(http, wa_sandbox, wa_sandbox.issue_token())
    assert (response.status_code, _error(response)["code"]) == (status, code)
    assert wa_sandbox.requests()[-1].outcome == "fault"


def test_code_as_string(wa_sandbox, http):
    """The BSP variant sends code and error_subcode as strings."""
    wa_sandbox.set_faults(code_as_string=True)
    token = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(token, "expired")
    error = _error(_send(http, wa_sandbox, token))
    assert (error["code"], error["error_subcode"]) == ("190", "463")


def test_html_502(wa_sandbox, http):
    """The proxy fault answers an nginx HTML 502 page."""
    wa_sandbox.set_faults(html_502_rate=1.0)
    response = _send(http, wa_sandbox, wa_sandbox.issue_token())
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert b"502 Bad Gateway" in response.content


def test_dropped_connection(wa_sandbox, http):
    """The drop fault closes the connection without an answer, and records it."""
    wa_sandbox.set_faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        _send(http, wa_sandbox, wa_sandbox.issue_token())
    assert wa_sandbox.requests()[-1].outcome == "dropped"
    assert wa_sandbox.requests()[-1].status is None


def test_faults_are_deterministic_under_a_seed(wa_sandbox):
    """Two sandboxes with the same seed fail the same requests the same way."""

    def run():
        with Sandbox(seed=7, freeze_clock=True) as sb, httpx.Client(base_url=sb.base_url) as http:
            sb.set_faults(error_rate=0.3, html_502_rate=0.2)
            token = sb.demo_tokens()["system_user"]
            return [
                (r.status_code, r.content[:40]) for r in (_send(http, sb, token) for _ in range(30))
            ], token

    first, second = run(), run()
    assert first == second
    assert len({status for status, _ in first[0]}) >= 3


def test_records_messages_and_requests(wa_sandbox, http):
    """Accepted messages keep id, recipient, payload, key and fingerprint; requests keep time."""
    token = wa_sandbox.issue_token()
    wa_sandbox.advance(100)
    answer = _send(http, wa_sandbox, token, key="order-1").json()
    http.get(
        f"/v23.0/debug_token?input_token={token}", headers={"Authorization": f"Bearer {token}"}
    )
    (message,) = wa_sandbox.messages()
    assert message.id == answer["messages"][0]["id"]
    assert answer["contacts"] == [{"input": TO, "wa_id": "15551234567"}]
    assert (message.recipient, message.idempotency_key) == (TO, "order-1")
    assert message.token_fingerprint == fingerprint(token) == wa_sandbox.token(token).fingerprint
    assert message.payload["text"] == {"body": "hi"}
    send, debug = wa_sandbox.requests()
    assert (send.endpoint, send.outcome, send.at) == ("send_message", "accepted", wa_sandbox.now())
    assert debug.path == "/v23.0/debug_token"  # the query, which carries a token, is not kept
    assert token not in json.dumps([r.to_dict() for r in wa_sandbox.requests()])


def test_media_round_trip(wa_sandbox, http):
    """Upload (multipart), URL back at the sandbox, download with the bearer token, delete."""
    token = wa_sandbox.issue_token()
    auth = {"Authorization": f"Bearer {token}"}
    uploaded = http.post(
        f"/v23.0/{wa_sandbox.phone_number_id}/media",
        data={"messaging_product": "whatsapp", "type": "image/jpeg"},
        files={"file": ("a.jpg", b"\xff\xd8jpeg", "image/jpeg")},
        headers=auth,
    )
    media_id = uploaded.json()["id"]
    info = http.get(f"/v23.0/{media_id}", headers=auth).json()
    assert info["url"].startswith(wa_sandbox.base_url + "/whatsapp_business/attachments/")
    assert (info["mime_type"], info["file_size"]) == ("image/jpeg", 6)
    assert http.get(info["url"]).status_code == 400  # no bearer token
    assert http.get(info["url"], headers=auth).content == b"\xff\xd8jpeg"
    assert http.delete(f"/v23.0/{media_id}", headers=auth).json() == {"success": True}
    gone = http.get(f"/v23.0/{media_id}", headers=auth)
    assert (_error(gone)["code"], _error(gone)["error_subcode"]) == (100, 33)


def test_unknown_objects_and_paths(wa_sandbox, http):
    """An unknown id is Graph's 100/33; an unknown edge is 2500 "Unknown path components"."""
    auth = {"Authorization": f"Bearer {wa_sandbox.issue_token()}"}
    unknown = http.post("/v23.0/15551234567/messages", json={}, headers=auth)
    assert (_error(unknown)["code"], _error(unknown)["error_subcode"]) == (100, 33)
    assert "Unsupported post request. Object with ID '15551234567'" in _error(unknown)["message"]
    edge = http.get(f"/v23.0/{wa_sandbox.phone_number_id}/nope", headers=auth)
    assert (_error(edge)["code"], _error(edge)["message"]) == (
        2500,
        "Unknown path components: /nope",
    )


def test_debug_token_shapes(wa_sandbox, http):
    """debug_token answers data for valid, dead and garbage tokens, and accepts the app token."""
    valid = wa_sandbox.issue_token(kind="user", expires_in=3600)
    dead = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(dead, "revoked_logged_out")
    app = {"access_token": wa_sandbox.app_token}

    def data(token):
        answer = http.get("/v23.0/debug_token", params={"input_token": token, **app})
        assert answer.status_code == 200
        return answer.json()["data"]

    good = data(valid)
    assert (good["is_valid"], good["type"], good["app_id"]) == (True, "USER", wa_sandbox.app_id)
    assert good["expires_at"] == int(wa_sandbox.now() + 3600)
    assert good["granular_scopes"][0]["target_ids"] == [wa_sandbox.business_account_id]
    bad = data(dead)
    assert (bad["is_valid"], bad["error"]["code"], bad["error"]["subcode"]) == (False, 190, 467)
    garbage = data("nonsense")
    assert (garbage["is_valid"], garbage["error"]["code"]) == (False, 190)


def test_long_lived_exchange(wa_sandbox, http):
    """fb_exchange_token returns a 60-day token; a wrong secret or an expired token fails."""
    short = wa_sandbox.demo_tokens()["user"]
    params = {
        "grant_type": "fb_exchange_token",
        "client_id": wa_sandbox.app_id,
        "client_secret": wa_sandbox.app_secret,
        "fb_exchange_token": short,
    }
    answer = http.get("/v23.0/oauth/access_token", params=params).json()
    assert (answer["token_type"], answer["expires_in"]) == ("bearer", 5183944)
    assert _send(http, wa_sandbox, answer["access_token"]).status_code == 200
    wrong = http.get("/v23.0/oauth/access_token", params={**params, "client_secret": "x"})
    assert _error(wrong)["message"] == "Error validating client secret."
    wa_sandbox.advance(3601)
    expired = http.get("/v23.0/oauth/access_token", params=params)
    assert (_error(expired)["code"], _error(expired)["error_subcode"]) == (190, 463)


def test_reset_restores_the_start(wa_sandbox, http):
    """reset() restores the initial tokens and states and forgets records and issued tokens."""
    demo = wa_sandbox.demo_tokens()
    issued = wa_sandbox.issue_token()
    wa_sandbox.set_token_state(demo["system_user"], "expired")
    wa_sandbox.set_account_state("locked")
    wa_sandbox.set_limits(throughput=1)
    wa_sandbox.set_faults(latency=0.01)
    _send(http, wa_sandbox, issued)
    wa_sandbox.reset()
    assert wa_sandbox.demo_tokens() == demo
    assert [t.state for t in wa_sandbox.tokens()] == ["valid", "valid"]
    assert (wa_sandbox.messages(), wa_sandbox.requests()) == ((), ())
    assert _send(http, wa_sandbox, demo["system_user"]).status_code == 200
    assert _send(http, wa_sandbox, issued).status_code == 401


def test_invalid_arguments_are_rejected(wa_sandbox):
    """Unknown states, variants, tokens and bad limits raise ValueError."""
    token = wa_sandbox.issue_token()
    for call in (
        lambda: wa_sandbox.set_token_state(token, "sleepy"),
        lambda: wa_sandbox.set_token_state(token, "expired", variant="code_200"),
        lambda: wa_sandbox.set_token_state("nope", "expired"),
        lambda: wa_sandbox.set_account_state("closed"),
        lambda: wa_sandbox.set_number_state("1", "ok"),
        lambda: wa_sandbox.set_limits(throughput=0),
        lambda: wa_sandbox.set_faults(error_rate=0.8, drop_rate=0.5),
        lambda: wa_sandbox.set_faults(error_rate=1.0, error_codes=[131031]),
        lambda: wa_sandbox.advance(-1),
        lambda: wa_sandbox.issue_token(kind="page"),
    ):
        with pytest.raises(ValueError):
            call()
    assert set(TOKEN_STATES) >= {"valid", "expired", "malformed", "missing_permission"}


def test_admin_api_mirrors_the_python_api(wa_sandbox, http):
    """Every operation works over POST /_sandbox/<operation> with JSON keyword arguments."""

    def admin(operation, **kw):
        answer = http.post(f"/_sandbox/{operation}", json=kw)
        assert answer.status_code == 200, answer.text
        return answer.json()

    issued = admin(
        "issue_token", scopes=["whatsapp_business_messaging"], kind="user", expires_in=60
    )
    token = issued["value"]
    assert issued["fingerprint"] == fingerprint(token)
    assert _send(http, wa_sandbox, token, key="k").status_code == 200
    admin("set_token_state", token=issued["id"], state="revoked_logged_out")
    assert _error(_send(http, wa_sandbox, token))["error_subcode"] == 467
    admin("set_token_state", token=token, state="valid")
    admin("set_account_state", state="restricted", variant="code_130497")
    assert _error(_send(http, wa_sandbox, token))["code"] == 130497
    admin("set_account_state", state="ok")
    admin("set_number_state", phone_number_id=wa_sandbox.phone_number_id, state="not_registered")
    assert _error(_send(http, wa_sandbox, token))["code"] == 133010
    admin("set_number_state", phone_number_id=wa_sandbox.phone_number_id, state="ok")
    assert admin("set_limits", pair_limit=1)["pair_limit"] == 1
    assert _send(http, wa_sandbox, token, key="k2").status_code == 200
    assert _error(_send(http, wa_sandbox, token))["code"] == 131056
    assert admin("set_faults", html_502_rate=1.0)["html_502_rate"] == 1.0
    assert _send(http, wa_sandbox, token).status_code == 502
    admin("set_faults")
    before = wa_sandbox.now()
    assert admin("advance", seconds=61)["now"] == before + 61
    assert _error(_send(http, wa_sandbox, token))["error_subcode"] == 463
    state = http.get("/_sandbox/").json()
    assert (state["base_url"], state["account_state"]) == (wa_sandbox.base_url, "ok")
    assert [m["idempotency_key"] for m in http.get("/_sandbox/messages").json()] == ["k", "k2"]
    assert len(http.get("/_sandbox/requests").json()) == len(wa_sandbox.requests())
    assert token in {t["value"] for t in http.get("/_sandbox/tokens").json()}
    admin("reset")
    assert wa_sandbox.requests() == ()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("POST", "/_sandbox/set_token_state", {"token": "nope", "state": "expired"}, 400, id="unknown-token"),
        pytest.param("POST", "/_sandbox/set_limits", {"throughput": -1}, 400, id="bad-limit"),
        pytest.param("POST", "/_sandbox/set_faults", {"bogus": 1}, 400, id="unknown-argument"),
        pytest.param("POST", "/_sandbox/advance", [1], 400, id="not-an-object"),
        pytest.param("POST", "/_sandbox/launch", {}, 404, id="unknown-operation"),
    ],
)  # fmt: skip
def test_admin_api_rejects_bad_input(wa_sandbox, http, method, path, body, status):
    """Bad admin calls answer 400 (or 404) with a JSON message and change nothing."""
    answer = http.request(method, path, json=body)
    assert answer.status_code == status
    assert answer.json()["error"]["message"]


def test_tokens_file(tmp_path):
    """A tokens file defines the initial tokens, with states, scopes and expiry."""
    path = tmp_path / "tokens.json"
    entries = [
        {"name": "prod", "value": "EAAprod-token", "kind": "system_user"},
        {"name": "old", "value": "EAAold-token", "kind": "user", "expires_in": 10},
        {"name": "gone", "state": "revoked_password_changed", "variant": "no_subcode"},
        {"name": "reader", "scopes": ["whatsapp_business_management"], "allowed_wabas": ["1"]},
    ]
    path.write_text(json.dumps({"tokens": entries}))
    with Sandbox(tokens=path, freeze_clock=True) as sb:
        tokens = {t.name: t for t in sb.tokens()}
        assert tokens["prod"].value == "EAAprod-token"
        assert (tokens["gone"].state, tokens["gone"].variant) == (
            "revoked_password_changed",
            "no_subcode",
        )
        assert tokens["reader"].allowed_wabas == ("1",)
        sb.advance(10)
        assert sb.token("EAAold-token").state == "expired"
        assert set(sb.demo_tokens()) == {"prod", "old", "gone", "reader"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "not valid JSON", id="garbage"),
        pytest.param("[]", "non-empty list", id="empty"),
        pytest.param('{"tokens": [{"kind": "page"}]}', "kind must be one of", id="bad-kind"),
        pytest.param('{"tokens": [{"state": "asleep"}]}', "state must be one of", id="bad-state"),
        pytest.param('{"tokens": [{"scopes": "x"}]}', "scopes must be a list", id="bad-scopes"),
        pytest.param('{"tokens": [{"value": "a"}, {"value": "a"}]}', "same value", id="duplicate"),
        pytest.param('{"tokenz": []}', '{"tokens": [...]}', id="wrong-key"),
    ],
)
def test_bad_tokens_file_is_a_value_error(tmp_path, content, message):
    """A bad tokens file raises ValueError naming the problem, before binding."""
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        Sandbox(tokens=str(path))


def test_missing_tokens_file_is_a_value_error(tmp_path):
    """A missing tokens file raises ValueError."""
    with pytest.raises(ValueError, match="cannot read the tokens file"):
        Sandbox(tokens=tmp_path / "absent.json")


def test_close_ends_idle_keep_alive_connections():
    """Closing the sandbox ends open keep-alive connections instead of waiting for them."""
    sb = Sandbox().start()
    with httpx.Client(base_url=sb.base_url) as http:
        assert http.get("/_sandbox/").status_code == 200
        started = time.perf_counter()
        sb.close()
        assert time.perf_counter() - started < 2
        with pytest.raises(httpx.TransportError):
            http.get("/_sandbox/")
    with pytest.raises(RuntimeError):
        _ = sb.base_url


def _cli(*args, env=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.Popen(
        [sys.executable, "-m", "wa_auth", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_cli_prints_one_json_line_and_stops_on_sigterm():
    """`wa-auth sandbox` prints one flushed JSON line, serves, and exits 0 on SIGTERM."""
    proc = _cli("sandbox", "--port", "0", "--seed", "3")
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no JSON line within 15 s"
        info = json.loads(proc.stdout.readline())
        assert info["base_url"].startswith("http://127.0.0.1:")
        assert info["phone_number_id"]
        assert info["business_account_id"]
        tokens = {t["name"]: t for t in info["tokens"]}
        assert set(tokens) == {"system_user", "user"}
        with httpx.Client(base_url=info["base_url"]) as http:
            body = {
                "messaging_product": "whatsapp",
                "to": TO,
                "type": "text",
                "text": {"body": "x"},
            }
            auth = {"Authorization": f"Bearer {tokens['system_user']['token']}"}
            sent = http.post(f"/v23.0/{info['phone_number_id']}/messages", json=body, headers=auth)
            assert sent.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == b""
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--tokens", "/nonexistent/tokens.json"], "cannot read the tokens file", id="missing-file"),
        pytest.param(["--tokens", "GARBAGE"], "", id="garbage-file"),
        pytest.param(["--port", "nope"], "--port: must be a port number", id="bad-port"),
        pytest.param(["--port", "70000"], "--port: must be a port number, 0 to 65535", id="port-range"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_a_json_error(tmp_path, args, message):
    """Bad CLI input prints one JSON error on stderr and exits 2, without a traceback."""
    if "GARBAGE" in args:
        garbage = tmp_path / "garbage.json"
        garbage.write_bytes(b"\x00\xffnot json")
        args = ["--tokens", str(garbage)]
    proc = _cli("sandbox", *args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == b""
    error = json.loads(err.decode().strip().splitlines()[-1])
    assert error["ok"] is False
    assert message in error["error"]["message"]
    assert b"Traceback" not in err


def test_cli_version_does_not_import_the_sandbox():
    """`wa-auth --version` still works and imports neither httpx nor the sandbox."""
    code = (
        "import sys; from wa_auth._cli import main; main(['--version']); "
        "assert 'httpx' not in sys.modules and 'wa_auth.sandbox' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"]


def test_sandbox_imports_neither_the_classifier_nor_the_client():
    """The sandbox's payloads are its own: it imports no classifier, client or httpx."""
    code = (
        "import sys, wa_auth.sandbox, wa_auth.testing; "
        "bad = [m for m in ('wa_auth.errors', 'wa_auth._table', 'wa_auth._client', "
        "'wa_auth._core', 'httpx') if m in sys.modules]; assert not bad, bad"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
