"""Meta's error codes, subcodes and message rules, mapped to a category and a retry policy.

This table is the single source that `wa_auth.errors.from_response`, the docs table in
`docs/errors.md` and (later) the CLI's exit codes are generated from. Rows are matched most
specific first: code + subcode, then code + message text, then code alone; an error without a
Graph code is matched by a BSP's symbolic code (YCloud's `PARAM_INVALID`), then by a BSP's
text; then HTTP status. Message-text rules exist only where Meta gives no subcode (modern
WhatsApp payloads omit `error_subcode`) or a BSP gives no code at all. Facts and sources:
`shared/reference/graph-errors.md`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

TOKEN_EXPIRED: Final = "token_expired"
TOKEN_REVOKED: Final = "token_revoked"
INSUFFICIENT_PERMISSION: Final = "insufficient_permission"
ACCOUNT_STATE: Final = "account_state"
RATE_LIMITED: Final = "rate_limited"
TRANSIENT: Final = "transient"
INVALID_REQUEST: Final = "invalid_request"
TOKEN_UNAVAILABLE: Final = "token_unavailable"
INVALID_SIGNATURE: Final = "invalid_signature"
UNKNOWN: Final = "unknown"

#: The closed set of categories; every error's `category` is one of these.
CATEGORIES: Final = (
    TOKEN_EXPIRED,
    TOKEN_REVOKED,
    INSUFFICIENT_PERMISSION,
    ACCOUNT_STATE,
    RATE_LIMITED,
    TRANSIENT,
    INVALID_REQUEST,
    TOKEN_UNAVAILABLE,
    INVALID_SIGNATURE,
    UNKNOWN,
)

#: Categories that mean "this token is dead": a different token of the same business may work.
TOKEN_CLASS: Final = frozenset({TOKEN_EXPIRED, TOKEN_REVOKED})
#: The auth categories: this credential cannot do this (`AuthError`). A failure of one is an
#: `AuthFailed` event on the `wa_auth.auth` logger, and calls a guard's `on_auth` handler.
AUTH_CATEGORIES: Final = frozenset(
    {TOKEN_EXPIRED, TOKEN_REVOKED, INSUFFICIENT_PERMISSION, ACCOUNT_STATE}
)

_MINUTE: Final = 60.0
_HOUR: Final = 3600.0


@attrs.frozen
class Rule:
    """One row of the table: how to recognise an error and what it means."""

    id: str
    category: str
    codes: tuple[int, ...]
    title: str
    operator_action: str
    subcodes: tuple[int, ...] | None = None
    messages: tuple[str, ...] = ()
    http_statuses: tuple[int, ...] = ()
    #: Symbolic codes a BSP puts in `code` instead of a Graph number (YCloud's `PARAM_INVALID`).
    names: tuple[str, ...] = ()
    max_attempts: int = 1
    retry_after: float | None = None
    ambiguous: bool = False


def _r(
    rule_id: str,
    category: str,
    codes: tuple[int, ...],
    title: str,
    action: str,
    **kw: object,
) -> Rule:
    return Rule(rule_id, category, codes, title, action, **kw)  # type: ignore[arg-type]


_NEW_TOKEN = "Generate a new access token (a system-user token for servers) and deploy it."
_REAUTH = "The user must log in and re-authorise the app; then deploy the new token."

# Rules keyed by code are tried in this order within one code: subcode rules, then message
# rules, then the bare code rule. Keep each code's rows together.
RULES: Final[tuple[Rule, ...]] = (
    # --- code 190: the access token itself -------------------------------------------------
    _r(
        "190/463",
        TOKEN_EXPIRED,
        (190,),
        "Access token has expired",
        "Refresh is no longer possible: " + _NEW_TOKEN,
        subcodes=(463,),
    ),
    _r(
        "190/458",
        TOKEN_REVOKED,
        (190,),
        "App not installed: the user de-authorised the app",
        _REAUTH,
        subcodes=(458,),
    ),
    _r(
        "190/459",
        TOKEN_REVOKED,
        (190,),
        "User checkpointed",
        "The user must log in at facebook.com to clear the checkpoint, then issue a new token.",
        subcodes=(459,),
    ),
    _r(
        "190/460",
        TOKEN_REVOKED,
        (190,),
        "Password changed or session reset for security",
        "The token was invalidated by a password change or security reset: " + _NEW_TOKEN,
        subcodes=(460,),
    ),
    _r(
        "190/464",
        TOKEN_REVOKED,
        (190,),
        "Unconfirmed user",
        "The user must confirm their Facebook account, then issue a new token.",
        subcodes=(464,),
    ),
    _r(
        "190/467",
        TOKEN_REVOKED,
        (190,),
        "Invalid access token: logged out or invalidated",
        "The session was logged out or invalidated: " + _NEW_TOKEN,
        subcodes=(467,),
    ),
    _r(
        "190/492",
        TOKEN_REVOKED,
        (190,),
        "Invalid session: the user's role on the asset changed",
        "Re-grant the user's role on the WhatsApp Business Account, then issue a new token.",
        subcodes=(492,),
    ),
    # Not in Meta's subcode table, but real: "The access token is invalid since the user hasn't
    # engaged the app in longer than 90 days." (MrSwitch/hello.js#548). Expiry by inactivity.
    _r(
        "190/493",
        TOKEN_EXPIRED,
        (190,),
        "Access token expired: the user has not used the app for 90 days",
        _REAUTH,
        subcodes=(493,),
    ),
    # Modern WhatsApp payloads omit error_subcode: tell expired from revoked by Meta's text.
    _r(
        "190:expired",
        TOKEN_EXPIRED,
        (190,),
        "Session has expired",
        "Refresh is no longer possible: " + _NEW_TOKEN,
        messages=(
            "session has expired",
            "access token has expired",
            "token has expired",
            "expired at unix time",
            "hasn't engaged the app",
        ),
    ),
    _r(
        "190:password",
        TOKEN_REVOKED,
        (190,),
        "Session invalidated: password changed",
        "The token was invalidated by a password change or security reset: " + _NEW_TOKEN,
        messages=("changed their password", "changed the session for security"),
    ),
    _r(
        "190:deauthorized",
        TOKEN_REVOKED,
        (190,),
        "User has not authorised the application",
        _REAUTH,
        messages=(
            "has not authorized application",
            "has not authorised application",
            "application has been deleted",
            "app has been deleted",
        ),
    ),
    # Before 190:logged-out: "The session is invalid because the user role on the page changed"
    # also contains that row's "session is invalid".
    _r(
        "190:role",
        TOKEN_REVOKED,
        (190,),
        "Session invalid: the user's role changed",
        "Re-grant the user's role on the WhatsApp Business Account, then issue a new token.",
        messages=("user role", "role on the page", "role on the asset"),
    ),
    _r(
        "190:logged-out",
        TOKEN_REVOKED,
        (190,),
        "Session invalidated: logged out",
        "The session was logged out or invalidated: " + _NEW_TOKEN,
        messages=(
            "logged out",
            "session was invalidated",
            "session has been invalidated",
            "session is invalid",
        ),
    ),
    _r(
        "190:checkpoint",
        TOKEN_REVOKED,
        (190,),
        "User checkpointed or unconfirmed",
        "The user must log in at facebook.com (checkpoint or confirmation), then issue a new token.",
        messages=("not a confirmed user", "cannot access the app till you log in", "checkpoint"),
    ),
    # Malformed tokens: a configuration error; the remedy is the same as for a revoked token.
    _r(
        "190:malformed",
        TOKEN_REVOKED,
        (190,),
        "Malformed or unparseable access token",
        "The configured token is not a valid token (truncated, quoted, wrong variable?): deploy the correct token.",
        messages=(
            "cannot parse access token",
            "malformed access token",
            "invalid oauth access token signature",
            "invalid oauth access token data",
            "could not be decrypted",
            "invalid oauth 2.0 access token",
            "bad signature",
            "invalid oauth access token.",
        ),
    ),
    _r(
        "190",
        TOKEN_REVOKED,
        (190,),
        "Invalid OAuth access token (no subcode, unrecognised text)",
        "The token is no longer valid; check it with debug_token, then "
        + _NEW_TOKEN[0].lower()
        + _NEW_TOKEN[1:],
        ambiguous=True,
    ),
    # --- legacy session / auth codes -----------------------------------------------------
    _r(
        "102:expired",
        TOKEN_EXPIRED,
        (102,),
        "API session expired",
        _NEW_TOKEN,
        messages=("expired",),
    ),
    _r("102", TOKEN_REVOKED, (102,), "API session key invalid", _NEW_TOKEN, ambiguous=True),
    _r(
        "0:expired",
        TOKEN_EXPIRED,
        (0,),
        "Authentication failed: token expired",
        _NEW_TOKEN,
        messages=("expired",),
    ),
    _r(
        "0",
        TOKEN_REVOKED,
        (0,),
        "AuthException: could not authenticate the app user",
        _NEW_TOKEN,
        ambiguous=True,
    ),
    # --- permissions --------------------------------------------------------------------
    _r(
        "3",
        INSUFFICIENT_PERMISSION,
        (3,),
        "The app lacks the capability for this call",
        "Add the WhatsApp product to the app or pass App Review for this capability.",
    ),
    _r(
        "10",
        INSUFFICIENT_PERMISSION,
        (10,),
        "Permission denied: scope not granted or removed",
        "Grant whatsapp_business_messaging / whatsapp_business_management to the token (or meet the eligibility requirement), then issue a new token.",
    ),
    _r(
        "200-299",
        INSUFFICIENT_PERMISSION,
        tuple(range(200, 300)),
        "Permission error: the token's user has no access to this asset",
        "Assign the WhatsApp Business Account to the system user with the needed permission, or regenerate the token with whatsapp_business_messaging.",
    ),
    _r(
        "131005",
        INSUFFICIENT_PERMISSION,
        (131005,),
        "Access denied",
        "Check the token's permissions and the WABA asset assignment of its system user.",
    ),
    # --- code 100: invalid parameter, sometimes a permission problem in disguise ----------
    # 9 of 10 real 100/33 cases are a wrong id (display number, WABA id, empty id); the rest
    # are a correct phone_number_id the token has no asset access to. Both readings stay open.
    _r(
        "100/33",
        INVALID_REQUEST,
        (100,),
        "Object does not exist, cannot be loaded due to missing permissions, or does not support this operation",
        "Check that the id is the phone_number_id (not the display number or WABA id); if it is, assign its WABA to the token's system user.",
        subcodes=(33,),
        ambiguous=True,
    ),
    _r(
        "100:permission",
        INSUFFICIENT_PERMISSION,
        (100,),
        "Missing permissions",
        "Grant the missing permission to the token, then issue a new token.",
        messages=(
            "missing permission",
            "permissions error",
            "does not have permission",
            "permission(s)",
        ),
    ),
    _r(
        "100",
        INVALID_REQUEST,
        (100,),
        "Invalid parameter",
        "Fix the request: error_data.details names the parameter.",
    ),
    _r(
        "33",
        INVALID_REQUEST,
        (33,),
        "Object does not exist or is not supported (phone number deleted?)",
        "Verify the phone_number_id and that the number still exists.",
    ),
    _r(
        "104",
        INVALID_REQUEST,
        (104,),
        "Incorrect signature or missing access token",
        "Send a valid token (and appsecret_proof if the app requires it).",
    ),
    # OAuth dialog / code exchange: "Can't Load URL: The domain of this URL isn't included in
    # the app's domains" (Facebook Login, manual flow:
    # https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow/); seen in
    # Marko-M/Inchoo_SocialConnect#79 and facebookarchive/php-graph-sdk#684 (localised text).
    _r(
        "191",
        INVALID_REQUEST,
        (191,),
        "Redirect URI or domain not allowed for the app",
        "Add the redirect URI to Valid OAuth Redirect URIs and its domain to App Domains in the app settings.",
    ),
    # POST /{app-id}/subscriptions (webhook setup): "(#2200) Callback verification failed with
    # the following errors: HTTP Status Code = 404" (app subscriptions reference,
    # https://developers.facebook.com/docs/graph-api/reference/app/subscriptions/; seen in
    # fbsamples/original-coast-clothing#84).
    _r(
        "2200",
        INVALID_REQUEST,
        (2200,),
        "Webhook callback verification failed",
        "Make the callback URL reachable over HTTPS and answer Meta's GET with hub.challenge when hub.verify_token matches.",
    ),
    _r(
        "2500",
        INVALID_REQUEST,
        (2500,),
        "An active access token must be used",
        "Send a user or system-user access token in the Authorization header.",
    ),
    # --- throttling -------------------------------------------------------------------------
    _r(
        "4",
        RATE_LIMITED,
        (4,),
        "Application request limit reached",
        "Reduce the app's call volume; see X-App-Usage.",
        max_attempts=3,
        retry_after=5 * _MINUTE,
    ),
    _r(
        "17",
        RATE_LIMITED,
        (17,),
        "User request limit reached",
        "Reduce the call volume of this token's user.",
        max_attempts=3,
        retry_after=5 * _MINUTE,
    ),
    _r(
        "32",
        RATE_LIMITED,
        (32,),
        "Page request limit reached",
        "Reduce the call volume.",
        max_attempts=3,
        retry_after=5 * _MINUTE,
    ),
    # Listed with the throttling codes of Graph's rate-limiting page (php-graph-sdk#880).
    _r(
        "341",
        RATE_LIMITED,
        (341,),
        "Application limit reached",
        "Reduce the app's call volume; see X-App-Usage.",
        max_attempts=3,
        retry_after=5 * _MINUTE,
    ),
    _r(
        "613",
        RATE_LIMITED,
        (613,),
        "Calls to this API have exceeded the rate limit",
        "Reduce the call volume.",
        max_attempts=3,
        retry_after=_MINUTE,
    ),
    # 80007: WhatsApp error codes page; 80008 "There have been too many calls to this WhatsApp
    # Business account" on the phone_numbers and message_templates references
    # (https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account/phone_numbers/).
    _r(
        "80007",
        RATE_LIMITED,
        (80007, 80008),
        "WhatsApp Business Account rate limit",
        "Reduce management calls; X-Business-Use-Case-Usage says when access returns.",
        max_attempts=3,
        retry_after=5 * _MINUTE,
    ),
    # Business Use Case limits of Meta's other products (ads, Pages, Instagram, Messenger,
    # catalogs) share the 80000-80014 block of Graph's rate-limiting page
    # (https://developers.facebook.com/docs/graph-api/overview/rate-limiting/); a token that
    # also serves them meets these. Seen: 80000 (airbyte#10655), 80004 (airbyte#8773). The
    # use case behind each number is not re-verified here; the remedy is the same.
    _r(
        "8000x",
        RATE_LIMITED,
        (*range(80000, 80007), *range(80009, 80015)),
        "Business Use Case rate limit of another Meta product",
        "Reduce the calls for that business object; X-Business-Use-Case-Usage says when access returns.",
        max_attempts=3,
        retry_after=5 * _MINUTE,
    ),
    _r(
        "130429",
        RATE_LIMITED,
        (130429,),
        "Cloud API throughput limit reached",
        "Pace sends for this phone number (default about 80 messages per second).",
        max_attempts=5,
        retry_after=1.0,
    ),
    _r(
        "131056",
        RATE_LIMITED,
        (131056,),
        "(Business, consumer) pair rate limit hit",
        "Pace messages to this recipient (about one every 6 seconds); other recipients are unaffected.",
        max_attempts=3,
        retry_after=6.0,
    ),
    _r(
        "131048",
        RATE_LIMITED,
        (131048,),
        "Spam rate limit hit",
        "Improve message quality; do not retry quickly, it makes things worse.",
        retry_after=_HOUR,
    ),
    _r(
        "131049",
        RATE_LIMITED,
        (131049,),
        "Not delivered to maintain healthy ecosystem engagement",
        "Reduce marketing frequency to this user; retry no sooner than 24 hours.",
        retry_after=24 * _HOUR,
    ),
    _r(
        "132069",
        RATE_LIMITED,
        (132069,),
        "Flow throttled",
        "Send fewer flow messages (10 per hour per flow while throttled).",
        retry_after=_HOUR,
    ),
    _r(
        "133015",
        RATE_LIMITED,
        (133015,),
        "Wait a few minutes before registering",
        "Wait before retrying the registration.",
        retry_after=5 * _MINUTE,
    ),
    _r(
        "133016",
        RATE_LIMITED,
        (133016,),
        "Register/deregister rate limit exceeded",
        "Registration attempts are limited (10 per 72 hours); wait.",
        retry_after=72 * _HOUR,
    ),
    # --- transient faults -------------------------------------------------------------------
    _r(
        "1",
        TRANSIENT,
        (1,),
        "API unknown error (possibly temporary)",
        "If it persists, check Meta's status page, then validate the request.",
        max_attempts=2,
        retry_after=1.0,
    ),
    _r(
        "2",
        TRANSIENT,
        (2,),
        "API service temporarily unavailable",
        "None: wait and retry.",
        max_attempts=4,
        retry_after=1.0,
    ),
    _r(
        "131000",
        TRANSIENT,
        (131000,),
        "Something went wrong",
        "If it persists, escalate to Meta with the fbtrace_id.",
        max_attempts=2,
        retry_after=1.0,
    ),
    _r(
        "131016",
        TRANSIENT,
        (131016,),
        "Service unavailable",
        "None: wait and retry.",
        max_attempts=4,
        retry_after=2.0,
    ),
    _r(
        "133004",
        TRANSIENT,
        (133004,),
        "Server temporarily unavailable",
        "None: wait and retry.",
        max_attempts=4,
        retry_after=2.0,
    ),
    # --- account and phone-number state: a new token does not help --------------------------
    _r(
        "368",
        ACCOUNT_STATE,
        (368,),
        "Temporarily blocked for policy violations",
        "Check Business Support Home and appeal the enforcement; stop the sender until it ends.",
        retry_after=_HOUR,
    ),
    _r(
        "130497",
        ACCOUNT_STATE,
        (130497,),
        "Business account restricted from messaging users in this country",
        "Review the WABA's policy restrictions in Business Support Home.",
    ),
    _r(
        "131031",
        ACCOUNT_STATE,
        (131031,),
        "Business account locked",
        "Open Business Support Home (or check health_status) and resolve the lock; a new token does not help.",
    ),
    _r(
        "131037",
        ACCOUNT_STATE,
        (131037,),
        "Display name approval required",
        "Get the phone number's display name approved.",
    ),
    _r(
        "131042",
        ACCOUNT_STATE,
        (131042,),
        "Business eligibility payment issue",
        "Fix the payment method or credit line of the WhatsApp Business Account.",
        retry_after=_HOUR,
    ),
    _r(
        "131045", ACCOUNT_STATE, (131045,), "Incorrect certificate", "Re-register the phone number."
    ),
    _r(
        "131057",
        ACCOUNT_STATE,
        (131057,),
        "Business account in maintenance mode",
        "None: maintenance ends by itself; retry later.",
        max_attempts=3,
        retry_after=5 * _MINUTE,
    ),
    # health_status errors (`error_code` / `error_description` of a BLOCKED entity, Messaging
    # Health Status: https://developers.facebook.com/documentation/business-messaging/whatsapp/support/health-status);
    # 141006 seen in david-lev/pywa tests/test_types.py.
    _r(
        "141006",
        ACCOUNT_STATE,
        (141006,),
        "Payment method error: business-initiated conversations are blocked",
        "Add a valid payment method to the WhatsApp Business Account in Business Manager.",
    ),
    # 141000: the phone number is not linked to a WhatsApp Business Account (the issue #17
    # corpus; no public copy of it was found). The number's state, like 133010: a new token or
    # more permissions on the token do not help, linking and registering the number does.
    _r(
        "141000",
        ACCOUNT_STATE,
        (141000,),
        "Phone number not linked to a WhatsApp Business Account",
        "Add the phone number to its WhatsApp Business Account (WhatsApp Manager or Embedded Signup) and register it.",
    ),
    _r(
        "133000",
        ACCOUNT_STATE,
        (133000,),
        "Incomplete deregistration",
        "Deregister the number, then register it again.",
    ),
    _r(
        "133006",
        ACCOUNT_STATE,
        (133006,),
        "Phone number re-verification needed",
        "Verify the number again (request_code / verify_code).",
    ),
    _r(
        "133010",
        ACCOUNT_STATE,
        (133010,),
        "Phone number not registered",
        "Register the number: POST /{phone_number_id}/register.",
    ),
    # --- invalid requests -------------------------------------------------------------------
    _r(
        "130472",
        INVALID_REQUEST,
        (130472,),
        "Recipient's number is part of an experiment",
        "None: Meta withholds marketing messages to this user.",
    ),
    _r(
        "131008",
        INVALID_REQUEST,
        (131008,),
        "Required parameter missing",
        "Fix the request: error_data.details names the parameter.",
    ),
    _r(
        "131009",
        INVALID_REQUEST,
        (131009,),
        "Parameter value is not valid",
        "Fix the request: error_data.details names the parameter.",
    ),
    _r(
        "131021",
        INVALID_REQUEST,
        (131021,),
        "Recipient cannot be sender",
        "Send to a different number than the business number.",
    ),
    _r(
        "131026",
        INVALID_REQUEST,
        (131026,),
        "Message undeliverable",
        "Reach the recipient out of band (not on WhatsApp, old client, or blocked the business).",
    ),
    _r(
        "131030",
        INVALID_REQUEST,
        (131030,),
        "Recipient not in allowed list",
        "Add the recipient to the test number's allowed list, or use a production number.",
    ),
    _r(
        "131047",
        INVALID_REQUEST,
        (131047,),
        "Re-engagement message: more than 24 hours since the user's last message",
        "Send an approved template instead of a free-form message.",
    ),
    _r(
        "131050",
        INVALID_REQUEST,
        (131050,),
        "User stopped marketing messages",
        "Respect the opt-out.",
    ),
    _r(
        "131051",
        INVALID_REQUEST,
        (131051,),
        "Unsupported message type",
        "Use a supported message type.",
    ),
    _r(
        "131052",
        INVALID_REQUEST,
        (131052, 131053),
        "Media download or upload error",
        "Check the media URL, size and type.",
        max_attempts=2,
        retry_after=1.0,
    ),
    _r(
        "132000",
        INVALID_REQUEST,
        (132000,),
        "Template parameter count mismatch",
        "Send the number of parameters the template expects.",
    ),
    _r(
        "132001",
        INVALID_REQUEST,
        (132001,),
        "Template does not exist in this language or is not approved",
        "Check the template name, language and approval status.",
    ),
    _r(
        "132005",
        INVALID_REQUEST,
        (132005, 132007, 132008, 132012),
        "Template text, policy, parameter value or format error",
        "Fix the template parameters (error_data.details says which).",
    ),
    _r(
        "132015",
        INVALID_REQUEST,
        (132015, 132016),
        "Template paused or disabled for low quality",
        "Edit or replace the template.",
    ),
    _r("132068", INVALID_REQUEST, (132068,), "Flow is blocked", "Fix or replace the flow."),
    # health_status of a template ("Example blocked response" of Messaging Health Status,
    # https://developers.facebook.com/documentation/business-messaging/whatsapp/support/health-status).
    _r(
        "141002",
        INVALID_REQUEST,
        (141002,),
        "Template not approved: only approved templates can be sent",
        "Edit the template or appeal its review decision, then send it once it is approved.",
    ),
    _r(
        "133005",
        INVALID_REQUEST,
        (133005, 133008, 133009),
        "Two-step verification PIN mismatch or too many attempts",
        "Use the correct two-step verification PIN; wait before guessing again.",
    ),
    # verify_code's error: the sibling of request_code's documented 136024 "Request code error"
    # (https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account-to-number-current-status/request_code/).
    # Graph localises its message and error_user_* by locale ("(#136025) Error al verificar el
    # código"), so this row has no message rules: the code alone decides.
    _r(
        "136025",
        INVALID_REQUEST,
        (136025,),
        "Phone number verification code is wrong or expired",
        "Send the code the number received, or request a new one with request_code; a new token does not help.",
    ),
    # Turn answers its own bad requests with code -1 in the On-Premises `errors[]` shape:
    # {"errors": [{"code": -1, "title": "Bad Request", "details": "Could not be parsed, invalid
    # key"}]} (nyaruka/courier handlers/turn/handler.go). -1 says nothing by itself: only the
    # title decides, and without it the HTTP status does.
    _r(
        "-1:bad-request",
        INVALID_REQUEST,
        (-1,),
        "BSP rejected the request (Turn's code -1, Bad Request)",
        "Fix the request: the details name the field the BSP could not parse.",
        messages=("bad request",),
    ),
    _r("135000", UNKNOWN, (135000,), "Generic user error", "Escalate to Meta with the fbtrace_id."),
    # --- BSP errors without a Graph code: by the BSP's symbolic code, then by its text --------
    # YCloud's own error object: {"error": {"status": 400, "code": "PARAM_INVALID", "message":
    # "Parameter 'limit' should be between 1 and 100.", "target": "limit"}}
    # (https://docs.ycloud.com/reference/errors). When YCloud passes Meta's error on, the
    # nested `whatsappApiError` decides instead.
    _r(
        "ycloud:PARAM_INVALID",
        INVALID_REQUEST,
        (),
        "BSP parameter validation failed (YCloud PARAM_INVALID)",
        "Fix the parameter the error's `target` names.",
        names=("PARAM_INVALID",),
    ),
    # ACCOUNT_LIMITED (HTTP 403: "Some functions of the account are limited", e.g. a trial
    # account sending to a number it has not verified) and ACCOUNT_UNAVAILABLE ("The account
    # is unavailable. Contact our customer service"): the YCloud account, not the token.
    _r(
        "ycloud:account",
        ACCOUNT_STATE,
        (),
        "BSP account limited or unavailable (YCloud)",
        "Check the YCloud account's plan, verified numbers and status, or contact YCloud support.",
        names=("ACCOUNT_LIMITED", "ACCOUNT_UNAVAILABLE"),
    ),
    _r(
        "ycloud:TOO_MANY_REQUESTS",
        RATE_LIMITED,
        (),
        "BSP rate limit (YCloud TOO_MANY_REQUESTS)",
        "Reduce the call volume to YCloud.",
        names=("TOO_MANY_REQUESTS",),
        max_attempts=3,
        retry_after=_MINUTE,
    ),
    # 360dialog's envelope has no code, only {"meta": {"httpCode": 400, "developerMessage":
    # ...}} (https://docs.360dialog.com/partner/help-and-support/error-messages), and it
    # answers HTTP 400 for both of these, so only the text tells them apart.
    # "Your WhatsApp for Business API has been disabled" (cancellation, payment issues, ...).
    _r(
        "360dialog:disabled",
        ACCOUNT_STATE,
        (),
        "BSP disabled the WhatsApp Business API for the account (360dialog)",
        "Contact the BSP's support: the API is disabled for this number's account (cancellation or payment); a new token does not help.",
        messages=("whatsapp for business api has been disabled",),
    ),
    # "You have exceeded the limit of 1 request every * seconds. Try again later." (the doc
    # hides the interval), or "You have exceeded the endpoint rate limit." in the newer table.
    _r(
        "360dialog:usage-limit",
        RATE_LIMITED,
        (),
        "BSP endpoint usage limit exceeded (360dialog)",
        "Send fewer calls to this endpoint; the BSP allows one call every few seconds.",
        messages=("you have exceeded the limit of", "exceeded the endpoint rate limit"),
        max_attempts=3,
        retry_after=_MINUTE,
    ),
)

# HTTP-status fallbacks: no usable code (HTML from a proxy, empty body, unknown code).
STATUS_RULES: Final[tuple[Rule, ...]] = (
    # Graph answers 401 only for credential failures (code 190 on WhatsApp sends, n8n#17521);
    # with no readable body the token is the likeliest culprit, but a proxy may say 401 too.
    _r(
        "http:401",
        TOKEN_REVOKED,
        (),
        "HTTP 401 Unauthorized without a readable error",
        "Check the token with debug_token; if it is dead, "
        + _NEW_TOKEN[0].lower()
        + _NEW_TOKEN[1:],
        http_statuses=(401,),
        ambiguous=True,
    ),
    # BSPs answer 402 when their own balance or plan blocks the send (Unifonic's WhatsApp API
    # documents `402 {"message": "... no balance available."}`, docs.unifonic.com/docs/api-error-codes);
    # like Meta's 131042 it is a billing state of the account, not of the token.
    _r(
        "http:402",
        ACCOUNT_STATE,
        (),
        "HTTP 402 Payment Required without a readable error",
        "Check the balance or billing of the WhatsApp Business Account, or of the BSP in front of Meta.",
        http_statuses=(402,),
        ambiguous=True,
    ),
    # Meta documents 403 for permission codes (10, 200-299, 131005) and for account blocks (368,
    # 131031); permission is the likelier reading, so the error stays marked ambiguous. A BSP
    # that blocks an endpoint answers 403 too (360dialog: "The endpoint is blocked").
    _r(
        "http:403",
        INSUFFICIENT_PERMISSION,
        (),
        "HTTP 403 Forbidden without a readable error",
        "Check the token's permissions and WABA assignment with debug_token; if they are right, check the account's state in Business Support Home.",
        http_statuses=(403,),
        ambiguous=True,
    ),
    _r(
        "http:429",
        RATE_LIMITED,
        (),
        "HTTP 429 Too Many Requests",
        "Reduce the call volume.",
        http_statuses=(429,),
        max_attempts=3,
        retry_after=_MINUTE,
    ),
    _r(
        "http:5xx",
        TRANSIENT,
        (),
        "Server or proxy error",
        "None if it passes; if it persists, check the proxy and Meta's status page.",
        http_statuses=(500, 502, 503, 504, 408),
        max_attempts=3,
        retry_after=1.0,
    ),
)

#: An error object that says `is_transient: true` but has no row of its own.
TRANSIENT_FLAG_RULE: Final = _r(
    "is_transient",
    TRANSIENT,
    (),
    "Meta marked the error transient",
    "None if it passes; escalate with the fbtrace_id if it persists.",
    max_attempts=3,
    retry_after=1.0,
)
#: No answer came at all (connect error, timeout, reset).
TRANSPORT_RULE: Final = _r(
    "transport",
    TRANSIENT,
    (),
    "No answer from the server",
    "Check the network path to the Graph API (DNS, proxy, firewall) if it persists.",
    max_attempts=3,
    retry_after=1.0,
)
#: Nothing recognisable.
UNKNOWN_RULE: Final = _r(
    "unknown",
    UNKNOWN,
    (),
    "Unrecognised error",
    "Inspect the logged body and fbtrace_id; report the payload to wa_auth if it is Meta's.",
)
#: Raised locally before any request.
VALIDATION_RULE: Final = _r(
    "validation",
    INVALID_REQUEST,
    (),
    "Request failed local validation",
    "Fix the call's arguments.",
)

_BY_CODE: dict[int, list[Rule]] = {}
for _rule in RULES:
    for _code in _rule.codes:
        _BY_CODE.setdefault(_code, []).append(_rule)
BY_CODE: Final[dict[int, tuple[Rule, ...]]] = {k: tuple(v) for k, v in _BY_CODE.items()}
del _BY_CODE, _rule, _code
#: The rows of BSPs' symbolic codes, by the code in capitals.
BY_NAME: Final[dict[str, Rule]] = {name: r for r in RULES for name in r.names}
#: The rows that recognise a BSP's error by its text alone, for errors without any code.
TEXT_RULES: Final[tuple[Rule, ...]] = tuple(r for r in RULES if not r.codes and r.messages)


def lookup(
    code: int | None,
    subcode: int | None,
    text: str | Callable[[], str],
    status: int | None,
    name: str | None = None,
) -> Rule:
    """Return the most specific rule for an error.

    *text* is the lowercased message and details, or a function that returns it: most errors
    are decided by code and subcode, and never need it. *name* is a BSP's symbolic code
    (YCloud's `PARAM_INVALID`); it and the BSP text rows are only read when there is no code.
    """
    rule = _by_code(code, subcode, text) if code is not None else _without_code(name, text)
    if rule is not None:
        return rule
    if status is not None:
        for rule in STATUS_RULES:
            if status in rule.http_statuses or (status >= 500 and rule.id == "http:5xx"):
                return rule
    return UNKNOWN_RULE


def _by_code(code: int, subcode: int | None, text: str | Callable[[], str]) -> Rule | None:
    """Return the row of *code*: by subcode, then by message text, then the bare code."""
    for rule in BY_CODE.get(code, ()):
        if rule.subcodes is not None:
            if subcode in rule.subcodes:
                return rule
        elif rule.messages:
            if not isinstance(text, str):
                text = text()
            if any(m in text for m in rule.messages):
                return rule
        else:
            return rule
    return None


def _without_code(name: str | None, text: str | Callable[[], str]) -> Rule | None:
    """Return the row of an error without a Graph code: by the BSP's name, then by its text."""
    if name:
        named = BY_NAME.get(name.upper())
        if named is not None:
            return named
    if not isinstance(text, str):
        text = text()
    if text:
        for rule in TEXT_RULES:
            if any(m in text for m in rule.messages):
                return rule
    return None


def lost_could_change(code: int | None, rule: Rule, *, subcode_lost: bool, text_lost: bool) -> bool:
    """Return True when a row tried before *rule* reads a field a cut body may have lost.

    A body cut off mid-JSON is classified from what survived: a row that matches the
    surviving fields also matches the whole body, but a row tried earlier may have needed the
    subcode that came after the cut (100/33 before 100:permission), or the end of the message.
    `from_response` marks such an error ambiguous. A BSP's symbolic code is read before any
    text, so a row it chose stands.
    """
    if rule.names:
        return False
    for row in BY_CODE.get(code, ()) if code is not None else TEXT_RULES:
        if row is rule:
            return False
        if (subcode_lost and row.subcodes is not None) or (text_lost and row.messages):
            return True
    return False
