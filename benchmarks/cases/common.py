"""Helpers shared by the case modules: the payload, the raw request and the sniffio switch."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import logging
import sys
from typing import Any

TOKEN = "wa-auth-benchmark-placeholder-not-a-credential-0123456789"
TEXT = "Your order 1234 has shipped."


def quiet_logging() -> None:
    """Discard log records (they are still created) so no worker writes to stderr per message."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def payload(to: str) -> dict[str, Any]:
    """The body a raw client sends: the same text message wa_auth sends."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": TEXT},
    }


def body(to: str) -> bytes:
    """The payload as JSON bytes."""
    return json.dumps(payload(to), separators=(",", ":")).encode()


def headers() -> dict[str, str]:
    """The headers a raw client sends."""
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def messages_url(base_url: str, api_version: str, phone_id: str) -> str:
    """The messages endpoint of *phone_id* on the peer."""
    return f"{base_url}/{api_version}/{phone_id}/messages"


class _Missing(importlib.abc.MetaPathFinder):
    """Make `import <name>` fail after the normal path search, as if it were not installed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, *_: object) -> None:
        if fullname == self.name:
            importlib.machinery.PathFinder.find_spec(fullname)  # pay the real search
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


def hide_module(name: str) -> None:
    """Hide an installed module from this process (the `sniffio` rows)."""
    sys.modules.pop(name, None)
    sys.meta_path.insert(0, _Missing(name))


def has_module(name: str) -> bool:
    """Return whether *name* can be imported here."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


class ForgetfulVerdicts:
    """A verdict store that remembers nothing, so every 401 really goes to the peer.

    The default store makes the second call with a dead token fail fast without a request,
    which is the point in production but would hide the cost of the whole 401 request here.
    """

    def get(self, fingerprint: str) -> Any:
        return None

    def record(self, fingerprint: str, error: Any) -> None:
        return None

    def forget(self, fingerprint: str) -> None:
        return None

    async def aget(self, fingerprint: str) -> Any:
        return None

    async def arecord(self, fingerprint: str, error: Any) -> None:
        return None

    async def aforget(self, fingerprint: str) -> None:
        return None
