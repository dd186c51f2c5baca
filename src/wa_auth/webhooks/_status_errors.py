"""`status_errors`: every error of a webhook payload, classified like a synchronous one.

A send can be accepted (HTTP 200 and a wamid) and fail later: the failure arrives in a status
webhook. `status_errors` walks a payload and yields each error, classified by
`wa_auth.errors.from_webhook_error`, with the message id and the echoed idempotency key. It
predates `parse` (which yields every event, errors included) and stays for the errors alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from wa_auth.errors import ApiError, from_webhook_error

__all__ = ["StatusError", "status_errors"]


@attrs.frozen
class StatusError:
    """One error found in a webhook payload."""

    error: ApiError = attrs.field(eq=False)
    #: The wamid of the failed message; None for account-level `value.errors[]`.
    message_id: str | None = None
    #: The status the error came with (`"failed"`), when it came in a status.
    status: str | None = None
    recipient_id: str | None = None
    #: The `biz_opaque_callback_data` Meta echoed: the idempotency key of the send.
    idempotency_key: str | None = None
    phone_number_id: str | None = None
    business_account_id: str | None = None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def status_errors(payload: Mapping[str, Any] | Any) -> Iterator[StatusError]:
    """Yield every `statuses[].errors[]` and `value.errors[]` of a webhook payload, classified.

    Anything that is not the expected shape is skipped, never raised: a webhook handler must
    not fail on a payload it does not understand.
    """
    if not isinstance(payload, Mapping):
        return
    for entry in _list(payload.get("entry")):
        if not isinstance(entry, Mapping):
            continue
        waba = _str(entry.get("id"))
        for change in _list(entry.get("changes")):
            value = change.get("value") if isinstance(change, Mapping) else None
            if not isinstance(value, Mapping):
                continue
            metadata = value.get("metadata")
            phone = _str(metadata.get("phone_number_id")) if isinstance(metadata, Mapping) else None
            for status in _list(value.get("statuses")):
                if not isinstance(status, Mapping):
                    continue
                for err in _list(status.get("errors")):
                    yield StatusError(
                        error=from_webhook_error(err),
                        message_id=_str(status.get("id")),
                        status=_str(status.get("status")),
                        recipient_id=_str(status.get("recipient_id")),
                        idempotency_key=_str(status.get("biz_opaque_callback_data")),
                        phone_number_id=phone,
                        business_account_id=waba,
                    )
            for err in _list(value.get("errors")):
                yield StatusError(
                    error=from_webhook_error(err),
                    phone_number_id=phone,
                    business_account_id=waba,
                )
