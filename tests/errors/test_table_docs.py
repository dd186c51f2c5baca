"""`docs/errors.md` agrees with `wa_auth.errors` and is regenerated from `wa_auth._table`."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from wa_auth import _table, errors

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "errors.md"
REGENERATE = "python scripts/gen_errors_table.py"

_spec = importlib.util.spec_from_file_location(
    "gen_errors_table", ROOT / "scripts" / "gen_errors_table.py"
)
assert _spec is not None
assert _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

_TREE_RE = re.compile(r"```\n(WhatsAppError\n.*?)```", re.DOTALL)
_ISSUE_CLASSES = (
    "WhatsAppError",
    "ApiError",
    "AuthError",
    "TokenExpiredError",
    "TokenRevokedError",
    "InsufficientPermissionError",
    "AccountStateError",
    "RateLimitError",
    "TransientError",
    "TransportError",
    "InvalidRequestError",
    "RequestValidationError",
    "UnknownApiError",
    "TokenUnavailableError",
    "WebhookSignatureError",
)


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _tree(text: str) -> str:
    m = _TREE_RE.search(text)
    assert m, "no exception tree in a ``` block starting with WhatsAppError"
    return m.group(1)


def _tree_classes() -> list[str]:
    return re.findall(r"^[\s│├└─]*([A-Z]\w+)", _tree(errors.__doc__ or ""), re.MULTILINE)


def test_table_is_current():
    """The table between the markers equals a fresh rendering of `_table`."""
    current = _doc()
    fresh = gen.replace_table(current)

    assert fresh == current, (
        f"docs/errors.md is out of date with wa_auth/_table.py; run: {REGENERATE}"
    )


def test_check_mode_agrees(capsys):
    """`gen_errors_table.py --check` exits 0 on the committed doc."""
    assert gen.main(["--check"]) == 0, capsys.readouterr().err


def test_check_mode_fails_on_a_stale_doc(tmp_path, monkeypatch, capsys):
    """`--check` exits 1 and says how to regenerate when a row changed."""
    stale = tmp_path / "errors.md"
    stale.write_text(_doc().replace("`131031`", "`131030`", 1), encoding="utf-8")
    monkeypatch.setattr(gen, "DOC", stale)

    assert gen.main(["--check"]) == 1
    assert REGENERATE in capsys.readouterr().err


def test_replace_table_needs_markers():
    """A doc without the markers is an error, not a silent append."""
    with pytest.raises(ValueError, match="markers"):
        gen.replace_table("# Errors\n")


def test_doc_starts_with_the_tree_of_errors_py():
    """The first block of the doc is the exception tree of the errors.py docstring."""
    doc = _doc()

    assert doc.index("```") < doc.index("## ")
    assert _tree(errors.__doc__ or "") == _tree(doc)


def test_tree_holds_the_issue_classes():
    """The drawn tree names every class the issue fixes."""
    assert set(_ISSUE_CLASSES) <= set(_tree_classes())


@pytest.mark.parametrize("name", _tree_classes())
def test_one_entry_per_class(name):
    """Every class of the tree has its own `### Name` entry, and the class exists."""
    assert f"\n### {name}\n" in _doc()
    assert issubclass(getattr(errors, name), errors.WhatsAppError)


@pytest.mark.parametrize("rule", gen.all_rules(), ids=lambda r: r.id)
def test_every_rule_in_the_table(rule):
    """Every rule (table rows and fallbacks) has a line in the doc table."""
    assert f"| `{rule.id}` | `{rule.category}` |" in _doc()


def test_rows_render_ranges_compactly():
    """The 200-299 row shows a range, not a hundred codes."""
    row = next(r for r in _table.RULES if r.id == "200-299")

    assert "| 200–299 |" in gen._row(row)
    assert gen._ranges((4, 1, 2)) == "1, 2, 4"
    assert gen._ranges((131052, 131053)) == "131052, 131053"
    assert gen._ranges((1, 2, 3)) == "1–3"


def test_business_use_case_block_renders_as_two_ranges():
    """The 8000x row shows two ranges, leaving 80007 and 80008 to their own row."""
    row = next(r for r in _table.RULES if r.id == "8000x")

    assert "| 80000–80006, 80009–80014 |" in gen._row(row)
    assert {80007, 80008}.isdisjoint(row.codes)


def test_pipes_in_cells_are_escaped():
    """A '|' inside a cell cannot break the table."""
    assert gen._cell("a | b") == "a \\| b"
