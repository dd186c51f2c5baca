"""A one-message `wa-auth send` imports only what it needs (the contract is the list, no timing).

Each test runs `python -X importtime -m wa_auth send ...` against the sandbox in a subprocess and
reads the modules the interpreter reports importing: one message over the stdlib transport
loads none of httpx, httpcore, h11, anyio, asyncio, aiohttp, `wa_auth._cli._serve`, the outbox
or the sandbox, nor what the cold start leaves for later (`LAZY`); `--transport httpx` is the
way back to httpx.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from running import TO, Run, env_for

#: What a one-message send must not import: the contract of issue 19.
FORBIDDEN = (
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "asyncio",
    "aiohttp",
    "wa_auth._cli._serve",
    "wa_auth.outbox",
    "wa_auth.sandbox",
)

#: What a one-message send leaves for later since the cold start was cut (each is created on
#: first use: `tests/test_lazy_imports.py`): the event classes, the other answers' models, the
#: refresh engine and the file provider, and the stdlib modules the version (importlib.metadata)
#: and argparse's help width (shutil) used to bring.
LAZY = (
    "wa_auth.events",
    "wa_auth._counters",
    "wa_auth._answers",
    "wa_auth.providers._file",
    "wa_auth.providers._refresh",
    "importlib.metadata",
    "shutil",
)


def _send(sandbox, *args: str) -> tuple[Run, set[str]]:
    """Run one send with `-X importtime`; its checked `Run` and the modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wa_auth", "send", "--to", TO, *args],
        capture_output=True,
        env=env_for(sandbox, sandbox.issue_token()),
        timeout=120,
        check=False,
    )
    stderr = proc.stderr.decode("utf-8")
    timings = [line for line in stderr.splitlines() if line.startswith("import time:")]
    rest = "\n".join(line for line in stderr.splitlines() if not line.startswith("import time:"))
    modules = {line.rsplit("|", 1)[1].strip() for line in timings[1:]}  # [0] is the header
    assert len(modules) > 10, stderr  # importtime did report
    return Run(proc.returncode, proc.stdout, rest), modules


def _loaded(modules: set[str], name: str) -> bool:
    return any(module == name or module.startswith(name + ".") for module in modules)


def test_one_message_imports_neither_httpx_nor_asyncio_nor_serve(wa_sandbox):
    """The default (stdlib) transport: delivered, and none of the forbidden modules loaded."""
    run, modules = _send(wa_sandbox, "--text", "hi")

    assert (run.code, run.line["state"]) == (0, "delivered")
    assert len(wa_sandbox.messages()) == 1
    assert [name for name in FORBIDDEN if _loaded(modules, name)] == []
    assert [name for name in LAZY if _loaded(modules, name)] == []
    assert "wa_auth._client._stdlib" in modules


@pytest.mark.parametrize(
    ("flags", "delivered"),
    [(("--template", "hello_world"), "template"), (("--text", "hi", "--rate", "5"), "text")],
    ids=["template", "paced"],
)
def test_other_one_message_sends_stay_as_light(wa_sandbox, flags, delivered):
    """A template, a paced send: the same list holds."""
    run, modules = _send(wa_sandbox, *flags)

    assert run.code == 0, run.stdout + run.stderr
    assert wa_sandbox.messages()[-1].type == delivered
    assert [name for name in FORBIDDEN if _loaded(modules, name)] == []
    assert [name for name in LAZY if _loaded(modules, name)] == []


def test_transport_httpx_opts_out(wa_sandbox):
    """`--transport httpx` sends the same message over httpx."""
    run, modules = _send(wa_sandbox, "--text", "hi", "--transport", "httpx")

    assert (run.code, run.line["state"]) == (0, "delivered")
    assert _loaded(modules, "httpx")
    assert "wa_auth._client._stdlib" not in modules
