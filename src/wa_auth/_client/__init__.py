"""The clients: thin shells that drive the core's flows (`wa_auth._core`) over a transport.

- `_shell`: the two drivers of the flows (`drive`, `adrive`) and the in-flight gates: every
  effect but the send itself is performed there, once per mode.
- `_base`: what every client shares: its options, its configuration, the transport errors,
  the signature of a bound method. It names no concrete client.
- `_async`: `AsyncClientBase` (the asyncio clients' endpoint methods, gate and one pool per
  event loop) and `bind_async`, which binds a flow as one of its methods.
- `_httpx`: `WhatsAppClient` and `AsyncWhatsAppClient` over httpx, `bind_sync`, and
  `translate`, the one boundary where httpx's exceptions become wa_auth's.
- `_aiohttp`: `FastAsyncWhatsAppClient`, the same flows over aiohttp (the `fast` extra).

httpx's network backends under a call's deadline are `wa_auth._deadline_io`, beside
`_deadline`: the providers' own HTTP (Vault, the token exchange) uses them too.
"""

from __future__ import annotations

from wa_auth._client._aiohttp import FastAsyncWhatsAppClient
from wa_auth._client._async import AsyncClientBase
from wa_auth._client._base import ClientOptions
from wa_auth._client._httpx import AsyncWhatsAppClient, WhatsAppClient
from wa_auth._exports import claim as _claim

__all__ = [
    "AsyncClientBase",
    "AsyncWhatsAppClient",
    "ClientOptions",
    "FastAsyncWhatsAppClient",
    "WhatsAppClient",
]

_claim(__name__, globals())
