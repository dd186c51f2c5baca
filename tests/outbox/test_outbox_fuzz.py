"""Arbitrary input into the outbox and the state file: typed errors, no hang, no dead thread.

Hypothesis writes arbitrary Unicode (lone surrogates, NUL, astral characters) into every text
the outbox and the state file turn into bytes (a caller's intent, a peer's error message and
message id, a token-health report), and arbitrary JSON of any nesting into the columns a hand
edit can reach. The rule is the same everywhere: what can be stored is stored and read back as
it was; what cannot is refused with an `OutboxError` that names the problem; a read of a
hand-edited record is a typed refusal or "none", never another exception, and the writer takes
the next change. Each example is bounded in time.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wa_auth._sqlite import printable
from wa_auth.errors import InvalidRequestError, OutboxError, TokenRevokedError
from wa_auth.guards import DELIVERED, FAILED, Delivery
from wa_auth.intents import Intent
from wa_auth.models import SendResult, TokenHealth
from wa_auth.outbox import SqliteOutbox
from wa_auth.pacing import ACCOUNT, Pause
from wa_auth.state import StateFile

TO = "+15551234567"
BOUND = 30.0
T = TypeVar("T")
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Any code point, with the troublesome ones often: lone surrogates, NUL, an astral emoji.
CHARS = st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from(["\ud800", "\udfff", "\ud83d", "\ude00", "\x00", "\U0001f600", "'", "\\"]),
)
TEXT = st.text(CHARS, max_size=60)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def bounded(call: Callable[[], T], seconds: float = BOUND) -> T:
    """Return `call()`, failing if it has not returned within *seconds* (a gone writer)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def attempt(call: Callable[[], T]) -> tuple[T | None, OutboxError | None]:
    """Return `(call(), None)`, or `(None, the OutboxError it raised)`; anything else raises."""
    try:
        return bounded(call), None
    except OutboxError as exc:
        return None, exc


def smuggled(value: Intent, **fields: Any) -> Intent:
    """*value* with fields its constructor refuses, as if a caller had got past validation."""
    for name, field in fields.items():
        object.__setattr__(value, name, field)
    return value


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@pytest.fixture(scope="module")
def outbox(folder: Path) -> Iterator[SqliteOutbox]:
    with SqliteOutbox(folder / "outbox.db") as box:
        yield box


@pytest.fixture(scope="module")
def state(folder: Path) -> Iterator[StateFile]:
    with StateFile(folder / "state.db") as file:
        yield file


def _alive(outbox: SqliteOutbox) -> None:
    """The writer takes the next change, blocking and async."""
    key = f"alive-{threading.get_ident()}-{id(outbox)}"
    bounded(lambda: outbox.enqueue(Intent.text(TO, "ok", idempotency_key=key)))
    assert outbox.get(key) is not None
    bounded(outbox.flush)


_COUNTER = iter(range(10**9))


def _key() -> str:
    return f"k{next(_COUNTER)}"


# --- a peer's text in an outcome ----------------------------------------------------------------


@SETTINGS
@given(message=TEXT, message_id=TEXT.filter(bool), user=TEXT)
@example(message="bad \ud800 value", message_id="wamid.\udfff", user="\x00\ud83d")
def test_any_outcome_text_is_recorded_as_it_was(outbox, message, message_id, user):
    """A Graph or proxy message and message id of any text: the outcome is recorded, the
    error's text reads back exactly (an escaped surrogate reads back as itself)."""
    key = _key()
    sent = Intent.text(TO, "hi", idempotency_key=key)
    bounded(lambda: outbox.begin(sent))
    error = InvalidRequestError(message, code=131009, http_status=400, user_message=user)
    result = SendResult(message_id=message_id, wa_id=None)
    bounded(lambda: outbox.settle(Delivery(state=FAILED, intent=sent, error=error, attempts=1)))
    other = Intent.text(TO, "hi", idempotency_key=_key())
    bounded(lambda: outbox.begin(other))
    delivered = Delivery(state=DELIVERED, intent=other, result=result, attempts=1)
    bounded(lambda: outbox.settle(delivered))
    bounded(outbox.flush)
    row = outbox.get(key)
    assert (row.state, row.error["message"], row.error["user_message"]) == (
        FAILED,
        error.message,
        user,
    )
    assert outbox.get(other.idempotency_key).message_id == printable(message_id)
    _alive(outbox)


