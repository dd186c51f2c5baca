"""`Intent`: constructors per kind, validated by the same rules as the `send_*` methods, a
versioned JSON shape, and `client.send(intent)` on all three clients through the same flows."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

import wa_auth
from wa_auth import RequestValidationError
from wa_auth.intents import INTENT_SCHEMA_VERSION, MESSAGE_TYPES, Intent
from wa_auth.sandbox import Sandbox

TO = "+15551234567"

KINDS = [
    pytest.param(
        lambda: Intent.text(TO, "Your order shipped", preview_url=True), "text", id="text"
    ),
    pytest.param(
        lambda: Intent.template(
            TO,
            "order_update",
            "en_US",
            [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}],
        ),
        "template",
        id="template",
    ),
    pytest.param(
        lambda: Intent.media(TO, "document", link="https://example.com/a.pdf", filename="a.pdf"),
        "document",
        id="media-link",
    ),
    pytest.param(lambda: Intent.media(TO, "image", media_id="1234567890"), "image", id="media-id"),
    pytest.param(
        lambda: Intent.buttons(TO, "Confirm?", [("yes", "Yes"), {"id": "no", "title": "No"}]),
        "interactive",
        id="buttons",
    ),
    pytest.param(
        lambda: Intent.list(
            TO,
            "Pick a slot",
            "Slots",
            [{"title": "Today", "rows": [{"id": "t1", "title": "10:00", "description": "AM"}]}],
        ),
        "interactive",
        id="list",
    ),
    pytest.param(lambda: Intent.reaction(TO, "wamid.abc", "👍"), "reaction", id="reaction"),
    pytest.param(
        lambda: Intent.location(TO, 52.52, 13.405, name="Office", address="Berlin"),
        "location",
        id="location",
    ),
]


@pytest.mark.parametrize(("make", "kind"), KINDS)
def test_round_trip_through_json(make, kind):
    """`from_dict(to_dict())` gives the same intent, through real JSON text, for every kind."""
    intent = make()
    assert intent.type == kind
    data = json.loads(json.dumps(intent.to_dict()))
    assert data["v"] == INTENT_SCHEMA_VERSION
    assert Intent.from_dict(data) == intent


def test_defaults_are_a_uuid4_key_and_now():
    """Without an idempotency key, a UUID4 is made; `created_at` is now."""
    intent = Intent.text(TO, "hi")
    assert uuid.UUID(intent.idempotency_key).version == 4
    assert intent.created_at > 1.7e9
    assert Intent.text(TO, "hi").idempotency_key != intent.idempotency_key


def test_minimal_json_from_a_workflow():
    """An n8n item needs only to, type and the message object."""
    intent = Intent.from_dict({"to": TO, "type": "text", "text": {"body": "hi"}})
    assert (intent.to, intent.operation, intent.phone_number_id) == (TO, "send_text", None)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Intent.text(TO, ""), "text must not be empty"),
        (lambda: Intent.text(TO, "x" * 4097), "at most 4096"),
        (lambda: Intent.text("12", "hi"), "recipient 'to'"),
        (lambda: Intent.media(TO, "image"), "exactly one of media_id or link"),
        (lambda: Intent.buttons(TO, "b", []), "1-3 reply buttons"),
        (lambda: Intent.location(TO, 91, 0), "latitude"),
        (lambda: Intent.text(TO, "hi", idempotency_key="k" * 513), "idempotency_key"),
        (lambda: Intent.text(TO, "hi", phone_number_id="EAAG-not-an-id"), "phone_number_id"),
        (lambda: Intent.text(TO, "hi", not_after=float("nan")), "not_after"),
        (lambda: Intent.text(TO, "hi", not_after=1.8e12), "milliseconds"),
    ],
)
def test_constructors_use_the_send_rules(call, message):
    """The constructors refuse what `send_*` refuses, with the same messages."""
    with pytest.raises(RequestValidationError, match=message):
        call()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("not an object", "JSON object"),
        ({"to": TO, "type": "fax", "fax": {}}, "type must be one of"),
        ({"v": 2, "to": TO, "type": "text", "text": {"body": "x"}}, "v: intent version 2"),
        ({"to": TO, "type": "text"}, "text: a text intent needs"),
        ({"to": TO, "type": "text", "text": {"body": 5}}, "text object: text must be a string"),
        ({"to": TO, "type": "text", "text": "hi"}, "text object: text must be an object"),
        ({"to": TO, "type": "text", "text": {"body": "x"}, "sms": 1}, "unknown intent field 'sms'"),
        ({"to": 15551234567, "type": "text", "text": {"body": "x"}}, "recipient 'to'"),
        (
            {"to": TO, "type": "interactive", "interactive": {"type": "carousel", "action": {}}},
            "interactive.type",
        ),
        ({"to": TO, "type": "template", "template": {"language": "en"}}, "template.name"),
        (
            {"to": TO, "type": "text", "text": {"body": "x"}, "created_at": "yesterday"},
            "created_at",
        ),
    ],
)
def test_from_dict_names_the_bad_field(data, field):
    """Bad JSON is a RequestValidationError whose message names the field."""
    with pytest.raises(RequestValidationError, match=field):
        Intent.from_dict(data)


def test_message_types_cover_every_constructor():
    """Every type an intent can carry has a constructor, and every constructor a type."""
    made = {param.values[1] for param in KINDS}
    assert made <= set(MESSAGE_TYPES)
    assert {"audio", "video", "sticker"} <= set(MESSAGE_TYPES)


def test_content_is_a_private_copy():
    """Mutating the dict an intent was made from does not change the intent."""
    content = {"body": "hi", "preview_url": False}
    intent = Intent(to=TO, type="text", content=content)
    content["body"] = "changed"
    assert intent.content["body"] == "hi"


def test_repr_and_hash_do_not_show_the_message():
    """The repr omits the message text; intents are hashable by their fields."""
    intent = Intent.text(TO, "secret one-time code 987012")
    assert "987012" not in repr(intent)
    assert hash(intent) == hash(Intent.from_dict(intent.to_dict()))


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(seed=11) as sb:
        yield sb


@pytest.mark.parametrize(("make", "kind"), KINDS)
def test_sync_client_sends_every_kind_as_send_x_would(sandbox, make, kind):
    """`client.send(intent)` sends the same body as the matching `send_*` method."""
    intent = make()
    with wa_auth.WhatsAppClient(
        base_url=sandbox.base_url,
        token=sandbox.issue_token(),
        phone_number_id=sandbox.phone_number_id,
    ) as client:
        result = client.send(intent)
    assert result.idempotency_key == intent.idempotency_key
    message = sandbox.messages()[-1]
    assert message.id == result.message_id
    assert message.idempotency_key == intent.idempotency_key
    assert message.type == intent.type
    assert message.payload[intent.type] == dict(intent.content)


@pytest.mark.parametrize("name", ["AsyncWhatsAppClient", "FastAsyncWhatsAppClient"])
def test_async_clients_send_intents(sandbox, name):
    """The async clients send an intent the same way."""
    intent = Intent.text(TO, "hi", consumer="orders")

    async def main() -> wa_auth.SendResult:
        async with getattr(wa_auth, name)(
            base_url=sandbox.base_url,
            token=sandbox.issue_token(),
            phone_number_id=sandbox.phone_number_id,
        ) as client:
            return await client.send(intent)

    result = asyncio.run(main())
    assert result.message_id == sandbox.messages()[-1].id
    assert result.token_fingerprint is not None


def test_an_expired_intent_is_refused_by_the_client_too(sandbox):
    """`client.send()` refuses an intent past its deadline: nothing is sent."""
    intent = Intent.text(TO, "your driver is here", not_after=1.7e9)
    before = len(sandbox.requests())
    with (
        wa_auth.WhatsAppClient(
            base_url=sandbox.base_url,
            token=sandbox.issue_token(),
            phone_number_id=sandbox.phone_number_id,
        ) as client,
        pytest.raises(RequestValidationError, match="not_after"),
    ):
        client.send(intent)
    assert len(sandbox.requests()) == before


def test_send_refuses_what_is_not_an_intent():
    """A dict is not an intent: a clear error, not an AttributeError."""
    with (
        wa_auth.WhatsAppClient(token="x" * 40, phone_number_id="1") as client,
        pytest.raises(RequestValidationError, match="takes an Intent"),
    ):
        client.send({"to": TO})  # type: ignore[arg-type]


def test_routed_is_evolve_without_checking_again():
    """The outbox's sender stamp gives what `attrs.evolve` gives, and checks the new id."""
    import attrs

    intent = Intent.text("+15551234567", "hi", consumer="flow", not_after=2e9)
    routed = intent._routed("106540352242922")
    assert routed == attrs.evolve(intent, phone_number_id="106540352242922")
    assert repr(routed) == repr(attrs.evolve(intent, phone_number_id="106540352242922"))
    assert intent.phone_number_id is None
    with pytest.raises(RequestValidationError, match="phone_number_id"):
        intent._routed("not digits")


