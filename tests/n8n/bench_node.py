"""Measure the wa_auth node's Send against the other ways n8n can post to `wa-auth serve`.

One n8n execution (the current n8n of tests/n8n/, headless) makes N items (1,000 by default),
each a wa_auth intent, and sends them four ways, one branch after the other, against one
`wa-auth serve` in front of the benchmarks' nginx peer (answering like Meta from memory, as in
`make bench`; `--peer sandbox` for the sandbox): the wa_auth node's Send from fields (`to`,
`text` and the key are `{{ $json... }}` expressions, read from the item without n8n's engine)
and as raw intents (the item itself, the default), both in batches of 200, one request each;
an HTTP Request node posting each item to `/send` (one request and one expression per item,
all at once); and a Code node posting the same batches of 200 with `this.helpers.httpRequest`.
Each branch's time is n8n's own `executionTime` of its node, so n8n's start-up is left out; its
CPU is what serve and n8n's processes used meanwhile (sampled from /proc every 25 ms). Then,
with n8n gone, the same intents go to the same serve from a Python process of their own, in the
same batches with two in flight (`serve_alone`): what serve's list path does without n8n, the
node's ceiling.
Prints one JSON line: each row's seconds, items per second, CPU µs per item (serve, n8n) and
serve's share of a core, and the ratios of the two node rows to the HTTP Request, the Code node
and serve alone.

    make bench-n8n    # or: bash tests/n8n/ensure.sh && .venv/bin/python tests/n8n/bench_node.py
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

# tests/ and benchmarks/ are put on the path just above.
from peer import API_VERSION, PHONE_ID, NginxPeer, nginx_binary  # noqa: E402

from serving import KEY, serving  # noqa: E402
from wa_auth.sandbox import Sandbox  # noqa: E402

BATCH = 200
#: The node's Send default: batch requests waiting on serve at once (serve_alone does the same).
IN_FLIGHT = 2


def _n8n() -> str:
    if os.environ.get("N8N_BIN"):
        return os.environ["N8N_BIN"]
    digest = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("WA_AUTH_N8N_CACHE", Path.home() / ".cache" / "wa-auth-n8n"))
    return str(cache / digest / "node_modules" / ".bin" / "n8n")


def _extension(folder: Path) -> Path:
    build = ROOT / "n8n-nodes-wa-auth" / "scripts" / "build.sh"
    out = subprocess.run(["bash", str(build)], capture_output=True, text=True, check=True)
    with tarfile.open(out.stdout.strip().splitlines()[-1]) as archive:
        archive.extractall(folder, filter="data")
    return folder / "package"


def _node(name: str, kind: str, x: int, y: int, parameters: dict[str, Any], **extra: Any) -> Any:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
        "name": name,
        "type": kind,
        "typeVersion": extra.pop("version", 1),
        "position": [x, y],
        "parameters": parameters,
        **extra,
    }


def intent(n: int, prefix: str = "order") -> dict[str, Any]:
    """The bench's item *n*: a text intent (the Items node's JavaScript makes the same ones)."""
    return {
        "to": f"+1555{1000000 + n}",
        "type": "text",
        "text": {"body": f"Order {n} shipped"},
        "idempotency_key": f"{prefix}-{n}",
    }


def serve_alone(url: str, pid: int, items: int) -> dict[str, Any]:
    """The same intents posted to serve from here (batches of `BATCH`, `IN_FLIGHT` at once).

    New idempotency keys, so serve sends them again; its CPU from /proc before and after.
    """
    batches = [
        [intent(n, "alone") for n in range(start, min(start + BATCH, items))]
        for start in range(0, items, BATCH)
    ]
    limits = httpx.Limits(max_connections=IN_FLIGHT)
    with (
        httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=300, limits=limits) as http,
        concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool,
    ):

        def post(batch: list[dict[str, Any]]) -> int:
            answer = http.post("/send", json=batch)
            answer.raise_for_status()
            return len(answer.json()["results"])

        cpu, start = _cpu(pid), time.perf_counter()
        count = sum(pool.map(post, batches))
        seconds, cpu = time.perf_counter() - start, _cpu(pid) - cpu
    assert count == items, count
    return {
        "seconds": round(seconds, 3),
        "items_per_s": round(items / seconds, 1),
        "cpu_us_per_item": {"serve": round(cpu * 1e6 / items)},
        "serve_share": round(cpu / seconds, 2),
    }


def workflow(url: str, items: int) -> dict[str, Any]:
    """Manual Trigger -> Items -> (wa_auth node | HTTP Request per item | Code node batches)."""
    make = (
        f"return Array.from({{ length: {items} }}, (_, n) => ({{ json: {{ "
        "to: '+1555' + String(1000000 + n), type: 'text', "
        "text: { body: 'Order ' + n + ' shipped' }, idempotency_key: 'order-' + n } }));"
    )
    code = (
        f"const items = $input.all().map(i => i.json);\nconst out = [];\n"
        f"for (let s = 0; s < items.length; s += {BATCH}) {{\n"
        f"  const body = items.slice(s, s + {BATCH});\n"
        f"  const answer = await this.helpers.httpRequest({{ method: 'POST', url: '{url}/send', "
        f"headers: {{ 'X-API-Key': '{KEY}' }}, body, json: true, timeout: 300000 }});\n"
        "  for (const r of answer.results) out.push({ json: r });\n}\nreturn out;"
    )
    nodes = [
        _node("Manual Trigger", "n8n-nodes-base.manualTrigger", 0, 300, {}),
        _node("Items", "n8n-nodes-base.code", 200, 300, {"jsCode": make}, version=2),
        _node(
            "wa_auth node",
            "CUSTOM.waAuth",
            400,
            700,
            {
                "operation": "send",
                "messageType": "text",
                "to": "={{ $json.to }}",
                "text": "={{ $json.text.body }}",
                "idempotencyKey": "=node-{{ $json.idempotency_key }}",
                "options": {"batchSize": BATCH},
            },
            credentials={"waAuthApi": {"id": "waAuthServeApi00", "name": "wa-auth serve"}},
        ),
        _node(
            "wa_auth node (raw intent)",
            "CUSTOM.waAuth",
            400,
            900,
            {
                "operation": "send",
                "messageType": "raw",
                "options": {"batchSize": BATCH},
            },
            credentials={"waAuthApi": {"id": "waAuthServeApi00", "name": "wa-auth serve"}},
        ),
        _node(
            "HTTP Request per item",
            "n8n-nodes-base.httpRequest",
            400,
            300,
            {
                "method": "POST",
                "url": f"{url}/send",
                "sendHeaders": True,
                "headerParameters": {"parameters": [{"name": "X-API-Key", "value": KEY}]},
                "sendBody": True,
                "specifyBody": "json",
                "jsonBody": "={{ JSON.stringify($json) }}",
                # 50 requests at a time: all 1,000 at once (the default) overflow serve's backlog.
                "options": {"batching": {"batch": {"batchSize": 50, "batchInterval": 0}}},
            },
            version=4.2,
        ),
        _node(
            "Code node batches",
            "n8n-nodes-base.code",
            400,
            500,
            {"mode": "runOnceForAllItems", "jsCode": code},
            version=2,
        ),
    ]
    targets = [
        "wa_auth node",
        "wa_auth node (raw intent)",
        "HTTP Request per item",
        "Code node batches",
    ]
    return {
        "id": "waAuthNodeBench",
        "name": "wa_auth node benchmark",
        "active": False,
        "settings": {"executionOrder": "v1"},
        "nodes": nodes,
        "connections": {
            "Manual Trigger": {"main": [[{"node": "Items", "type": "main", "index": 0}]]},
            "Items": {"main": [[{"node": t, "type": "main", "index": 0} for t in targets]]},
        },
    }


@contextlib.contextmanager
def _service(peer: str, transport: str | None = None) -> Iterator[Any]:
    """`wa-auth serve` in front of *peer*: nginx answering like Meta (the default) or the sandbox.

    nginx answers from memory, as in `make bench`, so the peer's own cost does not blur the
    ratios; the sandbox is a Python server on the same cores. Connections: the HTTP Request
    node opens one per item, all at once (its batching only spaces them out by an interval),
    more than serve's default cap, which closes idle ones to make room.
    """
    args: tuple[str, ...] = ("--concurrency", "64", "--max-connections", "4096")
    if transport is not None:  # serve's client to the peer (its default otherwise)
        args += ("--transport", transport)
    if peer == "sandbox":
        with Sandbox(seed=11) as sandbox, serving(sandbox, sandbox.issue_token(), *args) as svc:
            yield svc
        return
    with NginxPeer() as nginx:
        extra = {
            "WA_BASE_URL": nginx.base_url,
            "WA_PHONE_NUMBER_ID": PHONE_ID,
            "WA_API_VERSION": API_VERSION,
        }
        with serving(None, "EAAbenchmarktoken0123456789", *args, **extra) as svc:
            yield svc


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) process *pid* used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> set[int]:
    """The processes below *root* (n8n, its task runner), from /proc's parent links."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


