"""One worker of the fleet benchmark: `python fleet_worker.py '<json>'`.

Replays the outbox the JSON names (`postgresql://...` or a SQLite path) through a blocking
guard, one intent at a time, until it holds nothing replayable; prints how many it sent.
"""

from __future__ import annotations

import json
import logging
import sys

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
            if not report.deliveries:
                break
            sent += report.delivered
    box.close()
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
