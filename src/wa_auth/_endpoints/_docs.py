"""The `Raises:` section every endpoint shares, written once and appended to each flow's doc."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = ["CALL_RAISES", "raises"]

F = TypeVar("F", bound=Callable[..., Any])

#: What any call can raise once its own arguments were fine.
CALL_RAISES: Final = """\
        AuthError: The token, its permissions or the account cannot do this; `category` says
            which (`token_expired`, `token_revoked`, `insufficient_permission`,
            `account_state`). Never retried with the same token.
        RateLimitError: A Meta rate limit; `retry_after` says when to try again.
        TransientError: A Meta-side failure worth retrying.
        InvalidRequestError: Meta refused the request (an unknown id, a bad parameter, a
            template that does not exist, a recipient outside the 24-hour window).
        TransportError: No complete answer came; `maybe_delivered` says whether Meta may have
            accepted a message.
        TokenUnavailableError: The token provider could not produce a token.
"""


def raises(*first: str) -> Callable[[F], F]:
    """Append `Raises:` to a flow's docstring: its own *first* entries, then `CALL_RAISES`.

    Each entry of *first* is one `Name: text` line of the flow's own (local validation).
    """

    def decorate(flow: F) -> F:
        own = "".join(f"        {line}\n" for line in first)
        flow.__doc__ = (flow.__doc__ or "").rstrip() + "\n\n    Raises:\n" + own + CALL_RAISES
        return flow

    return decorate
