"""The canary: a recognisable token appears in no error, chain, repr, traceback or log line.

Every provider and every error path is driven with the canary as the secret; then the whole
`__cause__` / `__context__` chain, the formatted traceback, the reprs and every log record
captured at DEBUG (wa_auth, httpx, httpcore) are searched for it.
"""

from __future__ import annotations

import json
import logging
import traceback

import httpx
import pytest
import respx

from helpers import graph_error
from wa_auth._client import AsyncWhatsAppClient, WhatsAppClient
from wa_auth.errors import WhatsAppError
from wa_auth.events import Events
from wa_auth.providers import (
    EnvTokenProvider,
    FbTokenExchanger,
    FileTokenProvider,
    RotatingTokenProvider,
    RoutingTokenProvider,
    StaticTokenProvider,
    Token,
    TokenVerdicts,
    VaultAppRole,
    VaultTokenProvider,
)

pytestmark = pytest.mark.anyio

CANARY = "EAAGcanaryTOKEN0123456789abcdefZYXWVUT"
VAULT_CANARY = "s.CANARYVAULTTOKEN987654321"
SECRET_CANARY = "canaryappsecret0123456789"
SECRETS = (CANARY, VAULT_CANARY, SECRET_CANARY)
PHONE = "106540352242922"


def _assert_clean(exc: BaseException, *objects: object) -> None:
    seen = set()
    chain: BaseException | None = exc
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        for text in (str(chain), repr(chain), repr(chain.args)):
            for secret in SECRETS:
                assert secret not in text, f"{type(chain).__name__} leaks"
        if isinstance(chain, WhatsAppError):
            assert not any(s in json.dumps(chain.to_dict(), default=str) for s in SECRETS)
        chain = chain.__cause__ or chain.__context__
    formatted = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for secret in SECRETS:
        assert secret not in formatted
    for obj in objects:
        for secret in SECRETS:
            assert secret not in repr(obj)


def _assert_logs_clean(caplog) -> None:
    for record in caplog.records:
        line = record.getMessage() + repr(record.args) + repr(getattr(record, "wa_auth", ""))
        for secret in SECRETS:
            assert secret not in line, record.name


