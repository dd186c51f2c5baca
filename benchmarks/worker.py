"""Run one benchmark variant in this (fresh) process and print its figures as one JSON line.

Usage: python benchmarks/worker.py NAME --base-url URL --n N --concurrency C
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import sys
import traceback
from typing import Any

from peer import API_VERSION, EXPIRED_PHONE_ID, PHONE_ID
from registry import Ctx, discover


def run(name: str, ctx: Ctx) -> dict[str, Any]:
    """Run the variant *name* and return its figures, or why it could not run."""
    registry = discover()
    v = registry[name]
    for module in v.requires:
        try:
            importlib.import_module(module)
        except Exception as exc:
            return {"status": "unavailable", "reason": f"cannot import {module}: {exc}"}
    gc.collect()
    try:
        figures = v.fn(ctx)
    except LookupError as exc:  # an optional provider that does not exist (yet)
        return {"status": "unavailable", "reason": str(exc)}
    except Exception as exc:
        return {
            "status": "error",
            "reason": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
        }
    return {"status": "ok", **figures}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the variant, print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("name")
    p.add_argument("--base-url", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=1)
    args = p.parse_args(argv)
    ctx = Ctx(
        base_url=args.base_url,
        n=args.n,
        concurrency=args.concurrency,
        phone_id=PHONE_ID,
        expired_phone_id=EXPIRED_PHONE_ID,
        api_version=API_VERSION,
    )
    result = run(args.name, ctx)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
