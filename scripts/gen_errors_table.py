# ruff: noqa: INP001 - a script run from the repository, not an importable package
"""Generate the table of `wa_auth._table` rows inside `docs/errors.md`.

Usage:
    python scripts/gen_errors_table.py          # rewrite the table between the markers
    python scripts/gen_errors_table.py --check  # exit 1 if the doc is out of date

The table sits between `<!-- table:start -->` and `<!-- table:end -->`; everything else in the
page is hand-written. `tests/errors/test_table_docs.py` runs the check.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from wa_auth import _table

START = "<!-- table:start -->"
END = "<!-- table:end -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"

_HEADER = (
    "| rule | category | code | subcode | message contains | HTTP | attempts | retry after | "
    "ambiguous | meaning | operator action |"
)
_RULE = "|---|---|---|---|---|---|---|---|---|---|---|"


def _ranges(values: Iterable[int]) -> str:
    """Return `200-299, 341` style text (with en dashes) for a tuple of integers."""
    out: list[str] = []
    items = sorted(values)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if j - i < 2 else f"{items[i]}–{items[j]}")  # noqa: RUF001
        if 0 < j - i < 2:
            out.extend(str(v) for v in items[i + 1 : j + 1])
        i = j + 1
    return ", ".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"  # noqa: RUF001
    if value >= 3600 and value % 3600 == 0:
        return f"{int(value // 3600)} h"
    if value >= 60 and value % 60 == 0:
        return f"{int(value // 60)} min"
    return f"{value:g} s"


def _row(rule: _table.Rule) -> str:
    dash = "–"  # noqa: RUF001
    cells = [
        f"`{rule.id}`",
        f"`{rule.category}`",
        _ranges(rule.codes) or ", ".join(f"`{n}`" for n in rule.names) or dash,
        _ranges(rule.subcodes) if rule.subcodes else dash,
        "; ".join(f'"{m}"' for m in rule.messages) or dash,
        _ranges(rule.http_statuses) + (" (and any 5xx)" if rule.id == "http:5xx" else "")
        if rule.http_statuses
        else dash,
        str(rule.max_attempts),
        _seconds(rule.retry_after),
        "yes" if rule.ambiguous else "no",
        rule.title,
        rule.operator_action,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def all_rules() -> Sequence[_table.Rule]:
    """Return every row of the table in match order, then the fallbacks."""
    return (
        *_table.RULES,
        *_table.STATUS_RULES,
        _table.TRANSIENT_FLAG_RULE,
        _table.TRANSPORT_RULE,
        _table.VALIDATION_RULE,
        _table.UNKNOWN_RULE,
    )


def render_table() -> str:
    """Return the Markdown table of every rule, with the markers around it."""
    lines = [START, _HEADER, _RULE, *(_row(r) for r in all_rules()), END]
    return "\n".join(lines)


def replace_table(doc: str) -> str:
    """Return *doc* with the text between the markers replaced by a fresh table."""
    head, sep, rest = doc.partition(START)
    if not sep or END not in rest:
        raise ValueError(f"{DOC} has no {START} ... {END} markers")
    _, _, tail = rest.partition(END)
    return head + render_table() + tail


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the table in docs/errors.md, or with `--check` report whether it is current."""
    args = list(sys.argv[1:] if argv is None else argv)
    current = DOC.read_text(encoding="utf-8")
    fresh = replace_table(current)
    if "--check" in args:
        if fresh != current:
            sys.stderr.write(f"{DOC} is out of date; run: python scripts/gen_errors_table.py\n")
            return 1
        return 0
    DOC.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
