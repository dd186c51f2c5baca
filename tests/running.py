"""Running the `wa-auth` CLI as a real process, importable as `running` (`pythonpath = ["tests"]`).

The CLI's tests (`test_cli*.py`, `test_serve*.py`, the n8n runs) share these: the schema every
line the CLI prints must match, the intents they feed it, the environment that points it at a
sandbox, and `cli()`, which runs one command and checks what it printed. No test module imports
another test module for them (`test_layout.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
#: docs/wa-auth.schema.json: every line the CLI and `wa-auth serve` print, and every answer.
SCHEMA = json.loads((ROOT / "docs" / "wa-auth.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
#: The recipient of the tests' intents.
TO = "+15551234567"


def valid(obj: Any) -> Any:
    """Return *obj* after validating it against the schema."""
    VALIDATOR.validate(obj)
    return obj


def validate_lines(text: str) -> list[dict[str, Any]]:
    """Parse every non-blank line of *text* as JSON, validate it and return them all."""
    return [valid(json.loads(raw)) for raw in text.splitlines() if raw.strip()]


def text_intent(body: str = "hi", **fields: Any) -> dict[str, Any]:
    """A text intent to `TO` as a JSON object; *fields* add or replace fields (`to`, a key)."""
    return {"to": TO, "type": "text", "text": {"body": body}, **fields}


def intent(body: str = "hi", **fields: Any) -> str:
    """`text_intent` as one JSON line, the way the CLI reads it."""
    return json.dumps(text_intent(body, **fields))


def env_for(sandbox: Any | None, token: str | None = None, **extra: str | None) -> dict[str, str]:
    """This process's environment without `WA_*`/`VAULT_*`, pointed at *sandbox*.

    *token* becomes `WA_ACCESS_TOKEN`; *extra* adds variables, and one set to None is left out.
    Without a sandbox (another peer), *extra* names `WA_BASE_URL` and `WA_PHONE_NUMBER_ID`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "VAULT_"))}
    if sandbox is not None:
        env.update(WA_BASE_URL=sandbox.base_url, WA_PHONE_NUMBER_ID=sandbox.phone_number_id)
    if token is not None:
        env["WA_ACCESS_TOKEN"] = token
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


class Run:
    """A finished CLI process: its exit code, and the lines it printed, each schema-valid.

    What it printed must be strict UTF-8 with no traceback and no line of category `internal`
    (a bug): a test expecting one of those reads the process itself.
    """

    def __init__(self, code: int, stdout: bytes | str, stderr: bytes | str) -> None:
        self.code = code
        self.stdout = stdout.decode("utf-8") if isinstance(stdout, bytes) else stdout
        self.stderr = stderr.decode("utf-8") if isinstance(stderr, bytes) else stderr
        assert "Traceback" not in self.stderr, self.stderr
        self.lines = validate_lines(self.stdout)
        self.err_lines = validate_lines(self.stderr)
        assert all(line.get("category") != "internal" for line in self.lines + self.err_lines), (
            self.stdout + self.stderr
        )

    @classmethod
    def of(cls, proc: subprocess.CompletedProcess[Any]) -> Run:
        """The `Run` of a process that `subprocess.run` finished."""
        return cls(proc.returncode, proc.stdout, proc.stderr)

    @property
    def line(self) -> dict[str, Any]:
        """The one line on stdout (a run that printed another number fails)."""
        assert len(self.lines) == 1, self.stdout
        return self.lines[0]

    @property
    def end(self) -> dict[str, Any]:
        """The last line on stderr: a batch's end line, with its exit code and summary."""
        return self.err_lines[-1]

    @property
    def summary(self) -> dict[str, Any]:
        """The summary of the end line: counts by state, seconds, interrupted."""
        summary: dict[str, Any] = self.end["summary"]
        return summary


def cli(*args: str, env: dict[str, str], stdin: str | bytes = "", timeout: float = 120) -> Run:
    """Run `python -m wa_auth ARGS` with *stdin* and return its checked `Run`."""
    proc = subprocess.run(
        [sys.executable, "-m", "wa_auth", *args],
        input=stdin.encode("utf-8") if isinstance(stdin, str) else stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return Run.of(proc)
