"""The values a guard makes per message without `__init__`: whole, frozen attrs values.

`Intent.text` (no options), `Intent._routed` and the guard's `accepted` Delivery are made by a
plain store per field on a private class of the same slots, whose instance then becomes an
`Intent` or a `Delivery` (`__class__` assigned): what is made must be indistinguishable from
what `__init__` makes. Also the pause store's one-call read of a number's two records, and
the hub's per-kind questions.
"""

from __future__ import annotations

import copy
import logging
import pickle
import weakref
from typing import Any

import attrs
import pytest

from wa_auth._delivery import DELIVERED, Delivery, accepted
from wa_auth.intents import Intent
from wa_auth.models import SendResult
from wa_auth.pacing import ACCOUNT, CIRCUIT, MemoryPauseStore, Pause

TO = "+15551234567"


def _same(quick: Any, made: Any) -> None:
    assert type(quick) is type(made)
    assert quick == made
    assert not quick != made  # noqa: SIM202 - attrs' own __ne__
    assert hash(quick) == hash(made)
    assert repr(quick) == repr(made)
    assert attrs.asdict(quick, recurse=False) == attrs.asdict(made, recurse=False)
    for value in (quick, made):
        assert pickle.loads(pickle.dumps(value)) == made
        assert copy.copy(value) == made
        assert copy.deepcopy(value) == made
        assert weakref.ref(value)() is value


