"""Meta's literal error payloads, as the Graph API and the Cloud API send them.

This catalogue is the sandbox's own: it is written from Meta's documented payloads and from
payloads users reported (see `shared/reference/graph-errors.md`), never derived from
`wa_auth._table`, so an end-to-end test against the sandbox can catch a wrong classifier row.
Where Meta's answers vary (with or without `error_subcode`), each variant is its own entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

__all__ = [
    "ENTRIES",
    "FLAKY_ENTRIES",
    "SEEDED_ENTRIES",
    "Entry",
    "Reply",
    "html_502",
    "json_reply",
    "meta_time",
    "render",
]


@attrs.frozen
class Reply:
    """One HTTP answer of the sandbox: status, headers and body, or a dropped connection."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: tuple[tuple[str, str], ...] = ()
    #: Seconds to wait before answering (the `latency` fault).
    delay: float = 0.0
    #: Close the connection without answering (the `drop_rate` fault).
    drop: bool = False
    #: The Graph error code of an error answer, for the request record.
    code: int | None = None


@attrs.frozen
class Entry:
    """A catalogue entry: the HTTP status and the `error` object Meta sends (without trace id).

    `oauth_error` is the second token of the `WWW-Authenticate` header Graph adds to
    authentication and authorisation failures; None where Meta sends no such header.
    """

    status: int
    error: Mapping[str, Any]
    oauth_error: str | None = None


def _wa(message: str, code: int, details: str, **extra: Any) -> dict[str, Any]:
    """Return a WhatsApp-layer error object: `(#code) title` plus `error_data.details`."""
    return {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        **extra,
    }


_EXPIRED_MESSAGE: Final = (
    "Error validating access token: Session has expired on {expired_on}. "
    "The current time is {current_time}."
)
_CHANGED_PASSWORD_TEXT: Final = (
    "Error validating access token: The session has been invalidated because the user changed "  # noqa: S105 - Meta's text
    "their password or Facebook has changed the session for security reasons."
)
_DEAUTHORIZED_MESSAGE: Final = (
    "Error validating access token: The user has not authorized application {app_id}."
)
_LOGGED_OUT_MESSAGE: Final = (
    "Error validating access token: The session is invalid because the user logged out."
)
_OBJECT_MESSAGE: Final = (
    "Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be loaded "
    "due to missing permissions, or does not support this operation. Please read the Graph API "
    "documentation at https://developers.facebook.com/docs/graph-api"
)


