"""What only `PostgresOutbox` has: a server, a schema, many workers, NOTIFY, an outage.

The rules it shares with the other outboxes are checked in `test_outbox.py` and the state
machine; here, against a real PostgreSQL (the session's, or one of the test's own when it is
stopped): the typed errors of a wrong password, a missing database, a closed port and a newer
schema (never the password in any text), the schema's migration by concurrent workers, claims
that skip the rows another transaction holds, idle workers woken by NOTIFY, paused numbers left
unclaimed, group commit, a late failed status webhook, and a server stopped mid-run.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

import pytest

from helpers import EPOCH, Clock, graph_error
from pgserver import PostgresServer, find_bin
from wa_auth.errors import ConfigurationError, OutboxError, OutboxUnavailableError
from wa_auth.guards import DELIVERED, FAILED, Delivery
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.outbox import PostgresOutbox
from wa_auth.webhooks import MessageStatus

pytestmark = [pytest.mark.real_component("postgresql"), pytest.mark.anyio]

TO = "+15551234567"


def intent(key: str, phone: str | None = "100") -> Intent:
    return Intent.text(TO, f"hello {key}", idempotency_key=key, phone_number_id=phone)


def delivered(i: Intent, wamid: str = "wamid.1") -> Delivery:
    return Delivery(
        state=DELIVERED,
        intent=i,
        attempts=1,
        result=SendResult(message_id=wamid, wa_id=None, idempotency_key=i.idempotency_key),
    )


@pytest.fixture
def schema() -> str:
    return f"t_{secrets.token_hex(6)}"


@pytest.fixture
def open_box(postgres_dsn, schema):
    opened: list[PostgresOutbox] = []

    def make(**kw) -> PostgresOutbox:
        box = PostgresOutbox(kw.pop("dsn", postgres_dsn), schema=kw.pop("schema", schema), **kw)
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


# --- typed errors, never the password -------------------------------------------------------------


def test_a_wrong_password_is_auth_failed_and_never_shown(postgres_server):
    wrong = "not-the-" + secrets.token_hex(4)
    with pytest.raises(OutboxError) as caught:
        PostgresOutbox(postgres_server.url(password=wrong))
    error = caught.value
    assert error.kind == "auth_failed"
    assert f"127.0.0.1:{postgres_server.port}/wa_auth_test" in str(error)
    for text in (str(error), repr(error), str(error.to_dict())):
        assert wrong not in text
        assert postgres_server.password not in text


def test_a_missing_database_is_missing(postgres_server):
    with pytest.raises(OutboxError) as caught:
        PostgresOutbox(postgres_server.url("no_such_db"))
    assert caught.value.kind == "missing"
    assert "no_such_db" in str(caught.value)


def test_a_closed_port_is_unavailable_and_retryable(postgres_server):
    url = postgres_server.url().replace(f":{postgres_server.port}/", ":1/")
    with pytest.raises(OutboxUnavailableError) as caught:
        PostgresOutbox(url, connect_timeout=2)
    assert caught.value.kind == "unreachable"
    assert caught.value.retryable
    assert postgres_server.password not in str(caught.value)


@pytest.mark.parametrize(
    "dsn", ["outbox.db", "mysql://u:p@h/db", 42], ids=["path", "other-scheme", "not-text"]
)
def test_what_is_not_a_postgres_url_is_a_configuration_error(dsn):
    with pytest.raises(ConfigurationError, match="postgresql://"):
        PostgresOutbox(dsn)  # type: ignore[arg-type]


def test_the_repr_hides_the_password(open_box, postgres_server):
    box = open_box()
    assert postgres_server.password not in repr(box)
    assert "***" in repr(box)


# --- the schema ---------------------------------------------------------------------------------


def test_a_newer_schema_is_refused_and_left_alone(open_box, postgres_server, schema):
    open_box().close()
    postgres_server.psql(f"UPDATE {schema}.meta SET version = 99 WHERE component = 'outbox'")
    with pytest.raises(OutboxError) as caught:
        open_box()
    assert caught.value.kind == "newer_schema"
    assert postgres_server.psql(f"SELECT version FROM {schema}.meta").strip() == "99"


def test_without_create_a_missing_schema_is_refused(open_box, postgres_server, schema):
    with pytest.raises(OutboxError) as caught:
        open_box(create=False)
    assert caught.value.kind == "missing"
    assert "wa-auth outbox migrate" in str(caught.value)
    assert (
        postgres_server.psql(
            f"SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{schema}'"
        ).strip()
        == "0"
    )


def test_workers_starting_together_migrate_once(open_box):
    boxes: list[PostgresOutbox] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            boxes.append(open_box())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(boxes) == 6
    assert boxes[0].enqueue(intent("k")) is True
    assert boxes[5].get("k") is not None


# --- a fleet's claims ---------------------------------------------------------------------------


def test_workers_never_claim_the_same_row(open_box):
    """Four threads claim at once over three numbers: each row once, none lost.

    A claim that meets another's locks may come back empty (it never waits): the worker
    looks again from the top, as a fleet's worker does.
    """
    first = open_box()
    first.enqueue_many([intent(f"k{n}", phone=str(n % 3)) for n in range(200)])
    workers = [open_box() for _ in range(4)]
    claimed: list[set[str]] = [set() for _ in workers]
    deadline = time.monotonic() + 60

    def work(n: int) -> None:
        after = 0
        while sum(len(keys) for keys in claimed) < 200 and time.monotonic() < deadline:
            rows = workers[n].claim(7, after=after)
            if not rows:
                after = 0
                time.sleep(0.01)
                continue
            after = rows[-1].id
            claimed[n].update(r.idempotency_key for r in rows)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [k for keys in claimed for k in keys]
    assert sorted(every) == sorted(f"k{n}" for n in range(200))  # each once, none lost


def test_a_claim_skips_rows_another_transaction_holds(open_box, postgres_dsn, schema):
    import psycopg

    box = open_box()
    box.enqueue_many([intent("a"), intent("b"), intent("c", phone="200")])
    with psycopg.connect(postgres_dsn) as other:
        other.execute(f"SELECT 1 FROM {schema}.outbox WHERE idempotency_key = 'a' FOR UPDATE")
        # Not waited for; and b, a's number's next, waits for a (per-number order).
        assert [r.idempotency_key for r in box.claim(10)] == ["c"]
    assert [r.idempotency_key for r in box.claim(10)] == ["a", "b"]  # one number per claim


def test_a_pause_without_an_end_holds_its_numbers_intents_until_it_is_cleared(
    open_box, postgres_server, schema
):
    clock = Clock(EPOCH)
    box = open_box(clock=clock)
    box.enqueue_many([intent("paused", phone="100"), intent("free", phone="200")])
    postgres_server.psql(
        f"INSERT INTO {schema}.pauses VALUES ('pause', '100', '{{}}', NULL, {EPOCH})"
    )
    clock.t += 10**6
    assert [r.idempotency_key for r in box.claim(10)] == ["free"]
    postgres_server.psql(f"DELETE FROM {schema}.pauses")
    assert [r.idempotency_key for r in box.claim(10)] == ["paused"]  # its number's run


def test_a_paused_numbers_intents_are_not_claimed_until_the_pause_ends(
    open_box, postgres_server, schema
):
    clock = Clock(EPOCH)
    box = open_box(clock=clock)
    box.enqueue_many([intent("paused", phone="100"), intent("free", phone="200")])
    postgres_server.psql(
        f"INSERT INTO {schema}.pauses VALUES ('pause', '100', '{{}}', {EPOCH + 60}, {EPOCH})"
    )
    assert [r.idempotency_key for r in box.claim(10)] == ["free"]
    box.release()
    clock.t += 61
    assert [r.idempotency_key for r in box.claim(10)] == ["paused"]  # its number's run


def test_an_idle_worker_is_woken_by_an_enqueue(open_box):
    """LISTEN/NOTIFY: a worker's first wait only starts listening; the next waits for work."""
    idle, producer = open_box(), open_box()
    assert idle.wait_for_work(timeout=30) is True  # starts listening: look again at once
    assert idle.wait_for_work(timeout=0.2) is False  # nothing: the bounded poll
    woke: list[bool] = []
    listening = threading.Thread(target=lambda: woke.append(idle.wait_for_work(timeout=30)))
    listening.start()
    producer.enqueue(intent("k"))
    listening.join(30)
    assert woke == [True]


