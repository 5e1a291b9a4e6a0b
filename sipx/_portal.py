"""The blocking portal: one thread running ``trio.run``, and calls into it from others.

A :class:`Portal` is what the blocking ``Client`` and ``BlockingCall`` share: every blocking
method crosses into the portal thread with :meth:`Portal.run` (awaited functions) or
:meth:`Portal.run_sync` (plain ones, so that trio state is only touched on its own thread).
A call still waiting when the portal stops gets :class:`~sipx.ClientClosedError`, never trio's
``Cancelled``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ._errors import ClientClosedError

T = TypeVar("T")


class Portal:
    """A trio run on a daemon thread of its own."""

    def __init__(self, name: str = "sipx-portal") -> None:
        self.token: trio.lowlevel.TrioToken | None = None
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self, target: Callable[[], None]) -> None:
        """Start the thread; ``target`` runs ``trio.run`` and calls :meth:`entered` in it."""
        self._thread = threading.Thread(target=target, name=self._name, daemon=True)
        self._thread.start()

    def entered(self) -> None:
        """Called on the portal thread once trio runs there."""
        self.token = trio.lowlevel.current_trio_token()

    @property
    def thread(self) -> threading.Thread | None:
        """The portal thread (where event and request handlers of a Client run)."""
        return self._thread

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on_portal_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _require_token(self) -> trio.lowlevel.TrioToken:
        if self.token is None or not self.alive:
            raise ClientClosedError("the client is closed; create a new one")
        return self.token

    def run(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``await function(*args, **kwargs)`` on the portal and wait for its result."""
        token = self._require_token()
        try:
            return trio.from_thread.run(
                functools.partial(function, *args, **kwargs), trio_token=token
            )
        except (trio.Cancelled, trio.RunFinishedError):
            # close() from another thread ended the portal while this call waited.
            raise ClientClosedError("the client closed while the call was waiting") from None

    def run_sync(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the plain ``function(*args, **kwargs)`` on the portal and return its result."""
        token = self._require_token()
        try:
            return trio.from_thread.run_sync(
                functools.partial(function, *args, **kwargs), trio_token=token
            )
        except trio.RunFinishedError:
            raise ClientClosedError("the client is closed; create a new one") from None

    def run_sync_soon(self, function: Callable[[], object]) -> None:
        """Queue ``function`` on the portal without waiting (safe from any thread, even a
        finaliser); nothing happens once the portal has stopped."""
        if self.token is not None:
            try:
                self.token.run_sync_soon(function)
            except trio.RunFinishedError:
                pass


__all__ = ["Portal"]
