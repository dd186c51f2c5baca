"""`wa-auth serve` on hostile input: a real process on 127.0.0.1, the sandbox or an odd peer behind it.

One intent that cannot be sent is that intent's result in a 200 batch, never a 500 for all
(after which n8n's retry sent the other 30 again); a body that is not strict JSON is one 400;
a peer's text that UTF-8 cannot encode still makes a valid UTF-8 answer. Every answer and
every line the process prints are validated against docs/wa-auth.schema.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from graph_peer import graph_peer
from running import intent, valid
from serving import KEY, serve_env, start
from wa_auth.sandbox import Sandbox

CUT = '{"to": "+15551234567", "type": "text", "text": {"body": "Your code \\ud83d"}, "idempotency_key": "k16"}'  # fmt: skip
#: Runs the CLI with a bug planted in the guard: the intent keyed `boom` raises a TypeError.
WITH_A_BUG = (
    "import sys, wa_auth.guards as g\n"
    "asend = g.Guard.asend\n"
    "async def planted(self, intent):\n"
    "    if intent.idempotency_key == 'boom':\n"
    "        raise TypeError('a planted bug')\n"
    "    return await asend(self, intent)\n"
    "g.Guard.asend = planted\n"
    "from wa_auth._cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def post(svc, path: str, content: bytes) -> httpx.Response:
    """POST raw bytes as JSON; a JSON answer must be strict UTF-8 and match the schema."""
    response = svc.http.post(
        path,
        content=content,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    if response.headers.get("content-type", "").startswith("application/json"):
        valid(json.loads(response.content.decode("utf-8")))
    return response


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=5) as sb:
        yield sb


def test_half_an_emoji_is_its_own_result_in_a_200_batch(sandbox):
    """30 good intents and one cut inside an emoji: 200, 31 results in order, 30 sent once."""
    token = sandbox.issue_token()
    items = [intent(idempotency_key=f"k{i}") for i in range(1, 32)]
    items[15] = CUT
    body = ("[" + ",".join(items) + "]").encode()
    svc = start(serve_env(sandbox, token))
    try:
        answer = post(svc, "/send", body)
        assert answer.status_code == 200
        results = answer.json()["results"]
        assert [r["line"] for r in results] == list(range(1, 32))
        assert [r["state"] for r in results] == ["delivered"] * 15 + ["failed"] + ["delivered"] * 15
        assert results[15]["category"] == "invalid_request"
        assert results[15]["idempotency_key"] == "k16"
        assert "text has half of a character" in results[15]["error"]["message"]
        assert answer.json()["exit_code"] == 9
        one = post(svc, "/send", CUT.encode())
        assert (one.status_code, one.json()["category"]) == (200, "invalid_request")
    finally:
        assert svc.stop() == 0
    assert len(sandbox.messages()) == 30
    access = [line for line in svc.lines() if line.get("event") == "access"]
    assert [a["status"] for a in access] == [200, 200]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        pytest.param("/send", b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels", id="send-100000-deep"),
        pytest.param("/send", ("[" + intent(idempotency_key="a") + "," + "[" * 80 + "]" * 80 + "]").encode(), "nested deeper than 64 levels", id="send-80-deep-item"),
        pytest.param("/classify", b'{"error": ' * 5000 + b"1" + b"}" * 5000, "nested deeper than 64 levels", id="classify-deep"),
        pytest.param("/send", b'{"to": "+15551234567", "type": "text", "text": {"body": "x"}, "to": "+15550000000"}', "the key 'to' appears twice", id="duplicate-key"),
        pytest.param("/send", b'{"to": "+15551234567", "type": "text", "text": {"body": "x", "preview_url": NaN}}', "NaN is not JSON", id="nan"),
        pytest.param("/send", b'{"to": "+15551234567", "type": "text", "text": {"body": "na\xefve"}}', "not UTF-8: byte 0xef", id="latin-1"),
        pytest.param("/classify", b'{"error": {"code": 1e999}}', "1e999 is out of range", id="huge-number"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_strict_json_is_one_400(sandbox, path, body, message):
    """Deep nesting, a duplicate key, NaN, 1e999 or Latin-1: a 400 invalid_request, nothing sent."""
    svc = start(serve_env(sandbox, sandbox.issue_token()))
    try:
        answer = post(svc, path, body)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert (error["category"], error["rule"]) == ("invalid_request", "serve/json")
        assert message in error["message"]
        assert (
            post(svc, "/send", intent(idempotency_key="after").encode()).json()["state"]
            == "delivered"
        )
    finally:
        assert svc.stop() == 0
    assert [m.idempotency_key for m in sandbox.messages()] == ["after"]


@pytest.mark.parametrize(
    ("status", "body", "category"),
    [
        pytest.param(400, b'{"error": {"message": "(#100) Invalid parameter \\ud800", "type": "OAuthException", "code": 100, "fbtrace_id": "A\\udfff"}}', "invalid_request", id="error-message"),
        pytest.param(200, b'{"contacts": [{"input": "x", "wa_id": "\\ud83d"}], "messages": [{"id": "wamid.\\ud83d"}]}', None, id="message-id"),
    ],
)  # fmt: skip
def test_a_peers_half_surrogate_makes_a_valid_utf8_answer(status, body, category):
    """Graph text with half a surrogate pair: a 200 answer of valid UTF-8 JSON, not a 500."""
    with graph_peer(status, body) as peer:
        token = "EAA" + "x" * 40
        svc = start(serve_env(None, token, WA_BASE_URL=peer.base_url, WA_PHONE_NUMBER_ID="1"))
        try:
            one = post(svc, "/send", intent(idempotency_key="a").encode())
            batch = post(
                svc,
                "/send",
                (
                    "[" + intent(idempotency_key="b") + "," + intent(idempotency_key="c") + "]"
                ).encode(),
            )
        finally:
            assert svc.stop() == 0
    assert (one.status_code, batch.status_code) == (200, 200)
    assert one.json()["category"] == category
    assert "\ufffd" in one.content.decode("utf-8")
    if category is not None:  # one U+FFFD for the one half
        assert one.json()["error"]["message"] == "(#100) Invalid parameter \ufffd"
    assert [r["category"] for r in batch.json()["results"]] == [category, category]


def test_a_bug_in_one_send_is_that_intents_line_only(sandbox, tmp_path):
    """A bug while sending one intent is its `internal` line; the others are sent and answered."""
    token = sandbox.issue_token()
    svc = start(serve_env(sandbox, token), python=("-c", WITH_A_BUG))
    try:
        body = (
            "["
            + ",".join(
                [
                    intent(idempotency_key="k1"),
                    intent(idempotency_key="boom"),
                    intent(idempotency_key="k3"),
                ]
            )
            + "]"
        ).encode()
        answer = post(svc, "/send", body)
    finally:
        assert svc.stop() == 0
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["state"] for r in results] == ["delivered", "maybe_delivered", "delivered"]
    bad = results[1]
    assert (bad["category"], bad["exit_code"], bad["idempotency_key"]) == ("internal", 1, "boom")
    assert bad["error"]["maybe_delivered"] is True
    assert "TypeError: a planted bug" in bad["error"]["message"]
    assert sorted(m.idempotency_key for m in sandbox.messages()) == ["k1", "k3"]