def test_the_quick_constructor_makes_what_init_makes():
    """`Intent.text(to, body)` (no options: made without `__init__`) equals, hashes, prints
    and stays frozen like the same fields through `Intent(...)`."""
    import attrs

    plain = Intent.text(TO, "hi")
    again = Intent(
        to=plain.to,
        type=plain.type,
        content=dict(plain.content),
        idempotency_key=plain.idempotency_key,
        created_at=plain.created_at,
    )
    assert plain == again
    assert hash(plain) == hash(again)
    assert repr(plain) == repr(again)
    assert plain.to_dict() == again.to_dict()
    assert attrs.evolve(plain, consumer="c") == attrs.evolve(again, consumer="c")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plain.to = "+15550000000"  # type: ignore[misc]
    with pytest.raises(RequestValidationError, match="recipient 'to'"):
        Intent.text("12", "hi")


def test_the_quick_constructor_keeps_the_builders_own_dict():
    """`Intent.text(to, body)` keeps the dict its builder made for it, uncopied: each intent
    has its own, it pickles and copies to an equal intent, and its pickle names no private
    class of wa_auth (the dict is a plain one)."""
    import copy
    import pickle

    one, two = Intent.text(TO, "hi"), Intent.text(TO, "hi")
    assert one.content == two.content == {"preview_url": False, "body": "hi"}
    assert one.content is not two.content
    assert type(one.content) is dict
    data = pickle.dumps(one)
    assert b"_Built" not in data
    for again in (pickle.loads(data), copy.deepcopy(one), copy.copy(one)):
        assert again == one
        assert hash(again) == hash(one)
        assert repr(again) == repr(one)


