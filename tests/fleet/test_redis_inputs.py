"""What the fleet parses from outside: Redis URLs, pub/sub messages and stored values.

Property tests: any URL gives a `ConfigurationError` or a `host:port` without its password;
any message on a channel, and any value under a key, is applied or ignored, never raised.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wa_auth.errors import ConfigurationError
from wa_auth.fleet import RedisState
from wa_auth.fleet._connection import address_of
from wa_auth.fleet._rotation import _record

pytestmark = pytest.mark.real_component("redis")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(st.text())
def test_any_url_is_read_or_refused_typed(url):
    """`address_of` returns host:port (or a socket path) or raises ConfigurationError."""
    try:
        address = address_of(url)
    except ConfigurationError:
        return
    assert isinstance(address, str)


@given(password=st.text(alphabet="abcdefghijklmnop0123456789", min_size=8, max_size=20))
def test_the_address_never_holds_the_password(password):
    """The password of a URL is never in the address errors show."""
    address = address_of(f"redis://:{password}@10.0.0.7:6380/2")
    assert address == "10.0.0.7:6380"
    assert password not in address


@pytest.fixture(scope="module")
def state(redis_server):
    with RedisState(redis_server.url) as opened:
        yield opened


@given(
    st.binary()
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {"op": st.sampled_from(["record", "forget", "put", "clear"]), "fp": JSON, "error": JSON}
    ).map(lambda v: json.dumps(v).encode())
)
def test_any_channel_message_is_applied_or_ignored(state, raw):
    """A message of any shape on the verdicts' or pauses' channel never raises."""
    state.verdicts._apply(raw)
    state.pauses._apply(raw)


@given(st.dictionaries(st.binary(max_size=12), st.binary(max_size=12)))
def test_any_rotation_hash_reads_as_a_record(found):
    """A hand-edited rotation hash reads as some record (version 0 when unreadable)."""
    record = _record(found)
    assert record.version >= 0


def test_a_unicode_digit_is_no_version():
    """`²` is a digit to `str.isdigit`, not to `int`: the record reads version 0."""
    assert _record({b"version": "²".encode()}).version == 0
