"""Quickstart: a token's life against the local sandbox, told as a short story.

Run it with `make demo` (or `python examples/quickstart.py`). It starts the sandbox, sends a
message, lets the token expire, shows how wa_auth classifies that, switches to a fresh token,
then locks the business account to show a failure that no new token can fix.
"""

from __future__ import annotations

import wa_auth
from wa_auth.sandbox import Sandbox

CUSTOMER = "+15551234567"


def step(number: int, text: str) -> None:
    print(f"\n{number}. {text}")


def show(error: wa_auth.ApiError) -> None:
    print(f"   -> {type(error).__name__} (category {error.category!r})")
    print(f"      Meta said: HTTP {error.http_status}, code {error.code}, subcode {error.subcode}")
    print(f"      retryable: {error.retryable}; token: {error.token_fingerprint}")
    print(f"      operator action: {error.operator_action}")


def client_for(sandbox: Sandbox, token: str) -> wa_auth.WhatsAppClient:
    return wa_auth.WhatsAppClient(
        base_url=sandbox.base_url,
        token=token,
        phone_number_id=sandbox.phone_number_id,
        # No logging subscriber: the story is printed here instead.
        events=wa_auth.Events(),
    )


def main() -> None:
    with Sandbox(seed=2024, freeze_clock=True) as sandbox:
        print(f"wa_auth quickstart: a sandbox Graph API is listening at {sandbox.base_url}")

        step(1, "A system-user token valid for one hour sends an order confirmation.")
        token = sandbox.issue_token(expires_in=3600)
        with client_for(sandbox, token) as client:
            sent = client.send_text(CUSTOMER, "Your order #42 has shipped.", idempotency_key="o42")
            print(f"   -> accepted as {sent.message_id}")

            step(2, "The sandbox clock jumps an hour: the token expires while the app runs.")
            sandbox.advance(3600)
            try:
                client.send_text(CUSTOMER, "Your parcel arrives today.", idempotency_key="o42-eta")
            except wa_auth.TokenExpiredError as error:
                show(error)

        step(3, "The operator deploys a fresh token; the same message goes out.")
        fresh = sandbox.issue_token()
        with client_for(sandbox, fresh) as client:
            sent = client.send_text(
                CUSTOMER, "Your parcel arrives today.", idempotency_key="o42-eta"
            )
            print(f"   -> accepted as {sent.message_id}")

        step(4, "Meta locks the business account. Does yet another new token help?")
        sandbox.set_account_state("locked")
        for label, value in (("fresh token", fresh), ("brand-new token", sandbox.issue_token())):
            with client_for(sandbox, value) as client:
                try:
                    client.send_text(CUSTOMER, "Thanks for your order!")
                except wa_auth.AccountStateError as error:
                    print(f"   with the {label}:")
                    show(error)
        print("   -> No: account state is not a token problem. Pause the sender, fix the account.")

        step(5, "What the sandbox recorded.")
        for message in sandbox.messages():
            print(
                f"   accepted {message.idempotency_key!r} to {message.recipient}"
                f" with token {message.token_fingerprint}"
            )
        rejected = [r for r in sandbox.requests() if r.outcome != "accepted"]
        print(f"   {len(sandbox.requests())} requests in all, {len(rejected)} rejected:")
        for request in rejected:
            print(f"     HTTP {request.status} code {request.code} ({request.token_fingerprint})")


if __name__ == "__main__":
    main()
