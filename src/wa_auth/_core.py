"""The sans-I/O core: build each endpoint's request, parse its answer, run the auth flow.

Every endpoint is a generator *flow* that yields effects (`GetToken`, `Send`) and receives
their results; the sync and async clients (and the fast path) are small interpreters of those
effects. Nothing here does I/O or imports an HTTP library, so the logic exists once.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, Union
from urllib.parse import quote, urlencode, urlsplit

import attrs

from wa_auth import _table
from wa_auth.errors import (
    ApiError,
    RequestValidationError,
    TokenSourceMalformedError,
    TransportError,
    UnknownApiError,
    WhatsAppError,
    from_response,
)
from wa_auth.events import ApiCallFailed, AuthFailed, AuthRetried, Events, TokenInvalidated
from wa_auth.models import (
    BusinessProfile,
    GranularScope,
    MediaContent,
    MediaInfo,
    MediaUpload,
    MessageTemplate,
    Page,
    PhoneNumber,
    SendResult,
    SuccessResult,
    TokenHealth,
    TokenInfo,
    TokenInfoError,
    Usage,
)

if TYPE_CHECKING:
    from wa_auth.providers import Token, TokenProvider, VerdictStore

T = TypeVar("T")

#: The Graph API version requests go to unless `api_version=` says otherwise.
DEFAULT_API_VERSION: Final = "v23.0"
DEFAULT_BASE_URL: Final = "https://graph.facebook.com"

MAX_TEXT_CHARS: Final = 4096
MAX_CAPTION_CHARS: Final = 1024
#: Meta documents 512 characters as the limit of `biz_opaque_callback_data`.
MAX_IDEMPOTENCY_KEY_CHARS: Final = 512
MEDIA_KINDS: Final = ("image", "document", "audio", "video", "sticker")
_RECIPIENT_RE: Final = re.compile(r"\+?[0-9]{7,15}")
#: Graph object ids (phone numbers, WABAs, media) are numeric: a token pasted as an id never
#: reaches a URL.
_ID_RE: Final = re.compile(r"[0-9]{1,32}")


# --- requests, responses, effects -------------------------------------------------------------


@attrs.frozen
class Request:
    """An immutable description of one HTTP request, without the token."""

    method: str
    url: str = attrs.field(repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = attrs.field(default=None, repr=False)
    #: Safe to send twice (no message can be duplicated): GET, DELETE.
    idempotent: bool = False
    #: The body can be sent again (always true for our in-memory bodies).
    resendable: bool = True
    #: The operation's name, for events and logs (`"send_text"`).
    operation: str = ""
    #: The phone number id or WABA id a routing provider picks the token by.
    route: str | None = None


@attrs.frozen
class Response:
    """What a shell hands back to the core: status, headers, body bytes."""

    status_code: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    content: bytes = attrs.field(repr=False)


@attrs.frozen
class GetToken:
    """Effect: ask a provider for the current token (`get_token` / `aget_token`).

    The provider is *provider* when given (an app token for `debug_token`), else the one the
    client's provider routes *route* (a phone number id or WABA id) to.
    """

    route: str | None = None
    provider: TokenProvider | None = attrs.field(default=None, repr=False)

    def provider_in(self, ctx: Context) -> TokenProvider:
        """Return the provider that performs this effect in *ctx*."""
        return self.provider if self.provider is not None else ctx.provider_for(self.route)


@attrs.frozen
class Send:
    """Effect: send *request* with *token* in the Authorization header."""

    request: Request
    token: Token


@attrs.frozen
class CheckVerdict:
    """Effect: ask the verdict store for the error that proved a token dead (`get` / `aget`)."""

    fingerprint: str


@attrs.frozen
class RecordVerdict:
    """Effect: record in the verdict store that a token is dead (`record` / `arecord`)."""

    fingerprint: str
    error: ApiError


@attrs.frozen
class ForgetVerdict:
    """Effect: drop the verdict on a token Meta has just called valid (`forget` / `aforget`)."""

    fingerprint: str


Effect = Union[GetToken, Send, CheckVerdict, RecordVerdict, ForgetVerdict]  # noqa: UP007 - 3.10
Flow = Generator[Effect, Any, T]


def auth_headers(request: Request, token: Token) -> dict[str, str]:
    """Return the request's headers plus `Authorization: Bearer ...`; nowhere else.

    Raises:
        TokenSourceMalformedError: The token holds a character an HTTP header cannot carry
            (a byte-order mark, a zero-width space): httpx would raise a bare
            `UnicodeEncodeError` quoting `Bearer <token>`, aiohttp would send it as UTF-8.
    """
    value = token.reveal()
    if not value.isascii():  # 10 ns; the providers reject such tokens when they load them
        raise _unsendable(token)
    headers = dict(request.headers)
    headers["Authorization"] = "Bearer " + value
    return headers


def _unsendable(token: Token) -> TokenSourceMalformedError:
    value = token.reveal()
    position = next(i for i, c in enumerate(value) if not c.isascii())
    return TokenSourceMalformedError(
        f"the token {token.fingerprint} from {token.source} holds a non-ASCII character "
        f"(U+{ord(value[position]):04X} at position {position}), which no HTTP header can "
        "carry: fix the source (a byte-order mark or a zero-width space pasted with the token?)",
        source=token.source,
    )


# --- the context the flows run in ---------------------------------------------------------------


class TTLCache(Generic[T]):
    """A tiny per-client cache of values by key, each kept for *ttl* seconds (no I/O)."""

    def __init__(self, ttl: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._monotonic = monotonic
        self._items: dict[str, tuple[float, T]] = {}

    def get(self, key: str) -> T | None:
        """Return the value cached under *key*, or None when absent or expired."""
        item = self._items.get(key)
        if item is None or self._monotonic() >= item[0]:
            return None
        return item[1]

    def put(self, key: str, value: T) -> None:
        """Cache *value* under *key* for `ttl` seconds (replacing the oldest beyond 64 keys)."""
        if len(self._items) >= 64:
            self._items.pop(next(iter(self._items)))
        self._items[key] = (self._monotonic() + self.ttl, value)


@attrs.frozen
class Context:
    """Everything a flow needs from the client: addresses, defaults, provider, events."""

    provider: TokenProvider
    events: Events
    base_url: str = DEFAULT_BASE_URL
    api_version: str = DEFAULT_API_VERSION
    phone_number_id: str | None = None
    business_account_id: str | None = None
    consumer: str | None = None
    json_headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    #: Where dead tokens are remembered; None: nowhere (no verdict effects are yielded).
    verdicts: VerdictStore | None = None
    #: A provider of an app token for `token_health` (`debug_token` is then asked with it).
    app_token_provider: TokenProvider | None = None
    #: `token_health` results by token fingerprint.
    health_cache: TTLCache[TokenHealth] = attrs.field(
        factory=lambda: TTLCache(300.0), eq=False, repr=False
    )

    #: Messages URLs by phone number id: built once, not per send.
    _messages_urls: dict[str, str] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def messages_url(self, phone: str) -> str:
        """Return the `/{phone}/messages` URL, cached per phone number id."""
        url = self._messages_urls.get(phone)
        if url is None:
            if len(self._messages_urls) >= 1024:  # many per-call senders: stay bounded
                self._messages_urls.clear()
            url = self._messages_urls[phone] = self.url(phone, "messages")
        return url

    def provider_for(self, route: str | None) -> TokenProvider:
        """Return the provider for a call routed by *route* (phone number id or WABA id).

        A provider with a `provider_for(route)` method (`RoutingTokenProvider`) picks one per
        route; any other provider serves every route.
        """
        select = getattr(self.provider, "provider_for", None)
        return self.provider if select is None else select(route)

    def url(self, *parts: str, query: Mapping[str, Any] | None = None) -> str:
        """Return `{base_url}/{api_version}/{parts...}` with an encoded query."""
        path = "/".join(quote(p, safe="") for p in parts)
        url = f"{self.base_url}/{self.api_version}/{path}"
        if query:
            items = {k: v for k, v in query.items() if v is not None}
            if items:
                url += "?" + urlencode(items)
        return url

    def phone(self, override: str | None) -> str:
        """Return the phone number id of a call: the per-call override or the client's."""
        value = override if override is not None else self.phone_number_id
        if value is None:
            raise RequestValidationError(
                "phone_number_id is required: pass it to the client or to the call"
            )
        return _check_id("phone_number_id", value)

    def waba(self) -> str:
        """Return the WhatsApp Business Account id, or fail before any request."""
        if self.business_account_id is None:
            raise RequestValidationError(
                "business_account_id is required for this call: pass it to the client"
            )
        return _check_id("business_account_id", self.business_account_id)


