"""The wa_auth exception tree, and the pure classifier that maps Meta's answers onto it.

```
WhatsAppError
├── ApiError                      a Cloud API call failed; HTTP fields are None when no answer came
│   ├── AuthError                 the credential cannot do this: never retry with it
│   │   ├── TokenExpiredError
│   │   ├── TokenRevokedError
│   │   ├── InsufficientPermissionError
│   │   └── AccountStateError
│   ├── RateLimitError
│   ├── TransientError
│   │   └── TransportError        no answer (connect, read timeout, reset); maybe_delivered
│   ├── InvalidRequestError
│   │   └── RequestValidationError   raised before any request; also a ValueError
│   │       └── ConfigurationError   a setting that cannot work (client, provider, guard, store)
│   └── UnknownApiError
├── TokenUnavailableError         a provider could not produce a token; the cause attached
│   ├── TokenSourceMissingError   the file or environment variable is absent or unreadable
│   ├── TokenSourceMalformedError the source holds no usable token (blank, garbage JSON)
│   ├── VaultUnreachableError     no answer, or a 5xx/429 from Vault
│   │   └── VaultSealedError
│   ├── VaultDeniedError          403 from Vault
│   │   ├── VaultCredentialError  the Vault token / AppRole itself is dead or wrong
│   │   └── VaultPolicyError      a valid Vault token whose policy denies the path
│   ├── VaultSecretNotFoundError  404: no secret, deleted or destroyed version, no field
│   └── AllCandidatesRejectedError  every candidate of a rotating provider is known dead
├── OutboxError                   an outbox or state file is missing, locked, corrupt or newer
│   └── OutboxUnavailableError    a full disk or a lock held too long: try again (transient)
├── StateUnavailableError         a fleet's shared store (Redis) did not answer (transient)
└── WebhookSignatureError         a webhook's signature or verify token did not match
```

Every error carries a stable `category` from one closed set (`CATEGORIES`), a retry policy
(`retryable`, `retry_after`, `max_attempts`), `ambiguous` and a one-sentence `operator_action`.
`from_response` and `from_webhook_error` are pure and never raise: whatever Meta, a proxy or a
BSP answered, they return an `ApiError` (the classifier is the package `_classify`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

from wa_auth import _table
from wa_auth._exports import claim as _claim
from wa_auth._redact import fingerprint, redact_secret, redact_text, scrub_chain
from wa_auth._table import CATEGORIES, TOKEN_CLASS
from wa_auth._usage import EMPTY_USAGE, Usage

if TYPE_CHECKING:
    from wa_auth._table import Rule

__all__ = [
    "CATEGORIES",
    "TOKEN_CLASS",
    "AccountStateError",
    "AllCandidatesRejectedError",
    "ApiError",
    "AuthError",
    "ConfigurationError",
    "InsufficientPermissionError",
    "InvalidRequestError",
    "OutboxError",
    "OutboxUnavailableError",
    "RateLimitError",
    "RequestValidationError",
    "StateUnavailableError",
    "TokenExpiredError",
    "TokenRevokedError",
    "TokenSourceMalformedError",
    "TokenSourceMissingError",
    "TokenUnavailableError",
    "TransientError",
    "TransportError",
    "UnknownApiError",
    "VaultCredentialError",
    "VaultDeniedError",
    "VaultPolicyError",
    "VaultSealedError",
    "VaultSecretNotFoundError",
    "VaultUnreachableError",
    "WebhookSignatureError",
    "WhatsAppError",
    "error_class_for",
    "from_response",
    "from_webhook_error",
]


def _restore(cls: type[WhatsAppError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class WhatsAppError(Exception):
    """The root of every error wa_auth raises."""

    category: ClassVar[str] = _table.UNKNOWN
    retryable: bool = False
    retry_after: float | None = None
    max_attempts: int = 1
    ambiguous: bool = False
    operator_action: str = _table.UNKNOWN_RULE.operator_action
    #: The attributes of a subclass that `to_dict` adds after the common ones (a tuple as a
    #: list, a value with a `to_dict` as its dict).
    _data: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after: float | None = None,
        max_attempts: int | None = None,
        ambiguous: bool = False,
        operator_action: str | None = None,
    ) -> None:
        message = redact_text(str(message))
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        if retry_after is not None:
            self.retry_after = retry_after
        if max_attempts is not None:
            self.max_attempts = max_attempts
        if ambiguous:
            self.ambiguous = True
        if operator_action is not None:
            self.operator_action = operator_action

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, category={self.category!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-safe data describing the error; never the token."""
        data = {
            "type": type(self).__name__,
            "category": self.category,
            "message": self.message,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "max_attempts": self.max_attempts,
            "ambiguous": self.ambiguous,
            "operator_action": self.operator_action,
        }
        for name in self._data:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            data[name] = value.to_dict() if hasattr(value, "to_dict") else value
        return data


