"""Case tables shared by the sync and the async tests of one behaviour.

Each table is a list of `NamedTuple` rows with named fields, importable as `cases.<module>`
because `[tool.pytest.ini_options] pythonpath` puts `tests/` on `sys.path`. A test module
never loads another test module to reach its tables.
"""

from __future__ import annotations

from typing import Protocol


class _Case(Protocol):
    @property
    def id(self) -> str: ...


def case_id(case: _Case) -> str:
    """The pytest id of a row: its `id` field (`parametrize(..., ids=case_id)`)."""
    return case.id