def test_keys_are_unique_and_uuid4_shaped():
    """Default keys are distinct UUID4 strings, across many intents in one process."""
    keys = {Intent.text(TO, "hi").idempotency_key for _ in range(10_000)}
    assert len(keys) == 10_000
    for key in list(keys)[:100]:
        parsed = uuid.UUID(key)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, key)


def test_a_key_ends_in_the_counter_as_twelve_hex_digits():
    """The counter's last twelve digits are zero-padded hex, up to the last before 2^48."""
    import itertools

    from wa_auth.intents import _Keys, _keys, _new_key

    keys = _Keys()
    prefix = keys().rsplit("-", 1)[0]
    assert keys() == f"{prefix}-000000000001"
    keys._count = itertools.count(0xABC)
    assert keys() == f"{prefix}-000000000abc"
    keys._count = itertools.count((1 << 48) - 1)
    assert keys() == f"{prefix}-ffffffffffff"
    # The module's key maker is the shared instance's method (the fork hook redraws it).
    assert _new_key.__self__ is _keys
    assert uuid.UUID(_new_key()).version == 4


_FORKING = """
import os, sys
from wa_auth.intents import Intent
Intent.text("+15551234567", "hi")  # the counter has moved: a child copies it
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    keys = [Intent.text("+15551234567", "hi").idempotency_key for _ in range(50)]
    os.write(write, " ".join(keys).encode())
    os._exit(0)
os.close(write)
os.waitpid(pid, 0)
child = os.read(read, 1 << 16).decode()
parent = " ".join(Intent.text("+15551234567", "hi").idempotency_key for _ in range(50))
print(parent)
print(child)
"""


#: A fork made in C (uWSGI's prefork, a C extension) runs no `os.register_at_fork` hook.
_FORKING_IN_C = _FORKING.replace("pid = os.fork()", "import ctypes\npid = ctypes.CDLL(None).fork()")


@pytest.mark.parametrize("program", [_FORKING, _FORKING_IN_C], ids=["os.fork", "fork-in-c"])
def test_a_forked_child_draws_keys_of_its_own(program):
    """A forked child does not repeat its parent's keys (the prefix is drawn again)."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        pytest.skip("fork (and libc's, through ctypes) is tested on Linux")
    # In a fresh interpreter: a fork of the test runner (threads) would be unsafe.
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    parent, child = set(out[0].split()), set(out[1].split())
    assert (len(parent), len(child)) == (50, 50)
    assert not parent & child
    assert {k.rsplit("-", 1)[0] for k in parent}.isdisjoint({k.rsplit("-", 1)[0] for k in child})


def test_a_new_process_draws_keys_of_its_own():
    """Two interpreter runs (a restart) make different keys."""
    import subprocess
    import sys

    code = "from wa_auth.intents import Intent; print(Intent.text('+15551234567', 'x').idempotency_key)"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(keys) == 2


def test_the_counter_running_out_draws_a_new_prefix():
    """After 2^48 keys from one prefix, the next key has a new prefix (no wrap-around)."""
    import itertools

    from wa_auth.intents import _Keys

    keys = _Keys()
    first = keys()
    keys._count = itertools.count(1 << 48)
    after = keys()
    assert after.rsplit("-", 1)[0] != first.rsplit("-", 1)[0]
    assert after.endswith("-000000000000")
