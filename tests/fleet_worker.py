"""A fleet worker: one real process sharing a `RedisState` with others (tests/fleet/).

Run as `python tests/fleet_worker.py REDIS_URL BASE_URL TOKEN PHONE_NUMBER_ID`; it answers one
JSON line on stdout for each JSON command line on stdin, and `{"ready": true}` first. TOKEN may
be several, comma-separated: the client then reads them through a `RotatingTokenProvider` whose
active candidate is the fleet's (`shared=state.rotation`).

- `{"op": "send", "to": "+1..."}`: one text through a `Guard` (the shared pauses) on a client
  with the shared verdicts -> the delivery's state, reason, attempts and error class;
- `{"op": "wait_verdict", "fp": "sha256:..."}`: wait (5 s at most) until the local copy holds
  the verdict -> `{"seen": bool}` (no request: the copy is local);
- `{"op": "wait_pause", "number": "...", "present": bool}` -> `{"ok": bool}`;
- `{"op": "resume", "number": "..."}`: `guard.resume(number)`;
- `{"op": "reserve", "n": N, "rate": R, "recipient": str|null, "pair_interval": s|null}`:
  N reservations on the shared limiter, each waited for -> the wall-clock slot of each, as
  (earliest, latest): Redis decided it between the request and its answer (`expected_workers`
  optional: the share each takes while Redis is down);
- `{"op": "wait_synced", "synced": bool}`: wait (15 s at most) until the local copies of the
  verdicts and pauses are (or are no longer) in sync with Redis -> `{"ok": bool}`;
- `{"op": "fallbacks"}` -> how many writes of the verdicts and pauses stayed local;
- `{"op": "rotate", "index": i, "at": wall_time}`: wait until *at* (so workers start together),
  then `rotate_to(i)` -> `{"fp": the active candidate's fingerprint}`, or `{"error": class}`;
- `{"op": "wait_rotation", "version": v}`: wait until the local copy of the rotation has
  reached version *v* -> `{"ok": bool}`;
- `{"op": "health"}`: `client.token_health()`, its cache the fleet's (`state.health`) ->
  `{"valid": bool, "fp": fingerprint}`;
- `{"op": "send_many", "n": N, "rate": R, "key": prefix}`: N texts through a guard paced by
  the fleet's limiter at R/s (half of it each while Redis is down), each with its own
  idempotency key -> the count of each delivery state, and the limiter's fall-backs.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from wa_auth import Guard, Intent, WhatsAppClient
from wa_auth.errors import WhatsAppError
from wa_auth.fleet import RedisState
from wa_auth.providers import RotatingTokenProvider


def _poll(check: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _rotate(command: dict[str, Any], provider: RotatingTokenProvider) -> dict[str, Any]:
    time.sleep(max(command["at"] - time.time(), 0.0))
    try:
        return {"fp": provider.rotate_to(command["index"]).fingerprint}
    except WhatsAppError as exc:
        return {"error": type(exc).__name__}


def _answer_fleet(command: dict[str, Any], state: RedisState, guard: Guard) -> Any:
    op = command["op"]
    if op == "send_many":
        limiter = state.limiter(rate=command["rate"], pair_interval=None, expected_workers=2)
        paced = Guard(guard.client, pauses=state.pauses, limiter=limiter)
        states: dict[str, int] = {}
        for i in range(command["n"]):
            intent = Intent.text(command["to"], "hi", idempotency_key=f"{command['key']}-{i}")
            delivery = paced.send(intent)
            states[delivery.state] = states.get(delivery.state, 0) + 1
        return {"states": states, "fallbacks": limiter.fallbacks}
    if op == "health":
        health = guard.client.token_health()
        return {"valid": health.valid, "fp": health.token_fingerprint}
    if op == "wait_synced":
        want = command["synced"]
        stores = (state.verdicts, state.pauses)
        return {"ok": _poll(lambda: all(s.synced.is_set() == want for s in stores), 15)}
    if op == "fallbacks":
        return {"verdicts": state.verdicts.fallbacks, "pauses": state.pauses.fallbacks}
    if op == "rotate":
        assert isinstance(guard.client.token_provider, RotatingTokenProvider)
        return _rotate(command, guard.client.token_provider)
    version = command["version"]  # wait_rotation
    return {"ok": _poll(lambda: state.rotation.peek("main").version >= version)}


def _answer(command: dict[str, Any], state: RedisState, guard: Guard, number: str) -> Any:
    op = command["op"]
    if op == "send":
        delivery = guard.send(Intent.text(command["to"], "hi"))
        return {
            "state": delivery.state,
            "reason": delivery.reason,
            "attempts": delivery.attempts,
            "error": type(delivery.error).__name__ if delivery.error is not None else None,
        }
    if op == "wait_verdict":
        return {"seen": _poll(lambda: state.verdicts.get(command["fp"]) is not None)}
    if op == "wait_pause":
        want = command["present"]
        return {
            "ok": _poll(
                lambda: (state.pauses.get("account", command["number"]) is not None) == want
            )
        }
    if op == "resume":
        guard.resume(command["number"])
        return {"ok": True}
    if op in {"send_many", "health", "wait_synced", "fallbacks", "rotate", "wait_rotation"}:
        return _answer_fleet(command, state, guard)
    if op == "reserve":
        limiter = state.limiter(
            rate=command["rate"],
            pair_interval=command["pair_interval"],
            expected_workers=command.get("expected_workers", 1),
        )
        slots = []
        for _ in range(command["n"]):
            # Redis's clock decided the slot somewhere between asking and the answer.
            asked = time.time()
            wait = limiter.acquire(number, command["recipient"])
            answered = time.time()
            assert wait is not None
            slots.append((asked + wait, answered + wait))
            time.sleep(max(answered + wait - time.time(), 0.0))
        return {"slots": slots, "fallbacks": limiter.fallbacks}
    return {"error": f"unknown op {op}"}


def main() -> None:
    redis_url, base_url, token, number = sys.argv[1:5]
    state = RedisState(redis_url)
    tokens = token.split(",")
    source: dict[str, Any] = (
        {"token": token}
        if len(tokens) == 1
        else {"token_provider": RotatingTokenProvider(tokens, shared=state.rotation)}
    )
    client = WhatsAppClient(
        base_url=base_url,
        phone_number_id=number,
        verdicts=state.verdicts,
        health_cache=state.health,
        **source,
    )
    guard = Guard(client, pauses=state.pauses)
    print(json.dumps({"ready": True, "synced": state.verdicts.synced.is_set()}), flush=True)
    for line in sys.stdin:
        print(json.dumps(_answer(json.loads(line), state, guard, number)), flush=True)
    client.close()
    state.close()


if __name__ == "__main__":
    main()