def _frozen(value: Any, name: str) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(value, name, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        delattr(value, name)
    with pytest.raises(AttributeError):
        value.not_a_field = 1


def test_a_text_intent_is_what_init_makes():
    """`Intent.text(to, body)` equals, hashes, prints, pickles and evolves like `Intent(...)`."""
    quick = Intent.text(TO, "hi")
    made = Intent(
        to=quick.to,
        type="text",
        content=dict(quick.content),
        idempotency_key=quick.idempotency_key,
        created_at=quick.created_at,
    )
    _same(quick, made)
    for field in attrs.fields(Intent):
        _frozen(quick, field.name)
    assert [f.name for f in attrs.fields(Intent)] == [
        "to",
        "type",
        "content",
        "idempotency_key",
        "phone_number_id",
        "consumer",
        "created_at",
        "not_after",
    ]
    assert attrs.evolve(quick, consumer="orders") == attrs.evolve(made, consumer="orders")
    assert attrs.evolve(quick, consumer="orders").consumer == "orders"
    assert quick.consumer is None  # evolve made a new one
    with pytest.raises(ValueError, match="to"):  # evolve still checks, through __init__
        attrs.evolve(quick, to="not a number")
    assert Intent.from_dict(quick.to_dict()) == quick


def test_a_routed_intent_is_what_evolve_makes():
    """The guard's `_routed` intent equals `attrs.evolve(intent, phone_number_id=...)`."""
    intent = Intent.text(TO, "hi", consumer="orders")
    routed = intent._routed("106540352242922")
    _same(routed, attrs.evolve(intent, phone_number_id="106540352242922"))
    _frozen(routed, "phone_number_id")


def test_an_accepted_delivery_is_whole_and_frozen():
    """The guard's `accepted` Delivery pickles, copies, evolves and refuses writes like one
    made by `Delivery(...)`."""
    intent = Intent.text(TO, "hi")
    result = SendResult(message_id="wamid.1", wa_id=None)
    quick = accepted(intent, result, 1)
    made = Delivery(state=DELIVERED, intent=intent, result=result, attempts=1)
    _same(quick, made)
    for field in attrs.fields(Delivery):
        _frozen(quick, field.name)
    assert attrs.evolve(quick, attempts=2) == attrs.evolve(made, attempts=2)
    assert quick.attempts == 1


def test_the_send_effect_is_what_init_makes():
    """The guard's `sending(intent, until)` equals, hashes, prints, pickles and refuses
    writes like `SendIntent(intent, until)` (a `Step`, not an attrs class)."""
    from wa_auth.guards._effects import SendIntent, sending

    intent = Intent.text(TO, "hi")
    quick = sending(intent, 12.5)
    made = SendIntent(intent, 12.5)
    assert type(quick) is SendIntent
    assert (quick.intent, quick.until) == (intent, 12.5)
    assert quick == made
    assert hash(quick) == hash(made)
    assert repr(quick) == repr(made) == f"SendIntent(intent={intent!r}, until=12.5)"
    assert quick != sending(intent, 13.0)
    for value in (quick, made):
        assert pickle.loads(pickle.dumps(value)) == made
        assert copy.copy(value) == made
        assert copy.deepcopy(value) == made
        for name in ("intent", "until"):
            with pytest.raises(AttributeError, match="immutable"):
                setattr(value, name, None)
            with pytest.raises(AttributeError, match="immutable"):
                delattr(value, name)
        with pytest.raises(AttributeError):
            value.not_a_field = 1  # type: ignore[attr-defined]


def test_a_subclass_of_intent_is_still_made_by_its_own_init():
    """A subclass's constructor and `_routed` go through its `__init__` (its own checks)."""

    @attrs.frozen(kw_only=True)
    class Tagged(Intent):
        tag: str = "x"

    tagged = Tagged.text(TO, "hi", tag="y")
    assert type(tagged) is Tagged
    assert tagged.tag == "y"
    routed = tagged._routed("106540352242922")
    assert type(routed) is Tagged
    assert (routed.tag, routed.phone_number_id) == ("y", "106540352242922")


def _pause(kind: str, number: str) -> Pause:
    return Pause(kind=kind, phone_number_id=number, category="transient", since=0.0)


def test_the_memory_store_reads_both_records_in_one_call():
    """`get_records(number)` is `(get(ACCOUNT, number), get(CIRCUIT, number))`."""
    store = MemoryPauseStore()
    assert store.get_records("1") == (None, None)
    account, circuit = _pause(ACCOUNT, "1"), _pause(CIRCUIT, "2")
    store.put(account)
    store.put(circuit)
    for number in ("1", "2", "3"):
        assert store.get_records(number) == (store.get(ACCOUNT, number), store.get(CIRCUIT, number))
    store.clear(ACCOUNT, "1")
    assert store.get_records("1") == (None, None)


def test_look_falls_back_to_get_for_a_store_without_get_records():
    """A store of the protocol without `get_records` is read with `get`, once per kind."""
    from wa_auth.guards._effects import Look, Runtime

    class Store:
        def __init__(self) -> None:
            self.memory = MemoryPauseStore()
            self.asked: list[tuple[str, str]] = []

        def get(self, kind: str, number: str) -> Pause | None:
            self.asked.append((kind, number))
            return self.memory.get(kind, number)

        def __getattr__(self, name: str) -> Any:
            if name == "get_records":
                raise AttributeError(name)
            return getattr(self.memory, name)

    store = Store()
    store.put(_pause(CIRCUIT, "7"))
    runtime = Runtime(pauses=store, clock=lambda: 10.0, monotonic=lambda: 5.0)  # type: ignore[arg-type]
    assert runtime.get_records is None
    assert Look("7").perform(runtime) == (10.0, 5.0, None, store.memory.get(CIRCUIT, "7"))
    assert store.asked == [(ACCOUNT, "7"), (CIRCUIT, "7")]
    memory = Runtime(pauses=store.memory, clock=lambda: 10.0, monotonic=lambda: 5.0)
    assert Look("7").perform(memory) == (10.0, 5.0, None, store.memory.get(CIRCUIT, "7"))
    assert Look(None).perform(memory) == (10.0, 5.0, None, None)


def test_the_hub_asks_a_logger_subclass_and_others_through_their_own_wants():
    """Only `LoggingSubscriber` itself is asked through its logger; a subclass's `wants` and
    any other subscriber's are called with the kind, each time."""
    from wa_auth.events import Events, LoggingSubscriber, MessageDelivered

    http = logging.getLogger("test.quick.hub")
    http.setLevel(logging.WARNING)

    class Loud(LoggingSubscriber):
        def wants(self, kind: type[Any]) -> bool:
            return True

    asked: list[type[Any]] = []

    class Picky:
        def wants(self, kind: type[Any]) -> bool:
            asked.append(kind)
            return False

        def __call__(self, event: object) -> None:
            pass

    assert Events(Loud(http, http)).wants(MessageDelivered)
    picky = Events(LoggingSubscriber(http, http), Picky())
    assert not picky.wants(MessageDelivered)
    assert not picky.wants(MessageDelivered)
    assert asked == [MessageDelivered, MessageDelivered]
    http.setLevel(logging.INFO)  # a level set after the hub learnt the kind still counts
    assert picky.wants(MessageDelivered)
    logging.disable(logging.CRITICAL)
    try:
        assert not picky.wants(MessageDelivered)  # so does logging.disable
    finally:
        logging.disable(logging.NOTSET)
    assert picky.wants(MessageDelivered)
    http.setLevel(logging.NOTSET)
