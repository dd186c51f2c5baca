"""Run every benchmark variant side by side against a private nginx and report the ratios.

Each (variant, concurrency) job runs in a fresh subprocess; the jobs alternate over several
rounds (the order rotates each round, so drift in machine load spreads over all rows) and the
medians are reported. Writes `benchmarks/results/latest.json` and a PNG of throughput against
concurrency.

    python benchmarks/run.py            # the full run (`make bench`)
    python benchmarks/run.py --quick    # < 3 minutes (`make bench-quick`)
    python benchmarks/run.py --only 'async.*' --rounds 3
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from peer import NginxPeer
from registry import Variant, discover

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: name: (n per throughput job, rounds, micro calls per batch, memory sends)
PROFILES: dict[str, tuple[int, int, int, int]] = {
    "full": (2000, 5, 100_000, 10_000),
    "quick": (300, 2, 20_000, 1_000),
    "smoke": (20, 1, 200, 40),
}
#: The n of the full profile: a row with its own `fixed_n` runs that many at this n.
FULL_N = PROFILES["full"][0]
#: The order of the groups in the table.
GROUP_ORDER = ("sync", "async", "error", "memory", "micro")
#: Extra comparisons between rows that are not each other's baseline.
COMPARISONS: list[dict[str, Any]] = [
    {
        "label": "fast async vs pywa_async @64",
        "a": "async.wa_auth.fast",
        "b": "async.peer.pywa_async",
        "concurrency": 64,
        "goal": ">= 20x",
        "min": 20.0,
    },
    {
        "label": "wa_auth sync vs pywa sync",
        "a": "sync.wa_auth",
        "b": "sync.peer.pywa",
        "concurrency": 1,
        "goal": "info",
        "min": None,
    },
]


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("wa-auth", "httpx", "httpcore", "anyio", "sniffio", "aiohttp", "pywa", "heyoo"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        out["whatsapp-python"] = metadata.version("whatsapp-python")
    except metadata.PackageNotFoundError:
        out["whatsapp-python"] = None
    return out


def _nginx_version(binary: str) -> str:
    proc = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (proc.stderr or proc.stdout).strip()


def _jobs(variants: list[Variant], n: int, memory_n: int, micro_n: int) -> list[dict[str, Any]]:
    jobs = []
    for v in variants:
        for c in v.concurrency:
            if v.kind == "micro":
                size = micro_n
            elif v.kind == "memory":
                size = memory_n
            elif v.fixed_n is not None:
                # The row's own size at the full profile's n, scaled with a smaller run.
                size = max(1, v.fixed_n * min(n, FULL_N) // FULL_N)
            else:
                size = max(1, int(n * v.scale))
            jobs.append({"name": v.name, "concurrency": c, "n": size})
    return jobs


def _run_job(python: str, base_url: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [python, str(HERE / "worker.py"), job["name"], "--base-url", base_url]
    cmd += ["--n", str(job["n"]), "--concurrency", str(job["concurrency"])]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"status": "error", "reason": f"worker exit {proc.returncode}: {proc.stderr[-500:]}"}
    return dict(json.loads(lines[-1]))


def _median(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get("status") == "ok" and key in s]
    return statistics.median(values) if values else None


def _aggregate(
    registry: dict[str, Variant], jobs: list[dict[str, Any]], samples: dict[tuple[str, int], list]
) -> list[dict[str, Any]]:
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for job in jobs:
        key = (job["name"], job["concurrency"])
        v, got = registry[job["name"]], samples.get(key, [])
        ok = [s for s in got if s.get("status") == "ok"]
        rows[key] = {
            "name": v.name,
            "label": v.label,
            "group": v.group,
            "kind": v.kind,
            "concurrency": job["concurrency"],
            "n": job["n"],
            "rounds": len(ok),
            "status": "ok" if ok else (got[0]["status"] if got else "not run"),
            "reason": None if ok else (got[0].get("reason") if got else None),
            "msgs_per_s": _median(got, "msgs_per_s"),
            "cpu_us_per_msg": _median(got, "cpu_us_per_msg"),
            "us_per_op": _median(got, "us_per_op"),
            "peak_rss_kb": _median(got, "peak_rss_kb"),
            "samples_msgs_per_s": [s["msgs_per_s"] for s in ok if "msgs_per_s" in s],
            # A variant's own figures (commits per message, pace error, ...), as medians.
            "figures": {
                k: _median(got, k)
                for k in sorted({k for s in ok for k, v in s.items() if isinstance(v, float)})
                if k not in {"seconds", "msgs_per_s", "cpu_us_per_msg", "us_per_op"}
            },
            "baseline": v.baseline,
            "goal": str(v.goal) if v.goal else None,
            "notes": v.notes,
        }
    for (name, c), row in rows.items():
        v = registry[name]
        ratio = None
        if v.baseline:
            base_key = (v.baseline, c)
            if base_key not in rows:  # a baseline measured at another level (sync rows: 1)
                base_key = next((k for k in rows if k[0] == v.baseline), base_key)
            base = rows.get(base_key)
            metric = {"memory": "peak_rss_kb", "micro": "us_per_op", "cpu": "cpu_us_per_msg"}.get(
                v.kind, "msgs_per_s"
            )
            if base and base.get(metric) and row.get(metric):
                ratio = (
                    _paired_ratio(samples.get((name, c), []), samples.get(base_key, []), metric)
                    if metric in {"msgs_per_s", "cpu_us_per_msg"}
                    else None
                )
                if ratio is None:
                    ratio = row[metric] / base[metric]
        row["ratio"] = ratio
        row["goal_met"] = v.goal.met(ratio, row["us_per_op"]) if v.goal else None
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    return sorted(rows.values(), key=lambda r: order.get(r["group"], len(order)))


def _paired_ratio(
    row: list[dict[str, Any]], base: list[dict[str, Any]], metric: str = "msgs_per_s"
) -> float | None:
    """Return the median of the per-round ratios of *row*'s samples to *base*'s (of *metric*).

    The samples are in round order. The machine's speed drifts between rounds (shared cores, a
    VM's steal time); a ratio taken within each round cancels that drift, where a ratio of two
    medians does not. None with fewer than two rounds where both succeeded.
    """
    pairs = [
        a[metric] / b[metric]
        for a, b in zip(row, base, strict=False)
        if a.get("status") == b.get("status") == "ok" and a.get(metric) and b.get(metric)
    ]
    return statistics.median(pairs) if len(pairs) >= 2 else None


def _comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    index = {(r["name"], r["concurrency"]): r for r in rows}
    out = []
    for comp in COMPARISONS:
        a, b = (
            index.get((comp["a"], comp["concurrency"])),
            index.get((comp["b"], comp["concurrency"])),
        )
        ratio = None
        if a and b and a.get("msgs_per_s") and b.get("msgs_per_s"):
            ratio = a["msgs_per_s"] / b["msgs_per_s"]
        met = None if ratio is None or comp["min"] is None else ratio >= comp["min"]
        out.append({**comp, "ratio": ratio, "goal_met": met})
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> None:
    """Print the results as a fixed-width table."""
    head = (
        f"{'variant':<58} {'c':>4} {'msg/s':>8} {'CPU us':>7} {'us/op':>7} {'RSS MB':>7} "
        f"{'ratio':>6}  goal"
    )
    print(head)
    print("-" * len(head))
    group = None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            print(f"[{group}]")
        if r["status"] != "ok":
            status = r["status"].upper()
            print(f"  {r['label'][:56]:<56} {r['concurrency']:>4}  {status}: {r['reason']}")
            continue
        rss = None if r["peak_rss_kb"] is None else r["peak_rss_kb"] / 1024
        mark = {True: "ok", False: "MISSED", None: ""}[r["goal_met"]]
        print(
            f"  {r['label'][:56]:<56} {r['concurrency']:>4} {_fmt(r['msgs_per_s'], '8.0f')} "
            f"{_fmt(r['cpu_us_per_msg'], '7.0f')} {_fmt(r['us_per_op'], '7.2f')} "
            f"{_fmt(rss, '7.1f')} {_fmt(r['ratio'], '6.2f')}  {r['goal'] or ''} {mark}"
        )
    for comp in comparisons:
        mark = {True: "ok", False: "MISSED", None: ""}[comp["goal_met"]]
        ratio = _fmt(comp["ratio"], ".2f")
        print(
            f"  {comp['label']:<56} {comp['concurrency']:>4} ratio {ratio}  {comp['goal']} {mark}"
        )


def plot(rows: list[dict[str, Any]], path: Path) -> str | None:
    """Draw msgs/s against concurrency for the async rows; return why not, if not drawn."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib not installed ({exc}); pip install 'wa-auth[bench]'"
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["group"] == "async" and r["msgs_per_s"]:
            series.setdefault(r["label"], []).append((r["concurrency"], r["msgs_per_s"]))
    if not series:  # a run with --only that measured no async row: nothing to draw
        return "no async row was measured"
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("messages in flight")
    ax.set_ylabel("messages / second (median)")
    ax.set_title("send_text throughput against a loopback nginx")
    ax.grid(visible=True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="full")
    p.add_argument("--quick", dest="profile", action="store_const", const="quick")
    p.add_argument("--smoke", dest="profile", action="store_const", const="smoke")
    p.add_argument("--rounds", type=int, help="rounds (default: the profile's)")
    p.add_argument("--n", type=int, help="messages per throughput job (default: the profile's)")
    p.add_argument("--only", action="append", help="glob of variant names (repeatable)")
    p.add_argument("--python", default=sys.executable, help="interpreter of the workers")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--png", type=Path, help="plot path (default: next to --out)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per job")
    args = p.parse_args(argv)

    n, rounds, micro_n, memory_n = PROFILES[args.profile]
    n, rounds = args.n or n, args.rounds or rounds
    registry = discover()
    variants = [
        v
        for v in registry.values()
        if not args.only or any(fnmatch.fnmatch(v.name, pat) for pat in args.only)
    ]
    jobs = _jobs(variants, n, memory_n, micro_n)
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    started = time.time()
    load_before = os.getloadavg()
    # A `kill` must stop the private nginx too: turn SIGTERM into an exit that runs the
    # peer's __exit__ instead of leaving an orphaned server behind.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with NginxPeer() as peer:
        nginx = _nginx_version(peer.binary)
        for r in range(rounds):
            # Rotate and alternate the order so no row always runs first or last.
            shift = (r * len(jobs)) // max(rounds, 1)
            order = jobs[shift:] + jobs[:shift]
            if r % 2:
                order.reverse()
            for i, job in enumerate(order, 1):
                result = _run_job(args.python, peer.base_url, job, args.timeout)
                key = (job["name"], job["concurrency"])
                samples.setdefault(key, []).append(result)
                status = result.get("status")
                figure = result.get("msgs_per_s") or result.get("us_per_op") or 0
                print(
                    f"round {r + 1}/{rounds} [{i}/{len(order)}] {job['name']} "
                    f"c={job['concurrency']} n={job['n']}: {status} {figure:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
    rows = _aggregate(registry, jobs, samples)
    comparisons = _comparisons(rows)
    print_table(rows, comparisons)

    png = args.png or args.out.with_name(args.out.stem + "-throughput.png")
    plot_error = None if args.no_plot else plot(rows, png)
    report = {
        "schema": 1,
        "profile": args.profile,
        "rounds": rounds,
        "n": n,
        "micro_n": micro_n,
        "memory_n": memory_n,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "nginx": nginx,
        },
        "versions": _versions(),
        "rows": rows,
        "comparisons": comparisons,
        "plot": None if args.no_plot or plot_error else str(png),
        "plot_error": plot_error,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"\nwrote {args.out}" + ("" if report["plot"] is None else f" and {png}"))
    if plot_error:
        print(f"no plot: {plot_error}")
    failed = [r for r in rows if r["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