def _check_id(name: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise RequestValidationError(
            f"{name} must be a Graph object id (digits), got {_describe(value)}"
        )
    return value


def _describe(value: object) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return repr(shown) if value else "an empty string"
    return f"a {type(value).__name__}"


# --- the call flow: token, send, classify, invalidate-and-retry-once --------------------------


def call(
    ctx: Context,
    request: Request,
    parse: Callable[[Response], T],
    token: Token | None = None,
    provider: TokenProvider | None = None,
    *,
    trust_verdict: bool = True,
) -> Flow[T]:
    """Send *request* and parse its answer; on a token-class failure retry once with a new token.

    A token with a verdict fails fast with the error that proved it dead: nothing is sent with
    it. A token-class failure is recorded as a verdict and the provider is asked to invalidate
    the token; if it then yields a different token (without a verdict) and the body can be
    re-sent, the request goes out once more. Never more than one auth retry; never a retry for
    permission, account-state, invalid-request or transient failures (those are the caller's
    to decide). *provider* overrides the routed provider (an app token for `debug_token`).
    *trust_verdict* False sends even with a verdict (a health check that asks Meta again).
    """
    first: ApiError | None = None
    error: ApiError | None = None
    verdict: ApiError | None = None
    try:
        if provider is None:
            provider = ctx.provider_for(request.route)
        if token is None:
            token = yield GetToken(request.route, provider)
        verdict = (yield from _verdict(ctx, token)) if trust_verdict else None
        if verdict is not None:
            # Known dead: tell the provider (a rotating one fails over), send nothing with it.
            _observe(provider, token, verdict)
            provider.invalidate(token, verdict)
            first = _revived(verdict)
            token = yield from _replacement(ctx, provider, request, token, first)
        while True:
            response = yield from _send(ctx, provider, request, token)
            if 200 <= response.status_code < 300:
                _observe(provider, token, None)
                return _parse_success(request, response, parse, token)
            error = _classify(ctx, request, response, token)
            _observe(provider, token, error)
            if error.category not in _table.TOKEN_CLASS:
                if first is not None:
                    raise error from first
                raise error
            if ctx.verdicts is not None:
                yield RecordVerdict(token.fingerprint, error)
            provider.invalidate(token, error)
            ctx.events.emit(
                TokenInvalidated(
                    consumer=ctx.consumer,
                    token_fingerprint=token.fingerprint,
                    category=error.category,
                )
            )
            if first is not None:
                raise error from first
            first = error
            token = yield from _replacement(ctx, provider, request, token, error)
    finally:
        # A raised error's traceback holds this frame, and the frame would hold the error: drop
        # the references, or every failed call leaves a cycle for the garbage collector.
        verdict = error = first = None


def _verdict(ctx: Context, token: Token) -> Flow[ApiError | None]:
    if ctx.verdicts is None:
        return None
    verdict: ApiError | None = yield CheckVerdict(token.fingerprint)
    return verdict


def _revived(verdict: ApiError) -> ApiError:
    """Return a copy of a stored verdict to raise: each raise gets its own traceback."""
    return copy.copy(verdict)


def _replacement(
    ctx: Context, provider: TokenProvider, request: Request, token: Token, error: ApiError
) -> Flow[Token]:
    """Return the provider's next token for the one auth retry, or raise *error*."""
    fresh: Token = yield GetToken(request.route, provider)
    if (
        fresh.fingerprint == token.fingerprint
        or not request.resendable
        or ((yield from _verdict(ctx, fresh)) is not None)
    ):
        try:
            raise error
        finally:
            del error  # no cycle through this frame (see `call`)
    ctx.events.emit(
        AuthRetried(
            consumer=ctx.consumer,
            token_fingerprint=token.fingerprint,
            new_token_fingerprint=fresh.fingerprint,
            operation=request.operation,
        )
    )
    return fresh


def _observe(provider: TokenProvider, token: Token, error: WhatsAppError | None) -> None:
    """Tell a provider that watches outcomes (a rotating one) how a call with *token* went."""
    observe = getattr(provider, "observe_outcome", None)
    if observe is not None:
        observe(token, error)


def _send(ctx: Context, provider: TokenProvider, request: Request, token: Token) -> Flow[Response]:
    try:
        response: Response = yield Send(request, token)
    except TransportError as exc:
        exc.with_token(token.reveal(), token.fingerprint)
        _emit_failure(ctx, request, exc)
        _observe(provider, token, exc)
        raise
    except RequestValidationError as exc:
        # A shell's own refusal (httpx.UnsupportedProtocol): its chained cause may quote the
        # request, so scrub the token from it too.
        exc.with_token(token.reveal(), token.fingerprint)
        raise
    return response


def _classify(ctx: Context, request: Request, response: Response, token: Token) -> ApiError:
    error = from_response(response.status_code, response.content, response.headers)
    error.with_token(token.reveal(), token.fingerprint)
    _emit_failure(ctx, request, error)
    return error


def _emit_failure(ctx: Context, request: Request, error: ApiError) -> None:
    if error.category in _AUTH_CATEGORIES:
        ctx.events.emit(
            AuthFailed(
                consumer=ctx.consumer,
                token_fingerprint=error.token_fingerprint,
                category=error.category,
                operation=request.operation,
                code=error.code,
                subcode=error.subcode,
                fbtrace_id=error.fbtrace_id,
                rule=error.rule,
                operator_action=error.operator_action,
            )
        )
    else:
        ctx.events.emit(
            ApiCallFailed(
                consumer=ctx.consumer,
                token_fingerprint=error.token_fingerprint,
                category=error.category,
                operation=request.operation,
                code=error.code,
                http_status=error.http_status,
                fbtrace_id=error.fbtrace_id,
                retryable=error.retryable,
                retry_after=error.retry_after,
                maybe_delivered=error.maybe_delivered,
            )
        )


_AUTH_CATEGORIES: Final = frozenset(
    {
        _table.TOKEN_EXPIRED,
        _table.TOKEN_REVOKED,
        _table.INSUFFICIENT_PERMISSION,
        _table.ACCOUNT_STATE,
    }
)


class _BadBodyError(Exception):
    """A 2xx answer whose body is not what the endpoint returns."""


def _parse_success(
    request: Request, response: Response, parse: Callable[[Response], T], token: Token
) -> T:
    try:
        return parse(response)
    except (_BadBodyError, ValueError, TypeError, KeyError, AttributeError) as exc:
        error = UnknownApiError(
            f"HTTP {response.status_code} answer to {request.operation} is not the expected "
            f"shape ({exc}); the request may have been accepted",
            http_status=response.status_code,
            maybe_delivered=not request.idempotent,
            rule=_table.UNKNOWN_RULE.id,
            usage=Usage.from_headers(response.headers),
        )
        error.with_token(token.reveal(), token.fingerprint)
        raise error from None


def _json(response: Response) -> dict[str, Any]:
    data = json.loads(response.content.decode())
    if not isinstance(data, dict):
        raise _BadBodyError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


# --- requests -----------------------------------------------------------------------------------


#: One configured encoder, instead of `json.dumps` building one per call.
_ENCODE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _post_json(
    ctx: Context, url: str, body: Mapping[str, Any], operation: str, route: str
) -> Request:
    return Request(
        "POST",
        url,
        ctx.json_headers,
        _ENCODE(body).encode(),
        idempotent=False,
        operation=operation,
        route=route,
    )


def _get(url: str, operation: str, route: str | None) -> Request:
    return Request("GET", url, idempotent=True, operation=operation, route=route)


# --- messages -----------------------------------------------------------------------------------


def _check_recipient(to: object) -> str:
    if not isinstance(to, str) or not _RECIPIENT_RE.fullmatch(to):
        raise RequestValidationError(
            "recipient 'to' must be 7-15 digits with an optional leading '+' "
            f"(international format, no spaces), got {_describe(to)}"
        )
    return to


def _check_text(name: str, value: object, limit: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RequestValidationError(f"{name} must be a string, got {_describe(value)}")
    if not allow_empty and not value.strip():
        raise RequestValidationError(f"{name} must not be empty")
    if len(value) > limit:
        raise RequestValidationError(
            f"{name} is {len(value)} characters; WhatsApp allows at most {limit}"
        )
    return value


def _check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise RequestValidationError(
            f"idempotency_key must be a non-empty string, got {_describe(key)}"
        )
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise RequestValidationError(
            f"idempotency_key is {len(key)} characters; Meta's biz_opaque_callback_data "
            f"allows at most {MAX_IDEMPOTENCY_KEY_CHARS}"
        )
    return key


def _message(
    ctx: Context,
    operation: str,
    to: object,
    kind: str,
    payload: Mapping[str, Any],
    idempotency_key: str | None,
    phone_number_id: str | None,
    extra: Mapping[str, Any] | None = None,
) -> Flow[SendResult]:
    phone = ctx.phone(phone_number_id)
    recipient = _check_recipient(to)
    key = _check_key(idempotency_key)
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient,
        "type": kind,
        kind: payload,
    }
    if extra:
        body.update(extra)
    if key is not None:
        body["biz_opaque_callback_data"] = key
    request = _post_json(ctx, ctx.messages_url(phone), body, operation, phone)
    return (yield from call(ctx, request, lambda r: _parse_send(r, key)))


def _parse_send(response: Response, key: str | None) -> SendResult:
    data = _json(response)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        raise _BadBodyError("no 'messages' list")
    first = messages[0]
    message_id = first.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise _BadBodyError("no message id")
    contacts = data.get("contacts")
    contact = contacts[0] if isinstance(contacts, list) and contacts else {}
    if not isinstance(contact, dict):
        contact = {}
    return SendResult(
        message_id=message_id,
        wa_id=_opt_str(contact.get("wa_id")),
        input=_opt_str(contact.get("input")),
        message_status=_opt_str(first.get("message_status")),
        idempotency_key=key,
        usage=Usage.from_headers(response.headers),
    )


def send_text(
    ctx: Context,
    to: str,
    text: str,
    *,
    preview_url: bool = False,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a text message (at most 4096 characters).

    Raises:
        RequestValidationError: Empty or too long text, or a malformed recipient; nothing sent.
        AuthError: The token or account cannot send (see its `category`).
    """
    body = _check_text("text", text, MAX_TEXT_CHARS)
    payload = {"preview_url": bool(preview_url), "body": body}
    return (
        yield from _message(ctx, "send_text", to, "text", payload, idempotency_key, phone_number_id)
    )


def send_template(
    ctx: Context,
    to: str,
    name: str,
    language: str,
    components: Sequence[Mapping[str, Any]] | None = None,
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send an approved message template, e.g. `("hello_world", "en_US")`."""
    _check_text("template name", name, 512)
    _check_text("template language", language, 32)
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components is not None:
        if isinstance(components, (str, bytes)) or not all(
            isinstance(c, Mapping) for c in components
        ):
            raise RequestValidationError("components must be a list of objects (dicts)")
        template["components"] = [dict(c) for c in components]
    return (
        yield from _message(
            ctx, "send_template", to, "template", template, idempotency_key, phone_number_id
        )
    )


def send_media(
    ctx: Context,
    to: str,
    kind: str,
    *,
    media_id: str | None = None,
    link: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send an image, document, audio, video or sticker, by uploaded `media_id` or by `link`."""
    if kind not in MEDIA_KINDS:
        raise RequestValidationError(
            f"unknown media kind {_describe(kind)}; expected one of {', '.join(MEDIA_KINDS)}"
        )
    if (media_id is None) == (link is None):
        raise RequestValidationError("pass exactly one of media_id or link")
    payload: dict[str, Any] = {}
    if media_id is not None:
        payload["id"] = _check_id("media_id", media_id)
    else:
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise RequestValidationError(f"link must be an http(s) URL, got {_describe(link)}")
        payload["link"] = link
    if caption is not None:
        if kind not in {"image", "document", "video"}:
            raise RequestValidationError(f"a {kind} cannot have a caption")
        payload["caption"] = _check_text("caption", caption, MAX_CAPTION_CHARS)
    if filename is not None:
        if kind != "document":
            raise RequestValidationError("only a document can have a filename")
        payload["filename"] = _check_text("filename", filename, 240)
    return (
        yield from _message(ctx, "send_media", to, kind, payload, idempotency_key, phone_number_id)
    )


def _item(value: Any, fields: tuple[str, ...], what: str) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if attrs.has(type(value)):
        return {k: v for k, v in attrs.asdict(value).items() if v is not None}
    if isinstance(value, (tuple, list)) and 1 < len(value) <= len(fields):
        return dict(zip(fields, value, strict=False))
    raise RequestValidationError(f"each {what} must be a dict or an ({', '.join(fields)}) tuple")


def send_interactive_buttons(
    ctx: Context,
    to: str,
    body: str,
    buttons: Sequence[Mapping[str, str] | tuple[str, str]],
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a message with 1-3 reply buttons, each `{"id": ..., "title": ...}` or `(id, title)`."""
    _check_text("body", body, MAX_CAPTION_CHARS)
    items = [_item(b, ("id", "title"), "button") for b in buttons]
    if not 1 <= len(items) <= 3:
        raise RequestValidationError(f"WhatsApp allows 1-3 reply buttons, got {len(items)}")
    for b in items:
        _check_text("button id", b.get("id"), 256)
        _check_text("button title", b.get("title"), 20)
    payload = {
        "type": "button",
        "body": {"text": body},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": b["id"], "title": b["title"]}} for b in items
            ]
        },
    }
    return (
        yield from _message(
            ctx, "send_interactive_buttons", to, "interactive", payload, idempotency_key,
            phone_number_id,
        )
    )  # fmt: skip


def send_interactive_list(
    ctx: Context,
    to: str,
    body: str,
    button: str,
    sections: Sequence[Mapping[str, Any]],
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a list message: *button* opens *sections* of rows (`{"title", "rows": [...]}`)."""
    _check_text("body", body, 4096)
    _check_text("button", button, 20)
    if isinstance(sections, (str, bytes)) or not 1 <= len(sections) <= 10:
        raise RequestValidationError("sections must be a list of 1-10 sections")
    out: list[dict[str, Any]] = []
    total = 0
    for section in sections:
        sec = _item(section, ("title", "rows"), "section")
        rows = [_item(r, ("id", "title", "description"), "row") for r in sec.get("rows") or ()]
        if not rows:
            raise RequestValidationError("each section needs at least one row")
        for row in rows:
            _check_text("row id", row.get("id"), 200)
            _check_text("row title", row.get("title"), 24)
            if row.get("description") is not None:
                _check_text("row description", row["description"], 72)
        total += len(rows)
        entry: dict[str, Any] = {"rows": rows}
        if sec.get("title") is not None:
            entry["title"] = _check_text("section title", sec["title"], 24)
        out.append(entry)
    if total > 10:
        raise RequestValidationError(f"WhatsApp allows at most 10 rows in all, got {total}")
    payload = {
        "type": "list",
        "body": {"text": body},
        "action": {"button": button, "sections": out},
    }
    return (
        yield from _message(
            ctx, "send_interactive_list", to, "interactive", payload, idempotency_key,
            phone_number_id,
        )
    )  # fmt: skip


def send_reaction(
    ctx: Context,
    to: str,
    message_id: str,
    emoji: str,
    *,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """React to *message_id* with *emoji*; an empty emoji removes the reaction."""
    _check_text("message_id", message_id, 256)
    _check_text("emoji", emoji, 16, allow_empty=True)
    payload = {"message_id": message_id, "emoji": emoji}
    return (
        yield from _message(
            ctx, "send_reaction", to, "reaction", payload, idempotency_key, phone_number_id
        )
    )


def send_location(
    ctx: Context,
    to: str,
    latitude: float,
    longitude: float,
    *,
    name: str | None = None,
    address: str | None = None,
    idempotency_key: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[SendResult]:
    """Send a location pin."""
    for label, value, bound in (("latitude", latitude, 90), ("longitude", longitude, 180)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not -bound <= value <= bound
        ):
            raise RequestValidationError(
                f"{label} must be a number in [-{bound}, {bound}], got {value!r}"
            )
    payload: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name is not None:
        payload["name"] = _check_text("name", name, 1000)
    if address is not None:
        payload["address"] = _check_text("address", address, 1000)
    return (
        yield from _message(
            ctx, "send_location", to, "location", payload, idempotency_key, phone_number_id
        )
    )


def mark_as_read(
    ctx: Context, message_id: str, *, phone_number_id: str | None = None
) -> Flow[SuccessResult]:
    """Mark an incoming message as read (blue ticks)."""
    phone = ctx.phone(phone_number_id)
    _check_text("message_id", message_id, 256)
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
    request = _post_json(ctx, ctx.messages_url(phone), body, "mark_as_read", phone)
    # Marking as read twice is harmless.
    request = attrs.evolve(request, idempotent=True)
    return (yield from call(ctx, request, _parse_success_flag))


def _parse_success_flag(response: Response) -> SuccessResult:
    data = _json(response)
    return SuccessResult(
        success=data.get("success") is True, usage=Usage.from_headers(response.headers)
    )


# --- media --------------------------------------------------------------------------------------


def _multipart(
    fields: Iterable[tuple[str, str]], file: tuple[str, str, bytes]
) -> tuple[str, bytes]:
    boundary = "wa-auth-" + os.urandom(12).hex()
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    filename, mime, data = file
    safe = filename.replace('"', "%22").replace("\r", "").replace("\n", "")
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
        f"Content-Type: {mime}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def upload_media(
    ctx: Context,
    data: bytes,
    mime_type: str,
    *,
    filename: str | None = None,
    phone_number_id: str | None = None,
) -> Flow[MediaUpload]:
    """Upload media bytes; returns the media id to send with `send_media(media_id=...)`."""
    phone = ctx.phone(phone_number_id)
    if not isinstance(data, (bytes, bytearray, memoryview)) or not bytes(data):
        raise RequestValidationError("data must be non-empty bytes")
    if not isinstance(mime_type, str) or "/" not in mime_type:
        raise RequestValidationError(
            f"mime_type must look like 'image/jpeg', got {_describe(mime_type)}"
        )
    name = filename or "upload." + mime_type.rsplit("/", 1)[-1].split(";", maxsplit=1)[0]
    content_type, body = _multipart(
        [("messaging_product", "whatsapp"), ("type", mime_type)], (name, mime_type, bytes(data))
    )
    request = Request(
        "POST",
        ctx.url(phone, "media"),
        (("Content-Type", content_type),),
        body,
        idempotent=False,
        operation="upload_media",
        route=phone,
    )
    return (yield from call(ctx, request, _parse_upload))


def _parse_upload(response: Response) -> MediaUpload:
    data = _json(response)
    media_id = data.get("id")
    if not media_id:
        raise _BadBodyError("no media id")
    return MediaUpload(media_id=str(media_id), usage=Usage.from_headers(response.headers))


def get_media_url(
    ctx: Context, media_id: str, *, phone_number_id: str | None = None
) -> Flow[MediaInfo]:
    """Return a media object's short-lived download URL (valid about 5 minutes) and metadata."""
    mid = _check_id("media_id", media_id)
    query = {"phone_number_id": phone_number_id} if phone_number_id is not None else None
    route = phone_number_id or ctx.phone_number_id
    request = _get(ctx.url(mid, query=query), "get_media_url", route)
    return (yield from call(ctx, request, _parse_media_info))


def _parse_media_info(response: Response) -> MediaInfo:
    data = _json(response)
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise _BadBodyError("no media url")
    size = data.get("file_size")
    return MediaInfo(
        media_id=str(data.get("id", "")),
        url=url,
        mime_type=_opt_str(data.get("mime_type")),
        sha256=_opt_str(data.get("sha256")),
        file_size=int(size) if size is not None else None,
        usage=Usage.from_headers(response.headers),
    )


#: Hosts Meta serves media downloads from; the token is sent to these and to base_url's host.
MEDIA_HOST_SUFFIXES: Final = (".fbsbx.com", ".facebook.com", ".fbcdn.net", ".whatsapp.net")


def _trusted_media_host(ctx: Context, url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in {"https", "http"} or not host:
        return False
    if host == (urlsplit(ctx.base_url).hostname or "").lower():
        return True
    return parts.scheme == "https" and host.endswith(MEDIA_HOST_SUFFIXES)


def download_media(
    ctx: Context, media_id: str, *, phone_number_id: str | None = None
) -> Flow[MediaContent]:
    """Download a media object's bytes: look up its URL, then fetch it with the same token."""
    info = yield from get_media_url(ctx, media_id, phone_number_id=phone_number_id)
    if not _trusted_media_host(ctx, info.url):
        # The bearer token goes with the download: never to a host Meta would not use.
        raise UnknownApiError(
            f"refusing to send the access token to the media URL's host "
            f"{urlsplit(info.url).hostname!r}: not Meta's and not base_url's",
            rule=_table.UNKNOWN_RULE.id,
        )
    request = Request(
        "GET",
        info.url,
        idempotent=True,
        operation="download_media",
        route=phone_number_id or ctx.phone_number_id,
    )
    content = yield from call(ctx, request, lambda r: r.content)
    return MediaContent(
        media_id=info.media_id or media_id,
        content=content,
        mime_type=info.mime_type,
        sha256=info.sha256,
    )


def delete_media(
    ctx: Context, media_id: str, *, phone_number_id: str | None = None
) -> Flow[SuccessResult]:
    """Delete an uploaded media object."""
    mid = _check_id("media_id", media_id)
    query = {"phone_number_id": phone_number_id} if phone_number_id is not None else None
    request = Request(
        "DELETE",
        ctx.url(mid, query=query),
        idempotent=True,
        operation="delete_media",
        route=phone_number_id or ctx.phone_number_id,
    )
    return (yield from call(ctx, request, _parse_success_flag))


# --- phone numbers, profile, templates ------------------------------------------------------

_PHONE_FIELDS: Final = (
    "id,display_phone_number,verified_name,quality_rating,code_verification_status,"
    "platform_type,throughput,name_status"
)


def _phone_from(data: Mapping[str, Any], usage: Usage) -> PhoneNumber:
    throughput = data.get("throughput")
    level = throughput.get("level") if isinstance(throughput, Mapping) else None
    return PhoneNumber(
        id=str(data["id"]),
        display_phone_number=_opt_str(data.get("display_phone_number")),
        verified_name=_opt_str(data.get("verified_name")),
        quality_rating=_opt_str(data.get("quality_rating")),
        code_verification_status=_opt_str(data.get("code_verification_status")),
        platform_type=_opt_str(data.get("platform_type")),
        throughput_level=_opt_str(level),
        name_status=_opt_str(data.get("name_status")),
        usage=usage,
    )


def get_phone_number(ctx: Context, *, phone_number_id: str | None = None) -> Flow[PhoneNumber]:
    """Return the business phone number's details (display number, quality, name status...)."""
    phone = ctx.phone(phone_number_id)
    request = _get(ctx.url(phone, query={"fields": _PHONE_FIELDS}), "get_phone_number", phone)
    return (
        yield from call(
            ctx, request, lambda r: _phone_from(_json(r), Usage.from_headers(r.headers))
        )
    )


def _paged(response: Response) -> tuple[list[Any], str | None, Usage]:
    data = _json(response)
    items = data.get("data")
    if not isinstance(items, list):
        raise _BadBodyError("no 'data' list")
    paging = data.get("paging")
    after = None
    if isinstance(paging, Mapping) and paging.get("next"):
        cursors = paging.get("cursors")
        if isinstance(cursors, Mapping):
            after = _opt_str(cursors.get("after"))
    return items, after, Usage.from_headers(response.headers)


def list_phone_numbers(
    ctx: Context, *, limit: int | None = None, after: str | None = None
) -> Flow[Page[PhoneNumber]]:
    """List the phone numbers of the WhatsApp Business Account (`business_account_id`)."""
    waba = ctx.waba()
    url = ctx.url(
        waba, "phone_numbers", query={"fields": _PHONE_FIELDS, "limit": limit, "after": after}
    )
    request = _get(url, "list_phone_numbers", waba)

    def parse(r: Response) -> Page[PhoneNumber]:
        items, cursor, usage = _paged(r)
        return Page(tuple(_phone_from(i, usage) for i in items), cursor, usage)

    return (yield from call(ctx, request, parse))


_PROFILE_FIELDS: Final = "about,address,description,email,profile_picture_url,websites,vertical"


def get_business_profile(
    ctx: Context, *, phone_number_id: str | None = None
) -> Flow[BusinessProfile]:
    """Return the WhatsApp business profile of the phone number."""
    phone = ctx.phone(phone_number_id)
    url = ctx.url(phone, "whatsapp_business_profile", query={"fields": _PROFILE_FIELDS})
    request = _get(url, "get_business_profile", phone)

    def parse(r: Response) -> BusinessProfile:
        items, _, usage = _paged(r)
        data = items[0] if items and isinstance(items[0], Mapping) else {}
        websites = data.get("websites") or ()
        return BusinessProfile(
            about=_opt_str(data.get("about")),
            address=_opt_str(data.get("address")),
            description=_opt_str(data.get("description")),
            email=_opt_str(data.get("email")),
            profile_picture_url=_opt_str(data.get("profile_picture_url")),
            websites=tuple(str(w) for w in websites),
            vertical=_opt_str(data.get("vertical")),
            usage=usage,
        )

    return (yield from call(ctx, request, parse))


def list_templates(
    ctx: Context, *, limit: int | None = None, after: str | None = None
) -> Flow[Page[MessageTemplate]]:
    """List the message templates of the WhatsApp Business Account, one page at a time."""
    waba = ctx.waba()
    url = ctx.url(waba, "message_templates", query={"limit": limit, "after": after})
    request = _get(url, "list_templates", waba)

    def parse(r: Response) -> Page[MessageTemplate]:
        items, cursor, usage = _paged(r)
        templates = tuple(
            MessageTemplate(
                id=str(t.get("id", "")),
                name=str(t.get("name", "")),
                language=_opt_str(t.get("language")),
                status=_opt_str(t.get("status")),
                category=_opt_str(t.get("category")),
                components=tuple(t.get("components") or ()),
            )
            for t in items
            if isinstance(t, Mapping)
        )
        return Page(templates, cursor, usage)

    return (yield from call(ctx, request, parse))


# --- debug_token --------------------------------------------------------------------------------


def debug_token(ctx: Context, input_token: str | None = None) -> Flow[TokenInfo]:
    """Ask Meta what it knows about a token (the client's own when *input_token* is None).

    An invalid inspected token is a result (`is_valid=False` with `error`), not an exception.
    """
    if input_token is not None and (not isinstance(input_token, str) or not input_token.strip()):
        raise RequestValidationError("input_token must be a non-empty string")
    token: Token = yield GetToken(ctx.phone_number_id)
    inspected = input_token if input_token is not None else token.reveal()
    request = Request(
        "GET",
        ctx.url("debug_token", query={"input_token": inspected}),
        idempotent=True,
        # The URL carries the inspected token: a retry with another token would inspect the
        # wrong one when the client inspects itself.
        resendable=input_token is not None,
        operation="debug_token",
        route=ctx.phone_number_id,
    )
    return (yield from call(ctx, request, _parse_token_info, token=token))


def _parse_token_info(response: Response) -> TokenInfo:
    data = _json(response).get("data")
    if not isinstance(data, Mapping):
        raise _BadBodyError("no 'data' object")
    err = data.get("error")
    info_error = None
    if isinstance(err, Mapping):
        info_error = TokenInfoError(
            code=_int_or_none(err.get("code")),
            subcode=_int_or_none(err.get("subcode", err.get("error_subcode"))),
            message=str(err.get("message", "")),
        )
    granular = tuple(
        GranularScope(
            scope=str(g.get("scope", "")),
            target_ids=tuple(str(t) for t in g.get("target_ids") or ()),
        )
        for g in data.get("granular_scopes") or ()
        if isinstance(g, Mapping)
    )
    return TokenInfo(
        is_valid=data.get("is_valid") is True,
        app_id=_opt_str(data.get("app_id")),
        application=_opt_str(data.get("application")),
        type=_opt_str(data.get("type")),
        user_id=_opt_str(data.get("user_id")),
        expires_at=_int_or_none(data.get("expires_at")) or 0,
        data_access_expires_at=_int_or_none(data.get("data_access_expires_at")) or 0,
        issued_at=_int_or_none(data.get("issued_at")),
        scopes=tuple(str(s) for s in data.get("scopes") or ()),
        granular_scopes=granular,
        error=info_error,
        usage=Usage.from_headers(response.headers),
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- token health -------------------------------------------------------------------------------


def token_health(ctx: Context, *, refresh: bool = False) -> Flow[TokenHealth]:
    """Return what Meta says about the client's token, cached per token for a few minutes.

    `debug_token` is asked with the app token of `app_token_provider` when the client has one,
    else with the token itself. A token with a verdict (and no app token to ask with) is
    reported invalid without any request, unless *refresh* asks Meta again. An expired or
    revoked token is reported with its `error_category`, and remembered as a verdict, so sends
    fail fast; a token Meta calls valid on a fresh check loses any verdict it had.

    Args:
        refresh: Ignore the cache (and any verdict) and ask Meta now.

    Returns:
        The `TokenHealth` report; an invalid token is a report, not an exception.

    Raises:
        TokenUnavailableError: The provider could not produce the token.
        ApiError: Meta could not be asked (a transport failure, the app token's own failure).
    """
    token: Token = yield GetToken(ctx.phone_number_id)
    if not refresh:
        cached = ctx.health_cache.get(token.fingerprint)
        if cached is not None:
            return cached
    query = {"input_token": token.reveal()}
    if ctx.app_token_provider is not None:
        request = Request(
            "GET",
            ctx.url("debug_token", query=query),
            idempotent=True,
            operation="token_health",
        )
        info = yield from call(ctx, request, _parse_token_info, provider=ctx.app_token_provider)
        health = TokenHealth.from_info(info, token.fingerprint, ctx.business_account_id)
        if not info.is_valid and info.error is not None:
            error = _info_error(info.error, token)
            health = attrs.evolve(health, error_category=error.category)
            if error.category in _table.TOKEN_CLASS and ctx.verdicts is not None:
                yield RecordVerdict(token.fingerprint, error)
    else:
        request = Request(
            "GET",
            ctx.url("debug_token", query=query),
            idempotent=True,
            resendable=False,  # the URL carries the token itself
            operation="token_health",
            route=ctx.phone_number_id,
        )
        try:
            info = yield from call(
                ctx, request, _parse_token_info, token=token, trust_verdict=not refresh
            )
        except ApiError as exc:
            if exc.category not in _table.TOKEN_CLASS:
                raise
            health = TokenHealth.from_error(exc, token.fingerprint)
        else:
            health = TokenHealth.from_info(info, token.fingerprint, ctx.business_account_id)
    if health.valid and refresh and ctx.verdicts is not None:
        yield ForgetVerdict(token.fingerprint)
    ctx.health_cache.put(token.fingerprint, health)
    return health


def _info_error(info_error: TokenInfoError, token: Token) -> ApiError:
    """Classify `debug_token`'s `data.error` as the error a call with that token would get."""
    body = {
        "error": {
            "message": info_error.message,
            "type": "OAuthException",
            "code": info_error.code,
            "error_subcode": info_error.subcode,
        }
    }
    # Meta answers a call made with such a token with 401 and this error object.
    error = from_response(401, _ENCODE(body).encode(), {})
    error.with_token(token.reveal(), token.fingerprint)
    return error