class Sampler:
    """The CPU seconds of serve and of n8n's processes, every `EVERY` seconds, with the time.

    A row's CPU is what the two used between its node's start and end (n8n's `startTime` and
    `executionTime`), read off these samples: µs per item beside each ratio.
    """

    EVERY = 0.025

    def __init__(self, serve: int, root: int) -> None:
        self.serve, self.root = serve, root
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pids: set[int] = set()
        looked = 0.0
        while not self._stop.is_set():
            now = time.time()
            if now - looked > 0.5:  # n8n's processes, looked up now and then (a /proc scan)
                pids |= _descendants(self.root)
                looked = now
            n8n = sum(_cpu(pid) for pid in pids)
            self.samples.append((now, _cpu(self.serve), n8n))
            self._stop.wait(self.EVERY)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> tuple[float, float]:
        """CPU seconds of serve and of n8n from *start* to *end* (wall-clock seconds)."""
        return cpu_between(self.samples, start, end)


def cpu_between(
    samples: list[tuple[float, float, float]], start: float, end: float
) -> tuple[float, float]:
    """From (time, serve CPU, n8n CPU) samples: what each used from *start* to *end*."""
    before = max((s for s in samples if s[0] <= start), default=samples[0])
    after = min((s for s in samples if s[0] >= end), default=samples[-1])
    return after[1] - before[1], after[2] - before[2]


