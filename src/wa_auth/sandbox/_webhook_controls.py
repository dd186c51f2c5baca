"""`WebhookControls`: the sandbox's webhook methods, mixed into `Sandbox`.

They drive the deliverer of `_webhooks` through the sandbox's one `World`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from wa_auth.sandbox._webhook_values import LateFailure, RecordedWebhook, WebhookSettings
from wa_auth.sandbox._webhooks import (
    deliver_account_update,
    deliver_change,
    fail_late,
    flush,
    set_quality,
    subscribe,
)
from wa_auth.sandbox._world import World

__all__ = ["WebhookControls"]


class WebhookControls:
    """Deliver signed webhooks: where to, how (duplicates, reordering), and what, on demand."""

    _world: World

    @property
    def webhook_url(self) -> str | None:
        """Where webhooks are delivered; None nowhere."""
        with self._world.lock:
            return self._world.state.webhook_url

    def subscribe(self, url: str | None) -> None:
        """Deliver signed webhooks to *url* from now on; None stops them (see `webhook_url`).

        Raises:
            ValueError: *url* is not an http:// or https:// URL with a host.
        """
        subscribe(self._world, url)

    def set_webhooks(
        self,
        *,
        statuses: Iterable[str] = ("sent", "delivered", "read"),
        duplicate_rate: float = 0.0,
        reorder_rate: float = 0.0,
        max_attempts: int = 3,
        retry_delay: float = 0.05,
        timeout: float = 5.0,
    ) -> WebhookSettings:
        """Replace how webhooks are delivered (see `WebhookSettings`); no argument resets it.

        Raises:
            ValueError: An argument is out of range (a share outside [0, 1], an unknown status).
        """
        settings = WebhookSettings(
            statuses=statuses,  # the converter checks and orders them
            duplicate_rate=duplicate_rate,
            reorder_rate=reorder_rate,
            max_attempts=max_attempts,
            retry_delay=retry_delay,
            timeout=timeout,
        )
        with self._world.lock:
            self._world.state.webhook_settings = settings
        return settings

    def fail_late(
        self, code: int, *, times: int | None = 1, recipient: str | None = None
    ) -> LateFailure:
        """Make the next *times* accepted sends fail after the fact: `sent`, then `failed`.

        The send itself is accepted (HTTP 200 and a wamid), as Meta accepts it; the failure
        arrives only as a status webhook carrying Meta's error object for *code*.

        Args:
            code: One of `LATE_FAILURES`: 131026 (undeliverable), 131031 (account locked),
                131047 (re-engagement), 131049 (the marketing cap).
            times: How many sends it fails; None every one until `reset()`.
            recipient: Only sends to this recipient (by digits); None any.

        Raises:
            ValueError: An unknown code, a bad count or recipient.
        """
        return fail_late(self._world, code, times=times, recipient=recipient)

    def late_failures(self) -> tuple[LateFailure, ...]:
        """Return the late failures still to give, oldest first, with their `remaining`."""
        with self._world.lock:
            return tuple(self._world.state.late)

    def deliver_account_update(
        self,
        event: str,
        *,
        ban_state: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Deliver an `account_update` webhook now; return its `seq` in `webhooks()`.

        Args:
            event: One of `ACCOUNT_UPDATE_EVENTS` (`PARTNER_APP_UNINSTALLED`,
                `ACCOUNT_RESTRICTION`, `DISABLED_UPDATE`, ...), with the fields Meta sends it
                with (`waba_info`, `restriction_info`, `violation_info`, `ban_info`).
            ban_state: A `DISABLED_UPDATE`'s `waba_ban_state`: `DISABLE` (the default),
                `SCHEDULE_FOR_DISABLE` or `REINSTATE`.
            extra: More fields for the change's value.

        Raises:
            ValueError: No URL is subscribed, an unknown event or ban state.
        """
        return deliver_account_update(self._world, event, ban_state=ban_state, extra=extra)

    def set_quality(
        self,
        phone_number_id: str,
        *,
        event: str = "DOWNGRADE",
        current_limit: str = "TIER_2K",
        old_limit: str | None = None,
    ) -> int:
        """Deliver a `phone_number_quality_update` for a number now; return its `seq`.

        Args:
            phone_number_id: One of the sandbox's numbers.
            event: One of `QUALITY_EVENTS` (`DOWNGRADE`, `FLAGGED`, `UPGRADE`, ...).
            current_limit: The new tier (`TIER_250`, `TIER_2K`, `TIER_10K`, `TIER_UNLIMITED`).
            old_limit: The tier before, sent with a limit change.

        Raises:
            ValueError: No URL is subscribed, an unknown number or event.
        """
        return set_quality(
            self._world,
            phone_number_id,
            event=event,
            current_limit=current_limit,
            old_limit=old_limit,
        )

    def deliver_webhook(self, field: str, value: Mapping[str, Any]) -> int:
        """Deliver one change of any *field* with *value*, signed; return its `seq`.

        For the webhooks without a method of their own (`business_capability_update`,
        `security`, `message_template_status_update`, `account_review_update`, ...).

        Raises:
            ValueError: No URL is subscribed, or *value* is not an object.
        """
        return deliver_change(self._world, field, value)

    def webhooks(self) -> tuple[RecordedWebhook, ...]:
        """Return every webhook delivered or given up on, in the order they finished."""
        with self._world.lock:
            return tuple(self._world.state.webhooks)

    def flush_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook was delivered or given up on; False on timeout."""
        return flush(self._world, timeout)
