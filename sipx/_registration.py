"""Registration (RFC 3261 10) and its automatic refresh.

:class:`Registrations` keeps one registration per AOR (one Call-ID, CSeq going up, 10.2.4),
builds its REGISTER requests, reads the expiry the registrar granted, and runs the refresh
task of each AOR whose automatic re-registration is enabled, in the engine's nursery.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from . import _validate
from ._core.builder import build_request
from ._core.ids import IdSource
from ._core.message import Request, Response
from ._core.uri import URI
from ._engine import Engine
from ._errors import ParseError, SIPError

log = logging.getLogger("sipx")

# After a failed refresh: wait FIRST_BACKOFF, doubling up to MAX_BACKOFF.
FIRST_BACKOFF = 4.0
MAX_BACKOFF = 60.0


def refresh_period(granted: float, interval: float | None = None) -> float:
    """When to refresh a binding granted for ``granted`` seconds.

    Half of it below 64 s; above, 80 % of it but at least one Timer F (32 s) before it runs
    out. So a binding is refreshed every 5 s or less only when the registrar grants under
    10 s (below that, refreshing less often would let it lapse). ``interval``, the caller's
    own choice, caps the period.
    """
    period = granted / 2 if granted < 64 else min(granted * 0.8, granted - 32.0)
    return period if interval is None else min(period, interval)


@dataclass
class Registration:
    aor: str
    call_id: str
    from_tag: str
    cseq: int = 0
    expires: int = 3600
    granted: int | None = None
    registrar: str | None = None
    registered_at: float | None = None  # trio time of the last 2xx
    # where register() was told to send it (host=, port=): refreshes go there too
    host: str | None = None
    port: int | None = None


class Registrations:
    """The registrations of one user agent, and their refresh tasks."""

    def __init__(self, engine: Engine, ids: IdSource, user_agent: str) -> None:
        self.engine = engine
        self.ids = ids
        self.user_agent = user_agent
        self.states: dict[str, Registration] = {}
        self.refreshing: dict[str, trio.CancelScope] = {}

    def build(
        self,
        aor: str,
        *,
        registrar: str | None,
        expires: int,
        headers: dict[str, str],
        host: str | None = None,
        port: int | None = None,
    ) -> Request:
        """The next REGISTER of ``aor`` (same Call-ID, CSeq + 1)."""
        _validate.uri("aor", aor)
        _validate.uri("registrar", registrar, optional=True)
        if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
            raise ValueError(f"expires is a whole number of seconds >= 0, not {expires!r}")
        aor_uri = URI.parse(str(aor))
        state = self.states.get(aor)
        if state is None:
            state = self.states[aor] = Registration(aor, self.ids.call_id(), self.ids.tag())
        state.expires = expires
        state.registrar = registrar
        state.host, state.port = host, port
        state.cseq += 1
        request_uri = (
            URI.parse(registrar)
            if registrar
            else aor_uri.replace(user=None, password=None, params={}, headers={})
        )
        return build_request(
            "REGISTER",
            request_uri,
            from_addr=f"<{aor_uri}>;tag={state.from_tag}",
            to_addr=f"<{aor_uri}>",
            call_id=state.call_id,
            cseq=state.cseq,
            headers={"Expires": str(expires), **headers},
            user_agent=self.user_agent,
        )

    def note(self, response: Response) -> None:
        """Read the expiry a 2xx to one of our REGISTERs granted (and keep CSeq in step)."""
        request = response.request
        if request is None or request.method != "REGISTER":
            return
        for state in self.states.values():
            if state.call_id != request.call_id:
                continue
            state.cseq = max(state.cseq, request.cseq.seq)
            if not response.is_success:
                return
            granted: int | None = None
            try:
                for contact in response.contact:
                    if contact.expires is not None:
                        granted = (
                            contact.expires if granted is None else min(granted, contact.expires)
                        )
                if granted is None:
                    granted = response.expires
            except ParseError:
                granted = None
            state.granted = granted if granted is not None else state.expires
            state.registered_at = trio.current_time()

    # -- automatic refresh ---------------------------------------------------------------------
    def enable(
        self,
        aor: str,
        interval: float | None,
        register: Callable[..., Awaitable[Response]],
    ) -> None:
        self.disable(aor)
        scope = trio.CancelScope()
        self.refreshing[aor] = scope
        self.engine.start_soon(self._refresh_loop, aor, interval, register, scope)

    def disable(self, aor: str | None = None) -> None:
        for key in [aor] if aor is not None else list(self.refreshing):
            scope = self.refreshing.pop(key, None)
            if scope is not None:
                scope.cancel()

    async def _refresh_loop(
        self,
        aor: str,
        interval: float | None,
        register: Callable[..., Awaitable[Response]],
        scope: trio.CancelScope,
    ) -> None:
        with scope:
            while True:
                state = self.states.get(aor)
                if state is None or state.granted is None or state.registered_at is None:
                    due = trio.current_time()  # not registered yet: register now
                else:
                    # Counted from the last 2xx: a binding that has lapsed (or is about to)
                    # is refreshed at once.
                    due = state.registered_at + refresh_period(state.granted, interval)
                await trio.sleep_until(due)
                await self._refresh(aor, state, register)

    async def _refresh(
        self,
        aor: str,
        state: Registration | None,
        register: Callable[..., Awaitable[Response]],
    ) -> None:
        backoff = FIRST_BACKOFF
        while True:
            try:
                response = await register(
                    aor,
                    registrar=state.registrar if state else None,
                    expires=(state.expires if state else 0) or 3600,
                    host=state.host if state else None,
                    port=state.port if state else None,
                )
                if response.is_success:
                    return
                log.warning("re-register of %s got %s", aor, response.status_code)
            except SIPError as exc:
                log.warning("re-register of %s failed: %s", aor, exc)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)


__all__ = ["Registration", "Registrations", "refresh_period"]
