"""Seeded faults and probe-visible states (issue #11): "fail the next N sends with this code",
scoped by phone number and recipient, with Meta's literal payloads, Retry-After and usage
headers; and account and number states a probe reads from the phone number's `status` and
`health_status` fields. Raw httpx over loopback, plus the classifier as the guard will see it."""

from __future__ import annotations

import json

import httpx
import pytest

from wa_auth import testing
from wa_auth.errors import from_response
from wa_auth.models import Usage
from wa_auth.sandbox import SEEDED_FAULTS, SeededFault

wa_sandbox_server = testing.wa_sandbox_server
wa_sandbox = testing.wa_sandbox

TO = "+15551234567"
OTHER = "+15550000000"


@pytest.fixture
def http(wa_sandbox):
    with httpx.Client(base_url=wa_sandbox.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def auth(wa_sandbox):
    return {"Authorization": f"Bearer {wa_sandbox.issue_token()}"}


def _text(to=TO):
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}


def _template(name="order_update", language="en_US"):
    return {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "template",
        "template": {"name": name, "language": {"code": language}},
    }


def _send(http, sb, auth, body=None, phone=None):
    phone = phone or sb.phone_number_id
    return http.post(f"/v23.0/{phone}/messages", json=body or _text(), headers=auth)


# --- "fail twice, then deliver" ------------------------------------------------------------


def test_fail_twice_then_deliver(wa_sandbox, http, auth):
    """A fault seeded for two sends answers exactly two, then the sandbox delivers again."""
    fault = wa_sandbox.fail_next(130429, times=2)
    assert isinstance(fault, SeededFault)
    assert (fault.id, fault.remaining, fault.retry_after) == ("fault_1", 2, 1)
    answers = [_send(http, wa_sandbox, auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 200]
    assert [a.json()["error"]["code"] for a in answers[:2]] == [130429, 130429]
    assert [a.headers.get("Retry-After") for a in answers] == ["1", "1", None]
    records = wa_sandbox.requests()
    assert [(r.outcome, r.code, r.fault_id) for r in records] == [
        ("fault", 130429, "fault_1"),
        ("fault", 130429, "fault_1"),
        ("accepted", None, None),
    ]
    assert records[0].to_dict()["fault_id"] == "fault_1"
    assert len(wa_sandbox.messages()) == 1
    assert wa_sandbox.seeded_faults() == ()


def test_remaining_counts_down(wa_sandbox, http, auth):
    """seeded_faults() shows what is left of each fault, oldest first."""
    wa_sandbox.fail_next(131000, times=3)
    wa_sandbox.fail_next(131016)
    _send(http, wa_sandbox, auth)
    assert [(f.code, f.remaining) for f in wa_sandbox.seeded_faults()] == [(131000, 2), (131016, 1)]


# --- Meta's literal payloads ----------------------------------------------------------------

# code: (HTTP status, message, the category wa_auth's classifier must give it)
PAYLOADS = {
    1: (500, "An unknown error occurred", "transient"),
    2: (503, "An unexpected error has occurred. Please retry your request later.", "transient"),
    4: (400, "(#4) Application request limit reached", "rate_limited"),
    80007: (400, "(#80007) Rate limit issues", "rate_limited"),
    130429: (400, "(#130429) Rate limit hit", "rate_limited"),
    131000: (500, "(#131000) Something went wrong", "transient"),
    131008: (400, "(#131008) Required parameter is missing", "invalid_request"),
    131009: (400, "(#131009) Parameter value is not valid", "invalid_request"),
    131016: (503, "(#131016) Service unavailable", "transient"),
    131026: (400, "(#131026) Message Undeliverable", "invalid_request"),
    131047: (400, "(#131047) Re-engagement message", "invalid_request"),
    131048: (400, "(#131048) Spam rate limit hit", "rate_limited"),
    131049: (400, "(#131049) This message was not delivered to maintain healthy ecosystem engagement.", "rate_limited"),
    131056: (400, "(#131056) (Business Account, Consumer Account) pair rate limit hit", "rate_limited"),
    132000: (400, "(#132000) Number of parameters does not match the expected number of params", "invalid_request"),
    132001: (404, "(#132001) Template name does not exist in the translation", "invalid_request"),
}  # fmt: skip


def test_every_seeded_code_has_a_payload_here():
    """The table below covers every code fail_next takes."""
    assert sorted(c for c in SEEDED_FAULTS if isinstance(c, int)) == sorted(PAYLOADS)
    assert [c for c in SEEDED_FAULTS if isinstance(c, str)] == [
        "drop",
        "drop_after_accept",
        "html_502",
    ]


@pytest.mark.parametrize("code", sorted(PAYLOADS), ids=str)
def test_seeded_code_answers_metas_payload(wa_sandbox, http, auth, code):
    """Each seeded code answers its status, `(#code) title` message and headers."""
    status, message, _ = PAYLOADS[code]
    wa_sandbox.fail_next(code)
    answer = _send(http, wa_sandbox, auth, _template())
    error = answer.json()["error"]
    assert (answer.status_code, error["code"], error["message"]) == (status, code, message)
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]
    if code >= 80007:
        assert error["error_data"]["messaging_product"] == "whatsapp"
        assert error["error_data"]["details"]
    retry_after = {130429: "1", 131056: "6"}.get(code)
    assert answer.headers.get("Retry-After") == retry_after
    assert ("X-Business-Use-Case-Usage" in answer.headers) == (code == 80007)
    assert wa_sandbox.messages() == ()


