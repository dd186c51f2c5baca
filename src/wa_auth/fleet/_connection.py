"""One Redis, opened: redis-py's sync and asyncio clients, the key names, the errors translated.

redis-py is imported here and only here, on first use (the `redis` extra). Every call to Redis
goes through `translate`, so nothing from `redis.*` escapes: an unreachable, slow or refusing
server is a `StateUnavailableError` naming `host:port`, never the URL (it may hold a password).

A connection made before `fork()` serves the child too: `in_child_after_fork` gives the child
fresh locks and asyncio clients (redis-py's pool drops the parent's sockets by itself), and the
mirrors start their listener threads again on first use (`wa_auth.fleet._mirror`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload
from urllib.parse import urlsplit

from wa_auth._closing import Closing
from wa_auth.errors import ConfigurationError, StateUnavailableError
from wa_auth.events import Events, StateFellBack
from wa_auth.fleet._batch import Batched

if TYPE_CHECKING:
    import redis
    import redis.asyncio

_B = TypeVar("_B", bound=Batched)

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_TIMEOUT",
    "RedisConnection",
    "address_of",
    "digest",
    "fell_back",
    "in_child_after_fork",
    "text",
    "translate",
]

#: The prefix of every key wa_auth writes (one Redis may serve n8n's queue too).
DEFAULT_NAMESPACE: Final = "wa_auth"
#: Seconds to connect to Redis, and to wait for an answer, before `StateUnavailableError`.
DEFAULT_TIMEOUT: Final = 2.0
#: Seconds after a failed call during which calls fail at once (their fall-backs answer),
#: instead of each waiting for its own timeout against a Redis that is down.
RETRY_AFTER: Final = 1.0

_log = logging.getLogger("wa_auth")
#: Seconds of silence after which a pub/sub connection pings Redis.
_HEALTH_CHECK: Final = 5

_HINT: Final = (
    "wa_auth.fleet needs redis-py: install the 'redis' extra (pip install 'wa-auth[redis]')"
)


def _redis() -> Any:
    try:
        import redis
        import redis.asyncio
    except ImportError:
        raise ConfigurationError(_HINT) from None
    return redis


def in_child_after_fork(method: Callable[[], None]) -> None:
    """Call the bound *method* in the child of every `fork()` while its object lives.

    The object is held weakly (`os.register_at_fork` cannot forget a hook): a hook whose
    object is gone does nothing. Where there is no `fork()` (Windows), nothing is registered.
    """
    register = getattr(os, "register_at_fork", None)
    if register is None:  # pragma: no cover - Windows
        return
    ref = weakref.WeakMethod(method)

    def hook() -> None:
        found = ref()
        if found is not None:
            found()

    register(after_in_child=hook)


def address_of(url: str) -> str:
    """Return `host:port` of a Redis URL (the socket path of `unix://`); never its password."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError("the Redis URL must be a non-empty string (redis://host:port/0)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigurationError("the Redis URL cannot be read (redis://host:port/0)") from None
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigurationError(
            f"the Redis URL must start with redis://, rediss:// or unix://, not {parts.scheme!r}"
        )
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{port or 6379}"


def translated(address: str, doing: str, exc: BaseException) -> StateUnavailableError | None:
    """Return redis-py's error *exc* as a `StateUnavailableError` naming *address*, else None."""
    exceptions = _redis().exceptions
    if not isinstance(exc, exceptions.RedisError):
        return None
    if isinstance(exc, exceptions.AuthenticationError):
        message = f"Redis at {address} refused the credentials while {doing}"
    elif isinstance(exc, exceptions.TimeoutError):
        message = f"Redis at {address} did not answer in time while {doing}"
    elif isinstance(exc, exceptions.ConnectionError):
        message = f"Redis at {address} is unreachable while {doing}"
    else:
        message = f"Redis at {address} failed while {doing}: {type(exc).__name__}"
    return StateUnavailableError(message, address=address)


@contextlib.contextmanager
def translate(address: str, doing: str) -> Iterator[None]:
    """Map redis-py's errors to `StateUnavailableError` naming *address* (never a password)."""
    try:
        yield
    except Exception as exc:
        error = translated(address, doing, exc)
        if error is None:
            raise
        raise error from None


class _Calling:
    """`RedisConnection.calling`'s context: a class, not a generator (it wraps every send)."""

    __slots__ = ("_connection", "_doing")

    def __init__(self, connection: RedisConnection, doing: str) -> None:
        self._connection = connection
        self._doing = doing

    def __enter__(self) -> None:
        connection = self._connection
        if time.monotonic() < connection._down_until:  # noqa: SLF001 - its own helper
            raise StateUnavailableError(
                f"Redis at {connection.address} is unavailable (it failed less than "
                f"{RETRY_AFTER:g} s ago) while {self._doing}",
                address=connection.address,
            )

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        error = exc if isinstance(exc, StateUnavailableError) else None
        if error is None:
            error = translated(self._connection.address, self._doing, exc)
            if error is None:
                return
        self._connection._down_until = time.monotonic() + RETRY_AFTER  # noqa: SLF001
        if error is not exc:
            raise error from None


def fell_back(events: Events | None, store: str, exc: StateUnavailableError, count: int) -> None:
    """Say that *store* answered without Redis: a `StateFellBack` event, else a log warning.

    Without a hub, the *count*-th fall-back is logged when it is the first or a thousandth:
    a limiter falls back on every send while Redis is down.
    """
    if events is not None:
        events.emit(StateFellBack(store=store, address=exc.address, reason=exc.message))
        return
    if count != 1 and count % 1000:
        return
    _log.warning(
        "fleet.fallback: the %s answered without Redis (%d times): %s",
        store,
        count,
        exc.message,
        extra={"event": "fleet.fallback", "store": store, "category": exc.category},
    )


def digest(value: str) -> str:
    """Return a short SHA-256 of *value*: a recipient's phone number is never a key."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def text(value: bytes | str | None) -> str | None:
    """Return a Redis answer as text (redis-py types bytes and str alike), or None."""
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", "replace")


class RedisConnection(Closing):
    """One Redis server: a blocking client, an asyncio client per event loop, the key prefix.

    Args:
        url: `redis://[:password@]host:port/db` (`rediss://` for TLS, `unix://` for a socket).
        namespace: The prefix of every key (`DEFAULT_NAMESPACE`).
        timeout: Seconds to connect and to wait for each answer (`DEFAULT_TIMEOUT`).

    Raises:
        ConfigurationError: The URL cannot be read, or the `redis` extra is missing.
    """

    def __init__(
        self, url: str, *, namespace: str = DEFAULT_NAMESPACE, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.address = address_of(url)
        if not isinstance(namespace, str) or not namespace or any(c in namespace for c in " \n"):
            raise ConfigurationError(f"namespace must be a word, got {namespace!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        self.namespace = namespace
        self.timeout = float(timeout)
        self._url = url
        module = _redis()
        self._options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "decode_responses": False,
        }
        self.client: redis.Redis = module.Redis.from_url(url, **self._options)
        self._aclients: dict[int, tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis]] = {}
        self._scripts: dict[str, Any] = {}
        self._batched: dict[tuple[int, str], Batched] = {}
        self._lock = threading.Lock()
        #: Monotonic time before which calls fail at once (Redis failed a call just now).
        self._down_until = 0.0
        in_child_after_fork(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: fresh locks and asyncio clients (the parent's are not ours)."""
        self._lock = threading.Lock()
        self._aclients = {}
        self._batched = {}
        self._down_until = 0.0

    def calling(self, doing: str) -> _Calling:
        """Translate redis-py's errors (`translate`); after a failure, fail at once for a while.

        Raises:
            StateUnavailableError: Redis did not answer, now or less than `RETRY_AFTER` ago.
        """
        return _Calling(self, doing)

    def key(self, *parts: str) -> str:
        """Return the namespaced key of *parts* (`wa_auth:verdict:sha256:...`)."""
        return ":".join((self.namespace, *parts))

    def aclient(self) -> redis.asyncio.Redis:
        """Return the asyncio client of the running event loop (one per loop: redis-py binds)."""
        loop = asyncio.get_running_loop()
        found = self._aclients.get(id(loop))
        if found is not None and found[0] is loop:  # the common case, without the lock
            return found[1]
        with self._lock:
            found = self._aclients.get(id(loop))
            # The loop itself is kept with its client: a new loop at a dead one's id is another.
            if found is None or found[0] is not loop:
                found = (loop, _redis().asyncio.Redis.from_url(self._url, **self._options))
                # A loop closed before its client leaves only sockets the GC closes.
                self._aclients = {id(loop): found}
        return found[1]

    def script(self, text: str) -> Any:
        """Return the blocking client's `Script` of *text* (`EVALSHA`, loaded when missing)."""
        found = self._scripts.get(text)
        if found is None:
            found = self._scripts[text] = self.client.register_script(text)
        return found

    @overload
    def ascript(self, text: str) -> Batched: ...
    @overload
    def ascript(self, text: str, kind: type[_B]) -> _B: ...
    def ascript(self, text: str, kind: type[Batched] = Batched) -> Batched:
        """Return *text* as a script of this loop's asyncio client whose calls are batched.

        *kind* is `Batched` or a subclass of it that joins a batch's calls its own way.
        """
        client = self.aclient()
        key = (id(client), text)
        found = self._batched.get(key)
        if found is None:
            with self._lock:
                self._batched = {k: v for k, v in self._batched.items() if k[0] == id(client)}
                found = self._batched[key] = kind(client, text)
        return found

    def pubsub(self) -> redis.client.PubSub:
        """Return a new blocking pub/sub connection (its own socket, no read timeout).

        It pings Redis when idle for `_HEALTH_CHECK` seconds, so a connection that died
        without a reset (a partition) is noticed, and the copy reloaded once Redis is back.
        """
        module = _redis()
        client = module.Redis.from_url(
            self._url,
            socket_connect_timeout=self.timeout,
            socket_timeout=None,
            socket_keepalive=True,
            health_check_interval=_HEALTH_CHECK,
        )
        pubsub: redis.client.PubSub = client.pubsub(ignore_subscribe_messages=True)
        return pubsub

    def close(self) -> None:
        """Close the blocking client's connections; idempotent."""
        self.client.close()

    async def aclose(self) -> None:
        """Close this loop's asyncio client too."""
        with self._lock:
            clients, self._aclients = self._aclients, {}
        for _, client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self.close()

    def __repr__(self) -> str:
        return f"RedisConnection({self.address!r}, namespace={self.namespace!r})"
