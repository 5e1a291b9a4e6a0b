"""Rate-limited logging of what the network makes us drop or refuse.

A flood of malformed datagrams must not become a flood of log lines (``sipx serve`` once
wrote 75 000 INFO lines in 20 s). :class:`LogLimiter` lets through at most ``burst`` lines
of one kind per ``interval`` seconds; the rest are counted, and the next line of that kind
after the interval (or :meth:`LogLimiter.flush`, when the endpoint stops) is preceded by one
summary: ``... 1234 more malformed messages in 10 s (not logged: ...)``. Kinds are a
few fixed strings chosen by the code, never a peer's address, so the bookkeeping is
bounded. Time is trio's clock inside a trio run (a MockClock drives it in tests), else
``time.monotonic``.
"""

from __future__ import annotations

import logging
import time

import trio

__all__ = ["LogLimiter"]


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # outside a trio run
        return time.monotonic()


class _Window:
    __slots__ = ("level", "logged", "start", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.logged = 0
        self.suppressed = 0
        self.level = logging.NOTSET


class LogLimiter:
    """At most ``burst`` lines per ``interval`` seconds for each kind of line."""

    def __init__(self, logger: logging.Logger, *, burst: int = 5, interval: float = 10.0) -> None:
        if burst < 1 or interval <= 0:
            raise ValueError("LogLimiter needs burst >= 1 and interval > 0")
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._windows: dict[str, _Window] = {}

    def log(
        self,
        level: int,
        kind: str,
        message: str,
        *args: object,
        exc_info: bool = False,
        now: float | None = None,
    ) -> bool:
        """Log ``message % args`` unless ``kind`` (plural words: "malformed messages") had
        its ``burst`` this interval; True when the line was written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = _now() if now is None else now
        window = self._windows.get(kind)
        if window is None or now - window.start >= self.interval:
            if window is not None:
                self._summarise(kind, window, now)
            window = self._windows[kind] = _Window(now)
        if window.logged >= self.burst:
            window.suppressed += 1
            window.level = max(window.level, level)
            return False
        window.logged += 1
        self.logger.log(level, message, *args, exc_info=exc_info)
        return True

    def flush(self, now: float | None = None) -> None:
        """Write the summary of every kind that has lines not logged yet."""
        now = _now() if now is None else now
        for kind, window in list(self._windows.items()):
            self._summarise(kind, window, now)
            del self._windows[kind]

    @property
    def suppressed(self) -> int:
        """Lines counted but not written yet (their summary is still due)."""
        return sum(window.suppressed for window in self._windows.values())

    def _summarise(self, kind: str, window: _Window, now: float) -> None:
        if not window.suppressed:
            return
        # Every line counted came within the window: at most ``interval`` seconds.
        seconds = min(max(now - window.start, 0.0), self.interval)
        self.logger.log(
            window.level,
            "... %d more %s in %.0f s (not logged: at most %d lines per %.0f s)",
            window.suppressed,
            kind,
            seconds,
            self.burst,
            self.interval,
        )
        window.suppressed = 0