@pytest.mark.parametrize("code", sorted(PAYLOADS), ids=str)
def test_seeded_code_is_classified_as_the_policy_expects(wa_sandbox, http, auth, code):
    """wa_auth's classifier reads each seeded answer into the category the guard branches on."""
    wa_sandbox.fail_next(code)
    answer = _send(http, wa_sandbox, auth, _template())
    error = from_response(answer.status_code, answer.content, answer.headers)
    assert (error.code, error.category) == (code, PAYLOADS[code][2])


def test_132001_names_the_template_and_language(wa_sandbox, http, auth):
    """A seeded 132001 names the template and language the send asked for."""
    wa_sandbox.fail_next(132001)
    error = _send(http, wa_sandbox, auth, _template("spring_sale", "pt_BR")).json()["error"]
    assert error["error_data"]["details"] == "template name (spring_sale) does not exist in pt_BR"


def test_template_only_codes_pass_other_sends_by(wa_sandbox, http, auth):
    """A 132000/132001 fault waits for a template send; a text send passes."""
    wa_sandbox.fail_next(132001)
    assert _send(http, wa_sandbox, auth).status_code == 200
    assert _send(http, wa_sandbox, auth, _template()).status_code == 404


def test_80007_reports_when_access_returns(wa_sandbox, http, auth):
    """An 80007 carries X-Business-Use-Case-Usage with estimated_time_to_regain_access."""
    wa_sandbox.fail_next(80007, regain_access_minutes=19)
    answer = _send(http, wa_sandbox, auth)
    usage = json.loads(answer.headers["X-Business-Use-Case-Usage"])
    (entry,) = usage[wa_sandbox.business_account_id]
    assert (entry["estimated_time_to_regain_access"], entry["call_count"]) == (19, 100)
    assert Usage.from_headers(answer.headers).regain_access_seconds == 19 * 60
    assert from_response(answer.status_code, answer.content, answer.headers).retry_after == 1140


@pytest.mark.parametrize(
    ("code", "kw", "header"),
    [
        pytest.param(130429, {"retry_after": 30}, "30", id="130429-30s"),
        pytest.param(131056, {"retry_after": 0}, "0", id="131056-now"),
        pytest.param(130429, {"retry_after_header": False}, None, id="130429-none"),
        pytest.param(131056, {"retry_after_header": False}, None, id="131056-none"),
    ],
)
def test_retry_after_can_be_set_or_left_out(wa_sandbox, http, auth, code, kw, header):
    """A 130429/131056 carries the Retry-After asked for, or none."""
    fault = wa_sandbox.fail_next(code, **kw)
    assert fault.retry_after == (None if header is None else int(header))
    assert _send(http, wa_sandbox, auth).headers.get("Retry-After") == header


