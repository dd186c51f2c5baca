"""What Vault's answers mean when they are no token: sealed, down, denied, or nothing there.

`VaultTokenProvider` (`_vault`) reads a secret; an answer other than the secret becomes the
`TokenUnavailableError` subclass that says whose fault it is, its message redacted of every
credential the provider holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import attrs

from wa_auth._redact import redact_text
from wa_auth.errors import (
    TokenUnavailableError,
    VaultCredentialError,
    VaultSealedError,
    VaultSecretNotFoundError,
    VaultUnreachableError,
)

__all__ = ["MAX_ERROR_CHARS", "Answer", "errors_text", "not_found", "status_error"]

#: How much of Vault's `errors` an error's message quotes.
MAX_ERROR_CHARS: Final = 200


@attrs.frozen
class Answer:
    """One answer of Vault: its status and its JSON body (None when it is not JSON)."""

    status: int
    body: Any = attrs.field(repr=False)


def errors_text(answer: Answer, secrets: Sequence[str]) -> str:
    """Return Vault's `errors` as one line (else the HTTP status), every secret redacted."""
    body = answer.body
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        text = "; ".join(" ".join(str(e).split()) for e in errors)
    else:
        text = f"HTTP {answer.status}"
    return redact_text(text, *secrets)[:MAX_ERROR_CHARS]


def status_error(
    answer: Answer, what: str, *, url: str, source: str, secrets: Sequence[str]
) -> TokenUnavailableError:
    """Return the error of a Vault answer that is no success: sealed, down, denied, other."""
    detail = errors_text(answer, secrets)
    if answer.status == 503 and "sealed" in detail.lower():
        return VaultSealedError(f"Vault at {url} is sealed ({what} of {source})", source=source)
    if answer.status >= 500 or answer.status in (412, 429, 472, 473):
        return VaultUnreachableError(
            f"Vault at {url} failed the {what} of {source}: HTTP {answer.status} ({detail})",
            source=source,
        )
    if answer.status == 403:
        return VaultCredentialError(f"Vault denied the {what} ({detail})", source=source)
    return TokenUnavailableError(
        f"Vault answered HTTP {answer.status} to the {what} of {source} ({detail})",
        source=source,
    )


def not_found(body: Any, *, source: str, namespace: str | None) -> VaultSecretNotFoundError:
    """Return the error of a 404: no secret, a deleted or destroyed version, the wrong KV."""
    body = body if isinstance(body, dict) else {}
    data: Any = body.get("data")
    meta = data.get("metadata") if isinstance(data, dict) else None
    warnings = " ".join(str(w) for w in body.get("warnings") or ())
    errors = " ".join(str(e) for e in body.get("errors") or ())
    if isinstance(meta, dict) and meta.get("destroyed"):
        kind, what = "destroyed_version", f"version {meta.get('version')} was destroyed"
    elif isinstance(meta, dict) and meta.get("deletion_time"):
        kind, what = "deleted_version", f"version {meta.get('version')} was deleted"
    elif "versioned" in warnings.lower():
        kind, what = "wrong_kv_version", "the mount is KV v2: use kv_version=2"
    elif "namespace" in errors.lower():
        kind, what = "no_secret", f"the namespace {namespace!r} does not exist"
    else:
        kind, what = "no_secret", "no secret was ever written there"
    return VaultSecretNotFoundError(
        f"Vault has no token at {source}: {what}", kind=kind, source=source
    )