# --- a caller's text in an intent ---------------------------------------------------------------


@SETTINGS
@given(key=TEXT.filter(bool), to=TEXT, consumer=TEXT, phone=TEXT, body=TEXT)
@example(key="\ud800", to=TO, consumer="n8n", phone="1", body="hi")
@example(key="nul\x00", to=TO, consumer="n8n", phone="1", body="half \ud83d")
def test_any_intent_text_is_stored_or_refused_typed(outbox, key, to, consumer, phone, body):
    """An intent whose fields got past validation, with any text: begin records it (and it
    reads back) or refuses it with OutboxError(unencodable); the writer lives on."""
    value = smuggled(
        Intent.text(TO, "x", idempotency_key=_key()),
        idempotency_key=f"{_key()}:{key}",
        to=to,
        consumer=consumer,
        phone_number_id=phone,
        content={"body": body},
    )
    storable = all(encodable(t) for t in (key, to, consumer, phone, body))
    _, refused = attempt(lambda: outbox.begin(value))
    if refused is not None:
        assert (storable, refused.kind) == (False, "unencodable")
        assert encodable(refused.message)
    else:
        assert storable
        # Stored as it came; it reads back, or (an invalid recipient) is refused as corrupt.
        row, unreadable = attempt(lambda: outbox.get(value.idempotency_key))
        assert row is not None or unreadable.kind == "corrupt"
    _alive(outbox)


@SETTINGS
@given(st.lists(TEXT, min_size=1, max_size=8))
@example(["fine", "half \ud83d", "fine too"])
def test_enqueue_many_with_any_text_is_all_or_nothing(outbox, texts):
    """A batch holding any text is enqueued whole, or refused whole with a typed error."""
    batch = [
        smuggled(Intent.text(TO, "x", idempotency_key=_key()), content={"body": t}) for t in texts
    ]
    before = outbox.stats().total
    added, refused = attempt(lambda: outbox.enqueue_many(batch))
    if refused is not None:
        assert refused.kind == "unencodable"
        assert outbox.stats().total == before
    else:
        assert added == len(batch)
        assert all(encodable(t) for t in texts)
    _alive(outbox)


# --- hand-edited rows ---------------------------------------------------------------------------


@SETTINGS
@given(value=JSON)
@example(
    value={
        "v": 1,
        "to": TO,
        "type": "text",
        "text": {"body": "x"},
        "idempotency_key": "someone-else",
    }
)
def test_any_json_in_a_rows_intent_is_read_or_refused_typed(outbox, folder, value):
    """Whatever JSON a hand edit puts in a row's intent: get() reads it or raises
    OutboxError(corrupt); list, stats and claim never raise; the row is never sent under
    another key."""
    key = _key()
    outbox.enqueue(Intent.text(TO, "x", idempotency_key=key))
    conn = sqlite3.connect(folder / "outbox.db", isolation_level=None)
    try:
        conn.execute(
            "UPDATE wa_outbox SET intent = ? WHERE idempotency_key = ?", (json.dumps(value), key)
        )
    finally:
        conn.close()
    row, refused = attempt(lambda: outbox.get(key))
    assert row.idempotency_key == key if refused is None else refused.kind == "corrupt"
    outbox.list()
    outbox.stats()
    claimed = bounded(lambda: outbox.claim(10_000))
    assert all(r.intent.idempotency_key == r.idempotency_key for r in claimed)
    outbox.release()
    _alive(outbox)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_intent_is_refused_typed(tmp_path, depth):
    """Arbitrary nesting: `[[[...]]]` and `{"a": {"a": ...}}` a hand edit left are `corrupt`."""
    with SqliteOutbox(tmp_path / "o.db") as box:
        box.enqueue_many(Intent.text(TO, "x", idempotency_key=k) for k in ("list", "dict"))
        nested = {"list": "[" * depth + "]" * depth, "dict": '{"a":' * depth + "1" + "}" * depth}
        conn = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
        for key, text in nested.items():
            conn.execute("UPDATE wa_outbox SET intent = ? WHERE idempotency_key = ?", (text, key))
        conn.close()
        for key in nested:
            with pytest.raises(OutboxError) as caught:
                box.get(key)
            assert caught.value.kind == "corrupt"
        assert bounded(lambda: box.claim(10)) == []
        assert box.stats().dead_letters == 2


