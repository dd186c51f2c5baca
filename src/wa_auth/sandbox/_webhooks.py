"""Signed webhook deliveries: a status for every send, late failures, account and quality news.

When a URL is subscribed, each accepted send gets its statuses (`sent`, `delivered`, `read`,
or `sent` then `failed` for a seeded late failure) as Meta's `messages` webhooks, signed with
the app secret. `WebhookSettings` make some deliveries come twice or out of order; account
updates, quality changes and any other change are delivered on demand. One thread POSTs them
in order, off the Graph API's threads (a send only queues its statuses, under the world's
lock), and retries one the receiver does not answer 200 for, a bounded number of times with a
short doubling back-off. What it delivered, or gave up on, is recorded in `webhooks()`.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import attrs

from wa_auth.sandbox._checks import opt_positive_int, opt_text, text
from wa_auth.sandbox._webhook_payloads import (
    account_update,
    body_of,
    change,
    quality_update,
    sign,
    status_change,
)
from wa_auth.sandbox._webhook_values import (
    ACCOUNT_UPDATE_EVENTS,
    BAN_STATES,
    LATE_FAILURES,
    QUALITY_EVENTS,
    LateFailure,
    RecordedWebhook,
    WebhookSettings,
)
from wa_auth.sandbox._wire import RECIPIENT_RE, digits_of

if TYPE_CHECKING:
    from wa_auth.sandbox._values import RecordedMessage
    from wa_auth.sandbox._world import World

__all__ = [
    "Deliverer",
    "deliver_account_update",
    "deliver_change",
    "fail_late",
    "flush",
    "on_accepted",
    "set_quality",
    "subscribe",
]

#: The longest URL accepted, and the most of a receiver's answer read (the rest is dropped).
_MAX_URL: Final = 2048
_MAX_ANSWER: Final = 64 * 1024
#: Meta's user agent for webhook deliveries.
_USER_AGENT: Final = "facebookexternalua"


@attrs.frozen
class _Delivery:
    """One webhook to POST: the exact bytes, their signatures, and what to record."""

    generation: int
    seq: int
    field: str
    url: str
    body: bytes
    signature: str
    legacy_signature: str
    at: float
    settings: WebhookSettings
    message_id: str | None = None
    status: str | None = None
    duplicate: bool = False
    late_failure: str | None = None


class Deliverer:
    """The one thread that POSTs a world's webhooks, in the order they were queued."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._cond = threading.Condition()
        self._items: collections.deque[_Delivery] = collections.deque()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None

    def put(self, items: Iterable[_Delivery]) -> None:
        """Queue *items* (without blocking) and start the thread if it is not running."""
        with self._cond:
            self._items.extend(items)
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name="wa-auth-sandbox-webhooks",
                    daemon=True,
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued webhook was delivered or given up on; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self) -> None:
        """Drop what is queued, end an attempt in progress, and stop the thread."""
        with self._cond:
            self._items.clear()
            self._stop.set()
            thread, self._thread = self._thread, None
            conn = self._conn
            self._cond.notify_all()
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join()

    def _run(self, stop: threading.Event) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or stop.is_set())
                if stop.is_set():
                    return
                item = self._items.popleft()
                self._busy = True
            try:
                self._deliver(item, stop)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, item: _Delivery, stop: threading.Event) -> None:
        settings = item.settings
        status: int | None = None
        attempt = 0
        for attempt in range(1, settings.max_attempts + 1):
            if stop.is_set() or item.generation != self._world.generation:
                return
            status = self._post(item, settings.timeout)
            if status == 200:
                break
            if attempt < settings.max_attempts and stop.wait(
                settings.retry_delay * 2 ** (attempt - 1)
            ):
                return
        record = RecordedWebhook(
            seq=item.seq,
            field=item.field,
            url=item.url,
            body=item.body,
            signature=item.signature,
            at=item.at,
            attempts=attempt,
            http_status=status,
            outcome="delivered" if status == 200 else "failed",
            message_id=item.message_id,
            status=item.status,
            duplicate=item.duplicate,
            late_failure=item.late_failure,
        )
        with self._world.lock:
            if item.generation == self._world.generation:
                self._world.state.webhooks.append(record)

    def _post(self, item: _Delivery, timeout: float) -> int | None:
        """POST *item* once; return the answer's status, or None when none came."""
        parts = urlsplit(item.url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "", parts.port, timeout=timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "X-Hub-Signature-256": item.signature,
            "X-Hub-Signature": item.legacy_signature,
        }
        with self._cond:
            self._conn = conn
        try:
            conn.request("POST", path, body=item.body, headers=headers)
            answer = conn.getresponse()
            answer.read(_MAX_ANSWER)
        except (OSError, http.client.HTTPException, ValueError):
            return None
        else:
            return answer.status
        finally:
            with self._cond:
                self._conn = None
            conn.close()


