"""`wa_auth.webhooks.status_errors` over real webhook payload shapes."""

from __future__ import annotations

import copy

import pytest

from wa_auth.errors import AccountStateError, ApiError, InvalidRequestError, TransientError
from wa_auth.webhooks import StatusError, status_errors

WABA = "102290129340398"
PHONE = "106540352242922"


def _payload(value: dict) -> dict:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15551536665", "phone_number_id": PHONE},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"value": value, "field": "messages"}]}],
    }


# https://github.com/restfb/restfb/issues/1344 (131026, v16+ error object with message and details)
RESTFB_131026 = _payload(
    {
        "statuses": [
            {
                "id": "wamid.HBgLMzI0NzY3NTUzNzYVAgARGBIzOTI2MzFGRjdBRjA4M0Y2RDQA",
                "status": "failed",
                "timestamp": "1698231447",
                "recipient_id": "32476755376",
                "errors": [
                    {
                        "code": 131026,
                        "title": "Receiver is incapable of receiving this message",
                        "message": "Receiver is incapable of receiving this message",
                        "error_data": {"details": "Message Undeliverable."},
                    }
                ],
            }
        ]
    }
)
# https://github.com/fbsamples/whatsapp-business-jaspers-market/issues/1 (131031, with href)
JASPERS_131031 = _payload(
    {
        "statuses": [
            {
                "id": "wamid.HBgMMjAxMjIyMzkwMTY1FQIAERgSRUVDRUNBMTI1QzhDMkUyMkMzAA==",
                "status": "failed",
                "timestamp": "1763399138",
                "recipient_id": "201222390165",
                "biz_opaque_callback_data": "order-42",
                "errors": [
                    {
                        "code": 131031,
                        "title": "Business Account locked",
                        "message": "Business Account locked",
                        "error_data": {"details": "Business account has been locked."},
                        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                    }
                ],
            }
        ]
    }
)
# https://github.com/fazer-ai/chatwoot/issues/439 (131053 with recipient_user_id, contacts)
FAZER_131053 = _payload(
    {
        "contacts": [{"wa_id": "5511999999999", "user_id": "US.1"}],
        "statuses": [
            {
                "id": "wamid.X",
                "status": "failed",
                "timestamp": "1788996859",
                "recipient_id": "5511999999999",
                "recipient_user_id": "US.1",
                "errors": [
                    {
                        "code": 131053,
                        "title": "Media upload error",
                        "message": "Media upload error",
                        "error_data": {"details": "Unsupported Voice mime type audio/opus."},
                    }
                ],
            }
        ],
    }
)
# value.errors[]: an error not tied to a message (e.g. 131000 on an incoming message webhook)
VALUE_ERRORS = _payload(
    {
        "errors": [
            {
                "code": 131000,
                "title": "Something went wrong",
                "message": "Something went wrong",
                "error_data": {"details": "Something went wrong"},
            }
        ]
    }
)


def test_status_error_classified_with_ids():
    """A failed status yields its classified error with wamid, status, recipient and ids."""
    (found,) = status_errors(RESTFB_131026)

    assert isinstance(found, StatusError)
    assert isinstance(found.error, InvalidRequestError)
    assert found.error.rule == "131026"
    assert found.error.details == "Message Undeliverable."
    assert found.message_id == "wamid.HBgLMzI0NzY3NTUzNzYVAgARGBIzOTI2MzFGRjdBRjA4M0Y2RDQA"
    assert (found.status, found.recipient_id) == ("failed", "32476755376")
    assert (found.phone_number_id, found.business_account_id) == (PHONE, WABA)
    assert found.idempotency_key is None


def test_idempotency_key_is_echoed():
    """biz_opaque_callback_data comes back as the idempotency key."""
    (found,) = status_errors(JASPERS_131031)

    assert isinstance(found.error, AccountStateError)
    assert found.idempotency_key == "order-42"


def test_media_error_with_extra_fields():
    """Unknown extra fields (recipient_user_id, contacts) are ignored."""
    (found,) = status_errors(FAZER_131053)

    assert found.error.code == 131053
    assert found.error.category == "invalid_request"


def test_value_errors_have_no_message_id():
    """value.errors[] yields account-level errors without a message id."""
    (found,) = status_errors(VALUE_ERRORS)

    assert isinstance(found.error, TransientError)
    assert found.message_id is None
    assert found.phone_number_id == PHONE


def test_many_entries_changes_statuses_and_errors():
    """Every error of every status of every change of every entry is yielded, in order."""
    payload = copy.deepcopy(RESTFB_131026)
    payload["entry"].append(copy.deepcopy(JASPERS_131031["entry"][0]))
    payload["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"].append(
        {"code": 131047, "title": "Re-engagement message"}
    )
    payload["entry"][0]["changes"].append(copy.deepcopy(VALUE_ERRORS["entry"][0]["changes"][0]))

    rules = [f.error.rule for f in status_errors(payload)]

    assert rules == ["131026", "131047", "131000", "131031"]


def test_successful_statuses_yield_nothing():
    """Delivered and read statuses, and message webhooks, have no errors."""
    payload = _payload(
        {
            "statuses": [
                {"id": "wamid.A", "status": "delivered", "timestamp": "1", "recipient_id": "1"},
                {"id": "wamid.B", "status": "read", "timestamp": "2", "recipient_id": "1"},
            ],
            "messages": [{"from": "1", "id": "wamid.C", "type": "text", "text": {"body": "hi"}}],
        }
    )

    assert list(status_errors(payload)) == []


@pytest.mark.parametrize(
    "payload",
    [
        None,
        17,
        "text",
        [],
        [RESTFB_131026],
        {},
        {"entry": None},
        {"entry": "x"},
        {"entry": [None, 1, "x"]},
        {"entry": [{"changes": "x"}]},
        {"entry": [{"changes": [None, {"value": None}, {"value": "x"}]}]},
        {"entry": [{"changes": [{"value": {"metadata": "x", "statuses": "x", "errors": "x"}}]}]},
        {
            "entry": [
                {
                    "changes": [
                        {"value": {"statuses": [None, 1, {"errors": "x"}, {"errors": [None]}]}}
                    ]
                }
            ]
        },
    ],
    ids=[
        "none",
        "int",
        "str",
        "list",
        "list-of-payloads",
        "empty",
        "entry-none",
        "entry-str",
        "entry-junk",
        "changes-str",
        "values-junk",
        "value-fields-junk",
        "statuses-junk",
    ],
)
def test_garbage_never_raises(payload):
    """Anything not shaped like a webhook yields nothing (or a classified error), never raises."""
    found = list(status_errors(payload))

    assert all(isinstance(f.error, ApiError) for f in found)


def test_error_object_garbage_still_classifies():
    """A junk error object inside errors[] is still yielded as a classified unknown error."""
    payload = _payload(
        {"statuses": [{"id": "wamid.A", "status": "failed", "errors": ["junk", {"code": "x"}]}]}
    )

    found = list(status_errors(payload))

    assert [f.error.category for f in found] == ["unknown", "unknown"]
