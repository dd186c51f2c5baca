"""The wa_auth pytest plugin: a `wa_sandbox` fixture for your own test suites.

Installed with wa_auth (a `pytest11` entry point), or loaded by hand with
`pytest_plugins = ["wa_auth.testing"]`. One sandbox server runs per test session; every test
that asks for `wa_sandbox` gets it freshly reset (initial tokens, `ok` states, no limits, no
faults, empty records, seed 0, a frozen clock that moves only through `advance()`):

```python
def test_expired_token_is_classified(wa_sandbox):
    token = wa_sandbox.issue_token(expires_in=60)
    client = wa_auth.WhatsAppClient(
        base_url=wa_sandbox.base_url, token=token, phone_number_id=wa_sandbox.phone_number_id
    )
    wa_sandbox.advance(61)
    with pytest.raises(wa_auth.TokenExpiredError):
        client.send_text("+15551234567", "hi")
```
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from wa_auth.sandbox import Sandbox

__all__ = ["wa_sandbox", "wa_sandbox_server"]

#: The seed of the session's sandbox, so every test sees the same token values and faults.
SANDBOX_SEED = 0


@pytest.fixture(scope="session")
def wa_sandbox_server() -> Iterator[Sandbox]:
    """Run one sandbox for the whole session (frozen clock, seed 0); prefer `wa_sandbox`."""
    from wa_auth.sandbox import Sandbox

    with Sandbox(seed=SANDBOX_SEED, freeze_clock=True) as sandbox:
        yield sandbox


@pytest.fixture
def wa_sandbox(wa_sandbox_server: Sandbox) -> Sandbox:
    """Return the session's sandbox, reset to its initial state for this test."""
    wa_sandbox_server.reset()
    return wa_sandbox_server
