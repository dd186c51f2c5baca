"""`SqlitePauseStore`: paused numbers and open circuits in a state file, for every process."""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable
from typing import Any, Final

from wa_auth._sqlite import dumps, loads_object
from wa_auth.pacing import Pause
from wa_auth.state._base import NUMBER, StateBase, delete, state_file, typed

__all__ = ["SqlitePauseStore", "read_pause"]


#: A stored pause's fields and their JSON types (None: may be null).
_PAUSE_FIELDS: Final[dict[str, tuple[tuple[type, ...], bool]]] = {
    "kind": ((str,), False),
    "phone_number_id": ((str,), False),
    "category": ((str,), False),
    "since": (NUMBER, False),
    "until": (NUMBER, True),
    "error": ((dict,), True),
    "failures": ((int,), False),
    "opens": ((int,), False),
    "probing": ((bool,), False),
}
_PAUSE_REQUIRED: Final = ("kind", "phone_number_id", "category", "since")


def read_pause(text: str) -> Pause | None:
    """Return the stored pause, or None for a record that is not one (edited by hand)."""
    data = loads_object(text)
    if data is None or any(name not in data for name in _PAUSE_REQUIRED):
        return None
    fields: dict[str, Any] = {}
    for name, (kinds, nullable) in _PAUSE_FIELDS.items():
        if name in data:
            if not typed(data[name], kinds, nullable=nullable):
                return None  # as if there were none: a guard must not trip over it
            fields[name] = data[name]
    return Pause(**fields)


class SqlitePauseStore:
    """A `PauseStore` in a state file: a paused number stays paused for every process.

    Args:
        state: The state file.
    """

    def __init__(self, state: StateBase) -> None:
        self._state = state_file("SqlitePauseStore", state)

    @staticmethod
    def _get(conn: sqlite3.Connection, kind: str, phone_number_id: str) -> Pause | None:
        found = conn.execute(
            "SELECT pause FROM wa_pauses WHERE kind = ? AND phone_number_id = ?",
            (kind, phone_number_id),
        ).fetchone()
        return read_pause(found[0]) if found is not None else None

    @staticmethod
    def _list(conn: sqlite3.Connection) -> builtins.list[Pause]:
        rows = conn.execute("SELECT pause FROM wa_pauses ORDER BY kind, phone_number_id")
        return [p for p in (read_pause(r[0]) for r in rows) if p is not None]

    def _put_job(self, pause: Pause) -> Callable[[sqlite3.Connection], None]:
        if not isinstance(pause, Pause):
            raise TypeError(f"a pause store holds Pause values, got {type(pause).__name__}")
        values = (pause.kind, pause.phone_number_id, dumps(pause.to_dict()), self._state.clock())

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO wa_pauses (kind, phone_number_id, pause, updated_at) VALUES "
                "(?, ?, ?, ?) ON CONFLICT (kind, phone_number_id) DO UPDATE SET "
                "pause = excluded.pause, updated_at = excluded.updated_at",
                values,
            )

        return job

    def get(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number, or None."""
        return self._state.db.read(lambda c: self._get(c, kind, phone_number_id))

    def put(self, pause: Pause) -> None:
        """Store *pause*, replacing the number's pause of the same kind."""
        self._state.db.run(self._put_job(pause))

    def clear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        self._state.db.run(
            lambda c: delete(c, "wa_pauses", kind=kind, phone_number_id=phone_number_id)
        )

    def list(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        return self._state.db.read(self._list)

    async def aget(self, kind: str, phone_number_id: str) -> Pause | None:
        """Return the pause of that kind on the number (read off the event loop)."""
        return await self._state.db.arun(lambda c: self._get(c, kind, phone_number_id), write=False)

    async def aput(self, pause: Pause) -> None:
        """Store *pause*."""
        await self._state.db.arun(self._put_job(pause))

    async def aclear(self, kind: str, phone_number_id: str) -> None:
        """Drop the number's pause of that kind."""
        await self._state.db.arun(
            lambda c: delete(c, "wa_pauses", kind=kind, phone_number_id=phone_number_id)
        )

    async def alist(self) -> builtins.list[Pause]:
        """Return every stored pause."""
        return await self._state.db.arun(self._list, write=False)

    def __repr__(self) -> str:
        return f"SqlitePauseStore({self._state.path!r})"