class ApiError(WhatsAppError):
    """A Cloud API call failed; the HTTP fields are None when no answer came.

    For example, Meta answered `{"error": {"code": 131031, ...}}`, or the connection was reset.
    """

    maybe_delivered: bool = False
    #: The row an error of this class stands for when the caller names none (id and action).
    _rule: ClassVar[Rule | None] = None
    _data: ClassVar[tuple[str, ...]] = (
        "http_status", "code", "subcode", "error_type", "user_title", "user_message",
        "details", "fbtrace_id", "token_fingerprint", "maybe_delivered", "rule", "usage",
    )  # fmt: skip

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        error_type: str | None = None,
        user_title: str | None = None,
        user_message: str | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
        usage: Usage | None = None,
        token_fingerprint: str | None = None,
        rule: str | None = None,
        maybe_delivered: bool = False,
        retryable: bool | None = None,
        retry_after: float | None = None,
        max_attempts: int | None = None,
        ambiguous: bool = False,
        operator_action: str | None = None,
    ) -> None:
        if maybe_delivered:
            retryable = False
        own = self._rule
        if own is not None:
            rule = own.id if rule is None else rule
            operator_action = own.operator_action if operator_action is None else operator_action
        super().__init__(
            message,
            retryable=retryable,
            retry_after=retry_after,
            max_attempts=max_attempts,
            ambiguous=ambiguous,
            operator_action=operator_action,
        )
        self.http_status = http_status
        self.code = code
        self.subcode = subcode
        self.error_type = error_type
        self.user_title = redact_text(user_title) if user_title else user_title
        self.user_message = redact_text(user_message) if user_message else user_message
        self.details = redact_text(details) if details else details
        self.fbtrace_id = fbtrace_id
        self.usage = usage if usage is not None else EMPTY_USAGE
        self.token_fingerprint = token_fingerprint
        self.rule = rule
        self.maybe_delivered = maybe_delivered

    def __str__(self) -> str:
        if self.fbtrace_id:
            return f"Request {self.fbtrace_id}: {self.message}"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, category={self.category!r}, "
            f"http_status={self.http_status!r}, code={self.code!r}, subcode={self.subcode!r}, "
            f"fbtrace_id={self.fbtrace_id!r}, token_fingerprint={self.token_fingerprint!r})"
        )

    def with_token(self, token: str, token_fingerprint: str | None = None) -> None:
        """Attach *token*'s fingerprint and scrub the token from every text field.

        Called by the client right after classification, so a proxy that echoes the token in
        its error page cannot leak it. *token_fingerprint* saves a hash when it is known.
        """
        self.token_fingerprint = token_fingerprint or fingerprint(token)
        if token:
            # The texts were redacted of token-shaped patterns when the error was built; only
            # this exact token (any shape) remains to be replaced.
            for name in ("message", "user_title", "user_message", "details"):
                value = getattr(self, name)
                if value and token in value:
                    setattr(self, name, redact_secret(value, token))
            self.args = (self.message,)
            if self.__cause__ is not None or self.__context__ is not None:
                scrub_chain(self, token, keep=WhatsAppError)


