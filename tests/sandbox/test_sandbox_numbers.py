"""`Sandbox(phone_numbers=N)`: more phone numbers than the default two, in every answer that
names the numbers (the listing, each number, sends, the admin API, `wa-auth sandbox`), and the
default unchanged."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import httpx
import pytest

import wa_auth
from wa_auth._cli import main
from wa_auth.sandbox import MAX_PHONE_NUMBERS, Sandbox
from wa_auth.sandbox._webhook_payloads import quality_update

TO = "+15551234567"
DEFAULT_IDS = ("109000000000001", "109000000000002")
THREE_IDS = (*DEFAULT_IDS, "109000000000003")


def _client(sb: Sandbox, phone: str) -> wa_auth.WhatsAppClient:
    return wa_auth.WhatsAppClient(
        base_url=sb.base_url,
        token=sb.demo_tokens()["system_user"],
        phone_number_id=phone,
        business_account_id=sb.business_account_id,
    )


def _answers(sb: Sandbox) -> list[bytes]:
    """The raw answers that name the numbers: the listing (one page and paged), each number,
    a send from each and from one number past the last, and the admin state's ids."""
    headers = {"Authorization": f"Bearer {sb.demo_tokens()['system_user']}"}
    port = sb.base_url.rsplit(":", 1)[1].encode()
    body = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "x"}}
    out = []
    with httpx.Client(base_url=sb.base_url, headers=headers) as http:
        listing = f"/v23.0/{sb.business_account_id}/phone_numbers"
        out.append(http.get(listing).content)
        out.append(http.get(listing, params={"limit": 1}).content.replace(port, b"PORT"))
        for phone in (*sb.phone_number_ids, "109000000000003"):
            out.append(http.get(f"/v23.0/{phone}").content)
            out.append(http.post(f"/v23.0/{phone}/messages", json=body).content)
        state = http.get("/_sandbox/").json()
    out.append(json.dumps([state["phone_number_id"], state["phone_number_ids"]]).encode())
    out.append(json.dumps(state["number_states"]).encode())
    return out


def test_the_default_is_the_two_numbers_and_passing_2_changes_no_answer():
    """No argument: the two numbers as before; `phone_numbers=2` answers byte for byte alike
    (the same seed, a frozen clock), and a third number is unknown to both."""
    with Sandbox(seed=7, freeze_clock=True) as default:
        before = _answers(default)
        outcomes = [(r.endpoint, r.outcome, r.code) for r in default.requests()]
        assert default.phone_number_id == DEFAULT_IDS[0]
        assert default.phone_number_ids == DEFAULT_IDS
        assert list(default.info()["number_states"]) == list(DEFAULT_IDS)
        with _client(default, DEFAULT_IDS[0]) as client:
            page = client.list_phone_numbers()
        assert [(n.id, n.display_phone_number) for n in page.items] == [
            ("109000000000001", "+1 555-010-0001"),
            ("109000000000002", "+1 555-010-0002"),
        ]
        with pytest.raises(ValueError, match="109000000000002"):
            default.set_number_state("109000000000003", "restricted")
    with Sandbox(seed=7, freeze_clock=True, phone_numbers=2) as two:
        assert _answers(two) == before
        assert [(r.endpoint, r.outcome, r.code) for r in two.requests()] == outcomes
    # The one past the last is no phone number: neither read as one nor sent from.
    assert outcomes[-2:] == [("get_media", "error", 100), ("send_message", "error", 100)]