ROWS = ("wa_auth node", "wa_auth node (raw intent)", "HTTP Request per item", "Code node batches")


def report(
    run_data: dict[str, Any],
    items: int,
    samples: list[tuple[float, float, float]],
    alone: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The rows (time, items/s, CPU µs per item of serve and n8n, serve's share of a core) and
    the ratios of one run; with *alone* (`serve_alone`'s row), the node rows against it too."""
    rows: dict[str, Any] = {}
    for name in ROWS:
        (run,) = run_data[name]
        count = sum(len(output or []) for output in run["data"]["main"])
        assert count == items, (name, count)
        seconds = run["executionTime"] / 1000
        start = run["startTime"] / 1000
        serve, n8n = cpu_between(samples, start, start + seconds)
        rows[name] = {
            "seconds": round(seconds, 3),
            "items_per_s": round(items / seconds, 1),
            "cpu_us_per_item": {
                "serve": round(serve * 1e6 / items),
                "n8n": round(n8n * 1e6 / items),
            },
            "serve_share": round(serve / seconds, 2),
        }
    http = rows["HTTP Request per item"]["items_per_s"]
    code = rows["Code node batches"]["items_per_s"]
    result: dict[str, Any] = {"items": items, "rows": rows}
    for name, key in (("wa_auth node", "node"), ("wa_auth node (raw intent)", "raw_node")):
        result[f"{key}_vs_http_request"] = round(rows[name]["items_per_s"] / http, 2)
        result[f"{key}_vs_code_node"] = round(rows[name]["items_per_s"] / code, 2)
        if alone is not None:
            ceiling = alone["items_per_s"]
            result[f"{key}_vs_serve_alone"] = round(rows[name]["items_per_s"] / ceiling, 2)
    if alone is not None:
        result["serve_alone"] = alone
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="items in the execution (1000)")
    parser.add_argument(
        "--peer",
        choices=("nginx", "sandbox"),
        default="nginx" if nginx_binary() else "sandbox",
        help="what answers serve like Meta (default: nginx when installed)",
    )
    parser.add_argument(
        "--transport",
        choices=("raw", "aiohttp"),
        help="serve's --transport, its client to the peer (default: serve's own default)",
    )
    parser.add_argument("--alone", metavar="URL", help=argparse.SUPPRESS)  # serve_alone's child
    args = parser.parse_args()
    if args.alone:
        print(json.dumps(serve_alone(args.alone, int(os.environ["BENCH_SERVE_PID"]), args.items)))
        return 0
    with tempfile.TemporaryDirectory() as tmp, _service(args.peer, args.transport) as svc:
        folder = Path(tmp)
        extension = _extension(folder)
        path = folder / "bench.json"
        path.write_text(json.dumps(workflow(svc.url, args.items)), encoding="utf-8")
        credentials = folder / "credentials.json"
        data = {"baseUrl": svc.url, "apiKey": KEY}
        ref = {"id": "waAuthServeApi00", "name": "wa-auth serve", "type": "waAuthApi"}
        credentials.write_text(json.dumps([{**ref, "data": data}]), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "N8N_"))}
        env.update(
            N8N_BIN=_n8n(),
            N8N_CREDENTIALS_FILE=str(credentials),
            N8N_CUSTOM_EXTENSIONS=str(extension),
        )
        with subprocess.Popen(
            ["bash", str(HERE / "run-workflow.sh"), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as proc:
            sampler = Sampler(svc.proc.pid, proc.pid)
            try:
                stdout, stderr = proc.communicate(timeout=1800)
            finally:
                sampler.stop()
        if proc.returncode != 0:
            try:
                failed = json.loads(stdout)["data"]["resultData"].get("lastNodeExecuted")
            except (ValueError, KeyError):
                failed = None
            print(f"n8n failed in node {failed!r}:", stderr[-2000:], file=sys.stderr)
            return 1
        # A process of its own, as n8n is: the sandbox peer runs in this one (and its GIL).
        alone = json.loads(
            subprocess.run(
                [sys.executable, __file__, "--items", str(args.items), "--alone", svc.url],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "BENCH_SERVE_PID": str(svc.proc.pid)},
            ).stdout
        )
    run_data = json.loads(stdout)["data"]["resultData"]["runData"]
    result = {"peer": args.peer, **report(run_data, args.items, sampler.samples, alone)}
    result["load_average"] = os.getloadavg()[0]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
