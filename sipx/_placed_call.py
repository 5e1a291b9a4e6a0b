"""Placing a call, the caller's side of an INVITE: what its final response does to the
:class:`~sipx.Call` (ACK and establish it, or end it), and ``call(..., early_media=True)``,
which returns the call at the first provisional response carrying the callee's SDP (RFC 3261
13.2.1, RFC 3264: an answer in a reliable or unreliable 183) while the INVITE goes on in a
task of the client's nursery."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from ._call import (
    Call,
    CallState,
    begin_placing,
    early_dialog_found,
    end_call,
    media_of,
    sdp_of,
    session_established,
)
from ._call_media import CallMedia
from ._core.dialog import DialogId, dialog_id_of
from ._errors import TimeoutError
from ._types import Request, Response

if TYPE_CHECKING:
    from ._core.sdp import SDPBody
    from ._uas import UserAgentServer

log = logging.getLogger("sipx.call")


class Placing:
    """An outgoing call's INVITE still going on after ``call()`` returned (early media)."""

    __slots__ = ("abandoned", "dialog_id", "done", "early", "error", "hung_up", "scope")

    def __init__(self) -> None:
        self.done = trio.Event()  # the final response arrived (or the INVITE failed)
        self.error: Exception | None = None  # why the INVITE failed: wait_answered() raises it
        self.hung_up = False  # we CANCELled it: its 487 ends the call as "local"
        self.scope = trio.CancelScope()
        self.early = False  # call() returned the call at a provisional response
        self.dialog_id: DialogId | None = None  # the early dialog the call answers UPDATEs in
        self.abandoned = False  # call() was cancelled: an answered call is hung up at once


async def settle(
    uas: UserAgentServer, call: Call, response: Response, early_answer: SDPBody | None = None
) -> None:
    """The INVITE's final response: ACK a 2xx and establish the call (its SDP, or else the
    answer an early 183 carried), or end the call ("rejected")."""
    call.final_response = response
    replacement = uas.uac.replacements.pop(call.call_id, None)
    if replacement is not None:
        await _replaced(uas, call, response, replacement)
        return
    if not response.is_success:
        end_call(call, "rejected")
        return
    uac = uas.uac
    dialog = uac.dialog_for(response)
    call.dialog = dialog
    remote = sdp_of(response)
    answer = None
    if call.offer is None and remote is not None:
        # Late offer: our INVITE had none, the 2xx offers and the ACK answers (RFC 3261
        # 13.2.1, RFC 3264), from our media's port.
        stream = media_of(call).stream
        answer = uas.default_sdp(remote, port=None if stream is None else stream.local_port)
        call.remote_sdp = remote  # (``offer`` stays None: the INVITE's, as for the callee)
        call.local_sdp = call.answer_sdp = answer
    else:
        call.remote_sdp = call.answer_sdp = remote or early_answer
    call.state = CallState.ESTABLISHED
    uas.engine.calls[dialog.id] = call
    try:
        await uac.ack(dialog, response, answer)
    except BaseException:  # the caller gave up (cancelled) while the ACK was being made
        abandon(uas, call)
        raise
    media_of(call).negotiated(call.local_sdp, call.remote_sdp, we_offered=answer is None)
    session_established(call, response)


async def _replaced(uas: UserAgentServer, call: Call, response: Response, new: Call) -> None:
    """An INVITE with Replaces took the place of ``call`` while it rang (RFC 3891 3, the
    call's early dialog): it ends "replaced" (its ``replaced_by`` the new call) with the
    487 of our CANCEL, or, when the callee answered as the CANCEL went, ACK and BYE."""
    call.replaced_by = new
    end_call(call, "replaced")
    if response.is_success:
        with trio.move_on_after(uas.engine.timers.t1 * 64):
            await uas.uac.end_answered(response)


def abandon(uas: UserAgentServer, call: Call) -> None:
    """The callee answered ``call`` but ``call()`` did not return it (its caller was
    cancelled): nobody holds the call, so it is ACKed and ended with BYE in a task of the
    client's nursery, rather than left up until the client closes (which BYEs it then)."""
    if uas.engine.running:
        uas.engine.start_soon(hang_up, uas, call)


