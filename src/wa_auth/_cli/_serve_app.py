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
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import IO, Any

import attrs
from aiohttp import web

from wa_auth import _json_input as json_input
from wa_auth import _table
from wa_auth._cli import _check, _classify, _codes, _state
from wa_auth._cli._outbox import row_line
from wa_auth._cli._output import (
    access_line,
    bad_line,
    batch_line,
    crashed_line,
    delivery_line,
    error_object,
    fill_defaults,
    not_sent_line,
    refused_line,
    timed_out_line,
    write,
)
from wa_auth._cli._send import parse_item
from wa_auth._cli._serve_http import (
    DEFAULT_ROWS,
    METHODS,
    OPEN_ROUTE,
    ROUTES,
    Answer,
    Handler,
    Rejected,
    Settings,
    failure,
    key_matches,
    presented_key,
    query_bool,
    query_int,
    read_warn_days,
    to_response,
    too_large,
)
from wa_auth._deadline import wait_for
from wa_auth._outbox_common import with_sender
from wa_auth._redact import named_secrets, scrub, secret_forms
from wa_auth._version import package_version
from wa_auth.errors import (
    ConfigurationError,
    OutboxError,
    RequestValidationError,
    WhatsAppError,
)
from wa_auth.intents import Intent

#: Seconds `/healthz` and `/readyz` wait for the outbox's writer: past the busy timeout (5 s),
#: so a lock another process holds is told apart from a writer that is stuck.
OUTBOX_CHECK_TIMEOUT = 6.0


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
        secrets: `(name, value)` of the values no answer may show (`_redact.named_secrets`);
            None: those of the process environment.
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
        secrets: Sequence[tuple[str, str]] | None = None,
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
        self._secrets = tuple(named_secrets(os.environ) if secrets is None else secrets)
        self._forms = tuple(form.encode() for form in secret_forms(self._secrets))
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
            "/state/clear": self._state_clear,
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
            answer = failure(400, _codes.USAGE_CATEGORY, exc.message, "serve/request")
        except RequestValidationError as exc:  # a query parameter the outbox refused
            answer = failure(400, exc.category, exc.message, "serve/request")
        except WhatsAppError as exc:
            answer = failure(503, exc.category, exc.message, "serve/failed")
        except Exception as exc:  # noqa: BLE001 - the contract: a JSON answer, never a traceback
            message = f"internal error (please report it): {type(exc).__name__}: {exc}"
            answer = failure(500, _codes.INTERNAL_CATEGORY, message, "serve/internal")
        response = to_response(answer)
        body = response.body
        if isinstance(body, bytes) and any(form in body for form in self._forms):
            # A provider names its token file in its errors: never a secret-named value.
            answer = attrs.evolve(answer, body=scrub(answer.body, self._secrets))
            response = to_response(answer)
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
                method=request.method if request.method in METHODS else "OTHER",
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
            raise too_large(limit)
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
            raw = await wait_for(request.read(), timeout)
        except asyncio.TimeoutError:
            raise Rejected(
                408,
                "transient",
                f"the request body did not arrive within {self.settings.request_timeout:g} s",
                rule="serve/read_timeout",
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise too_large(limit) from None
        except web.RequestPayloadError:
            # Its text may quote the body: the answer names the fault only.
            raise Rejected(
                400,
                "invalid_request",
                "the body could not be read: its Content-Encoding or chunked framing is malformed",
                rule="serve/json",
            ) from None
        if optional and not raw.strip():
            return {}
        try:
            return json_input.loads(raw)
        except json_input.JSONInputError as exc:
            message = str(exc) if exc.not_json else f"the body is refused: {exc}"
            raise Rejected(
                400,
                "invalid_request",
                message.replace("not valid JSON", "the body is not valid JSON", 1),
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
            # timeout stops stays there for a replay, from the number it was meant for.
            sender = self._defaults["phone_number_id"]
            await self.outbox.aenqueue_many(with_sender(intents, sender))
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
            except Exception as exc:  # noqa: BLE001 - a bug ends this intent, never the batch
                return crashed_line(item, line, exc)
            finally:
                self.in_flight -= 1
        return delivery_line(delivery, line)

    async def _check(self, request: web.Request, deadline: float) -> Answer:
        data = await self._json(request, deadline, optional=True)
        warn_days = read_warn_days(
            data.get("warn_days") if isinstance(data, dict) else None, request
        )
        line = await _check.acheck(self.client, self._options, warn_days, refresh=True)
        return Answer(body=line)

    async def _outbox_problem(self) -> OutboxError | None:
        """The outbox's problem (a full disk, a lock, a stuck writer), or None: it works."""
        check = getattr(self.outbox, "acheck", None)
        return await check(OUTBOX_CHECK_TIMEOUT) if check is not None else None

    async def _readyz(self, request: web.Request, _deadline: float) -> Answer:
        problem = await self._outbox_problem()
        if problem is not None:
            # Not ready: every send's `sending` would fail to be recorded, so none may start.
            return failure(503, problem.category, problem.message, "serve/outbox")
        warn_days = read_warn_days(None, request)
        refresh = query_bool(request, "refresh")
        line = await _check.acheck(self.client, self._options, warn_days, refresh=refresh)
        fingerprint = line["token_fingerprint"]
        if not refresh and fingerprint and line["valid"] is not None:
            dead = await self.client.verdicts.aget(fingerprint) is not None
            cleared = not dead and line["category"] in _table.TOKEN_CLASS
            if (line["valid"] and dead) or (not line["valid"] and cleared):
                # The cached health and the verdicts disagree: a send proved the token dead
                # since, or an operator cleared its verdict. Ask Meta now; a token it calls
                # valid loses its verdict.
                line = await _check.acheck(self.client, self._options, warn_days, refresh=True)
        ready = line["exit_code"] in {_codes.OK, _codes.EXPIRING}
        return Answer(status=200 if ready else 503, body=line)

    async def _state_clear(self, request: web.Request, deadline: float) -> Answer:
        data = await self._json(request, deadline, optional=True)
        fingerprints, numbers, everything = _state.clear_request(data)
        stores = _ServiceStores(self.client.verdicts, self.guard)
        cleared = await _state.aclear(stores, fingerprints, numbers, everything=everything)
        return Answer(body=_state.clear_line(self.settings.state, cleared))

    async def _classify(self, request: web.Request, deadline: float) -> Answer:
        data = await self._json(request, deadline)
        status = query_int(request, "status")
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
        limit = query_int(request, "limit")
        rows = await outbox.alist(
            query.get("state") or None,
            category=query.get("category") or None,
            consumer=query.get("consumer") or None,
            dead_letters=query_bool(request, "dead_letters"),
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
        outbox: dict[str, Any] | None = None
        problem = None
        if self.outbox is not None:
            problem = await self._outbox_problem()
            # No key is needed here: the kind only, the message (and the path) is /readyz's.
            outbox = {"ok": problem is None, "kind": problem.kind if problem else None}
        status = "alive" if self.stopping is None else "stopping"
        body = {
            "ok": problem is None,
            "status": "broken" if problem is not None else status,
            "version": package_version(),
            "pid": os.getpid(),
            "uptime": round(self._monotonic() - self._started, 3),
            "in_flight": self.in_flight,
            "requests": self.requests,
            "outbox": outbox,
        }
        return Answer(status=503 if problem is not None else 200, body=body)

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

        # The token's (cached) health and the outbox's counts are read at scrape time.
        body = await self.metrics.aexposition(client=self.client, outbox=self.outbox)
        return Answer(body=body, content_type=CONTENT_TYPE_LATEST)

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


@attrs.frozen
class _ServiceStores:
    """The service's stores for `_state.aclear`: the client's verdicts, the guard's pauses.

    A number is resumed through the guard, which reports it (`guard.sender_resumed`).
    """

    verdicts: Any
    guard: Any

    @property
    def pauses(self) -> Any:
        """The guard's pause store."""
        return self.guard.pauses

    def resume(self, phone_number_id: str) -> None:
        """Resume the number (blocking)."""
        self.guard.resume(phone_number_id)

    async def aresume(self, phone_number_id: str) -> None:
        """Resume the number."""
        await self.guard.aresume(phone_number_id)
