"""One short-lived worker process, as n8n starts them: `python worker.py '<json>'`.

The JSON says what to do (`mode`), with which file, sandbox and token:

- `replay`: replay the outbox through a guard and print the report;
- `claim-and-hang`: claim rows (a lease), say so, and wait to be killed;
- `send-and-exit`: send intents through a guarded outbox and end without closing it;
- `send-and-hang`: send intents through a guarded outbox, say `sent` (every answer is in,
  the outcomes still wait to be committed) and wait to be killed;
- `send-one`: send one intent with a state file (verdicts, pauses, the limiter) and print
  its delivery.

`ready` is printed once the worker is about to send, so a test can time its SIGKILL.
"""

from __future__ import annotations

import json
import sys
import time

from wa_auth import WhatsAppClient
from wa_auth.guards import Guard
from wa_auth.intents import Intent
from wa_auth.outbox import SqliteOutbox
from wa_auth.state import StateFile


def main(args: dict) -> None:
    offset = args.get("clock_offset", 0.0)

    def clock() -> float:
        return time.time() + offset

    mode = args["mode"]
    if mode == "send-one":
        with StateFile(args["state"]) as state:
            client = WhatsAppClient(
                base_url=args["base_url"],
                token=args["token"],
                phone_number_id=args["phone"],
                verdicts=state.verdicts,
            )
            guard = Guard(client, pauses=state.pauses, limiter=state.limiter())
            delivery = guard.send(Intent.text(args["to"], "hello", idempotency_key=args["key"]))
            print(json.dumps(delivery.to_dict()), flush=True)
            client.close()
        return
    client = WhatsAppClient(
        base_url=args["base_url"], token=args["token"], phone_number_id=args["phone"]
    )
    box = SqliteOutbox(
        args["db"],
        lease=args.get("lease", 300.0),
        flush_interval=args.get("flush_interval", 0.05),
        clock=clock,
    )
    guard = Guard(client, outbox=box)
    if mode == "replay":
        print("ready", flush=True)
        report = box.replay(guard, batch=args.get("batch", 256))
        print(json.dumps(report.to_dict()), flush=True)
        box.close()
    elif mode == "claim-and-hang":
        rows = box.claim(args["limit"])
        print(json.dumps([r.idempotency_key for r in rows]), flush=True)
        time.sleep(600)
    elif mode == "send-and-exit":
        for key in args["keys"]:
            guard.send(Intent.text(args["to"], key, idempotency_key=key))
        print("sent", flush=True)
        # No close(): a plain exit must still commit the deferred outcomes.
    elif mode == "send-and-hang":
        for key in args["keys"]:
            guard.send(Intent.text(args["to"], key, idempotency_key=key))
        print("sent", flush=True)
        time.sleep(600)  # killed here: after the answers, before the outcomes' commit
    client.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
