"""The context a flow runs in: the client's addresses, defaults, provider, events, caches.

`Context` is everything an endpoint flow (`wa_auth._endpoints`) needs from the client that
runs it, built once per client (`wa_auth._client._base`). `token_health` results are kept in a
`HealthCache`: `TTLCache` (per client, in memory) unless the client was given one a fleet
shares (`StateFile(...).health`, `RedisState(...).health`). A flow never reads the cache
itself: it yields `ReadHealth` / `StoreHealth` and the shell performs them, blocking or
awaited, so a cache on the network is no I/O in the core. No I/O, no HTTP library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, urlencode

import attrs

from wa_auth._graph import DEFAULT_API_VERSION, DEFAULT_BASE_URL
from wa_auth._hub import Events
from wa_auth._validate import check_id, check_sendable
from wa_auth.errors import RequestValidationError

if TYPE_CHECKING:
    from wa_auth.models import TokenHealth
    from wa_auth.providers import TokenProvider, VerdictStore

__all__ = ["Context", "HealthCache", "TTLCache"]

T = TypeVar("T")


@runtime_checkable
class HealthCache(Protocol):
    """Where `token_health()` keeps Meta's reports by token fingerprint, each for a TTL.

    The client's own is in memory; `StateFile(...).health` (`SqliteHealthCache`) and
    `RedisState(...).health` (`RedisHealthCache`) share one `debug_token` per fingerprint per
    TTL between processes. The blocking methods serve the blocking client and the `a`-prefixed
    ones the async clients, so a cache on the network never blocks an event loop. A cache
    that raises `StateUnavailableError` is skipped for that call (`StateFellBack`).
    """

    def get(self, fingerprint: str, /) -> TokenHealth | None:
        """Return the report kept for *fingerprint* within its TTL, or None."""
        ...

    def put(self, fingerprint: str, health: TokenHealth, /) -> None:
        """Keep *health* for *fingerprint* for the TTL."""
        ...

    async def aget(self, fingerprint: str, /) -> TokenHealth | None:
        """Return the report kept for *fingerprint* within its TTL, or None."""
        ...

    async def aput(self, fingerprint: str, health: TokenHealth, /) -> None:
        """Keep *health* for *fingerprint* for the TTL."""
        ...


def new_health_cache(ttl: float) -> TTLCache[TokenHealth]:
    """A client's cache of `token_health` reports (its class loads when a report is made)."""
    return TTLCache(ttl)


class TTLCache(Generic[T]):
    """A tiny per-client cache of values by key, each kept for *ttl* seconds (no I/O)."""

    def __init__(self, ttl: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._monotonic = monotonic
        self._items: dict[str, tuple[float, T]] = {}

    def get(self, key: str) -> T | None:
        """Return the value cached under *key*, or None when absent or expired."""
        item = self._items.get(key)
        if item is None or self._monotonic() >= item[0]:
            return None
        return item[1]

    def put(self, key: str, value: T) -> None:
        """Cache *value* under *key* for `ttl` seconds (replacing the oldest beyond 64 keys)."""
        if len(self._items) >= 64:
            self._items.pop(next(iter(self._items)))
        self._items[key] = (self._monotonic() + self.ttl, value)

    async def aget(self, key: str) -> T | None:
        """Return the value cached under *key* (see `get`; no I/O)."""
        return self.get(key)

    async def aput(self, key: str, value: T) -> None:
        """Cache *value* under *key* (see `put`; no I/O)."""
        self.put(key, value)


@attrs.frozen
class Context:
    """Everything a flow needs from the client: addresses, defaults, provider, events."""

    provider: TokenProvider
    events: Events
    base_url: str = DEFAULT_BASE_URL
    api_version: str = DEFAULT_API_VERSION
    phone_number_id: str | None = None
    business_account_id: str | None = None
    consumer: str | None = None
    json_headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    #: Where dead tokens are remembered; None: nowhere (no verdict effects are yielded).
    verdicts: VerdictStore | None = None
    #: A provider of an app token for `token_health` (`debug_token` is then asked with it).
    app_token_provider: TokenProvider | None = None
    #: `token_health` results by token fingerprint (read and written by the shell's effects).
    health_cache: HealthCache = attrs.field(
        factory=lambda: new_health_cache(300.0), eq=False, repr=False
    )

    #: Messages URLs by phone number id: built once, not per send.
    _messages_urls: dict[str, str] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    #: The provider's `provider_for`, when it routes (`RoutesTokens`); looked up once.
    _select: Callable[[str | None], TokenProvider] | None = attrs.field(
        init=False, eq=False, repr=False, default=None
    )

    def __attrs_post_init__(self) -> None:
        from wa_auth.providers import RoutesTokens

        if isinstance(self.provider, RoutesTokens):
            object.__setattr__(self, "_select", self.provider.provider_for)

    def messages_url(self, phone: str) -> str:
        """Return the `/{phone}/messages` URL, cached per phone number id."""
        url = self._messages_urls.get(phone)
        if url is None:
            if len(self._messages_urls) >= 1024:  # many per-call senders: stay bounded
                self._messages_urls.clear()
            url = self._messages_urls[phone] = self.url(phone, "messages")
        return url

    def provider_for(self, route: str | None) -> TokenProvider:
        """Return the provider for a call routed by *route* (phone number id or WABA id).

        A provider that routes (`RoutesTokens`: `RoutingTokenProvider`) picks one per route;
        any other provider serves every route.
        """
        select = self._select
        return self.provider if select is None else select(route)

    def url(self, *parts: str, query: Mapping[str, Any] | None = None) -> str:
        """Return `{base_url}/{api_version}/{parts...}` with an encoded query."""
        path = "/".join(quote(p, safe="") for p in parts)
        url = f"{self.base_url}/{self.api_version}/{path}"
        if query:
            # A caller's cursor may come from a peer (`Page.after`): text UTF-8 cannot encode
            # is a typed refusal here, not urlencode's UnicodeEncodeError.
            items = {
                k: check_sendable(k, v) if isinstance(v, str) else v
                for k, v in query.items()
                if v is not None
            }
            if items:
                url += "?" + urlencode(items)
        return url

    def phone(self, override: str | None) -> str:
        """Return the phone number id of a call: the per-call override or the client's."""
        value = override if override is not None else self.phone_number_id
        if value is None:
            raise RequestValidationError(
                "phone_number_id is required: pass it to the client or to the call"
            )
        return check_id("phone_number_id", value)

    def waba(self) -> str:
        """Return the WhatsApp Business Account id, or fail before any request."""
        if self.business_account_id is None:
            raise RequestValidationError(
                "business_account_id is required for this call: pass it to the client"
            )
        return check_id("business_account_id", self.business_account_id)
