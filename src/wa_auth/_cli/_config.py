"""The CLI's configuration: environment variables and flags, read into client options.

A token never comes from the command line (every user of the host can read a process's
argv): it comes from `WA_ACCESS_TOKEN`, a file (`WA_TOKEN_FILE`, `--token-file`) or Vault
(`WA_VAULT_*`). Everything else may be a flag or a variable; the flag wins.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Final

from wa_auth.errors import ConfigurationError

#: Flags a token would be passed by; `main` refuses them before argparse sees them (argparse
#: would echo the value in its "unrecognized arguments" message).
SECRET_FLAGS: Final = (
    "--token",
    "--access-token",
    "--app-token",
    "--vault-token",
    "--secret-id",
    "--app-secret",
    # `wa-auth serve`'s own secret: WA_AUTH_API_KEY or --api-key-file.
    "--api-key",
)

ARGV_REFUSAL: Final = (
    "{flag}: a token is never accepted as a command-line argument (every user of this host "
    "can read a process's arguments); set WA_ACCESS_TOKEN, WA_TOKEN_FILE or WA_VAULT_* in the "
    "environment instead (serve's API key: WA_AUTH_API_KEY or --api-key-file)"
)

_TRUE: Final = frozenset({"1", "true", "yes", "on"})


def refused_secret_flag(argv: list[str]) -> str | None:
    """Return the first argument that tries to pass a secret, or None."""
    for arg in argv:
        if arg == "--":
            return None
        name = arg.split("=", 1)[0]
        if name in SECRET_FLAGS:
            return name
    return None


def flag(environ: Mapping[str, str], name: str) -> bool:
    """Return whether the environment variable *name* is set to a true value (`1`, `true`)."""
    return environ.get(name, "").strip().lower() in _TRUE


def _pick(args: argparse.Namespace, attr: str, environ: Mapping[str, str], var: str) -> str | None:
    value = getattr(args, attr, None)
    if value is None:
        value = environ.get(var) or None
    return value


def token_provider(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """Return the token provider the flags and the environment configure.

    One source may be configured: `--token-file`/`WA_TOKEN_FILE`, Vault (`WA_VAULT_ADDR`), or
    `WA_ACCESS_TOKEN`. With none, `WA_ACCESS_TOKEN` is still read at each send, so a missing
    token is each intent's `token_unavailable` failure, like a token file that vanished.

    Raises:
        ConfigurationError: Two sources are configured, or the Vault settings are incomplete.
    """
    token_file = _pick(args, "token_file", environ, "WA_TOKEN_FILE")
    vault = environ.get("WA_VAULT_ADDR") or None
    sources = [
        name
        for name, given in (
            ("--token-file/WA_TOKEN_FILE", token_file),
            ("WA_VAULT_ADDR", vault),
            ("WA_ACCESS_TOKEN", "WA_ACCESS_TOKEN" in environ),
        )
        if given
    ]
    if len(sources) > 1:
        raise ConfigurationError(
            f"configure one token source, not {' and '.join(sources)}: the CLI would not know "
            "which token it sends with"
        )
    if token_file is not None:
        from wa_auth.providers import FileTokenProvider  # its refresh engine: not for the env

        return FileTokenProvider(token_file)
    if vault is not None:
        return _vault_provider(vault, environ)
    from wa_auth.providers import EnvTokenProvider

    return EnvTokenProvider("WA_ACCESS_TOKEN", environ=environ)


def _vault_provider(url: str, environ: Mapping[str, str]) -> Any:
    from wa_auth.providers import VaultAppRole, VaultTokenProvider

    path = environ.get("WA_VAULT_PATH")
    if not path:
        raise ConfigurationError(
            "WA_VAULT_ADDR is set but WA_VAULT_PATH (the secret's path) is not"
        )
    auth: dict[str, Any] = {}
    if environ.get("WA_VAULT_TOKEN"):
        auth["vault_token"] = environ["WA_VAULT_TOKEN"]
    if environ.get("WA_VAULT_TOKEN_FILE"):
        auth["vault_token_file"] = environ["WA_VAULT_TOKEN_FILE"]
    if environ.get("WA_VAULT_ROLE_ID") or environ.get("WA_VAULT_SECRET_ID"):
        auth["approle"] = VaultAppRole(
            role_id=environ.get("WA_VAULT_ROLE_ID", ""),
            secret_id=environ.get("WA_VAULT_SECRET_ID", ""),
            mount=environ.get("WA_VAULT_APPROLE_MOUNT", "approle"),
        )
    if len(auth) != 1:
        raise ConfigurationError(
            "Vault needs exactly one credential: WA_VAULT_TOKEN, WA_VAULT_TOKEN_FILE, or "
            "WA_VAULT_ROLE_ID with WA_VAULT_SECRET_ID"
        )
    kv = environ.get("WA_VAULT_KV_VERSION", "2")
    if kv not in {"1", "2"}:
        raise ConfigurationError(f"WA_VAULT_KV_VERSION must be 1 or 2, got {kv!r}")
    try:
        return VaultTokenProvider(
            url,
            path,
            mount=environ.get("WA_VAULT_MOUNT", "secret"),
            field=environ.get("WA_VAULT_FIELD", "access_token"),
            kv_version=int(kv),
            namespace=environ.get("WA_VAULT_NAMESPACE") or None,
            verify=environ.get("WA_VAULT_CACERT") or True,
            **auth,
        )
    except ValueError as exc:
        raise ConfigurationError(f"Vault settings: {exc}") from None


def app_token_provider(environ: Mapping[str, str]) -> Any:
    """Return the provider of the app token `check` asks `debug_token` with, or None.

    `WA_APP_TOKEN` (`{app-id}|{app-secret}`) or `WA_APP_TOKEN_FILE`; without one, the token
    inspects itself (which Meta allows for user tokens, not for system-user tokens).
    """
    if environ.get("WA_APP_TOKEN_FILE"):
        from wa_auth.providers import FileTokenProvider

        return FileTokenProvider(environ["WA_APP_TOKEN_FILE"])
    if "WA_APP_TOKEN" in environ:
        from wa_auth.providers import EnvTokenProvider

        return EnvTokenProvider("WA_APP_TOKEN", environ=environ)
    return None


def client_options(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Return the keyword arguments of a client for *args* and *environ*.

    Raises:
        ConfigurationError: A setting is missing or malformed; the message names it.
    """
    from wa_auth._hub import Events

    options: dict[str, Any] = {
        "token_provider": token_provider(args, environ),
        "phone_number_id": _pick(args, "phone_number_id", environ, "WA_PHONE_NUMBER_ID"),
        "business_account_id": _pick(
            args, "business_account_id", environ, "WA_BUSINESS_ACCOUNT_ID"
        ),
        "consumer": _pick(args, "consumer", environ, "WA_AUTH_CONSUMER"),
        # Nothing below the CLI prints: events are logged only with --verbose.
        "events": Events.with_logging() if getattr(args, "verbose", False) else Events(),
    }
    base_url = _pick(args, "base_url", environ, "WA_BASE_URL")
    if base_url is not None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"--base-url/WA_BASE_URL must be an http(s) URL, got {base_url!r}"
            )
        options["base_url"] = base_url
    api_version = _pick(args, "api_version", environ, "WA_API_VERSION")
    if api_version is not None:
        if not api_version.startswith("v"):
            raise ConfigurationError(f"--api-version must look like 'v23.0', got {api_version!r}")
        options["api_version"] = api_version
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        options["timeout"] = timeout
    app_token = app_token_provider(environ)
    if app_token is not None:
        options["app_token_provider"] = app_token
    return options


