"""The test suite's own layout: test modules share code only through modules made for sharing.

What tests share lives in `tests/helpers.py` (assertions, the fake clock, the Graph-error
builder), `tests/running.py` (the CLI runner), `tests/serving.py` (a `wa-auth serve` process),
`tests/cases/` (case and scenario tables) and `tests/conftest.py` (fixtures). A test module that
imports another test module runs that module's tests' imports and fixtures twice and ties the
two together, so it never does; nor does a test module keep a fake clock of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TEST_MODULES = sorted(p for p in TESTS.rglob("test_*.py") if "node_modules" not in p.parts)


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module *tree* imports, with its line: import statements anywhere, import_module,
    and the file a `spec_from_file_location` loads."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from tests import test_x` and `from cases import ...` name modules too.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # a relative import: `from . import test_x`
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in {"import_module", "__import__", "spec_from_file_location"}:
                found += [
                    (node.lineno, Path(arg.value).stem if "/" in arg.value else arg.value)
                    for arg in node.args
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                ]
    return found


def _test_module(name: str) -> str | None:
    """The suite's test module that the dotted *name* is, or is in; None for another module.

    Only the suite's own names count: `aiohttp.test_utils` is another package's module.
    """
    top = name.split(".", 1)[0]
    if top != "tests" and not top.startswith("test_"):
        return None
    return next((part for part in name.split(".") if part.startswith("test_")), None)


def test_the_suite_has_its_test_modules():
    """The walk finds the suite (a guard against a check that passes on nothing)."""
    names = {p.name for p in TEST_MODULES}
    assert {"test_layout.py", "test_serve.py", "test_cli.py", "test_guard_policy.py"} <= names


def _trees() -> list[tuple[str, ast.AST]]:
    return [
        (str(path.relative_to(TESTS)), ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for path in TEST_MODULES
    ]


def test_no_test_module_imports_another():
    """A test module imports no test module: shared code lives in a module made for sharing."""
    offending = sorted(
        {
            f"{path}:{line}: {_test_module(name)}"
            for path, tree in _trees()
            for line, name in _imported(tree)
            if _test_module(name)
        }
    )
    assert offending == [], "test modules that import a test module"


def test_no_test_module_defines_its_own_clock():
    """The one fake clock is `helpers.Clock`; no test module defines another."""
    clocks = [
        f"{path}:{node.lineno}: class {node.name}"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name.endswith("Clock")
    ]
    assert clocks == [], "use helpers.Clock"


@pytest.mark.parametrize(
    ("source", "imported"),
    [
        ("import test_cli", True),
        ("from test_serve import KEY", True),
        ("from tests import test_cli", True),
        ("from . import test_cli", True),
        ("def f():\n    import test_cli_n8n", True),
        ("importlib.import_module('test_serve')", True),
        ("importlib.util.spec_from_file_location('x', 'tests/test_serve.py')", True),
        ("from helpers import raised", False),
        ("from cases.n8n import Scenario", False),
        ("from serving import serving", False),
        ("from wa_auth.testing import sandbox", False),
        ("from aiohttp.test_utils import make_mocked_request", False),
        ("spec_from_file_location('wa_auth_storms', SCRIPT)", False),
    ],
    ids=[
        "import",
        "from-import",
        "package-import",
        "relative-import",
        "nested-import",
        "import-module",
        "spec-from-file",
        "helpers",
        "cases",
        "serving",
        "library",
        "another-package",
        "script",
    ],
)
def test_the_check_sees_every_form_of_import(source, imported):
    """The check catches an import of a test module in every form, and nothing else."""
    found = [name for _, name in _imported(ast.parse(source))]
    assert any(_test_module(name) for name in found) is imported, found
