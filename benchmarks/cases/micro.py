"""In-process micro benchmarks: classification per error and cached `get_token()`.

No peer is involved; each row is the best of five batches, in microseconds per call.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from loops import micro_loop
from peer import EXPIRED_BODY
from registry import Ctx, Goal, variant

from cases.common import TOKEN

_RATE_LIMIT_BODY = (
    '{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,'
    '"error_data":{"messaging_product":"whatsapp","details":"Cloud API message throughput '
    'has been reached."},"fbtrace_id":"A1b2C3d4E5f6G7h8I9j0K1l"}}'
)


def _classify(status: int, body: str) -> Any:
    from wa_auth.errors import from_response

    content = body.encode()
    headers = {"content-type": "application/json"}
    return lambda: from_response(status, content, headers)


@variant(
    "micro.classify.190_463",
    label="errors.from_response, 401 code 190/463 (expired)",
    group="micro",
    kind="micro",
    goal=Goal("max_us", 10),
)
def classify_expired(ctx: Ctx) -> dict[str, Any]:
    return micro_loop(ctx.n, _classify(401, EXPIRED_BODY))


@variant(
    "micro.classify.130429",
    label="errors.from_response, 400 code 130429 (rate limit)",
    group="micro",
    kind="micro",
    goal=Goal("max_us", 10),
)
def classify_rate_limit(ctx: Ctx) -> dict[str, Any]:
    return micro_loop(ctx.n, _classify(400, _RATE_LIMIT_BODY))


@variant(
    "micro.get_token.static",
    label="StaticTokenProvider.get_token (cached)",
    group="micro",
    kind="micro",
    goal=Goal("max_us", 1),
)
def get_token_static(ctx: Ctx) -> dict[str, Any]:
    from wa_auth.providers import StaticTokenProvider

    return micro_loop(ctx.n, StaticTokenProvider(TOKEN).get_token)


def _provider(name: str, module: str) -> Any:
    import importlib

    import wa_auth.providers

    cls = getattr(wa_auth.providers, name, None)
    if cls is None:  # written but not exported yet
        try:
            cls = getattr(importlib.import_module(f"wa_auth.providers.{module}"), name, None)
        except ImportError:
            cls = None
    if cls is None:
        raise LookupError(f"wa_auth.providers.{name} does not exist yet")
    return cls


@variant(
    "micro.get_token.env",
    label="EnvTokenProvider.get_token (cached)",
    group="micro",
    kind="micro",
    goal=Goal("max_us", 1),
)
def get_token_env(ctx: Ctx) -> dict[str, Any]:
    cls = _provider("EnvTokenProvider", "_env")
    os.environ["WA_BENCH_TOKEN"] = TOKEN
    return micro_loop(ctx.n, cls("WA_BENCH_TOKEN").get_token)


@variant(
    "micro.get_token.file",
    label="FileTokenProvider.get_token (cached, stat on every call)",
    group="micro",
    kind="micro",
    goal=Goal("max_us", 5),
    notes="check_interval=1e-9: the file is stat()ed on every call, the worst case",
)
def get_token_file(ctx: Ctx) -> dict[str, Any]:
    cls = _provider("FileTokenProvider", "_file")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "token"
        path.write_text(TOKEN + "\n", encoding="utf-8")
        path.chmod(0o600)
        provider = cls(path, check_interval=1e-9)
        return micro_loop(ctx.n, provider.get_token)


@variant(
    "micro.get_token.vault",
    label="VaultTokenProvider.get_token (cached; stub Vault)",
    group="micro",
    kind="micro",
    goal=Goal("max_us", 2),
    notes="Vault is an httpx.MockTransport answering a KV v2 read; the first call reads it, "
    "the measured calls are served from the provider's cache",
)
def get_token_vault(ctx: Ctx) -> dict[str, Any]:
    import json

    import httpx

    cls = _provider("VaultTokenProvider", "_vault")
    secret = {"data": {"data": {"access_token": TOKEN}, "metadata": {"version": 1}}}

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(secret).encode())

    provider = cls(
        "http://vault.invalid:8200",
        "wa/bench",
        vault_token="s.benchmark",
        transport=httpx.MockTransport(handler),
    )
    return micro_loop(ctx.n, provider.get_token)
