"""The HTTP plumbing of `wa-auth serve`: the routes' table, answers, refusals, query parsing.

The routes themselves are `Service` (`_app`); what every route goes through is `Front`
(`_front`); the settings and the API key are `_settings`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs
from aiohttp import web

from wa_auth._cli._output import (
    encode_line,
    http_error,
)
from wa_auth._redact import redact_text
from wa_auth.errors import (
    ConfigurationError,
)

#: The routes that answer without the API key: `/healthz` says only that the process is alive;
#: `/webhook` is Meta's, which proves itself by the signature (POST) or the verify token (GET).
OPEN_ROUTES: Final = frozenset({"/healthz", "/webhook"})
#: Every route and its method; any other method on these paths is a 405.
ROUTES: Final = {
    "/send": "POST",
    "/check": "POST",
    "/classify": "POST",
    "/outbox": "GET",
    "/outbox/replay": "POST",
    "/state/clear": "POST",
    "/healthz": "GET",
    "/readyz": "GET",
    "/metrics": "GET",
    "/webhook": "GET, POST",
    "/webhook/routes": "GET, POST",
}
#: The routes API's prefix: `DELETE /webhook/routes/{id}` removes the route *id*.
ROUTES_PREFIX: Final = "/webhook/routes/"
#: Methods the access log names; any other is logged as `OTHER` (it is the caller's text).
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: `GET /outbox` returns at most this many rows unless `limit` says otherwise.
DEFAULT_ROWS: Final = 100
JSON_TYPE: Final = "application/json; charset=utf-8"
TRUE: Final = frozenset({"1", "true", "yes", "on"})
FALSE: Final = frozenset({"0", "false", "no", "off", ""})
#: The extra headers of an answer that has none (read-only: one object for every answer).
NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


class Rejected(Exception):  # noqa: N818 - not an error of the caller's code: an HTTP answer
    """A request the service refuses; `Service._handle` answers it with *status* and JSON.

    It never leaves the service: it is the handlers' way to say "answer this instead".
    """

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        rule: str,
        operator_action: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = http_error(
            status, category, message, rule=rule, operator_action=operator_action
        )
        self.headers = dict(headers or {})


@attrs.frozen(kw_only=True)
class Answer:
    """What a handler answers: a status, a JSON object (or bytes), and what the log notes."""

    status: int = 200
    body: Mapping[str, Any] | bytes
    content_type: str = JSON_TYPE
    intents: int = 0
    headers: Mapping[str, str] = NO_HEADERS
    close: bool = False


Handler = Callable[[web.BaseRequest, float], Awaitable[Answer]]


def failure(status: int, category: str, message: str, rule: str) -> Answer:
    return Answer(status=status, body=http_error(status, category, redact_text(message), rule=rule))


def body_bytes(answer: Answer) -> bytes:
    """Return the bytes of *answer*'s body."""
    # A peer's text may hold what UTF-8 cannot encode (half a surrogate pair): encode_line.
    return answer.body if isinstance(answer.body, bytes) else encode_line(answer.body)


def to_response(answer: Answer, data: bytes) -> web.Response:
    """Return aiohttp's answer of *answer*, whose body's bytes are *data* (`body_bytes`)."""
    extra = answer.headers
    headers = (
        {"Content-Type": answer.content_type, **extra}
        if extra
        else {"Content-Type": answer.content_type}
    )
    response = web.Response(body=data, status=answer.status, headers=headers)
    if answer.close:
        # The rest of an oversized or stalled body is never read: the connection goes.
        response.force_close()
    return response


def route_id(request: web.BaseRequest) -> str | None:
    """Return the id of `DELETE /webhook/routes/{id}`, or None for any other request."""
    if request.method != "DELETE":
        return None
    path = request.path
    if not path.startswith(ROUTES_PREFIX):
        return None
    found = path[len(ROUTES_PREFIX) :]
    return found if found and "/" not in found else None


def too_large(limit: int) -> Rejected:
    return Rejected(
        413,
        "invalid_request",
        f"the body is over the {limit:,}-byte limit (--max-body): send smaller batches",
        rule="serve/size",
    )


def query_int(request: web.BaseRequest, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"?{name}= must be an integer, got {text[:40]!r}") from None


def query_bool(request: web.BaseRequest, name: str) -> bool:
    text = request.query.get(name, "").strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ConfigurationError(f"?{name}= must be true or false, got {text[:40]!r}")


def read_warn_days(value: object, request: web.BaseRequest) -> float | None:
    """Return `warn_days` from the JSON body, else from `?warn_days=`, else None."""
    if value is None:
        value = request.query.get("warn_days") or None
    if value is None:
        return None
    try:
        days = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        days = -1.0
    if not 0 <= days < float("inf") or isinstance(value, bool):
        raise ConfigurationError(f"warn_days must be a number of days >= 0, got {value!r:.40}")
    return days
