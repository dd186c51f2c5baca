"""httpx under a deadline: every socket connect, TLS handshake, read and write waits no longer.

httpx's timeouts bound each wait on its own: a peer that sends one byte of its answer every
few seconds never trips a read timeout, and keeps a request alive for as long as it likes. The
deadline of the call (`wa_auth._deadline`) has to bound each of those waits by the time that is
left, which only the network layer below httpcore sees. `bound(client)` wraps the network
backend of each of a client's httpx transports so that every connect, read and write passes
min(its own timeout, the time left) down, and raises httpcore's own timeout exception once the
deadline has passed. httpx then maps it as it maps any timeout, so the phase it names (pool,
connect, write, read) still tells a request that was never sent from one that may have been.

Outside a call with a deadline the wrappers pass every timeout through unchanged, so a client
you also use for your own requests behaves as before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from wa_auth import _deadline

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

    from httpcore._backends.base import SOCKET_OPTION
    from httpx._client import UseClientDefault

__all__ = ["bound", "request_timeout"]


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """Return *timeout* cut to the time left, or raise *error* once the deadline has passed."""
    deadline = _deadline.current()
    if deadline is None:
        return timeout
    left = deadline.at - time.monotonic()
    if left <= 0:
        raise error(f"{deadline.what} passed")
    return left if timeout is None or timeout > left else timeout


def _expired(exc: Exception) -> Exception:
    """Return the error for a timeout *exc*: one that names the deadline when that was why."""
    deadline = _deadline.passed()
    if deadline is None:
        return exc
    error = type(exc)(f"{deadline.what} passed")
    error.__cause__ = exc
    return error


class _Stream(httpcore.NetworkStream):
    """A blocking stream whose every wait ends by the deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        except httpcore.ReadTimeout as exc:
            error = _expired(exc)
        raise error

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))
        except httpcore.WriteTimeout as exc:
            error = _expired(exc)
        else:
            return
        raise error

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        try:
            stream = self._stream.start_tls(
                ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)
            )
            return _Stream(stream)
        except httpcore.ConnectTimeout as exc:
            error = _expired(exc)
        raise error

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """A blocking network backend whose connections end by the deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            stream = self._backend.connect_tcp(
                host,
                port,
                _bounded(timeout, httpcore.ConnectTimeout),
                local_address,
                socket_options,
            )
            return _Stream(stream)
        except httpcore.ConnectTimeout as exc:
            error = _expired(exc)
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            stream = self._backend.connect_unix_socket(
                path, _bounded(timeout, httpcore.ConnectTimeout), socket_options
            )
            return _Stream(stream)
        except httpcore.ConnectTimeout as exc:
            error = _expired(exc)
        raise error

    def sleep(self, seconds: float) -> None:
        # httpcore's pause between connect retries: the next connect raises once it is late.
        left = _deadline.left()
        self._backend.sleep(seconds if left is None else max(min(seconds, left), 0.0))


class _AsyncStream(httpcore.AsyncNetworkStream):
    """An asyncio stream whose every wait ends by the deadline."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        except httpcore.ReadTimeout as exc:
            error = _expired(exc)
        raise error

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            await self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))
        except httpcore.WriteTimeout as exc:
            error = _expired(exc)
        else:
            return
        raise error

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            stream = await self._stream.start_tls(
                ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)
            )
            return _AsyncStream(stream)
        except httpcore.ConnectTimeout as exc:
            error = _expired(exc)
        raise error

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    """An asyncio network backend whose connections end by the deadline."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            stream = await self._backend.connect_tcp(
                host,
                port,
                _bounded(timeout, httpcore.ConnectTimeout),
                local_address,
                socket_options,
            )
            return _AsyncStream(stream)
        except httpcore.ConnectTimeout as exc:
            error = _expired(exc)
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            stream = await self._backend.connect_unix_socket(
                path, _bounded(timeout, httpcore.ConnectTimeout), socket_options
            )
            return _AsyncStream(stream)
        except httpcore.ConnectTimeout as exc:
            error = _expired(exc)
        raise error

    async def sleep(self, seconds: float) -> None:
        left = _deadline.left()
        await self._backend.sleep(seconds if left is None else max(min(seconds, left), 0.0))


def bound(client: httpx.Client | httpx.AsyncClient) -> bool:
    """Make the deadline bound every socket wait of *client*'s httpx transports.

    This should be a public hook, but neither library lets a caller bound a whole request, and
    none sits below the per-read timeout: so it reaches into private attributes, httpx's
    `Client._transport` / `_mounts` and `HTTPTransport._pool`, and httpcore's
    `ConnectionPool._network_backend` (the trickle tests fail if they move). A transport of
    another kind (a mock, one of your own) is left as it is: it bounds its own waits.
    Connections the pool opened before are not bounded. Idempotent.

    Returns:
        True when every transport of *client* is bounded (or has no sockets to bound).
    """
    transports: list[object] = [
        client._transport,  # noqa: SLF001 - see the docstring
        *client._mounts.values(),  # noqa: SLF001
    ]
    complete = True
    for transport in transports:
        if transport is None or not isinstance(
            transport, (httpx.HTTPTransport, httpx.AsyncHTTPTransport)
        ):
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, (_Backend, _AsyncBackend)):
            continue
        if isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = _Backend(backend)  # type: ignore[union-attr]  # noqa: SLF001
        elif isinstance(backend, httpcore.AsyncNetworkBackend):
            pool._network_backend = _AsyncBackend(backend)  # type: ignore[union-attr]  # noqa: SLF001
        else:  # pragma: no cover - an httpx or httpcore that moved its internals
            complete = False
    return complete


def request_timeout(configured: httpx.Timeout) -> httpx.Timeout | UseClientDefault:
    """Return the timeout of one request: the client's, with its pool wait cut to the time left.

    The wait for a pooled connection happens in httpcore's pool, above the network backend, so
    `bound` cannot shorten it: the request's own pool timeout does. httpx reports it as a
    `PoolTimeout`, which tells that nothing was sent.
    """
    left = _deadline.left()
    if left is None or (configured.pool is not None and configured.pool <= left):
        return httpx.USE_CLIENT_DEFAULT
    return httpx.Timeout(
        connect=configured.connect,
        read=configured.read,
        write=configured.write,
        pool=max(left, 0.0),
    )