async def test_concurrent_settles_share_commits(open_box):
    box = open_box()
    intents = [intent(f"k{n}") for n in range(64)]
    await asyncio.gather(*(box.abegin(i) for i in intents))
    before = box.commits
    await asyncio.gather(*(box.asettle(delivered(i, f"wamid.{n}")) for n, i in enumerate(intents)))
    await box.aflush()
    assert (await box.astats()).by_state[DELIVERED] == 64
    assert box.commits - before < 16  # group commit: 64 outcomes, a few transactions


def test_a_failed_status_webhook_fails_the_delivered_row_once(open_box):
    box = open_box()
    i = intent("k")
    box.begin(i)
    box.settle(delivered(i, "wamid.1"))
    error = graph_error(400, 131026, message="undeliverable")
    event = MessageStatus(id="wamid.1", status="failed", idempotency_key="k", errors=(error,))
    row = box.apply_status(event)
    assert row is not None
    assert (row.state, row.reason, row.category) == (FAILED, "webhook:131026", error.category)
    again = box.apply_status(event)
    assert again is not None
    assert (again.state, again.updated_at) == (row.state, row.updated_at)
    sent = MessageStatus(id="wamid.1", status="read", idempotency_key="k")
    assert box.apply_status(sent).state == FAILED  # type: ignore[union-attr]
    assert box.apply_status(MessageStatus(id="x", status="failed", idempotency_key="nope")) is None


