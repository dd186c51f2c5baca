"""The sandbox refuses what it should (issue #9): admin arguments that are not finite, not in
range, of the wrong JSON type or unknown; malformed request framing; and message bodies Meta
rejects, each with Meta's literal answer. Its `close()` ends an injected latency at once."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from wa_auth import testing
from wa_auth.sandbox import Sandbox

wa_sandbox_server = testing.wa_sandbox_server
wa_sandbox = testing.wa_sandbox

TO = "+15551234567"


@pytest.fixture
def http(wa_sandbox):
    with httpx.Client(base_url=wa_sandbox.base_url, timeout=30) as client:
        yield client


def _admin(http, operation, raw):
    """POST a raw JSON text (so `1e999`, `NaN` and friends reach the server verbatim)."""
    return http.post(
        f"/_sandbox/{operation}", content=raw, headers={"Content-Type": "application/json"}
    )


# --- the admin API: numbers finite and in range, lists are lists, flags are flags -----------


@pytest.mark.parametrize(
    ("operation", "raw", "named"),
    [
        pytest.param("set_faults", '{"latency": 1e999}', "latency", id="latency-infinity"),
        pytest.param("set_faults", '{"latency": NaN}', "latency", id="latency-nan-literal"),
        pytest.param("set_faults", '{"latency": "1"}', "latency", id="latency-string"),
        pytest.param("set_faults", '{"latency": true}', "latency", id="latency-bool"),
        pytest.param("set_faults", '{"latency": 601}', "latency", id="latency-over-cap"),
        pytest.param("set_faults", '{"latency": 400, "latency_jitter": 400}', "latency_jitter", id="latency-plus-jitter"),
        pytest.param("set_faults", '{"latency_jitter": 1e999}', "latency_jitter", id="jitter-infinity"),
        pytest.param("set_faults", '{"error_codes": "12"}', "error_codes", id="codes-string"),
        pytest.param("set_faults", '{"error_codes": [true]}', "error_codes", id="codes-bool"),
        pytest.param("set_faults", '{"error_codes": [1.5]}', "error_codes", id="codes-float"),
        pytest.param("set_faults", '{"error_codes": {"1": 1}}', "error_codes", id="codes-object"),
        pytest.param("set_faults", '{"error_rate": "0.5"}', "error_rate", id="rate-string"),
        pytest.param("set_faults", '{"drop_after_accept": "no"}', "drop_after_accept", id="flag-string"),
        pytest.param("set_faults", '{"code_as_string": 1}', "code_as_string", id="flag-int"),
        pytest.param("set_limits", '{"pair_window": 1e999}', "pair_window", id="window-infinity"),
        pytest.param("set_limits", '{"pair_window": "6"}', "pair_window", id="window-string"),
        pytest.param("set_limits", '{"app_window": true}', "app_window", id="window-bool"),
        pytest.param("set_limits", '{"app_window": 4e9}', "app_window", id="window-over-cap"),
        pytest.param("set_limits", '{"throughput": 1.5}', "throughput", id="limit-float"),
        pytest.param("set_limits", '{"throughput": true}', "throughput", id="limit-bool"),
        pytest.param("set_limits", '{"retry_after_header": "yes"}', "retry_after_header", id="header-flag-string"),
        pytest.param("issue_token", '{"expires_in": NaN}', "expires_in", id="expires-nan"),
        pytest.param("issue_token", '{"expires_in": 1e999}', "expires_in", id="expires-infinity"),
        pytest.param("issue_token", '{"expires_in": 4e9}', "expires_in", id="expires-over-cap"),
        pytest.param("issue_token", '{"expires_in": "60"}', "expires_in", id="expires-string"),
        pytest.param("issue_token", '{"scopes": {"whatsapp_business_messaging": 1}}', "scopes", id="scopes-object"),
        pytest.param("issue_token", '{"scopes": [1]}', "scopes", id="scopes-number"),
        pytest.param("issue_token", '{"allowed_wabas": "102000000000001"}', "allowed_wabas", id="wabas-string"),
        pytest.param("issue_token", '{"allowed_phone_numbers": [true]}', "allowed_phone_numbers", id="phones-bool"),
        pytest.param("issue_token", '{"value": "EAA\\tspace"}', "value", id="value-tab"),
        pytest.param("issue_token", '{"name": 5}', "name", id="name-number"),
        pytest.param("set_token_state", '{"token": ["tok_1"], "state": "expired"}', "token", id="token-list"),
        pytest.param("set_number_state", '{"phone_number_id": 109000000000001, "state": "ok"}', "phone_number_id", id="phone-number"),
        pytest.param("advance", '{"seconds": 4e9}', "seconds", id="advance-over-cap"),
    ],
)  # fmt: skip
def test_admin_rejects_bad_values_by_name(wa_sandbox, http, operation, raw, named):
    """A bad admin argument answers 400 naming it, and changes nothing."""
    before = http.get("/_sandbox/").json()
    answer = _admin(http, operation, raw)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert named in error["message"]
    assert error["operation"] == operation
    after = http.get("/_sandbox/").json()
    assert (after["faults"], after["limits"], len(after["tokens"])) == (
        before["faults"],
        before["limits"],
        len(before["tokens"]),
    )


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        pytest.param("advance", {"seconds": 1}, id="advance"),
        pytest.param("set_token_state", {"token": "tok_1", "state": "expired"}, id="set_token_state"),
        pytest.param("set_account_state", {"state": "locked"}, id="set_account_state"),
        pytest.param("set_number_state", {"phone_number_id": "109000000000001", "state": "not_registered"}, id="set_number_state"),
        pytest.param("issue_token", {}, id="issue_token"),
        pytest.param("set_limits", {}, id="set_limits"),
        pytest.param("set_faults", {}, id="set_faults"),
        pytest.param("reset", {}, id="reset"),
    ],
)  # fmt: skip
def test_admin_rejects_unknown_keys_by_name(wa_sandbox, http, operation, body):
    """Every admin operation refuses a key it does not take, naming it, and does nothing."""
    before = http.get("/_sandbox/").json()
    answer = http.post(f"/_sandbox/{operation}", json={**body, "bogus_key": 2})
    assert answer.status_code == 400, answer.text
    assert "'bogus_key'" in answer.json()["error"]["message"]
    after = http.get("/_sandbox/").json()
    assert {k: v for k, v in after.items() if k != "now"} == {
        k: v for k, v in before.items() if k != "now"
    }


def test_admin_rejects_a_body_that_is_not_json(wa_sandbox, http):
    """A body that is not JSON answers 400 saying so."""
    answer = _admin(http, "set_faults", "{latency: 1}")
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]["message"]


def test_clock_cannot_jump_past_what_it_can_render(wa_sandbox, http):
    """A clock jump beyond the year 3000 is refused, so expiry messages stay renderable."""
    for _ in range(12):
        if _admin(http, "advance", '{"seconds": 3.1e9}').status_code != 200:
            break
    else:
        pytest.fail("the clock jumped past the year 3000")
    token = wa_sandbox.issue_token(expires_in=1)
    wa_sandbox.set_token_state(token, "expired")
    body = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "x"}}
    answer = http.post(
        f"/v23.0/{wa_sandbox.phone_number_id}/messages",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.json()["error"]["code"] == 190


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda sb: sb.set_faults(latency=float("inf")), id="latency-inf"),
        pytest.param(lambda sb: sb.set_faults(latency_jitter=float("nan")), id="jitter-nan"),
        pytest.param(lambda sb: sb.set_faults(error_codes="12"), id="codes-string"),
        pytest.param(lambda sb: sb.set_faults(error_codes=[True]), id="codes-bool"),
        pytest.param(lambda sb: sb.set_faults(drop_after_accept="no"), id="flag-string"),
        pytest.param(lambda sb: sb.set_limits(pair_window=float("inf")), id="window-inf"),
        pytest.param(lambda sb: sb.set_limits(app_window="60"), id="window-string"),
        pytest.param(lambda sb: sb.issue_token(expires_in=float("nan")), id="expires-nan"),
        pytest.param(lambda sb: sb.issue_token(expires_in=float("inf")), id="expires-inf"),
        pytest.param(lambda sb: sb.issue_token(scopes="whatsapp_business_messaging"), id="scopes-string"),
        pytest.param(lambda sb: sb.issue_token(allowed_wabas="102000000000001"), id="wabas-string"),
        pytest.param(lambda sb: sb.set_number_state(109000000000001, "ok"), id="phone-int"),
        pytest.param(lambda sb: sb.set_token_state(["tok_1"], "expired"), id="token-list"),
        pytest.param(lambda sb: sb.advance(4e9), id="advance-over-cap"),
    ],
)  # fmt: skip
def test_python_api_rejects_the_same_values(wa_sandbox, call):
    """The Python setters refuse the same values with a ValueError."""
    with pytest.raises(ValueError):
        call(wa_sandbox)


def test_an_infinite_pair_window_no_longer_breaks_the_answer(wa_sandbox, http):
    """The pair-limit window is refused if infinite, instead of crashing the 131056 answer."""
    with pytest.raises(ValueError, match="pair_window"):
        wa_sandbox.set_limits(pair_limit=1, pair_window=float("inf"))
    assert wa_sandbox.info()["limits"]["pair_window"] == 6.0


# --- close() and the latency fault -----------------------------------------------------------


def test_close_ends_a_latency_wait_at_once():
    """close() returns while a request still waits out a long injected latency."""
    sb = Sandbox(seed=1).start()
    sb.set_faults(latency=600)
    token = sb.demo_tokens()["system_user"]
    outcome = []

    def send():
        body = {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "x"}}
        try:
            httpx.post(
                f"{sb.base_url}/v23.0/{sb.phone_number_id}/messages",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
        except httpx.TransportError as exc:
            outcome.append(exc)

    client = threading.Thread(target=send, daemon=True)
    client.start()
    for _ in range(600):
        if sb.requests():
            break
        time.sleep(0.05)
    assert sb.requests(), "the request never reached the sandbox"
    closer = threading.Thread(target=sb.close, daemon=True)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive(), "close() is still waiting for the latency"
    client.join(timeout=30)
    assert len(outcome) == 1  # the waiting client sees its connection end


# --- request framing ---------------------------------------------------------------------------


def _raw(sb, head, body=b""):
    """Send raw bytes and return the answer's status line and JSON body."""
    host, port = sb.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        conn.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head_part, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head_part.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(head_part.split(b" ")[1]), json.loads(rest)


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n", 400, "not hexadecimal", id="non-hex-size"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n", 400, "not hexadecimal", id="negative-size"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n", 400, "not followed by CRLF", id="no-crlf-after-chunk"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"5" * 5000 + b"\r\n", 400, "too long", id="size-line-too-long"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", b"8000000\r\n", 413, "too large", id="chunk-too-large"),
        pytest.param(b"Content-Length: abc\r\n", b"", 400, "Content-Length", id="length-not-a-number"),
        pytest.param(b"Content-Length: -5\r\n", b"", 400, "Content-Length", id="length-negative"),
        pytest.param(b"Content-Length: 99999999999\r\n", b"", 413, "too large", id="length-too-large"),
    ],
)  # fmt: skip
def test_malformed_bodies_get_400_and_oversized_ones_413(
    wa_sandbox, headers, body, status, message
):
    """Bad framing answers 400 and a body over the cap 413, each naming the problem."""
    head = (
        (
            f"POST /v23.0/{wa_sandbox.phone_number_id}/messages HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
        ).encode()
        + headers
        + b"\r\n"
    )
    got_status, answer = _raw(wa_sandbox, head, body)
    assert (got_status, message in answer["error"]["message"]) == (status, True)


