"""The routes of serve's webhook fan-out: where each verified, deduplicated event is forwarded.

A `Route` names a URL, the secret that signs the forwards to it, and filters (phone number
ids, WABA ids, Meta's change fields, event types); an event goes to every route whose filters
it passes (a filter left out, or empty, passes everything). Routes come from a TOML or JSON
file (`--webhook-config`), checked at start-up with errors that name the route, the key and
the line, and from the routes API (`POST /webhook/routes`), checked with errors that name the
field. The forward's body (`forward_body`) and signature (`sign`) are described in
`docs/webhooks.md`. No aiohttp here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from wa_auth._convert import well_formed
from wa_auth.errors import ApiError, ConfigurationError

__all__ = [
    "FILTERS",
    "MIN_SECRET",
    "SIGNATURE_HEADER",
    "TYPES",
    "Route",
    "RouteError",
    "event_json",
    "forward_body",
    "load_config",
    "matches",
    "route_from_api",
    "sign",
]

#: The header of a forward's signature: `sha256=<hex HMAC-SHA256(route secret, body)>`.
SIGNATURE_HEADER: Final = "X-Wa-Auth-Signature-256"
KEY_HEADER: Final = "X-Wa-Auth-Event-Key"
#: A route's secret signs its forwards: shorter ones are refused (they could be guessed).
MIN_SECRET: Final = 16
#: The event types a route may filter on (`WebhookEvent.type`).
TYPES: Final = (
    "status",
    "message",
    "error",
    "account_update",
    "account_review_update",
    "phone_number_quality_update",
    "business_capability_update",
    "security",
    "message_template_status_update",
    "unknown",
)
#: The filters: each a list of strings; an event passes when it names one of them.
FILTERS: Final = ("phone_number_ids", "business_account_ids", "fields", "types")
_API_KEYS: Final = frozenset({"url", "secret", "name", *FILTERS})
_CONFIG_KEYS: Final = frozenset({"url", "secret", "secret_env", "name", *FILTERS})
_MAX_TEXT: Final = 2048


class RouteError(ConfigurationError):
    """A route that cannot work: a missing or malformed URL, secret or filter.

    For example, a `secret` of 8 characters, or `types` naming a kind of event that does
    not exist. `field` names the key.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@attrs.frozen(kw_only=True)
class Route:
    """One destination of the fan-out: its URL, its signing secret and its filters."""

    id: str
    url: str
    secret: str = attrs.field(repr=False)
    name: str | None = None
    phone_number_ids: tuple[str, ...] | None = None
    business_account_ids: tuple[str, ...] | None = None
    fields: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None
    #: `config` (the file) or `api` (`POST /webhook/routes`).
    source: str = "api"

    def to_json(self) -> dict[str, Any]:
        """The route as the API shows it: never its secret."""
        data: dict[str, Any] = {"id": self.id, "url": self.url, "name": self.name}
        for name in FILTERS:
            value = getattr(self, name)
            data[name] = None if value is None else list(value)
        data["source"] = self.source
        return data

    def spec(self) -> dict[str, Any]:
        """What the routes table stores beside the id, the URL and the secret."""
        data = self.to_json()
        for name in ("id", "url", "source"):
            del data[name]
        return data


def matches(route: Route, event: Any) -> bool:
    """Return whether *event* (a `WebhookEvent`) passes every filter of *route*."""
    checks = (
        (route.phone_number_ids, event.phone_number_id),
        (route.business_account_ids, event.business_account_id),
        (route.fields, event.field),
        (route.types, event.type),
    )
    return all(allowed is None or value in allowed for allowed, value in checks)


# --- checking a route -------------------------------------------------------------------------


