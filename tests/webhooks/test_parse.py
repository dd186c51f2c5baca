"""`parse` over every fixture of `tests/payloads/webhooks/` (Meta's shapes, with sources) and over
anything at all: typed events, stable keys, and never an exception."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wa_auth.errors import ApiError
from wa_auth.events import Events
from wa_auth.webhooks import (
    EFFECTS,
    MessageStatus,
    UnknownEvent,
    WebhookEvent,
    parse,
)

FIXTURES = Path(__file__).resolve().parents[1] / "payloads" / "webhooks"
CASES = sorted(FIXTURES.glob("*.json"))
WABA = "102290129340398"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_fixture_names_its_source():
    """Each fixture says where its shape comes from and how it was made."""
    assert len(CASES) >= 30
    for path in CASES:
        case = _load(path)
        assert case["source"], path.name
        assert all(s.startswith("https://") for s in case["source"]), path.name
        assert case["note"], path.name


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_fixture_parses_to_its_events(path):
    """Each fixture gives the events it expects, from the parsed JSON and from the raw bytes."""
    case = _load(path)
    events = parse(case["payload"])
    raw = parse(json.dumps(case["payload"]).encode())

    assert [type(e) for e in raw] == [type(e) for e in events]
    assert [e.key for e in raw] == [e.key for e in events]
    assert len(events) == len(case["expect"])
    for event, expect in zip(events, case["expect"], strict=True):
        assert isinstance(event, WebhookEvent)
        assert event.key
        for name, value in expect.items():
            if name == "code":
                assert isinstance(event.error, ApiError)
                assert event.error.code == value
            else:
                assert getattr(event, name) == value, name
        if hasattr(event, "effect"):
            assert event.effect in EFFECTS
            assert event.operator_action


def test_a_status_carries_its_ids_and_raw_objects():
    """A status carries message id, recipient, key, phone and WABA ids, conversation and pricing."""
    (status,) = parse(_load(FIXTURES / "status_sent_cbp_conversation.json")["payload"])

    assert isinstance(status, MessageStatus)
    assert status.message_id == status.id
    assert status.conversation["id"] == "7270432eae37498234f4444b35ffc5"
    assert status.pricing["pricing_model"] == "CBP"
    assert status.error is None
    assert "conversation" not in repr(status)


def test_an_inbound_message_keeps_its_text_out_of_repr():
    """A message's content stays in `raw`, and `raw` is not in the repr (it may hold text)."""
    (message,) = parse(_load(FIXTURES / "message_text.json")["payload"])

    assert message.raw["text"]["body"] == "Does it come in another color?"
    assert "another color" not in repr(message)


def test_a_redelivery_has_the_same_key_and_another_event_another():
    """A change without an id of its own is keyed by its content: equal for a redelivery only."""
    payload = _load(FIXTURES / "account_update_disabled_disable.json")["payload"]
    again = copy.deepcopy(payload)
    later = copy.deepcopy(payload)
    later["entry"][0]["time"] += 86400

    (first,) = parse(payload)
    (second,) = parse(again)
    (third,) = parse(later)

    assert first.key == second.key
    assert first.key != third.key


def test_statuses_of_one_message_have_different_keys():
    """sent, delivered and read of one message are three events, with three keys."""
    keys = {
        parse(_load(FIXTURES / f"status_{s}.json")["payload"])[0].key
        for s in ("sent", "delivered", "read")
    }
    assert len(keys) == 3


def test_many_changes_and_entries_keep_their_order():
    """Events come in the order Meta listed entries, changes and statuses."""
    names = [
        "status_sent",
        "account_update_partner_removed",
        "message_text",
        "security_pin_reset_request",
    ]
    payload = {"object": "whatsapp_business_account", "entry": []}
    for name in names:
        payload["entry"].extend(_load(FIXTURES / f"{name}.json")["payload"]["entry"])

    assert [e.type for e in parse(payload)] == ["status", "account_update", "message", "security"]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        b"not json",
        "[]",
        b"\xff\xfe",
        {},
        {"entry": "x"},
        {"entry": [1, None, {"changes": "x"}, {"changes": [1, "x"]}]},
        [1, 2],
        "{" * 100_000,
    ],
    ids=[
        "none",
        "not-json",
        "json-list",
        "bad-utf8",
        "empty",
        "entry-text",
        "junk-entries",
        "list",
        "deep",
    ],
)
def test_a_payload_of_another_shape_gives_nothing(payload):
    """What is not a webhook's shape gives no event, and no exception."""
    assert parse(payload) == []


