"""The outbox and the state file against bad data, broken files and hand edits (issue 17).

The writer thread outlives any job (text SQLite cannot store, a number too large, a bug), and
nobody waits on it once it is gone; a full disk (SQLite's `max_page_count`, and a real tiny
tmpfs where this process may mount one) and a read-only file (a read-only bind mount and
`chattr +i`: root ignores file modes) give typed errors that say so; a hand-edited file is
refused or read field by field, never sent under another key. Every test that could hang has
a hard bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest

from helpers import eventually, raised
from mounts import fill_disk, read_only_mount, tiny_filesystem
from wa_auth import AsyncWhatsAppClient, Guard, WhatsAppClient
from wa_auth._sqlite import Database
from wa_auth.errors import (
    ConfigurationError,
    InvalidRequestError,
    OutboxError,
    OutboxUnavailableError,
    RequestValidationError,
)
from wa_auth.guards import DELIVERED, FAILED, Delivery
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.outbox import SqliteOutbox
from wa_auth.outbox._sql import SCHEMA
from wa_auth.state import (
    SqliteHealthCache,
    SqlitePauseStore,
    SqliteRateLimiter,
    SqliteVerdictStore,
    StateFile,
)

pytestmark = pytest.mark.anyio

TO = "+15551234567"
GRAPH = "https://graph.facebook.com/v23.0"
PHONE = "1234567"
TOKEN = "EAAGtest0000000000000000000000"
BOUND = 30.0
T = TypeVar("T")


def bounded(call: Callable[[], T], seconds: float = BOUND) -> T:
    """Return `call()`, failing the test if it has not returned within *seconds*."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: the writer is gone"
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def intent(key: str, **kw: Any) -> Intent:
    return Intent.text(TO, f"body of {key}", idempotency_key=key, **kw)


def smuggled(value: Intent, **fields: Any) -> Intent:
    """*value* with fields its constructor refuses, as if a caller had got past validation."""
    for name, field in fields.items():
        object.__setattr__(value, name, field)
    return value


def failure(i: Intent, message: str) -> Delivery:
    error = InvalidRequestError(message, code=131009, http_status=400)
    return Delivery(state=FAILED, intent=i, error=error, attempts=1, reason=error.category)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


@pytest.fixture
def outbox(path: Path) -> Iterator[SqliteOutbox]:
    with SqliteOutbox(path) as box:
        yield box


# --- the writer thread outlives any job ---------------------------------------------------------


async def test_an_outcome_with_a_lone_surrogate_is_recorded_and_the_writer_lives(outbox):
    """A Graph message holding `\\ud800` is stored (escaped), and later async writes finish."""
    first = intent("half-emoji")
    await outbox.abegin(first)
    with anyio.fail_after(BOUND):
        await outbox.asettle(failure(first, "bad parameter \ud800 from a proxy"))
        await outbox.aflush()
        assert await outbox.aenqueue(intent("after")) is True
    row = await outbox.aget("half-emoji")
    assert (row.state, row.error["message"]) == (FAILED, "bad parameter \ud800 from a proxy")
    assert (await outbox.aget("after")).state == "pending"


async def test_a_delivered_message_id_with_a_lone_surrogate_is_recorded(outbox):
    """A peer's message id that no file can hold as it is is recorded escaped, not lost."""
    sent = intent("odd-id")
    await outbox.abegin(sent)
    result = SendResult(message_id="wamid.\udc80", wa_id=None)
    with anyio.fail_after(BOUND):
        await outbox.asettle(Delivery(state=DELIVERED, intent=sent, result=result, attempts=1))
        await outbox.aflush()
    row = await outbox.aget("odd-id")
    assert (row.state, row.message_id) == (DELIVERED, "wamid.\\udc80")


