"""The CLI's exit codes: one per error category of `wa_auth._table`, and a batch's severity order.

The numbers are a public, stable contract (docs/cli.md, docs/n8n.md, the JSON Schema): scripts
and n8n workflows branch on them. Each category of the error table has its code here; a new
category without one fails at import (and `tests/test_cli.py` checks the docs and the schema
against this module), so the table, the codes and the schema cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from wa_auth import _table

OK: Final = 0
INTERNAL: Final = 1
USAGE: Final = 2
#: `check --warn-days N`: the token is valid but expires within N days.
EXPIRING: Final = 12
#: An intent handed to the outbox for later: nothing failed for good.
QUEUED: Final = 14

#: The CLI's own categories, for errors that are not Meta's: bad arguments or configuration,
#: and a bug in wa_auth.
USAGE_CATEGORY: Final = "usage"
INTERNAL_CATEGORY: Final = "internal"

#: The exit code of each error category (every category of `_table.CATEGORIES`).
BY_CATEGORY: Final[dict[str, int]] = {
    _table.TOKEN_EXPIRED: 3,
    _table.TOKEN_REVOKED: 4,
    _table.INSUFFICIENT_PERMISSION: 5,
    _table.ACCOUNT_STATE: 6,
    _table.RATE_LIMITED: 7,
    _table.TRANSIENT: 8,
    _table.INVALID_REQUEST: 9,
    _table.TOKEN_UNAVAILABLE: 10,
    _table.UNKNOWN: 11,
    _table.INVALID_SIGNATURE: 13,
    USAGE_CATEGORY: USAGE,
    INTERNAL_CATEGORY: INTERNAL,
}

if set(BY_CATEGORY) != {*_table.CATEGORIES, USAGE_CATEGORY, INTERNAL_CATEGORY}:
    # Raised at import, so a category added to the table without an exit code fails every test.
    raise RuntimeError("wa_auth._cli._codes.BY_CATEGORY must give every _table category a code")

#: Every exit code with its name, in numeric order (the docs table and the schema's enum).
NAMES: Final[dict[int, str]] = dict(
    sorted(
        {
            OK: "ok",
            EXPIRING: "expiring",
            QUEUED: "queued",
            **{code: category for category, code in BY_CATEGORY.items()},
        }.items()
    )
)

#: A batch exits with its most severe line's code; the first here is the most severe. A lost
#: account or token stops every later send, so it outranks a single bad line. The CLI's own
#: failures (internal, usage) end the run before any line and outrank everything.
SEVERITY: Final[tuple[int, ...]] = (
    INTERNAL,
    USAGE,
    BY_CATEGORY[_table.ACCOUNT_STATE],
    BY_CATEGORY[_table.TOKEN_REVOKED],
    BY_CATEGORY[_table.TOKEN_EXPIRED],
    BY_CATEGORY[_table.INSUFFICIENT_PERMISSION],
    BY_CATEGORY[_table.TOKEN_UNAVAILABLE],
    BY_CATEGORY[_table.UNKNOWN],
    BY_CATEGORY[_table.INVALID_SIGNATURE],
    BY_CATEGORY[_table.TRANSIENT],
    BY_CATEGORY[_table.RATE_LIMITED],
    QUEUED,
    BY_CATEGORY[_table.INVALID_REQUEST],
    EXPIRING,
    OK,
)

_RANK: Final = {code: rank for rank, code in enumerate(SEVERITY)}


def for_category(category: str | None) -> int:
    """Return the exit code of an error *category* (`unknown`'s for one the CLI does not know)."""
    if category is None:
        return OK
    return BY_CATEGORY.get(category, BY_CATEGORY[_table.UNKNOWN])


def most_severe(codes: Iterable[int]) -> int:
    """Return the most severe of *codes* by `SEVERITY` (0 for none)."""
    return min(codes, key=lambda c: _RANK.get(c, 0), default=OK)
