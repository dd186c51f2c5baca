"""The public API used as a consumer would; checked by `mypy --strict`, never run."""

from __future__ import annotations

import wa_auth
from wa_auth import AsyncWhatsAppClient, SendResult, WhatsAppClient, errors
from wa_auth.providers import StaticTokenProvider, Token, TokenProvider


def sync_usage() -> str:
    with WhatsAppClient(token="t", phone_number_id="123") as client:
        result: SendResult = client.send_text("+15551234567", "hi", idempotency_key="k1")
        info = client.debug_token()
        expires: int = info.expires_at
        page = client.list_templates(limit=10)
        names = [t.name for t in page.items]
        return result.message_id + str(expires) + ",".join(names)


async def async_usage() -> str:
    provider: TokenProvider = StaticTokenProvider("t")
    async with AsyncWhatsAppClient(token_provider=provider, phone_number_id=1) as client:
        result = await client.send_template("+15551234567", "hello_world", "en_US")
        media = await client.download_media("42")
        data: bytes = media.content
        return result.message_id + str(len(data))


def classify(body: bytes) -> str:
    err = errors.from_response(401, body)
    if isinstance(err, wa_auth.TokenExpiredError):
        return err.operator_action
    category: str = err.category
    retry: float | None = err.retry_after
    return category + str(retry)


def token() -> str:
    t = Token("secret", expires_at=None, source="test")
    return t.fingerprint