# --- an outage ----------------------------------------------------------------------------------


@pytest.fixture
def own_server(require_component):
    bindir = find_bin()
    if bindir is None:
        require_component("postgresql", "initdb/pg_ctl not found (apt-get install postgresql)")
    server = PostgresServer(bindir).init()
    yield server
    server.close()


def test_a_server_stopped_mid_run_gives_typed_errors_and_nothing_false(own_server, wa_sandbox):
    from wa_auth import Guard, WhatsAppClient

    plain = WhatsAppClient(
        token=wa_sandbox.issue_token(),
        phone_number_id=wa_sandbox.phone_number_id,
        base_url=wa_sandbox.base_url,
    )
    with PostgresOutbox(own_server.dsn, connect_timeout=2) as box, plain:
        box.begin(intent("before"))
        box.settle(delivered(intent("before")))
        box.flush()
        own_server.stop()
        with pytest.raises(OutboxUnavailableError) as caught:
            box.begin(intent("during"))  # not acknowledged: its send must not go out
        assert caught.value.retryable
        assert own_server.password not in str(caught.value)
        with pytest.raises(OutboxError):
            box.get("before")
        # The guard's sends without an outbox keep working while the outbox's server is down.
        assert Guard(plain).send(Intent.text(TO, "hi")).state == DELIVERED
        own_server.start()
        box.begin(intent("after"))  # a new connection, without a restart of the worker
        assert box.get("before").state == DELIVERED  # type: ignore[union-attr]
        assert box.get("during") is None  # nothing acknowledged that was not committed
        assert box.get("after").state == "sending"  # type: ignore[union-attr]


async def test_the_health_check_names_a_stopped_server(own_server):
    with PostgresOutbox(own_server.dsn, connect_timeout=2) as box:
        assert box.check() is None
        assert await box.acheck() is None
        own_server.stop()
        problem = box.check()
        assert isinstance(problem, OutboxUnavailableError)
        assert await box.acheck() is not None
        own_server.start()
        assert box.check() is None
