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
from collections.abc import Awaitable

import outcome
import trio

from .._core.message import Response

_Item = Response | Exception


class ResponseWaiter:
    """A queue of responses (or the error ending the transaction) with one reader.

    The oldest item waits in a slot of its own and any later ones in a deque made for
    them (most transactions bring one final response and nothing else); the waiter is its
    own abort function while its reader waits (no bound method made per wait).

    A reader waits only when nothing is queued, and an item sent while it waits is handed
    to it as the value its wait returns (``reschedule`` with that outcome; trio makes one
    per wake-up anyway): the read is trio's own wait, with no coroutine of the waiter's
    around it."""

    __slots__ = ("_first", "_more", "_task")

    def __init__(self) -> None:
        self._first: _Item | None = None  # None only when nothing is queued
        self._more: deque[_Item] | None = None  # the items after the first, in order
        self._task: trio.lowlevel.Task | None = None  # the reader, waiting (nothing queued)

    def send_nowait(self, item: _Item) -> None:
        """Hand ``item`` to the reader if it waits, else queue it (never blocks)."""
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task, outcome.Value(item))
        elif self._first is None:
            self._first = item
        elif self._more is None:
            self._more = deque((item,))
        else:
            self._more.append(item)

    def __aiter__(self) -> ResponseWaiter:
        return self

    def __anext__(self) -> Awaitable[_Item]:
        """The next item, waiting for it (a checkpoint either way)."""
        if self._first is None:
            self._task = trio.lowlevel.current_task()
            wait: Awaitable[_Item] = trio.lowlevel.wait_task_rescheduled(self)
            return wait
        return self._queued()

    async def _queued(self) -> _Item:
        """The oldest item queued, after a checkpoint (items may queue meanwhile)."""
        await trio.lowlevel.checkpoint()
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
