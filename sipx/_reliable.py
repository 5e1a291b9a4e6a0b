"""Sending reliable provisional responses (RFC 3262 3) for one incoming call, on trio.

A :class:`ReliableSender` belongs to one incoming INVITE. It numbers each reliable 1xx and
sends it through the INVITE's server transaction (the sans-I/O bookkeeping is
:class:`sipx._core.reliable.ReliableProvisionals`), then resends it from a task in the
engine's nursery at T1, 3·T1, 7·T1 ... until the PRACK that names it arrives; 64·T1 without
one calls ``on_give_up`` (the call rejects the INVITE with a 5xx). One reliable 1xx is
unacknowledged at a time: a later one waits for the PRACK of the one before. A 2xx that
must not overtake an unacknowledged 1xx with SDP is held and sent by the PRACK.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._core.message import Request, Response
from ._core.reliable import (
    PrackResult,
    ReliableProvisionals,
    first_rseq,
    give_up_after,
    rack_of,
    retransmission_offsets,
)
from ._core.transaction import ServerTransaction
from ._errors import ParseError, ProtocolError, SIPError

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger("sipx")


class ReliableSender:
    """One INVITE's reliable provisional responses: send, resend until PRACK, give up."""

    def __init__(
        self, engine: Engine, transaction: ServerTransaction, on_give_up: Callable[[], None]
    ) -> None:
        self._engine = engine
        self._transaction: ServerTransaction | None = transaction  # None after the final
        self._on_give_up = on_give_up
        self._state = ReliableProvisionals(first_rseq(int(engine.ids.token(4), 16)))
        self._scope: trio.CancelScope | None = None
        self._held: Callable[[], None] | None = None

    @property
    def holding(self) -> bool:
        """A 2xx waits for the PRACK of the unacknowledged 1xx."""
        return self._held is not None

    def send(self, response: Response) -> None:
        """Send ``response`` (101-199) reliably, now or after the PRACK of the one before;
        it gets ``Require: 100rel`` and its ``RSeq`` at once."""
        if self._state.add(response):
            self._transmit(response)

    def hold_2xx(self, send: Callable[[], None]) -> bool:
        """A 2xx is ready: True if it must wait for a PRACK (``send`` then runs on that
        PRACK), False if it may go now. Either way no further 1xx is sent."""
        self._state.final_sent()
        if not self._state.holds_2xx:
            return False
        self._held = send
        return True

    def final_sent(self) -> None:
        """A final response went out: stop resending, drop waiting 1xx, a held 2xx and the
        transaction (a late PRACK is still answered from the state kept)."""
        self._state.final_sent()
        self._held = None
        self._transaction = None
        self._stop()

    def close(self) -> None:
        """The call ended: nothing more is sent."""
        self.final_sent()

    def prack(self, request: Request, respond: Callable[[int], object]) -> None:
        """A PRACK arrived: ``respond(200)`` if its RAck names the unacknowledged 1xx (its
        resending stops, then the next waiting 1xx or the held 2xx goes), else
        ``respond(481)``."""
        try:
            result = self._state.prack(rack_of(request))
        except ParseError as exc:
            log.info("PRACK with a bad RAck: %s", exc)
            result = PrackResult(False, None)
        if not result.matched:
            respond(481)
            return
        self._stop()
        respond(200)
        try:
            if result.send is not None:
                self._transmit(result.send)
            elif self._held is not None and not self._state.holds_2xx:
                send, self._held = self._held, None
                send()
        except SIPError as exc:  # the INVITE was answered otherwise meanwhile (CANCEL ...)
            log.info("after the PRACK, the next response could not be sent: %s", exc)

    # -- sending and resending ---------------------------------------------------------------
    def _transmit(self, response: Response) -> None:
        transaction = self._transaction
        if transaction is None or not self._engine.respond(transaction, response):
            raise ProtocolError(f"the INVITE no longer takes a {response.status_code}")
        self._stop()
        if not self._engine.running:
            return
        scope = trio.CancelScope()
        self._scope = scope
        self._engine.start_soon(self._resend, response, scope)

    def _stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _resend(self, response: Response, scope: trio.CancelScope) -> None:
        """T1, 3·T1, 7·T1 ... after the first sending; after 64·T1, give up."""
        t1 = self._engine.timers.t1
        with scope:
            start = trio.current_time()
            for offset in retransmission_offsets(t1):
                await trio.sleep_until(start + offset)
                transaction = self._transaction
                if transaction is None or not self._engine.respond(transaction, response):
                    return  # the transaction has moved on: the INVITE is answered
            await trio.sleep_until(start + give_up_after(t1))
            self._scope = None
            self._held = None
            log.warning(
                "no PRACK for our %s %s to %s within 64*T1",
                response.status_code,
                response.reason_phrase,
                response.call_id,
            )
            self._on_give_up()


__all__ = ["ReliableSender"]
