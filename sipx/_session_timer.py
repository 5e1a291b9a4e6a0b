"""Session timers (RFC 4028 10) of a client's calls, on one task in the engine's nursery.

A :class:`SessionTimerTask` runs one call's sans-I/O
:class:`~sipx._core.session_timer.SessionTimer`: as the refresher it refreshes the session
at half the interval (the call's ``refresh`` sends UPDATE or re-INVITE); either way, when
the session runs out without a refresh, the call's ``expire`` ends it (BYE). A refresh
that times out or gets 408 or 481 ends the call too; another failure is retried halfway
to the expiry. The call stops it when it ends (``Call._end``).

An idle call has no task of its own: every call's next deadline waits in the client's one
:class:`SessionTimers` heap, whose task (started when the first deadline is set, ended when
none is left) sleeps until the earliest. Only a refresh in progress runs a task (it awaits
its transaction). An answered call's first deadline enters the heap when the call is made
idle (``Call._keep_less``, :meth:`SessionTimerTask.start`), so that a call hung up right
after its ACK never touches it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from types import MethodType

import trio

from ._core.message import Response
from ._core.session_timer import EXPIRE, REFRESH, SessionTimer
from ._errors import SIPError

log = logging.getLogger("sipx")

# The refresh: the 2xx (or failure) of the UPDATE or re-INVITE sent, None when put off.
Refresh = Callable[[], Awaitable[Response | None]]

# The longest single sleep. trio keeps the deadline of a cancel scope left early (woken
# for an earlier deadline) in its heap until that deadline passes: sleeping through a
# 30-minute interval at once would keep every such scope for up to 30 minutes.
HORIZON = 30.0


class SessionTimers:
    """The deadlines of every session timer of one client, slept on by one task.

    An entry is ``(deadline, order, timer task)``; a deadline moved or stopped leaves its
    entry behind as stale (skipped when it comes up), and the heap is rebuilt without the
    stale entries once they are the majority, so ended calls are not kept until their old
    deadlines pass.
    """

    def __init__(self, start_soon: Callable[..., None]) -> None:
        self.start_soon = start_soon  # the engine's: the heap's task and every refresh
        self._heap: list[tuple[float, int, SessionTimerTask]] = []
        self._order = itertools.count()
        self._stale = 0
        self._running = False
        self._wakeup: trio.Event | None = None

    def __len__(self) -> int:
        """Live deadlines (one per running session timer not refreshing)."""
        return len(self._heap) - self._stale

    def schedule(self, task: SessionTimerTask, deadline: float) -> None:
        heap = self._heap
        if heap and deadline < heap[0][0] and self._wakeup is not None:
            self._wakeup.set()  # a new earliest deadline
        heapq.heappush(heap, (deadline, next(self._order), task))
        if not self._running:
            self._running = True
            self.start_soon(self._run)

    def dropped(self) -> None:
        """An entry went stale (its task was rescheduled or stopped)."""
        self._stale += 1
        if self._stale * 2 > len(self._heap):  # amortised: at most one rebuild per n/2
            self._heap = [entry for entry in self._heap if entry[2].deadline == entry[0]]
            heapq.heapify(self._heap)
            self._stale = 0
            if self._wakeup is not None:  # its earliest deadline may have gone
                self._wakeup.set()

    async def _run(self) -> None:
        heap = self._heap
        try:
            while self._heap:
                heap = self._heap
                deadline, _, task = heap[0]
                if task.deadline != deadline:
                    heapq.heappop(heap)
                    self._stale = max(0, self._stale - 1)
                    continue
                now = trio.current_time()
                if now < deadline:
                    self._wakeup = trio.Event()
                    with trio.move_on_at(min(deadline, now + HORIZON)):
                        await self._wakeup.wait()
                    self._wakeup = None
                    continue
                heapq.heappop(heap)
                task.deadline = None
                try:
                    task.fire()
                except Exception:  # a background task never crashes the client
                    log.exception("the session timer failed")
        finally:
            self._running = False
            self._wakeup = None


class SessionTimerTask:
    """One session's timer: refreshes when we are the refresher, expires otherwise.

    Its next deadline waits in the client's :class:`SessionTimers`; a refresh runs as a
    task of its own while its request is on its way."""

    __slots__ = ("_expire", "_owner", "_refresh", "_timers", "deadline", "refreshes", "timer")

    def __init__(
        self,
        timers: SessionTimers,
        timer: SessionTimer,
        refresh: Refresh,
        expire: Callable[[str], None],
    ) -> None:
        self.timer = timer
        self._timers: SessionTimers | None = timers
        # Two methods of one object (the call's) are kept as its functions and the object:
        # no bound-method object of its own per call while the call is idle.
        self._owner: object | None = None
        self._refresh: Callable[..., Awaitable[Response | None]] | None = refresh
        self._expire: Callable[..., None] | None = expire
        if (
            isinstance(refresh, MethodType)
            and isinstance(expire, MethodType)
            and refresh.__self__ is expire.__self__
        ):
            self._owner = refresh.__self__
            self._refresh, self._expire = refresh.__func__, expire.__func__
        self.deadline: float | None = None  # the one in the heap, None while refreshing
        self.refreshes = 0  # refreshes sent

    def start(self) -> None:
        """Put the first deadline in the heap (nothing when it is there already, while a
        refresh is on its way, or once stopped)."""
        if self.deadline is None and not self._busy:
            self._schedule()

    def refreshed(self, interval: int, we_refresh: bool) -> None:
        """A refresh succeeded (either direction): the deadlines start again."""
        self.timer.refreshed(trio.current_time(), interval, we_refresh)
        if not self.stopped and not self._busy:
            self._schedule()

    def stop(self) -> None:
        """The call ended (or no longer has a session timer): nothing more happens, and
        the heap entry left behind keeps nothing of the call."""
        timers = self._timers
        if timers is None:
            return
        self._timers = None
        self._refresh = self._expire = self._owner = None
        if self.deadline is not None:
            self.deadline = None
            timers.dropped()

    @property
    def stopped(self) -> bool:
        return self._timers is None

    @property
    def _busy(self) -> bool:
        """A refresh of ours is on its way (its outcome reschedules)."""
        return self.timer.refreshing

    def _schedule(self) -> None:
        timers = self._timers
        if timers is None:
            return
        deadline = self.timer.next_deadline()
        if deadline == self.deadline:
            return
        if self.deadline is not None:
            timers.dropped()
        self.deadline = deadline
        timers.schedule(self, deadline)

    def fire(self) -> None:
        """The heap's deadline came: expire, start a refresh, or wait again."""
        if self.stopped:
            return
        due = self.timer.due(trio.current_time())
        if due == EXPIRE:
            self._ended("the session expired without a refresh")
        elif due == REFRESH:
            self.timer.refresh_started()
            self.refreshes += 1
            assert self._timers is not None
            self._timers.start_soon(self._refresh_once)
        else:
            self._schedule()

    def _ended(self, why: str) -> None:
        expire, owner = self._expire, self._owner
        self.stop()
        if expire is None:
            return
        if owner is None:
            expire(why)
        else:
            expire(owner, why)

    async def _refresh_once(self) -> None:
        """Send one refresh; end the call when it fails for good, else wait again."""
        refresh, owner = self._refresh, self._owner
        if refresh is None:
            return
        timer = self.timer
        try:
            response = await (refresh() if owner is None else refresh(owner))
        except SIPError as exc:
            if not self.stopped:
                self._ended(f"the session refresh failed: {exc}")
            return
        except Exception:  # a background task never crashes the client
            log.exception("the session refresh failed")
            response = None
        if self.stopped:
            return
        if response is None or not response.is_success:
            status = None if response is None else response.status_code
            if status in (408, 481):
                self._ended(f"the session refresh got {status}")
                return
            if timer.refreshing:  # not refreshed meanwhile by a request from the peer
                log.info("session refresh not done (%s); trying again", status or "put off")
                timer.refresh_failed(trio.current_time())
        self._schedule()


__all__ = ["HORIZON", "Refresh", "SessionTimerTask", "SessionTimers"]
