"""`wa-auth state list|clear` and `serve`'s `POST /state/clear`: the verdicts and pauses in force.

A verdict makes every send with a token fail at once, without a request, for an hour; a pause
holds a number's sends until its probe. Both are right while the cause lasts, and wrong once an
operator fixed it (a new token at Meta, a sandbox reset, an account restored). These commands
show them and drop them. Clearing is one policy written once (`clear`, a generator of effects)
and driven blocking for the CLI's state file and on the event loop for `serve`'s stores.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Generator, Sequence
from typing import Any, Final, Protocol

import attrs

from wa_auth import _effects
from wa_auth._cli import _codes, _config
from wa_auth._cli._output import error_object, write
from wa_auth.errors import ApiError, ConfigurationError, OutboxError
from wa_auth.pacing import ACCOUNT, CIRCUIT, Pause

__all__ = [
    "Cleared",
    "FileStores",
    "Stores",
    "aclear",
    "clear",
    "clear_line",
    "clear_request",
    "list_line",
    "run",
]

_KINDS: Final = (ACCOUNT, CIRCUIT)
_FINGERPRINT: Final = re.compile(r"sha256:[0-9a-f]{12}")


class Stores(Protocol):
    """Where the verdicts and pauses live, and how a number is resumed."""

    @property
    def verdicts(self) -> Any:
        """The verdict store (`list`/`alist` to enumerate it, `forget`/`aforget`)."""
        ...

    @property
    def pauses(self) -> Any:
        """The pause store."""
        ...

    def resume(self, phone_number_id: str) -> None:
        """Drop the number's pause and circuit."""
        ...

    async def aresume(self, phone_number_id: str) -> None:
        """Drop the number's pause and circuit."""
        ...


@attrs.frozen
class FileStores:
    """The stores of a state file: resuming a number clears its two kinds of pause."""

    verdicts: Any
    pauses: Any

    def resume(self, phone_number_id: str) -> None:
        """Drop the number's pause and circuit."""
        for kind in _KINDS:
            self.pauses.clear(kind, phone_number_id)

    async def aresume(self, phone_number_id: str) -> None:
        """Drop the number's pause and circuit."""
        for kind in _KINDS:
            await self.pauses.aclear(kind, phone_number_id)


# --- the effects ---------------------------------------------------------------------------------


_Listed = list[tuple[str, ApiError, float]]


@attrs.frozen
class _ListVerdicts:
    """The verdicts in force, or None from a store that cannot list them (not wa_auth's)."""

    def perform(self, env: Stores) -> _Listed | None:
        return list(env.verdicts.list()) if hasattr(env.verdicts, "list") else None

    async def aperform(self, env: Stores) -> _Listed | None:
        return list(await env.verdicts.alist()) if hasattr(env.verdicts, "alist") else None


@attrs.frozen
class _Forget:
    fingerprint: str

    def perform(self, env: Stores) -> None:
        env.verdicts.forget(self.fingerprint)

    async def aperform(self, env: Stores) -> None:
        await env.verdicts.aforget(self.fingerprint)


@attrs.frozen
class _ListPauses:
    def perform(self, env: Stores) -> list[Pause]:
        return list(env.pauses.list())

    async def aperform(self, env: Stores) -> list[Pause]:
        return list(await env.pauses.alist())


@attrs.frozen
class _Resume:
    phone_number_id: str

    def perform(self, env: Stores) -> None:
        env.resume(self.phone_number_id)

    async def aperform(self, env: Stores) -> None:
        await env.aresume(self.phone_number_id)


# --- the policy ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Cleared:
    """What a clear dropped: the verdicts' fingerprints and the pauses."""

    verdicts: tuple[str, ...]
    pauses: tuple[Pause, ...]


def _clear(
    fingerprints: Sequence[str], numbers: Sequence[str], *, everything: bool
) -> Generator[Any, Any, Cleared]:
    """Drop the verdicts on *fingerprints* and the pauses of *numbers* (all with *everything*)."""
    listed: _Listed | None = yield _ListVerdicts()
    known = None if listed is None else [fingerprint for fingerprint, _, _ in listed]
    wanted = (known or []) if everything else list(dict.fromkeys(fingerprints))
    for fingerprint in wanted:
        yield _Forget(fingerprint)
    pauses: list[Pause] = yield _ListPauses()
    targets = {p.phone_number_id for p in pauses} if everything else set(numbers)
    dropped = tuple(p for p in pauses if p.phone_number_id in targets)
    for number in sorted({p.phone_number_id for p in dropped}):
        yield _Resume(number)
    # A store that cannot list reports what it was asked to drop; any other, what it held.
    held = wanted if known is None else [f for f in wanted if f in known]
    return Cleared(verdicts=tuple(held), pauses=dropped)


def clear(
    stores: Stores, fingerprints: Sequence[str], numbers: Sequence[str], *, everything: bool
) -> Cleared:
    """Drop verdicts and pauses with blocking calls (`wa-auth state clear`)."""
    return _effects.run(_clear(fingerprints, numbers, everything=everything), stores, catch=())


async def aclear(
    stores: Stores, fingerprints: Sequence[str], numbers: Sequence[str], *, everything: bool
) -> Cleared:
    """Drop verdicts and pauses on the running event loop (`serve`'s `POST /state/clear`)."""
    flow = _clear(fingerprints, numbers, everything=everything)
    return await _effects.arun(flow, stores, catch=())