# --- scope: phone number, recipient, endpoint -----------------------------------------------


def test_a_fault_is_scoped_to_its_phone_number(wa_sandbox, http, auth):
    """A fault for one number leaves the other number's sends alone."""
    first, second = wa_sandbox.phone_number_ids
    wa_sandbox.fail_next(131048, phone_number_id=first)
    assert _send(http, wa_sandbox, auth, phone=second).status_code == 200
    answer = _send(http, wa_sandbox, auth, phone=first)
    assert answer.json()["error"]["code"] == 131048
    assert wa_sandbox.requests()[-1].phone_number_id == first


def test_a_pair_limit_is_scoped_to_its_recipient(wa_sandbox, http, auth):
    """A 131056 for one recipient fails every send to them until cleared; others pass."""
    wa_sandbox.fail_next(131056, recipient="15551234567", times=None)
    for _ in range(3):
        answer = _send(http, wa_sandbox, auth, _text(TO))
        assert (answer.json()["error"]["code"], answer.headers["Retry-After"]) == (131056, "6")
    assert _send(http, wa_sandbox, auth, _text(OTHER)).status_code == 200
    assert [(f.recipient, f.remaining) for f in wa_sandbox.seeded_faults()] == [
        ("15551234567", None)
    ]
    wa_sandbox.clear_seeded_faults()
    assert _send(http, wa_sandbox, auth, _text(TO)).status_code == 200


def test_a_fault_can_target_another_endpoint(wa_sandbox, http, auth):
    """A fault for get_phone_number fails the probe call once and leaves sends alone."""
    wa_sandbox.fail_next(131000, endpoint="get_phone_number")
    assert _send(http, wa_sandbox, auth).status_code == 200
    probe = http.get(f"/v23.0/{wa_sandbox.phone_number_id}", headers=auth)
    assert (probe.status_code, probe.json()["error"]["code"]) == (500, 131000)
    assert http.get(f"/v23.0/{wa_sandbox.phone_number_id}", headers=auth).status_code == 200
    wa_sandbox.fail_next(80007, endpoint="list_templates")
    templates = http.get(f"/v23.0/{wa_sandbox.business_account_id}/message_templates", headers=auth)
    assert templates.json()["error"]["code"] == 80007


def test_local_checks_come_first(wa_sandbox, http, auth):
    """A send Meta rejects on its own gets that rejection, and the fault stays for the next."""
    wa_sandbox.fail_next(130429)
    bad = {**_text(), "text": {"body": 5}}
    assert _send(http, wa_sandbox, auth, bad).json()["error"]["code"] == 100
    wa_sandbox.set_token_state(auth["Authorization"].split()[1], "expired")
    assert _send(http, wa_sandbox, auth).json()["error"]["code"] == 190
    assert [f.remaining for f in wa_sandbox.seeded_faults()] == [1]


def test_read_receipts_meet_no_send_fault(wa_sandbox, http, auth):
    """Marking a message as read is not a send: a send fault lets it through."""
    wa_sandbox.fail_next(131000)
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}
    assert _send(http, wa_sandbox, auth, read).json() == {"success": True}
    assert _send(http, wa_sandbox, auth).status_code == 500


# --- transport faults -------------------------------------------------------------------------


