"""Objects whose background tasks live exactly as long as an ``async with`` block.

:class:`Lifetime` gives a class ``__aenter__``/``__aexit__`` that enter and leave one async
context manager, :meth:`Lifetime._lifetime`, through an ``AsyncExitStack``: the nursery inside
it is entered and left lexically, around the block (as trio-websocket's ``open_websocket``),
never in one method and out of another. :func:`task_nursery` is the nursery most such
lifetimes hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Self

import trio

from .groups import single_exception


class Lifetime:
    """Base for ``async with obj:`` objects; subclasses implement :meth:`_lifetime`."""

    _stack: AsyncExitStack | None = None
    _already_running = "already running"  # the RuntimeError of a second ``async with``

    def _lifetime(self) -> AbstractAsyncContextManager[object]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError(self._already_running)
        stack = AsyncExitStack()
        await stack.enter_async_context(self._lifetime())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)


@asynccontextmanager
async def task_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for an object's background tasks, entered and left in one ``async with``.

    Leaving the block cancels the tasks and waits for them. The block's own exception comes
    out unchanged; an error of a task comes out as itself, not wrapped in an ExceptionGroup
    (a group stays a group when there are several).
    """
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = single_exception(group)
        if error is group:
            raise
    if error is not None:
        # Raised outside the except clause: the error keeps its own cause and context
        # (and the block's exception is recognised by contextlib as itself).
        raise error


__all__ = ["Lifetime", "task_nursery"]
