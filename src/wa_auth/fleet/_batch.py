"""`Batched`: a Lua script's concurrent async calls of one event loop, sent as one `EVALSHA`.

Sixty-four senders reserving their slots at once make sixty-four calls of one script; sent one
by one, each pays redis-py's own cost of a command (measured: about 110 µs of CPU at 64 in
flight), and even pipelined each is still a command packed, parsed and run by Redis on its own.
So the calls of one loop iteration leave together on the next one as a single call of the
script's *batch* form (`batch_script`): its `KEYS` and `ARGV` are the calls' own, laid end to
end, and it runs the script once per call, in order, inside Redis, and answers one reply per
call. Each caller gets its own answer, or its own error (an error in one call does not stop the
others; like the script alone, it keeps the writes made before it failed). No lock is held
across an await: the batch is swapped out in one step on the event loop's thread.

One script call spans the keys of every call in the batch, so a batch cannot be split over the
slots of a Redis Cluster (the fleet runs on one Redis, or a primary with replicas).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["Batched", "batch_script"]

_Call = tuple[Sequence[str], Sequence[Any], "asyncio.Future[Any]"]
#: One call of the script and the callers its answer goes to.
_Joined = tuple[Sequence[str], Sequence[Any], "list[asyncio.Future[Any]]"]

#: ARGV: the number of calls, then per call its key count, its argument count and its
#: arguments, or -1 for "the previous call's arguments" (sixty-four reservations of one limiter
#: share theirs); KEYS: the calls' keys, in order. A call's nil answer is false (nil would end
#: the reply's array); an error is kept as that call's error reply.
_LOOP = """
local answers = {}
local k, a = 0, 2
local args
for i = 1, tonumber(ARGV[1]) do
  local nkeys, nargs = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local keys = {}
  for j = 1, nkeys do keys[j] = KEYS[k + j] end
  k = k + nkeys
  if nargs >= 0 then
    args = {}
    for j = 1, nargs do args[j] = ARGV[a + j - 1] end
    a = a + nargs
  end
  local ok, answer = pcall(one, keys, args)
  if not ok then
    if type(answer) == 'table' and answer.err then answer = answer.err end
    answer = tostring(answer)
    if not string.find(answer, '^%u+ ') then answer = 'ERR ' .. answer end
    answer = {err = answer}
  elseif answer == nil then
    answer = false
  end
  answers[i] = answer
end
return answers
"""


#: Small counts as redis-py would send them, made once (a batch sends two per call).
_COUNTS: Final = tuple(str(i).encode() for i in range(-1, 64))


def _count(n: int) -> bytes:
    return _COUNTS[n + 1] if n < 63 else str(n).encode()


def batch_script(script: str) -> str:
    """Return the Lua of *script*'s batch form: many calls of it in one (see the module)."""
    return "local function one(KEYS, ARGV)\n" + script + "\nend\n" + _LOOP


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


class Batched:
    """One script on one asyncio client: `await batched(keys, args)` joins this turn's batch.

    Args:
        client: redis-py's asyncio client (of the running loop).
        script: The Lua text of one call.
    """

    def __init__(self, client: Any, script: str) -> None:
        self._client = client
        self._script = batch_script(script)
        self._sha = _sha(self._script)
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

    def _calls(self, batch: list[_Call]) -> list[_Joined]:
        """Return the script calls that answer *batch*: here, one per caller."""
        return [(keys, args, [future]) for keys, args, future in batch]

    def _settle(self, futures: list[asyncio.Future[Any]], answer: Any) -> None:
        """Give the callers of one script call its *answer* (here, the one caller)."""
        future = futures[0]
        if future.done():
            return
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)

    async def _execute(self, calls: list[_Joined]) -> list[Any]:
        keys: list[Any] = []
        args: list[Any] = [_count(len(calls))]
        previous: Sequence[Any] | None = None
        for call_keys, call_args, _ in calls:
            keys.extend(call_keys)
            args.append(_count(len(call_keys)))
            if call_args == previous:
                args.append(_COUNTS[0])  # -1: the previous call's arguments
            else:
                args.append(_count(len(call_args)))
                args.extend(call_args)
                previous = call_args
        answers: list[Any] = await self._client.evalsha(self._sha, len(keys), *keys, *args)
        return answers

    async def _send(self, batch: list[_Call]) -> None:
        from redis.exceptions import NoScriptError, ResponseError

        calls = self._calls(batch)
        error: BaseException | None = None
        try:
            try:
                answers = await self._execute(calls)
            except NoScriptError:  # a new or restarted Redis
                await self._client.script_load(self._script)
                answers = await self._execute(calls)
            for (_, _, futures), answer in zip(calls, answers, strict=True):
                try:
                    self._settle(futures, answer)
                except Exception as exc:  # noqa: BLE001 - an answer this batch cannot read
                    name = type(exc).__name__
                    error = ResponseError(f"the batch's answer could not be read: {name}")
        except Exception as exc:  # noqa: BLE001 - each caller gets it, translated by its caller
            error = exc
        finally:
            # Whatever happened (an error, an answer of the wrong shape, a cancellation), no
            # caller waits for an answer that will not come.
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error or ResponseError("the batch got no answer"))