def clear_request(data: object) -> tuple[list[str], list[str], bool]:
    """Read `POST /state/clear`'s body: what to drop (an empty body: everything).

    `{"fingerprints": ["sha256:..."], "phone_number_ids": ["..."]}` names what to drop;
    `{}` (or no body) and `{"all": true}` drop every verdict and pause.

    Raises:
        ConfigurationError: The body has another shape; the message shows no value of it.
    """
    keys = {"fingerprints", "phone_number_ids", "all"}
    if not isinstance(data, dict) or set(data) - keys:
        raise ConfigurationError(
            'the body is optional: {"fingerprints": ["sha256:..."], "phone_number_ids": '
            '["..."]} or {"all": true}; none (or {}) clears everything'
        )
    everything = data.get("all", False)
    if not isinstance(everything, bool):
        raise ConfigurationError("all must be true or false")
    lists: list[list[str]] = []
    for key in ("fingerprints", "phone_number_ids"):
        values = data.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigurationError(f"{key} must be a list of strings")
        lists.append(values)
    fingerprints, numbers = lists
    if any(not _FINGERPRINT.fullmatch(f) for f in fingerprints):
        raise ConfigurationError(
            "fingerprints must be token fingerprints (sha256: and 12 hex digits); the value "
            "given is not shown"
        )
    return fingerprints, numbers, everything or not (fingerprints or numbers)


# --- the lines -----------------------------------------------------------------------------------


def _pause(pause: Pause) -> dict[str, Any]:
    return {
        "kind": pause.kind,
        "phone_number_id": pause.phone_number_id,
        "category": pause.category,
        "since": pause.since,
        "until": pause.until,
        "failures": pause.failures,
    }


def list_line(
    path: str | None,
    verdicts: Sequence[tuple[str, ApiError, float]],
    pauses: Sequence[Pause],
) -> dict[str, Any]:
    """Return `state list`'s line (the schema's `state_list`)."""
    return {
        "ok": True,
        "exit_code": _codes.OK,
        "action": "list",
        "state": path,
        "verdicts": [
            {
                "token_fingerprint": fingerprint,
                "category": error.category,
                "expires_at": round(expires_at, 3),
                "error": error_object(error),
            }
            for fingerprint, error, expires_at in verdicts
        ],
        "pauses": [_pause(p) for p in pauses],
    }


def clear_line(path: str | None, cleared: Cleared) -> dict[str, Any]:
    """Return the line of a clear (the schema's `state_clear`): what was dropped."""
    return {
        "ok": True,
        "exit_code": _codes.OK,
        "action": "clear",
        "state": path,
        "verdicts": list(cleared.verdicts),
        "pauses": [_pause(p) for p in cleared.pauses],
    }


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _text(line: dict[str, Any]) -> str:
    if line["action"] == "clear":
        return (
            f"cleared {len(line['verdicts'])} verdict(s) and {len(line['pauses'])} pause(s)"
            + "".join(f"\n  verdict {fp}" for fp in line["verdicts"])
            + "".join(f"\n  {p['kind']} {p['phone_number_id']}" for p in line["pauses"])
        )
    out = [f"{len(line['verdicts'])} verdict(s), {len(line['pauses'])} pause(s)"]
    out.extend(
        f"  verdict {v['token_fingerprint']}: {v['category']} until {_when(v['expires_at'])}"
        for v in line["verdicts"]
    )
    out.extend(
        f"  {p['kind']} {p['phone_number_id']}: {p['category']} until {_when(p['until'])}"
        for p in line["pauses"]
    )
    return "\n".join(out)


# --- the command ---------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> Any:
    from wa_auth.state import StateFile

    path = getattr(args, "state", None) or _config.environ().get("WA_AUTH_STATE") or None
    url = getattr(args, "redis", None) or _config.environ().get("WA_AUTH_REDIS_URL") or None
    if url is not None and path is None:
        from wa_auth.fleet import RedisState

        return RedisState(url)
    if path is None:
        raise ConfigurationError(
            "name the state file: --state PATH (or WA_AUTH_STATE), or a fleet's Redis: "
            "--redis URL (or WA_AUTH_REDIS_URL)"
        )
    try:
        return StateFile(path, create=False)
    except OutboxError as exc:
        raise ConfigurationError(f"--state {path}: {exc.message}") from None


def run(args: argparse.Namespace) -> int:
    """Run `wa-auth state list|clear`; print one line; return 0.

    Raises:
        ConfigurationError: No state file is named, it cannot be opened, or `clear` was not
            told what to drop.
    """
    if args.state_command == "clear" and not (args.all or args.fingerprint or args.phone_number_id):
        raise ConfigurationError(
            "say what to clear: --fingerprint FP, --phone-number-id ID (repeat either) or --all"
        )
    with _open(args) as state:
        # A Redis is named by host:port, never by its URL (it may hold a password).
        where = str(getattr(state, "path", None) or f"redis://{state.address}")
        if args.state_command == "list":
            line = list_line(where, state.verdicts.list(), state.pauses.list())
        else:
            stores = FileStores(verdicts=state.verdicts, pauses=state.pauses)
            cleared = clear(stores, args.fingerprint, args.phone_number_id, everything=args.all)
            line = clear_line(where, cleared)
    if args.format == "text":
        sys.stdout.write(_text(line) + "\n")
        sys.stdout.flush()
    else:
        write(line)
    return _codes.OK