async def hang_up(uas: UserAgentServer, call: Call) -> None:
    """ACK ``call``'s 2xx if that did not happen, then BYE it (bounded: 64*T1)."""
    dialog, response = call.dialog, call.final_response
    assert dialog is not None and response is not None
    try:
        with trio.move_on_after(uas.engine.timers.t1 * 64):
            await uas.uac.end_answered(response, dialog)
    finally:
        if not call.ended:
            end_call(call, "local")


async def place_early(
    uas: UserAgentServer,
    request: Request,
    media: CallMedia | None,
    send: Callable[[Request], Awaitable[Response]],
) -> Call:
    """Send ``request`` (an INVITE) in a task of the client's nursery and return its
    :class:`Call` at the first provisional response with a To tag and SDP (``EARLY``, its
    media running), or once the final response settled it when none came first (as
    ``call()`` does). Cancelled before that, the INVITE is abandoned as any cancelled
    ``call()`` is (CANCEL once it was answered provisionally)."""
    placing = Placing()
    ready = trio.Event()  # call() may return: early media, or the call settled
    made: list[Call] = []  # the call, once made (by the first early response or the final)
    uac = uas.uac

    def new_call(invite: Request) -> Call:
        call = Call(uas, invite, direction="outgoing", media=media)
        begin_placing(call, placing)
        made.append(call)
        return call

    def early(response: Response) -> None:  # a 1xx with a To tag and a body (from uac)
        sdp = sdp_of(response)
        if sdp is None:
            return
        if media is not None:
            media.negotiated(sdp_of(request), sdp, we_offered=True)
        call = made[0] if made else new_call(response.request or request)
        call.remote_sdp = call.answer_sdp = sdp  # the answer, until a 2xx brings another
        dialog_id = dialog_id_of(response)
        dialog = uac.early_dialogs.get(dialog_id) if dialog_id is not None else None
        if placing.dialog_id is None and dialog is not None:  # the first fork's
            placing.dialog_id = dialog.id
            early_dialog_found(call, dialog)
            uas.engine.calls[dialog.id] = call  # its UPDATEs are the call's to answer
        if not placing.early:
            call.state = CallState.EARLY
            placing.early = True
            ready.set()

    async def invite() -> None:
        uac.early_media[request.call_id] = early
        response: Response | None = None
        try:
            try:
                with placing.scope:
                    response = await send(request)
            finally:
                uac.early_media.pop(request.call_id, None)
            if response is None:  # call() was cancelled before it returned
                _end(made, media, "local")
                return
            call = made[0] if made else new_call(response.request or request)
            if response.request is not None:
                call.invite = response.request  # the one answered (after a challenge, a retry)
            if placing.hung_up and not response.is_success:
                call.final_response = response
                end_call(call, "local")  # our CANCEL's 487
            else:
                await settle(uas, call, response, call.answer_sdp)  # a 183's, if any
            early_id = placing.dialog_id  # (a call ended forgets it itself)
            if early_id is not None and call.dialog is not None and call.dialog.id != early_id:
                uas.engine.calls.pop(early_id, None)  # another fork answered
            if placing.abandoned and call.established:  # call() was cancelled meanwhile
                await hang_up(uas, call)
        except Exception as exc:  # TimeoutError, TransportError, the client closing...
            placing.error = exc
            _end(made, media, "timeout" if isinstance(exc, TimeoutError) else "failed")
            if placing.early:  # call() returned already: wait_answered() raises it
                log.info("the INVITE of %s failed after early media: %s", made[0], exc)
        except BaseException:
            _end(made, media, "local")
            raise
        finally:
            placing.done.set()
            ready.set()

    uas.engine.start_soon(invite)
    try:
        await ready.wait()
    except BaseException:
        placing.abandoned = True  # the caller gave up: the INVITE is abandoned with it
        placing.scope.cancel()
        if placing.done.is_set() and made and made[0].established:
            abandon(uas, made[0])  # answered, but call() does not return it
        raise
    if placing.error is not None and not placing.early:
        raise placing.error  # as call() without early media would
    return made[0]


def _end(made: list[Call], media: CallMedia | None, by: str) -> None:
    if made:
        end_call(made[0], by)
    elif media is not None:
        media.close()


__all__ = ["Placing", "abandon", "hang_up", "place_early", "settle"]
