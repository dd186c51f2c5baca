"""The routes of `wa-auth serve` on aiohttp's low-level server: one handler each.

Every route goes through `Front._handle` (`_front`): the API key, the shutdown check, the
mapping of a refusal or a failure to a JSON answer, the access-log line. A handler decides
nothing itself: an intent goes to the guard, a check to `_check.acheck`, an error JSON to
`_classify.classify`, the outbox's rows to the outbox, and each answer is one of the shapes
of `wa_auth._cli._output`.

Imported by `_process` only after it found aiohttp (the `serve` extra).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import Any

import attrs
from aiohttp import web

from wa_auth import _table
from wa_auth._cli import _check, _classify, _codes, _state
from wa_auth._cli._input import parse_item
from wa_auth._cli._outbox import row_line
from wa_auth._cli._output import (
    bad_line,
    batch_line,
    crashed_line,
    delivery_line,
    error_object,
    fill_defaults,
    not_sent_line,
    refused_line,
    timed_out_line,
)
from wa_auth._cli._serve._hooks_app import HookRoutes
from wa_auth._cli._serve._http import (
    DEFAULT_ROWS,
    ROUTES,
    Answer,
    Handler,
    Rejected,
    failure,
    query_bool,
    query_int,
    read_warn_days,
    route_id,
)
from wa_auth._version import package_version
from wa_auth.errors import (
    ConfigurationError,
    OutboxError,
)
from wa_auth.intents import Intent
from wa_auth.outbox._common import with_sender

#: Seconds `/healthz` and `/readyz` wait for the outbox's writer: past the busy timeout (5 s),
#: so a lock another process holds is told apart from a writer that is stuck.
OUTBOX_CHECK_TIMEOUT = 6.0


class Service(HookRoutes):
    """The routes of `wa-auth serve` over one client, one guard and (optionally) one outbox.

    Takes the arguments of `Front`.
    """

    def routes(self) -> dict[tuple[str, str], tuple[str, Handler]]:
        """Return the routes: `(method, path)` to the route's name (its pattern) and handler."""
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
        table = {
            (method, path): (path, handlers[path])
            for path, method in ROUTES.items()
            if path in handlers
        }
        hooks: dict[tuple[str, str], Handler] = {
            ("GET", "/webhook"): self._webhook_get,
            ("POST", "/webhook"): self._webhook_post,
            ("GET", "/webhook/routes"): self._routes_get,
            ("POST", "/webhook/routes"): self._routes_post,
        }
        table.update({(method, path): (path, handler) for (method, path), handler in hooks.items()})
        return table

    def unmatched(self) -> tuple[str, Handler]:
        """Return the route of a request no route matches: a JSON 404, or 405 with `Allow`."""
        return ("unmatched", self._unmatched)

    def server(self) -> web.Server:
        """Return aiohttp's low-level server over the routes, with a JSON 404/405 for the rest.

        No `web.Application`: its router, match info and per-request `Request` cost every
        request more than a dictionary lookup (serve's routes are fixed paths, and one
        pattern, `DELETE /webhook/routes/{id}`). `Expect: 100-continue` is answered here as
        aiohttp's router would (`Front._handle`).
        """
        loop = asyncio.get_running_loop()
        table = self.routes()
        max_body = self.settings.max_body
        unmatched = ("unmatched", self._unmatched)
        deleting = ("/webhook/routes/{id}", self._routes_delete)
        handle = self._handle

        def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
            # A function returning `_handle`'s coroutine, not a coroutine of its own: one
            # frame less to resume each time the request's send wakes up.
            route, handler = table.get((request.method, request.path), unmatched)
            if route == "unmatched" and route_id(request) is not None:
                route, handler = deleting
            return handle(request, route, handler)

        def request_factory(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=max_body
            )

        return web.Server(dispatch, request_factory=request_factory)

    # --- the routes -----------------------------------------------------------------------------

    async def _send(self, request: web.BaseRequest, deadline: float) -> Answer:
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
        results = await self._many(items, deadline)
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

    async def _many(self, items: list[Intent | dict[str, Any]], deadline: float) -> list[Any]:
        """Return the answer of each item of a list, in the list's order.

        A bad item's answer is already made. The intents go out through at most
        `concurrency` workers, each taking the next intent as its last one ends, not one
        task per intent: a list of 200 with 64 slots would leave 136 tasks queued on the
        slots, each a future made, woken and stepped for nothing.
        """
        results: list[Any] = list(items)
        pending = iter([(i, item) for i, item in enumerate(items) if isinstance(item, Intent)])

        async def worker() -> None:
            for i, intent in pending:
                results[i] = await self._one(i + 1, intent, deadline)

        workers = min(len(items), self.settings.concurrency)
        await asyncio.gather(*(worker() for _ in range(workers)))
        return results

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

    async def _check(self, request: web.BaseRequest, deadline: float) -> Answer:
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

    async def _readyz(self, request: web.BaseRequest, _deadline: float) -> Answer:
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

    async def _state_clear(self, request: web.BaseRequest, deadline: float) -> Answer:
        data = await self._json(request, deadline, optional=True)
        fingerprints, numbers, everything = _state.clear_request(data)
        stores = _ServiceStores(self.client.verdicts, self.guard)
        cleared = await _state.aclear(stores, fingerprints, numbers, everything=everything)
        return Answer(body=_state.clear_line(self.settings.state, cleared))

    async def _classify(self, request: web.BaseRequest, deadline: float) -> Answer:
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

    async def _outbox(self, request: web.BaseRequest, _deadline: float) -> Answer:
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

    async def _replay(self, request: web.BaseRequest, deadline: float) -> Answer:
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

    async def _healthz(self, _request: web.BaseRequest, _deadline: float) -> Answer:
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

    async def _metrics(self, _request: web.BaseRequest, _deadline: float) -> Answer:
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

    async def _unmatched(self, request: web.BaseRequest, _deadline: float) -> Answer:
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
