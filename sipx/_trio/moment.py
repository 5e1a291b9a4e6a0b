"""A moment some tasks wait for, once: a call's end, the ACK of its 200.

``trio.Event`` does more than a call needs for these (an Event, a ParkingLot and its
OrderedDict per call waited on, and a coroutine of the lot's per wait): a :class:`Moment`
is one object holding the waiting task itself (a list only when there are several), woken
with ``trio.lowlevel.reschedule``. Whether the moment came is the caller's state (the call
ended, it was ACKed): the caller waits only before it, and :meth:`Moment.came` wakes every
task waiting then. Waiting is cancellable (the task leaves the moment).
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial

import trio


class Moment:
    """The tasks waiting for one moment, woken together by :meth:`came`."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: trio.lowlevel.Task | list[trio.lowlevel.Task] | None = None

    def wait(self) -> Awaitable[object]:
        """``await moment.wait()``: wait until :meth:`came` (the caller knows it has not
        come yet). The task waits from this call on: await the result at once (it is
        trio's own wait, with no coroutine of the moment's around it)."""
        task = trio.lowlevel.current_task()
        waiting = self._waiting
        if waiting is None:
            self._waiting = task
        elif isinstance(waiting, list):
            waiting.append(task)
        else:
            self._waiting = [waiting, task]
        return trio.lowlevel.wait_task_rescheduled(partial(_left, self, task))

    def came(self) -> None:
        """Wake every task waiting now."""
        waiting = self._waiting
        if waiting is None:
            return
        self._waiting = None
        if isinstance(waiting, list):
            for task in waiting:
                trio.lowlevel.reschedule(task)
        else:
            trio.lowlevel.reschedule(waiting)

    @property
    def waiting(self) -> int:
        """How many tasks wait."""
        waiting = self._waiting
        return 0 if waiting is None else len(waiting) if isinstance(waiting, list) else 1


def _left(moment: Moment, task: trio.lowlevel.Task, raise_cancel: object) -> trio.lowlevel.Abort:
    """``task``'s wait was cancelled: it no longer waits for ``moment``."""
    waiting = moment._waiting
    if waiting is task:
        moment._waiting = None
    elif isinstance(waiting, list) and task in waiting:
        waiting.remove(task)
    return trio.lowlevel.Abort.SUCCEEDED