@pytest.fixture
def debug_logs(caplog):
    for name in ("wa_auth", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _write(path, content, mode=0o600):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(mode)


# --- provider error paths ---------------------------------------------------------------------------


def _env_whitespace(tmp_path):
    return EnvTokenProvider(environ={"WA_ACCESS_TOKEN": f"{CANARY} {CANARY}"})


def _env_blank(tmp_path):
    return EnvTokenProvider(environ={"WA_ACCESS_TOKEN": "  "})


def _file(content, **kw):
    def make(tmp_path):
        path = tmp_path / "token"
        _write(path, content)
        return FileTokenProvider(path, debounce=0.01, **kw)

    return make


def _file_deleted_after_invalidate(tmp_path):
    path = tmp_path / "token"
    _write(path, CANARY + "\n")
    provider = FileTokenProvider(path, check_interval=60)
    token = provider.get_token()
    path.unlink()
    provider.invalidate(token, "test")
    return provider


def _vault(status, body, **kw):
    def make(tmp_path):
        respx.get("https://vault.test/v1/secret/data/wa/x").mock(
            return_value=httpx.Response(status, json=body)
        )
        respx.get("https://vault.test/v1/auth/token/lookup-self").mock(
            return_value=httpx.Response(200, json={"data": {"id": VAULT_CANARY}})
        )
        return VaultTokenProvider("https://vault.test", "wa/x", vault_token=VAULT_CANARY, **kw)

    return make


def _vault_unreachable(tmp_path):
    respx.get("https://vault.test/v1/secret/data/wa/x").mock(
        side_effect=httpx.ConnectError(f"refused {VAULT_CANARY}")
    )
    return VaultTokenProvider("https://vault.test", "wa/x", vault_token=VAULT_CANARY)


def _vault_approle_rejected(tmp_path):
    respx.post("https://vault.test/v1/auth/approle/login").mock(
        return_value=httpx.Response(400, json={"errors": [f"invalid secret {SECRET_CANARY}"]})
    )
    return VaultTokenProvider(
        "https://vault.test", "wa/x", approle=VaultAppRole(role_id="r", secret_id=SECRET_CANARY)
    )


def _all_rejected(tmp_path):
    store = TokenVerdicts()
    error = graph_error(401, 190, 460, message=f"bad {CANARY}")
    error.with_token(CANARY)
    store.record(Token(CANARY).fingerprint, error)
    return RotatingTokenProvider([CANARY], verdicts=store, events=Events.with_logging())


def _exchange_refused(tmp_path):
    body = {
        "error": {"message": f"no: {CANARY} {SECRET_CANARY}", "type": "OAuthException", "code": 1}
    }
    respx.post("https://graph.test/v23.0/oauth/access_token").mock(
        return_value=httpx.Response(400, json=body)
    )
    exchanger = FbTokenExchanger(
        "123", SECRET_CANARY, base_url="https://graph.test", clock=lambda: 0.0
    )
    return RotatingTokenProvider(
        [Token(CANARY, expires_at=3600.0)], refresher=exchanger, events=Events.with_logging()
    )


def _exchange_unreachable(tmp_path):
    respx.post("https://graph.test/v23.0/oauth/access_token").mock(
        side_effect=httpx.ReadTimeout(f"{CANARY}")
    )
    exchanger = FbTokenExchanger(
        "123", SECRET_CANARY, base_url="https://graph.test", clock=lambda: 0.0
    )
    return RotatingTokenProvider(
        [Token(CANARY, expires_at=3600.0)], refresher=exchanger, events=Events.with_logging()
    )


def _no_route(tmp_path):
    return RoutingTokenProvider({"1": StaticTokenProvider(CANARY)})


CASES = [
    ("env-whitespace", _env_whitespace),
    ("env-blank", _env_blank),
    ("file-two-words", _file(f"{CANARY} {CANARY}\n")),
    ("file-partial-json", _file('{"access_token": "' + CANARY)),
    ("file-json-no-field", _file(json.dumps({"token": CANARY}), format="json")),
    ("file-json-bad-expiry", _file(json.dumps({"access_token": "x", "expires_at": CANARY}))),
    ("file-not-utf8", _file(CANARY.encode() + b"\xff\xfe\n")),
    ("file-deleted", _file_deleted_after_invalidate),
    (
        "vault-404-deleted",
        _vault(404, {"data": {"data": None, "metadata": {"deletion_time": "x", "version": 3}}}),
    ),
    (
        "vault-no-field",
        _vault(200, {"data": {"data": {"other": CANARY}, "metadata": {"version": 1}}}),
    ),
    (
        "vault-bad-expiry",
        _vault(
            200, {"data": {"data": {"access_token": "x", "expires_at": CANARY}, "metadata": {}}}
        ),
    ),
    ("vault-403-policy", _vault(403, {"errors": ["permission denied"]})),
    ("vault-500-echo", _vault(500, {"errors": [f"boom {VAULT_CANARY}"]})),
    ("vault-sealed", _vault(503, {"errors": ["Vault is sealed"]})),
    ("vault-unreachable", _vault_unreachable),
    ("vault-approle-rejected", _vault_approle_rejected),
    ("all-rejected", _all_rejected),
    ("exchange-refused", _exchange_refused),
    ("exchange-unreachable", _exchange_unreachable),
    ("no-route", _no_route),
]


@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
@respx.mock
def test_provider_errors_never_show_the_canary(tmp_path, debug_logs, make):
    """Every provider error path: no secret in the chain, traceback, reprs or logs."""
    provider = make(tmp_path)
    with pytest.raises(WhatsAppError) as info:
        provider.get_token()
    _assert_clean(info.value, provider)
    _assert_logs_clean(debug_logs)


@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
async def test_provider_errors_never_show_the_canary_async(tmp_path, debug_logs, make):
    """The async paths too."""
    with respx.mock:
        provider = make(tmp_path)
        with pytest.raises(WhatsAppError) as info:
            await provider.aget_token()
    _assert_clean(info.value, provider)
    _assert_logs_clean(debug_logs)


def test_providers_reprs_never_show_the_canary(tmp_path, monkeypatch):
    """The repr of every provider and token hides the secret."""
    path = tmp_path / "token"
    _write(path, CANARY + "\n")
    monkeypatch.setenv("WA_ACCESS_TOKEN", CANARY)
    providers = [
        StaticTokenProvider(CANARY),
        EnvTokenProvider(),
        FileTokenProvider(path),
        VaultTokenProvider("https://v", "p", vault_token=VAULT_CANARY),
        VaultTokenProvider(
            "https://v", "p", approle=VaultAppRole(role_id="r", secret_id=SECRET_CANARY)
        ),
        RotatingTokenProvider([CANARY], events=Events()),
        RoutingTokenProvider({"1": StaticTokenProvider(CANARY)}),
        FbTokenExchanger("1", SECRET_CANARY),
    ]
    for provider in providers:
        if hasattr(provider, "get_token"):
            token = (
                provider.get_token()
                if not isinstance(provider, (VaultTokenProvider, RoutingTokenProvider))
                else None
            )
            if token is not None:
                assert CANARY not in repr(token)
                assert CANARY not in str(token)
        for secret in SECRETS:
            assert secret not in repr(provider)


# --- client error paths -----------------------------------------------------------------------------

EXPIRED = {
    "error": {
        "message": f"Error validating access token {CANARY}: Session has expired",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 463,
    }
}


def _transport(status, body):
    return httpx.MockTransport(lambda r: httpx.Response(status, json=body))


def test_client_token_failure_and_verdict_never_show_the_canary(debug_logs):
    """A 190 echoing the token, and the verdict fast-fail after it, are clean."""
    with WhatsAppClient(
        token=CANARY, phone_number_id=PHONE, transport=_transport(401, EXPIRED)
    ) as client:
        for _ in range(2):  # the second one is the verdict's copy
            with pytest.raises(WhatsAppError) as info:
                client.send_text("15551234567", "hi")
            _assert_clean(info.value, client, client.verdicts)
        health = client.token_health()
        assert CANARY not in repr(health)
    _assert_logs_clean(debug_logs)


async def test_async_client_transport_error_never_shows_the_canary(debug_logs):
    """A transport failure on the async client is clean, and so are its logs."""

    def boom(request):
        raise httpx.ConnectError(f"refused {CANARY}", request=request)

    async with AsyncWhatsAppClient(
        token=CANARY, phone_number_id=PHONE, transport=httpx.MockTransport(boom)
    ) as client:
        with pytest.raises(WhatsAppError) as info:
            await client.send_text("15551234567", "hi")
    _assert_clean(info.value)
    _assert_logs_clean(debug_logs)


def test_rotation_events_and_logs_never_show_the_canary(debug_logs):
    """Fail-over and rotation events, logged at DEBUG, carry fingerprints only."""
    other = "EAAGotherCANARYish0123456789abcdefABCD"
    with WhatsAppClient(
        token_provider=RotatingTokenProvider([CANARY, other], events=Events.with_logging()),
        phone_number_id=PHONE,
        transport=httpx.MockTransport(
            lambda r: (
                httpx.Response(401, json=EXPIRED)
                if CANARY in r.headers["authorization"]
                else httpx.Response(200, json={"messages": [{"id": "wamid.x"}]})
            )
        ),
        events=Events.with_logging(),
    ) as client:
        client.send_text("15551234567", "hi")
        client.token_provider.rotate_to(0)
    _assert_logs_clean(debug_logs)
    assert any("auth.token_failover" in r.getMessage() for r in debug_logs.records)
