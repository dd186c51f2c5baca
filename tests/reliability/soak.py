"""The soak: thousands of guarded sends through the outbox against a faulty sandbox.

One run sends *n* intents through a `Guard` with a `SqliteOutbox` on the fast client, against a
sandbox that answers a share of requests with 5xx errors and nginx's HTML 502 page, drops a
share of connections (half of the run before the send is processed, half after it was
accepted: the "maybe delivered" case) and adds latency. Halfway through, the token is revoked
at Meta; a moment later a new token is written to the token file (a rotation), and the
intents that failed for the dead token are replayed with the new one.

Afterwards every intent is checked against what the sandbox recorded, by idempotency key:

- lost: an intent neither delivered nor `maybe_delivered` after the replays, or reported
  delivered without the sandbox holding it;
- duplicated: an intent the sandbox holds more than once;
- maybe_delivered: the intents whose answer was lost, split by whether the sandbox really
  accepted them (a drop after acceptance) or not (a drop before);
- dead-token requests: requests carrying the revoked token after the first one Meta refused.

`run_soak()` returns those figures as a dict; the test (`test_soak.py`) asserts on them and
`scripts/reliability.py` writes them into docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

from wa_auth import (
    FastAsyncWhatsAppClient,
    FileTokenProvider,
    Guard,
    Intent,
    RetryPolicy,
    SqliteOutbox,
)
from wa_auth.sandbox import Sandbox

RECIPIENTS = tuple(f"+1555000{i:04d}" for i in range(50))


def _write_atomically(path: Path, token: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(token + "\n")
    tmp.replace(path)


async def _run(n: int, workdir: Path, *, seed: int, chunk: int, concurrency: int) -> dict[str, Any]:
    started = time.monotonic()
    with Sandbox(seed=seed) as sb:
        old = sb.issue_token()
        new = sb.issue_token()
        token_file = workdir / "token"
        _write_atomically(token_file, old)
        faults: dict[str, Any] = {
            "error_rate": 0.05,
            "html_502_rate": 0.01,
            "drop_rate": 0.02,
            "latency": 0.002,
            "latency_jitter": 0.004,
        }
        sb.set_faults(**faults, drop_after_accept=False)
        policy = RetryPolicy(backoff=0.02, max_backoff=0.2, circuit_cooldown=0.5, budget=30.0)
        outbox = SqliteOutbox(workdir / "outbox.db")
        numbers = sb.phone_number_ids
        intents = [
            Intent.text(
                RECIPIENTS[i % len(RECIPIENTS)],
                f"soak message {i} \N{PARTY POPPER}",
                idempotency_key=f"soak-{i:05d}",
                phone_number_id=numbers[i % len(numbers)],
            )
            for i in range(n)
        ]
        provider = FileTokenProvider(token_file, check_interval=0.05)
        states: collections.Counter[str] = collections.Counter()
        revoked_at_seq: int | None = None
        async with FastAsyncWhatsAppClient(
            base_url=sb.base_url,
            token=provider,
            phone_number_id=numbers[0],
            timeout=5.0,
        ) as client:
            guard = Guard(client, outbox=outbox, policy=policy, seed=seed)
            half = n // 2
            for start in range(0, n, chunk):
                if start >= half and revoked_at_seq is None:
                    # Meta revokes the token mid-run; the sends of the next chunk meet it.
                    revoked_at_seq = len(sb.requests())
                    sb.set_token_state(old, "revoked_deauthorized")
                    sb.set_faults(**faults, drop_after_accept=True)
                elif revoked_at_seq is not None and not token_file.read_text().startswith(new):
                    _write_atomically(token_file, new)  # the operator rotates
                deliveries = await guard.asend_many(
                    intents[start : start + chunk], concurrency=concurrency
                )
                states.update(d.state for d in deliveries)
            if not token_file.read_text().startswith(new):
                _write_atomically(token_file, new)
            sb.set_faults()  # the storm is over: what is replayable goes out now
            replays = 0
            replayed = 0
            for _ in range(20):
                report = await outbox.areplay(guard, concurrency=concurrency)
                replays += 1
                replayed += len(report.deliveries)
                waiting = outbox.stats().by_state
                if not any(waiting.get(s) for s in ("pending", "queued", "failed", "sending")):
                    break
                # The provider's next look at the token file, an open circuit's cool-down or a
                # queued intent's not_before.
                await asyncio.sleep(0.3)
        outbox.close()
        outbox = SqliteOutbox(workdir / "outbox.db")
        rows = {row.idempotency_key: row for row in outbox.list(limit=None)}
        outbox.close()
        recorded = collections.Counter(m.idempotency_key for m in sb.messages())
        message_ids = {m.idempotency_key: m.id for m in sb.messages()}
        requests = sb.requests()
    old_fp = _fingerprint(old)
    refused = [r.seq for r in requests if r.token_fingerprint == old_fp and r.status == 401]
    first_refusal = refused[0] if refused else None
    dead_token_after = (
        sum(1 for r in requests if r.token_fingerprint == old_fp and r.seq > first_refusal)
        if first_refusal is not None
        else 0
    )
    lost = []
    maybe = collections.Counter[str]()
    for intent in intents:
        key = intent.idempotency_key
        row = rows.get(key)
        state = row.state if row is not None else "missing"
        if state == "delivered":
            if recorded[key] != 1 or message_ids.get(key) != row.message_id:  # type: ignore[union-attr]
                lost.append(key)
        elif state == "maybe_delivered":
            maybe[
                "reached Meta (dropped after acceptance)"
                if recorded[key]
                else "never reached Meta (dropped before)"
            ] += 1
        else:
            lost.append(key)
    duplicated = sorted(k for k, count in recorded.items() if count > 1)
    outcomes = collections.Counter(r.outcome for r in requests)
    return {
        "intents": n,
        "concurrency": concurrency,
        "faults": {**faults, "drop_after_accept": "second half"},
        "requests": len(requests),
        "requests_by_outcome": dict(sorted(outcomes.items())),
        "first_pass_states": dict(sorted(states.items())),
        "replay_rounds": replays,
        "replayed": replayed,
        "final_states": dict(sorted(collections.Counter(r.state for r in rows.values()).items())),
        "lost": len(lost),
        "lost_keys": lost[:10],
        "duplicated": len(duplicated),
        "duplicated_keys": duplicated[:10],
        "maybe_delivered": sum(maybe.values()),
        "maybe_delivered_causes": dict(maybe),
        "dead_token_requests_after_first_refusal": dead_token_after,
        "concurrency_bound": concurrency,
        "seconds": round(time.monotonic() - started, 2),
    }


def _fingerprint(token: str) -> str:
    from wa_auth._redact import fingerprint

    return fingerprint(token)


def run_soak(
    n: int,
    workdir: Path,
    *,
    seed: int = 17,
    chunk: int = 250,
    concurrency: int = 32,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Run the soak with *n* intents in *workdir*; return its figures (see the module).

    Raises:
        TimeoutError: The run took longer than *timeout* seconds (a hang is a failure).
    """
    run = _run(n, workdir, seed=seed, chunk=chunk, concurrency=concurrency)
    return asyncio.run(asyncio.wait_for(run, timeout))
