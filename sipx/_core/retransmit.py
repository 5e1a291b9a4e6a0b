"""Retransmission of 2xx responses to INVITE by the UAS core (RFC 3261 13.3.1.4), sans-I/O.

The INVITE server transaction hands a 2xx to the transport once and leaves (RFC 6026:
Accepted); until the ACK arrives it is the UAS core that sends the 2xx again, at T1, 2*T1,
4*T1 ... with the interval capped at T2, and that gives up 64*T1 after the first send (the
session should then be ended with a BYE).

A :class:`TwoXXRetransmitter` keeps those schedules for any number of dialogs, each under a
key chosen by the caller. Like the transaction layer it never reads a clock: the caller
passes ``now``, sleeps until :meth:`~TwoXXRetransmitter.next_deadline` and then calls
:meth:`~TwoXXRetransmitter.handle_timers`, which returns what to do.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Hashable
from dataclasses import dataclass

from .message import Response
from .timers import TimerConfig


@dataclass(frozen=True, slots=True)
class Retransmit:
    """Send ``response`` (the 2xx of ``key``) again, now."""

    key: Hashable
    response: Response


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """64*T1 passed without the ACK for the 2xx of ``key``: the TU should end the dialog
    (send BYE). The key is no longer retransmitted."""

    key: Hashable
    response: Response


class _Pending:
    """One 2xx awaiting its ACK: the current interval, when to give up, and the sequence of
    its live heap entry (older entries of the key are stale)."""

    __slots__ = ("give_up", "interval", "response", "sequence")

    def __init__(self, response: Response, interval: float, give_up: float, sequence: int) -> None:
        self.response = response
        self.interval = interval
        self.give_up = give_up
        self.sequence = sequence


class TwoXXRetransmitter:
    """The 2xx responses a UAS core retransmits until their ACK (13.3.1.4).

    One heap of ``(deadline, sequence, key)`` with lazy deletion: :meth:`ack`, :meth:`cancel`
    and a restarting :meth:`start` only drop the key's record, and the heap is compacted
    when such stale entries are most of it.
    """

    __slots__ = ("_entries", "_heap", "_sequence", "_stale", "_t1", "_t2", "soonest_started")

    def __init__(self, timers: TimerConfig) -> None:
        self._t1 = timers.t1
        self._t2 = timers.t2
        self._entries: dict[Hashable, _Pending] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._stale = 0
        self._sequence = itertools.count()
        # The earliest first retransmission :meth:`start` scheduled since the caller last
        # set it back to inf (a driver sleeping until :meth:`next_deadline` needs waking
        # only when this is earlier; nothing else makes the next deadline earlier).
        self.soonest_started = math.inf

    def start(self, key: Hashable, response: Response, now: float) -> None:
        """Retransmit ``response`` for ``key``: the caller sent it at ``now``, the first
        retransmission is due at now + T1. Restarts the schedule of a key already running
        (e.g. the 2xx of a re-INVITE replacing an unacknowledged one)."""
        if key in self._entries:
            self._stale += 1
        sequence = next(self._sequence)
        self._entries[key] = _Pending(response, self._t1, now + 64 * self._t1, sequence)
        deadline = now + self._t1
        heapq.heappush(self._heap, (deadline, sequence, key))
        if deadline < self.soonest_started:
            self.soonest_started = deadline
        self._compact()

    def ack(self, key: Hashable) -> bool:
        """The ACK for the 2xx of ``key`` arrived: stop. True if it was being retransmitted."""
        if self._entries.pop(key, None) is None:
            return False
        self._stale += 1
        self._compact()
        return True

    def cancel(self, key: Hashable) -> None:
        """Stop retransmitting for ``key`` without a word (the call ended another way)."""
        self.ack(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` next has something to do, or None."""
        heap = self._heap
        while heap:
            _, sequence, key = heap[0]
            pending = self._entries.get(key)
            if pending is not None and pending.sequence == sequence:
                return heap[0][0]
            heapq.heappop(heap)
            self._stale = max(0, self._stale - 1)
        return None

    def handle_timers(self, now: float) -> list[Retransmit | AckTimeout]:
        """What is due at ``now``, in deadline order.

        At most one :class:`Retransmit` per key: after a late call the next one is
        scheduled from ``now`` (no burst of missed retransmissions). A key whose 64*T1 has
        passed yields :class:`AckTimeout` instead and is dropped.
        """
        heap = self._heap
        entries = self._entries
        due: list[Retransmit | AckTimeout] = []
        while heap and heap[0][0] <= now:
            _, sequence, key = heapq.heappop(heap)
            pending = entries.get(key)
            if pending is None or pending.sequence != sequence:
                self._stale = max(0, self._stale - 1)
                continue
            if now >= pending.give_up:
                del entries[key]
                due.append(AckTimeout(key, pending.response))
                continue
            due.append(Retransmit(key, pending.response))
            pending.interval = min(2 * pending.interval, self._t2)
            pending.sequence = next(self._sequence)
            deadline = min(now + pending.interval, pending.give_up)
            heapq.heappush(heap, (deadline, pending.sequence, key))
        return due

    def _compact(self) -> None:
        # Stale entries hold their keys; drop them once they dominate the heap.
        if self._stale > 64 and self._stale * 2 > len(self._heap):
            entries = self._entries
            self._heap = [
                item
                for item in self._heap
                if (pending := entries.get(item[2])) is not None and pending.sequence == item[1]
            ]
            heapq.heapify(self._heap)
            self._stale = 0


__all__ = ["AckTimeout", "Retransmit", "TwoXXRetransmitter"]
