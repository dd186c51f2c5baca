"""Token providers: where a token comes from, when it is re-read, and what happens when it dies.

`StaticTokenProvider`, `EnvTokenProvider`, `FileTokenProvider`, `VaultTokenProvider`,
`RotatingTokenProvider` and `RoutingTokenProvider` implement one protocol (`TokenProvider`);
the re-reading ones share one single-flight refresh engine (`RefreshingTokenProvider`,
`RefreshPolicy`). `TokenVerdicts` remembers which tokens Meta proved dead. The rotation
events are defined in `wa_auth.events` and re-exported here. See `docs/providers.md`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from wa_auth._exports import claim as _claim
from wa_auth._exports import lazy_attributes as _lazy_attributes
from wa_auth.providers._base import (
    ObservesOutcomes,
    RoutesTokens,
    StaticTokenProvider,
    Token,
    TokenProvider,
)
from wa_auth.providers._env import EnvTokenProvider
from wa_auth.providers._verdicts import TokenVerdicts, VerdictStore

if TYPE_CHECKING:
    from wa_auth.events import (
        RotationConfirmed,
        RotationRolledBack,
        TokenActivated,
        TokenExchanged,
        TokenFailedOver,
    )
    from wa_auth.providers._exchange import FbTokenExchanger
    from wa_auth.providers._file import FileTokenProvider
    from wa_auth.providers._refresh import Fetched, RefreshingTokenProvider, RefreshPolicy
    from wa_auth.providers._rotating import RotatingTokenProvider, SharedRotation
    from wa_auth.providers._routing import RoutingTokenProvider
    from wa_auth.providers._vault import VaultAppRole, VaultTokenProvider

__all__ = [
    "EnvTokenProvider",
    "FbTokenExchanger",
    "Fetched",
    "FileTokenProvider",
    "ObservesOutcomes",
    "RefreshPolicy",
    "RefreshingTokenProvider",
    "RotatingTokenProvider",
    "RotationConfirmed",
    "RotationRolledBack",
    "RoutesTokens",
    "RoutingTokenProvider",
    "SharedRotation",
    "StaticTokenProvider",
    "Token",
    "TokenActivated",
    "TokenExchanged",
    "TokenFailedOver",
    "TokenProvider",
    "TokenVerdicts",
    "VaultAppRole",
    "VaultTokenProvider",
    "VerdictStore",
]

_claim(__name__, globals())

#: What a process that reads its token from the environment never needs (Vault's provider
#: brings ssl and certifi; the refresh engine and the rotation events are some 15 attrs
#: classes), loaded on first use: `wa-auth send` starts without them.
_LAZY: Final = {
    "FbTokenExchanger": "wa_auth.providers._exchange",
    "Fetched": "wa_auth.providers._refresh",
    "FileTokenProvider": "wa_auth.providers._file",
    "RefreshPolicy": "wa_auth.providers._refresh",
    "RefreshingTokenProvider": "wa_auth.providers._refresh",
    "RotationConfirmed": "wa_auth.events",
    "RotationRolledBack": "wa_auth.events",
    "RotatingTokenProvider": "wa_auth.providers._rotating",
    "RoutingTokenProvider": "wa_auth.providers._routing",
    "SharedRotation": "wa_auth.providers._rotating",
    "TokenActivated": "wa_auth.events",
    "TokenExchanged": "wa_auth.events",
    "TokenFailedOver": "wa_auth.events",
    "VaultAppRole": "wa_auth.providers._vault",
    "VaultTokenProvider": "wa_auth.providers._vault",
}


__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, globals())
