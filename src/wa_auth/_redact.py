"""Token fingerprints and redaction: the only ways a token may be shown.

A token never appears in a log, repr, exception or CLI output; its fingerprint does. URLs that
carry tokens in their query (`debug_token?input_token=...`, the `fb_exchange_token` exchange)
are redacted wherever they are shown, including httpx's own INFO request line. The values of
variables whose names say TOKEN, KEY or SECRET are replaced by the variable's name wherever
the CLI prints (`named_secrets`, `scrub`): a secret put where a file name belongs is still a
secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

REDACTED: Final = "[REDACTED]"

#: Query parameters and form fields whose values are secrets.
SECRET_PARAMS: Final = (
    "access_token",
    "input_token",
    "fb_exchange_token",
    "client_secret",
    "appsecret_proof",
    "secret_id",
)

_PARAM_RE: Final = re.compile(
    r"(?i)\b(" + "|".join(SECRET_PARAMS) + r")(=|%3D|\"\s*:\s*\"|':\s*')([^&\s\"'<>]+)"
)
_BEARER_RE: Final = re.compile(r"(?i)\b(bearer|oauth)(\s+)([A-Za-z0-9._~+/=|-]{8,})")
#: Meta user/system-user/page tokens start with "EAA"; app tokens are `{app-id}|{app-secret}`.
#: Graph echoes them in some messages ("Malformed access token EAAG..."), so they are redacted
#: even where the caller did not say which token to look for.
_META_TOKEN_RE: Final = re.compile(r"\bEAA[A-Za-z0-9]{20,}|\b\d{6,20}\|[A-Za-z0-9_-]{20,}")


def fingerprint(token: str) -> str:
    """Return the one fingerprint format of the project: `sha256:` + 12 hex digits."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def redact_secret(text: str, secret: str) -> str:
    """Replace every occurrence of *secret* (any shape) in *text*."""
    return text.replace(secret, REDACTED) if secret and secret in text else text


def redact_text(text: str, *secrets: str) -> str:
    """Redact token-bearing query parameters, bearer credentials and any of *secrets* in *text*."""
    for secret in secrets:
        text = redact_secret(text, secret)
    low = text.lower()
    # Cheap substring checks first: most texts (Meta's messages) need no regex at all.
    if ("_token" in low or "secret" in low or "_proof" in low) and (
        "=" in text or ":" in text or "%3d" in low
    ):
        text = _PARAM_RE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    if "bearer" in low or "oauth" in low:
        text = _BEARER_RE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    if "EAA" in text or "|" in text:
        text = _META_TOKEN_RE.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrite a record's message and arguments so no token-bearing URL is logged.

    httpx logs `HTTP Request: GET https://.../debug_token?input_token=... "HTTP/1.1 200 OK"` at
    INFO; the URL object is one of the record's args.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place and keep it."""
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                redact_text(a) if isinstance(a, str) else _redact_obj(a) for a in args
            )
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


def scrub_chain(error: BaseException, token: str, *, keep: type[BaseException]) -> None:
    """Redact *token* from the arguments of the foreign exceptions chained to *error*.

    A transport library's exception (kept as `__cause__`) may quote the URL or the request
    headers in its message; its `str()` and the formatted traceback must not show the token.
    Exceptions of the *keep* class redact their own texts, and are left as they are.
    """
    seen: list[BaseException] = [error]
    todo = [error.__cause__, error.__context__]
    while todo:
        exc = todo.pop()
        if exc is None or any(exc is s for s in seen):
            continue
        seen.append(exc)
        todo.extend((exc.__cause__, exc.__context__))
        if not isinstance(exc, keep):
            exc.args = tuple(redact_text(a, token) if isinstance(a, str) else a for a in exc.args)


def _redact_obj(obj: object) -> object:
    if isinstance(obj, (int, float, bool)) or obj is None:
        return obj
    text = str(obj)
    redacted = redact_text(text)
    return obj if redacted == text else redacted


_FILTER_NAME: Final = "wa_auth.redact"


def install_log_redaction() -> None:
    """Attach the redacting filter to the `httpx` and `httpcore` loggers, once.

    This is the one piece of global state wa_auth touches: idempotent, and harmless to loggers
    that never see a token.
    """
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(getattr(f, "name", None) == _FILTER_NAME for f in logger.filters):
            flt = RedactingFilter(_FILTER_NAME)
            logger.addFilter(flt)


# --- named secrets ------------------------------------------------------------------------------

#: Words in a variable's name that make its value a secret the CLI never prints (a token, a
#: token's file, an API key, a Vault secret id).
SECRET_NAME_WORDS: Final = ("TOKEN", "KEY", "SECRET")
#: Shorter values are not treated as secrets: no token, key or secret id is this short, and
#: replacing a two-letter value everywhere would garble every line.
MIN_SECRET_LENGTH: Final = 4


def named_secrets(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Return `(name, value)` of every variable of *environ* whose name says TOKEN, KEY or SECRET.

    The longest values come first, so a value that holds another is replaced whole.
    """
    found = {
        (name, value.strip())
        for name, value in environ.items()
        if any(word in name.upper() for word in SECRET_NAME_WORDS)
        and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    return tuple(sorted(found, key=lambda item: (-len(item[1]), item[0])))


def _value_pattern(value: str) -> re.Pattern[str]:
    # Not inside a longer word: a value `token` must not eat `token_fingerprint`.
    return re.compile(r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_])")


def scrub_text(text: str, secrets: Sequence[tuple[str, str]]) -> str:
    """Replace each secret value in *text* by its variable's name in brackets: `[WA_TOKEN_FILE]`."""
    for name, value in secrets:
        if value in text:
            text = _value_pattern(value).sub(f"[{name}]", text)
    return text


def scrub(obj: Any, secrets: Sequence[tuple[str, str]]) -> Any:
    """Return *obj* (JSON data) with every secret value in its strings replaced (`scrub_text`).

    Keys are left alone: they are the CLI's own names, and renaming one would break the line's
    shape.
    """
    if isinstance(obj, str):
        return scrub_text(obj, secrets)
    if isinstance(obj, dict):
        return {key: scrub(value, secrets) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(value, secrets) for value in obj]
    return obj


def secret_forms(secrets: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Return every form a secret value takes in printed text: as it is, and JSON-escaped.

    Made once per run, so a line is checked with plain substring tests (`holds_secret`).
    """
    forms = {
        form
        for _, value in secrets
        for form in (value, _json_escaped(value), _json_escaped(value, ascii_only=True))
    }
    return tuple(sorted(forms))


def holds_secret(text: str, forms: Sequence[str]) -> bool:
    """Return whether *text* holds one of the `secret_forms`."""
    return any(form in text for form in forms)


def _json_escaped(value: str, *, ascii_only: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)[1:-1]
