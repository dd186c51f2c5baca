"""One worker process of a fleet on a PostgreSQL outbox: `python pg_worker.py '<json>'`.

The JSON says what to do (`mode`), with which URL, schema, sandbox and token:

- `drain`: replay the outbox through a guard until it holds nothing replayable, idling on
  `wait_for_work` (LISTEN/NOTIFY) between rounds, and riding out an outage of the server (a
  retryable `OutboxError`: wait, then go on); print the total report;
- `replay`: one replay, printing `ready` first (a test times its SIGKILL on it);
- `claim-and-hang`: claim rows (a lease), print their keys, and wait to be killed.
"""

from __future__ import annotations

import json
import sys
import time

from wa_auth import WhatsAppClient
from wa_auth.errors import OutboxError
from wa_auth.guards import Guard
from wa_auth.outbox import PostgresOutbox


def main(args: dict) -> None:
    offset = args.get("clock_offset", 0.0)

    def clock() -> float:
        return time.time() + offset

    client = WhatsAppClient(
        base_url=args["base_url"], token=args["token"], phone_number_id=args["phone"]
    )
    box = PostgresOutbox(
        args["dsn"], schema=args["schema"], lease=args.get("lease", 300.0), clock=clock
    )
    guard = Guard(client, outbox=box, clock=clock)
    mode = args["mode"]
    if mode == "replay":
        print("ready", flush=True)
        report = box.replay(guard, batch=args.get("batch", 16))
        print(json.dumps(report.to_dict()), flush=True)
    elif mode == "drain":
        print("ready", flush=True)
        delivered = rounds = outages = 0
        while True:
            try:
                report = box.replay(guard, batch=args.get("batch", 16))
            except OutboxError as exc:
                if not exc.retryable:
                    raise
                outages += 1
                time.sleep(0.2)
                continue
            rounds += 1
            delivered += report.delivered
            if not report.deliveries:
                try:
                    stats = box.stats()
                except OutboxError:
                    time.sleep(0.2)
                    continue
                waiting = stats.by_state["pending"] + stats.by_state["queued"]
                if waiting == 0 or waiting == args.get("leave", 0):
                    break
                box.wait_for_work(timeout=0.5)
        print(
            json.dumps({"delivered": delivered, "rounds": rounds, "outages": outages}), flush=True
        )
    elif mode == "claim-and-hang":
        rows = box.claim(args["limit"])
        print(json.dumps([r.idempotency_key for r in rows]), flush=True)
        time.sleep(600)
    box.close()
    client.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
