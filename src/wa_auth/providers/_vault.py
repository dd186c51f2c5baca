"""`VaultTokenProvider`: the token in a HashiCorp Vault / OpenBao KV secret, over httpx.

The conversation with Vault (log in, renew, read, tell a dead Vault token from a policy
denial) is written once as a flow of effects (`providers/_effects.py`: HTTP requests, the read
of a Vault token file) and driven twice: with a blocking `httpx.Client` and with an
`httpx.AsyncClient`. Each refresh opens its own client and closes it, so no connection is
shared across event loops or across a `fork()`. What an answer other than the secret means
(sealed, down, denied, nothing there) is `_vault_answers`.
"""

from __future__ import annotations

import math
import os
import ssl
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import attrs
import certifi

from wa_auth import _deadline
from wa_auth._redact import redact_text
from wa_auth._validate import check_deadline
from wa_auth.errors import (
    ConfigurationError,
    TokenSourceMalformedError,
    TokenSourceMissingError,
    TokenUnavailableError,
    VaultCredentialError,
    VaultPolicyError,
    VaultSecretNotFoundError,
    VaultUnreachableError,
)
from wa_auth.providers._base import Token, clean_token, parse_expires_at
from wa_auth.providers._effects import Blocking, Flow, Http, Send, adrive, drive
from wa_auth.providers._refresh import Fetched, RefreshingTokenProvider, RefreshPolicy
from wa_auth.providers._vault_answers import Answer, errors_text, not_found, status_error

if TYPE_CHECKING:
    import httpx

__all__ = ["VaultAppRole", "VaultTokenProvider"]

#: Default seconds between two reads of the secret: a rotation written to Vault is picked up
#: within five minutes without putting a read per request on Vault.
DEFAULT_TTL: Final = 300.0
#: Default bound on serving the cached token while Vault is unreachable or sealed, counted from
#: the missed re-read: one hour rides out a restart, an unseal or a leader election, and still
#: stops a token that was rotated away in Vault from being used forever.
DEFAULT_MAX_STALE: Final = 3600.0
#: Default seconds one read of the secret may take, every request of it included (log in, read,
#: look up): three of its 5 s requests. httpx's timeout bounds each wait alone, so a Vault that
#: trickles its answer would otherwise hold the read (and every caller waiting for it) forever;
#: 15 s leaves a client call's 30 s deadline time to send once the token is there.
DEFAULT_DEADLINE: Final = 15.0
#: An AppRole token is renewed once this share of its lease has passed (Vault agent's habit).
RENEW_AT_LEASE_FRACTION: Final = 2 / 3


@attrs.frozen(kw_only=True)
class VaultAppRole:
    """AppRole credentials: Vault exchanges them for a renewable Vault token.

    Args:
        role_id: The role id.
        secret_id: The secret id (never shown in a repr).
        mount: Where the AppRole auth method is mounted.
    """

    role_id: str
    secret_id: str = attrs.field(repr=False)
    mount: str = "approle"


@attrs.define
class _Login:
    token: str = attrs.field(repr=False)
    obtained: float
    lease: float
    renewable: bool


