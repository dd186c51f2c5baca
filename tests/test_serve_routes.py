"""serve's fan-out routes: the configuration file (TOML and JSON, errors naming the line and
the key, never a secret), the routes API's checks (any body: a RouteError or a route, never a
traceback), the filters, and the forward's body and signature (contract 5)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wa_auth._cli._serve._routes import (
    TYPES,
    Route,
    RouteError,
    forward_body,
    load_config,
    matches,
    route_from_api,
    sign,
)
from wa_auth.errors import ConfigurationError
from wa_auth.webhooks import AccountUpdate, MessageStatus, parse

SECRET = "a-route-secret-of-some-length"
ENV = {"ROUTE_SECRET": SECRET}
OK_ROUTE = '[[routes]]\nname = "a"\nurl = "http://h/x"\nsecret_env = "ROUTE_SECRET"\n'


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_toml_file_gives_its_routes(tmp_path):
    """Each [[routes]] table is a route, its id `config:<name>`, its secret from the env."""
    path = write(
        tmp_path,
        "routes.toml",
        '[[routes]]\nname = "sales"\nurl = "http://127.0.0.1:5678/webhook/sales"\n'
        'secret_env = "ROUTE_SECRET"\nphone_number_ids = ["111"]\nfields = ["messages"]\n',
    )
    (route,) = load_config(path, ENV)

    assert route.id == "config:sales"
    assert route.secret == SECRET
    assert route.phone_number_ids == ("111",)
    assert route.fields == ("messages",)
    assert route.types is None
    assert SECRET not in repr(route)
    assert "secret" not in route.to_json()


def test_a_json_file_gives_the_same(tmp_path):
    """The same routes as JSON, with the secret inline."""
    path = write(
        tmp_path,
        "routes.json",
        json.dumps({"routes": [{"name": "a", "url": "https://x.example/h", "secret": SECRET}]}),
    )
    (route,) = load_config(path, {})
    assert route.url == "https://x.example/h"
    assert route.secret == SECRET


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[routes]]\nname = "a"\nurl = "http://h/x"\n', "line 1"),
        (
            OK_ROUTE + '\n[[routes]]\nname = "b"\nsecret_env = "ROUTE_SECRET"\nurl = "ftp://h"\n',
            "line 9",
        ),
        (OK_ROUTE + 'types = ["status", "nope"]\n', "line 5"),
        (OK_ROUTE + "colour = 1\n", "line 5"),
        ('[[routes]]\nname = "a"\nurl = "http://h/x"\nsecret_env = "NOT_SET"\n', "line 4"),
        ('[[routes]]\nname = "a"\nurl = "http://h/x"\nsecret = "short"\n', "line 4"),
        ('[[routes]]\nname = "a"\nurl = \n', "line 3"),
    ],
    ids=["no-secret", "bad-url", "bad-type", "unknown-key", "unset-env", "short", "not-toml"],
)
def test_a_bad_route_names_its_line(tmp_path, text, needle):
    """Every refusal names the file's line (and never the secret's value)."""
    path = write(tmp_path, "routes.toml", text)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path, ENV)
    assert needle in caught.value.message
    assert SECRET not in caught.value.message


def test_a_json_error_names_the_key_line(tmp_path):
    """In JSON too: the line of the key at fault."""
    path = write(
        tmp_path,
        "routes.json",
        '{"routes": [\n  {"name": "a",\n   "url": "http://h/x",\n   "secret": "tiny"}\n]}\n',
    )
    with pytest.raises(ConfigurationError, match="line 4"):
        load_config(path, {})


def test_two_routes_of_one_name_are_refused(tmp_path):
    """A name is the id of its route: a second one is an error."""
    route = '[[routes]]\nname = "a"\nurl = "http://h/x"\nsecret_env = "ROUTE_SECRET"\n'
    with pytest.raises(ConfigurationError, match="second route"):
        load_config(write(tmp_path, "r.toml", route + route), ENV)


def test_a_missing_file_is_a_configuration_error(tmp_path):
    """No file: a typed error naming the flag."""
    with pytest.raises(ConfigurationError, match="--webhook-config"):
        load_config(str(tmp_path / "none.toml"), {})


@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["url", "secret", "name", "types", "fields", "x"]),
            st.one_of(st.none(), st.text(max_size=30), st.lists(st.text(max_size=10))),
        ),
        st.lists(st.integers()),
        st.text(),
    )
)
def test_any_api_body_is_a_route_or_a_route_error(data):
    """Whatever the body, a Route or a RouteError naming a field: never another exception."""
    try:
        route = route_from_api(data, id="r1")
    except RouteError as exc:
        field = exc.field
    else:
        field = None
        assert isinstance(route, Route)
        assert route.url.startswith(("http://", "https://"))
        assert len(route.secret) >= 16
    assert field is None or field


def test_filters_pass_only_their_events():
    """A filter left out passes everything; each given one must name the event's value."""
    route = Route(
        id="r", url="http://h", secret=SECRET, phone_number_ids=("111",), types=("status",)
    )
    mine = MessageStatus(id="m", status="sent", phone_number_id="111", key="k")
    other = MessageStatus(id="m", status="sent", phone_number_id="222", key="k")
    account = AccountUpdate(phone_number_id="111", key="k2")

    assert matches(route, mine)
    assert not matches(route, other)
    assert not matches(route, account)
    assert matches(Route(id="all", url="http://h", secret=SECRET), account)
    assert set(TYPES) >= {"status", "message", "account_update", "unknown"}


def test_the_forward_is_signed_over_its_exact_bytes():
    """The body holds the event's key, type, ids, category and every field with raw; the
    signature is HMAC-SHA256 of the route's secret over those bytes."""
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "111"},
                            "statuses": [
                                {
                                    "id": "wamid.1",
                                    "status": "failed",
                                    "timestamp": "1700000000",
                                    "recipient_id": "1555",
                                    "errors": [{"code": 131031, "title": "locked"}],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    (event,) = parse(payload)
    body = forward_body(event)
    data = json.loads(body)

    assert data["key"] == event.key
    assert data["type"] == "status"
    assert data["field"] == "messages"
    assert data["phone_number_id"] == "111"
    assert data["business_account_id"] == "waba"
    assert data["category"] == "account_state"
    assert data["event"]["raw"]["id"] == "wamid.1"
    assert data["event"]["errors"][0]["code"] == 131031
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == f"sha256={expected}"