def test_three_numbers_are_listed_paged_and_each_sendable():
    """`phone_numbers=3`: the third id and display number follow the pattern; the listing
    holds all three, one page at a time too; each number answers and sends; its state, faults
    and the admin API know it; `reset()` keeps the three."""
    with Sandbox(seed=3, phone_numbers=3) as sb:
        assert sb.phone_number_ids == THREE_IDS
        assert sb.phone_number_id == THREE_IDS[0]
        assert sb.info()["phone_number_ids"] == list(THREE_IDS)
        with _client(sb, THREE_IDS[0]) as client:
            whole = client.list_phone_numbers()
            paged, after = [], None
            while True:
                page = client.list_phone_numbers(limit=1, after=after)
                paged.extend(page.items)
                if page.after is None:
                    break
                after = page.after
        expected = [(p, f"+1 555-010-000{i}") for i, p in enumerate(THREE_IDS, start=1)]
        assert [(n.id, n.display_phone_number) for n in whole.items] == expected
        assert [(n.id, n.display_phone_number) for n in paged] == expected

        for phone in THREE_IDS:
            with _client(sb, phone) as client:
                assert client.get_phone_number().display_phone_number == dict(expected)[phone]
                client.send_text(TO, "hi", idempotency_key=f"k-{phone}")
        sent = {m.idempotency_key: m.phone_number_id for m in sb.messages()}
        assert sent == {f"k-{p}": p for p in THREE_IDS}

        sb.set_number_state(THREE_IDS[2], "not_registered")
        with httpx.Client(base_url=sb.admin_url) as admin:
            state = admin.get("/").json()
            assert state["number_states"][THREE_IDS[2]] == "not_registered"
            refused = admin.post(
                "/set_number_state",
                json={"phone_number_id": "109000000000004", "state": "ok"},
            )
            assert refused.status_code == 400
            assert THREE_IDS[2] in refused.json()["error"]["message"]
        fault = sb.fail_next(131000, phone_number_id=THREE_IDS[2], endpoint="get_phone_number")
        assert fault.phone_number_id == THREE_IDS[2]
        sb.reset()
        assert sb.info()["number_states"] == dict.fromkeys(THREE_IDS, "ok")


def test_a_webhook_names_a_later_number_by_its_display_digits():
    """The display number of a quality webhook follows the number, the third one too."""
    payload = quality_update(
        THREE_IDS[2], event="UPGRADE", current_limit="TIER_10K", old_limit=None, time=0
    )
    assert json.dumps(payload).count('"15550100003"') == 1


def test_the_most_numbers():
    """`MAX_PHONE_NUMBERS` numbers, their ids and display numbers all distinct."""
    with Sandbox(phone_numbers=MAX_PHONE_NUMBERS) as sb:
        ids = sb.phone_number_ids
        assert len(set(ids)) == MAX_PHONE_NUMBERS == 20
        assert ids[-1] == "109000000000020"
        with _client(sb, ids[-1]) as client:
            assert client.get_phone_number().display_phone_number == "+1 555-010-0020"
            assert len(client.list_phone_numbers(limit=25).items) == 20


@pytest.mark.parametrize(
    "value",
    [0, -1, MAX_PHONE_NUMBERS + 1, True, "3", 2.0, None],
    ids=["zero", "negative", "too-many", "bool", "string", "float", "none"],
)
def test_a_bad_count_is_a_value_error_naming_phone_numbers(value):
    """Anything but an integer from 1 to 20 is refused before anything is bound."""
    with pytest.raises(ValueError, match=r"phone_numbers must be an integer from 1 to 20"):
        Sandbox(phone_numbers=value)


def test_the_command_serves_the_numbers_it_is_told():
    """`wa-auth sandbox --phone-numbers 3` prints the three ids and serves the third."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "wa_auth", "sandbox", "--phone-numbers", "3", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no JSON line within 15 s"
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["phone_number_ids"] == list(THREE_IDS)
        token = next(t["token"] for t in info["tokens"] if t["name"] == "system_user")
        with httpx.Client(base_url=info["base_url"]) as http:
            answer = http.get(
                f"/v23.0/{THREE_IDS[2]}", headers={"Authorization": f"Bearer {token}"}
            )
        assert answer.json()["display_phone_number"] == "+1 555-010-0003"
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("0", "--phone-numbers: must be a positive integer", id="zero"),
        pytest.param("x", "--phone-numbers: must be a positive integer", id="not-a-number"),
        pytest.param("21", "--phone-numbers must be 1 to 20, got 21", id="too-many"),
    ],
)
def test_the_command_refuses_a_bad_count(value, message, capsys):
    """A bad `--phone-numbers` is one JSON usage error on stderr, exit 2, nothing bound."""
    assert main(["sandbox", "--phone-numbers", value]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    error = json.loads(err.strip().splitlines()[-1])
    assert error["ok"] is False
    assert message in error["error"]["message"]