def test_drop_closes_the_connection_unanswered(wa_sandbox, http, auth):
    """A seeded drop closes the connection; nothing is delivered; the next send is."""
    wa_sandbox.fail_next("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        _send(http, wa_sandbox, auth)
    assert wa_sandbox.messages() == ()
    assert (wa_sandbox.requests()[-1].outcome, wa_sandbox.requests()[-1].fault_id) == (
        "dropped",
        "fault_1",
    )
    assert _send(http, wa_sandbox, auth).status_code == 200


def test_drop_after_accept_is_the_maybe_delivered_case(wa_sandbox, http, auth):
    """A seeded drop_after_accept records the message, then closes the connection."""
    wa_sandbox.fail_next("drop_after_accept")
    with pytest.raises(httpx.RemoteProtocolError):
        _send(http, wa_sandbox, auth, {**_text(), "biz_opaque_callback_data": "order-1"})
    (message,) = wa_sandbox.messages()
    assert message.idempotency_key == "order-1"
    assert wa_sandbox.requests()[-1].outcome == "dropped"


def test_html_502(wa_sandbox, http, auth):
    """A seeded html_502 answers a proxy's page once."""
    wa_sandbox.fail_next("html_502")
    answer = _send(http, wa_sandbox, auth)
    assert (answer.status_code, b"502 Bad Gateway" in answer.content) == (502, True)
    assert wa_sandbox.requests()[-1].outcome == "fault"


# --- the admin API -----------------------------------------------------------------------------


def test_admin_api_seeds_lists_and_clears_faults(wa_sandbox, http, auth):
    """POST fail_next, GET seeded_faults and POST clear_seeded_faults mirror the Python API."""
    seeded = http.post(
        "/_sandbox/fail_next",
        json={"code": 131056, "recipient": TO, "times": 2, "retry_after": 9},
    )
    assert seeded.status_code == 200, seeded.text
    assert seeded.json() == {
        "id": "fault_1",
        "code": 131056,
        "times": 2,
        "remaining": 2,
        "phone_number_id": None,
        "recipient": TO,
        "endpoint": "send_message",
        "retry_after": 9,
        "regain_access_minutes": None,
    }
    assert _send(http, wa_sandbox, auth).headers["Retry-After"] == "9"
    assert http.get("/_sandbox/seeded_faults").json()[0]["remaining"] == 1
    assert http.get("/_sandbox/").json()["seeded_faults"][0]["id"] == "fault_1"
    assert http.post("/_sandbox/fail_next", json={"code": "drop"}).status_code == 200
    assert http.post("/_sandbox/clear_seeded_faults").json() == {"seeded_faults": []}
    assert wa_sandbox.seeded_faults() == ()
    wa_sandbox.fail_next(131000)
    http.post("/_sandbox/reset")
    assert wa_sandbox.seeded_faults() == ()


@pytest.mark.parametrize(
    ("kw", "named"),
    [
        pytest.param({"code": 131031}, "code must be one of", id="state-code"),
        pytest.param({"code": "130429"}, "code must be one of", id="code-string"),
        pytest.param({"code": 130429.0}, "code must be one of", id="code-float"),
        pytest.param({"code": True}, "code must be one of", id="code-bool"),
        pytest.param({"code": 130429, "times": 0}, "times", id="times-zero"),
        pytest.param({"code": 130429, "times": True}, "times", id="times-bool"),
        pytest.param({"code": 130429, "times": 1.5}, "times", id="times-float"),
        pytest.param({"code": 130429, "phone_number_id": "1"}, "phone number id", id="phone-unknown"),
        pytest.param({"code": 130429, "phone_number_id": 109000000000001}, "phone_number_id", id="phone-int"),
        pytest.param({"code": 131056, "recipient": "abc"}, "recipient", id="recipient-bad"),
        pytest.param({"code": 131056, "recipient": 15551234567}, "recipient", id="recipient-int"),
        pytest.param({"code": 131000, "recipient": TO, "endpoint": "get_phone_number"}, "recipient", id="recipient-elsewhere"),
        pytest.param({"code": 131000, "endpoint": "debug_token"}, "endpoint", id="endpoint-unknown"),
        pytest.param({"code": 131000, "retry_after": 5}, "retry_after", id="retry-after-elsewhere"),
        pytest.param({"code": 130429, "retry_after": -1}, "retry_after", id="retry-after-negative"),
        pytest.param({"code": 130429, "retry_after": 1.5}, "retry_after", id="retry-after-float"),
        pytest.param({"code": 130429, "retry_after_header": "no"}, "retry_after_header", id="header-string"),
        pytest.param({"code": 130429, "regain_access_minutes": 5}, "regain_access_minutes", id="regain-elsewhere"),
        pytest.param({"code": 80007, "regain_access_minutes": 10**9}, "regain_access_minutes", id="regain-huge"),
    ],
)  # fmt: skip
def test_bad_fault_arguments_are_refused_by_name(wa_sandbox, http, kw, named):
    """A bad fail_next argument raises ValueError from Python and answers 400 over JSON."""
    code = kw["code"]
    rest = {k: v for k, v in kw.items() if k != "code"}
    with pytest.raises(ValueError, match=named):
        wa_sandbox.fail_next(code, **rest)
    answer = http.post("/_sandbox/fail_next", json=kw)
    assert answer.status_code == 400
    assert named in answer.json()["error"]["message"]
    assert wa_sandbox.seeded_faults() == ()


def test_fail_next_refuses_unknown_keys(wa_sandbox, http):
    """The admin fail_next refuses a key it does not take, by name."""
    answer = http.post("/_sandbox/fail_next", json={"code": 130429, "count": 2})
    assert answer.status_code == 400
    assert "'count'" in answer.json()["error"]["message"]
    missing = http.post("/_sandbox/fail_next", json={"times": 2})
    assert "'code'" in missing.json()["error"]["message"]


# --- states a probe sees -------------------------------------------------------------------------


def _probe(http, sb, auth, phone=None):
    answer = http.get(
        f"/v23.0/{phone or sb.phone_number_id}",
        params={"fields": "status,health_status,quality_rating"},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _entity(health, kind):
    return next(e for e in health["entities"] if e["entity_type"] == kind)


def test_a_healthy_number_is_available(wa_sandbox, http, auth):
    """A healthy number is CONNECTED, and every entity of its health_status AVAILABLE."""
    data = _probe(http, wa_sandbox, auth)
    assert set(data) == {"id", "status", "health_status", "quality_rating"}
    assert (data["status"], data["quality_rating"]) == ("CONNECTED", "GREEN")
    health = data["health_status"]
    assert health["can_send_message"] == "AVAILABLE"
    assert [e["entity_type"] for e in health["entities"]] == [
        "PHONE_NUMBER",
        "WABA",
        "BUSINESS",
        "APP",
    ]
    assert {e["can_send_message"] for e in health["entities"]} == {"AVAILABLE"}
    assert _entity(health, "PHONE_NUMBER")["id"] == wa_sandbox.phone_number_id


@pytest.mark.parametrize(
    ("state", "variant", "code"),
    [
        pytest.param("locked", None, 131031, id="locked"),
        pytest.param("restricted", None, 368, id="restricted"),
        pytest.param("restricted", "code_130497", 130497, id="restricted-130497"),
        pytest.param("payment_issue", None, 131042, id="payment-issue"),
        pytest.param("maintenance", None, 131057, id="maintenance"),
    ],
)
def test_an_account_state_is_visible_to_the_probe_and_lifts(
    wa_sandbox, http, auth, state, variant, code
):
    """A blocked account shows as a BLOCKED WABA with the send's error, until it is ok again."""
    wa_sandbox.set_account_state(state, variant=variant)
    health = _probe(http, wa_sandbox, auth)["health_status"]
    assert health["can_send_message"] == "BLOCKED"
    (error,) = _entity(health, "WABA")["errors"]
    sent = _send(http, wa_sandbox, auth).json()["error"]
    assert error["error_code"] == sent["code"] == code
    assert error["error_description"] == sent["error_data"]["details"]
    assert error["possible_solution"]
    assert _entity(health, "PHONE_NUMBER")["can_send_message"] == "AVAILABLE"
    waba = http.get(
        f"/v23.0/{wa_sandbox.business_account_id}", params={"fields": "health_status"}, headers=auth
    ).json()
    assert waba["health_status"]["can_send_message"] == "BLOCKED"
    wa_sandbox.set_account_state("ok")
    assert _probe(http, wa_sandbox, auth)["health_status"]["can_send_message"] == "AVAILABLE"
    assert _send(http, wa_sandbox, auth).status_code == 200


def test_a_restricted_number_is_visible_to_the_probe_and_lifts(wa_sandbox, http, auth):
    """A restricted number is RESTRICTED and RED, its sends get 131048, until it is ok again."""
    first, second = wa_sandbox.phone_number_ids
    wa_sandbox.set_number_state(first, "restricted")
    data = _probe(http, wa_sandbox, auth, first)
    assert (data["status"], data["quality_rating"]) == ("RESTRICTED", "RED")
    (error,) = _entity(data["health_status"], "PHONE_NUMBER")["errors"]
    assert error["error_code"] == 131048
    assert data["health_status"]["can_send_message"] == "BLOCKED"
    assert _send(http, wa_sandbox, auth, phone=first).json()["error"]["code"] == 131048
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}
    assert _send(http, wa_sandbox, auth, read, phone=first).status_code == 200
    assert _probe(http, wa_sandbox, auth, second)["status"] == "CONNECTED"
    assert _send(http, wa_sandbox, auth, phone=second).status_code == 200
    wa_sandbox.set_number_state(first, "ok")
    data = _probe(http, wa_sandbox, auth, first)
    assert (data["status"], data["health_status"]["can_send_message"]) == ("CONNECTED", "AVAILABLE")
    assert _send(http, wa_sandbox, auth, phone=first).status_code == 200


def test_an_unregistered_number_is_pending(wa_sandbox, http, auth):
    """An unregistered number is PENDING, BLOCKED with 133010."""
    wa_sandbox.set_number_state(wa_sandbox.phone_number_id, "not_registered")
    data = _probe(http, wa_sandbox, auth)
    assert data["status"] == "PENDING"
    (error,) = _entity(data["health_status"], "PHONE_NUMBER")["errors"]
    assert error["error_code"] == 133010


def test_a_seeded_fault_does_not_change_what_the_probe_sees(wa_sandbox, http, auth):
    """Seeded faults answer sends only: the number still reads as available."""
    wa_sandbox.fail_next(131048, times=None)
    assert _send(http, wa_sandbox, auth).json()["error"]["code"] == 131048
    assert _probe(http, wa_sandbox, auth)["health_status"]["can_send_message"] == "AVAILABLE"


def test_fields_are_cut_as_graph_cuts_them(wa_sandbox, http, auth):
    """`fields` picks what is answered (and the id); an unknown field is Graph's error 100."""
    phone = wa_sandbox.phone_number_id
    just = http.get(f"/v23.0/{phone}", params={"fields": "verified_name"}, headers=auth).json()
    assert just == {"id": phone, "verified_name": "wa_auth Sandbox"}
    everything = http.get(f"/v23.0/{phone}", headers=auth).json()
    assert {"status", "health_status", "display_phone_number"} <= set(everything)
    bogus = http.get(f"/v23.0/{phone}", params={"fields": "status,bogus"}, headers=auth)
    message = "(#100) Tried accessing nonexisting field (bogus) on node type (WhatsAppBusinessPhoneNumber)"
    assert (bogus.status_code, bogus.json()["error"]["message"]) == (400, message)
    listed = http.get(
        f"/v23.0/{wa_sandbox.business_account_id}/phone_numbers",
        params={"fields": "status", "limit": 1},
        headers=auth,
    ).json()
    assert listed["data"] == [{"id": wa_sandbox.phone_number_ids[0], "status": "CONNECTED"}]
    following = http.get(listed["paging"]["next"], headers=auth).json()
    assert following["data"] == [{"id": wa_sandbox.phone_number_ids[1], "status": "CONNECTED"}]
