"""Seeded faults: "answer the next N matching requests with this", for tests that need a script.

A random fault (`Faults`) says how often; a seeded fault says exactly which requests: the next
*times* sends from one phone number (and, for 131056's pair limit, to one recipient) get
Meta's literal answer for *code*, then the sandbox delivers again. So a test can say "fail
twice with 130429, then deliver" and count the attempts. This module checks a request for a
fault and finds the fault a request meets; `Call.seeded_answer` renders the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs

from wa_auth.sandbox._catalogue import SEEDED_ENTRIES
from wa_auth.sandbox._checks import flag, opt_positive_int, text
from wa_auth.sandbox._values import SeededFault
from wa_auth.sandbox._wire import RECIPIENT_RE, digits_of

__all__ = [
    "FAULT_ENDPOINTS",
    "SEEDED_FAULTS",
    "TEMPLATE_ONLY",
    "fault_values",
    "make_fault",
    "take",
]

#: The transport faults a seeded fault can be besides a Graph error code.
_TRANSPORT: Final = ("drop", "drop_after_accept", "html_502")
#: What `fail_next` can answer with: Graph error codes, then the transport faults.
SEEDED_FAULTS: Final[tuple[int | str, ...]] = (*sorted(SEEDED_ENTRIES), *_TRANSPORT)
#: The `Retry-After` seconds sent by default: the throughput window (one second) and the
#: pair-limit window (Meta: about one message per 6 seconds to one user).
_RETRY_AFTER: Final = {130429: 1, 131056: 6}
#: Codes that only a template send can get; other sends pass such a fault by.
TEMPLATE_ONLY: Final = frozenset({132000, 132001})
#: The default `estimated_time_to_regain_access` of a seeded 80007, in minutes.
_REGAIN_MINUTES: Final = 1
_MAX_REGAIN_MINUTES: Final = 7 * 24 * 60
_MAX_RETRY_AFTER: Final = 24 * 3600
#: The endpoints (`RecordedRequest.endpoint`) a seeded fault can answer.
FAULT_ENDPOINTS: Final = (
    "send_message",
    "upload_media",
    "get_media",
    "delete_media",
    "download_media",
    "get_phone_number",
    "get_business_profile",
    "get_business_account",
    "list_phone_numbers",
    "list_templates",
)


def _bounded_int(name: str, value: object, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ValueError(f"fail_next: {name} must be an integer in [0, {high}], got {value!r}")
    return value


def _known_code(code: object) -> bool:
    if isinstance(code, str):
        return code in _TRANSPORT
    return isinstance(code, int) and not isinstance(code, bool) and code in SEEDED_ENTRIES


def make_fault(
    fault_id: str,
    code: object,
    *,
    phones: Iterable[str],
    times: object = 1,
    phone_number_id: object = None,
    recipient: object = None,
    endpoint: object = "send_message",
    retry_after: object = None,
    retry_after_header: object = True,
    regain_access_minutes: object = None,
) -> SeededFault:
    """Return the checked fault `fail_next` asked for (see `Sandbox.fail_next`).

    Raises:
        ValueError: An unknown code or endpoint, a bad count, an unknown phone number, a bad
            recipient, or an option the code does not take (a `Retry-After` on a code Meta
            sends none with, a recipient on an endpoint that has none).
    """
    if not _known_code(code):
        raise ValueError(
            f"fail_next: code must be one of {', '.join(map(str, SEEDED_FAULTS))}, got {code!r}"
        )
    assert isinstance(code, (int, str))
    count = opt_positive_int("fail_next: times", times)
    phone = None if phone_number_id is None else text("fail_next: phone_number_id", phone_number_id)
    known = tuple(phones)
    if phone is not None and phone not in known:
        raise ValueError(
            f"fail_next: unknown phone number id {phone!r}; the sandbox's are {list(known)}"
        )
    if not isinstance(endpoint, str) or endpoint not in FAULT_ENDPOINTS:
        raise ValueError(
            f"fail_next: endpoint must be one of {list(FAULT_ENDPOINTS)}, got {endpoint!r}"
        )
    to = None if recipient is None else text("fail_next: recipient", recipient)
    if to is not None:
        if endpoint != "send_message":
            raise ValueError("fail_next: recipient applies to send_message only")
        if not RECIPIENT_RE.fullmatch(to):
            raise ValueError("fail_next: recipient must be 7 to 15 digits, with or without +")
    with_header = flag("fail_next: retry_after_header", retry_after_header)
    seconds = _bounded_int("retry_after", retry_after, _MAX_RETRY_AFTER)
    if code not in _RETRY_AFTER and seconds is not None:
        raise ValueError("fail_next: retry_after applies to 130429 and 131056 only")
    minutes = _bounded_int("regain_access_minutes", regain_access_minutes, _MAX_REGAIN_MINUTES)
    if code != 80007 and minutes is not None:
        raise ValueError("fail_next: regain_access_minutes applies to 80007 only")
    if code in _RETRY_AFTER and with_header:
        seconds = _RETRY_AFTER[code] if seconds is None else seconds
    else:
        seconds = None
    return SeededFault(
        id=fault_id,
        code=code,
        times=count,
        remaining=count,
        phone_number_id=phone,
        recipient=to,
        endpoint=endpoint,
        retry_after=seconds,
        regain_access_minutes=(minutes if minutes is not None else _REGAIN_MINUTES)
        if code == 80007
        else None,
    )


def take(
    faults: list[SeededFault],
    *,
    endpoint: str,
    phone: str | None,
    recipient: str | None = None,
    template: bool = False,
) -> SeededFault | None:
    """Find the oldest fault that matches the request, count one use of it, and return it.

    A fault with no uses left leaves *faults*; one seeded "until cleared" stays.
    """
    for i, fault in enumerate(faults):
        if not _matches(fault, endpoint, phone, recipient, template):
            continue
        if fault.remaining is not None:
            left = fault.remaining - 1
            if left:
                faults[i] = attrs.evolve(fault, remaining=left)
            else:
                del faults[i]
        return fault
    return None


def _matches(
    fault: SeededFault, endpoint: str, phone: str | None, recipient: str | None, template: bool
) -> bool:
    if fault.endpoint != endpoint:
        return False
    if fault.phone_number_id is not None and fault.phone_number_id != phone:
        return False
    if fault.recipient is not None and (
        recipient is None or digits_of(fault.recipient) != digits_of(recipient)
    ):
        return False
    return template or fault.code not in TEMPLATE_ONLY


def fault_values(fault: SeededFault, body: Any) -> dict[str, Any]:
    """Return the placeholder values of the fault's catalogue entry (template name...)."""
    if fault.code in TEMPLATE_ONLY:
        template = body.get("template") if isinstance(body, dict) else None
        template = template if isinstance(template, dict) else {}
        language = template.get("language")
        return {
            "template": template.get("name", ""),
            "language": language.get("code", "") if isinstance(language, dict) else "",
        }
    if fault.code == 131009:
        return {"details": "Parameter value is not valid"}
    if fault.code == 131008:
        return {"details": "Required parameter is missing"}
    return {}