def _oauth(message: str, code: int = 190, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    return error


#: Every error the sandbox can answer, by name. Placeholders in `{braces}` are filled per call.
ENTRIES: Final[Mapping[str, Entry]] = MappingProxyType(
    {
        # --- code 190: the token itself (401 on Cloud API calls, with WWW-Authenticate) ---------
        "expired": Entry(401, _oauth(_EXPIRED_MESSAGE, 190, 463), "invalid_token"),
        # Modern WhatsApp payloads (v16.0+) omit error_subcode: only the text tells expiry apart.
        "expired_no_subcode": Entry(401, _oauth(_EXPIRED_MESSAGE), "invalid_token"),
        "revoked_password_changed": Entry(
            401, _oauth(_CHANGED_PASSWORD_TEXT, 190, 460), "invalid_token"
        ),
        "revoked_password_changed_no_subcode": Entry(
            401, _oauth(_CHANGED_PASSWORD_TEXT), "invalid_token"
        ),
        "revoked_deauthorized": Entry(
            401, _oauth(_DEAUTHORIZED_MESSAGE, 190, 458), "invalid_token"
        ),
        "revoked_deauthorized_no_subcode": Entry(
            401, _oauth(_DEAUTHORIZED_MESSAGE), "invalid_token"
        ),
        "revoked_logged_out": Entry(401, _oauth(_LOGGED_OUT_MESSAGE, 190, 467), "invalid_token"),
        "revoked_logged_out_no_subcode": Entry(401, _oauth(_LOGGED_OUT_MESSAGE), "invalid_token"),
        "malformed": Entry(
            401, _oauth("Invalid OAuth access token - Cannot parse access token"), "invalid_token"
        ),
        # No token at all: Graph's generic "active access token" answer.
        "no_token": Entry(
            400,
            _oauth(
                "An active access token must be used to query information about the current user.",
                2500,
            ),
            "invalid_request",
        ),
        # --- permissions -----------------------------------------------------------------------
        "missing_permission": Entry(
            403,
            _wa(
                "(#10) Application does not have permission for this action",
                10,
                "Application does not have permission for this action",
            ),
            "insufficient_scope",
        ),
        # What a system user without the WABA asset (or without the scope) gets.
        "missing_permission_200": Entry(
            403,
            {
                "message": "(#200) Permissions error",
                "type": "OAuthException",
                "code": 200,
                "is_transient": False,
            },
            "insufficient_scope",
        ),
        # --- the business account and its phone numbers --------------------------------------
        "account_locked": Entry(
            403,
            _wa("(#131031) Business Account locked", 131031, "Business account has been locked."),
        ),
        "account_restricted": Entry(
            403,
            _wa(
                "(#368) Temporarily blocked for policies violations",
                368,
                "The action attempted has been deemed abusive or is otherwise disallowed",
            ),
        ),
        "account_restricted_130497": Entry(
            403,
            _wa(
                "(#130497) Business account is restricted from messaging users in this country",
                130497,
                "The business account is restricted from messaging users in this country.",
            ),
        ),
        "account_payment_issue": Entry(
            400,
            _wa(
                "(#131042) Business eligibility payment issue",
                131042,
                "Message failed to send because there were one or more errors related to your "
                "payment method.",
            ),
        ),
        "account_maintenance": Entry(
            500,
            _wa(
                "(#131057) Business Account is in maintenance mode",
                131057,
                "Business Account is in maintenance mode",
            ),
        ),
        "number_not_registered": Entry(
            400, _wa("(#133010) Account not registered", 133010, "Account not registered")
        ),
        # --- limits -------------------------------------------------------------------------------
        "throughput": Entry(
            400,
            _wa(
                "(#130429) Rate limit hit", 130429, "Cloud API message throughput has been reached."
            ),
        ),
        "pair_limit": Entry(
            400,
            _wa(
                "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                131056,
                "Message failed to send because there were too many messages sent from this phone "
                "number to the same phone number in a short period of time.",
            ),
        ),
        # The long caps: hours to days, and retrying soon makes them worse.
        "spam_limit": Entry(
            400,
            _wa(
                "(#131048) Spam rate limit hit",
                131048,
                "Message failed to send because there are restrictions on how many messages can "
                "be sent from this phone number. This may be because too many previous messages "
                "were blocked or flagged as spam.",
            ),
        ),
        "ecosystem_limit": Entry(
            400,
            _wa(
                "(#131049) This message was not delivered to maintain healthy ecosystem "
                "engagement.",
                131049,
                "This message was not delivered to maintain healthy ecosystem engagement.",
            ),
        ),
        # The WABA's business-use-case limit; `X-Business-Use-Case-Usage` says how long.
        "business_rate_limit": Entry(
            400,
            _wa(
                "(#80007) Rate limit issues",
                80007,
                "The WhatsApp Business Account has reached its rate limit.",
            ),
        ),
        "app_usage": Entry(
            400,
            {
                "message": "(#4) Application request limit reached",
                "type": "OAuthException",
                "is_transient": True,
                "code": 4,
            },
        ),
        # --- flaky answers ------------------------------------------------------------------------
        "unknown_1": Entry(
            500, {"message": "An unknown error occurred", "type": "OAuthException", "code": 1}
        ),
        "service_2": Entry(
            503,
            {
                "message": "An unexpected error has occurred. Please retry your request later.",
                "type": "OAuthException",
                "is_transient": True,
                "code": 2,
            },
        ),
        "generic_131000": Entry(
            500, _wa("(#131000) Something went wrong", 131000, "Something went wrong")
        ),
        "unavailable_131016": Entry(
            503,
            _wa("(#131016) Service unavailable", 131016, "A service is temporarily unavailable."),
        ),
        # --- requests Meta rejects --------------------------------------------------------------
        "object_not_found": Entry(
            400,
            {
                "message": _OBJECT_MESSAGE,
                "type": "GraphMethodException",
                "code": 100,
                "error_subcode": 33,
            },
            "invalid_request",
        ),
        "invalid_parameter": Entry(400, _wa("(#100) Invalid parameter", 100, "{details}")),
        "required_parameter": Entry(
            400,
            {
                "message": "(#100) The parameter {parameter} is required.",
                "type": "OAuthException",
                "code": 100,
            },
        ),
        # Graph's own field validation of a send: the JSON type, then the length. The "must
        # be a string" and "must be at most 4096 characters long" texts are Meta's, as
        # integrators reported them; the other types follow the same form.
        "param_type": Entry(
            400,
            {
                "message": "(#100) Param {param} must be {expected}.",
                "type": "OAuthException",
                "code": 100,
            },
        ),
        "param_too_long": Entry(
            400,
            {
                "message": "(#100) Param {param} must be at most {limit} characters long.",
                "type": "OAuthException",
                "code": 100,
            },
        ),
        "parameter_value_invalid": Entry(
            400, _wa("(#131009) Parameter value is not valid", 131009, "{details}")
        ),
        "required_parameter_missing": Entry(
            400, _wa("(#131008) Required parameter is missing", 131008, "{details}")
        ),
        # Graph-side refusals of sends that pass every local check.
        "template_missing": Entry(
            404,
            _wa(
                "(#132001) Template name does not exist in the translation",
                132001,
                "template name ({template}) does not exist in {language}",
            ),
        ),
        "template_params": Entry(
            400,
            _wa(
                "(#132000) Number of parameters does not match the expected number of params",
                132000,
                "Number of parameters does not match the expected number of params",
            ),
        ),
        "undeliverable": Entry(
            400, _wa("(#131026) Message Undeliverable", 131026, "Message Undeliverable.")
        ),
        "reengagement": Entry(
            400,
            _wa(
                "(#131047) Re-engagement message",
                131047,
                "Message failed to send because more than 24 hours have passed since the "
                "customer last replied to this number.",
            ),
        ),
        "nonexisting_field": Entry(
            400,
            {
                "message": "(#100) Tried accessing nonexisting field ({field}) on node type "
                "({node})",
                "type": "OAuthException",
                "code": 100,
            },
        ),
        "unknown_path": Entry(
            400,
            {"message": "Unknown path components: {path}", "type": "OAuthException", "code": 2500},
            "invalid_request",
        ),
        "bad_client_secret": Entry(
            400, {"message": "Error validating client secret.", "type": "OAuthException", "code": 1}
        ),
        "bad_app_id": Entry(
            400,
            {
                "message": "Error validating application. Invalid application ID.",
                "type": "OAuthException",
                "code": 101,
            },
        ),
    }
)

#: The catalogue entry of each code the `error_rate` fault can answer with.
FLAKY_ENTRIES: Final[Mapping[int, str]] = MappingProxyType(
    {
        1: "unknown_1",
        2: "service_2",
        131000: "generic_131000",
        131016: "unavailable_131016",
    }
)

#: The catalogue entry of each Graph error code a seeded fault (`fail_next`) can answer with.
SEEDED_ENTRIES: Final[Mapping[int, str]] = MappingProxyType(
    {
        **FLAKY_ENTRIES,
        4: "app_usage",
        80007: "business_rate_limit",
        130429: "throughput",
        131026: "undeliverable",
        131047: "reengagement",
        131048: "spam_limit",
        131049: "ecosystem_limit",
        131056: "pair_limit",
        131008: "required_parameter_missing",
        131009: "parameter_value_invalid",
        132000: "template_params",
        132001: "template_missing",
    }
)

_HTML_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def html_502() -> Reply:
    """Return the HTML page a reverse proxy sends when it cannot reach the upstream."""
    return Reply(502, _HTML_502, content_type="text/html")


def json_reply(status: int, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """Return a JSON answer."""
    return Reply(status, _dumps(data), headers=headers)


def _dumps(data: Any) -> bytes:
    # Graph escapes slashes in its JSON ("https:\/\/developers..."); so does the sandbox.
    return json.dumps(data, separators=(",", ":")).replace("/", "\\/").encode()


def render(
    name: str,
    /,
    *,
    fbtrace_id: str,
    code_as_string: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
    **values: Any,
) -> Reply:
    """Render the catalogue entry *name* as an answer, filling its `{placeholders}`.

    Args:
        name: A key of `ENTRIES`.
        fbtrace_id: The trace id Meta attaches to every error.
        code_as_string: Send `code` and `error_subcode` as strings, as a BSP that re-wraps
            Meta's error does.
        headers: Extra headers (Retry-After, X-App-Usage).
        values: The placeholder values (`expired_on`, `app_id`, `object_id`...).

    Returns:
        The answer, with `WWW-Authenticate` where Graph sends one.
    """
    entry = ENTRIES[name]
    error: dict[str, Any] = {}
    for key, value in entry.error.items():
        if isinstance(value, str):
            error[key] = value.format(**values) if "{" in value else value
        elif isinstance(value, Mapping):
            error[key] = {
                k: v.format(**values) if isinstance(v, str) and "{" in v else v
                for k, v in value.items()
            }
        else:
            error[key] = value
    code = int(error["code"])
    if code_as_string:
        for key in ("code", "error_subcode"):
            if key in error:
                error[key] = str(error[key])
    error["fbtrace_id"] = fbtrace_id
    extra = list(headers)
    if entry.oauth_error is not None:
        message = str(error["message"]).replace('"', "'")
        extra.append(
            ("WWW-Authenticate", f'OAuth "Facebook Platform" "{entry.oauth_error}" "{message}"')
        )
    return Reply(entry.status, _dumps({"error": error}), headers=tuple(extra), code=code)


def meta_time(unix: float) -> str:
    """Format *unix* the way Graph's expiry messages do: `Friday, 08-Mar-24 14:00:00 PST`."""
    try:
        from zoneinfo import ZoneInfo

        when = dt.datetime.fromtimestamp(unix, ZoneInfo("America/Los_Angeles"))
    except Exception:  # noqa: BLE001 - no tz database: UTC is still a valid rendering
        when = dt.datetime.fromtimestamp(unix, dt.timezone.utc)
    return when.strftime("%A, %d-%b-%y %H:%M:%S %Z")
