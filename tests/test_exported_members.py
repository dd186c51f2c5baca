"""The public surface: one sorted `__all__`, every name resolves, lazy imports, the version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import wa_auth
from wa_auth import errors


def test_all_is_sorted_and_unique():
    """`__all__` is sorted and has no duplicates."""
    assert wa_auth.__all__ == sorted(wa_auth.__all__)
    assert len(set(wa_auth.__all__)) == len(wa_auth.__all__)


@pytest.mark.parametrize("name", wa_auth.__all__)
def test_every_name_resolves(name):
    """Every name of `__all__` resolves on the package."""
    assert getattr(wa_auth, name) is not None


def test_public_names_equal_all():
    """`dir(wa_auth)` lists every public name and `__all__` is exactly the public surface."""
    public = {n for n in dir(wa_auth) if not n.startswith("_")}

    assert set(wa_auth.__all__) - {"__version__"} <= public


def test_unknown_attribute_raises():
    """A name that is not exported raises AttributeError, not ImportError."""
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = wa_auth.nope


def test_version_matches_metadata():
    """`__version__` is the installed distribution's version."""
    assert wa_auth.__version__ == importlib.metadata.version("wa-auth")


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in wa_auth.__all__
        if isinstance(getattr(wa_auth, n), type) and issubclass(getattr(wa_auth, n), BaseException)
    ],
)
def test_exported_errors_live_in_wa_auth(name):
    """Exported errors say `wa_auth.X` in tracebacks, and are the same objects as in wa_auth.errors."""
    cls = getattr(wa_auth, name)

    assert cls.__module__ == "wa_auth"
    assert getattr(errors, name) is cls


def test_error_classes_with_wa_auth_module_are_exported():
    """An error class claiming `__module__ == "wa_auth"` must be reachable there (pickle needs it)."""
    claimed = [
        n
        for n, v in vars(errors).items()
        if isinstance(v, type) and issubclass(v, BaseException) and v.__module__ == "wa_auth"
    ]
    missing = [n for n in claimed if getattr(wa_auth, n, None) is not getattr(errors, n)]

    assert not missing, f"add to wa_auth.__all__ and _LAZY: {missing}"


def test_version_cli_does_not_import_httpx():
    """`python -m wa_auth --version` prints JSON and never imports httpx (checked via -X importtime)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wa_auth", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert importlib.metadata.version("wa-auth") in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not {
        m for m in imported if m.split(".")[0] in {"httpx", "httpcore", "anyio", "attrs"}
    }, sorted(imported)


def test_importing_the_package_is_lazy():
    """`import wa_auth` alone loads neither httpx nor the client."""
    code = "import sys, wa_auth; print(sorted(m for m in ('httpx', 'wa_auth._client', 'wa_auth.errors') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert out.stdout.strip() == "[]"


def test_init_is_generated_from_the_one_table():
    """`__init__.py`'s TYPE_CHECKING imports and `__all__` match `_exports.PUBLIC` (drift check)."""
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_init.py"
    out = subprocess.run(
        [sys.executable, str(script), "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", [n for n in wa_auth.__all__ if n != "__version__"])
def test_every_public_name_reports_wa_auth_as_its_module(name):
    """Tracebacks and pickles name `wa_auth.X` for every exported class and function."""
    value = getattr(wa_auth, name)
    assert value.__module__ == "wa_auth"


def test_a_submodule_import_already_reports_wa_auth():
    """Importing `wa_auth.guards` alone claims its names (no `wa_auth.X` access needed)."""
    code = "from wa_auth.guards import Guard; from wa_auth.events import Counters; print(Guard.__module__, Counters.__module__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["wa_auth", "wa_auth"]
