"""One worker process of a fleet on a PostgreSQL outbox: `python pg_worker.py '<json>'`.

The JSON says what to do (`mode`), with which URL, schema, sandbox and token:

- `drain`: replay the outbox through a guard until it holds nothing replayable, idling on
  `wait_for_work` (LISTEN/NOTIFY) between rounds, and riding out an outage of the server (a
  retryable `OutboxError`: wait, then go on); print the total report;
- `replay`: one replay, printing `ready` first (a test times its SIGKILL on it);
- `claim-and-hang`: claim rows (a lease), print their keys, and wait to be killed;
- `send-and-exit`: send intents through the guarded outbox and end without closing it;
- `fleet`: the fleet's worker: a token file (re-read when rotated), the Redis stores
  (verdicts, pauses, the shared limiter) and the outbox; replay until *expect* rows are
  delivered, riding out outages; print how many it sent.
"""

from __future__ import annotations

import json
import sys
import time

from wa_auth import WhatsAppClient
from wa_auth.errors import OutboxError
from wa_auth.guards import Guard
from wa_auth.intents import Intent
from wa_auth.outbox import PostgresOutbox


def fleet(args: dict) -> None:
    from wa_auth.fleet import RedisState
    from wa_auth.providers import FileTokenProvider

    deadline = time.monotonic() + args.get("timeout", 120.0)
    with (
        RedisState(args["redis"]) as state,
        PostgresOutbox(args["dsn"], schema=args["schema"], lease=args.get("lease", 30.0)) as box,
        WhatsAppClient(
            base_url=args["base_url"],
            token_provider=FileTokenProvider(args["token_file"], check_interval=0.05),
            phone_number_id=args["phone"],
            verdicts=state.verdicts,
        ) as client,
    ):
        limiter = state.limiter(rate=args["rate"], pair_interval=None, expected_workers=4)
        guard = Guard(client, outbox=box, pauses=state.pauses, limiter=limiter)
        print("ready", flush=True)
        delivered = 0
        while time.monotonic() < deadline:
            try:
                report = box.replay(guard, batch=8)
                delivered += report.delivered
                if not report.deliveries:
                    if box.stats().by_state["delivered"] >= args["expect"]:
                        break
                    box.wait_for_work(timeout=0.2)
            except OutboxError as exc:
                if not exc.retryable:
                    raise
                time.sleep(0.2)
        print(json.dumps({"delivered": delivered}), flush=True)


def main(args: dict) -> None:
    if args["mode"] == "fleet":
        fleet(args)
        return
    offset = args.get("clock_offset", 0.0)

    def clock() -> float:
        return time.time() + offset

    client = WhatsAppClient(
        base_url=args["base_url"], token=args["token"], phone_number_id=args["phone"]
    )
    box = PostgresOutbox(
        args["dsn"],
        schema=args["schema"],
        lease=args.get("lease", 300.0),
        flush_interval=args.get("flush_interval", 0.005),
        clock=clock,
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
    elif mode == "send-and-exit":
        for key in args["keys"]:
            guard.send(Intent.text("+15551234567", key, idempotency_key=key))
        print("sent", flush=True)
        return  # no close(): a plain exit must still commit the deferred outcomes
    elif mode == "claim-and-hang":
        rows = box.claim(args["limit"])
        print(json.dumps([r.idempotency_key for r in rows]), flush=True)
        time.sleep(600)
    box.close()
    client.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
