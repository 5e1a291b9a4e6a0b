"""Established calls made idle a little after their ACK, in batches, by one task.

When the ACK of our 200 arrives a call is established and, from then on, keeps less: its
INVITE, our 200 and its SDPs as bytes, no server transaction (``Call._keep_less``). Many
calls end at once (a BYE right after the ACK: load tests, short calls): compacting those
would be wasted work. So the ACKed calls wait in a queue for :data:`IDLE_AFTER` seconds
and a call still established then is compacted; an ended one is skipped.

The queue is first in, first out (every call waits the same time). One task, started in
the engine's nursery when the first call comes and ended when the queue is empty, sleeps
until the oldest call is due plus :data:`BATCH`, then compacts every call due by then.
The queue holds a weak reference to each call: a call that ends first (nobody holds it
then) is freed as it ends, while its objects are still in the CPU's caches and before a
young collection of the garbage collector finds them alive, not :data:`IDLE_AFTER` later
by this task.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._call import Call

log = logging.getLogger("sipx")

IDLE_AFTER = 0.05
"""Seconds between a call's ACK and its compaction (if it is still established): long
enough for a BYE sent right after the ACK (SIPp's calls, load tests) to arrive first,
short enough that the calls not yet compacted add little to the memory peak (about
IDLE_AFTER + BATCH times the call rate: 35 calls at 500 calls/s)."""

BATCH = 0.02
"""The task wakes at most this late for a call due, to compact the calls due meanwhile."""


class IdleCalls:
    """ACKed calls waiting to be compacted: ``compact(call)`` runs :data:`IDLE_AFTER`
    seconds after :meth:`add` (and at most :data:`BATCH` later) unless the call ended."""

    __slots__ = ("_calls", "_compact", "_dues", "_now", "_running", "_start_soon")

    def __init__(
        self,
        start_soon: Callable[..., None],
        compact: Callable[[Call], None],
        now: Callable[[], float] = trio.current_time,
    ) -> None:
        self._start_soon = start_soon  # the engine's
        self._compact = compact
        self._now = now  # the engine's: the ACK's arrival, read once for the datagram
        # Two queues side by side (no entry object per call): when each call is due, and
        # the call, weakly (the engine's map of calls holds it while it is established).
        self._dues: deque[float] = deque()
        self._calls: deque[weakref.ref[Call]] = deque()
        self._running = False

    def __len__(self) -> int:
        """Calls waiting (ended ones included until their turn comes)."""
        return len(self._dues)

    def add(self, call: Call) -> None:
        """``call`` was ACKed: compact it later (its task starts with the first call)."""
        self._dues.append(self._now() + IDLE_AFTER)
        self._calls.append(weakref.ref(call))
        if not self._running:
            self._running = True
            self._start_soon(self._run)

    async def _run(self) -> None:
        dues = self._dues
        calls = self._calls
        try:
            while dues:
                now = trio.current_time()
                if dues[0] > now:
                    await trio.sleep_until(dues[0] + BATCH)
                    continue
                while dues and dues[0] <= now:
                    dues.popleft()
                    call = calls.popleft()()
                    if call is None or call.ended:  # freed when it ended, or held still
                        continue
                    try:
                        self._compact(call)
                    except Exception:  # a background task never crashes the client
                        log.exception("making call %s idle failed", call.call_id)
        finally:
            self._running = False