def test_an_odd_change_becomes_an_unknown_event(counters):
    """A known field with an unreadable value, an unknown field, another object: UnknownEvents."""
    events = Events(counters)
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "changes": [
                    {"field": "messages", "value": {"statuses": [{"status": "sent"}, 7]}},
                    {"field": "messages", "value": {"nothing": True}},
                    {"field": "account_update", "value": "text"},
                    {"field": "brand_new_field", "value": {"x": 1}},
                ],
            }
        ],
    }

    found = parse(payload, events=events)

    assert [type(e) for e in found] == [UnknownEvent] * 5
    assert [e.field for e in found][-1] == "brand_new_field"
    assert counters.get("webhook.unknown") == 5
    assert len({e.key for e in found}) == 5
    other = dict(payload, object="page")
    assert {type(e) for e in parse(other)} == {UnknownEvent}


def test_values_are_read_leniently_and_bounded():
    """Numeric ids become text, numeric text becomes numbers, an absurd id is no id."""
    payload = {
        "entry": [
            {
                "id": 102290129340398,
                "time": "1739321024",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": 106540352242922},
                            "statuses": [
                                {
                                    "id": "wamid.A",
                                    "status": "sent",
                                    "timestamp": 17,
                                    "recipient_id": "x" * 5000,
                                },
                                {"id": "x" * 5000, "status": "sent"},
                            ],
                        },
                    }
                ],
            }
        ]
    }
    status, odd = parse(payload)

    assert (status.business_account_id, status.phone_number_id) == (WABA, "106540352242922")
    assert status.timestamp == 17
    assert status.recipient_id is None
    assert isinstance(odd, UnknownEvent)


def test_a_lone_surrogate_in_an_id_is_repaired():
    """An id with half a surrogate pair (a cut emoji) becomes well-formed text."""
    (status,) = parse(
        '{"entry":[{"changes":[{"field":"messages","value":{"statuses":'
        '[{"id":"wamid.\\ud83d","status":"sent"}]}}]}]}'
    )
    assert status.id == "wamid.\ufffd"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)
_keys = st.sampled_from(
    [
        "object",
        "entry",
        "id",
        "time",
        "changes",
        "field",
        "value",
        "statuses",
        "messages",
        "errors",
        "status",
        "event",
        "metadata",
        "phone_number_id",
        "ban_info",
        "waba_ban_state",
        "decision",
        "current_limit",
        "waba_info",
        "waba_id",
        "timestamp",
        "from",
        "type",
    ]
)
_shaped = st.recursive(
    st.none()
    | st.integers()
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "messages",
            "account_update",
            "security",
            "failed",
            "sent",
            "TIER_2K",
            "DISABLED_UPDATE",
            "whatsapp_business_account",
        ]
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=40,
)


@given(payload=_json)
def test_any_json_never_raises(payload):
    """parse never raises, whatever JSON it is given (as a value or as text)."""
    for event in parse(payload) + parse(json.dumps(payload)):
        assert isinstance(event, WebhookEvent)
        assert isinstance(event.key, str)


@given(payload=_shaped)
def test_any_near_webhook_shape_never_raises(payload):
    """Payloads built from the webhook's own keys and values never make parse raise."""
    for event in parse({"object": "whatsapp_business_account", "entry": [payload]}) + parse(
        payload
    ):
        assert isinstance(event, WebhookEvent)
        assert event.key


_status_text = st.one_of(
    st.sampled_from(["wamid.HBgL", "delivered", "16505551234", "1750263773", "", "x" * 1025]),
    st.text(max_size=8),
    st.text(alphabet="a1\ud83d\u00e9 ", max_size=6),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
)
_status_value = st.one_of(_status_text, st.dictionaries(st.text(max_size=3), st.integers()))


