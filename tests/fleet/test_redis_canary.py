"""The canary: after a run through every fleet store, no key or value in Redis holds the token.

A real run against the sandbox (a delivered send, health checked, the token revoked, the
account locked, webhook keys claimed, a rotation) through a client and a guard wired to a
`RedisState`; then every key and value is read back, and the RDB dump scanned byte by byte
(saved uncompressed by the fixture). Recipients are digests there, never phone numbers.
"""

from __future__ import annotations

import pytest

from wa_auth import Guard, Intent, WhatsAppClient
from wa_auth.fleet import RedisState
from wa_auth.providers import Token
from wa_auth.sandbox import Sandbox

pytestmark = pytest.mark.real_component("redis")

TO = "+15557654321"


def _everything(client) -> list[bytes]:
    """Every key and every value (strings and hashes: all wa_auth writes) as bytes."""
    found: list[bytes] = []
    for key in client.scan_iter(count=1000):
        found.append(key)
        kind = client.type(key)
        if kind == b"string":
            found.append(client.get(key))
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                found += [field, value]
        else:
            found.append(client.dump(key))
    return found


def test_no_key_value_or_dump_holds_a_token_or_a_recipient(redis_server):
    """Scan keys, values and the RDB file for the token and the recipient's number."""
    redis_server.flush()
    with Sandbox(seed=11) as sb, RedisState(redis_server.url) as state:
        token = sb.issue_token()
        fingerprint = Token(token).fingerprint
        with WhatsAppClient(
            base_url=sb.base_url,
            token=token,
            phone_number_id=sb.phone_number_id,
            verdicts=state.verdicts,
        ) as client:
            guard = Guard(
                client, pauses=state.pauses, limiter=state.limiter(rate=1000, pair_interval=0.01)
            )
            assert guard.send(Intent.text(TO, "hello")).ok
            state.health.put(fingerprint, client.token_health())
            sb.set_account_state("locked")
            assert not guard.send(Intent.text(TO, "hello")).ok
            assert state.pauses.list()
            sb.set_account_state("ok")
            guard.resume(sb.phone_number_id)
            sb.set_token_state(token, "revoked_password_changed")
            assert not guard.send(Intent.text(TO, "hello")).ok
            assert state.verdicts.get(fingerprint) is not None
            state.limiter().penalize(sb.phone_number_id, TO, 30)
        ledger = state.ledger()
        assert ledger.claim("wamid.HBgL:delivered")
        ledger.advance("wamid.HBgL", 2)
        assert state.rotation.compare_and_set("main", 0, fingerprint) is not None

        everything = _everything(state.connection.client)
        dump = redis_server.dump()

    assert any(fingerprint.encode() in item for item in everything)  # the scan reads values
    secrets = [token.encode(), TO.encode(), TO.lstrip("+").encode()]
    for secret in secrets:
        assert not [item for item in everything if secret in item], secret
        assert secret not in dump
    assert fingerprint.encode() in dump