def deliverer_of(world: World) -> Deliverer:
    """Return *world*'s deliverer, made on first use (the caller holds the lock)."""
    if world.deliverer is None:
        world.deliverer = Deliverer(world)
    deliverer: Deliverer = world.deliverer
    return deliverer


def flush(world: World, timeout: float) -> bool:
    """Wait until every queued webhook of *world* was delivered or given up on."""
    with world.lock:
        deliverer = world.deliverer
    return True if deliverer is None else deliverer.flush(timeout)


# --- the subscription and the settings --------------------------------------------------------


def check_url(url: object, where: str) -> str:
    """Return *url* if it is an http(s) URL with a host.

    Raises:
        ValueError: Anything else.
    """
    text(f"{where}: url", url)
    assert isinstance(url, str)
    parts = urlsplit(url) if len(url) <= _MAX_URL and url.isprintable() else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}: url must be an http:// or https:// URL with a host")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{where}: url has a port that is not a number in [0, 65535]") from None
    return url


def subscribe(world: World, url: object) -> None:
    """Send webhooks to *url* from now on (None: to nowhere).

    Raises:
        ValueError: *url* is not an http(s) URL.
    """
    checked = None if url is None else check_url(url, "subscribe")
    with world.lock:
        world.state.webhook_url = checked


def fail_late(
    world: World, code: object, *, times: object = 1, recipient: object = None
) -> LateFailure:
    """Seed a late failure: the next *times* accepted sends get `sent`, then `failed` *code*.

    Raises:
        ValueError: An unknown code, a bad count or recipient.
    """
    if isinstance(code, bool) or code not in LATE_FAILURES:
        raise ValueError(f"fail_late: code must be one of {list(LATE_FAILURES)}, got {code!r}")
    assert isinstance(code, int)
    count = opt_positive_int("fail_late: times", times)
    to = opt_text("fail_late: recipient", recipient)
    if to is not None and not RECIPIENT_RE.fullmatch(to):
        raise ValueError("fail_late: recipient must be 7 to 15 digits, with or without +")
    with world.lock:
        state = world.state
        state.late_seq += 1
        late = LateFailure(
            id=f"late_{state.late_seq}", code=code, times=count, remaining=count, recipient=to
        )
        state.late.append(late)
        return late


def _take_late(late: list[LateFailure], recipient: str) -> LateFailure | None:
    for i, seeded in enumerate(late):
        if seeded.recipient is not None and digits_of(seeded.recipient) != digits_of(recipient):
            continue
        if seeded.remaining is not None:
            if seeded.remaining > 1:
                late[i] = attrs.evolve(seeded, remaining=seeded.remaining - 1)
            else:
                del late[i]
        return seeded
    return None


# --- what is delivered --------------------------------------------------------------------------


def _delivery(world: World, field: str, payload: Mapping[str, Any], **record: Any) -> _Delivery:
    """Return one delivery of *payload* to the subscribed URL (the caller holds the lock)."""
    state = world.state
    assert state.webhook_url is not None
    state.webhook_seq += 1
    body = body_of(payload)
    signature, legacy = sign(body, state.app_secret)
    return _Delivery(
        generation=world.generation,
        seq=state.webhook_seq,
        field=field,
        url=state.webhook_url,
        body=body,
        signature=signature,
        legacy_signature=legacy,
        at=world.clock.now(),
        settings=state.webhook_settings,
        **record,
    )


