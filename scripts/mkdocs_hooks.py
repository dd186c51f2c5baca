# ruff: noqa: INP001 - a hook module that mkdocs loads by path, not an importable package
"""mkdocs hooks: the site is the repository's own layout, plus a reference page from docstrings.

The pages link each other as the repository does (`README.md` -> `docs/client.md`,
`docs/client.md` -> `../README.md#install`, `docs/performance.md` -> the benchmark chart), so
the site is built from the repository's paths instead of `docs/` alone: README.md is the home
page, CHANGELOG.md and `docs/*.md` are pages, and every other repository file that a page links
to is copied as it is. A link to a file that does not exist, or to a heading that does not,
then fails the strict build, exactly as it would be broken in a clone.

A page that mkdocs.yml's `nav` does not list yet is added at its end, so a new page is in the
site (and its links are checked) before anyone orders the navigation.

`docs/reference.md` exists only in the site: one mkdocstrings block for every name in
`wa_auth.__all__`, grouped by public module, and one for each public module from which
`wa_auth` re-exports nothing. mkdocstrings reads the sources (griffe), so a name in `__all__`
that nothing defines, or a docstring that names a parameter the signature does not have, fails
the build.
`AttrsInit` (a griffe extension, mkdocs.yml) gives attrs classes the signature attrs generates,
so their `Args:` sections are checked against it too.
"""

from __future__ import annotations

import inspect
import pkgutil
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import griffe
from mkdocs.structure.files import File, Files

if TYPE_CHECKING:
    import ast

    from mkdocs.config.defaults import MkDocsConfig

#: The repository's pages, by path from its root.
PAGES = ("README.md", "CHANGELOG.md", "docs/*.md")
#: The page that this hook writes.
REFERENCE = "docs/reference.md"
#: A Markdown link or image target, without its title or anchor.
_LINK = re.compile(r"\]\(([^)\s#]+)")
#: The private modules that define re-exported names, shown under the name users import.
_GROUPS = {
    "wa_auth._client": ("Clients", "wa_auth"),
}


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _file(config: MkDocsConfig, root: Path, path: str) -> File:
    return File(
        path,
        src_dir=str(root),
        dest_dir=config.site_dir,
        use_directory_urls=config.use_directory_urls,
    )


def _linked(root: Path, page: str) -> set[str]:
    """Return the repository files that *page* links to, other than pages themselves."""
    text = (root / page).read_text(encoding="utf-8")
    found: set[str] = set()
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.endswith(".md"):
            continue
        path = posixpath.normpath(posixpath.join(posixpath.dirname(page), target))
        # A missing file is left out here; mkdocs then reports the link as broken.
        if not path.startswith("../") and (root / path).is_file():
            found.add(path)
    return found


def reference() -> str:
    """Return the Markdown of the reference page: mkdocstrings blocks for the public names."""
    import wa_auth

    lazy: dict[str, str] = wa_auth._LAZY  # noqa: SLF001 - the lazy map says where each name lives
    exported = set(wa_auth.__all__)
    groups: dict[tuple[str, str], list[str]] = {}
    # In the lazy map's order, which is the public table's: clients first, then by module.
    for name, module in lazy.items():
        if name not in exported:
            continue
        title, public = _GROUPS.get(module, (f"`{module}`", module))
        groups.setdefault((title, public), []).append(name)
    out = [
        "# Reference",
        "",
        "Every name in `wa_auth.__all__`, with its full docstring and signature, read from the",
        "sources when the site is built; [the API page](api.md) lists the same names in one",
        "table. Import any of them from `wa_auth`.",
        "",
    ]
    for (title, public), names in groups.items():
        out += [f"## {title}", ""]
        for name in names:
            out += [f"::: {public}.{name}", ""]
    # The public modules (no underscore) from which `wa_auth` re-exports nothing, whole.
    shown = {public for _, public in groups}
    modules = [
        info.name
        for info in pkgutil.iter_modules(wa_auth.__path__, "wa_auth.")
        if not info.name.rpartition(".")[2].startswith("_") and info.name not in shown
    ]
    if modules:
        out += ["## Public modules", ""]
    for module in modules:
        out += [f"::: {module}", ""]
    return "\n".join(out)


def _pages(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for pattern in PAGES for path in root.glob(pattern))


def _listed(nav: object) -> set[str]:
    """Return the page paths that a `nav` value (strings, titled dicts, nested lists) names."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_listed(value) for value in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_listed(item) for item in nav))
    return set()


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Append the pages that `nav` does not list to its end."""
    if config.nav is not None:
        listed = _listed(config.nav)
        config.nav = [*config.nav, *(p for p in _pages(_root(config)) if p not in listed)]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Replace the files of `docs_dir` with the repository's pages and what they link to."""
    root = _root(config)
    docs_dir = Path(config.docs_dir).resolve()
    kept = [
        f for f in files if not (f.abs_src_path and Path(f.abs_src_path).is_relative_to(docs_dir))
    ]
    pages = _pages(root)
    linked = sorted(set().union(*(_linked(root, page) for page in pages)))
    new = [_file(config, root, path) for path in [*pages, *linked]]
    new.append(File.generated(config, REFERENCE, content=reference()))
    return Files([*kept, *new])


class AttrsInit(griffe.Extension):
    """Give each attrs class the `__init__` that attrs generates, read from the class itself.

    griffe reads sources, where an attrs class has fields but no `__init__`; without one, every
    name in the class's `Args:` section "does not appear in the signature". The generated
    signature is the real one: private fields lose their underscore, `init=False` fields are
    absent, `kw_only` holds.
    """

    def on_class_members(
        self,
        *,
        node: ast.AST | griffe.ObjectNode,
        cls: griffe.Class,
        **kwargs: Any,  # noqa: ARG002 - griffe passes the agent too
    ) -> None:
        """Add the generated `__init__` to *cls* when it is an attrs class without its own."""
        if isinstance(node, griffe.ObjectNode) or "__init__" in cls.members:
            return
        try:
            runtime = griffe.dynamic_import(cls.path)
        except ImportError:
            return
        if not (isinstance(runtime, type) and attrs.has(runtime)):
            return
        parameters = [
            griffe.Parameter(
                param.name,
                annotation=param.annotation if isinstance(param.annotation, str) else None,
                kind=griffe.ParameterKind[param.kind.name.lower()],
                default=_default(param.default),
            )
            for param in inspect.signature(runtime.__init__).parameters.values()
        ]
        init = griffe.Function(
            "__init__",
            lineno=cls.lineno,
            endlineno=cls.lineno,
            parent=cls,
            parameters=griffe.Parameters(*parameters),
            returns="None",
        )
        cls.set_member("__init__", init)


def _default(value: object) -> str | None:
    if value is inspect.Parameter.empty:
        return None
    if value is attrs.NOTHING:  # a factory default: attrs builds it per instance
        return "<factory>"
    return repr(value)