async def test_one_unencodable_begin_in_a_batch_fails_alone(outbox):
    """Concurrent begins share a transaction: the bad one gets OutboxError, the rest commit."""
    good = [intent(f"good-{n}") for n in range(20)]
    bad = smuggled(intent("bad"), idempotency_key="bad-\ud800")
    with anyio.fail_after(BOUND):
        results = await asyncio.gather(
            *(outbox.abegin(i) for i in [*good[:10], bad, *good[10:]]), return_exceptions=True
        )
        assert await outbox.aenqueue(intent("later")) is True
    errors = [r for r in results if r is not None]
    assert len(errors) == 1
    assert isinstance(errors[0], OutboxError)
    assert (errors[0].kind, errors[0].category) == ("unencodable", "invalid_request")
    assert "\\ud800" in errors[0].message
    errors[0].message.encode("utf-8")  # the message itself can be printed
    assert {r.idempotency_key: r.state for r in outbox.list()} == {
        **{i.idempotency_key: "sending" for i in good},
        "later": "pending",
    }


def test_a_blocking_begin_with_unencodable_text_is_a_typed_error(outbox):
    """The blocking path (the caller commits in its thread) fails typed, and the next works."""
    bad = smuggled(intent("bad"), to="+1555\udfff")
    caught = bounded(lambda: raised(OutboxError, lambda: outbox.begin(bad)))
    assert caught.kind == "unencodable"
    bounded(lambda: outbox.begin(intent("next")))
    assert outbox.get("next").state == "sending"


def test_enqueue_many_with_one_unencodable_intent_writes_nothing(outbox):
    """All or nothing: a typed error names the problem, and no earlier row was half-written."""
    batch = [intent(f"k{n}") for n in range(15)]
    batch.append(smuggled(intent("k15"), consumer="n8n \ud83d"))
    batch.extend(intent(f"k{n}") for n in range(16, 21))
    caught = bounded(lambda: raised(OutboxError, lambda: outbox.enqueue_many(batch)))
    assert caught.kind == "unencodable"
    assert outbox.stats().total == 0
    assert outbox.enqueue_many(i for i in batch if i.consumer is None) == 20