def on_accepted(world: World, message: RecordedMessage) -> None:
    """Queue the statuses of a send the sandbox accepted (the caller holds the lock)."""
    state = world.state
    if state.webhook_url is None:
        return
    settings = state.webhook_settings
    late = _take_late(state.late, message.recipient)
    names: tuple[str, ...] = ("sent", "failed") if late is not None else settings.statuses
    if len(names) > 1 and settings.reorder_rate and state.rng.random() < settings.reorder_rate:
        names = names[::-1]
    start = int(message.at)
    order = {"sent": 0, "delivered": 1, "read": 2, "failed": 1}
    items = []
    for name in names:
        payload = status_change(
            message_id=message.id,
            status=name,
            phone_number_id=message.phone_number_id,
            recipient=message.recipient,
            timestamp=start + order[name],
            idempotency_key=message.idempotency_key,
            template=message.type == "template",
            late_code=late.code if late is not None else None,
        )
        fields = {
            "message_id": message.id,
            "status": name,
            "late_failure": late.id if late is not None and name == "failed" else None,
        }
        items.append(_delivery(world, "messages", payload, **fields))
        if settings.duplicate_rate and state.rng.random() < settings.duplicate_rate:
            items.append(_delivery(world, "messages", payload, duplicate=True, **fields))
    deliverer_of(world).put(items)


def deliver_change(world: World, field: object, value: object) -> int:
    """Deliver one change of *field* with *value* as it is; return its delivery's `seq`.

    Raises:
        ValueError: No URL is subscribed, *field* is not a string or *value* not an object.
    """
    name = text("deliver_webhook: field", field)
    if not isinstance(value, Mapping):
        raise ValueError("deliver_webhook: value must be a JSON object")  # noqa: TRY004 - a 400
    with world.lock:
        return _now(world, name, change(name, value, time=int(world.clock.now())))


def deliver_account_update(
    world: World, event: object, *, ban_state: object = None, extra: object = None
) -> int:
    """Deliver an `account_update` *event*; return its delivery's `seq`.

    Raises:
        ValueError: No URL is subscribed, an unknown event or ban state, or a bad *extra*.
    """
    if event not in ACCOUNT_UPDATE_EVENTS:
        raise ValueError(
            f"deliver_account_update: event must be one of {list(ACCOUNT_UPDATE_EVENTS)}, "
            f"got {event!r}"
        )
    if ban_state is not None and (event != "DISABLED_UPDATE" or ban_state not in BAN_STATES):
        raise ValueError(
            f"deliver_account_update: ban_state is one of {list(BAN_STATES)}, and for "
            "DISABLED_UPDATE only"
        )
    if extra is not None and not isinstance(extra, Mapping):
        raise ValueError("deliver_account_update: extra must be a JSON object of more fields")
    assert isinstance(event, str)
    with world.lock:
        now = int(world.clock.now())
        payload = account_update(
            event,
            time=now,
            ban_state=ban_state if isinstance(ban_state, str) else None,
            extra=extra or {},
        )
        return _now(world, "account_update", payload)


def set_quality(
    world: World,
    phone_number_id: object,
    *,
    event: object = "DOWNGRADE",
    current_limit: object = "TIER_2K",
    old_limit: object = None,
) -> int:
    """Deliver a `phone_number_quality_update` for one of the numbers; return its `seq`.

    Raises:
        ValueError: No URL is subscribed, an unknown number or event, a bad limit.
    """
    phone = text("set_quality: phone_number_id", phone_number_id)
    if event not in QUALITY_EVENTS:
        raise ValueError(f"set_quality: event must be one of {list(QUALITY_EVENTS)}, got {event!r}")
    current = text("set_quality: current_limit", current_limit)
    old = opt_text("set_quality: old_limit", old_limit)
    assert isinstance(event, str)
    with world.lock:
        if phone not in world.state.numbers:
            raise ValueError(
                f"set_quality: unknown phone number id {phone!r}; "
                f"the sandbox's are {list(world.state.numbers)}"
            )
        payload = quality_update(
            phone, event=event, current_limit=current, old_limit=old, time=int(world.clock.now())
        )
        return _now(world, "phone_number_quality_update", payload)


def _now(world: World, field: str, payload: Mapping[str, Any]) -> int:
    if world.state.webhook_url is None:
        raise ValueError("no webhook URL is subscribed: pass webhook_url= or call subscribe()")
    item = _delivery(world, field, payload)
    deliverer_of(world).put([item])
    return item.seq
