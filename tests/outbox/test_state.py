"""The state file: verdicts, pauses, Meta's penalties and token health that outlive a process.

Unit tests use a fake wall clock and a file in tmp_path; the process tests start one worker
per "n8n execution" (`tests/outbox/worker.py`) against the sandbox and check that what the
first one learned (a dead token, a paused number, a 130429's Retry-After) spares the next one
a request.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wa_auth
from helpers import EPOCH, Clock, graph_error
from wa_auth import errors
from wa_auth.errors import ConfigurationError, OutboxError
from wa_auth.models import TokenHealth
from wa_auth.outbox import SqliteOutbox
from wa_auth.pacing import ACCOUNT, CIRCUIT, Pause, PauseStore, RateLimiter
from wa_auth.providers import Token, VerdictStore
from wa_auth.sandbox import Sandbox
from wa_auth.state import SqliteRateLimiter, SqliteVerdictStore, StateFile

pytestmark = pytest.mark.anyio

PHONE = "106540352242922"
TO = "+15551234567"
WORKER = Path(__file__).with_name("worker.py")


@pytest.fixture
def clock() -> Clock:
    return Clock(EPOCH)


@pytest.fixture
def state(tmp_path, clock):
    with StateFile(tmp_path / "state.db", clock=clock) as st:
        yield st


def _revoked() -> errors.ApiError:
    return graph_error(
        401,
        190,
        460,
        message="Error validating access token",
        error_type=None,
        fbtrace_id="Tr1",
        fingerprint="sha256:dead00000000",
    )


# --- verdicts -----------------------------------------------------------------------------------


def test_the_stores_implement_the_protocols(state):
    """The client and the guard take them as they take the in-memory ones."""
    assert isinstance(state.verdicts, VerdictStore)
    assert isinstance(state.pauses, PauseStore)
    assert isinstance(state.limiter(), RateLimiter)


def test_a_verdict_comes_back_as_the_same_error(tmp_path, clock):
    """Class, code, subcode, trace id, fingerprint and policy survive the file and a reopen."""
    original = _revoked()
    with StateFile(tmp_path / "s.db", clock=clock) as st:
        st.verdicts.record("sha256:dead00000000", original)
    with StateFile(tmp_path / "s.db", clock=clock) as st:
        again = st.verdicts.get("sha256:dead00000000")
    assert type(again) is errors.TokenRevokedError
    assert again.to_dict() == {**original.to_dict(), "usage": again.usage.to_dict()}
    assert str(again) == str(original)


def test_a_verdict_lasts_its_ttl_and_can_be_forgotten(tmp_path, clock):
    """Past the TTL the token is tried again; forget() drops a verdict at once."""
    with StateFile(tmp_path / "s.db", clock=clock, verdict_ttl=60) as st:
        st.verdicts.record("sha256:a", _revoked())
        st.verdicts.record("sha256:b", _revoked())
        clock.t += 61
        assert st.verdicts.get("sha256:a") is None
        st.verdicts.record("sha256:c", _revoked())
        st.verdicts.forget("sha256:c")
        assert st.verdicts.get("sha256:c") is None
        assert st.verdicts.get("nope") is None


def test_the_oldest_verdicts_go_beyond_max_entries(state, clock):
    """At most max_entries verdicts are kept."""
    store = SqliteVerdictStore(state, max_entries=2)
    for n in range(3):
        clock.t += 1
        store.record(f"sha256:{n}", _revoked())
    assert [store.get(f"sha256:{n}") is not None for n in range(3)] == [False, True, True]


async def test_the_async_verdict_forms(state):
    """arecord / aget / aforget do what their twins do."""
    await state.verdicts.arecord("sha256:x", _revoked())
    assert isinstance(await state.verdicts.aget("sha256:x"), errors.TokenRevokedError)
    await state.verdicts.aforget("sha256:x")
    assert await state.verdicts.aget("sha256:x") is None


def test_a_dead_token_is_refused_by_the_next_client_without_a_request(tmp_path):
    """One client learns the token is revoked; a client of a new StateFile (the next process)
    raises the same error before any request."""
    with Sandbox(seed=3) as sb:
        token = sb.issue_token()
        sb.set_token_state(token, "revoked_password_changed")
        for attempt in range(2):
            with (
                StateFile(tmp_path / "s.db") as st,
                wa_auth.WhatsAppClient(
                    base_url=sb.base_url,
                    token=token,
                    phone_number_id=sb.phone_number_id,
                    verdicts=st.verdicts,
                ) as client,
                pytest.raises(wa_auth.TokenRevokedError),
            ):
                client.send_text(TO, "hi")
            assert len(sb.requests()) == 1, attempt
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert token.encode() not in blob
    assert Token(token).fingerprint.encode() in blob


# --- pauses -------------------------------------------------------------------------------------


def test_pauses_round_trip_and_clear(state):
    """A pause (with its error) comes back equal; clear drops one kind only."""
    pause = Pause(
        kind=ACCOUNT,
        phone_number_id=PHONE,
        category="account_state",
        since=EPOCH,
        until=EPOCH + 60,
        error={"code": 131031},
        failures=2,
    )
    circuit = Pause(
        kind=CIRCUIT, phone_number_id=PHONE, category="transient", since=EPOCH, failures=3
    )
    state.pauses.put(pause)
    state.pauses.put(circuit)
    got = state.pauses.get(ACCOUNT, PHONE)
    assert got == pause
    assert dict(got.error) == {"code": 131031}
    assert state.pauses.list() == [pause, circuit]
    state.pauses.clear(ACCOUNT, PHONE)
    assert state.pauses.get(ACCOUNT, PHONE) is None
    assert state.pauses.get(CIRCUIT, PHONE) == circuit
    with pytest.raises(TypeError, match="Pause values"):
        state.pauses.put({"kind": ACCOUNT})


async def test_the_async_pause_forms(state):
    """aput / aget / alist / aclear do what their twins do."""
    pause = Pause(kind=ACCOUNT, phone_number_id=PHONE, category="account_state", since=EPOCH)
    await state.pauses.aput(pause)
    assert await state.pauses.aget(ACCOUNT, PHONE) == pause
    assert await state.pauses.alist() == [pause]
    await state.pauses.aclear(ACCOUNT, PHONE)
    assert await state.pauses.alist() == []


# --- learned penalties --------------------------------------------------------------------------


def test_a_penalty_is_known_to_the_next_limiter(tmp_path, clock):
    """What a 130429 / 131056 taught one limiter, a limiter made later starts with."""
    with StateFile(tmp_path / "s.db", clock=clock) as st:
        st.limiter().penalize(PHONE, None, 60.0)
        st.limiter().penalize(PHONE, TO, 6.0)
        st.limiter().penalize(PHONE, None, float("nan"))  # nonsense is not stored
    clock.t += 10
    with StateFile(tmp_path / "s.db", clock=clock) as st:
        later = st.limiter()
        number_wait = later.acquire(PHONE, "+15550000000")
        pair_wait = later.acquire("106540352242999", TO)
    assert 49.0 < number_wait <= 50.0
    assert pair_wait == 0.0  # the pair's 6 s are over, and it was another number's pair


async def test_the_async_limiter_forms_store_the_penalty(state):
    """apenalize writes to the file like penalize; aacquire asks the wrapped limiter."""
    limiter = state.limiter()
    await limiter.apenalize(PHONE, TO, 30.0)
    assert 29.0 < await SqliteRateLimiter(state).aacquire(PHONE, TO) <= 30.0
    assert limiter.refresh() == 1


async def test_the_state_limiter_sets_the_wrapped_limiters_rate(state):
    """`set_rate` / `aset_rate` reach the wrapped limiter; a bad rate is refused first."""
    limiter = state.limiter()
    limiter.set_rate(PHONE, 1000)
    assert limiter.limiter.rate(PHONE) == 1000
    await limiter.aset_rate(PHONE, 20)
    assert limiter.limiter.rate(PHONE) == 20
    with pytest.raises(ConfigurationError):
        limiter.set_rate(PHONE, 0)
    with pytest.raises(ConfigurationError):
        await limiter.aset_rate(PHONE, float("inf"))


async def test_a_rate_set_is_kept_in_the_file_for_a_later_limiter(tmp_path, clock):
    """`set_rate` / `aset_rate` write the rate: another limiter, or the next process, paces at it."""
    with StateFile(tmp_path / "s.db", clock=clock) as st:
        st.limiter().set_rate(PHONE, 7)
        await st.limiter().aset_rate("106540352242999", 3.5)
        assert st.limiter().limiter.rate(PHONE) == 7  # another limiter on the same file
        st.limiter().set_rate(PHONE, 9)  # the newest rate wins
        with pytest.raises(ConfigurationError, match="phone_number_id"):
            st.limiter().set_rate("  ", 5)
    with StateFile(tmp_path / "s.db", clock=clock) as st:  # a restart
        later = st.limiter()
        assert later.limiter.rate(PHONE) == 9
        assert later.limiter.rate("106540352242999") == 3.5
    with sqlite3.connect(tmp_path / "s.db") as conn:  # a hand-edited row is no rate
        conn.execute("INSERT INTO wa_rates VALUES ('106540352242000', 'fast', 0)")
        conn.execute("INSERT INTO wa_rates VALUES ('106540352242001', -1, 0)")
    with StateFile(tmp_path / "s.db", clock=clock) as st:
        assert st.limiter().limiter.rate(PHONE) == 9


# --- token health -------------------------------------------------------------------------------


async def test_health_reports_round_trip_within_their_ttl(tmp_path, clock):
    """A report is served for its TTL, then not; async forms too."""
    health = TokenHealth(
        valid=True,
        token_fingerprint="sha256:ok",
        token_type="SYSTEM_USER",
        scopes=("whatsapp_business_messaging",),
        missing_management_scopes=("whatsapp_business_management",),
        checked_at=EPOCH,
    )
    with StateFile(tmp_path / "s.db", clock=clock, health_ttl=300) as st:
        st.health.put("sha256:ok", health)
        assert st.health.get("sha256:ok") == health
        await st.health.aput("sha256:other", health)
        assert await st.health.aget("sha256:other") == health
        clock.t += 301
        assert st.health.get("sha256:ok") is None
        with pytest.raises(TypeError, match="TokenHealth values"):
            st.health.put("x", {"valid": True})


# --- the file -----------------------------------------------------------------------------------


def test_one_file_holds_the_outbox_and_the_state(tmp_path):
    """The CLI's --state file may be the outbox's too: each component has its own version."""
    path = tmp_path / "wa.db"
    with StateFile(path) as st, SqliteOutbox(path) as box:
        st.verdicts.record("sha256:x", _revoked())
        box.enqueue(wa_auth.Intent.text(TO, "hi"))
    conn = sqlite3.connect(path)
    assert sorted(conn.execute("SELECT component, version FROM wa_auth_meta")) == [
        ("outbox", 2),
        ("state", 2),
    ]
    conn.close()


def test_a_newer_state_file_is_refused(tmp_path):
    """The state component's version is checked like the outbox's; the file is not changed."""
    path = tmp_path / "s.db"
    StateFile(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE wa_auth_meta SET version = 7 WHERE component = 'state'")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError) as caught:
        StateFile(path)
    assert caught.value.kind == "newer_schema"
    assert "state file" in str(caught.value)


@pytest.mark.parametrize(
    "kw",
    [{"verdict_ttl": 0}, {"health_ttl": -1}, {"durability": "off"}],
    ids=["verdict-ttl", "health-ttl", "durability"],
)
def test_settings_out_of_range_are_configuration_errors(tmp_path, kw):
    """Nonsense settings are refused when the file is opened."""
    with pytest.raises(ConfigurationError):
        StateFile(tmp_path / "s.db", **kw)


# --- one process per execution ------------------------------------------------------------------


def _execution(sb: Sandbox, token: str, state_path: Path, key: str, phone: str) -> dict[str, Any]:
    """One n8n execution: a fresh interpreter sends one guarded intent with the state file."""
    args = {
        "mode": "send-one",
        "state": str(state_path),
        "base_url": sb.base_url,
        "token": token,
        "phone": phone,
        "to": TO,
        "key": key,
    }
    out = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_what_one_execution_learns_spares_the_next_a_request(tmp_path):
    """A dead token, an unregistered number, a 130429 with Retry-After 60: each learned once in
    one process; the next process (a new interpreter) is refused or held without a send."""
    state_path = tmp_path / "state.db"
    with Sandbox(seed=8) as sb:
        first, second = sb.phone_number_ids[:2]
        dead = sb.issue_token()
        sb.set_token_state(dead, "expired")
        assert _execution(sb, dead, state_path, "v1", first)["category"] == "token_expired"
        sends = len(sb.requests())
        assert _execution(sb, dead, state_path, "v2", first)["category"] == "token_expired"
        assert len(sb.requests()) == sends  # refused by the verdict in the file

        token = sb.issue_token()
        sb.set_number_state(second, "not_registered")
        assert _execution(sb, token, state_path, "p1", second)["category"] == "account_state"
        sends = len(sb.requests())
        held = _execution(sb, token, state_path, "p2", second)
        assert (held["reason"], held["attempts"]) == ("paused", 0)
        assert len(sb.requests()) == sends  # held by the pause in the file

        sb.fail_next(130429, retry_after=60)
        assert _execution(sb, token, state_path, "r1", first)["category"] == "rate_limited"
        sends = len(sb.requests())
        paced = _execution(sb, token, state_path, "r2", first)
        assert (paced["reason"], paced["attempts"]) == ("pacing", 0)
        assert len(sb.requests()) == sends  # held by the penalty in the file
