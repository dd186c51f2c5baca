"""Quickstart: a token's life against the local sandbox, told as a short story.

Run it with `make demo` (or `python examples/quickstart.py`). It starts the sandbox and sends
with a `RotatingTokenProvider` that holds a primary and a standby token:

1. the primary sends;
2. the primary expires while the app runs: the provider fails over to the standby and the
   same call goes out, with no error for the caller;
3. a planned rotation to a new token that Meta rejects is rolled back to the standby;
4. a planned rotation to a good token is confirmed after its watch window;
5. the business account is locked: no fail-over, and no new token helps;
6. what the sandbox recorded.

It exits 1, naming the step, if the library does not do what the story says.
"""

from __future__ import annotations

import sys

import wa_auth
from wa_auth.events import Event
from wa_auth.providers import RotatingTokenProvider, TokenVerdicts
from wa_auth.sandbox import Sandbox

CUSTOMER = "+15551234567"


def step(number: int, text: str) -> None:
    print(f"\n{number}. {text}")


def expect(condition: bool, what: str) -> None:
    """Stop the story with exit code 1 when the library did not do what the story says."""
    if not condition:
        sys.exit(f"quickstart: expected {what}")


def show(error: wa_auth.ApiError) -> None:
    print(f"   -> {type(error).__name__} (category {error.category!r})")
    print(f"      Meta said: HTTP {error.http_status}, code {error.code}, subcode {error.subcode}")
    print(f"      retryable: {error.retryable}; token: {error.token_fingerprint}")
    print(f"      operator action: {error.operator_action}")


def print_event(event: Event) -> None:
    """Print the provider's and the client's auth events as they happen (fingerprints only)."""
    if event.kind != "auth" or event.name == "auth.failed":
        return  # the failures themselves are shown by `show`
    skip = {"event", "at", "consumer", "token_fingerprint"}
    detail = " ".join(
        f"{k}={v}" for k, v in event.to_dict().items() if k not in skip and v not in (None, "")
    )
    print(f"   event {event.name}: {event.token_fingerprint} {detail}".rstrip())


