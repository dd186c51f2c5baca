# ruff: noqa: INP001 - a script run from the repository, not an importable package
"""Run the long forms of the reliability trials and write docs/reliability.md.

Usage:
    python scripts/reliability.py            # every trial at full size (`make reliability`)
    python scripts/reliability.py --quick    # the short forms `make test` runs, for a try

Each group below is one pytest run with `WA_AUTH_RELIABILITY=long` (the tests pick their full
sizes) and `WA_AUTH_RELIABILITY_OUT` naming a JSON-lines file where the tests record what they
tried and what held (`helpers.record_reliability`). The page is then written from those records
alone: every figure in it comes from this run. A failing group is written as failed, and the
script exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"


class Group(NamedTuple):
    """One run of the report: a title, what it tries, and the pytest arguments.

    A group with a *script* runs that script instead of pytest, with `--out FILE` (and `--quick`
    for the short form); the JSON it writes (`{"rows": [...]}`) becomes its records.
    """

    name: str
    title: str
    tries: str
    args: tuple[str, ...]
    script: str | None = None


GROUPS = (
    Group(
        "crash",
        "Crash trials",
        "A worker process sending a batch of 60 intents through the SQLite outbox is killed "
        "with SIGKILL at a random point; the file is reopened after the leases lapse and "
        "replayed.",
        ("tests/outbox/test_outbox_processes.py",),
    ),
    Group(
        "soak",
        "Soak with faults and a rotation",
        "Guarded sends on the fast client through the SQLite outbox, 32 in flight, against a "
        "sandbox answering 5 % of requests with a 5xx error and 1 % with nginx's HTML 502 page, "
        "dropping 2 % of connections (before the send is processed in the first half, after it "
        "was accepted in the second) and adding 2 to 6 ms of latency. Halfway, Meta revokes the "
        "token; a new token is then written to the token file, the storm ends and the outbox "
        "is replayed.",
        ("tests/reliability",),
    ),
    Group(
        "storms",
        "Storms of rate limits and 5xx errors",
        "Guarded intents on the async clients against a sandbox that answers every send with "
        "130429 (the number's throughput) for 5 s, 131056 (one recipient's pair limit) for "
        "12 s, or a 5xx that never ends, counted at the sandbox. Time is virtual, so the counts "
        "depend on the policy alone, not on the machine.",
        (),
        script="benchmarks/reliability/storms.py",
    ),
    Group(
        "fuzz",
        "Fuzzing",
        "Every property test of the suite (Hypothesis: arbitrary Unicode with surrogates and "
        "NUL, megabyte strings, arbitrary JSON nesting, arbitrary bodies and headers) under the "
        "`reliability` profile: 1,000 examples for each test that does not set its own count.",
        ("tests", "-m", "hypothesis", "--hypothesis-profile=reliability"),
    ),
    Group(
        "hostile",
        "Slow and hostile peers",
        "The tests marked `reliability`: peers (Graph, Vault) that trickle their answers, and "
        "clients that hold `wa-auth serve`'s connections open with half-sent requests.",
        ("tests", "-m", "reliability and not hypothesis"),
    ),
)


def _run_group(group: Group, out: Path, *, quick: bool) -> tuple[bool, float, str]:
    env = dict(os.environ, WA_AUTH_RELIABILITY_OUT=str(out))
    if not quick:
        env["WA_AUTH_RELIABILITY"] = "long"
    if group.script is not None:
        return _run_script(group, out, env, quick=quick)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *group.args]
    started = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - this interpreter running pytest
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    # pytest's 5: nothing collected (a group whose tests are not written yet).
    return proc.returncode in (0, 5), seconds, tail


def _run_script(
    group: Group, out: Path, env: Mapping[str, str], *, quick: bool
) -> tuple[bool, float, str]:
    rows = out.with_name(f"{group.name}.json")
    cmd = [sys.executable, str(group.script), "--out", str(rows), *(["--quick"] if quick else [])]
    started = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - this interpreter running the project's script
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    if proc.returncode == 0 and rows.exists():
        with out.open("a", encoding="utf-8") as fh:
            for row in json.loads(rows.read_text(encoding="utf-8"))["rows"]:
                fh.write(json.dumps({"trial": group.name, "figures": row}) + "\n")
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return proc.returncode == 0, seconds, tail


def _records(path: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            found[entry["trial"]].append(entry["figures"])
    return found


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _crash(figures: list[dict[str, Any]]) -> list[str]:
    states: Counter[str] = Counter()
    for f in figures:
        states.update(f["states"])
    reached = sum(f["maybe_delivered_reached_meta"] for f in figures)
    return [
        *_table(
            ("trials", "intents", "delivered once", "maybe_delivered", "lost", "sent twice"),
            [
                (
                    len(figures),
                    sum(f["intents"] for f in figures),
                    states["delivered"],
                    states["maybe_delivered"],
                    sum(f["lost"] for f in figures),
                    sum(f["duplicated"] for f in figures),
                )
            ],
        ),
        "",
        (
            "Each `maybe_delivered` intent is one the kill caught between its `sending` commit "
            f"and its outcome's: {reached} of them had reached Meta, the others had not. None "
            "was sent again by the replay."
        ),
    ]


def _soak(figures: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for f in figures:
        causes = ", ".join(f"{n} {c}" for c, n in sorted(f["maybe_delivered_causes"].items()))
        outcomes = ", ".join(f"{n} {o}" for o, n in f["requests_by_outcome"].items())
        lines += [
            *_table(
                ("intents", "requests", "lost", "sent twice", "maybe_delivered", "seconds"),
                [
                    (
                        f["intents"],
                        f["requests"],
                        f["lost"],
                        f["duplicated"],
                        f["maybe_delivered"],
                        f["seconds"],
                    )
                ],
            ),
            "",
            f"- Requests by the sandbox's outcome: {outcomes}.",
            (
                f"- After the first pass: {_counts(f['first_pass_states'])}; the replay "
                f"(rounds: {f['replay_rounds']}) sent {f['replayed']} intents again; at the "
                f"end: {_counts(f['final_states'])}."
            ),
            (
                f"- `maybe_delivered`, by cause: {causes or 'none'}. None was replayed, so "
                "none was sent twice."
            ),
            (
                "- Requests with the revoked token after Meta first refused it: "
                f"{f['dead_token_requests_after_first_refusal']} (sends already in flight; "
                f"{f['concurrency_bound']} at most)."
            ),
            "",
        ]
    return lines


def _counts(mapping: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in mapping.items()) or "none"


def _generic(figures: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for f in figures for k in f if k != "name"})
    rows = [[f.get("name", "")] + [f.get(k, "") for k in keys] for f in figures]
    return _table(["trial", *keys], rows)


def _storms(figures: list[dict[str, Any]]) -> list[str]:
    rows = []
    for f in figures:
        held = "the number" if f.get("limiter") else "nothing (no limiter)"
        if "circuit_threshold" in f:
            held = "the circuit"
        rows.append(
            (
                f["storm"],
                f["client"],
                f["intents"],
                f.get("concurrency", f["intents"]),
                held,
                f["requests"],
                f.get("per_intent", round(f["requests"] / f["intents"], 3)),
                _counts(f.get("deliveries", {})),
            )
        )
    return _table(
        ("storm", "client", "intents", "in flight", "held by", "requests", "per intent", "ended"),
        rows,
    )


def _trickle(figures: list[dict[str, Any]]) -> list[str]:
    return [
        (
            "A peer on 127.0.0.1 sends its status line and headers, then one byte of its body "
            "every half second, for minutes."
        ),
        "",
        *_table(
            ("call", "ended after (s)", "as"),
            [(f["name"], f["seconds"], f["outcome"]) for f in figures],
        ),
    ]


RENDER = {
    "crash": _crash,
    "soak": _soak,
    "storms": _storms,
    "hostile.trickle": _trickle,
}


def _page(
    results: list[tuple[Group, bool, float, str]], records: Mapping[str, Any], quick: bool
) -> str:
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    lines = [
        "# Reliability report",
        "",
        "<!-- Generated by `make reliability` (scripts/reliability.py): do not edit by hand. -->",
        "",
        (
            "What wa_auth was put through, and what held. Every figure below comes from one run "
            "of `make reliability`, which runs the long forms of trials whose short forms are "
            "part of `make test`; the page is rewritten by that command."
        ),
        "",
        f"Run on {today}, Python {platform.python_version()}, {os.cpu_count()} CPU cores"
        + (", short forms (`--quick`)" if quick else "")
        + ".",
        "",
        "## Summary",
        "",
        *_table(
            ("trials", "result", "seconds"),
            [(g.title, "held" if ok else "FAILED", round(s, 1)) for g, ok, s, _ in results],
        ),
        "",
    ]
    for group, ok, _seconds, tail in results:
        lines += [f"## {group.title}", "", group.tries, ""]
        if not ok:
            lines += ["**Failed.** The last lines of the run:", "", "```text", tail, "```", ""]
        handled = False
        for trial, figures in records.items():
            if trial == group.name or trial.startswith(group.name + "."):
                render = RENDER.get(trial, _generic)
                lines += [*render(figures), ""]
                handled = True
        if not handled:
            lines += [tail.splitlines()[-1] if tail else "(no output)", ""]
    return "\n".join(lines).rstrip() + "\n"


def _say(text: str) -> None:
    sys.stderr.write(f"reliability: {text}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the groups, write the page; return 1 when a group failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short forms of make test")
    parser.add_argument("--only", action="append", help="run only these groups (by name)")
    parser.add_argument("--output", type=Path, default=DOC, help="the page to write")
    args = parser.parse_args(argv)
    groups = [g for g in GROUPS if not args.only or g.name in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="wa-auth-reliability-") as tmp:
        out = Path(tmp) / "records.jsonl"
        for group in groups:
            _say(f"{group.name} ...")
            ok, seconds, tail = _run_group(group, out, quick=args.quick)
            _say(f"{group.name}: {'held' if ok else 'FAILED'} in {seconds:.0f} s")
            results.append((group, ok, seconds, tail))
        records = _records(out)
    args.output.write_text(_page(results, records, quick=args.quick), encoding="utf-8")
    _say(f"wrote {args.output}")
    return 0 if all(ok for _, ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
