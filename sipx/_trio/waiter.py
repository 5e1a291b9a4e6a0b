"""The responses of one client transaction, handed to the one task that waits for them.

A client transaction has a single reader (the task that sent the request, or the wind-down
that CANCELs it) and a writer that never blocks (the engine's receive path). A trio memory
channel pair does more than that needs (two objects, statistics, clones, close states);
:class:`ResponseWaiter` is one object with a queue and the parked task, woken with
``trio.lowlevel.reschedule``. Waiting is a checkpoint like ``receive()``: a cancelled reader
raises ``Cancelled`` and whatever was queued stays for a later read.
"""

from __future__ import annotations

from collections import deque

import trio

from .._core.message import Response

_Item = Response | Exception


class ResponseWaiter:
    """A queue of responses (or the error ending the transaction) with one reader."""

    __slots__ = ("_items", "_task")

    def __init__(self) -> None:
        self._items: deque[_Item] = deque()
        self._task: trio.lowlevel.Task | None = None

    def send_nowait(self, item: _Item) -> None:
        """Queue ``item`` and wake the reader if it is waiting (never blocks)."""
        self._items.append(item)
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    def __aiter__(self) -> ResponseWaiter:
        return self

    async def __anext__(self) -> _Item:
        """The next item, waiting for it (a checkpoint either way)."""
        items = self._items
        if items:
            await trio.lowlevel.checkpoint()
            return items.popleft()
        self._task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)
        return items.popleft()

    def _abort(self, raise_cancel: object) -> trio.lowlevel.Abort:
        """The waiting reader is cancelled: it is no longer there to wake."""
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def __len__(self) -> int:
        """How many items are queued and not read yet."""
        return len(self._items)


__all__ = ["ResponseWaiter"]
