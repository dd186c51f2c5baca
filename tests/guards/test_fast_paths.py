"""The guard's and the intents' fast paths are the objects their slow paths made (a review's).

`sending()` makes a `SendIntent` by assigning `__class__`, `_made` an `Intent` the same way,
`client.send(intent)` reads an operation from `_OPERATIONS`, and a key's digits come from
`hex()`: each is checked here against what the plain constructor, the property or the
format spec gives, and the slot layouts they rely on are checked to fail loudly.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import threading
import uuid
from collections.abc import Generator
from typing import Any

import attrs
import pytest

from wa_auth._endpoints import messages
from wa_auth.guards._effects import SendIntent, _SendIntentSlots, _UnfrozenSend, sending
from wa_auth.intents import _OPERATIONS, MESSAGE_TYPES, Intent, _IntentSlots, _Keys, _Unfrozen

TO = "+15551234567"

INTENTS = [
    pytest.param(lambda: Intent.text(TO, 'hi \u2028 "q" \\'), id="text"),
    pytest.param(lambda: Intent.text(TO, "hi", consumer="shop", not_after=9e9), id="text-opts"),
    pytest.param(lambda: Intent.template(TO, "order_update", "en_US"), id="template"),
    pytest.param(lambda: Intent.media(TO, "image", media_id="1234567890"), id="image"),
    pytest.param(lambda: Intent.media(TO, "audio", media_id="1234567890"), id="audio"),
    pytest.param(lambda: Intent.media(TO, "video", media_id="1234567890"), id="video"),
    pytest.param(lambda: Intent.media(TO, "sticker", media_id="1234567890"), id="sticker"),
    pytest.param(
        lambda: Intent.media(TO, "document", link="https://example.com/a.pdf"), id="document"
    ),
    pytest.param(lambda: Intent.buttons(TO, "Confirm?", [("yes", "Yes")]), id="buttons"),
    pytest.param(
        lambda: Intent.list(
            TO, "Pick", "Slots", [{"title": "T", "rows": [{"id": "a", "title": "A"}]}]
        ),
        id="list",
    ),
    pytest.param(lambda: Intent.reaction(TO, "wamid.abc", "👍"), id="reaction"),
    pytest.param(lambda: Intent.location(TO, 52.52, 13.405), id="location"),
]


def test_the_intents_cover_every_message_type():
    """`INTENTS` has one of each type an intent can carry (a type added later shows here)."""
    made = {factory.values[0]().type for factory in INTENTS}  # type: ignore[operator]
    assert made == set(MESSAGE_TYPES)


def _operation_sent(intent: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The operation `client.send(intent)`'s flow hands to `send_message`."""
    seen: list[Any] = []

    def send_message(ctx: Any, operation: Any, *args: Any, **kw: Any) -> Generator[Any, Any, Any]:
        seen.append(operation)
        return "sent"
        yield  # a generator, as the flow it stands for

    monkeypatch.setattr(messages, "send_message", send_message)
    flow = messages.send(None, intent)  # type: ignore[arg-type]
    with pytest.raises(StopIteration):
        next(flow)
    return seen[0]


@pytest.mark.parametrize("factory", INTENTS)
def test_send_reads_the_operation_the_property_names(factory, monkeypatch):
    """For every kind, the operation `send(intent)` takes from `_OPERATIONS` (an interactive
    message's from the property) is `intent.operation`."""
    intent = factory()
    assert _operation_sent(intent, monkeypatch) == intent.operation
    if intent.type != "interactive":
        assert _OPERATIONS[intent.type] == intent.operation


def test_a_subclass_sends_by_its_own_operation(monkeypatch):
    """A subclass of `Intent` is not read from the table: its own property is asked."""

    @attrs.frozen(kw_only=True)
    class Routed(Intent):
        @property
        def operation(self) -> str:
            return "send_routed"

    intent = Routed.text(TO, "hi")
    assert type(intent) is Routed
    assert _operation_sent(intent, monkeypatch) == "send_routed"


# --- sending(): a SendIntent by __class__ -------------------------------------------------------


def test_sending_makes_the_send_intent_its_constructor_makes():
    """`sending()`'s effect is a `SendIntent` in every respect: equal, same hash and repr,
    copied and pickled as one, immutable, and no `_UnfrozenSend` left in its type."""
    intent = Intent.text(TO, "hi")
    made, built = sending(intent, 12.5), SendIntent(intent, 12.5)
    assert type(made) is SendIntent
    assert isinstance(made, SendIntent)
    assert not isinstance(made, _UnfrozenSend)
    assert (made.intent, made.until) == (intent, 12.5)
    assert made == built
    assert hash(made) == hash(built)
    assert repr(made) == repr(built)
    assert made != sending(intent, 13.0)
    for twin in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert type(twin) is SendIntent
        assert twin == built
    with pytest.raises(AttributeError, match="immutable"):
        made.until = 0.0  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del made.intent  # type: ignore[misc]
    assert not hasattr(made, "__dict__")


