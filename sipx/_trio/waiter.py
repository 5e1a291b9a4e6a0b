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
    """A queue of responses (or the error ending the transaction) with one reader.

    The oldest item waits in a slot of its own and any later ones in a deque made for
    them (most transactions bring one final response and nothing else); the waiter is its
    own abort function while its reader waits (no bound method made per wait)."""

    __slots__ = ("_first", "_more", "_task")

    def __init__(self) -> None:
        self._first: _Item | None = None  # None only when nothing is queued
        self._more: deque[_Item] | None = None  # the items after the first, in order
        self._task: trio.lowlevel.Task | None = None

    def send_nowait(self, item: _Item) -> None:
        """Queue ``item`` and wake the reader if it is waiting (never blocks)."""
        if self._first is None:
            self._first = item
        elif self._more is None:
            self._more = deque((item,))
        else:
            self._more.append(item)
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    def __aiter__(self) -> ResponseWaiter:
        return self

    async def __anext__(self) -> _Item:
        """The next item, waiting for it (a checkpoint either way)."""
        if self._first is not None:
            await trio.lowlevel.checkpoint()
        else:
            self._task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self)
        item = self._first
        assert item is not None
        more = self._more
        self._first = more.popleft() if more else None
        return item

    def __call__(self, raise_cancel: object) -> trio.lowlevel.Abort:
        """The waiting reader is cancelled: it is no longer there to wake."""
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def __len__(self) -> int:
        """How many items are queued and not read yet."""
        if self._first is None:
            return 0
        return 1 + (len(self._more) if self._more else 0)


__all__ = ["ResponseWaiter"]
