"""`RoutingTokenProvider`: one provider per phone number id or WABA id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from wa_auth.errors import ConfigurationError, TokenUnavailableError
from wa_auth.providers._base import Token, TokenProvider, as_provider

if TYPE_CHECKING:
    from wa_auth.errors import WhatsAppError

__all__ = ["RoutingTokenProvider"]


class RoutingTokenProvider:
    """Pick the token by the call's phone number id (or WABA id), for one token per business.

    Teams and tech providers hold one token per business; the client asks `provider_for()`
    with the call's `phone_number_id` (or the WABA id for WABA-level calls) and uses that
    provider for the call, its invalidation and its retry.

    Args:
        routes: Phone number ids and WABA ids mapped to providers or token strings (several
            keys may share one provider).
        default: The provider (or token string) for calls whose id has no route; None makes
            them fail.

    Raises:
        RequestValidationError: A route or the default is neither a provider nor a token.
    """

    def __init__(
        self,
        routes: Mapping[str | int, TokenProvider | Token | str],
        *,
        default: TokenProvider | Token | str | None = None,
    ) -> None:
        self._routes = {
            str(k): as_provider(v, argument=f"routes[{str(k)!r}]") for k, v in routes.items()
        }
        if not self._routes and default is None:
            raise ConfigurationError("routes must not be empty")
        self._default = None if default is None else as_provider(default, argument="default")

    @property
    def routes(self) -> Mapping[str, TokenProvider]:
        """The routes, keyed by id."""
        return dict(self._routes)

    def provider_for(self, route: str | None) -> TokenProvider:
        """Return the provider for *route* (a phone number id or WABA id).

        Raises:
            TokenUnavailableError: No route matches and there is no default.
        """
        provider = self._routes.get(route) if route is not None else None
        if provider is not None:
            return provider
        if self._default is not None:
            return self._default
        raise TokenUnavailableError(
            f"no token provider is routed for id {route!r} and there is no default",
            source="routing",
        )

    def get_token(self) -> Token:
        """Return the default provider's token.

        Raises:
            TokenUnavailableError: There is no default provider.
        """
        return self.provider_for(None).get_token()

    async def aget_token(self) -> Token:
        """Return the default provider's token."""
        return await self.provider_for(None).aget_token()

    def invalidate(self, token: Token, reason: WhatsAppError | str) -> None:
        """Pass the invalidation to every provider; only the one holding *token* acts."""
        seen: set[int] = set()
        for provider in (*self._routes.values(), self._default):
            if provider is not None and id(provider) not in seen:
                seen.add(id(provider))
                provider.invalidate(token, reason)

    def __repr__(self) -> str:
        return f"RoutingTokenProvider(routes={sorted(self._routes)!r})"
