"""The aiohttp application of `wa-auth serve`: the routes, the API key, the body, the answers.

Every route goes through one wrapper (`Service._handle`): the API key (every route but
`/healthz`), the shutdown check, the handler, the mapping of a refusal or a failure to a JSON
answer, and the access-log line. A handler decides nothing itself: an intent goes to the
guard, a check to `_check.acheck`, an error JSON to `_classify.classify`, the outbox's rows to
the outbox, and each answer is one of the shapes of `wa_auth._cli._output`.

Imported by `wa_auth._cli._serve` only after it found aiohttp (the `serve` extra).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import IO, Any, Final

import attrs
from aiohttp import web

from wa_auth._cli import _check, _classify, _codes
from wa_auth._cli._outbox import row_line
from wa_auth._cli._output import (
    access_line,
    bad_line,
    batch_line,
    delivery_line,
    error_object,
    fill_defaults,
    http_error,
    not_sent_line,
    refused_line,
    timed_out_line,
    write,
)
from wa_auth._cli._send import parse_item
from wa_auth._redact import redact_text
from wa_auth._version import package_version
from wa_auth.errors import (
    ConfigurationError,
    OutboxError,
    RequestValidationError,
    WhatsAppError,
)
from wa_auth.intents import Intent

#: The one route that answers without the API key: it says only that the process is alive.
OPEN_ROUTE: Final = "/healthz"
#: Every route and its method; any other method on these paths is a 405.
ROUTES: Final = {
    "/send": "POST",
    "/check": "POST",
    "/classify": "POST",
    "/outbox": "GET",
    "/outbox/replay": "POST",
    "/healthz": "GET",
    "/readyz": "GET",
    "/metrics": "GET",
}
#: Methods the access log names; any other is logged as `OTHER` (it is the caller's text).
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: `GET /outbox` returns at most this many rows unless `limit` says otherwise.
DEFAULT_ROWS: Final = 100
_JSON: Final = "application/json; charset=utf-8"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def key_digest(key: str) -> bytes:
    """Return the SHA-256 digest of an API key: the service keeps only this, never the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def key_matches(presented: str | None, digest: bytes) -> bool:
    """Return whether *presented* is the key of *digest*, in constant time.

    Both sides are SHA-256 digests of equal length, so `hmac.compare_digest` takes the same
    time whatever the presented key's length or how much of it is right.
    """
    if presented is None:
        return False
    return hmac.compare_digest(key_digest(presented), digest)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """Return the key a request presents: `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    auth = headers.get("Authorization")
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("X-API-Key")
    return key.strip() if key is not None and key.strip() else None


@attrs.frozen(kw_only=True)
class Settings:
    """What `wa-auth serve` was told: where to listen, the key's digest and the limits.

    Args:
        host: The address to bind (loopback unless told otherwise).
        port: The port to bind; 0 picks a free one.
        key_digest: The SHA-256 digest of the API key (`key_digest`); the key itself is not kept.
        max_body: The largest request body accepted, in bytes.
        request_timeout: Seconds a request may take to arrive, and after which no send of it
            starts; a send that started always finishes.
        shutdown_timeout: Seconds SIGTERM waits for the requests in flight before it cancels them.
        concurrency: The most sends in flight at once, over every request.
        outbox: The outbox file, or None.
        state: The state file, or None.
    """

    host: str
    port: int
    key_digest: bytes = attrs.field(repr=False)
    max_body: int
    request_timeout: float
    shutdown_timeout: float
    concurrency: int
    outbox: str | None = None
    state: str | None = None


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
    content_type: str = _JSON
    intents: int = 0
    headers: Mapping[str, str] = attrs.field(factory=dict)
    close: bool = False


Handler = Callable[[web.Request, float], Awaitable[Answer]]


class Service:
    """The routes of `wa-auth serve` over one client, one guard and (optionally) one outbox.

    Args:
        settings: The listen address, the key's digest and the limits.
        client: The `FastAsyncWhatsAppClient`, on this event loop.
        guard: The guard every intent goes through (with the outbox, pauses and limiter).
        options: The client's options (`_config.client_options`): the default sender, the
            WABA and the consumer, which result lines and checks name.
        outbox: The outbox (the guard's), or None.
        metrics: A `PrometheusSubscriber` subscribed to the client's events, or None.
        log: Where the access-log lines go (stderr).
        monotonic: The interval clock of the timeouts.
        clock: The wall clock of the log lines.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any,
        guard: Any,
        options: Mapping[str, Any],
        outbox: Any = None,
        metrics: Any = None,
        log: IO[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.guard = guard
        self.outbox = outbox
        self.metrics = metrics
        self._options = dict(options)
        self._defaults = {k: options.get(k) for k in ("phone_number_id", "consumer")}
        self._log = sys.stderr if log is None else log
        self._monotonic = monotonic
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._started = monotonic()
        #: The signal's name once SIGTERM or SIGINT arrived: no new send starts.
        self.stopping: str | None = None
        self.in_flight = 0
        self.requests = 0

    def stop(self, signal_name: str) -> None:
        """Start no new send from now on; the sends in flight finish."""
        if self.stopping is None:
            self.stopping = signal_name

    # --- the application ------------------------------------------------------------------------

    def app(self) -> web.Application:
        """Return the aiohttp application: every route, and a JSON 404/405 for the rest."""
        app = web.Application(client_max_size=self.settings.max_body)
        handlers: dict[str, Handler] = {
            "/send": self._send,
            "/check": self._check,
            "/classify": self._classify,
            "/outbox": self._outbox,
            "/outbox/replay": self._replay,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
        }
        for path, method in ROUTES.items():
            app.router.add_route(method, path, self._endpoint(path, handlers[path]))
        app.router.add_route("*", "/{tail:.*}", self._endpoint("unmatched", self._unmatched))
        return app

    def _endpoint(self, route: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, route, handler)

        return endpoint

    async def _handle(self, request: web.Request, route: str, handler: Handler) -> web.Response:
        started = self._monotonic()
        deadline = started + self.settings.request_timeout
        try:
            if route != OPEN_ROUTE:
                self._admit(request)
            answer = await handler(request, deadline)
        except Rejected as exc:
            answer = Answer(
                status=exc.status,
                body=exc.body,
                headers=exc.headers,
                close=exc.status in {408, 413},
            )
        except ConfigurationError as exc:
            answer = _failure(400, _codes.USAGE_CATEGORY, exc.message, "serve/request")
        except RequestValidationError as exc:  # a query parameter the outbox refused
            answer = _failure(400, exc.category, exc.message, "serve/request")
        except WhatsAppError as exc:
            answer = _failure(503, exc.category, exc.message, "serve/failed")
        except Exception as exc:  # noqa: BLE001 - the contract: a JSON answer, never a traceback
            message = f"internal error (please report it): {type(exc).__name__}: {exc}"
            answer = _failure(500, _codes.INTERNAL_CATEGORY, message, "serve/internal")
        response = _response(answer)
        self.requests += 1
        self._access(request, route, answer, response, self._monotonic() - started)
        return response

    def _admit(self, request: web.Request) -> None:
        """Refuse a request without the API key, and any request once shutting down."""
        self._authorize(request)
        if self.stopping is not None:
            raise Rejected(
                503,
                "transient",
                f"the service is shutting down ({self.stopping}): send this request again "
                "when it is back",
                rule="serve/stopping",
            )

    def _authorize(self, request: web.Request) -> None:
        presented = presented_key(request.headers)
        if presented is None:
            message = "missing API key: send Authorization: Bearer KEY (or X-API-Key: KEY)"
        elif not key_matches(presented, self.settings.key_digest):
            message = "wrong API key"
        else:
            return
        raise Rejected(
            401,
            _codes.USAGE_CATEGORY,
            message,
            rule="serve/api_key",
            operator_action=(
                "Give the caller the key wa-auth serve was started with (WA_AUTH_API_KEY or "
                "--api-key-file), e.g. in an n8n Header Auth credential."
            ),
            headers={"WWW-Authenticate": 'Bearer realm="wa-auth"'},
        )

    def _access(
        self,
        request: web.Request,
        route: str,
        answer: Answer,
        response: web.Response,
        seconds: float,
    ) -> None:
        body = answer.body if isinstance(answer.body, Mapping) else {}
        write(
            access_line(
                ts=self._clock(),
                remote=request.remote,
                method=request.method if request.method in _METHODS else "OTHER",
                route=route,
                status=answer.status,
                seconds=seconds,
                request_bytes=request.content_length or 0,
                response_bytes=response.content_length or 0,
                intents=answer.intents,
                exit_code=body.get("exit_code"),
                category=body.get("category"),
            ),
            self._log,
        )

    # --- reading a body -------------------------------------------------------------------------

    async def _json(self, request: web.Request, deadline: float, *, optional: bool = False) -> Any:
        """Return the request's JSON body (`{}` for an optional body that is absent).

        Raises:
            Rejected: 413 for a body over the limit, 415 for another content type, 408 for a
                body that did not arrive in time, 400 for one that is not JSON.
        """
        limit = self.settings.max_body
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit)
        if not request.body_exists:
            if optional:
                return {}
            raise Rejected(
                400,
                "invalid_request",
                "the request has no body: send JSON",
                rule="serve/json",
            )
        mime = request.content_type
        if mime != "application/json" and not mime.endswith("+json"):
            raise Rejected(
                415,
                "invalid_request",
                f"send Content-Type: application/json, not {mime[:100]!r}",
                rule="serve/content_type",
            )
        timeout = max(0.0, deadline - self._monotonic())
        try:
            raw = await _within(request.read(), timeout)
        except asyncio.TimeoutError:
            raise Rejected(
                408,
                "transient",
                f"the request body did not arrive within {self.settings.request_timeout:g} s",
                rule="serve/read_timeout",
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(limit) from None
        if optional and not raw.strip():
            return {}
        try:
            return json.loads(raw, parse_constant=_no_constant)
        except ValueError as exc:
            raise Rejected(
                400,
                "invalid_request",
                f"the body is not valid JSON: {exc}",
                rule="serve/json",
            ) from None

    # --- the routes -----------------------------------------------------------------------------

    async def _send(self, request: web.Request, deadline: float) -> Answer:
        data = await self._json(request, deadline)
        if isinstance(data, list):
            values, batch = data, True
        elif isinstance(data, dict):
            values, batch = [data], False
        else:
            raise Rejected(
                400,
                "invalid_request",
                f"the body must be one intent (a JSON object) or a list of intents, not "
                f"{type(data).__name__}",
                rule="serve/body",
            )
        started = self._monotonic()
        items = [self._item(value, line) for line, value in enumerate(values, 1)]
        intents = [item for item in items if isinstance(item, Intent)]
        if self.outbox is not None and intents:
            # In the outbox (pending) before the first send: what a SIGTERM or the request's
            # timeout stops stays there for a replay.
            await self.outbox.aenqueue_many(intents)
        if not batch:
            # No task for the one intent of an n8n item: this is the per-item path.
            result = await self._one(1, items[0], deadline)
            return Answer(body=fill_defaults(result, self._defaults), intents=1)
        results = await asyncio.gather(
            *(self._one(line, item, deadline) for line, item in enumerate(items, 1))
        )
        lines = [fill_defaults(result, self._defaults) for result in results]
        body = batch_line(lines, self._monotonic() - started, interrupted=self.stopping is not None)
        return Answer(body=body, intents=len(lines))

    def _item(self, value: object, line: int) -> Intent | dict[str, Any]:
        item = parse_item(value, line)[1]
        no_sender = self._defaults["phone_number_id"] is None
        if isinstance(item, Intent) and item.phone_number_id is None and no_sender:
            return bad_line(
                "no sender: give the intent a phone_number_id, or start wa-auth serve "
                "with WA_PHONE_NUMBER_ID",
                line,
                item.idempotency_key,
            )
        return item

    async def _one(self, line: int, item: Intent | dict[str, Any], deadline: float) -> Any:
        if not isinstance(item, Intent):
            return item
        queued = self.outbox is not None
        async with self._slots:
            if self.stopping is not None:
                return not_sent_line(item, line, queued=queued, signal_name=self.stopping)
            if self._monotonic() >= deadline:
                seconds = self.settings.request_timeout
                return timed_out_line(item, line, queued=queued, seconds=seconds)
            self.in_flight += 1
            try:
                delivery = await self.guard.asend(item)
            except OutboxError as exc:
                return refused_line(error_object(exc), item, line)
            finally:
                self.in_flight -= 1
        return delivery_line(delivery, line)

    async def _check(self, request: web.Request, deadline: float) -> Answer:
        data = await self._json(request, deadline, optional=True)
        warn_days = _warn_days(data.get("warn_days") if isinstance(data, dict) else None, request)
        line = await _check.acheck(self.client, self._options, warn_days, refresh=True)
        return Answer(body=line)

    async def _readyz(self, request: web.Request, _deadline: float) -> Answer:
        warn_days = _warn_days(None, request)
        line = await _check.acheck(self.client, self._options, warn_days, refresh=False)
        fingerprint = line["token_fingerprint"]
        if line["valid"] and fingerprint and await self.client.verdicts.aget(fingerprint):
            # A send proved the token dead since its health was cached: ask Meta now.
            line = await _check.acheck(self.client, self._options, warn_days, refresh=True)
        ready = line["exit_code"] in {_codes.OK, _codes.EXPIRING}
        return Answer(status=200 if ready else 503, body=line)

    async def _classify(self, request: web.Request, deadline: float) -> Answer:
        data = await self._json(request, deadline)
        status = _query_int(request, "status")
        return Answer(body=_classify.line(*_classify.classify(data, status)))

    def _the_outbox(self) -> Any:
        if self.outbox is None:
            raise Rejected(
                404,
                _codes.USAGE_CATEGORY,
                "this service has no outbox: start wa-auth serve with --outbox PATH (or "
                "WA_AUTH_OUTBOX)",
                rule="serve/no_outbox",
            )
        return self.outbox

    async def _outbox(self, request: web.Request, _deadline: float) -> Answer:
        outbox = self._the_outbox()
        query = request.query
        limit = _query_int(request, "limit")
        rows = await outbox.alist(
            query.get("state") or None,
            category=query.get("category") or None,
            consumer=query.get("consumer") or None,
            dead_letters=_query_bool(request, "dead_letters"),
            limit=DEFAULT_ROWS if limit is None else limit,
        )
        stats = await outbox.astats()
        body = {
            "ok": True,
            "exit_code": _codes.OK,
            "outbox": self.settings.outbox,
            "stats": stats.to_dict(),
            "rows": [row_line(row) for row in rows],
        }
        return Answer(body=body)

    async def _replay(self, request: web.Request, deadline: float) -> Answer:
        outbox = self._the_outbox()
        data = await self._json(request, deadline, optional=True)
        if not isinstance(data, dict) or set(data) - {"limit", "include_maybe_delivered"}:
            raise Rejected(
                400,
                "invalid_request",
                'the body is optional: {"limit": N, "include_maybe_delivered": true|false}',
                rule="serve/body",
            )
        include = data.get("include_maybe_delivered", False)
        if not isinstance(include, bool):
            raise ConfigurationError("include_maybe_delivered must be true or false")
        started = self._monotonic()
        replay = await outbox.areplay(
            self.guard,
            include_maybe_delivered=include,
            limit=data.get("limit"),
            concurrency=self.settings.concurrency,
        )
        lines = [
            fill_defaults(delivery_line(delivery, line), self._defaults)
            for line, delivery in enumerate(replay.deliveries, 1)
        ]
        body = batch_line(
            lines, self._monotonic() - started, interrupted=False, skipped=replay.skipped
        )
        return Answer(body=body, intents=len(lines))

    async def _healthz(self, _request: web.Request, _deadline: float) -> Answer:
        body = {
            "ok": True,
            "status": "alive" if self.stopping is None else "stopping",
            "version": package_version(),
            "pid": os.getpid(),
            "uptime": round(self._monotonic() - self._started, 3),
            "in_flight": self.in_flight,
            "requests": self.requests,
        }
        return Answer(body=body)

    async def _metrics(self, _request: web.Request, _deadline: float) -> Answer:
        if self.metrics is None:
            raise Rejected(
                501,
                _codes.USAGE_CATEGORY,
                "GET /metrics needs prometheus_client: pip install 'wa-auth[prometheus]' "
                "and restart wa-auth serve",
                rule="serve/metrics",
            )
        from prometheus_client import CONTENT_TYPE_LATEST

        return Answer(body=self.metrics.exposition(), content_type=CONTENT_TYPE_LATEST)

    async def _unmatched(self, request: web.Request, _deadline: float) -> Answer:
        method = ROUTES.get(request.path)
        if method is not None:
            raise Rejected(
                405,
                _codes.USAGE_CATEGORY,
                f"{request.path} answers {method} only",
                rule="serve/method",
                headers={"Allow": method},
            )
        raise Rejected(
            404,
            _codes.USAGE_CATEGORY,
            f"no such route; the routes are {', '.join(sorted(ROUTES))}",
            rule="serve/route",
        )


async def _within(read: Coroutine[Any, Any, bytes], seconds: float) -> bytes:
    """Await *read* for at most *seconds* (`asyncio.TimeoutError` after that)."""
    if sys.version_info >= (3, 11):
        # No task per request, unlike wait_for before 3.12: this is every request's path.
        async with asyncio.timeout(seconds):
            return await read
    return await asyncio.wait_for(read, seconds)  # pragma: no cover - Python 3.10


def _failure(status: int, category: str, message: str, rule: str) -> Answer:
    return Answer(status=status, body=http_error(status, category, redact_text(message), rule=rule))


def _response(answer: Answer) -> web.Response:
    if isinstance(answer.body, bytes):
        data = answer.body
    else:
        data = json.dumps(answer.body, ensure_ascii=False, allow_nan=False).encode()
    headers = {"Content-Type": answer.content_type, **answer.headers}
    response = web.Response(body=data, status=answer.status, headers=headers)
    if answer.close:
        # The rest of an oversized or stalled body is never read: the connection goes.
        response.force_close()
    return response


def _too_large(limit: int) -> Rejected:
    return Rejected(
        413,
        "invalid_request",
        f"the body is over the {limit:,}-byte limit (--max-body): send smaller batches",
        rule="serve/size",
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _query_int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"?{name}= must be an integer, got {text[:40]!r}") from None


def _query_bool(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"?{name}= must be true or false, got {text[:40]!r}")


def _warn_days(value: object, request: web.Request) -> float | None:
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
