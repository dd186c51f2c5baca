"""A/B of serve's HTTP lane: `serve.cpu`'s load, variants alternated in one run (issue 19).

    PYTHONPATH=$PWD/src python benchmarks/prototypes/serve_lane_ab.py N ROUNDS VARIANT...

A variant is `inproc` (the row's baseline, the guarded client in process) or
`NAME:SRC[:ARGS][:proto]`: a service run from the source tree SRC (its `src` on PYTHONPATH)
with the extra serve ARGS (`,`-separated, e.g. `--http,aiohttp`), driven by the bench's own
callers (`_Caller`), or by a caller on `asyncio.Protocol` when the last field is `proto`.
Each round runs every variant once, the order reversed every other round; the medians of the
service's own CPU per item (`serve_cpu_us_per_msg`) and the row's (service and callers) are
printed. Not a row of `benchmarks/run.py`: the rows are unchanged.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cases.serve as S  # noqa: N812 - short: the module's privates are used throughout
from peer import NginxPeer


class ProtoCaller:
    """The bench's `_Caller` on `asyncio.Protocol`: one request out, one answer read."""

    def __init__(self, port: int, body: bytes, intents: int = 1) -> None:
        self.port = port
        self.intents = intents
        head = (
            "POST /send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {S.KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.request = head.encode() + body
        self.transport: asyncio.Transport | None = None
        self.proto: _Reader | None = None

    async def send(self) -> None:
        if self.transport is None:
            loop = asyncio.get_running_loop()
            self.transport, self.proto = await loop.create_connection(
                _Reader, "127.0.0.1", self.port
            )
        assert self.proto is not None
        waiter = self.proto.expect()
        self.transport.write(self.request)
        body = await waiter
        if body.count(b'"delivered"') < self.intents:
            raise RuntimeError(f"not delivered: {body[:300]!r}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Reader(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.waiter: asyncio.Future[bytes] | None = None

    def expect(self) -> asyncio.Future[bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end]
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"serve answered {head[:40]!r}")
        at = head.lower().index(b"content-length:") + 15
        size = end + 4 + int(head[at : head.index(b"\r\n", at) if b"\r\n" in head[at:] else None])
        if len(self.buf) >= size and self.waiter is not None:
            body, self.buf = self.buf[end + 4 : size], self.buf[size:]
            self.waiter.set_result(body)
            self.waiter = None


def _variant(spec: str) -> tuple[str, str, list[str], bool]:
    name, src, *rest = spec.split(":")
    args = [a for a in rest[0].split(",") if a] if rest else []
    return name, src, args, bool(rest[1:] and rest[1] == "proto")


def main() -> None:
    n, rounds, variants = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    serve: dict[str, list[float]] = {v: [] for v in variants}
    total: dict[str, list[float]] = {v: [] for v in variants}
    env0 = S._env
    popen = subprocess.Popen
    caller0 = S._Caller
    with NginxPeer() as peer:
        ctx: Any = types.SimpleNamespace(
            base_url=peer.base_url,
            phone_id="1234567890",
            api_version="v21.0",
            to="15551234567",
            concurrency=16,
            n=n,
            expired_phone_id="x",
        )
        for r in range(rounds):
            for v in variants if r % 2 == 0 else variants[::-1]:
                if v == "inproc":
                    out = asyncio.run(S._inprocess(ctx))
                    serve[v].append(out["cpu_us_per_msg"])
                    total[v].append(out["cpu_us_per_msg"])
                    continue
                _, src, args, proto = _variant(v)
                path = str(Path(src) / "src")
                S._env = lambda c, p=path: {**env0(c), "PYTHONPATH": p}  # type: ignore[misc]

                def spawn(cmd: list[str], *a: Any, extra: list[str] = args, **k: Any) -> Any:
                    return popen([*cmd, *extra], *a, **k)

                S.subprocess = types.SimpleNamespace(  # type: ignore[assignment]
                    Popen=spawn, PIPE=subprocess.PIPE, DEVNULL=subprocess.DEVNULL
                )
                S._Caller = ProtoCaller if proto else caller0  # type: ignore[misc]
                svc = S._Service(ctx, 16)
                try:
                    out = asyncio.run(S._drive_service(ctx, svc, n, 16))
                finally:
                    svc.close()
                serve[v].append(out["serve_cpu_us_per_msg"])
                total[v].append(out["cpu_us_per_msg"])
            print(f"round {r + 1}/{rounds} done (load {os.getloadavg()[0]:.1f})", flush=True)
    base = statistics.median(total["inproc"]) if "inproc" in total else None
    for v in variants:
        s, t = statistics.median(serve[v]), statistics.median(total[v])
        ratio = f"  row {t / base:.2f}x" if base and v != "inproc" else ""
        runs = [round(x) for x in total[v]]
        print(f"{v:55s} service {s:6.1f} us  row {t:6.1f} us{ratio}  runs {runs}")


if __name__ == "__main__":
    main()
