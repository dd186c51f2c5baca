"""`Batched`: a Lua script's concurrent async calls of one event loop, sent as one pipeline.

Sixty-four senders reserving their slots at once make sixty-four `EVALSHA`s; sent one by one,
each pays redis-py's own cost of a command (measured: about 110 µs of CPU at 64 in flight),
sent as one pipeline about 30 µs. A call joins the batch of the current loop iteration; the
batch leaves on the next one, and each caller gets its own answer (or its own error). No lock
is held across an await: the batch is swapped out in one step on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = ["Batched"]

_Call = tuple[Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class Batched:
    """One script on one asyncio client: `await batched(keys, args)` runs it in a pipeline.

    Args:
        client: redis-py's asyncio client (of the running loop).
        script: The Lua text.
    """

    def __init__(self, client: Any, script: str) -> None:
        self._client = client
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.ensure_future(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._sha, len(keys), *keys, *args)
        answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers

    async def _send(self, batch: list[_Call]) -> None:
        from redis.exceptions import NoScriptError

        try:
            answers = await self._execute(batch)
            if any(isinstance(a, NoScriptError) for a in answers):  # a new or restarted Redis
                await self._client.script_load(self._script)
                answers = await self._execute(batch)
        except Exception as exc:  # noqa: BLE001 - each caller gets it, translated by its caller
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
