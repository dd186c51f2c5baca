"""serve's webhook routes: Meta's endpoint (`GET`/`POST /webhook`) and the routes API.

`POST /webhook` reads the raw body before anything parses it, checks `X-Hub-Signature-256`
with the app secret, commits the body to the queue file and answers 200; parsing, admission,
applying and forwarding happen after the answer (`_fanout`). A bad signature is a 401 (and a
`webhook.rejected` event); a delivery that could not be stored is a 503, so Meta delivers it
again: never a 200 for something lost. `GET /webhook` is the subscription handshake, checked
against the verify token, never against a signature.

The routes API (`docs/webhooks.md`): `POST /webhook/routes` registers a route (the
same URL again replaces it and keeps its id), `GET /webhook/routes` lists them,
`DELETE /webhook/routes/{id}` drops one. Both webhook paths go through `Front._handle`; only
the routes API needs the API key.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from wa_auth._cli import _codes
from wa_auth._cli._serve._front import Front
from wa_auth._cli._serve._http import Answer, Rejected
from wa_auth._cli._serve._http import route_id as _route_id
from wa_auth._cli._serve._routes import RouteError, route_from_api
from wa_auth.errors import WebhookSignatureError
from wa_auth.webhooks import SIGNATURE_HEADER, ahandle_verification, averify_signature

__all__ = ["HookRoutes"]

_TEXT = "text/plain; charset=utf-8"


class HookRoutes(Front):
    """The webhook routes of `Service` (see the module docstring)."""

    def _hooks(self) -> Any:
        if self.webhooks is None:
            raise Rejected(
                404,
                _codes.USAGE_CATEGORY,
                "this service has no webhook endpoint: start wa-auth serve with the app secret "
                "(WA_AUTH_WEBHOOK_APP_SECRET or --webhook-app-secret-file)",
                rule="serve/no_webhooks",
            )
        return self.webhooks

    async def _webhook_get(self, request: web.BaseRequest, _deadline: float) -> Answer:
        hooks = self._hooks()
        token = hooks.settings.verify_token
        if token is None:
            raise Rejected(
                404,
                _codes.USAGE_CATEGORY,
                "no verify token is configured for the handshake: set "
                "WA_AUTH_WEBHOOK_VERIFY_TOKEN or --webhook-verify-token-file",
                rule="serve/no_verify_token",
            )
        params = {name: request.query.getall(name) for name in set(request.query.keys())}
        try:
            challenge = await ahandle_verification(params, token, events=hooks.events)
        except WebhookSignatureError as exc:
            raise Rejected(403, exc.category, exc.message, rule="serve/webhook_handshake") from None
        return Answer(body=challenge.encode("ascii"), content_type=_TEXT)

    async def _webhook_post(self, request: web.BaseRequest, deadline: float) -> Answer:
        hooks = self._hooks()
        raw = await self._raw(request, deadline)
        try:
            await averify_signature(
                raw,
                request.headers.get(SIGNATURE_HEADER),
                hooks.settings.app_secret,
                events=hooks.events,
            )
        except WebhookSignatureError as exc:
            hooks.rejected += 1
            raise Rejected(401, exc.category, exc.message, rule="serve/webhook_signature") from None
        # On disk before the 200: a failure here is a 503 (Front), and Meta delivers again.
        delivery = await hooks.received(raw)
        return Answer(body={"ok": True, "delivery": delivery, "bytes": len(raw)})

    # --- the routes API ---------------------------------------------------------------------

    async def _routes_get(self, _request: web.BaseRequest, _deadline: float) -> Answer:
        hooks = self._hooks()
        return Answer(body={"routes": [route.to_json() for route in hooks.routes.values()]})

    async def _routes_post(self, request: web.BaseRequest, deadline: float) -> Answer:
        hooks = self._hooks()
        data = await self._json(request, deadline)
        try:
            route = route_from_api(data, id=secrets.token_hex(8))
        except RouteError as exc:
            raise Rejected(400, "invalid_request", exc.message, rule="serve/route") from None
        taken = next(
            (r for r in hooks.routes.values() if r.url == route.url and r.source == "config"),
            None,
        )
        if taken is not None:
            raise Rejected(
                409,
                "invalid_request",
                f"url is the route {taken.id!r} of the configuration file: change it there",
                rule="serve/route",
            )
        kept = await hooks.put_route(route)
        return Answer(status=201, body=kept.to_json())

    async def _routes_delete(self, request: web.BaseRequest, _deadline: float) -> Answer:
        hooks = self._hooks()
        route_id = _route_id(request) or ""
        route = hooks.routes.get(route_id)
        if route is not None and route.source == "config":
            raise Rejected(
                409,
                "invalid_request",
                "this route comes from the configuration file: remove it there",
                rule="serve/route",
            )
        if route is None or not await hooks.delete_route(route_id):
            raise Rejected(
                404, _codes.USAGE_CATEGORY, "no route has this id", rule="serve/route_id"
            )
        return Answer(status=204, body=b"", content_type=_TEXT)
