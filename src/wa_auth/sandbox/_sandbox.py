"""`Sandbox`: the Python face of the simulator, a server on a free port in a background thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from typing_extensions import Self

from wa_auth._closing import Closing
from wa_auth.sandbox._admin import describe
from wa_auth.sandbox._server import Server
from wa_auth.sandbox._specs import load_token_specs
from wa_auth.sandbox._values import (
    DEFAULT_SCOPES,
    Faults,
    Limits,
    RecordedMessage,
    RecordedRequest,
    SandboxToken,
    SeededFault,
)
from wa_auth.sandbox._webhook_controls import WebhookControls
from wa_auth.sandbox._webhooks import check_url
from wa_auth.sandbox._world import APP_ID, BUSINESS_ACCOUNT_ID, DEFAULT_PHONE_NUMBERS, World

__all__ = ["Sandbox"]


class Sandbox(WebhookControls, Closing):
    """A local Graph API whose tokens, account and numbers change state while it runs.

    Use it as a context manager: `with Sandbox() as sb:` binds *host*:*port* (0 picks a free
    port), serves in a background thread, and stops on exit. Point a client at it with
    `base_url=sb.base_url, token=sb.issue_token(), phone_number_id=sb.phone_number_id`.

    Args:
        host: The address to bind; loopback unless told otherwise.
        port: The port; 0 picks a free one.
        tokens: The tokens to create at start and on `reset()`: a path to a JSON tokens file
            (`{"tokens": [...]}`, see `docs/sandbox.md`) or a list of such objects. None
            creates two demo tokens, `system_user` (never expires) and `user` (one hour).
        seed: Seeds every random choice (token values, ids, faults), so a run is
            reproducible; None picks a seed (see `seed`).
        freeze_clock: The sandbox clock moves only through `advance()`; otherwise it follows
            real time plus every `advance()`.
        max_records: How many requests, messages and webhooks are kept, oldest dropped first.
        webhook_url: Where to deliver signed webhooks (a status for every send, and what
            `deliver_account_update`, `set_quality` and `deliver_webhook` send), from start and
            after every `reset()`; None delivers none until `subscribe()`.
        app_secret: The app secret that signs the webhooks (and that the token exchange
            takes); None draws one from the seed.
        phone_numbers: How many phone numbers the business account has, from 1 to 20: ids
            109000000000001, 109000000000002... with display numbers +1 555-010-0001,
            +1 555-010-0002... (see `phone_number_ids`).

    Raises:
        ValueError: The tokens file or list is invalid, *webhook_url* is not an http(s) URL,
            *app_secret* is blank or *phone_numbers* is not an integer from 1 to 20 (nothing
            is bound).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: str | os.PathLike[str] | Sequence[Mapping[str, Any]] | None = None,
        seed: int | None = None,
        freeze_clock: bool = False,
        max_records: int = 100_000,
        webhook_url: str | None = None,
        app_secret: str | None = None,
        phone_numbers: int = DEFAULT_PHONE_NUMBERS,
    ) -> None:
        if app_secret is not None and (not isinstance(app_secret, str) or not app_secret.strip()):
            raise ValueError("app_secret must be a non-blank string")
        self._host = host
        self._port = port
        self._world = World(
            seed=seed,
            tokens=load_token_specs(tokens),
            freeze_clock=freeze_clock,
            max_records=max_records,
            webhook_url=None if webhook_url is None else check_url(webhook_url, "Sandbox"),
            app_secret=app_secret,
            phone_numbers=phone_numbers,
        )
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread; `with Sandbox() as sb` calls this.

        Raises:
            OSError: The address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        server = Server((self._host, self._port), self._world)
        host, port = server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        if shown in ("0.0.0.0", "[::]"):  # noqa: S104 - naming the wildcard, not binding it
            shown = "127.0.0.1"
        self._world.base_url = f"http://{shown}:{port}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"wa-auth-sandbox:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close every connection and the listening socket; idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.close()
        if thread is not None:
            thread.join()
        with self._world.lock:
            deliverer = self._world.deliverer
        if deliverer is not None:
            deliverer.close()

    def __enter__(self) -> Self:
        return self.start()

    def __repr__(self) -> str:
        where = self._world.base_url if self._server is not None else "stopped"
        return f"Sandbox({where}, seed={self._world.seed})"

    # --- addresses ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What the client's `base_url=` takes: `http://127.0.0.1:<port>`."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running: use `with Sandbox() as sb:`")
        return self._world.base_url

    @property
    def admin_url(self) -> str:
        """The admin API's root, `{base_url}/_sandbox`."""
        return self.base_url + "/_sandbox"

    @property
    def phone_number_id(self) -> str:
        """The id of the sandbox's first phone number (the one demos send from)."""
        return self._world.phone_number_ids[0]

    @property
    def phone_number_ids(self) -> tuple[str, ...]:
        """The ids of all the sandbox's phone numbers (`phone_numbers` of them), in order."""
        return self._world.phone_number_ids

    @property
    def business_account_id(self) -> str:
        """The id of the sandbox's WhatsApp Business Account."""
        return BUSINESS_ACCOUNT_ID

    @property
    def app_id(self) -> str:
        """The id of the sandbox's app (`client_id` of the token exchange)."""
        return APP_ID

    @property
    def app_secret(self) -> str:
        """The app secret (`client_secret` of the token exchange)."""
        return self._world.app_secret

    @property
    def app_token(self) -> str:
        """The app access token `{app_id}|{app_secret}`, accepted by `debug_token`."""
        return self._world.app_token

    @property
    def seed(self) -> int:
        """The seed of every random choice; pass it back to reproduce a run."""
        return self._world.seed

    def info(self) -> dict[str, Any]:
        """Return the addresses and the whole state as JSON-safe data (tokens with values)."""
        return describe(self._world)

    # --- tokens -------------------------------------------------------------------------------

    def issue_token(
        self,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        expires_in: float | None = None,
        kind: str = "system_user",
        *,
        allowed_wabas: Iterable[str] | None = None,
        allowed_phone_numbers: Iterable[str] | None = None,
        name: str | None = None,
    ) -> str:
        """Create a new valid token and return its value.

        Args:
            scopes: Its permissions; sends need `whatsapp_business_messaging`, numbers and
                templates need `whatsapp_business_management` (code 10 otherwise).
            expires_in: Seconds until it expires on the sandbox clock; None never.
            kind: `system_user` or `user` (what `debug_token` reports).
            allowed_wabas: The WABA ids it may access; None all (code 200 otherwise).
            allowed_phone_numbers: The phone number ids it may send from; None all.
            name: A label shown in `tokens()` and the admin API.
        """
        return self._world.issue_token(
            scopes=scopes,
            expires_in=expires_in,
            kind=kind,
            allowed_wabas=allowed_wabas,
            allowed_phone_numbers=allowed_phone_numbers,
            name=name,
        ).value

    def tokens(self) -> tuple[SandboxToken, ...]:
        """Return every token with its state as of the sandbox clock."""
        return self._world.tokens()

    def token(self, token: str) -> SandboxToken:
        """Return the token whose value, id or fingerprint is *token*.

        Raises:
            ValueError: No such token.
        """
        return self._world.find_token(token)

    def demo_tokens(self) -> dict[str, str]:
        """Return the tokens created at start (and on `reset()`), by name."""
        return {t.name or t.id: t.value for t in self._world.initial_tokens}

    def set_token_state(self, token: str, state: str, *, variant: str | None = None) -> None:
        """Put *token* (its value, id or fingerprint) in *state*.

        Args:
            token: The token's value, id or fingerprint.
            state: One of `TOKEN_STATES`: `valid`, `expired`, `revoked_password_changed`,
                `revoked_deauthorized`, `revoked_logged_out`, `malformed`,
                `missing_permission`.
            variant: The payload variant (`TOKEN_VARIANTS`): `subcode` or `no_subcode` for
                expired and revoked tokens, `code_10` or `code_200` for missing_permission.

        Raises:
            ValueError: Unknown token, state or variant.
        """
        self._world.set_token_state(token, state, variant)

    # --- the account and its numbers --------------------------------------------------------

    def set_account_state(self, state: str, *, variant: str | None = None) -> None:
        """Put the WhatsApp Business Account in *state*; no token can fix it.

        Args:
            state: One of `ACCOUNT_STATES`: `ok`, `locked` (131031), `restricted` (368, or
                130497 with `variant="code_130497"`), `payment_issue` (131042),
                `maintenance` (131057).
            variant: The payload variant of `restricted`.

        Raises:
            ValueError: Unknown state or variant.
        """
        self._world.set_account_state(state, variant)

    def set_number_state(self, phone_number_id: str, state: str) -> None:
        """Put a phone number in *state*: `ok`, `not_registered` (133010) or `restricted`.

        A `restricted` number's sends get 131048 (spam rate limit); its `status` field is
        `RESTRICTED` and its `quality_rating` `RED`. Every state shows in the number's
        `status` and `health_status` fields, so a probe can see it lift.

        Raises:
            ValueError: Unknown phone number or state.
        """
        self._world.set_number_state(phone_number_id, state)

    # --- limits, faults, clock ------------------------------------------------------------------

    def set_limits(
        self,
        *,
        throughput: int | None = None,
        pair_limit: int | None = None,
        pair_window: float = 6.0,
        app_calls: int | None = None,
        app_window: float = 3600.0,
        retry_after_header: bool = True,
    ) -> Limits:
        """Replace the rate limits (see `Limits` for each argument); no argument clears them.

        Raises:
            ValueError: A limit is not a positive integer, or a window not positive.
        """
        return self._world.set_limits(
            Limits(
                throughput=throughput,
                pair_limit=pair_limit,
                pair_window=pair_window,
                app_calls=app_calls,
                app_window=app_window,
                retry_after_header=retry_after_header,
            )
        )

    def set_faults(
        self,
        *,
        error_rate: float = 0.0,
        error_codes: Iterable[int] = (1, 2, 131000, 131016),
        html_502_rate: float = 0.0,
        drop_rate: float = 0.0,
        drop_after_accept: bool = False,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        code_as_string: bool = False,
    ) -> Faults:
        """Replace the injected faults (see `Faults` for each argument); no argument clears them.

        Raises:
            ValueError: A share is outside [0, 1], the shares add up to more than 1, or an
                error code is not one of 1, 2, 131000, 131016.
        """
        return self._world.set_faults(
            Faults(
                error_rate=error_rate,
                error_codes=error_codes,
                html_502_rate=html_502_rate,
                drop_rate=drop_rate,
                drop_after_accept=drop_after_accept,
                latency=latency,
                latency_jitter=latency_jitter,
                code_as_string=code_as_string,
            )
        )

    def fail_next(
        self,
        code: int | str,
        *,
        times: int | None = 1,
        phone_number_id: str | None = None,
        recipient: str | None = None,
        endpoint: str = "send_message",
        retry_after: int | None = None,
        retry_after_header: bool = True,
        regain_access_minutes: int | None = None,
    ) -> SeededFault:
        """Answer the next *times* matching requests with *code*, then serve them again.

        A send meets its seeded faults after every check of its own (the token, the body, the
        account and number states), so a fault stands for a refusal of a send that was fine
        locally. The oldest matching fault answers first; each answer is recorded in
        `requests()` with outcome `fault` and the fault's `id` as `fault_id`.

        Args:
            code: One of `SEEDED_FAULTS`, each with Meta's literal payload: 1, 2, 131000,
                131016 (transient), 4, 80007, 130429, 131056 (rate limits), 131048, 131049
                (the long caps), 131008, 131009, 131026, 131047, 132000, 132001 (refused
                sends; 132000 and 132001 only meet template sends), or `drop` (the
                connection closes unanswered), `drop_after_accept` (the send is accepted and
                recorded, then the connection closes: "maybe delivered"), `html_502`.
            times: How many matching requests it answers; None every one until
                `clear_seeded_faults()`.
            phone_number_id: Only requests for this phone number; None any.
            recipient: Only sends to this recipient (by digits, so `+1555...` matches
                `1555...`), for 131056's pair limit; None any.
            endpoint: The requests it answers, by `RecordedRequest.endpoint`: `send_message`
                (message sends, not read receipts), `get_phone_number`, `list_templates`...
            retry_after: The `Retry-After` seconds of a 130429 (default 1) or 131056 (default
                6); other codes carry none.
            retry_after_header: Send that `Retry-After` (130429 and 131056 only).
            regain_access_minutes: The `estimated_time_to_regain_access` in the
                `X-Business-Use-Case-Usage` header of an 80007 (default 1).

        Returns:
            The fault as seeded (its `id` names it in `requests()`).

        Raises:
            ValueError: An unknown code, endpoint or phone number, a bad count or recipient,
                or an option the code does not take.
        """
        return self._world.fail_next(
            code,
            times=times,
            phone_number_id=phone_number_id,
            recipient=recipient,
            endpoint=endpoint,
            retry_after=retry_after,
            retry_after_header=retry_after_header,
            regain_access_minutes=regain_access_minutes,
        )

    def seeded_faults(self) -> tuple[SeededFault, ...]:
        """Return the seeded faults still to answer, oldest first, with their `remaining`."""
        return self._world.seeded_faults()

    def clear_seeded_faults(self) -> None:
        """Forget every seeded fault still to answer (`reset()` does too)."""
        self._world.clear_seeded_faults()

    def now(self) -> float:
        """Return the sandbox clock's time, in unix seconds."""
        return self._world.now()

    def advance(self, seconds: float) -> float:
        """Move the sandbox clock forward by *seconds*, without sleeping; return the new time.

        Tokens whose `expires_at` passes become expired; rate-limit windows move on.
        """
        return self._world.advance(seconds)

    # --- records --------------------------------------------------------------------------------

    def messages(self) -> tuple[RecordedMessage, ...]:
        """Return every accepted message, oldest first."""
        return self._world.messages()

    def requests(self) -> tuple[RecordedRequest, ...]:
        """Return every Graph request received (accepted or not), oldest first."""
        return self._world.requests()

    def reset(self) -> None:
        """Return to the state at start: initial tokens, `ok` states, no limits, no faults.

        Records, media, issued tokens and seeded faults are forgotten; the clock restarts and
        the random generator is seeded again, so a test after `reset()` sees what the first
        one saw. Webhooks go to the `webhook_url` given at start again, with the default
        settings and no late failure; the ones still queued are not delivered.
        """
        self._world.reset()
