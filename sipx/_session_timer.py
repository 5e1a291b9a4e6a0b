"""One call's session timer (RFC 4028 10) as a task in the engine's nursery.

:class:`SessionTimerTask` sleeps until the deadline of its sans-I/O
:class:`~sipx._core.session_timer.SessionTimer`: as the refresher it refreshes the session
at half the interval (the call's ``refresh`` sends UPDATE or re-INVITE); either way, when
the session runs out without a refresh, the call's ``expire`` ends it (BYE). A refresh
that times out or gets 408 or 481 ends the call too; another failure is retried halfway
to the expiry. The call stops the task when it ends (``Call._end``), so no task outlives
its call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ._core.message import Response
from ._core.session_timer import EXPIRE, REFRESH, SessionTimer
from ._errors import SIPError

log = logging.getLogger("sipx")

# The refresh: the 2xx (or failure) of the UPDATE or re-INVITE sent, None when put off.
Refresh = Callable[[], Awaitable[Response | None]]

# The longest single sleep. trio keeps the deadline of a cancel scope left early in its
# heap until that deadline passes (or a prune): sleeping through a 30-minute interval at
# once would keep the scope of every call that ended meanwhile for up to 30 minutes.
HORIZON = 30.0


class SessionTimerTask:
    """Runs one session's timer: refreshes when we are the refresher, expires otherwise."""

    def __init__(
        self,
        start_soon: Callable[..., None],
        timer: SessionTimer,
        refresh: Refresh,
        expire: Callable[[str], None],
    ) -> None:
        self.timer = timer
        self._start_soon = start_soon
        self._refresh = refresh
        self._expire = expire
        self._scope = trio.CancelScope()
        self._stopped = False
        self._wakeup = trio.Event()
        self.refreshes = 0  # refreshes sent

    def start(self) -> None:
        self._start_soon(self._run)

    def refreshed(self, interval: int, we_refresh: bool) -> None:
        """A refresh succeeded (either direction): the deadlines start again."""
        self.timer.refreshed(trio.current_time(), interval, we_refresh)
        self._wakeup.set()

    def stop(self) -> None:
        """The call ended (or no longer has a session timer): the task ends."""
        self._stopped = True
        self._scope.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:  # a background task never crashes the client
            log.exception("the session timer failed")

    async def _loop(self) -> None:
        with self._scope:
            while True:
                deadline = min(self.timer.next_deadline(), trio.current_time() + HORIZON)
                with trio.move_on_at(deadline):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                due = self.timer.due(trio.current_time())
                if due == EXPIRE:
                    self._expire("the session expired without a refresh")
                    return
                if due == REFRESH and not await self._refresh_once():
                    return

    async def _refresh_once(self) -> bool:
        """Send one refresh; False when the call is over because of it."""
        timer = self.timer
        timer.refresh_started()
        self.refreshes += 1
        try:
            response = await self._refresh()
        except SIPError as exc:
            self._expire(f"the session refresh failed: {exc}")
            return False
        if response is None or not response.is_success:
            status = None if response is None else response.status_code
            if status in (408, 481):
                self._expire(f"the session refresh got {status}")
                return False
            if timer.refreshing:  # not refreshed meanwhile by a request from the peer
                log.info("session refresh not done (%s); trying again", status or "put off")
                timer.refresh_failed(trio.current_time())
        return True


__all__ = ["HORIZON", "Refresh", "SessionTimerTask"]