def _text(value: object, field: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RouteError(f"{field} must be a non-empty string", field=field)
    if len(value) > _MAX_TEXT:
        raise RouteError(f"{field} is over {_MAX_TEXT} characters", field=field)
    return value.strip()


def _url(value: object) -> str:
    url = _text(value, "url", required=True)
    assert url is not None
    if not re.match(r"^https?://[^/\s?#]+", url, re.IGNORECASE) or any(c.isspace() for c in url):
        raise RouteError("url must be an absolute http:// or https:// URL with a host", field="url")
    return url


def _secret(value: object, field: str = "secret") -> str:
    if not isinstance(value, str):
        raise RouteError(
            f"{field} is required: a string of at least {MIN_SECRET} characters", field=field
        )
    if len(value.strip()) < MIN_SECRET:
        # Its length only: never the value.
        raise RouteError(
            f"{field} has {len(value.strip())} characters: use at least {MIN_SECRET}",
            field=field,
        )
    return value.strip()


def _filter(value: object, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RouteError(f"{field} must be a list of non-empty strings", field=field)
    if field == "types":
        unknown = sorted({v for v in value if v not in TYPES})
        if unknown:
            raise RouteError(
                f"types names no event type: {', '.join(unknown)[:200]} (the types are "
                f"{', '.join(TYPES)})",
                field=field,
            )
    # An empty list filters nothing, like a filter left out (an n8n field left blank).
    return tuple(dict.fromkeys(v.strip() for v in value)) or None


def _route(data: Mapping[str, Any], *, id: str, secret: str, source: str) -> Route:  # noqa: A002
    return Route(
        id=id,
        url=_url(data.get("url")),
        secret=secret,
        name=_text(data.get("name"), "name"),
        source=source,
        **{name: _filter(data.get(name), name) for name in FILTERS},
    )


def route_from_api(data: object, *, id: str) -> Route:  # noqa: A002 - the route's id
    """Return the route a `POST /webhook/routes` body describes, with the id given.

    Raises:
        RouteError: A field is missing, of the wrong type, or not allowed; `field` names it.
    """
    if not isinstance(data, dict):
        raise RouteError("the body must be a JSON object describing one route", field="body")
    extra = sorted(set(data) - _API_KEYS)
    if extra:
        raise RouteError(
            f"unknown field {extra[0][:60]!r}; the fields are {', '.join(sorted(_API_KEYS))}",
            field=extra[0][:60],
        )
    url = _url(data.get("url"))
    return _route({**data, "url": url}, id=id, secret=_secret(data.get("secret")), source="api")


# --- the configuration file -------------------------------------------------------------------


def _line_of(lines: Sequence[str], index: int, key: str | None, *, toml: bool) -> int | None:
    """Return the line (1-based) of route *index*'s *key*, or of the route, when found."""
    header = re.compile(r"^\s*\[\[\s*routes\s*\]\]") if toml else None
    starts = [
        n
        for n, line in enumerate(lines)
        if (header.match(line) if header is not None else re.search(r'"url"\s*:', line))
    ]
    if index >= len(starts):
        return None
    start = starts[index]
    # A JSON route's object starts at its "url" or before: look back to the brace.
    start_key = start if toml else next((n for n in range(start, -1, -1) if "{" in lines[n]), start)
    if key is None:
        return start_key + 1
    end = starts[index + 1] if index + 1 < len(starts) else len(lines)
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=" if toml else rf'"{re.escape(key)}"\s*:')
    for n in range(start_key, end):
        if pattern.search(lines[n]):
            return n + 1
    return start_key + 1


def _config_route(data: object, index: int, environ: Mapping[str, str], names: set[str]) -> Route:
    where = f"routes[{index}]"
    if not isinstance(data, dict):
        raise RouteError(f"{where} must be a table of url, name, secret and filters", field="")
    extra = sorted(set(data) - _CONFIG_KEYS)
    if extra:
        raise RouteError(
            f"{where}: unknown key {extra[0][:60]!r}; the keys are "
            f"{', '.join(sorted(_CONFIG_KEYS))}",
            field=extra[0],
        )
    name = _text(data.get("name"), "name", required=True)
    assert name is not None
    if name in names:
        raise RouteError(f"{where}: a second route named {name[:60]!r}", field="name")
    names.add(name)
    if ("secret" in data) == ("secret_env" in data):
        raise RouteError(
            f"{where}: give the secret that signs its forwards as secret_env (the name of an "
            "environment variable) or secret, one of them",
            field="secret_env",
        )
    if "secret_env" in data:
        variable = _text(data["secret_env"], "secret_env", required=True)
        assert variable is not None
        if variable not in environ:
            raise RouteError(
                f"{where}: secret_env names {variable[:80]!r}, which is not set", field="secret_env"
            )
        secret = _secret(environ[variable], "secret_env")
    else:
        secret = _secret(data["secret"])
    return _route(data, id=f"config:{name}", secret=secret, source="config")


def _toml_loads(path: str) -> Callable[[str], Any]:
    """The TOML reader: tomllib, or tomli on Python 3.10 (the `serve` extra brings it)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigurationError(
                f"--webhook-config {path}: reading TOML on Python 3.10 needs the tomli package "
                "(pip install 'wa-auth[serve]'); or write the routes as JSON (a .json file)"
            ) from None
    return tomllib.loads


def load_config(path: str, environ: Mapping[str, str]) -> tuple[Route, ...]:
    """Read the routes of a TOML (`.toml`) or JSON file: `routes = [{url, name, secret_env, ...}]`.

    Raises:
        ConfigurationError: The file is unreadable or malformed, or a route is wrong; the
            message names the file, the route, the key and the line, never a secret.
    """
    toml = Path(path).suffix.lower() == ".toml"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"--webhook-config {path}: cannot read it ({reason})") from None
    loads = _toml_loads(path) if toml else json.loads
    try:
        data: Any = loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError both are
        # Their messages give the line and column; a quoted value could be a secret.
        detail = well_formed(str(exc))
        detail = re.sub(r"'[^']*'|\"[^\"]*\"", "…", detail)[:300]
        kind = "TOML" if toml else "JSON"
        raise ConfigurationError(f"--webhook-config {path}: not valid {kind}: {detail}") from None
    if not isinstance(data, dict) or set(data) - {"routes"}:
        raise ConfigurationError(
            f"--webhook-config {path}: the file holds one key, routes (a list of routes)"
        )
    routes = data.get("routes", [])
    if not isinstance(routes, list):
        raise ConfigurationError(f"--webhook-config {path}: routes must be a list of tables")
    lines = text.splitlines()
    names: set[str] = set()
    found = []
    for index, item in enumerate(routes):
        try:
            found.append(_config_route(item, index, environ, names))
        except RouteError as exc:
            line = _line_of(lines, index, exc.field or None, toml=toml)
            at = f" (line {line})" if line is not None else ""
            raise ConfigurationError(f"--webhook-config {path}{at}: {exc.message}") from None
    return tuple(found)


# --- the forward ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, ApiError):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def event_json(event: Any) -> dict[str, Any]:
    """Return every field of *event* (a `WebhookEvent`), `raw` included, as JSON values."""
    data = {"type": event.type}
    data.update({a.name: _plain(getattr(event, a.name)) for a in attrs.fields(type(event))})
    return data


def forward_body(event: Any) -> bytes:
    """Return the body of a forward of *event* (contract 5), as the exact bytes signed."""
    body = {
        "key": event.key,
        "type": event.type,
        "field": event.field,
        "phone_number_id": event.phone_number_id,
        "business_account_id": event.business_account_id,
        "category": event.category,
        "event": event_json(event),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign(secret: str, body: bytes) -> str:
    """Return the `X-Wa-Auth-Signature-256` header's value for *body*."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
