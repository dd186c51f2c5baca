"""What every route of `wa-auth serve` goes through: the key, the shutdown, the body, the log.

`Front._handle` wraps each handler: the API key (every route but `/healthz`), the shutdown
check, the handler, the mapping of a refusal or a failure to a JSON answer (a secret-named
value scrubbed from it), and the access-log line. `Front._json` reads a request's body within
the request's deadline, strictly (`wa_auth._json_input`). The routes are `Service` (`_app`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Final

import attrs
from aiohttp import HttpVersion11, web

from wa_auth import _json_input as json_input
from wa_auth._cli import _codes
from wa_auth._cli._output import access_text
from wa_auth._cli._serve._http import (
    METHODS,
    OPEN_ROUTES,
    Answer,
    Handler,
    Rejected,
    body_bytes,
    failure,
    to_response,
    too_large,
)
from wa_auth._cli._serve._log import Lines
from wa_auth._cli._serve._settings import Settings, key_matches, presented_key
from wa_auth._deadline import wait_for
from wa_auth._redact import named_secrets, scrub, secret_forms
from wa_auth.errors import ConfigurationError, RequestValidationError, WhatsAppError

__all__ = ["Front"]

EXPECT: Final = "Expect"


class Front:
    """What every route of `wa-auth serve` goes through; `Service` (`_app`) adds the routes.

    One wrapper (`_handle`) per request: the API key (every route but `/healthz`), the
    shutdown check, the handler, the mapping of a refusal or a failure to a JSON answer, and
    the access-log line; and `_json`, the one reader of a request's body.

    Args:
        settings: The listen address, the key's digest and the limits.
        client: The `FastAsyncWhatsAppClient`, on this event loop.
        guard: The guard every intent goes through (with the outbox, pauses and limiter).
        options: The client's options (`_config.client_options`): the default sender, the
            WABA and the consumer, which result lines and checks name.
        outbox: The outbox (the guard's), or None.
        metrics: A `PrometheusSubscriber` subscribed to the client's events, or None.
        webhooks: The webhook pipeline (`_fanout.Fanout`), or None: no webhook endpoint.
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
        webhooks: Any = None,
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
        self.webhooks = webhooks
        self._options = dict(options)
        self._defaults = {k: options.get(k) for k in ("phone_number_id", "consumer")}
        self._log = Lines(sys.stderr if log is None else log)
        self._monotonic = monotonic
        self._clock = clock
        self._secrets = tuple(named_secrets(os.environ) if secrets is None else secrets)
        self._forms = tuple(form.encode() for form in secret_forms(self._secrets))
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._timeout = settings.request_timeout
        self._started = monotonic()
        #: The signal's name once SIGTERM or SIGINT arrived: no new send starts.
        self.stopping: str | None = None
        self.in_flight = 0
        self.requests = 0

    def flush_log(self) -> None:
        """Write the access lines still pending (they are written once per loop turn)."""
        self._log.flush()

    def stop(self, signal_name: str) -> None:
        """Start no new send from now on; the sends in flight finish."""
        if self.stopping is None:
            self.stopping = signal_name

    # --- every request --------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest, route: str, handler: Handler) -> web.Response:
        """Answer *request* on aiohttp's path: `answer`, as aiohttp's `Response`."""
        answer, data = await self.answer(request, route, handler)
        return to_response(answer, data)

    async def answer(
        self, request: web.BaseRequest, route: str, handler: Handler
    ) -> tuple[Answer, bytes]:
        """Return what *request* is answered and the answer's body: both HTTP paths' one wrapper.

        The key, the shutdown check, the handler, a refusal or failure mapped to JSON (a
        secret's value scrubbed from it), and the access line. aiohttp's path (`_handle`)
        and the lane (`_lane`) write the same answer.
        """
        started = self._monotonic()
        deadline = started + self._timeout
        try:
            if request.headers.get(EXPECT):  # an empty Expect asks nothing, as the router had it
                await _expect(request)
            if route not in OPEN_ROUTES:
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
        data = body_bytes(answer)
        if self._shows_secret(data):
            # A provider names its token file in its errors: never a secret-named value.
            answer = attrs.evolve(answer, body=scrub(answer.body, self._secrets))
            data = body_bytes(answer)
        self.requests += 1
        self._access(request, route, answer, len(data), self._monotonic() - started)
        return answer, data

    def _shows_secret(self, body: object) -> bool:
        """Return whether an answer's bytes hold a secret's value (in any of its forms)."""
        if isinstance(body, bytes):
            for form in self._forms:
                if form in body:
                    return True
        return False

    def _admit(self, request: web.BaseRequest) -> None:
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

    def _authorize(self, request: web.BaseRequest) -> None:
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
        request: web.BaseRequest,
        route: str,
        answer: Answer,
        size: int,
        seconds: float,
    ) -> None:
        body = answer.body if isinstance(answer.body, Mapping) else {}
        self._log.add_text(
            access_text(
                ts=self._clock(),
                remote=request.remote,
                method=request.method if request.method in METHODS else "OTHER",
                route=route,
                status=answer.status,
                seconds=seconds,
                request_bytes=request.content_length or 0,
                response_bytes=size,
                intents=answer.intents,
                exit_code=body.get("exit_code"),
                category=body.get("category"),
            )
        )

    # --- reading a body -------------------------------------------------------------------------

    async def _json(
        self, request: web.BaseRequest, deadline: float, *, optional: bool = False
    ) -> Any:
        """Return the request's JSON body (`{}` for an optional body that is absent).

        Raises:
            Rejected: 413 for a body over the limit, 415 for another content type, 408 for a
                body that did not arrive in time, 400 for one that is not JSON.
        """
        limit = self.settings.max_body
        length = request.content_length
        if length is not None and length > limit:
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
        raw = await self._raw(request, deadline)
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

    async def _raw(self, request: web.BaseRequest, deadline: float) -> bytes:
        """Return the request's body as it arrived, bounded in size and time.

        Raises:
            Rejected: 413 for a body over the limit, 408 for a body that did not arrive in
                time, 400 for a malformed encoding or framing.
        """
        limit = self.settings.max_body
        length = request.content_length
        if length is not None and length > limit:
            raise too_large(limit)
        content = request.content
        try:
            if content.is_eof() and content.exception() is None:
                # The whole body came with the head (an n8n item's intent): nothing to wait
                # for, so no timer either, and no loop over chunks: the buffer is the body.
                raw = content.read_nowait()
                if len(raw) > limit:  # chunked: no Content-Length said so before
                    raise too_large(limit)
            elif content.is_eof():
                raw = await request.read()
            else:
                raw = await wait_for(request.read(), max(0.0, deadline - self._monotonic()))
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
        return raw


async def _expect(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` before the body is read, as aiohttp's router does.

    Raises:
        Rejected: 417 for any other expectation (HTTP/1.1 knows no other).
    """
    if request.version != HttpVersion11:
        return
    expect = request.headers[EXPECT]
    if expect.lower() != "100-continue":
        raise Rejected(
            417,
            "invalid_request",
            "the only expectation this service meets is Expect: 100-continue",
            rule="serve/expect",
        )
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    # The answer's head is still to be written: its size is counted from here.
    request.writer.output_size = 0