@given(
    status=st.fixed_dictionaries(
        {
            "id": _status_text,
            "status": _status_text,
            "recipient_id": _status_text,
            "timestamp": st.one_of(_status_text, st.from_regex(r"\A[0-9]{1,20}\Z")),
        },
        optional={
            "biz_opaque_callback_data": _status_text,
            "conversation": _status_value,
            "pricing": _status_value,
            "errors": st.just([{"code": 131031}]),
        },
    )
)
@example(status={"id": "wamid.\ud83d", "status": "read", "recipient_id": "1", "timestamp": "1"})
@example(status={"id": "w" * 1025, "status": "read", "recipient_id": "1", "timestamp": "1"})
@example(status={"id": "w", "status": "read", "recipient_id": "1", "timestamp": "9" * 19})
@example(status={"id": "w", "status": "sent", "recipient_id": "", "timestamp": "1"})
@example(
    status={
        "id": "w",
        "status": "sent",
        "recipient_id": "1",
        "timestamp": "1",
        "biz_opaque_callback_data": "",
    }
)
def test_a_status_reads_the_same_on_the_fast_path_and_the_general_one(status):
    """The fast path of a plain status gives exactly the event the general reader gives."""
    fast, general = _both(status)
    assert type(fast) is type(general)
    assert _fields(fast) == _fields(general)
    assert fast == general
    assert _hashed(fast) == _hashed(general)
    assert repr(fast) == repr(general)


_PHONE = "106540352242922"


def _both(status: object) -> tuple[WebhookEvent, WebhookEvent]:
    """The event of *status* on the fast path, and on the general (eager) one."""
    from wa_auth.webhooks import _parse

    (fast,) = _parse._statuses([status], WABA, _PHONE, 7, "messages")
    return fast, _parse._status_any(status, WABA, _PHONE, 7, "messages")


def _hashed(event: WebhookEvent) -> object:
    # A status holding a pricing dict is not hashable: then the error is what must agree.
    try:
        return hash(event)
    except TypeError as exc:
        return str(exc)


def _fields(event: WebhookEvent) -> list[tuple[str, object]]:
    # Exceptions are not equal to each other: an error is compared by its repr.
    return [
        (a.name, repr(getattr(event, a.name)) if a.name == "errors" else getattr(event, a.name))
        for a in attrs.fields(type(event))
    ]


_plain_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.=_-", min_size=1, max_size=40)
_plain_status = st.fixed_dictionaries(
    {
        "id": _plain_text.map(lambda t: "wamid." + t),
        "status": st.sampled_from(["sent", "delivered", "read", "deleted", "warning"]),
        "recipient_id": st.one_of(_plain_text, _status_text),
        "timestamp": st.one_of(st.from_regex(r"\A[0-9]{1,20}\Z"), _status_text),
    },
    optional={
        "biz_opaque_callback_data": _status_text,
        "conversation": _status_value,
        "pricing": _status_value,
        "type": st.just("payment"),
    },
)


@given(
    statuses=st.lists(
        st.one_of(_plain_status, _plain_status.map(lambda s: {**s, "errors": [{"code": 131047}]})),
        max_size=6,
    ),
    first=st.sampled_from(
        ["timestamp", "recipient_id", "idempotency_key", "conversation", "pricing", "key", "id"]
    ),
)
def test_a_list_of_statuses_reads_the_same_fast_and_eager(statuses, first):
    """Any list of plain statuses (Meta's shape, odd values in the deferred fields) parses to
    the events the eager reader gives, whichever field is read first."""
    from wa_auth.webhooks import _parse

    fast = _parse._statuses(statuses, WABA, _PHONE, None, "messages")
    eager = [_parse._status_any(s, WABA, _PHONE, None, "messages") for s in statuses]
    for one, other in zip(fast, eager, strict=True):
        getattr(one, first)
        assert type(one) is type(other) is MessageStatus
        assert _fields(one) == _fields(other)
        assert one == other
        assert _hashed(one) == _hashed(other)


