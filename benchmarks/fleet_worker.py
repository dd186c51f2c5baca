"""One worker of the fleet benchmark: `python fleet_worker.py '<json>'`.

Replays the outbox the JSON names (`postgresql://...` or a SQLite path) through a blocking
guard, one intent at a time, until nothing waits in it (what it cannot claim now, another
worker holds); prints how many it sent.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from wa_auth import WhatsAppClient
from wa_auth.guards import Guard


def main(args: dict) -> None:
    logging.disable(logging.WARNING)
    from wa_auth.outbox import PostgresOutbox, SqliteOutbox

    target = args["outbox"]
    box = (
        PostgresOutbox(target, schema=args["schema"])
        if target.startswith("postgresql://")
        else SqliteOutbox(target)
    )
    sent = 0
    with WhatsAppClient(
        base_url=args["base_url"], token=args["token"], phone_number_id=args["phone"]
    ) as client:
        guard = Guard(client, outbox=box)
        print("ready", flush=True)
        sys.stdin.readline()  # the start signal: every worker starts together
        while True:
            report = box.replay(guard, batch=args.get("batch", 8))
            sent += report.delivered
            if report.deliveries:
                continue
            # Nothing for this worker now: the rest may be other workers' numbers (claimed,
            # not yet sent). Done when nothing waits; else look again shortly.
            by_state = box.stats().by_state
            if by_state["pending"] + by_state["queued"] == 0:
                break
            time.sleep(0.01)
    box.close()
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