def _job(conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO wa_auth_meta (component, version) VALUES ('probe', 1)")
    return "written"


def _boom(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO wa_auth_meta (component, version) VALUES ('boom', 1)")
    raise RuntimeError("a job's own bug")


async def test_a_job_that_raises_anything_fails_only_its_caller(path):
    """Any exception, not only UnicodeEncodeError: its caller gets OutboxError, nothing of it
    is written, the others in the same batch commit, and the writer takes the next change."""
    db = Database(path, SCHEMA)
    try:
        with anyio.fail_after(BOUND):
            results = await asyncio.gather(
                db.arun(_job), db.arun(_boom), db.arun(lambda c: 42), return_exceptions=True
            )
            assert results[0] == "written"
            assert results[2] == 42
            assert isinstance(results[1], OutboxError)
            assert results[1].kind == "failed"
            assert "RuntimeError: a job's own bug" in results[1].message
            assert await db.arun(lambda c: "alive") == "alive"
        components = db.read(
            lambda c: {r[0] for r in c.execute("SELECT component FROM wa_auth_meta")}
        )
        assert components == {"outbox", "probe"}
    finally:
        db.close()


def test_a_writer_that_ends_abnormally_leaves_nobody_waiting(path, monkeypatch):
    """Even a BaseException out of a commit (a bug of the writer itself) answers its callers,
    and the next change gets a writer again."""
    db = Database(path, SCHEMA)
    calls = {"n": 0}
    real = Database._commit

    def broken(self: Database, batch: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("the writer's own bug")
        real(self, batch)

    monkeypatch.setattr(Database, "_commit", broken)

    async def two() -> list[Any]:
        return await asyncio.gather(db.arun(_job), db.arun(lambda c: 1), return_exceptions=True)

    try:
        first, second = bounded(lambda: asyncio.run(two()))
        assert isinstance(first, OutboxError)
        assert first.kind == "failed"
        assert "SystemExit" in first.message
        assert second == 1 or isinstance(second, OutboxError)  # its own batch, or the first
        assert bounded(lambda: asyncio.run(db.arun(lambda c: "next"))) == "next"
    finally:
        db.close()


def test_a_writer_loop_that_breaks_fails_what_waits(path, monkeypatch):
    """A failure of the loop itself (not a job) fails the changes it left queued: no hang."""
    db = Database(path, SCHEMA)
    real = Database._next_batch
    broken = {"once": True}

    def next_batch(self: Database) -> Any:
        if broken["once"]:
            broken["once"] = False
            raise RuntimeError("the loop's own bug")
        return real(self)

    monkeypatch.setattr(Database, "_next_batch", next_batch)
    try:
        caught = bounded(lambda: raised(OutboxError, lambda: asyncio.run(db.arun(_job))))
        assert caught.kind == "failed"
        assert bounded(lambda: asyncio.run(db.arun(lambda c: "next"))) == "next"
    finally:
        db.close()


async def test_asend_through_a_guard_survives_an_error_with_a_lone_surrogate(path, respx_mock):
    """The issue's scenario: a Graph error holding `\\ud800`, then asend_many of the rest."""
    error = '{"error": {"message": "(#131009) bad \\ud800 value", "code": 131009}}'
    sends = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        sends["n"] += 1
        if sends["n"] == 1:
            return httpx.Response(400, content=error, headers={"content-type": "application/json"})
        return httpx.Response(200, json={"messages": [{"id": f"wamid.{sends['n']}"}]})

    respx_mock.post(f"{GRAPH}/{PHONE}/messages").mock(side_effect=answer)
    with SqliteOutbox(path) as box:
        async with AsyncWhatsAppClient(token=TOKEN, phone_number_id=PHONE) as client:
            guard = Guard(client, outbox=box)
            with anyio.fail_after(BOUND):
                first = await guard.asend(intent("k0"))
                rest = await guard.asend_many([intent(f"k{n}") for n in range(1, 21)])
        states = {r.idempotency_key: r.state for r in box.list()}
        message = box.get("k0").error["message"]
    # The classifier writes half a surrogate pair as U+FFFD: the outbox stores what it is given.
    assert first.state == FAILED
    assert message == "(#131009) bad \ufffd value"
    assert [d.state for d in rest] == [DELIVERED] * 20
    assert states == {"k0": FAILED, **{f"k{n}": DELIVERED for n in range(1, 21)}}


# --- limits -------------------------------------------------------------------------------------


async def test_a_huge_limit_means_all_not_an_overflow(outbox):
    """`list(limit=10**20)`, `alist`, `claim`: past SQLite's integers is "all"."""
    outbox.enqueue_many([intent("a"), intent("b")])
    assert len(outbox.list(limit=10**20)) == 2
    assert len(await outbox.alist(limit=99999999999999999999)) == 2
    assert len(outbox.claim(10**20, after=2**64)) == 0
    assert len(outbox.claim(10**20)) == 2
    assert outbox.purge(delivered_older_than=10**400) == 0


def test_claim_refuses_an_after_that_is_no_row_id(outbox):
    """`after` must be an integer >= 0: a typed error before anything runs."""
    for bad in ("3", -1, 1.5, True):
        with pytest.raises(RequestValidationError, match="after"):
            outbox.claim(after=bad)


# --- hand-edited files --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["abc", -1, 1.5, "x'); DROP", "1"], ids=repr)
def test_an_unreadable_schema_version_is_a_typed_error(path, version):
    """A hand-edited `wa_auth_meta` version is refused as corrupt (not a bare ValueError)."""
    SqliteOutbox(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE wa_auth_meta SET version = ? WHERE component = 'outbox'", (version,))
    conn.close()
    if version == "1":  # INTEGER affinity makes it the number 1: a fine version
        SqliteOutbox(path).close()
        return
    with pytest.raises(OutboxError) as caught:
        SqliteOutbox(path)
    assert caught.value.kind == "corrupt"
    assert "schema version" in caught.value.message


def test_a_state_file_with_an_unreadable_version_is_a_typed_error(tmp_path):
    """The state file's component reads the same rule."""
    state = tmp_path / "state.db"
    StateFile(state).close()
    with sqlite3.connect(state) as conn:
        conn.execute("UPDATE wa_auth_meta SET version = 'abc' WHERE component = 'state'")
    conn.close()
    with pytest.raises(OutboxError) as caught:
        StateFile(state)
    assert caught.value.kind == "corrupt"


def test_a_row_whose_intent_names_another_key_is_a_dead_letter(path, outbox):
    """A hand edit that puts another key in a row's intent is never sent under that key, and
    the row does not stay pending forever: a claim makes it a dead letter."""
    outbox.enqueue_many([intent("original"), intent("fine")])
    other = json.dumps(intent("someone-else").to_dict())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE wa_outbox SET intent = ? WHERE idempotency_key = 'original'", (other,))
    conn.close()
    claimed = outbox.claim(10)
    assert [r.idempotency_key for r in claimed] == ["fine"]
    with pytest.raises(OutboxError) as caught:
        outbox.get("original")
    assert caught.value.kind == "corrupt"
    assert "another idempotency key" in caught.value.message
    with sqlite3.connect(path) as conn:
        state, reason = conn.execute(
            "SELECT state, reason FROM wa_outbox WHERE idempotency_key = 'original'"
        ).fetchone()
    conn.close()
    assert (state, reason) == (FAILED, "unreadable")
    assert outbox.stats().dead_letters == 1


def test_a_row_nested_too_deep_to_read_is_a_dead_letter(path, outbox):
    """An intent JSON nested past the parser's recursion is `corrupt`, not a RecursionError."""
    outbox.enqueue(intent("deep"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE wa_outbox SET intent = ?", ("[" * 100_000 + "]" * 100_000,))
    conn.close()
    assert outbox.list() == []
    assert outbox.claim(10) == []
    assert outbox.stats().dead_letters == 1


# --- the number an intent was meant for ----------------------------------------------------------


def test_an_intent_is_recorded_with_the_number_it_was_sent_from(wa_sandbox, tmp_path):
    """An intent without a sender is recorded with the client's; a replay later, with another
    number configured, still sends it from the number it was meant for."""
    first, second = wa_sandbox.phone_number_ids[:2]
    token = wa_sandbox.issue_token()
    with SqliteOutbox(tmp_path / "o.db") as box:
        with WhatsAppClient(
            token=token, phone_number_id=first, base_url=wa_sandbox.base_url
        ) as client:
            guard = Guard(client, outbox=box, sleep=lambda s: None)
            wa_sandbox.fail_next(131048)  # a long cap: queued for a replay
            assert guard.send(intent("later")).state == "queued"
            box.enqueue(intent("pending"))
            assert box.get("pending").intent.phone_number_id is None
        row = box.get("later")
        assert (row.intent.phone_number_id, row.to_dict()["phone_number_id"]) == (first, first)
        box.mark("later", "pending")
        with WhatsAppClient(
            token=token, phone_number_id=second, base_url=wa_sandbox.base_url
        ) as client:
            report = box.replay(Guard(client, outbox=box, sleep=lambda s: None))
        assert [d.state for d in report.deliveries] == [DELIVERED, DELIVERED]
        senders = {m.idempotency_key: m.phone_number_id for m in wa_sandbox.messages()}
        # `later` goes from the number it was meant for; `pending` never had one: the replay's.
        assert senders == {"later": first, "pending": second}
        assert box.get("pending").intent.phone_number_id == second


# --- a key the outbox already delivered ----------------------------------------------------------


async def test_a_delivered_key_is_its_delivery_with_the_original_message_id(wa_sandbox, path):
    """Blocking and async: delivered, reason `duplicate`, the first message id, nothing sent."""
    token = wa_sandbox.issue_token()
    with SqliteOutbox(path) as box:
        with WhatsAppClient(
            token=token, phone_number_id=wa_sandbox.phone_number_id, base_url=wa_sandbox.base_url
        ) as client:
            guard = Guard(client, outbox=box, sleep=lambda s: None)
            first = guard.send(intent("once"))
            again = guard.send(intent("once"))
        async with AsyncWhatsAppClient(
            token=token, phone_number_id=wa_sandbox.phone_number_id, base_url=wa_sandbox.base_url
        ) as aclient:
            async_again = await Guard(aclient, outbox=box).asend(intent("once"))
    for duplicate in (again, async_again):
        assert (duplicate.state, duplicate.reason, duplicate.attempts) == (
            DELIVERED,
            "duplicate",
            0,
        )
        assert duplicate.result.message_id == first.result.message_id
        assert duplicate.ok
        assert duplicate.error is None
    assert len(wa_sandbox.messages()) == 1


def test_a_maybe_delivered_key_is_still_refused(path):
    """Only a delivery the outbox recorded is a duplicate's answer: maybe_delivered refuses."""
    with SqliteOutbox(path) as box:
        once = intent("maybe")
        box.begin(once)
        box.settle(Delivery(state="maybe_delivered", intent=once, attempts=1))
        box.flush()
        client = WhatsAppClient(token=TOKEN, phone_number_id=PHONE)
        with client, pytest.raises(OutboxError) as caught:
            Guard(client, outbox=box).send(intent("maybe"))
    assert caught.value.kind == "duplicate"


# --- the state file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "store", [SqliteVerdictStore, SqlitePauseStore, SqliteRateLimiter, SqliteHealthCache]
)
@pytest.mark.parametrize("given", ["state.db", Path("state.db"), None], ids=repr)
def test_a_state_store_refuses_anything_but_a_state_file_at_construction(store, given):
    """`SqliteVerdictStore("state.db")`: a ConfigurationError naming StateFile, not an
    AttributeError at first use."""
    with pytest.raises(ConfigurationError, match="takes a StateFile"):
        store(given)


def test_a_verdict_with_a_lone_surrogate_is_kept(tmp_path):
    """A Graph message holding `\\ud800` in a verdict is stored and read back."""
    error = InvalidRequestError("dead \ud800 token", code=190, http_status=401)
    with StateFile(tmp_path / "state.db") as state:
        bounded(lambda: state.verdicts.record("sha256:0123456789ab", error))
        assert state.verdicts.get("sha256:0123456789ab").message == "dead \ud800 token"


@pytest.mark.parametrize(
    ("pause", "kept"),
    [
        (
            '{"kind": "account", "phone_number_id": "1", "category": "x", "since": 1, "until": "a"}',
            0,
        ),
        ('{"kind": "account", "phone_number_id": 1, "category": "x", "since": 1}', 0),
        ('{"kind": "account", "phone_number_id": "1", "category": "x", "since": true}', 0),
        (
            '{"kind": "account", "phone_number_id": "1", "category": "x", "since": 1, "opens": "2"}',
            0,
        ),
        ('{"kind": "account", "phone_number_id": "1", "category": "x", "since": 1, "x": 1}', 1),
        ("[" * 50_000, 0),
    ],
    ids=["until", "phone", "since", "opens", "unknown-field", "deep"],
)
def test_a_hand_edited_pause_is_as_if_there_were_none(tmp_path, pause, kept):
    """A stored pause of the wrong shape is read as no pause, so a guard never trips on it
    (`until: "a"` would fail `holds()`); an unknown extra field is only ignored."""
    with StateFile(tmp_path / "state.db") as state:
        with sqlite3.connect(tmp_path / "state.db") as conn:
            conn.execute("INSERT INTO wa_pauses VALUES ('account', '1', ?, 0)", (pause,))
        conn.close()
        found = [state.pauses.get("account", "1")] if kept else []
        assert state.pauses.list() == found
        assert (state.pauses.get("account", "1") is not None) == bool(kept)
        for p in state.pauses.list():
            assert p.holds(0.0) in {True, False}


def test_hand_edited_penalties_of_another_type_are_ignored(tmp_path):
    """A `wa_limits` row whose `until` is text (TEXT sorts above numbers) or whose number is a
    blob is no penalty: refresh() does not trip on it."""
    with StateFile(tmp_path / "state.db") as state:
        with sqlite3.connect(tmp_path / "state.db") as conn:
            conn.execute("INSERT INTO wa_limits VALUES ('1', '', 'abc')")
            conn.execute("INSERT INTO wa_limits VALUES (x'01', '', 9e99)")
        conn.close()
        assert state.limiter().refresh() == 0


# --- a full disk --------------------------------------------------------------------------------


def _fill(outbox: SqliteOutbox) -> None:
    """Cap the file at its present size (SQLite's own SQLITE_FULL, as from a full disk)."""
    conn = outbox._db._conn  # the writer's connection: its page limit
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_file_is_transient_and_retryable_and_reported(path):
    """SQLITE_FULL: OutboxUnavailableError (transient, retryable), check() says `full`, and the
    first write that fits again clears it."""
    with SqliteOutbox(path) as box:
        _fill(box)
        with pytest.raises(OutboxUnavailableError) as caught:
            box.enqueue_many(
                [Intent.text(TO, "x" * 4000, idempotency_key=f"k{n}") for n in range(50)]
            )
        error = caught.value
        assert (error.kind, error.category, error.retryable) == ("full", "transient", True)
        assert isinstance(error, OutboxError)
        assert "full" in error.message
        assert error.to_dict()["category"] == "transient"
        assert box.check().kind == "full"
        box._db._conn.execute("PRAGMA max_page_count = 1073741823")
        eventually(lambda: box.check() is None)  # its write test runs at most once a second
        assert box.enqueue(intent("fits")) is True


def test_a_full_disk_is_the_same_error_for_a_new_and_an_existing_file(tmp_path):
    """A real ENOSPC: a new file, a change to an open one and the opening of an existing one
    all raise OutboxUnavailableError(full); once there is room, the open one works again."""
    with tiny_filesystem(tmp_path, 256) as disk:
        SqliteOutbox(disk / "closed.db").close()
        existing = SqliteOutbox(disk / "existing.db")
        try:
            fill_disk(disk)
            with pytest.raises(OutboxUnavailableError) as new:
                SqliteOutbox(disk / "new.db")
            with pytest.raises(OutboxUnavailableError) as old:
                existing.enqueue_many(
                    [Intent.text(TO, "y" * 2000, idempotency_key=f"k{n}") for n in range(200)]
                )
            # Its -shm cannot grow: SQLite says "disk I/O error"; the disk is full.
            with pytest.raises(OutboxUnavailableError) as reopened:
                SqliteOutbox(disk / "closed.db")
            kinds = (new.value.kind, old.value.kind, reopened.value.kind)
            assert kinds == ("full", "full", "full")
            assert existing.check().kind == "full"
            (disk / "filler").unlink()
            eventually(lambda: existing.check() is None)
            assert existing.enqueue(intent("fits")) is True
        finally:
            with contextlib.suppress(OutboxError):
                existing.close()


# --- a read-only file ---------------------------------------------------------------------------


def _written(directory: Path) -> Path:
    directory.mkdir()
    with SqliteOutbox(directory / "o.db") as box:
        box.enqueue_many([intent("a"), intent("b")])
    assert not (directory / "o.db-shm").exists()  # a clean close leaves no -wal nor -shm
    return directory / "o.db"


def test_a_read_only_mount_is_reported_as_read_only_and_can_be_read(tmp_path):
    """On a read-only mount (no -shm: SQLite says "unable to open") the error is `readonly`,
    not `missing`, and `read_only=True` lists and counts; a change is refused, typed."""
    _written(tmp_path / "data")
    with read_only_mount(tmp_path / "data") as ro:
        with pytest.raises(OutboxError) as caught:
            SqliteOutbox(ro / "o.db", create=False)
        assert caught.value.kind == "readonly"
        with SqliteOutbox(ro / "o.db", read_only=True) as box:
            assert box.read_only
            assert box.stats().total == 2
            assert [r.idempotency_key for r in box.list()] == ["a", "b"]
            assert box.check() is None
            with pytest.raises(OutboxError) as change:
                box.enqueue(intent("c"))
            assert change.value.kind == "readonly"


def test_a_read_only_mount_with_an_unread_log_is_refused(tmp_path):
    """A log holding changes (no -shm to read it) is not read as immutable: refused, typed."""
    data = tmp_path / "data"
    _written(data)
    (data / "o.db-wal").write_bytes(b"\1" * 4096)
    with read_only_mount(data) as ro, pytest.raises(OutboxError) as caught:
        SqliteOutbox(ro / "o.db", read_only=True)
    assert caught.value.kind == "readonly"
    assert "-shm" in caught.value.message


def test_an_immutable_file_is_read_only_not_missing(tmp_path):
    """`chattr +i` (which root obeys): `readonly` for a change, readable with read_only=True."""
    db = _written(tmp_path / "data")
    if not shutil.which("chattr"):
        pytest.skip("no chattr")
    made = subprocess.run(["chattr", "+i", str(db)], check=False, capture_output=True)
    if made.returncode != 0:
        pytest.skip("this file system does not take chattr +i")
    try:
        with pytest.raises(OutboxError) as caught:
            SqliteOutbox(db, create=False)
        assert caught.value.kind == "readonly"
        with SqliteOutbox(db, read_only=True) as box:
            assert box.stats().total == 2
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=False)
