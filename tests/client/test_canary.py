"""A recognisable canary token through every error path: it must never be shown anywhere.

Logs are captured at DEBUG for `wa_auth`, `httpx` and `httpcore`; every exception is checked
along its whole `__cause__` / `__context__` chain, as str, repr, formatted traceback and
`to_dict()` JSON; the reprs of client, provider, token and request objects are checked too.
The command line is checked as real processes: every variable (and file flag) whose name says
TOKEN, KEY or SECRET, `wa-auth serve`'s answers, and the usage errors, with canary Meta tokens,
app secrets, Vault tokens and API keys.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from typing import Any

import httpx
import pytest

from helpers import graph_body
from running import text_intent
from serving import serve_env, start
from wa_auth import (
    AsyncWhatsAppClient,
    StaticTokenProvider,
    Token,
    WhatsAppClient,
    WhatsAppError,
    _context,
    _endpoints,
)
from wa_auth.events import Events

CANARY = "EAAG" + "CANARY" + "x7Q2mZ9kLp4RtV8wYb3NcD6fHj1KsU5eGa0BiWzz"
assert len(CANARY) == 50
OTHER = "EAAGinspector0123456789abcdefghijklmnop"
PHONE = "106540352242922"
BASE = "https://graph.facebook.com/v23.0"
PARTS = (CANARY, CANARY[4:], CANARY[-30:])  # the token, and pieces a partial redaction would leave


ANSWERS: list[tuple[str, int, Any]] = [
    (
        "expired",
        401,
        graph_body(
            190,
            message="Error validating access token: Session has expired on Sunday, 20-Jul-25.",
        ),
    ),
    (
        "revoked",
        400,
        graph_body(
            190,
            message="Error validating access token: The user has not authorized application 1.",
            error_subcode=458,
        ),
    ),
    (
        "malformed-echo",
        400,
        graph_body(190, message=f"Malformed access token {CANARY}"),
    ),
    (
        "permission",
        403,
        graph_body(200, message=f"(#200) Permissions error for token {CANARY}"),
    ),
    (
        "account",
        403,
        graph_body(131031, message="(#131031) Business Account locked"),
    ),
    ("rate", 400, graph_body(130429, message="(#130429) Rate limit hit")),
    (
        "transient",
        503,
        graph_body(2, message="Service temporarily unavailable", is_transient=True),
    ),
    (
        "invalid",
        400,
        graph_body(
            100,
            message="(#100) Invalid parameter",
            error_data={"details": f"token={CANARY}"},
            error_user_msg=CANARY,
        ),
    ),
    ("unknown", 400, graph_body(987654, message=f"access_token={CANARY}")),
    (
        "proxy-html-echo",
        502,
        f"<html><body><h1>502 Bad Gateway</h1><pre>GET /v23.0/{PHONE}/messages\nAuthorization: Bearer {CANARY}\n</pre></body></html>",
    ),
    (
        "proxy-html-url",
        400,
        f"<html>Blocked: https://graph.facebook.com/v23.0/debug_token?input_token={CANARY}</html>",
    ),
    (
        "oauth-string",
        401,
        {"error": "invalid_token", "error_description": f"token {CANARY} is invalid"},
    ),
    ("www-auth", 401, ""),
    ("bad-2xx", 200, f"<html>{CANARY}</html>"),
]
TRANSPORT = [
    httpx.ConnectError,
    httpx.ReadTimeout,
    httpx.RemoteProtocolError,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
]


@pytest.fixture(autouse=True)
def debug_logs(caplog):
    for name in ("wa_auth", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend([e.__cause__, e.__context__])
    return seen


def _assert_clean(text: str, where: str) -> None:
    for part in PARTS:
        assert part not in text, f"canary leaked in {where}: {text[:300]!r}"


def _assert_exception_clean(exc: BaseException) -> None:
    for e in _chain(exc):
        _assert_clean(str(e), f"str({type(e).__name__})")
        _assert_clean(repr(e), f"repr({type(e).__name__})")
        _assert_clean(repr(e.args), f"{type(e).__name__}.args")
        if isinstance(e, WhatsAppError):
            _assert_clean(json.dumps(e.to_dict()), f"{type(e).__name__}.to_dict()")
    _assert_clean("".join(traceback.format_exception(exc)), "formatted traceback")


def _assert_logs_clean(caplog) -> None:
    for record in caplog.records:
        _assert_clean(record.getMessage(), f"log record {record.name}")
        _assert_clean(repr(getattr(record, "wa_auth", "")), f"log extra {record.name}")
    _assert_clean(caplog.text, "formatted log output")


def _respond(respx_mock, status: int, body: Any, url: str | None = None) -> None:
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    headers = {}
    if status == 401 and body == "":
        headers["WWW-Authenticate"] = (
            f'OAuth "Facebook Platform" "invalid_token" "Malformed access token {CANARY}"'
        )
    route = respx_mock.route(url=url) if url else respx_mock.route()
    route.respond(status, headers=headers, **kwargs)


def _calls(client: Any) -> list[tuple[str, Any]]:
    return [
        ("send_text", lambda: client.send_text("+16505076520", "hi")),
        ("get_phone_number", client.get_phone_number),
        ("debug_token-self", client.debug_token),
        ("debug_token-other", lambda: client.debug_token(CANARY)),
    ]


@pytest.mark.parametrize(("status", "body"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_sync_error_answers(status, body, respx_mock, debug_logs):
    """No error answer shows the canary in exceptions, tracebacks, to_dict or logs (sync)."""
    _respond(respx_mock, status, body)
    with WhatsAppClient(token=CANARY, phone_number_id=PHONE, business_account_id="1") as client:
        _assert_clean(repr(client), "repr(client)")
        _assert_clean(repr(client.token_provider), "repr(provider)")
        for name, call in _calls(client):
            if name == "debug_token-other" and status == 200:
                continue
            with pytest.raises(WhatsAppError) as info:
                call()
            _assert_exception_clean(info.value)
    _assert_logs_clean(debug_logs)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(("status", "body"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
async def test_async_error_answers(status, body, respx_mock, debug_logs, anyio_backend):
    """No error answer shows the canary in exceptions, tracebacks, to_dict or logs (async)."""
    _respond(respx_mock, status, body)
    async with AsyncWhatsAppClient(token=CANARY, phone_number_id=PHONE) as client:
        _assert_clean(repr(client), "repr(client)")
        for name, call in _calls(client):
            if name == "debug_token-other" and status == 200:
                continue
            with pytest.raises(WhatsAppError) as info:
                await call()
            _assert_exception_clean(info.value)
    _assert_logs_clean(debug_logs)


def _raiser(exc_cls: type[httpx.TransportError]):
    def side_effect(request: httpx.Request) -> httpx.Response:
        # The worst case: a transport that puts the full URL and headers in its message.
        raise exc_cls(
            f"failed {request.method} {request.url} {dict(request.headers)}", request=request
        )

    return side_effect


@pytest.mark.parametrize("exc", TRANSPORT, ids=lambda c: c.__name__)
def test_sync_transport_errors(exc, respx_mock, debug_logs):
    """Transport failures (even with URL and headers in httpx's message) never show the canary."""
    respx_mock.route().mock(side_effect=_raiser(exc))
    with WhatsAppClient(token=CANARY, phone_number_id=PHONE) as client:
        for _, call in _calls(client):
            with pytest.raises(WhatsAppError) as info:
                call()
            _assert_exception_clean(info.value)
    _assert_logs_clean(debug_logs)


@pytest.mark.anyio
@pytest.mark.parametrize("exc", TRANSPORT, ids=lambda c: c.__name__)
async def test_async_transport_errors(exc, respx_mock, debug_logs):
    """Transport failures never show the canary (async)."""
    respx_mock.route().mock(side_effect=_raiser(exc))
    async with AsyncWhatsAppClient(token=CANARY, phone_number_id=PHONE) as client:
        for _, call in _calls(client):
            with pytest.raises(WhatsAppError) as info:
                await call()
            _assert_exception_clean(info.value)
    _assert_logs_clean(debug_logs)


def test_validation_errors(respx_mock, debug_logs):
    """Validation errors never show the canary, even when it is passed as an argument."""
    # A token pasted as phone_number_id passes the id check (ids may hold letters); the
    # request then fails, and neither that error nor httpx's log line may show it.
    respx_mock.route().respond(400, json=graph_body(100, message="Unsupported post request."))
    with WhatsAppClient(token=CANARY, phone_number_id=PHONE) as client:
        for call in (
            lambda: client.send_text(CANARY, "hi"),
            lambda: client.send_text("+16505076520", ""),
            lambda: client.send_text("+16505076520", "hi", phone_number_id=CANARY),
            lambda: client.send_media("+16505076520", CANARY, link="https://x/y"),
            lambda: client.send_media("+16505076520", "image", link=CANARY),
            lambda: client.get_media_url(CANARY + "/.."),
            lambda: client.send_text("+16505076520", "hi", idempotency_key=CANARY * 11),
        ):
            with pytest.raises(WhatsAppError) as info:
                call()
            _assert_exception_clean(info.value)
    assert len(respx_mock.calls) <= 1
    _assert_logs_clean(debug_logs)


def test_debug_token_success_logs_redacted_url(respx_mock, debug_logs):
    """A successful debug_token of the canary logs httpx's request line with input_token redacted."""
    respx_mock.get(f"{BASE}/debug_token").respond(
        200, json={"data": {"is_valid": True, "scopes": []}}
    )
    with WhatsAppClient(token=OTHER, phone_number_id=PHONE) as client:
        info = client.debug_token(CANARY)
        _assert_clean(repr(info), "repr(TokenInfo)")
    lines = [r.getMessage() for r in debug_logs.records if r.name == "httpx"]
    assert any("input_token=[REDACTED]" in line for line in lines), lines
    _assert_logs_clean(debug_logs)


def test_retry_path_with_canary_as_the_dead_token(respx_mock, debug_logs):
    """The invalidate-and-retry path (events, logs, final error) never shows either token."""

    class Flip(StaticTokenProvider):
        def __init__(self) -> None:
            super().__init__(CANARY)
            self.next = Token(OTHER)

        def invalidate(self, token, reason) -> None:
            self._token = self.next

    respx_mock.post(f"{BASE}/{PHONE}/messages").respond(401, json=ANSWERS[0][2])
    with (
        WhatsAppClient(
            token_provider=Flip(), phone_number_id=PHONE, events=Events.with_logging()
        ) as client,
        pytest.raises(WhatsAppError) as info,
    ):
        client.send_text("+16505076520", "hi")
    _assert_exception_clean(info.value)
    assert OTHER not in "".join(traceback.format_exception(info.value))
    _assert_logs_clean(debug_logs)
    assert any(r.name == "wa_auth.auth" for r in debug_logs.records)


def test_object_reprs():
    """repr of tokens, providers, requests, effects and contexts never shows the canary."""
    token = Token(CANARY)
    provider = StaticTokenProvider(CANARY)
    ctx = _context.Context(provider=provider, events=Events(), phone_number_id=PHONE)
    flow = _endpoints.debug_token(ctx)
    next(flow)
    effect = flow.send(token)
    for obj in (token, str(token), provider, ctx, effect, effect.request):
        _assert_clean(repr(obj), f"repr({type(obj).__name__})")
    assert CANARY in effect.request.url  # debug_token needs it there; only repr hides it


# --- the command line: secrets named by variables, and usage errors ------------------------------
#
# A secret put where a file name belongs is printed as that file name unless the CLI knows the
# variable's name says it is a secret. Each kind of secret a user may paste: a Meta token, an
# app token (`{app-id}|{app-secret}`), a Vault token and serve's API key.

CLI_CANARIES = {
    "meta-token": "EAAG" + "CANARYcli" + "x7Q2mZ9kLp4RtV8wYb3NcD6fHj1KsU5eGa0BiWzz",
    "app-secret": "900000000000001|" + "CANARYcli" + "2dc477ac10d6c07b3fe008f6",
    "vault-token": "hvs." + "CANARYcli" + "CAESIJq4H0dZ8n2k7VtYb3NcD6fHj1KsU5eGa0",
    "api-key": "CANARYcli" + "-Zq4H0dZ8n2k7VtYb3NcD6fHj1KsU5eGa0",
}
CLI_MARK = "CANARYcli"
TO = "+15551234567"


def _cli_env(sandbox: Any, **extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "VAULT_"))}
    env.update(WA_BASE_URL=sandbox.base_url, WA_PHONE_NUMBER_ID=sandbox.phone_number_id)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def _run_cli(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", *args],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout + proc.stderr


#: (command line, the variables) with `{s}` where the secret goes: each a place where the CLI
#: reads a value from a variable (or flag) whose name says TOKEN, KEY or SECRET.
CLI_SECRET_PLACES = [
    pytest.param(["send", "--to", TO, "--text", "hi"], {"WA_TOKEN_FILE": "{s}"}, id="WA_TOKEN_FILE"),
    pytest.param(["send", "--to", TO, "--text", "hi", "--token-file", "{s}"], {}, id="--token-file"),
    pytest.param(["send", "--to", TO, "--text", "hi", "--verbose"], {"WA_TOKEN_FILE": "{s}"}, id="WA_TOKEN_FILE-verbose"),
    pytest.param(["send", "--to", TO, "--text", "hi"], {"WA_VAULT_ADDR": "http://127.0.0.1:9", "WA_VAULT_PATH": "wa", "WA_VAULT_TOKEN_FILE": "{s}"}, id="WA_VAULT_TOKEN_FILE"),
    pytest.param(["send", "--to", TO, "--text", "hi"], {"WA_VAULT_ADDR": "http://127.0.0.1:9", "WA_VAULT_PATH": "wa", "WA_VAULT_TOKEN": "{s}"}, id="WA_VAULT_TOKEN"),
    pytest.param(["send", "--to", TO, "--text", "hi"], {"WA_VAULT_ADDR": "http://127.0.0.1:9", "WA_VAULT_PATH": "wa", "WA_VAULT_ROLE_ID": "role", "WA_VAULT_SECRET_ID": "{s}"}, id="WA_VAULT_SECRET_ID"),
    pytest.param(["send", "--to", TO, "--text", "hi"], {"WA_VAULT_ADDR": "http://127.0.0.1:9", "WA_VAULT_TOKEN": "{s}"}, id="vault-incomplete"),
    pytest.param(["send", "--to", TO, "--text", "hi"], {"WA_ACCESS_TOKEN": "{s} broken"}, id="WA_ACCESS_TOKEN-malformed"),
    pytest.param(["check"], {"WA_ACCESS_TOKEN": "valid", "WA_APP_TOKEN_FILE": "{s}"}, id="WA_APP_TOKEN_FILE"),
    pytest.param(["check"], {"WA_ACCESS_TOKEN": "valid", "WA_APP_TOKEN": "{s}"}, id="WA_APP_TOKEN"),
    pytest.param(["check", "--format", "text"], {"WA_ACCESS_TOKEN": "valid", "WA_APP_TOKEN_FILE": "{s}"}, id="WA_APP_TOKEN_FILE-text"),
    pytest.param(["serve", "--port", "0"], {"WA_AUTH_API_KEY_FILE": "{s}"}, id="WA_AUTH_API_KEY_FILE"),
    pytest.param(["serve", "--port", "0", "--api-key-file", "{s}"], {}, id="--api-key-file"),
    pytest.param(["serve", "--port", "0"], {"WA_AUTH_API_KEY": "{s}", "WA_AUTH_API_KEY_FILE": "/run/k"}, id="WA_AUTH_API_KEY-two-sources"),
]  # fmt: skip


@pytest.mark.parametrize("secret", list(CLI_CANARIES.values()), ids=list(CLI_CANARIES))
@pytest.mark.parametrize(("args", "variables"), CLI_SECRET_PLACES)
def test_cli_never_prints_a_secret_named_value(args, variables, secret, wa_sandbox):
    """No line of the CLI shows the value of a variable (or file flag) named for a secret."""
    valid = wa_sandbox.issue_token()
    env = _cli_env(
        wa_sandbox,
        **{k: (valid if v == "valid" else v.replace("{s}", secret)) for k, v in variables.items()},
    )
    out = _run_cli(*(a.replace("{s}", secret) for a in args), env=env)
    assert out.strip(), "the command printed nothing"
    assert CLI_MARK not in out, out[:600]
    assert valid not in out


@pytest.mark.parametrize("secret", list(CLI_CANARIES.values()), ids=list(CLI_CANARIES))
def test_serve_never_answers_a_secret_named_value(secret, wa_sandbox):
    """`wa-auth serve`'s answers (send, check) never show a secret-named variable's value."""
    svc = start(serve_env(wa_sandbox, None, WA_TOKEN_FILE=secret), "--verbose")
    try:
        sent = svc.call("POST", "/send", json=text_intent("x"))
        checked = svc.call("POST", "/check")
        ready = svc.call("GET", "/readyz")
        for answer in (sent, checked, ready):
            assert CLI_MARK not in answer.text, answer.text
        assert sent.json()["category"] == "token_unavailable"
        assert "token file [" in sent.json()["error"]["message"]  # [WA_TOKEN_FILE], [REDACTED]
    finally:
        svc.stop()
    assert CLI_MARK not in svc.stdout + svc.stderr


@pytest.mark.parametrize("secret", list(CLI_CANARIES.values()), ids=list(CLI_CANARIES))
def test_cli_usage_errors_never_print_a_secret(secret, wa_sandbox):
    """The usage errors of the issue, with each kind of secret, as real processes."""
    env = _cli_env(wa_sandbox)
    for args in (
        ["send", "--acess-token", secret],
        ["send", f"--wa-token={secret}"],
        ["send", "--", "--token", secret],
        ["send", secret],
        ["check", "--bearer", secret],
        ["serve", "--apikey", secret],
        [secret],
    ):
        out = _run_cli(*args, env=env)
        assert CLI_MARK not in out, (args, out)
        assert '"category": "usage"' in out
    assert wa_sandbox.requests() == ()