class AuthError(ApiError):
    """The credential cannot do this: never retry the same call with the same token.

    For example, the token expired, was revoked, lacks a permission, or the account is locked.
    """


class TokenExpiredError(AuthError):
    """The access token has expired.

    For example, code 190 subcode 463, or "Session has expired on Friday, 08-Mar-24 ...".
    """

    category: ClassVar[str] = _table.TOKEN_EXPIRED


class TokenRevokedError(AuthError):
    """The access token was revoked, invalidated or is malformed.

    For example, the user changed their password (190/460), de-authorised the app (190/458),
    or the configured token cannot be parsed.
    """

    category: ClassVar[str] = _table.TOKEN_REVOKED


class InsufficientPermissionError(AuthError):
    """The token is valid but lacks a permission or access to the asset.

    For example, code 10, codes 200-299 (system user not assigned to the WABA), or 131005.
    """

    category: ClassVar[str] = _table.INSUFFICIENT_PERMISSION


class AccountStateError(AuthError):
    """The business account or phone number blocks the call; a new token does not help.

    For example, the WABA is locked (131031), restricted (368), has a payment issue (131042),
    or the number is not registered (133010).
    """

    category: ClassVar[str] = _table.ACCOUNT_STATE


class RateLimitError(ApiError):
    """A rate limit was hit; `retry_after` says when to try again.

    For example, per-number throughput (130429), the pair limit (131056) or app usage (4).
    """

    category: ClassVar[str] = _table.RATE_LIMITED
    retryable: bool = True
    max_attempts: int = 3


class TransientError(ApiError):
    """A temporary fault on Meta's side or on the way; retrying later may succeed.

    For example, code 2 or 131016 (service unavailable), or an HTML 502 page from a proxy.
    """

    category: ClassVar[str] = _table.TRANSIENT
    retryable: bool = True
    max_attempts: int = 3


class TransportError(TransientError):
    """No answer came: the connection failed, timed out or was reset.

    For example, a read timeout after the request was sent; then `maybe_delivered` is True and
    `retryable` is False, because Meta may have accepted the message.
    """

    _rule: ClassVar[Rule | None] = _table.TRANSPORT_RULE


class InvalidRequestError(ApiError):
    """Meta rejected the request itself; fix it before sending again.

    For example, an invalid parameter (100), a template mismatch (132000), or the 24-hour
    window closed (131047).
    """

    category: ClassVar[str] = _table.INVALID_REQUEST


class RequestValidationError(InvalidRequestError, ValueError):
    """The call's arguments failed local validation; no request was sent.

    For example, an empty text, a recipient that is not 7-15 digits, or both `media_id` and
    `link`.
    """

    _rule: ClassVar[Rule | None] = _table.VALIDATION_RULE


class ConfigurationError(RequestValidationError):
    """A client, provider, guard or store was given a setting it cannot work with.

    For example, a negative check interval, an unknown token-file format, a rate limit that is
    not a positive number, or one async client used from two event loops. Like every
    `RequestValidationError` it is also a `ValueError`, and nothing was sent.
    """


class UnknownApiError(ApiError):
    """An error wa_auth does not recognise; the body excerpt and fbtrace_id help diagnose it.

    For example, a new error code, or a 4xx HTML page from a proxy.
    """