class Story:
    """The sandbox, one rotating provider, one client, and names for the tokens' fingerprints."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        events = wa_auth.Events(print_event)  # no logging: the story is printed instead
        # One memory of dead tokens, shared by the client and the provider.
        verdicts = TokenVerdicts()
        primary = sandbox.issue_token(expires_in=3600)
        standby = sandbox.issue_token()
        self.names: dict[str, str] = {}
        self.name(primary, "primary")
        self.name(standby, "standby")
        self.provider = RotatingTokenProvider([primary, standby], events=events, verdicts=verdicts)
        self.client = wa_auth.WhatsAppClient(
            base_url=sandbox.base_url,
            token_provider=self.provider,
            phone_number_id=sandbox.phone_number_id,
            verdicts=verdicts,
            events=events,
        )

    def name(self, token: str, name: str) -> None:
        self.names[wa_auth.Token(token).fingerprint] = name

    def send(self, text: str, key: str) -> str:
        """Send one message; return the name of the token the sandbox saw it sent with."""
        sent = self.client.send_text(CUSTOMER, text, idempotency_key=key)
        message = next(m for m in self.sandbox.messages() if m.id == sent.message_id)
        return self.names.get(message.token_fingerprint, message.token_fingerprint)

    def fail_over(self) -> None:
        step(1, "A primary token (valid for one hour) and a standby; the primary sends.")
        used = self.send("Your order #42 has shipped.", "o42")
        print(f"   -> accepted, sent with the {used} token")
        expect(used == "primary", "the first message to go out with the primary")

        step(2, "An hour passes: the primary expires while the app runs. The next send:")
        self.sandbox.advance(3600)
        used = self.send("Your parcel arrives today.", "o42-eta")
        print(f"   -> accepted, sent with the {used} token: one call, no error for the caller")
        expect(used == "standby", "a fail-over to the standby token")

    def rollback(self) -> None:
        step(3, "Planned rotation to a new token, which Meta rejects (its user logged out).")
        bad = self.sandbox.issue_token()
        self.name(bad, "new")
        self.sandbox.set_token_state(bad, "revoked_logged_out")
        self.provider.rotate_to(bad)  # watched: 3 token failures in its next 10 calls roll back
        outcomes = []
        for attempt in range(1, 4):
            print(f"   call {attempt}:")
            before = len(self.sandbox.requests())
            try:
                used = self.send("Thanks for your order!", f"o42-thanks-{attempt}")
            except wa_auth.TokenRevokedError as error:
                if len(self.sandbox.requests()) > before:
                    show(error)
                else:
                    print("   -> TokenRevokedError at once: the token is known dead, nothing sent")
                outcomes.append("failed")
            else:
                print(f"   -> accepted, sent with the {used} token")
                outcomes.append(used)
        expect(outcomes == ["failed", "failed", "standby"], "two failures, then a rollback")
        print(f"   -> rolled back: candidate {self.provider.active} (standby) is active again")

    def confirm(self) -> None:
        step(4, "Planned rotation to a good token: watched for 10 calls, then confirmed.")
        good = self.sandbox.issue_token()
        self.name(good, "newer")
        self.provider.rotate_to(good)
        used = [self.send(f"Order #{100 + n} confirmed.", f"o{100 + n}") for n in range(10)]
        expect(set(used) == {"newer"} and not self.provider.watching, "a confirmed rotation")
        print("   -> 10 messages sent with the newer token; now revoke the old one at Meta")

    def account_locked(self) -> None:
        step(5, "Meta locks the business account. Does another token help?")
        self.sandbox.set_account_state("locked")
        active = self.provider.active
        error = self.failure(self.client)
        show(error)
        expect(self.provider.active == active, "no fail-over for an account-state failure")
        print("   -> the rotating provider does not fail over: no token of this account helps")
        brand_new = self.sandbox.issue_token()
        self.name(brand_new, "brand-new")
        with wa_auth.WhatsAppClient(
            base_url=self.sandbox.base_url,
            token=brand_new,
            phone_number_id=self.sandbox.phone_number_id,
            events=wa_auth.Events(),
        ) as other:
            error = self.failure(other)
        print(f"   -> a brand-new token gets the same {type(error).__name__}")
        print("   Account state is not a token problem: pause the sender, fix the account.")

    @staticmethod
    def failure(client: wa_auth.WhatsAppClient) -> wa_auth.AccountStateError:
        try:
            client.send_text(CUSTOMER, "Your invoice is ready.", idempotency_key="inv-1")
        except wa_auth.AccountStateError as error:
            return error
        sys.exit("quickstart: expected AccountStateError for a locked account")

    def records(self) -> None:
        step(6, "What the sandbox recorded.")
        counts: dict[str, int] = {}
        for message in self.sandbox.messages():
            name = self.names.get(message.token_fingerprint, "?")
            counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            print(f"   {count:2} accepted with the {name} token")
        requests = self.sandbox.requests()
        rejected = [r for r in requests if r.outcome != "accepted"]
        print(f"   {len(requests)} requests in all, {len(rejected)} rejected:")
        for request in rejected:
            name = self.names.get(request.token_fingerprint or "", "?")
            print(f"     HTTP {request.status} code {request.code} ({name} token)")


def main() -> None:
    with Sandbox(seed=2024, freeze_clock=True) as sandbox:
        print(f"wa_auth quickstart: a sandbox Graph API is listening at {sandbox.base_url}")
        story = Story(sandbox)
        with story.client:
            story.fail_over()
            story.rollback()
            story.confirm()
            story.account_locked()
        story.records()
    print("\nDone: fail-over, rollback, confirmation and an account lock, all offline.")


if __name__ == "__main__":
    main()
