"""The package's import graph: no cycle, and no import against the layers of ARCHITECTURE.md.

The graph is read from the source, not from `sys.modules`: the `ast` of every module of
`src/wa_auth`, with every import counted (`TYPE_CHECKING` ones, and those inside functions,
too), because an import under `TYPE_CHECKING` still decides what must be read, and changed,
first. The layer order is the text block under "## The layers" of `docs/ARCHITECTURE.md`, read
here as data, so the page and this test cannot drift.

How an import counts:

- `from p import m` where `p.m` is a module is an import of `p.m`; of `p` otherwise.
- Importing `p.m` runs `p/__init__.py` first: from a module outside `p`, it is an import of `p`
  too. The root `wa_auth/__init__.py` is the exception: at run time it imports only
  `_exports` (every public name loads on first use), so running it imports nothing else.
- A package's `__init__` is the top of its package: no module inside `p` imports `p` itself
  (only `p/__main__.py`, the entry point above it, may).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "wa_auth"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGE = "wa_auth"


# --- reading the source ---------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its `__init__`)."""
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _ancestors(name: str) -> list[str]:
    """`wa_auth.a.b.c` -> [`wa_auth.a.b`, `wa_auth.a`, `wa_auth`]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _named(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules of the package that one import statement names."""
    known = modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if node.level:
        base = importer.split(".")
        if not _is_package(importer):
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in known else target)
    return found


def _owner(name: str) -> str:
    """The module a dotted name lives in: itself, or the nearest enclosing module."""
    known = modules()
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the modules of the package it imports (see the module docstring)."""
    edges: dict[str, frozenset[str]] = {}
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for named in _named(name, node):
                target = _owner(named)
                found.add(target)
                # Python runs each enclosing package's __init__ first; the importer's own
                # packages are already running (or done), and the root's runs nothing.
                mine = set(_ancestors(name))
                found.update(a for a in _ancestors(target) if a != PACKAGE and a not in mine)
        found.discard(name)
        edges[name] = frozenset(found)
    return edges


# --- reading the layers ---------------------------------------------------------------------


@cache
def layers() -> list[tuple[str, tuple[str, ...]]]:
    """The layers of ARCHITECTURE.md, bottom first: (name, the entries of that layer)."""
    text = DOC.read_text(encoding="utf-8")
    section = re.search(r"^## The layers\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section, f"{DOC.name} has no '## The layers' section"
    block = re.search(r"^```text\n(.*?)^```", section.group(1), re.MULTILINE | re.DOTALL)
    assert block, "the layers section has no ```text block"
    found: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = line.split()
        if line[0].isspace():  # a continuation of the layer above
            found[-1][1].extend(words)
        else:
            found.append((words[0], words[1:]))
    return [
        (layer, tuple(w if w == PACKAGE else f"{PACKAGE}.{w}" for w in entries))
        for layer, entries in found
    ]


@cache
def entries() -> dict[str, int]:
    """Each entry of the layers (a module, or a package with all it holds) -> its layer's index."""
    found: dict[str, int] = {}
    for index, (_, names) in enumerate(layers()):
        for entry in names:
            assert entry not in found, f"{entry} is in two layers"
            found[entry] = index
    return found


def layer_of(module: str) -> int | None:
    """The layer of *module*: that of the longest entry that names it or a package around it.

    The root's entry places the root `__init__` alone: a module no other entry names has none.
    """
    for name in (module, *_ancestors(module)[:-1]):
        if name in entries():
            return entries()[name]
    return None


def _layer_name(index: int | None) -> str:
    return "no layer" if index is None else layers()[index][0]


# --- the rules ------------------------------------------------------------------------------


def _cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_read():
    """The reader sees the package: its modules, and imports of each kind."""
    edges = graph()
    assert len(edges) > 50
    assert "wa_auth._table" in edges["wa_auth.errors"]
    # `from wa_auth import _table` names the module, not the root package.
    assert all(PACKAGE not in targets for targets in edges.values())


def test_no_import_cycle():
    """No module reaches itself through its imports, `TYPE_CHECKING` imports included."""
    cycles = _cycles(graph())
    assert cycles == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_module_has_a_layer():
    """Each module of the package falls under an entry of the layers."""
    missing = [m for m in modules() if layer_of(m) is None]
    assert missing == [], f"not in any layer of {DOC.name}: {missing}"


def test_every_entry_names_a_module():
    """Each entry of the layers names a module or package that exists (no stale name)."""
    stale = [e for e in entries() if e not in modules()]
    assert stale == [], f"{DOC.name} names modules that do not exist: {stale}"


def test_no_upward_import():
    """A module imports only from its own layer and the layers below it."""
    upward = [
        f"{importer} ({_layer_name(layer_of(importer))}) imports {target} "
        f"({_layer_name(layer_of(target))})"
        for importer, targets in sorted(graph().items())
        for target in sorted(targets)
        if (mine := layer_of(importer)) is not None
        and (theirs := layer_of(target)) is not None
        and theirs > mine
    ]
    assert upward == [], "imports against the layers:\n" + "\n".join(upward)


def test_a_package_init_is_the_top_of_its_package():
    """No module inside a package imports that package's own `__init__` (its re-exports)."""
    inward = [
        f"{importer} imports {target}"
        for importer, targets in sorted(graph().items())
        for target in sorted(targets)
        if _is_package(target)
        and importer.startswith(f"{target}.")
        and importer != f"{target}.__main__"
    ]
    assert inward == [], "imports of a package's top from inside it:\n" + "\n".join(inward)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from wa_auth import _table", {"wa_auth._table"}),
        ("from wa_auth.guards import Guard", {"wa_auth.guards"}),
        ("import wa_auth.sandbox._values", {"wa_auth.sandbox._values", "wa_auth.sandbox"}),
        (
            "from wa_auth.providers._base import as_provider",
            {"wa_auth.providers._base", "wa_auth.providers"},
        ),
        ("from . import _table", {"wa_auth._table"}),
    ],
    ids=["root-module", "package", "dotted-import", "from-submodule", "relative"],
)
def test_how_an_import_counts(source, expected):
    """An import names the module it imports, and the packages whose `__init__` it runs."""
    node = ast.parse(source).body[0]
    assert isinstance(node, (ast.Import, ast.ImportFrom))
    # As seen from a top-level module of the package (`wa_auth._version`): no enclosing package
    # of its own but the root.
    found: set[str] = set()
    for target in _named("wa_auth._version", node):
        owner = _owner(target)
        found.add(owner)
        found.update(a for a in _ancestors(owner) if a != PACKAGE)
    assert found == expected


def test_the_cycle_finder_finds_a_cycle():
    """The rule itself: a two-module cycle and a three-module one are both reported."""
    edges = {
        "a": frozenset({"b"}),
        "b": frozenset({"a"}),
        "c": frozenset({"d"}),
        "d": frozenset({"e"}),
        "e": frozenset({"c"}),
        "f": frozenset({"a"}),
    }
    assert sorted(_cycles(edges)) == [["a", "b"], ["c", "d", "e"]]
