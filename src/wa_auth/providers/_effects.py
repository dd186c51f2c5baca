"""The providers' one way to be sync and async: a generator of effects, driven twice.

A provider writes its multi-step logic once, as a generator that yields effects (ask a provider
for its token, look up a verdict, send an HTTP request, call a blocking function) and receives
their results. `drive` performs each effect with blocking calls, `adrive` with awaits. An
effect that fails is thrown back into the generator at its `yield`, so a flow handles an error
where it would handle it around a direct call. Each effect is a small frozen object whose
`perform` and `aperform` are the only twins, one line each; a module may define its own effects
(the refresh engine does) by giving them the same two methods. `drive` and `adrive` open the
flow's HTTP session and hand the flow to the one pair of drivers (`wa_auth._effects`) that the
guards run on too.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import attrs

from wa_auth import _deadline
from wa_auth._effects import arun, run

if TYPE_CHECKING:
    import httpx

    from wa_auth.errors import ApiError
    from wa_auth.providers._base import Token, TokenProvider
    from wa_auth.providers._verdicts import VerdictStore

__all__ = [
    "DEFAULT_READ_DEADLINE",
    "Blocking",
    "Effect",
    "Flow",
    "GetToken",
    "GetVerdict",
    "Http",
    "Send",
    "Session",
    "adrive",
    "drive",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Effect(Protocol[T_co]):
    """One step a flow asks its driver to take."""

    def perform(self, session: Session, /) -> T_co:
        """Take the step with blocking calls."""
        ...

    async def aperform(self, session: Session, /) -> T_co:
        """Take the step without blocking the event loop."""
        ...


#: A provider's logic: yields effects, receives their results, returns its own.
Flow = Generator[Effect[Any], Any, T]


#: Default seconds one drive that sends HTTP requests (a token read, an exchange) may take,
#: all its requests included: httpx's timeout bounds each wait alone, so a source that
#: trickles its answer would otherwise hold the read forever.
DEFAULT_READ_DEADLINE: Final = 30.0


@attrs.frozen
class Http:
    """How a drive opens its HTTP client, on the first `Send`: httpx options and transports.

    Args:
        options: Keyword arguments for `httpx.Client` / `httpx.AsyncClient` (`base_url`,
            `headers`, `timeout`, `verify`).
        transport: A transport for the blocking client (tests).
        async_transport: A transport for the async client (tests).
        deadline: Seconds the whole drive may take (`DEFAULT_READ_DEADLINE`); the deadline of
            a call it reads a token for ends it sooner.
        what: The drive in words, for the error of a deadline that passed.
    """

    options: Mapping[str, Any] = attrs.field(factory=dict)
    transport: httpx.BaseTransport | None = None
    async_transport: httpx.AsyncBaseTransport | None = None
    deadline: float = DEFAULT_READ_DEADLINE
    what: str = "the token read"

    @property
    def limit(self) -> tuple[float, str]:
        """The drive's deadline: its seconds and its words."""
        return self.deadline, f"{self.what}'s {self.deadline:g} s deadline"


class Session:
    """What one drive shares between its effects: the HTTP client, opened when first needed.

    Each drive opens its own client and closes it at the end, so no connection is shared
    across event loops or across a `fork()`. The client's socket waits end by the deadline in
    force (`wa_auth._deadline`): a provider's own, or that of the call it reads a token for.
    """

    def __init__(self, http: Http | None) -> None:
        self._http = http
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

    def _options(self) -> Http:
        if self._http is None:
            raise RuntimeError("this flow sends HTTP requests: drive it with http=")
        return self._http

    def client(self) -> httpx.Client:
        """Return the blocking client."""
        if self._client is None:
            import httpx  # only a flow that sends loads it: a static token never does

            from wa_auth._deadline_io import bound

            http = self._options()
            self._client = httpx.Client(**http.options, transport=http.transport)
            bound(self._client)
        return self._client

    def aclient(self) -> httpx.AsyncClient:
        """Return the async client."""
        if self._aclient is None:
            import httpx

            from wa_auth._deadline_io import bound

            http = self._options()
            self._aclient = httpx.AsyncClient(**http.options, transport=http.async_transport)
            bound(self._aclient)
        return self._aclient

    def close(self) -> None:
        """Close the blocking client, if one was opened."""
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the async client, if one was opened."""
        if self._aclient is not None:
            await self._aclient.aclose()


# --- the effects --------------------------------------------------------------------------------


@attrs.frozen
class GetToken:
    """Ask *provider* for its token."""

    provider: TokenProvider

    def perform(self, session: Session, /) -> Token:  # noqa: ARG002 - the protocol's signature
        return self.provider.get_token()

    async def aperform(self, session: Session, /) -> Token:  # noqa: ARG002
        return await self.provider.aget_token()


@attrs.frozen
class GetVerdict:
    """Ask *store* whether the token with *fingerprint* is known dead."""

    store: VerdictStore
    fingerprint: str

    def perform(self, session: Session, /) -> ApiError | None:  # noqa: ARG002
        return self.store.get(self.fingerprint)

    async def aperform(self, session: Session, /) -> ApiError | None:  # noqa: ARG002
        return await self.store.aget(self.fingerprint)


@attrs.frozen
class Blocking:
    """Call *function* (file I/O, a user's hook): inline, or in a worker thread when async."""

    function: Callable[[], Any]

    def perform(self, session: Session, /) -> Any:  # noqa: ARG002
        return self.function()

    async def aperform(self, session: Session, /) -> Any:  # noqa: ARG002
        import asyncio

        return await asyncio.to_thread(self.function)


@attrs.frozen
class Send:
    """Send one HTTP request through the drive's client; the result is the `httpx.Response`.

    The headers and bodies carry secrets (a Vault token, an app secret): never in a repr.
    """

    method: str
    url: str
    headers: Mapping[str, str] | None = attrs.field(default=None, repr=False)
    json: Any = attrs.field(default=None, repr=False)
    data: Mapping[str, str] | None = attrs.field(default=None, repr=False)

    def perform(self, session: Session, /) -> httpx.Response:
        return session.client().request(
            self.method, self.url, headers=self.headers, json=self.json, data=self.data
        )

    async def aperform(self, session: Session, /) -> httpx.Response:
        return await session.aclient().request(
            self.method, self.url, headers=self.headers, json=self.json, data=self.data
        )


# --- the drivers --------------------------------------------------------------------------------


def drive(flow: Flow[T], http: Http | None = None) -> T:
    """Run *flow* to its result, taking each of its steps with blocking calls.

    Raises:
        BaseException: Whatever the flow raises (a failed step is thrown into it first).
    """
    session = Session(http)
    bounded = None if http is None else _deadline.enter(*http.limit)
    try:
        return run(flow, session, catch=(BaseException,))
    finally:
        session.close()
        if bounded is not None:
            _deadline.leave(bounded)


async def adrive(flow: Flow[T], http: Http | None = None) -> T:
    """Run *flow* to its result, taking each of its steps without blocking the event loop.

    Raises:
        BaseException: Whatever the flow raises (a failed step is thrown into it first).
    """
    session = Session(http)
    bounded = None if http is None else _deadline.enter(*http.limit)
    try:
        return await arun(flow, session, catch=(BaseException,))
    finally:
        await session.aclose()
        if bounded is not None:
            _deadline.leave(bounded)