@pytest.mark.parametrize("where", ["message", "body"])
def test_a_megabyte_of_text_with_a_surrogate_is_handled(tmp_path, where):
    """1 MB strings: a peer's 1 MB message with a lone surrogate is recorded; a caller's 1 MB
    body with one is refused typed; neither stops the writer."""
    big = "x" * 1_000_000 + "\ud800"
    with SqliteOutbox(tmp_path / "o.db") as box:
        if where == "message":
            sent = Intent.text(TO, "hi", idempotency_key="big")
            box.begin(sent)
            error = InvalidRequestError(big, code=131009)
            bounded(lambda: box.settle(Delivery(state=FAILED, intent=sent, error=error)))
            bounded(box.flush)
            assert box.get("big").error["message"] == error.message
        else:
            value = smuggled(Intent.text(TO, "x", idempotency_key="big"), content={"body": big})
            with pytest.raises(OutboxError) as caught:
                bounded(lambda: box.begin(value))
            assert caught.value.kind == "unencodable"
            assert len(caught.value.message) < 2_000
        _alive(box)


@SETTINGS
@example(version="abc")
@example(version=0)
@given(version=st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), TEXT, st.floats()))
def test_any_schema_version_opens_or_is_refused_typed(folder, version):
    """Whatever a hand edit wrote as the schema version: the file opens or OutboxError."""
    path = folder / f"meta-{next(_COUNTER)}.db"
    SqliteOutbox(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE wa_auth_meta SET version = ? WHERE component = 'outbox'", (version,))
    except (sqlite3.Error, UnicodeEncodeError):
        conn.close()
        return  # SQLite itself refused it (NOT NULL, a NaN, a surrogate): nothing to read
    conn.close()
    opened, refused = attempt(lambda: SqliteOutbox(path))
    if opened is not None:
        opened.close()
    else:
        assert refused.kind in {"corrupt", "newer_schema"}
        assert encodable(refused.message)


# --- the state file -----------------------------------------------------------------------------


@SETTINGS
@given(message=TEXT, fingerprint=TEXT.filter(bool), phone=TEXT.filter(bool))
@example(message="dead \ud800", fingerprint="sha256:0123456789ab", phone="1")
@example(message="x", fingerprint="fp\udfff", phone="\ud83d")
def test_any_text_in_the_state_file_is_kept_or_refused_typed(state, message, fingerprint, phone):
    """A verdict's message, a fingerprint, a paused number and a health report of any text."""
    error = TokenRevokedError(message, code=190, http_status=401)
    _, refused = attempt(lambda: state.verdicts.record(fingerprint, error))
    if refused is not None:
        assert (encodable(fingerprint), refused.kind) == (False, "unencodable")
    else:
        assert state.verdicts.get(fingerprint).message == error.message
    pause = Pause(kind=ACCOUNT, phone_number_id=phone, category="account_state", since=1.0)
    _, refused = attempt(lambda: state.pauses.put(pause))
    if refused is not None:
        assert (encodable(phone), refused.kind) == (False, "unencodable")
    else:
        assert state.pauses.get(ACCOUNT, phone) == pause
    health = TokenHealth(valid=True, error=message, scopes=(message,))
    bounded(lambda: state.health.put("sha256:000000000001", health))
    assert state.health.get("sha256:000000000001") == health
    bounded(lambda: state.pauses.clear(ACCOUNT, "1"))  # the writer lives on


@SETTINGS
@given(value=JSON, table=st.sampled_from(["wa_verdicts", "wa_pauses", "wa_health"]))
@example(
    value={
        "kind": "account",
        "phone_number_id": "p",
        "category": "x",
        "since": 1,
        "until": "later",
    },
    table="wa_pauses",
)
@example(value={"valid": True, "scopes": "not a list", "expires_at": "soon"}, table="wa_health")
def test_any_json_in_a_state_record_reads_as_a_value_or_none(state, folder, value, table):
    """Whatever JSON a hand edit puts in a record, a read returns a value or None."""
    conn = sqlite3.connect(folder / "state.db", isolation_level=None)
    try:
        text = json.dumps(value)
        if table == "wa_verdicts":
            conn.execute("INSERT OR REPLACE INTO wa_verdicts VALUES ('fp', ?, 0, 9e99)", (text,))
        elif table == "wa_pauses":
            conn.execute("INSERT OR REPLACE INTO wa_pauses VALUES ('account', 'p', ?, 0)", (text,))
        else:
            conn.execute("INSERT OR REPLACE INTO wa_health VALUES ('fp', ?, 9e99)", (text,))
    finally:
        conn.close()
    found = state.verdicts.get("fp")
    assert found is None or found.category
    pause = state.pauses.get(ACCOUNT, "p")
    assert pause is None or pause.holds(0.0) in {True, False}
    assert all(isinstance(p, Pause) for p in state.pauses.list())
    health = state.health.get("fp")
    assert health is None or isinstance(health.valid, bool)


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": [value]}
    return value


@SETTINGS
@given(content=JSON)
@example(content={"body": float("nan")})
@example(content={"body": {1, 2}})
def test_any_intent_content_is_stored_or_refused_typed(outbox, content):
    """An intent whose content got past its builder, of any shape and nesting: begin and
    enqueue record it or raise OutboxError (`invalid`, `unencodable`); nothing else escapes."""
    for call in ("begin", "enqueue"):
        value = smuggled(Intent.text(TO, "x", idempotency_key=_key()), content=content)
        _, refused = attempt(lambda v=value, c=call: getattr(outbox, c)(v))
        if refused is not None:
            assert refused.kind in {"invalid", "unencodable"}
            assert encodable(refused.message)
    _alive(outbox)


@pytest.mark.parametrize("depth", [1_000, 50_000])
def test_a_deeply_nested_intent_content_is_refused_typed(outbox, depth):
    """Content nested past what JSON's encoder can walk: OutboxError(invalid), not a
    RecursionError, for begin and enqueue alike."""
    for call in ("begin", "enqueue"):
        value = smuggled(Intent.text(TO, "x", idempotency_key=_key()), content=_deep(depth))
        _, refused = attempt(lambda v=value, c=call: getattr(outbox, c)(v))
        assert refused is None or refused.kind == "invalid"
    _alive(outbox)


@SETTINGS
@given(
    to=TEXT,
    kind=st.sampled_from(["text", "template", "to", "v"]) | TEXT,
    content=st.dictionaries(TEXT, JSON, max_size=4),
    key=TEXT,
    sender=st.none() | TEXT,
    consumer=st.none() | TEXT,
    created=st.floats() | st.integers(-(2**53), 2**53),
    until=st.none() | st.floats() | st.integers(0, 2**40),
)
def test_an_intents_json_is_what_the_encoder_writes(
    to, kind, content, key, sender, consumer, created, until
):
    """The row's intent JSON, written out for the plain types, is byte for byte the C
    encoder's JSON of `to_dict()` (any text, any number, a type named like a key), or the
    same `invalid` refusal of a number JSON has no form for."""
    from wa_auth.intents import _made
    from wa_auth.outbox import _sql

    intent = _made(to, kind, content, key, sender, consumer, created, until)
    try:
        expected: str | None = json.dumps(
            intent.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(OutboxError) as caught:
            _sql.intent_json(intent)
        assert caught.value.kind == "invalid"
    else:
        assert _sql.intent_json(intent) == expected
