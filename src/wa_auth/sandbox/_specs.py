"""The request specs: how a token is asked for, from a tokens file, the admin API or Python.

A `TokenSpec` is one entry of a tokens file (or of `issue_token`'s arguments) after every
check: the same checks, and the same messages, wherever the request comes from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from wa_auth.sandbox._checks import MAX_SECONDS, check_keys, opt_text, real, text_list
from wa_auth.sandbox._values import (
    DEFAULT_SCOPES,
    TOKEN_KINDS,
    TOKEN_STATES,
    TOKEN_VARIANTS,
)

__all__ = [
    "DEMO_SPECS",
    "SHORT_LIVED_SECONDS",
    "TokenSpec",
    "check_token_state",
    "load_token_specs",
    "spec_from",
]

#: A short-lived user token (the demo `user` token) lives about an hour.
SHORT_LIVED_SECONDS: Final = 3600


@attrs.frozen(kw_only=True)
class TokenSpec:
    """How to create a token at start and on every `reset()` (one entry of a tokens file)."""

    value: str | None = attrs.field(default=None, repr=False)
    name: str | None = None
    kind: str = "system_user"
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    expires_in: float | None = None
    state: str = "valid"
    variant: str | None = None
    allowed_wabas: tuple[str, ...] | None = None
    allowed_phone_numbers: tuple[str, ...] | None = None


_SPEC_KEYS: Final = frozenset(attrs.fields_dict(TokenSpec))

#: The tokens created when no tokens file is given.
DEMO_SPECS: Final = (
    TokenSpec(name="system_user", kind="system_user"),
    TokenSpec(name="user", kind="user", expires_in=SHORT_LIVED_SECONDS),
)


def spec_from(entry: Any, where: str) -> TokenSpec:
    """Return the checked spec of one tokens-file entry (or `issue_token` call).

    Raises:
        ValueError: An unknown key or a bad value, named with *where*.
    """
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: each token must be a JSON object")  # noqa: TRY004 - a bad file
    check_keys(where, entry, _SPEC_KEYS)
    value = entry.get("value")
    if value is not None and (
        not isinstance(value, str)
        or not value
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"{where}: value must be a non-empty string without spaces")
    name = opt_text(f"{where}: name", entry.get("name"))
    kind = entry.get("kind", "system_user")
    if kind not in TOKEN_KINDS:
        raise ValueError(f"{where}: kind must be one of {list(TOKEN_KINDS)}, got {kind!r}")
    expires_in = entry.get("expires_in")
    if expires_in is not None:
        expires_in = real(f"{where}: expires_in", expires_in, high=MAX_SECONDS)
    state = entry.get("state", "valid")
    variant = entry.get("variant")
    check_token_state(state, variant, where)
    scopes = text_list(f"{where}: scopes", entry.get("scopes", list(DEFAULT_SCOPES)))
    return TokenSpec(
        value=value,
        name=name,
        kind=kind,
        scopes=scopes,
        expires_in=expires_in,
        state=state,
        variant=variant,
        allowed_wabas=_ids(entry.get("allowed_wabas"), f"{where}: allowed_wabas"),
        allowed_phone_numbers=_ids(
            entry.get("allowed_phone_numbers"), f"{where}: allowed_phone_numbers"
        ),
    )


def _ids(value: Any, name: str) -> tuple[str, ...] | None:
    return None if value is None else text_list(name, value, ids=True)


def check_token_state(state: Any, variant: Any, where: str = "token") -> None:
    """Refuse a token *state* or *variant* that `TOKEN_STATES` / `TOKEN_VARIANTS` lack.

    Raises:
        ValueError: An unknown state, or a variant the state does not have.
    """
    if not isinstance(state, str) or state not in TOKEN_STATES:
        raise ValueError(f"{where}: state must be one of {list(TOKEN_STATES)}, got {state!r}")
    allowed = TOKEN_VARIANTS.get(state, ())
    if variant is not None and (not isinstance(variant, str) or variant not in allowed):
        raise ValueError(
            f"{where}: variant of state {state!r} must be one of {list(allowed)}, got {variant!r}"
        )


def load_token_specs(tokens: Any) -> tuple[TokenSpec, ...] | None:
    """Read the `tokens=` argument: None, a path to a JSON tokens file, or a list of objects.

    The file holds `{"tokens": [...]}` or a bare list; each entry has the keys of `TokenSpec`.

    Raises:
        ValueError: The file is missing, not JSON, or an entry is invalid.
    """
    if tokens is None:
        return None
    if isinstance(tokens, (str, bytes)) or hasattr(tokens, "__fspath__"):
        try:
            with open(tokens, encoding="utf-8") as fh:  # noqa: PTH123 - str, bytes or PathLike
                data = json.load(fh)
        except OSError as exc:
            raise ValueError(f"cannot read the tokens file: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValueError(f"the tokens file is not valid JSON: {exc}") from None
    else:
        data = tokens
    if isinstance(data, Mapping):
        extra = sorted(set(data) - {"tokens"})
        if extra or "tokens" not in data:
            raise ValueError('the tokens file must be {"tokens": [...]} or a JSON list')
        data = data["tokens"]
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence) or not data:
        raise ValueError("tokens must be a non-empty list of token objects")
    specs = tuple(spec_from(entry, f"tokens[{i}]") for i, entry in enumerate(data))
    values = [s.value for s in specs if s.value is not None]
    if len(values) != len(set(values)):
        raise ValueError("tokens: two entries have the same value")
    return specs