class TokenUnavailableError(WhatsAppError):
    """A token provider could not produce a token; the cause is attached as `__cause__`.

    For example, the token file is missing, the environment variable is unset, or Vault is
    unreachable.
    """

    category: ClassVar[str] = _table.TOKEN_UNAVAILABLE
    operator_action: str = (
        "Fix the token source (file, environment variable or Vault) named in the message."
    )
    #: A non-secret locator of the source (`"file:/run/secrets/wa"`, `"vault:secret/wa"`).
    source: str | None = None
    _data: ClassVar[tuple[str, ...]] = ("source",)

    def __init__(self, message: str, *, source: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        if source is not None:
            self.source = source


class TokenSourceMissingError(TokenUnavailableError):
    """The token's source does not exist or cannot be read.

    For example, the token file was deleted or is not readable by this user, or
    `WA_ACCESS_TOKEN` is not set.
    """


class TokenSourceMalformedError(TokenUnavailableError):
    """The token's source exists but holds no usable token.

    For example, the file is empty, is JSON without an `access_token`, or the environment
    variable is blank.
    """


class VaultUnreachableError(TokenUnavailableError):
    """Vault (or OpenBao) did not answer, or answered with a server-side failure.

    For example, the connection was refused, timed out, or Vault answered 500, 502 or 429.
    """

    retryable: bool = True
    retry_after: float | None = 5.0
    max_attempts: int = 3
    operator_action: str = "Check that Vault is up and reachable from this host."


class VaultSealedError(VaultUnreachableError):
    """Vault answered that it is sealed.

    For example, `503 {"errors": ["Vault is sealed"]}` after a Vault restart.
    """

    operator_action: str = "Unseal Vault."


class VaultDeniedError(TokenUnavailableError):
    """Vault refused the request (HTTP 403).

    For example, `{"errors": ["permission denied"]}`; the subclasses say whose fault it is.
    """

    operator_action: str = "Check the Vault credential and its policy for the secret's path."


class VaultCredentialError(VaultDeniedError):
    """The Vault credential itself is dead or wrong: `lookup-self` is denied too.

    For example, the Vault token expired or was revoked, or the AppRole secret id is invalid.
    """

    operator_action: str = "Give wa_auth a valid Vault token or AppRole credential."


class VaultPolicyError(VaultDeniedError):
    """The Vault token is valid but its policy does not allow reading the secret.

    For example, the policy grants `secret/data/wa/*` and the provider reads `secret/data/other`.
    """

    operator_action: str = "Grant the Vault token's policy read access to the secret's path."


class VaultSecretNotFoundError(TokenUnavailableError):
    """Vault has no such secret, or the secret has no token field.

    For example, the path was never written, its latest version was deleted or destroyed, or
    the secret has no `access_token` key. `kind` says which (`"no_secret"`,
    `"deleted_version"`, `"destroyed_version"`, `"missing_field"`, `"wrong_kv_version"`).
    """

    kind: str = "no_secret"
    _data: ClassVar[tuple[str, ...]] = ("source", "kind")
    operator_action: str = "Write the token to the Vault path and field the provider reads."

    def __init__(self, message: str, *, kind: str = "no_secret", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind


class AllCandidatesRejectedError(TokenUnavailableError):
    """Every candidate token of a rotating provider is known dead.

    For example, both the primary and the standby token were revoked; `fingerprints` lists them
    and `__cause__` is the classified error that killed the last one.
    """

    fingerprints: tuple[str, ...] = ()
    _data: ClassVar[tuple[str, ...]] = ("source", "fingerprints")
    operator_action: str = "Generate a new access token and add it to the rotating provider."

    def __init__(self, message: str, *, fingerprints: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.fingerprints = tuple(fingerprints)


class OutboxError(WhatsAppError):
    """An outbox or state file cannot be used, or refused a change; nothing was overwritten.

    For example, the file is missing (opened with `create=False`), locked by another process
    for longer than the busy timeout, not a SQLite database, written by a newer wa_auth, or
    the intent is already being sent by another worker. `path` names the file and `kind` the
    problem (`missing`, `locked`, `corrupt`, `foreign`, `newer_schema`, `busy`, `duplicate`,
    `not_found`, `closed`, ...). Its category is `invalid_request`: the caller must fix
    something before the same call can work (a `locked` file is `retryable`).
    """

    category: ClassVar[str] = _table.INVALID_REQUEST
    operator_action: str = "Fix the outbox or state file named in the message."
    #: The file, as given.
    path: str | None = None
    kind: str = "invalid"
    _data: ClassVar[tuple[str, ...]] = ("path", "kind")

    def __init__(
        self, message: str, *, path: str | None = None, kind: str = "invalid", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.path = path
        self.kind = kind


class OutboxUnavailableError(OutboxError):
    """An outbox or state file cannot take a change now; nothing of the change was written.

    For example, the disk (or the quota) is full, or another process held the write lock for
    longer than the busy timeout. `kind` is `full` or `locked`. Its category is `transient`
    and it is `retryable`: the file is fine, so the same call works once space is freed or
    the lock released; the message is not invalid and must not be dropped as such.
    """

    category: ClassVar[str] = _table.TRANSIENT
    retryable: bool = True
    operator_action: str = (
        "Free space on the disk of the outbox or state file named in the message (or find the "
        "process holding its lock), then try again."
    )


class StateUnavailableError(WhatsAppError):
    """A fleet's shared store did not answer; `address` names it (`host:port`, no password).

    For example, Redis is down, unreachable, slow past its timeout or refused the password.
    Its category is `transient` and it is `retryable`; nothing of the call was decided.
    """

    category: ClassVar[str] = _table.TRANSIENT
    retryable: bool = True
    operator_action: str = "Check that the Redis server named in the message is up and reachable."
    _data: ClassVar[tuple[str, ...]] = ("address",)
    #: `host:port` (or the socket path) of the store; never its password.
    address: str = ""

    def __init__(self, message: str, *, address: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.address = address


class WebhookSignatureError(WhatsAppError, ValueError):
    """A webhook's signature or verification token did not match; `reason` names the check.

    The reasons are listed in docs/webhooks.md; the message never shows a secret.
    """

    category: ClassVar[str] = _table.INVALID_SIGNATURE
    operator_action: str = "Check the app secret configured for webhook verification."
    _data: ClassVar[tuple[str, ...]] = ("reason",)
    #: Which check failed; `mismatch` unless told.
    reason: str = "mismatch"

    def __init__(self, message: str, *, reason: str = "mismatch", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


_CLASSES: Final[dict[str, type[ApiError]]] = {
    _table.TOKEN_EXPIRED: TokenExpiredError,
    _table.TOKEN_REVOKED: TokenRevokedError,
    _table.INSUFFICIENT_PERMISSION: InsufficientPermissionError,
    _table.ACCOUNT_STATE: AccountStateError,
    _table.RATE_LIMITED: RateLimitError,
    _table.TRANSIENT: TransientError,
    _table.INVALID_REQUEST: InvalidRequestError,
    _table.UNKNOWN: UnknownApiError,
}


def error_class_for(category: str) -> type[ApiError]:
    """Return the ApiError subclass for an API *category* (`unknown` for anything else)."""
    return _CLASSES.get(category, UnknownApiError)


def from_response(
    status_code: int | None,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """Classify an error answer of the Graph API; pure, and never raises.

    Meta's `{"error": ...}`, webhook `errors[]`, debug_token's `data.error`, a health_status
    entity's `errors[]` and BSP envelopes (YCloud, 360dialog, Turn) are understood, and a BSP's
    own codes and texts when no Graph code is given. Each field is read on its own, so one that
    cannot be read (a 5,000-digit code, a body nested too deep) is dropped and the rest still
    decide; a body cut off mid-JSON is read as far as it is whole (`ambiguous` when the part
    lost could have chosen another row).

    Args:
        status_code: The HTTP status; Meta's is unreliable, so code and subcode win.
        body: The raw body (bytes or str), an already parsed JSON object, or None.
        headers: Response headers, for Retry-After, the usage headers and WWW-Authenticate.

    Returns:
        An `ApiError` subclass chosen by the category of the matching `_table` row.
    """
    from wa_auth import _classify  # the classifier loads with the first answer to classify

    return _classify.classify(status_code, body, headers, error_class_for)


def from_webhook_error(obj: Any) -> ApiError:
    """Classify a webhook's `statuses[].errors[]` or `value.errors[]` object; never raises."""
    from wa_auth import _classify

    return _classify.classify_webhook(obj, error_class_for)


_claim(__name__, globals())