#: Without --rate, a state file's limiter keeps Meta's penalties across runs but paces
#: nothing else: its own pacing is this fast.
_UNPACED: Final = 1e6


@contextlib.contextmanager
def _redis_state(
    url: str,
    rate: float | None,
    client_options: dict[str, Any],
    guard_options: dict[str, Any] | None,
) -> Iterator[Any]:
    """Open `--redis URL` (or `WA_AUTH_REDIS_URL`) and wire its stores like a state file's.

    The limiter is the fleet's `RedisRateLimiter`: at `--rate` with Meta's pair interval, so
    every process paces one number together; without `--rate`, like a state file's, it
    paces nothing but holds a number (or a pair) for the penalties any process received.
    """
    from wa_auth.fleet import RedisState

    state = RedisState(url)
    try:
        client_options["verdicts"] = state.verdicts
        client_options["health_cache"] = state.health
        if guard_options is not None:
            guard_options["pauses"] = state.pauses
            guard_options["limiter"] = (
                state.limiter(rate=_UNPACED, pair_interval=None)
                if rate is None
                else state.limiter(rate=rate)
            )
        yield state
    finally:
        state.close()


@contextlib.contextmanager
def state_file(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    client_options: dict[str, Any],
    guard_options: dict[str, Any] | None = None,
) -> Iterator[Any]:
    """Open `--state PATH` (or `WA_AUTH_STATE`) and wire it into the client and guard options.

    `--redis URL` (or `WA_AUTH_REDIS_URL`) opens a `RedisState` instead: the same stores,
    shared by a fleet.

    What one short-lived run learns, the next one knows: dead tokens (`verdicts`), paused
    numbers and open circuits (`pauses`), Meta's rate-limit penalties (the limiter), and the
    token's health report (`health_cache`).

    Raises:
        ConfigurationError: The file cannot be used (corrupt, read-only, a newer schema).
        OutboxUnavailableError: The disk is full or the file locked (`transient`).
    """
    path = getattr(args, "state", None) or environ.get("WA_AUTH_STATE") or None
    url = getattr(args, "redis", None) or environ.get("WA_AUTH_REDIS_URL") or None
    if url is not None:
        if path is not None:
            raise ConfigurationError(
                "--state and --redis (WA_AUTH_STATE, WA_AUTH_REDIS_URL) both name the shared "
                "state: give one"
            )
        rate = getattr(args, "rate", None)
        with _redis_state(url, rate, client_options, guard_options) as shared:
            yield shared
        return
    if path is None:
        yield None
        return
    from wa_auth.errors import OutboxError, OutboxUnavailableError
    from wa_auth.state import StateFile

    try:
        state = StateFile(path)
    except OutboxUnavailableError:
        raise  # the file is fine: try again later (exit 8), not a usage error
    except OutboxError as exc:
        raise ConfigurationError(f"--state {path}: {exc.message}") from None
    try:
        client_options["verdicts"] = state.verdicts
        client_options["health_cache"] = state.health
        if guard_options is not None:
            from wa_auth.pacing import LocalRateLimiter

            pacing = guard_options.get("limiter") or LocalRateLimiter(
                rate=_UNPACED, pair_interval=None
            )
            guard_options["pauses"] = state.pauses
            guard_options["limiter"] = state.limiter(pacing)
        yield state
    finally:
        state.close()


def environ() -> Mapping[str, str]:
    """Return the process environment (one place, so tests can see what is read)."""
    return os.environ