@given(
    statuses=st.lists(_plain_status, max_size=4),
    metadata=st.one_of(st.none(), st.just({"phone_number_id": _PHONE}), _status_value),
)
def test_a_statuses_change_reads_the_same_in_parse_and_in_its_reader(statuses, metadata):
    """The lane `parse` takes for a `messages` change of statuses alone gives what the
    `messages` reader gives."""
    from wa_auth.webhooks import _parse

    value = {"messaging_product": "whatsapp", "metadata": metadata, "statuses": statuses}
    change = {"field": "messages", "value": value}
    events = parse(
        {"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [change]}]}
    )
    read = _parse._messages(value, WABA, None, "messages", change) or [
        _parse._unknown(change, WABA, None, "messages")
    ]
    assert [_fields(e) for e in events] == [_fields(e) for e in read]


def test_a_status_reads_its_deferred_fields_once_on_first_use():
    """`parse` leaves a plain status's DEFERRED fields unset; the first use of any reads all
    five from `raw`, and from then on they are ordinary slots of a frozen value."""
    from wa_auth.webhooks._types import DEFERRED

    raw = {
        "id": "wamid.A",
        "status": "delivered",
        "timestamp": "1750263773",
        "recipient_id": "16505551234",
        "biz_opaque_callback_data": "order-1",
        "pricing": {"billable": True, "pricing_model": "PMP"},
    }
    (event,) = parse(_status_payload(raw))
    assert {"timestamp", "recipient_id", "idempotency_key", "conversation", "pricing"} == DEFERRED
    for name in DEFERRED:
        with pytest.raises(AttributeError):
            object.__getattribute__(event, name)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.timestamp = 1  # type: ignore[misc]
    assert event.idempotency_key == "order-1"
    assert {name: object.__getattribute__(event, name) for name in DEFERRED} == {
        "timestamp": 1750263773,
        "recipient_id": "16505551234",
        "idempotency_key": "order-1",
        "conversation": None,
        "pricing": raw["pricing"],
    }
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.pricing = None  # type: ignore[misc]


def test_an_unknown_attribute_of_a_status_is_an_ordinary_attribute_error():
    """The reading of deferred fields answers no other name: `hasattr`, `getattr` with a
    default and the error's text are those of any object."""
    (event,) = parse(_status_payload({"id": "wamid.A", "status": "read", "timestamp": "1"}))
    assert not hasattr(event, "nope")
    assert getattr(event, "nope", 7) == 7
    with pytest.raises(AttributeError, match=r"^'MessageStatus' object has no attribute 'nope'$"):
        event.nope  # type: ignore[attr-defined]  # noqa: B018
    blank = MessageStatus.__new__(MessageStatus)
    with pytest.raises(AttributeError):
        blank.timestamp  # noqa: B018 - no raw to read it from: an AttributeError, not a loop


def test_a_status_with_deferred_fields_copies_pickles_and_evolves_whole():
    """copy, pickle and attrs.evolve of a status not yet read give the whole, equal value."""
    import pickle

    raw = {"id": "wamid.A", "status": "sent", "timestamp": "17", "recipient_id": "1"}
    for clone in (
        copy.copy,
        copy.deepcopy,
        lambda e: pickle.loads(pickle.dumps(e)),
        attrs.evolve,
    ):
        (event,) = parse(_status_payload(raw))
        other = clone(event)
        assert type(other) is MessageStatus
        assert other.timestamp == 17
        assert other.recipient_id == "1"
        assert other == event


def _status_payload(status: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "changes": [
                    {
                        "field": "messages",
                        "value": {"metadata": {"phone_number_id": "1"}, "statuses": [status]},
                    }
                ],
            }
        ],
    }


def test_a_fast_built_status_is_an_ordinary_frozen_message_status():
    """A status `parse` builds is a MessageStatus, frozen, equal to one built by hand."""
    status = {
        "id": "wamid.A",
        "status": "read",
        "timestamp": "1750263773",
        "recipient_id": "16505551234",
        "biz_opaque_callback_data": "order-1",
    }
    (event,) = parse(_status_payload(status))
    assert type(event) is MessageStatus
    assert event == MessageStatus(
        business_account_id=WABA,
        phone_number_id="1",
        timestamp=1750263773,
        field="messages",
        key="status:wamid.A:read",
        raw=status,
        id="wamid.A",
        status="read",
        recipient_id="16505551234",
        idempotency_key="order-1",
    )
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.status = "sent"  # type: ignore[misc]
    assert attrs.evolve(event, status="failed").status == "failed"
