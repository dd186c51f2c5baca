"""Run every Python block of README.md and docs/*.md as a test, with Sybil (issue #9).

The blocks of one document run in order and share one namespace, so a page reads like one
session at the prompt. Before a document's first block, the namespace gets:

- `sandbox`: a running `wa_auth.sandbox.Sandbox` (seed 0, frozen clock), of this document
  alone, closed after its last block;
- `secrets`: an empty temporary directory, standing in for `/run/secrets`, removed after.

Each page says so in one sentence. A block that cannot run offline is preceded by
`<!-- skip: next "why" -->` and says why in the visible text too. `tests/test_docs.py` checks
that no Python block escapes collection and runs the examples.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser


def _setup(namespace: dict[str, Any]) -> None:
    from wa_auth.sandbox import Sandbox

    namespace["sandbox"] = Sandbox(seed=0, freeze_clock=True).start()
    namespace["secrets"] = Path(tempfile.mkdtemp(prefix="wa-auth-docs-"))


def _teardown(namespace: dict[str, Any]) -> None:
    namespace["sandbox"].close()
    shutil.rmtree(namespace["secrets"], ignore_errors=True)


#: The parsers and hooks, shared with `tests/test_docs.py`, which counts what they collect.
DOCS = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
)

pytest_collect_file = DOCS.pytest()