class VaultTokenProvider(RefreshingTokenProvider):
    """The token stored in a Vault or OpenBao KV secret (v2 or v1).

    The secret is cached and re-read every *ttl* seconds and after `invalidate`. While Vault is
    unreachable or sealed, the cached token keeps being served for up to *max_stale* seconds
    past the missed re-read (`DEFAULT_MAX_STALE`); after that callers get the Vault error.

    Args:
        url: Vault's address, such as `https://vault.internal:8200`.
        path: The secret's path inside the mount (`wa/prod`).
        mount: The KV mount.
        field: The secret's key holding the access token. An optional `expires_at` key (or
            KV v2 `custom_metadata.expires_at`) gives its expiry.
        kv_version: 2 (versioned) or 1.
        vault_token: A Vault token.
        vault_token_file: A file holding a Vault token (a Vault agent sink); read per refresh.
        approle: AppRole credentials; the Vault token is renewed and re-obtained as needed.
        namespace: A Vault Enterprise / OpenBao namespace.
        verify: TLS verification: True (default CAs), a CA bundle path, or an `ssl.SSLContext`.
            False only for a loopback dev server.
        ttl: Seconds between re-reads of the secret.
        max_stale: Bound on serving the cached token while Vault fails; None: until expiry.
        timeout: Seconds per Vault request, each wait alone (connect, each read...).
        deadline: Seconds one read of the secret may take, all its requests included
            (`DEFAULT_DEADLINE`); past it, `VaultUnreachableError`. A read for a client call
            also ends by that call's deadline, when it comes first.
        policy: Overrides the refresh policy derived from *ttl* and *max_stale*.
        transport: An httpx transport for the blocking client (tests).
        async_transport: An httpx transport for the async client (tests).
        clock: Wall clock, for expiry.
        monotonic: Interval clock.

    Raises:
        VaultUnreachableError: From `get_token`, when Vault does not answer (or answers 5xx).
        VaultSealedError: When Vault is sealed.
        VaultCredentialError: When the Vault token or AppRole login is dead or wrong.
        VaultPolicyError: When the Vault token may not read the path.
        VaultSecretNotFoundError: When the secret, its version or its field does not exist.
    """

    def __init__(
        self,
        url: str,
        path: str,
        *,
        mount: str = "secret",
        field: str = "access_token",
        kv_version: int = 2,
        vault_token: str | None = None,
        vault_token_file: str | os.PathLike[str] | None = None,
        approle: VaultAppRole | None = None,
        namespace: str | None = None,
        verify: bool | str | ssl.SSLContext = True,
        ttl: float = DEFAULT_TTL,
        max_stale: float | None = DEFAULT_MAX_STALE,
        timeout: float = 5.0,
        deadline: float = DEFAULT_DEADLINE,
        policy: RefreshPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError("url must be an http(s) URL")
        if kv_version not in (1, 2):
            raise ConfigurationError("kv_version must be 1 or 2")
        given = [x is not None for x in (vault_token, vault_token_file, approle)]
        if sum(given) != 1:
            raise ConfigurationError(
                "pass exactly one of vault_token=, vault_token_file=, approle="
            )
        if vault_token is not None and not vault_token.strip():
            raise ConfigurationError("vault_token must not be blank")
        check_deadline(deadline)
        if namespace is not None and not (namespace.isascii() and namespace.isprintable()):
            raise ConfigurationError("namespace must be printable ASCII (it is sent as a header)")
        self.url = url.rstrip("/")
        self.path = path.strip("/")
        self.mount = mount.strip("/")
        self.field = field
        self.kv_version = kv_version
        self.namespace = namespace
        self.timeout = timeout
        self.deadline = float(deadline)
        self._source = f"vault:{self.mount}/{self.path}"
        self._vault_token = (
            clean_token(vault_token, what="vault_token", source=self._source)
            if vault_token is not None
            else None
        )
        self._vault_token_file = os.fspath(vault_token_file) if vault_token_file else None
        self._approle = approle
        self._login: _Login | None = None
        self._file_token: str | None = None
        self._monotonic_clock = monotonic
        self._verify = _ssl_context(verify)
        self._http = Http(
            self._client_options(),
            transport,
            async_transport,
            deadline=self.deadline,
            what="the Vault read",
        )
        if policy is None:
            policy = RefreshPolicy(recheck_interval=ttl, max_stale=max_stale)
        super().__init__(policy=policy, name=self._source, clock=clock, monotonic=monotonic)

    def __repr__(self) -> str:
        auth = "approle" if self._approle else "token_file" if self._vault_token_file else "token"
        return (
            f"VaultTokenProvider(url={self.url!r}, mount={self.mount!r}, path={self.path!r}, "
            f"kv_version={self.kv_version!r}, auth={auth!r})"
        )

    # --- drivers --------------------------------------------------------------------------------

    def _client_options(self) -> dict[str, Any]:
        headers = {"X-Vault-Request": "true"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        return {
            "base_url": self.url + "/v1/",
            "headers": headers,
            "timeout": self.timeout,
            "verify": self._verify,
        }

    def _load(self, current: Token | None, forced: bool) -> Fetched:  # noqa: ARG002
        return drive(self._flow(), self._http)

    async def _aload(self, current: Token | None, forced: bool) -> Fetched:  # noqa: ARG002
        return await adrive(self._flow(), self._http)

    def _unreachable(self, exc: httpx.HTTPError) -> VaultUnreachableError:
        # The cause is rebuilt as a plain exception: httpx's keeps the request, and the
        # request keeps the Vault token.
        late = _deadline.passed()
        why = type(exc).__name__ if late is None else f"{type(exc).__name__}: {late.what} passed"
        error = VaultUnreachableError(
            f"Vault at {self.url} did not answer ({why})", source=self._source
        )
        detail = redact_text(str(exc), *self._secrets())
        error.__cause__ = ConnectionError(f"{type(exc).__name__}: {detail}")
        return error

    # --- the conversation -----------------------------------------------------------------------

    def _flow(self) -> Flow[Fetched]:
        vault_token, fresh_login = yield from self._get_vault_token()
        answer = yield from self._call("GET", self._read_path(), vault_token)
        if answer.status == 403:
            alive = yield from self._lookup_self(vault_token)
            if not alive and self._approle is not None and not fresh_login:
                # The cached AppRole token died early (revoked, or Vault restarted): log in again.
                self._login = None
                vault_token, _ = yield from self._get_vault_token()
                answer = yield from self._call("GET", self._read_path(), vault_token)
                if answer.status == 403:
                    alive = yield from self._lookup_self(vault_token)
            if answer.status == 403:
                if alive:
                    # A policy written for the other KV version's paths denies this one.
                    yield from self._check_kv_version(vault_token)
                    raise VaultPolicyError(
                        f"Vault denied reading {self._source} ({self._errors(answer)}); the Vault "
                        "token is valid (lookup-self succeeds), so its policy lacks read access",
                        source=self._source,
                    )
                raise VaultCredentialError(
                    f"Vault denied reading {self._source} and denies lookup-self too: the Vault "
                    "token is expired, revoked or wrong",
                    source=self._source,
                )
        if answer.status == 404 and self._not_found(answer.body).kind == "no_secret":
            # A KV v2 read of a KV v1 mount finds nothing, without the warning that gives away
            # the reverse mistake: ask the mount itself.
            yield from self._check_kv_version(vault_token)
        return self._parse_read(answer)

    def _check_kv_version(self, vault_token: str) -> Flow[None]:
        """Raise `wrong_kv_version` if the mount says it is the other KV version."""
        answer = yield from self._call(
            "GET", f"sys/internal/ui/mounts/{quote(self.mount, safe='/')}", vault_token
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        data = body.get("data")
        if answer.status != 200 or not isinstance(data, dict) or data.get("type") != "kv":
            return  # no access to the mount's description, or not KV: nothing to add
        options = data.get("options")
        found = options.get("version") if isinstance(options, dict) else None
        version = 2 if str(found) == "2" else 1
        if version != self.kv_version:
            raise VaultSecretNotFoundError(
                f"Vault has no token at {self._source}: the mount is KV v{version}: use "
                f"kv_version={version}",
                kind="wrong_kv_version",
                source=self._source,
            )

    def _call(
        self,
        method: str,
        path: str,
        vault_token: str | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Flow[Answer]:
        """Send one request to Vault; a connection failure is `VaultUnreachableError`."""
        headers = {"Authorization": "Bearer " + vault_token} if vault_token else None
        import httpx  # Vault's HTTP is httpx's: loaded when a read runs

        failure: httpx.HTTPError | None = None
        try:
            r: httpx.Response = yield Send(method, path, headers=headers, json=body)
        except httpx.HTTPError as exc:
            failure = exc
        else:
            return Answer(r.status_code, _json(r))
        raise self._unreachable(failure)

    def _read_path(self) -> str:
        path = quote(self.path, safe="/")
        if self.kv_version == 2:
            return f"{self.mount}/data/{path}"
        return f"{self.mount}/{path}"

    def _get_vault_token(self) -> Flow[tuple[str, bool]]:
        if self._vault_token is not None:
            return self._vault_token, False
        if self._vault_token_file is not None:
            text: str = yield Blocking(partial(_read_token_file, self._vault_token_file))
            self._file_token = text
            return text, False
        assert self._approle is not None
        login = self._login
        now = self._monotonic_clock()
        if login is not None:
            age = now - login.obtained
            if age < login.lease * RENEW_AT_LEASE_FRACTION:
                return login.token, False
            if login.renewable and age < login.lease:
                answer = yield from self._call("POST", "auth/token/renew-self", login.token, {})
                auth = _auth_block(answer)
                if answer.status == 200 and auth is not None:
                    self._login = _Login(
                        login.token,
                        now,
                        float(auth.get("lease_duration") or 0),
                        bool(auth.get("renewable")),
                    )
                    return login.token, False
            self._login = None
        role = self._approle
        answer = yield from self._call(
            "POST",
            f"auth/{quote(role.mount, safe='')}/login",
            None,
            {"role_id": role.role_id, "secret_id": role.secret_id},
        )
        auth = _auth_block(answer)
        if answer.status in (400, 403):
            raise VaultCredentialError(
                f"Vault rejected the AppRole login on auth/{role.mount} ({self._errors(answer)})",
                source=self._source,
            )
        if answer.status != 200 or auth is None or not isinstance(auth.get("client_token"), str):
            raise self._status_error(answer, "AppRole login")
        client_token = clean_token(
            auth["client_token"],
            what=f"the client_token of the AppRole login on auth/{role.mount}",
            source=self._source,
        )
        lease = float(auth.get("lease_duration") or 0) or float("inf")
        self._login = _Login(client_token, now, lease, bool(auth.get("renewable")))
        return client_token, True

    def _lookup_self(self, vault_token: str) -> Flow[bool]:
        answer = yield from self._call("GET", "auth/token/lookup-self", vault_token)
        # Never look into this body: its data.id is the Vault token itself.
        if answer.status == 200:
            return True
        if answer.status == 403:
            return False
        raise self._status_error(answer, "lookup-self")

    def _parse_read(self, answer: Answer) -> Fetched:
        if answer.status == 404:
            raise self._not_found(answer.body)
        if answer.status != 200:
            raise self._status_error(answer, "read")
        body = answer.body if isinstance(answer.body, dict) else {}
        data = body.get("data")
        recheck: float | None = None
        version: object = None
        hints: Mapping[str, Any] = {}
        if self.kv_version == 2:
            if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
                raise self._malformed("is not a KV v2 answer (is the mount KV v1?)")
            found = data.get("metadata")
            meta: dict[str, Any] = found if isinstance(found, dict) else {}
            version = meta.get("version")
            custom = meta.get("custom_metadata")
            hints = custom if isinstance(custom, dict) else {}
            data = data["data"]
        else:
            if not isinstance(data, dict):
                raise self._malformed("is not a KV v1 answer")
            lease = body.get("lease_duration")
            if isinstance(lease, (int, float)) and 0 < lease < math.inf:
                recheck = float(lease)  # a KV v1 `ttl` key: how often writers want a re-read
        value = data.get(self.field)
        if not isinstance(value, str) or not value.strip():
            raise VaultSecretNotFoundError(
                f"the secret {self._source} has no usable {self.field!r} field",
                kind="missing_field",
                source=self._source,
            )
        value = clean_token(
            value,
            what=f"the {self.field!r} field of the secret {self._source}",
            source=self._source,
        )
        try:
            expires_at = parse_expires_at(data.get("expires_at") or hints.get("expires_at"))
        except ValueError as exc:
            raise self._malformed(str(exc)) from None
        source = self._source + (f"#v{version}" if version is not None else "")
        return Fetched(Token(value, expires_at=expires_at, source=source), recheck)

    # --- errors ---------------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        login = self._login.token if self._login is not None else None
        role = self._approle.secret_id if self._approle is not None else None
        return [s for s in (self._vault_token, self._file_token, login, role) if s]

    def _errors(self, answer: Answer) -> str:
        return errors_text(answer, self._secrets())

    def _status_error(self, answer: Answer, what: str) -> TokenUnavailableError:
        return status_error(
            answer, what, url=self.url, source=self._source, secrets=self._secrets()
        )

    def _not_found(self, body: Any) -> VaultSecretNotFoundError:
        return not_found(body, source=self._source, namespace=self.namespace)

    def _malformed(self, what: str) -> TokenSourceMalformedError:
        return TokenSourceMalformedError(
            f"the Vault answer for {self._source} {what}", source=self._source
        )


def _auth_block(answer: Answer) -> Mapping[str, Any] | None:
    body = answer.body
    auth = body.get("auth") if isinstance(body, dict) else None
    return auth if isinstance(auth, dict) else None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _read_token_file(path: str) -> str:
    problem: OSError | None = None
    source = f"file:{path}"
    try:
        with Path(path).open("rb") as f:
            data = f.read(64 * 1024)
    except OSError as exc:
        problem = exc
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Not raised as it is: the exception's `object` is the file, the Vault token.
            where = exc.start
        else:
            return clean_token(text, what=f"Vault token file {path}", source=source)
        raise TokenSourceMalformedError(
            f"Vault token file {path} is not UTF-8 (byte {where})", source=source
        )
    assert problem is not None
    error = TokenSourceMissingError(
        f"Vault token file {path} cannot be read ({problem.strerror})", source=f"file:{path}"
    )
    error.__cause__ = problem
    raise error


def _ssl_context(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """Build the TLS context once: loading CA certificates is file I/O, kept off the hot path."""
    if isinstance(verify, ssl.SSLContext) or verify is False:
        return verify
    if verify is True:
        return ssl.create_default_context(cafile=certifi.where())
    return ssl.create_default_context(cafile=verify)
