"""`Closing` and `AsyncClosing`: `with` and `async with` for anything that closes.

One mixin instead of a hand-written `__enter__`/`__exit__` pair on every client, store and
server: leaving the block calls `close()` (or `aclose()`), whatever ended it, and never
swallows the exception that did. Imports nothing from the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

__all__ = ["AsyncClosing", "Closing"]


class Closing:
    """`with obj:` gives *obj* and calls `obj.close()` on the way out."""

    def close(self) -> None:  # pragma: no cover - each class defines it
        """Release what the object holds; idempotent."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClosing:
    """`async with obj:` gives *obj* and awaits `obj.aclose()` on the way out."""

    async def aclose(self) -> None:  # pragma: no cover - each class defines it
        """Release what the object holds without blocking the event loop; idempotent."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
