"""`wa-auth serve`'s lane against aiohttp's path: two real processes, the same bytes.

One service reads with its own lane (the default), one with aiohttp's server for every request
(`--http aiohttp`), both in front of one sandbox. The same raw requests get the same answers,
byte for byte but the `Date` header (and the values that differ by nature: a message id, a
duration); the requests the lane hands to aiohttp's path (HTTP/1.0, chunked, `Expect`, a query
string) are answered as before, pipelined or not; and a caller that goes away mid-request does
not lose its intent nor have it sent twice.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import pytest

from serving import KEY, Service, serving, text
from wa_auth.sandbox import Sandbox

HARD = 30.0
AUTH = f"Authorization: Bearer {KEY}"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(seed=11) as sb:
        yield sb


@pytest.fixture(scope="module")
def services(sandbox: Sandbox) -> Iterator[tuple[Service, Service]]:
    """The lane's service and aiohttp's, in front of one sandbox."""
    token = sandbox.issue_token()
    with serving(sandbox, token) as lane, serving(sandbox, token, "--http", "aiohttp") as plain:
        yield lane, plain
        assert lane.stop() == 0
        assert plain.stop() == 0


def _port(service: Service) -> int:
    return int(service.info["port"])


def _exchange(port: int, request: bytes, answers: int = 1) -> list[bytes]:
    """Send *request* on a new connection; return *answers* raw answers (head and body)."""
    out: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=HARD) as sock:
        sock.sendall(request)
        data = b""
        while len(out) < answers:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                length = re.search(rb"\r\nContent-Length: (\d+)", data[:end])
                size = end + 4 + (int(length[1]) if length else 0)
                if data.startswith(b"HTTP/1.1 100 "):
                    data = data[end + 4 :]
                    continue
                if len(data) >= size:
                    out.append(data[:size])
                    data = data[size:]
                    continue
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(out)} answers: {data[:200]!r}"
            data += chunk
    return out


def _steady(answer: bytes) -> bytes:
    """The answer without what differs from one request to the next (the date, ids, times)."""
    answer = re.sub(rb"\r\nDate: [^\r]*", b"", answer)
    answer = re.sub(
        rb'"(message_id|wamid|id|idempotency_key|seconds|elapsed|latency_ms|attempts|ts)": ?[^,}]*',
        rb'"\1": _',
        answer,
    )
    return re.sub(rb"\r\nContent-Length: \d+", b"", answer)


def _post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [
        f"POST {path} HTTP/{version}",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


INTENT = json.dumps(text()).encode()

SAME = {
    "send": _post("/send", INTENT, AUTH),
    "send-close": _post("/send", INTENT, AUTH, "Connection: close"),
    "no-key": _post("/send", INTENT),
    "wrong-key": _post("/send", INTENT, "X-API-Key: wrong-key-0123456789abcdef"),
    "not-json": _post("/send", b"{nope", AUTH),
    "half-an-emoji": _post("/send", '{"t": "😀"}'.encode()[:-3] + b'"}', AUTH),
    "not-an-object": _post("/send", b"3", AUTH),
    "wrong-type": _post("/send", INTENT, AUTH).replace(b"application/json", b"text/plain"),
    "no-body": b"POST /send HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"\r\n\r\n",
    "unknown": b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    "wrong-method": b"GET /send HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"\r\n\r\n",
    "classify": _post("/classify", b'{"error": {"code": 131056}}', AUTH),
}


@pytest.mark.parametrize("name", sorted(SAME))
def test_the_lane_answers_what_aiohttps_path_answers_byte_for_byte(services, name):
    lane, plain = services
    ours = _exchange(_port(lane), SAME[name])[0]
    theirs = _exchange(_port(plain), SAME[name])[0]
    assert _steady(ours) == _steady(theirs)
    if b'"message_id"' not in ours and b"uptime" not in ours:
        assert re.sub(rb"\r\nDate: [^\r]*", b"", ours) == re.sub(rb"\r\nDate: [^\r]*", b"", theirs)


@pytest.mark.parametrize(
    "request_bytes",
    [
        _post("/send", INTENT, AUTH, version="1.0"),
        _post("/send", INTENT, AUTH, "Expect: 100-continue"),
        _post("/send", INTENT, AUTH)
        .replace(f"Content-Length: {len(INTENT)}".encode(), b"Transfer-Encoding: chunked")
        .replace(b"\r\n\r\n" + INTENT, b"\r\n\r\n%x\r\n" % len(INTENT) + INTENT + b"\r\n0\r\n\r\n"),
        _post("/send?x=1", INTENT, AUTH),
    ],
    ids=["http10", "expect", "chunked", "query"],
)
def test_what_the_lane_hands_over_is_delivered_as_before(services, sandbox, request_bytes):
    lane, _ = services
    before = len(sandbox.messages())
    answer = _exchange(_port(lane), request_bytes)[0]
    assert re.match(rb"HTTP/1\.[01] 200 ", answer), answer[:200]
    assert b'"state":"delivered"' in answer.replace(b" ", b"")
    assert len(sandbox.messages()) == before + 1


def test_pipelined_requests_on_and_off_the_lane_are_answered_in_order(services, sandbox):
    lane, _ = services
    before = len(sandbox.messages())
    intents = [json.dumps(text(f"pipelined {i}")).encode() for i in range(4)]
    chunked = (
        b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + AUTH.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(intents[2])
        + intents[2]
        + b"\r\n0\r\n\r\n"
    )
    request = _post("/send", intents[0], AUTH) + _post("/send", intents[1], AUTH) + chunked
    request += _post("/send", intents[3], AUTH)
    answers = _exchange(_port(lane), request, answers=4)
    assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
    assert [len(a) > 0 for a in answers] == [True] * 4
    bodies = [m.payload["text"]["body"] for m in sandbox.messages()[before:]]
    assert bodies == [f"pipelined {i}" for i in range(4)]


def test_a_caller_gone_mid_request_has_its_intent_sent_once(services, sandbox):
    """The handler is not cancelled when its caller goes away: the send happens, once."""
    lane, _ = services
    before = len(sandbox.messages())
    intent = json.dumps(text("gone before the answer")).encode()
    with socket.create_connection(("127.0.0.1", _port(lane)), timeout=HARD) as sock:
        sock.sendall(_post("/send", intent, AUTH))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    deadline = time.monotonic() + HARD
    while len(sandbox.messages()) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    bodies = [m.payload["text"]["body"] for m in sandbox.messages()[before:]]
    assert bodies == ["gone before the answer"]
    access = lane.wait_for(
        lambda lines: (
            sum(line.get("route") == "/send" and line["event"] == "access" for line in lines) >= 1
        )
    )
    assert access