def test_the_slot_layouts_the_class_swaps_rely_on():
    """`__class__` assignment needs the same slots and no `__dict__` on both sides: if an attrs
    release (or an edit) adds a slot or a field to `Intent` or `SendIntent`, this fails here,
    by name, and not only as a `TypeError` on every message."""
    assert SendIntent.__slots__ == ()
    assert _UnfrozenSend.__slots__ == ()
    assert SendIntent.__basicsize__ == _UnfrozenSend.__basicsize__ == _SendIntentSlots.__basicsize__
    assert Intent.__basicsize__ == _Unfrozen.__basicsize__ == _IntentSlots.__basicsize__
    assert not hasattr(Intent.text(TO, "x"), "__dict__")
    assert {f.name for f in attrs.fields(Intent)} <= set(_IntentSlots.__slots__)
    assert set(SendIntent.compared or ()) == set(_SendIntentSlots.__slots__)


@pytest.mark.parametrize("factory", INTENTS)
def test_an_intent_made_by_the_fast_path_is_a_full_attrs_intent(factory):
    """An `Intent` made by `_made` (its class assigned) behaves as one `__init__` made:
    equal and hashed alike, `attrs.evolve`-able, frozen, pickled and copied."""
    intent = factory()
    assert type(intent) is Intent
    again = Intent(**{f.name: getattr(intent, f.name) for f in attrs.fields(Intent)})
    assert intent == again
    assert hash(intent) == hash(again)
    assert repr(intent) == repr(again)
    assert attrs.evolve(intent, consumer="shop").consumer == "shop"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        intent.to = "+15550000000"  # type: ignore[misc]
    for twin in (copy.copy(intent), copy.deepcopy(intent), pickle.loads(pickle.dumps(intent))):
        assert type(twin) is Intent
        assert twin == intent
    assert Intent.from_dict(intent.to_dict()) == intent


# --- keys ----------------------------------------------------------------------------------------


def test_keys_of_many_threads_are_distinct():
    """Threads share one counter: 8 threads making keys at once never repeat one."""
    keys = _Keys()
    made: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(out: list[str]) -> None:
        start.wait()
        out.extend(keys() for _ in range(20_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [k for out in made for k in out]
    assert len(set(every)) == len(every) == 160_000


def test_the_counter_wraps_to_a_new_prefix_in_the_same_format():
    """At 2^48 keys the prefix is drawn again and the counter starts over at zero: the keys
    keep their UUID4 form and none repeats."""
    keys = _Keys()
    prefix = keys().rsplit("-", 1)[0]
    keys._count = itertools.count((1 << 48) - 1)
    last, wrapped, after = keys(), keys(), keys()
    assert last == f"{prefix}-ffffffffffff"
    new = wrapped.rsplit("-", 1)[0]
    assert new != prefix
    assert (wrapped, after) == (f"{new}-000000000000", f"{new}-000000000001")
    for key in (last, wrapped, after):
        parsed = uuid.UUID(key)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, key)


class _Duck:
    """An intent-like object that is not an `Intent`: what `send()`'s `hasattr` check admits
    (a `message()` and an `operation`), with no `type` of its own."""

    to = TO
    idempotency_key = "duck-1"
    phone_number_id = None
    consumer = None
    not_after = None
    operation = "send_text"

    def message(self) -> tuple[str, dict[str, Any]]:
        return "text", {"body": "quack", "preview_url": False}

    def expired(self) -> bool:
        return False


def test_an_intent_like_object_without_a_type_is_sent_by_its_operation(monkeypatch):
    """`send()` takes any object with `message()` and `operation` (a subclass, a duck): the
    operation table is read for an `Intent` only, so such an object needs no `type`."""
    assert _operation_sent(_Duck(), monkeypatch) == "send_text"


class _Hub:
    """A hub that is not an `Events`: the three methods and the property an emitter uses."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    @property
    def subscribers(self) -> tuple[Any, ...]:
        return (self.seen.append,)

    def wants(self, kind: type) -> bool:
        return True

    def emit(self, event: object) -> None:
        self.seen.append(event)

    def subscribe(self, subscriber: Any) -> Any:
        return lambda: None


def test_a_hub_of_another_type_gets_the_delivered_event_and_never_fails_the_send(wa_sandbox):
    """A delivered message's outcome asks a hub that is not an `Events` its `subscribers`:
    reading `Events`' own tuple from it raised `AttributeError` after Meta had accepted the
    message (a caller that retries would send it twice)."""
    import wa_auth
    from wa_auth.events import MessageDelivered
    from wa_auth.guards import Guard

    hub = _Hub()
    with wa_auth.WhatsAppClient(
        transport="stdlib",
        token=wa_sandbox.issue_token(),
        base_url=wa_sandbox.base_url,
        phone_number_id=wa_sandbox.phone_number_id,
    ) as client:
        guard = Guard(client, events=hub)  # type: ignore[arg-type]
        assert guard.send(Intent.text(TO, "hi")).ok
    assert [type(e) for e in hub.seen] == [MessageDelivered]
