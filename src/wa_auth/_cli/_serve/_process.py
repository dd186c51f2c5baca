"""`wa-auth serve`: the CLI's front door over local HTTP, for n8n's HTTP Request and Code nodes.

One process, one event loop: its HTTP server (its own lane for the plain requests of n8n's
items, `_lane`, and aiohttp's web server for any other) and a `FastAsyncWhatsAppClient` share it,
so the connection pool, the verdicts, the pauses, the limiter and the token-health cache stay
warm from one request to the next, and no process starts per item. Every intent goes through
the same `Guard` (and outbox and state file) as `wa-auth send`, and every answer is one of the
CLI's JSON shapes (`wa_auth._cli._output`), with HTTP 200 for every intent processed, whatever
became of it: n8n's HTTP Request node turns any other status into a node error. A 4xx answers
only a request the service itself refuses (the API key, the JSON, the size); the routes are
`_app`.

It binds 127.0.0.1 unless told otherwise and refuses to start without an API key
(`WA_AUTH_API_KEY` or a file): whoever reaches it can send as the business. SIGTERM (and
SIGINT) stop it gracefully: the listener closes, no new send starts, the sends in flight
finish and are answered, and what had not started is answered as not sent (and stays in the
outbox, with one). stdout carries one info line; stderr one JSON access-log line per request,
and aiohttp's and asyncio's log records as JSON lines that hold nothing of a request
(`_log`). Every wait on a client is bounded and the connections are capped
below the open-file limit (`_connections`, `_site`).

aiohttp is the `serve` extra (`pip install 'wa-auth[serve]'`), imported when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from wa_auth._cli import _codes, _config
from wa_auth._cli._output import write
from wa_auth._cli._serve._hooks_settings import HookSettings, hook_settings
from wa_auth._cli._serve._routes import Route, load_config
from wa_auth._cli._serve._settings import MAX_LINE, settings
from wa_auth._postgres import redact
from wa_auth._version import package_version
from wa_auth.errors import ConfigurationError

_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_EXTRA_HINT: Final = "wa-auth serve needs aiohttp (3.10 or later): pip install 'wa-auth[serve]'"
#: The collector's first threshold while serving (Python's default is 700): see `_settled_heap`.
GC_THRESHOLD: Final = 10_000


def _metrics(options: dict[str, Any]) -> Any:
    """Return a `PrometheusSubscriber` on the client's events, or None without prometheus_client."""
    if importlib.util.find_spec("prometheus_client") is None:
        return None
    from wa_auth.prometheus import PrometheusSubscriber

    metrics = PrometheusSubscriber()
    options["events"].subscribe(metrics)
    return metrics


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code (0 after a graceful stop).

    Raises:
        ConfigurationError: aiohttp is missing, a setting is wrong, or the address cannot be
            bound (printed as the one usage line by `main`).
    """
    if importlib.util.find_spec("aiohttp") is None:
        raise ConfigurationError(_EXTRA_HINT)
    from wa_auth._cli._send import _guard_options, open_outbox

    environ = _config.environ()
    config = settings(args, environ)
    hooks = hook_settings(args, environ, state=config.state, outbox=config.outbox)
    routes = load_config(hooks.config, environ) if hooks is not None and hooks.config else ()
    options = _config.client_options(args, environ)
    guard_options = _guard_options(args)
    metrics = _metrics(options)
    from wa_auth._cli._serve._log import routed

    with _config.state_file(args, environ, options, guard_options) as shared, routed(sys.stderr):
        outbox = open_outbox(config.outbox, create=True) if config.outbox else None
        try:
            webhooks = (hooks, routes) if hooks is not None else None
            return asyncio.run(
                _serve(config, options, guard_options, outbox, metrics, webhooks, shared)
            )
        finally:
            if outbox is not None:
                outbox.close()


async def _serve(
    config: Any,
    options: dict[str, Any],
    guard_options: dict[str, Any],
    outbox: Any,
    metrics: Any,
    webhooks: tuple[HookSettings, Sequence[Route]] | None = None,
    shared: Any = None,
) -> int:
    from aiohttp import web

    from wa_auth._cli._serve._app import Service
    from wa_auth._cli._serve._site import Site
    from wa_auth._client import FastAsyncWhatsAppClient
    from wa_auth.guards import Guard

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    started = time.monotonic()
    async with FastAsyncWhatsAppClient(transport=config.transport, **options) as client:
        guard = Guard(client, **guard_options, outbox=outbox)
        fanout = None
        if webhooks is not None:
            fanout = _fanout(webhooks, guard, options["events"], shared)
            await fanout.start()
        service = Service(
            config,
            client=client,
            guard=guard,
            options=options,
            outbox=outbox,
            metrics=metrics,
            webhooks=fanout,
        )

        def on_signal(sig: signal.Signals) -> None:
            service.stop(sig.name)
            stopped.set()

        connections = _connections(config, client)
        cap = connections.cap
        runner = web.ServerRunner(
            service.server(), handle_signals=False, shutdown_timeout=config.shutdown_timeout
        )
        await runner.setup()
        lanes = _lanes(service, connections, config)
        try:
            site = Site(
                runner,
                config.host,
                config.port,
                connections=connections,
                options=_connection_options(config),
                lanes=lanes,
            )
            try:
                await site.start()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot bind {config.host}:{config.port}: {exc.strerror or exc}"
                ) from None
            port = runner.addresses[0][1]
            for sig in _SIGNALS:
                loop.add_signal_handler(sig, on_signal, sig)
            write(_info(config, port, metrics is not None, cap, fanout))
            try:
                await _until(stopped)
            finally:
                for sig in _SIGNALS:
                    loop.remove_signal_handler(sig)
            service.flush_log()
            write(_lifecycle("stopping", service, started), sys.stderr)
        finally:
            await _cleanup(runner, lanes, config.shutdown_timeout)
            if fanout is not None:
                # What was stored and not yet forwarded stays in the queue for the next start.
                await fanout.stop()
                fanout.queue.close()
    service.flush_log()
    write(_lifecycle("stopped", service, started), sys.stderr)
    return _codes.OK


async def _until(stopped: asyncio.Event) -> None:
    """Serve until *stopped* is set, start-up's heap settled (`_settled_heap`)."""
    with _settled_heap():
        await stopped.wait()


