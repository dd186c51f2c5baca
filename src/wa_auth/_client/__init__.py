"""The clients: thin shells that drive the core's flows (`wa_auth._core`) over a transport.

- `_shell`: the two drivers of the flows (`drive`, `adrive`) and the in-flight gates: every
  effect but the send itself is performed there, once per mode.
- `_base`: what every client shares: its options, its configuration, the transport errors,
  the signature of a bound method. It names no concrete client.
- `_stdlib`: `StdlibTransport`, the standard library's transport (`http.client` connections
  kept alive, the deadline, proxies and TLS as httpx reads them).
- `_async`: `AsyncClientBase` (the asyncio clients' endpoint methods, gate and one pool per
  event loop) and `bind_async`, which binds a flow as one of its methods.
- `_httpx`: `HttpxTransport` (the sync client's httpx transport), `AsyncWhatsAppClient` over
  httpx, and `translate`, the one boundary where httpx's exceptions become wa_auth's.
- `_raw`: `RawTransport`, the asyncio transport of `FastAsyncWhatsAppClient(transport="raw")`:
  `_stdlib`'s design (and pieces) on `asyncio.Protocol` connections, the standard library only.
- `_aiohttp`: `FastAsyncWhatsAppClient`, the same flows over aiohttp (the `fast` extra), or
  over `_raw`.
- `_sync`: `WhatsAppClient` and `bind_sync`; it imports the transport it is given only.

httpx's network backends under a call's deadline are `wa_auth._deadline_io`, beside
`_deadline`: the providers' own HTTP (Vault, the token exchange) uses them too. Each class
loads on first use (PEP 562), so `WhatsAppClient(transport="stdlib")` imports no httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from wa_auth._exports import claim as _claim

if TYPE_CHECKING:
    from wa_auth._client._aiohttp import FastAsyncWhatsAppClient
    from wa_auth._client._async import AsyncClientBase
    from wa_auth._client._base import ClientOptions
    from wa_auth._client._httpx import AsyncWhatsAppClient
    from wa_auth._client._sync import WhatsAppClient

__all__ = [
    "AsyncClientBase",
    "AsyncWhatsAppClient",
    "ClientOptions",
    "FastAsyncWhatsAppClient",
    "WhatsAppClient",
]

#: Each name and the module it loads from.
_WHERE: Final = {
    "AsyncClientBase": "wa_auth._client._async",
    "AsyncWhatsAppClient": "wa_auth._client._httpx",
    "ClientOptions": "wa_auth._client._base",
    "FastAsyncWhatsAppClient": "wa_auth._client._aiohttp",
    "WhatsAppClient": "wa_auth._client._sync",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    _claim(__name__, {name: value})
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
