"""`PostgresState`: verdicts and pauses on PostgreSQL tables, shared by every worker.

Against the session's real PostgreSQL, in a schema of each test's own: what one worker learns
(a dead token, a paused number) the next one knows; a pause with an end keeps the outbox's
claims (same schema) off the number; the async forms make the same changes.
"""

from __future__ import annotations

import secrets

import pytest

from helpers import EPOCH, Clock, graph_error
from wa_auth.errors import TokenRevokedError
from wa_auth.intents import Intent
from wa_auth.outbox import PostgresOutbox
from wa_auth.pacing import Pause, PauseStore
from wa_auth.providers import VerdictStore
from wa_auth.state import PostgresState

pytestmark = [pytest.mark.real_component("postgresql"), pytest.mark.anyio]


@pytest.fixture
def make(postgres_dsn):
    schema = f"s_{secrets.token_hex(6)}"
    clock = Clock(EPOCH)
    opened: list[PostgresState] = []

    def make(**kw) -> PostgresState:
        state = PostgresState(postgres_dsn, schema=schema, clock=clock, **kw)
        opened.append(state)
        return state

    make.clock = clock  # type: ignore[attr-defined]
    make.schema = schema  # type: ignore[attr-defined]
    yield make
    for state in opened:
        state.close()


def revoked() -> TokenRevokedError:
    error = graph_error(401, 190, 460, message="revoked", fingerprint="sha256:dead00000000")
    assert isinstance(error, TokenRevokedError)
    return error


def test_its_stores_are_the_protocols(make):
    state = make()
    assert isinstance(state.verdicts, VerdictStore)
    assert isinstance(state.pauses, PauseStore)


def test_a_verdict_one_worker_records_the_next_refuses(make):
    one, two = make(), make()
    one.verdicts.record("sha256:dead00000000", revoked())
    found = two.verdicts.get("sha256:dead00000000")
    assert isinstance(found, TokenRevokedError)
    assert found.token_fingerprint == "sha256:dead00000000"
    two.verdicts.forget("sha256:dead00000000")
    assert one.verdicts.get("sha256:dead00000000") is None


def test_a_verdict_lapses_after_its_ttl(make):
    state = make(verdict_ttl=60)
    state.verdicts.record("sha256:dead00000000", revoked())
    make.clock.t += 61
    assert state.verdicts.get("sha256:dead00000000") is None


def test_pauses_are_shared_and_keep_claims_off_the_number(make, postgres_dsn):
    state = make()
    pause = Pause(
        kind="pause", phone_number_id="100", category="account_state", since=EPOCH, until=EPOCH + 60
    )
    state.pauses.put(pause)
    assert make().pauses.get("pause", "100") == pause
    assert state.pauses.list() == [pause]
    with PostgresOutbox(postgres_dsn, schema=make.schema, clock=make.clock) as box:
        box.enqueue(Intent.text("+15551234567", "hi", idempotency_key="a", phone_number_id="100"))
        assert box.claim() == []
        state.pauses.clear("pause", "100")
        assert [r.idempotency_key for r in box.claim()] == ["a"]
    assert state.pauses.get("pause", "100") is None


async def test_the_async_forms_make_the_same_changes(make):
    state = make()
    await state.verdicts.arecord("sha256:dead00000000", revoked())
    assert isinstance(await state.verdicts.aget("sha256:dead00000000"), TokenRevokedError)
    await state.verdicts.aforget("sha256:dead00000000")
    assert await state.verdicts.aget("sha256:dead00000000") is None
    pause = Pause(kind="circuit", phone_number_id="200", category="transient", since=EPOCH)
    await state.pauses.aput(pause)
    assert await state.pauses.aget("circuit", "200") == pause
    assert await state.pauses.alist() == [pause]
    await state.pauses.aclear("circuit", "200")
    assert await state.pauses.alist() == []


def test_the_repr_hides_the_password(make, postgres_server):
    assert postgres_server.password not in repr(make())