@contextlib.contextmanager
def _settled_heap() -> Iterator[None]:
    """Serve with what start-up made out of the cyclic collector's way; restore it after.

    Start-up leaves tens of thousands of long-lived objects (modules, classes, the client):
    `gc.freeze` moves them to the permanent generation, so no collection walks them again. A
    request frees what it made by reference counting, so the count the collector runs on
    drifts slowly: at Python's 700 it still ran a young collection every dozen or so requests,
    a tenth of serve's CPU per request; at `GC_THRESHOLD` it runs about once a thousand.
    """
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _fanout(
    webhooks: tuple[HookSettings, Sequence[Route]], guard: Any, events: Any, shared: Any = None
) -> Any:
    """Open the webhook queue file and return the pipeline over it (not started).

    *shared*: the state `--state` or `--redis` opened; a `RedisState` (`--redis`) admits the
    events in the fleet's ledger (`_shared.SharedLedger`).
    """
    from wa_auth._cli._serve._fanout import Fanout
    from wa_auth._cli._serve._queue import WebhookQueue
    from wa_auth.webhooks import DEFAULT_MAX_KEYS, DEFAULT_WINDOW

    hooks, routes = webhooks
    queue = WebhookQueue(hooks.queue, window=DEFAULT_WINDOW, max_keys=DEFAULT_MAX_KEYS)
    fleet = None
    if shared is not None:
        from wa_auth._cli._serve._shared import SharedLedger
        from wa_auth.fleet import RedisState

        if isinstance(shared, RedisState):
            fleet = SharedLedger(shared.ledger(window=DEFAULT_WINDOW), events)
    return Fanout(hooks, queue, routes, guard=guard, events=events, shared=fleet)


async def _cleanup(runner: Any, lanes: Any, timeout: float) -> None:
    """Stop serving: aiohttp's connections and the lane's, at once.

    Closes the listener (cleanup's first step), lets the requests in flight finish (up to
    *timeout*, then cancels them), and closes the idle connections.
    """
    if lanes is None:
        await runner.cleanup()
    else:
        await asyncio.gather(runner.cleanup(), lanes.shutdown(timeout))


def _lanes(service: Any, connections: Any, config: Any) -> Any:
    """Return serve's own HTTP/1.1 lane over the service's routes (`_lane`), or None (`--http`)."""
    if config.http != "lane":
        return None
    from wa_auth._cli._serve._lane import Lanes

    return Lanes(
        answer=service.answer,
        routes=service.routes(),
        unmatched=service.unmatched(),
        connections=connections,
        max_body=config.max_body,
        header_timeout=config.header_timeout,
    )


def _connections(config: Any, client: Any) -> Any:
    """Return the registry of the callers' connections, capped below the open-file limit.

    Raises:
        ConfigurationError: The limit leaves too little room.
    """
    from wa_auth._cli._serve._connections import Connections, connection_cap, fd_limit

    try:
        cap = connection_cap(config.max_connections, fd_limit(), _pool(client))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return Connections(cap, write_timeout=config.request_timeout)


def _pool(client: Any) -> int:
    """Return how many connections the client's pool to Meta may open (file descriptors)."""
    from wa_auth._client._aiohttp import FAST_MAX_CONNECTIONS

    return max(FAST_MAX_CONNECTIONS, int(client.max_in_flight))


def _connection_options(config: Any) -> dict[str, Any]:
    """Return the options of every connection (aiohttp's `RequestHandler`).

    The keep-alive timer is the header timeout: it closes a connection that waits for a
    request, and a connection that sent half a request still waits for one. The rest of a
    body no handler read (a 401's, say) is drained for as long before the connection closes.
    aiohttp's access logger is off: the service writes its own access line, which holds
    nothing of a request.
    """
    return {
        "keepalive_timeout": config.header_timeout,
        "lingering_time": config.header_timeout,
        "max_line_size": MAX_LINE,
        "max_field_size": MAX_LINE,
        "access_log": None,
    }


def _info(
    config: Any, port: int, metrics: bool, max_connections: int, fanout: Any = None
) -> dict[str, Any]:
    """Return the one line serve prints on stdout once it listens (the schema's `serve`)."""
    host = config.host if ":" not in config.host else f"[{config.host}]"
    return {
        "ok": True,
        "url": f"http://{host}:{port}",
        "host": config.host,
        "port": port,
        "pid": os.getpid(),
        "version": package_version(),
        "outbox": redact(config.outbox) if config.outbox else None,  # never its password
        "state": config.state,
        "metrics": metrics,
        "max_connections": max_connections,
        "webhook": None
        if fanout is None
        else {
            "queue": fanout.queue.path,
            "routes": len(fanout.routes),
            "ledger": "file" if fanout.shared is None else "redis",
        },
    }


def _lifecycle(event: str, service: Any, started: float) -> dict[str, Any]:
    """Return a stderr line of the shutdown (the schema's `lifecycle`)."""
    return {
        "event": event,
        "ts": round(time.time(), 3),
        "signal": service.stopping,
        "in_flight": service.in_flight,
        "requests": service.requests,
        "uptime": round(time.monotonic() - started, 3),
    }