def test_a_well_framed_chunked_send_still_works(wa_sandbox):
    """A valid chunked body (with a chunk extension and a trailer) is read whole."""
    token = wa_sandbox.demo_tokens()["system_user"]
    payload = json.dumps(
        {"messaging_product": "whatsapp", "to": TO, "type": "text", "text": {"body": "hi"}}
    ).encode()
    half = len(payload) // 2
    body = b"".join(
        [
            f"{half:x};ext=1\r\n".encode(),
            payload[:half],
            b"\r\n",
            f"{len(payload) - half:X}\r\n".encode(),
            payload[half:],
            b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
        ]
    )
    head = (
        f"POST /v23.0/{wa_sandbox.phone_number_id}/messages HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    ).encode()
    status, answer = _raw(wa_sandbox, head, body)
    assert status == 200
    assert answer["messages"][0]["id"].startswith("wamid.")


# --- message bodies Meta rejects ----------------------------------------------------------------

LONG = "x" * 4097


def _msg(kind, payload, **top):
    return {"messaging_product": "whatsapp", "to": TO, "type": kind, kind: payload, **top}


def _button(i):
    return {"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}}


@pytest.mark.parametrize(
    ("body", "code", "message", "details"),
    [
        pytest.param(_msg("text", {"body": 5}), 100, "(#100) Param text['body'] must be a string.", None, id="text-body-number"),
        pytest.param(_msg("text", {"body": ""}), 100, "(#100) The parameter text['body'] is required.", None, id="text-body-empty"),
        pytest.param(_msg("text", {}), 100, "(#100) The parameter text['body'] is required.", None, id="text-body-missing"),
        pytest.param(_msg("text", {"body": LONG}), 100, "(#100) Param text['body'] must be at most 4096 characters long.", None, id="text-too-long"),
        pytest.param(_msg("text", {"body": "x", "preview_url": "yes"}), 100, "(#100) Param text['preview_url'] must be a boolean.", None, id="preview-url-string"),
        pytest.param(_msg("text", "hello"), 100, "(#100) Param text must be an object.", None, id="text-not-object"),
        pytest.param({**_msg("text", {"body": "x"}), "type": ["text"]}, 100, "(#100) Param type must be a string.", None, id="type-list"),
        pytest.param({**_msg("text", {"body": "x"}), "to": 15551234567}, 100, "(#100) Param to must be a string.", None, id="to-number"),
        pytest.param(_msg("text", {"body": "x"}, biz_opaque_callback_data=5), 100, "(#100) Param biz_opaque_callback_data must be a string.", None, id="callback-data-number"),
        pytest.param(_msg("text", {"body": "x"}, biz_opaque_callback_data="k" * 513), 100, "(#100) Param biz_opaque_callback_data must be at most 512 characters long.", None, id="callback-data-too-long"),
        pytest.param(_msg("text", {"body": "x"}, context={"message_id": 5}), 100, "(#100) Param context['message_id'] must be a string.", None, id="context-id-number"),
        pytest.param(_msg("template", {"name": 5, "language": {"code": "en_US"}}), 100, "(#100) Param template['name'] must be a string.", None, id="template-name-number"),
        pytest.param(_msg("template", {"name": "hello_world", "language": "en_US"}), 100, "(#100) Param template['language'] must be an object.", None, id="template-language-string"),
        pytest.param(_msg("template", {"name": "hello_world", "language": {}}), 100, "(#100) The parameter template['language']['code'] is required.", None, id="template-code-missing"),
        pytest.param(_msg("template", {"name": "hello_world", "language": {"code": "en_US"}, "components": {"type": "body"}}), 100, "(#100) Param template['components'] must be an array.", None, id="components-object"),
        pytest.param(_msg("template", {"name": "order_update", "language": {"code": "en_US"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": 5}]}]}), 100, "(#100) Param template['components'][0]['parameters'][0]['text'] must be a string.", None, id="template-parameter-number"),
        pytest.param(_msg("image", {"id": 5}), 100, "(#100) Param image['id'] must be a string.", None, id="image-id-number"),
        pytest.param(_msg("image", {}), 131008, "(#131008) Required parameter is missing", "Either image['id'] or image['link'] is required", id="image-no-source"),
        pytest.param(_msg("image", {"id": "1", "caption": 5}), 100, "(#100) Param image['caption'] must be a string.", None, id="caption-number"),
        pytest.param(_msg("document", {"id": "1", "filename": 5}), 100, "(#100) Param document['filename'] must be a string.", None, id="filename-number"),
        pytest.param(_msg("interactive", {"type": "button", "body": {"text": "x"}, "action": {"buttons": [_button(i) for i in range(4)]}}), 131009, "(#131009) Parameter value is not valid", "Invalid buttons count. Min allowed buttons: 1, Max allowed buttons: 3", id="four-buttons"),
        pytest.param(_msg("interactive", {"type": "button", "body": {"text": 5}, "action": {"buttons": [_button(1)]}}), 100, "(#100) Param interactive['body']['text'] must be a string.", None, id="interactive-body-number"),
        pytest.param(_msg("interactive", {"type": "button", "body": {"text": "x"}}), 100, "(#100) The parameter interactive['action'] is required.", None, id="interactive-no-action"),
        pytest.param(_msg("interactive", {"type": "list", "body": {"text": "x"}, "action": {"button": "Go", "sections": [{"rows": [{"id": "r", "title": 5}]}]}}), 100, "(#100) Param interactive['action']['sections'][0]['rows'][0]['title'] must be a string.", None, id="list-row-title-number"),
        pytest.param(_msg("reaction", {"message_id": "wamid.X", "emoji": 5}), 100, "(#100) Param reaction['emoji'] must be a string.", None, id="emoji-number"),
        pytest.param(_msg("reaction", {"emoji": "x"}), 100, "(#100) The parameter reaction['message_id'] is required.", None, id="reaction-no-id"),
        pytest.param(_msg("location", {"latitude": "1", "longitude": 2}), 100, "(#100) Param location['latitude'] must be a number.", None, id="latitude-string"),
        pytest.param(_msg("location", {"latitude": True, "longitude": 2}), 100, "(#100) Param location['latitude'] must be a number.", None, id="latitude-bool"),
        pytest.param(_msg("location", {"latitude": 91, "longitude": 2}), 131009, "(#131009) Parameter value is not valid", "Param location['latitude'] must be between -90 and 90.", id="latitude-out-of-range"),
        pytest.param(_msg("contacts", {"name": {"formatted_name": "A"}}), 100, "(#100) Param contacts must be an array.", None, id="contacts-object"),
        pytest.param(_msg("contacts", [{"name": {"formatted_name": 5}}]), 100, "(#100) Param contacts[0]['name']['formatted_name'] must be a string.", None, id="contact-name-number"),
        pytest.param({"messaging_product": "whatsapp", "status": "read", "message_id": 5}, 100, "(#100) Param message_id must be a string.", None, id="read-id-number"),
    ],
)  # fmt: skip
def test_sends_meta_rejects_get_its_literal_answer(wa_sandbox, http, body, code, message, details):
    """A field of the wrong type, missing, too long or out of range gets Meta's answer."""
    token = wa_sandbox.issue_token()
    answer = http.post(
        f"/v23.0/{wa_sandbox.phone_number_id}/messages",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )
    error = answer.json()["error"]
    assert (answer.status_code, error["code"], error["message"]) == (400, code, message)
    assert error["type"] == "OAuthException"
    if details is not None:
        assert error["error_data"] == {"messaging_product": "whatsapp", "details": details}
    assert wa_sandbox.messages() == ()
    assert wa_sandbox.requests()[-1].outcome == "error"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_msg("text", {"body": "hi", "preview_url": True}, recipient_type="individual"), id="text"),
        pytest.param(_msg("template", {"name": "order_update", "language": {"code": "en_US"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "A1"}]}]}), id="template"),
        pytest.param(_msg("image", {"link": "https://example.com/a.jpg", "caption": "c"}), id="image"),
        pytest.param(_msg("document", {"id": "1", "filename": "a.pdf"}), id="document"),
        pytest.param(_msg("sticker", {"id": "1"}), id="sticker"),
        pytest.param(_msg("interactive", {"type": "button", "body": {"text": "x"}, "action": {"buttons": [_button(1), _button(2)]}}), id="buttons"),
        pytest.param(_msg("interactive", {"type": "list", "body": {"text": "x"}, "action": {"button": "Go", "sections": [{"title": "S", "rows": [{"id": "r", "title": "R", "description": "d"}]}]}}), id="list"),
        pytest.param(_msg("reaction", {"message_id": "wamid.X", "emoji": ""}), id="reaction-removed"),
        pytest.param(_msg("location", {"latitude": -33.9, "longitude": 151.2, "name": "N"}), id="location"),
        pytest.param(_msg("contacts", [{"name": {"formatted_name": "Ada"}, "phones": [{"phone": "+1555"}]}]), id="contacts-array"),
        pytest.param(_msg("text", {"body": "x"}, context={"message_id": "wamid.Y"}, biz_opaque_callback_data="k"), id="reply-with-key"),
    ],
)  # fmt: skip
def test_sends_meta_accepts_are_accepted(wa_sandbox, http, body):
    """Every message type in Meta's shape is accepted, contacts as a list included."""
    answer = http.post(
        f"/v23.0/{wa_sandbox.phone_number_id}/messages",
        json=body,
        headers={"Authorization": f"Bearer {wa_sandbox.issue_token()}"},
    )
    assert answer.status_code == 200, answer.text
    assert len(wa_sandbox.messages()) == 1


def test_a_body_with_a_nan_is_not_json(wa_sandbox, http):
    """`NaN` is not JSON: a send carrying one is rejected, as a strict parser rejects it."""
    raw = json.dumps(_msg("location", {"latitude": float("nan"), "longitude": 1.0}))
    answer = http.post(
        f"/v23.0/{wa_sandbox.phone_number_id}/messages",
        content=raw,
        headers={
            "Authorization": f"Bearer {wa_sandbox.issue_token()}",
            "Content-Type": "application/json",
        },
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, 100)
    assert wa_sandbox.messages() == ()


def test_a_negative_paging_cursor_is_refused(wa_sandbox, http):
    """A cursor that decodes to a negative index is a bad cursor, not a page from the end."""
    import base64

    cursor = base64.urlsafe_b64encode(b"idx:-3").decode().rstrip("=")
    answer = http.get(
        f"/v23.0/{wa_sandbox.business_account_id}/message_templates",
        params={"after": cursor},
        headers={"Authorization": f"Bearer {wa_sandbox.issue_token()}"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, 100)
