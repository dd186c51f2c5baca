"""Connecting to PostgreSQL: psycopg imported lazily, the server named, every error translated.

`psycopg()` imports psycopg 3 (the `postgres` extra) or raises a `ConfigurationError` naming
the extra. `Target` is a URL taken apart: the server and database that every message names,
and the password that no message, log or `repr` ever shows. `translate` turns any psycopg
error into an `OutboxError` naming the server, the database and the problem: an unreachable
server or a lost connection is an `OutboxUnavailableError` (`transient`, `retryable`), a
refused password `auth_failed`, a database that does not exist `missing`.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import attrs

from wa_auth.errors import ConfigurationError, OutboxError, OutboxUnavailableError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "IDENTIFIER",
    "UNAVAILABLE",
    "Target",
    "is_postgres_url",
    "psycopg",
    "schema_name",
    "translate",
]

_HINT: Final = "needs psycopg 3: pip install 'wa-auth[postgres]'"
#: Kinds of `OutboxUnavailableError`: the database is fine, the same call works later.
UNAVAILABLE: Final = frozenset({"unreachable", "connection_lost", "shutting_down", "busy_db"})
#: A schema name wa_auth creates and quotes: lower case letters, digits and `_`.
IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

#: SQLSTATE classes and codes -> kind.
_SQLSTATE: Final = {
    "28P01": "auth_failed",
    "28000": "auth_failed",
    "3D000": "missing",
    "3F000": "missing",
    "42501": "denied",
    "25006": "readonly",
    "57P01": "shutting_down",
    "57P02": "shutting_down",
    "57P03": "shutting_down",
    "53300": "busy_db",
    "53100": "full",
    "40001": "conflict",
    "40P01": "conflict",
}
_PROBLEMS: Final = {
    "unreachable": "cannot be reached",
    "connection_lost": "closed the connection",
    "shutting_down": "is shutting down or starting",
    "busy_db": "has no free connection",
    "auth_failed": "refused the user name or password",
    "missing": "has no such database or schema",
    "denied": "refused a change: permission denied",
    "readonly": "is read-only (a standby?)",
    "full": "is out of disk space",
    "conflict": "aborted a transaction for a concurrent one",
    "failed": "refused a statement",
}


def psycopg(what: str = "PostgresOutbox") -> ModuleType:
    """Import psycopg 3, or raise a `ConfigurationError` naming the `postgres` extra."""
    try:
        import psycopg as module
    except ImportError:
        raise ConfigurationError(f"{what} {_HINT}") from None
    return module


def is_postgres_url(text: str) -> bool:
    """True for a `postgresql://` (or `postgres://`) URL."""
    return text.startswith(("postgresql://", "postgres://"))


def schema_name(value: object) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ConfigurationError(
            f"schema must be a lower-case SQL name (letters, digits, _), got {value!r}"
        )
    return value


@attrs.frozen(repr=False)
class Target:
    """A PostgreSQL URL: its server and database (named in messages) and the whole URL."""

    url: str = attrs.field(repr=False)
    host: str
    port: str
    database: str
    user: str

    @classmethod
    def parse(cls, dsn: object) -> Target:
        """Take *dsn* apart; a value that is not a `postgresql://` URL is a `ConfigurationError`."""
        if not isinstance(dsn, str) or not is_postgres_url(dsn):
            shown = redact(dsn) if isinstance(dsn, str) else type(dsn).__name__
            raise ConfigurationError(
                f"a PostgreSQL outbox takes a postgresql://user:password@host:port/database URL, "
                f"got {shown!r:.200}"
            )
        try:
            parts = urllib.parse.urlsplit(dsn)
            port = str(parts.port or 5432)
        except ValueError as exc:
            raise ConfigurationError(
                f"PostgreSQL URL {redact(dsn)!r:.200} cannot be read: {exc}"
            ) from None
        query = urllib.parse.parse_qs(parts.query)
        host = parts.hostname or (query.get("host") or ["localhost"])[0]
        database = parts.path.lstrip("/") or (query.get("dbname") or [""])[0] or "(default)"
        return cls(
            url=dsn,
            host=host,
            port=port,
            database=urllib.parse.unquote(database),
            user=urllib.parse.unquote(parts.username or ""),
        )

    @property
    def where(self) -> str:
        """How messages name it: `PostgreSQL 127.0.0.1:5432/db` (never the password)."""
        return f"PostgreSQL {self.host}:{self.port}/{self.database}"

    @property
    def safe_url(self) -> str:
        """The URL with its password replaced by `***`."""
        return redact(self.url)

    def __repr__(self) -> str:
        return f"Target({self.safe_url!r})"


def redact(text: str) -> str:
    """Replace the password of every URL in *text* (and `password=...`) with `***`."""
    text = re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)


def _kind(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in _SQLSTATE:
        return _SQLSTATE[sqlstate]
    if isinstance(sqlstate, str) and sqlstate.startswith("08"):
        return "connection_lost"
    text = str(exc).lower()
    if "password authentication failed" in text or "no password supplied" in text:
        return "auth_failed"
    if "does not exist" in text and "database" in text:
        return "missing"
    if "the database system is" in text or "terminating connection" in text:
        return "shutting_down"
    if "connection refused" in text or "could not" in text or "timeout" in text:
        return "unreachable"
    if "connection" in text and ("closed" in text or "lost" in text or "failed" in text):
        return "connection_lost"
    cls_name = type(exc).__name__
    if cls_name in {"OperationalError", "InterfaceError"}:
        return "connection_lost"
    return "failed"


def translate(exc: BaseException, target: Target, secret: str | None = None) -> OutboxError:
    """Return the `OutboxError` naming *target* and the problem of a psycopg error *exc*."""
    kind = _kind(exc)
    detail = redact(" ".join(str(exc).split()))
    if secret:
        detail = detail.replace(secret, "***")
    cls = OutboxUnavailableError if kind in UNAVAILABLE else OutboxError
    return cls(
        f"{target.where} {_PROBLEMS[kind]}: {detail[:400]}",
        path=target.where,
        kind=kind,
        retryable=kind in UNAVAILABLE or kind == "conflict",
    )


def password_of(target: Target) -> str | None:
    """The URL's password (to scrub it from a driver's message), or None."""
    try:
        found = urllib.parse.urlsplit(target.url).password
    except ValueError:
        return None
    return urllib.parse.unquote(found) if found else None


def connect_kwargs(connect_timeout: float) -> dict[str, Any]:
    """Connection options every connection of wa_auth uses."""
    return {
        "connect_timeout": max(1, round(connect_timeout)),
        "application_name": "wa_auth",
    }
