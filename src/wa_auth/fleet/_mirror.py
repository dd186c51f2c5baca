"""`Mirror`: a thread that keeps a local copy of a Redis store by pub/sub, so reads do no I/O.

The store publishes each change on its channel. The mirror subscribes, then has the store load
everything (subscribing first, nothing falls between), then hands it each message. When Redis
goes away, `synced` is cleared and the mirror tries again every half second; once back, the
store loads everything again, so every copy converges. A write that fell back while the mirror
stayed connected (the command connection failed alone, or within a second of a failure) asks
for the same (`resync()`): the store's next load writes what it kept locally for the fleet.

A process forked from one that holds a mirror has no listener thread (`fork()` copies only the
calling thread): the mirror then marks itself stale, and its store's first use in the child
(`revive()`) starts the thread again and waits for the first load, as the constructor does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Final

from wa_auth.errors import StateUnavailableError
from wa_auth.fleet._connection import RedisConnection, in_child_after_fork, translate

__all__ = ["Mirror"]

#: Seconds between two attempts of a mirror that lost Redis.
_RETRY: Final = 0.5


class Mirror:
    """Subscribe to *channel*; `reload()` on every (re)connection, `apply(data)` per message.

    Args:
        connection: The Redis.
        channel: The store's channel.
        reload: Loads the whole store into the copy (runs in the mirror's thread).
        apply: Applies one message's data to the copy.
        name: The thread's name.
        wait: Seconds the constructor waits for the first load (None: the connection's
            timeout).
    """

    def __init__(
        self,
        connection: RedisConnection,
        channel: str,
        *,
        reload: Callable[[], None],
        apply: Callable[[bytes], None],
        name: str,
        wait: float | None = None,
    ) -> None:
        self._redis = connection
        self._channel = channel
        self._reload = reload
        self._apply = apply
        self._name = name
        self._wait = connection.timeout if wait is None else wait
        self._stop = threading.Event()
        #: Set while subscribed and loaded; cleared while Redis is lost.
        self.synced = threading.Event()
        #: True in a forked child until the first use starts the listener again.
        self.stale = False
        #: True when a write fell back: the listener loads (and writes) the store again.
        self._resync = False
        self._revive_lock = threading.Lock()
        self._start()
        in_child_after_fork(self._after_fork)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name=self._name, daemon=True)
        self._thread.start()
        self.synced.wait(self._wait)

    def _after_fork(self) -> None:
        """In a forked child: no thread listens; fresh events and lock, started on first use."""
        closed = self._stop.is_set()
        self._stop = threading.Event()
        self.synced = threading.Event()
        self._revive_lock = threading.Lock()
        if closed:
            self._stop.set()
        else:
            self.stale = True

    def revive(self) -> None:
        """Start the listener again in a forked child (once; a no-op anywhere else)."""
        if not self.stale:
            return
        with self._revive_lock:
            if self.stale:
                self._start()
                self.stale = False

    def resync(self) -> None:
        """Have the listener load the store again soon (a write of the store fell back)."""
        self._resync = True

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                with translate(self._redis.address, "listening for changes"):
                    pubsub = self._redis.pubsub()
                    pubsub.subscribe(self._channel)
                    self._resync = False
                    self._reload()
                    self.synced.set()
                    while not self._stop.is_set():
                        if self._resync:
                            self._resync = False
                            self._reload()
                        message = pubsub.get_message(timeout=0.2)
                        if message is not None and message.get("type") == "message":
                            self._apply(message["data"])
            except StateUnavailableError:
                self.synced.clear()
                self._stop.wait(_RETRY)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()

    def close(self) -> None:
        """Stop the thread; idempotent."""
        self.stale = False
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
