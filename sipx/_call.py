"""Calls: the INVITE dialogs a user holds, placed (``client.call``) or received.

A :class:`Call` keeps the dialog, the SDP offer and answer, and offers what a softphone does
with a call: answer or reject it (incoming), re-INVITE, UPDATE (RFC 3311), hold, unhold,
transfer (REFER), INFO (sent, and received through ``on_info``/``info_requests``), BYE, and
``await call.wait_ended()`` for the remote hang-up. With the client's session timers on (RFC
4028) an established call runs a :class:`~sipx._session_timer.SessionTimerTask` that
refreshes the session or ends it.
"""

from __future__ import annotations

import enum
import logging
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._call_media import AudioSource, CallMedia
from ._core.builder import body_bytes
from ._core.dialog import Dialog, DialogState
from ._core.dtmf import digit_to_event
from ._core.headers import header_key
from ._core.kept_head import HeadPacker, PackedHead, unpack
from ._core.message import Request, Response
from ._core.parser import parse_message
from ._core.reliable import send_reliably
from ._core.sdp import SDPBody
from ._core.session_timer import (
    UAC,
    UAS,
    SessionTimer,
    UASChoice,
    choose_as_uas,
    negotiated,
    request_headers,
)
from ._core.transaction import ServerTransaction, make_response
from ._errors import ParseError, ProtocolError, SIPError, TransportError
from ._idle_calls import BATCH, IDLE_AFTER
from ._media_stream import MediaStats
from ._reliable import ReliableSender
from ._session_timer import SessionTimerTask
from ._trio.moment import Moment

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._placed_call import Placing
    from ._transfer import TransferResult
    from ._uas import IncomingRequest, UserAgentServer

_Kept = TypeVar("_Kept", Request, Response)
# A message kept once the call is idle: (sample, its head deflated against the sample, its
# body packed as the SDP slots keep it, or None).
_Bytes = tuple[bytes, bytes, PackedHead | None]
# A session timer noted by our 200 and not made yet: (interval, we refresh, started at).
_NotedTimer = tuple[int, bool, float]
_PACKER = HeadPacker()  # one sample head per kind for every call of the process
_BODIES = HeadPacker()  # and one sample SDP per kind (its first token: "v=0 o=user")
InfoHandler = Callable[..., Any]  # IncomingRequest -> Response | None (plain or async)
log = logging.getLogger("sipx")


class CallState(enum.Enum):
    INCOMING = "incoming"  # an INVITE arrived and is not answered yet
    CALLING = "calling"  # our INVITE is pending
    EARLY = "early"  # a provisional response with a To tag was sent or received
    ESTABLISHED = "established"  # 2xx sent or received
    ENDED = "ended"


class Call:
    """One call. ``direction`` is ``"outgoing"`` or ``"incoming"``.

    Once an incoming call is established and ACKed it keeps only what later requests need:
    the INVITE, our 200 and the SDPs as bytes (``invite``, ``final_response``, ``offer``,
    ``remote_sdp``... parse them again when read), no server transaction, no task and no
    ``trio.Event`` until someone waits.
    """

    __slots__ = (
        "__weakref__",
        "_acked",
        "_acked_event",
        "_answer",
        "_contact",
        "_early_dialog",
        "_ended_event",
        "_engine",
        "_final",
        "_first_choice",
        "_info_handler",
        "_info_listeners",
        "_invite",
        "_local",
        "_media",
        "_offered",
        "_peer_allows_update",
        "_placing",
        "_reinviting",
        "_reliable",
        "_remote",
        "_remote_uri",
        "_session_timer",
        "_uac",
        "_uas",
        "call_id",
        "client",
        "dialog",
        "direction",
        "ended_by",
        "local_tag",
        "replaced_by",
        "state",
        "transaction",
    )

    def __init__(
        self,
        uas: UserAgentServer,
        invite: Request,
        *,
        direction: str,
        transaction: ServerTransaction | None = None,
        local_tag: str | None = None,
        media: CallMedia | None = None,
    ) -> None:
        self.client: AsyncClient = uas.client
        self._uas = uas
        self._engine = uas.engine
        self._uac = uas.uac
        self._invite: Request | _Bytes = invite
        self.call_id = invite.call_id
        self._remote_uri: str | None = None  # once the INVITE is kept as bytes
        self._contact: str | None = None  # our Contact in the dialog, once answered
        self.direction = direction
        self.transaction = transaction
        self.local_tag = local_tag
        self.dialog: Dialog | None = None
        self.state = CallState.INCOMING if direction == "incoming" else CallState.CALLING
        # The SDPs: parsed, or bytes once the call is idle (parsed again when read).
        offer = _sdp(invite)
        self._offered: SDPBody | PackedHead | None = offer
        self._answer: SDPBody | PackedHead | None = None
        self._local: SDPBody | PackedHead | None = offer if direction == "outgoing" else None
        self._remote: SDPBody | PackedHead | None = offer if direction == "incoming" else None
        self._final: Response | _Bytes | None = None
        # "local", "remote", "cancel", "timeout", "rejected", "transferred",
        # "replaced" or "session-expired"
        self.ended_by: str | None = None
        # The call that took this one's place: a transfer we carried out, or an INVITE with
        # Replaces that named this call (RFC 3515, RFC 3891).
        self.replaced_by: Call | None = None
        self._info_handler: InfoHandler | None = None
        self._info_listeners: list[trio.MemorySendChannel[IncomingRequest]] | None = None
        self._ended_event: Moment | None = None  # made when someone waits
        self._reinviting = False  # our re-INVITE/UPDATE offer is pending: a crossing one gets 491
        self._early_dialog: Dialog | None = None  # the UAS's early dialog, from ring()
        # The session timer's task; ``(interval, we_refresh, started)`` until the call is
        # made idle or the timer is needed (a call hung up after its ACK never makes one).
        self._session_timer: SessionTimerTask | _NotedTimer | None = None
        self._peer_allows_update = False  # the peer's Allow lists UPDATE (refresh with it)
        self._acked = False
        self._acked_event: Moment | None = None  # made when someone waits
        self._media = media if media is not None else CallMedia(uas.engine, None, uas.media_clock)
        self._reliable: ReliableSender | None = None  # our reliable 1xx (RFC 3262), if any
        # The session-interval choice made when the INVITE came (in a 1-tuple), for answer().
        self._first_choice: tuple[UASChoice | None] | None = None
        self._placing: Placing | None = None  # our INVITE, going on after call() returned

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.invite.uri} {self.state.value}>"

    # -- properties ------------------------------------------------------------------------
    @property
    def invite(self) -> Request:
        """The INVITE. Once an incoming call is established and ACKed it is kept as bytes:
        each read then parses a fresh copy of it."""
        invite = self._invite
        if type(invite) is not tuple:  # (a type test, not an isinstance call: every read)
            return invite  # type: ignore[return-value]
        return _parse_kept(invite, Request)

    @invite.setter
    def invite(self, request: Request) -> None:
        self._invite = request
        self.call_id = request.call_id
        self._remote_uri = None

    @property
    def final_response(self) -> Response | None:
        """The INVITE's final response (for an incoming call, ours; kept as bytes and
        parsed again on each read once the call is idle)."""
        final = self._final
        if type(final) is not tuple:
            return final  # type: ignore[return-value]
        return _parse_kept(final, Response)

    @final_response.setter
    def final_response(self, response: Response | None) -> None:
        self._final = response

    @property
    def offer(self) -> SDPBody | None:
        """The SDP offer of the INVITE (ours for a placed call, the caller's otherwise)."""
        value = self._offered
        return self._sdp_in("_offered") if type(value) is tuple else value  # type: ignore[return-value]

    @offer.setter
    def offer(self, sdp: SDPBody | None) -> None:
        self._offered = sdp

    @property
    def answer_sdp(self) -> SDPBody | None:
        """The SDP answer to the INVITE's offer (or, for a late offer, the ACK's)."""
        value = self._answer
        return self._sdp_in("_answer") if type(value) is tuple else value  # type: ignore[return-value]

    @answer_sdp.setter
    def answer_sdp(self, sdp: SDPBody | None) -> None:
        self._answer = sdp

    @property
    def local_sdp(self) -> SDPBody | None:
        """Our SDP in force."""
        value = self._local
        return self._sdp_in("_local") if type(value) is tuple else value  # type: ignore[return-value]

    @local_sdp.setter
    def local_sdp(self, sdp: SDPBody | None) -> None:
        self._local = sdp

    @property
    def remote_sdp(self) -> SDPBody | None:
        """The peer's SDP in force."""
        value = self._remote
        return self._sdp_in("_remote") if type(value) is tuple else value  # type: ignore[return-value]

    @remote_sdp.setter
    def remote_sdp(self, sdp: SDPBody | None) -> None:
        self._remote = sdp

    def _sdp_in(self, slot: str) -> SDPBody | None:
        """An SDP slot's value, parsed (and kept parsed) if it was kept packed."""
        value: SDPBody | PackedHead | None = getattr(self, slot)
        if isinstance(value, tuple):
            value = SDPBody.parse(unpack(value))
            setattr(self, slot, value)
        return value

    @property
    def remote_uri(self) -> str:
        if self._remote_uri is not None:
            return self._remote_uri
        invite = self.invite
        party = invite.from_ if self.direction == "incoming" else invite.to
        return str(party.uri)

    @property
    def acked(self) -> bool:
        """True once our 2xx was ACKed (or the call ended)."""
        return self._acked

    @property
    def established(self) -> bool:
        return self.state is CallState.ESTABLISHED

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    # -- incoming: ring, answer, reject -------------------------------------------------------
    def ring(
        self,
        status_code: int = 180,
        body: SDPBody | str | None = None,
        *,
        reliable: bool | None = None,
    ) -> Response:
        """Send a provisional response (180 Ringing, or 183 Session Progress).

        A 183 without ``body`` carries our SDP answer and starts the call's media at once
        (early media: ``play()`` an announcement before answering, or never answer); the
        200 then repeats the same SDP.

        ``reliable`` (RFC 3262, 100rel): None sends it reliably when the caller requires it
        (``Require: 100rel``); True whenever the caller supports it, else unreliably (a
        caller that did not ask never gets one); False never (a ValueError when the caller
        requires it). A reliable response carries ``Require: 100rel`` and ``RSeq`` and is
        resent (T1, doubling) until the caller's PRACK; 64·T1 without one rejects the call
        with 500. A second reliable one waits for the PRACK of the first; so does a 200
        after a reliable 183 with SDP (the call is established when it goes).
        """
        if not 101 <= status_code <= 199:
            raise ValueError("ring() sends a provisional response (101-199)")
        if reliable is not None and not isinstance(reliable, bool):
            raise TypeError(f"reliable is True, False or None, not {reliable!r}")
        reliably = send_reliably(self.invite, reliable, enabled=self._uas.reliable_provisional)
        self._check_not_answering()
        early = status_code == 183 and body is None and self.offer is not None
        if early:
            body = self._media_sdp()
        if reliably:
            response = self._respond(status_code, body=body, send=False)
            self._reliable_sender().send(response)
        else:
            response = self._respond(status_code, body=body)
        self.state = CallState.EARLY
        if self._early_dialog is None:  # in-dialog requests (UPDATE) may come now
            self._early_dialog = self._uas.early_dialog(self, response)
        if early:
            self._media.negotiated(self.local_sdp, self.offer, we_offered=False)
        return response

    def _media_sdp(self) -> SDPBody:
        """Our SDP with sipx media (made once: a 183 and the 200 carry the same)."""
        if self._media.stream is None:
            try:
                self._media.stream = self._uas.new_media_stream()
            except TransportError:
                # No RTP port: the call cannot be set up (RFC 3261 21.5.4).
                self.reject(503, "No Media Port Available", headers={"Retry-After": "5"})
                raise
            self.local_sdp = self._uas.default_sdp(self.offer, port=self._media.stream.local_port)
            if self.offer is not None:
                self.answer_sdp = self.local_sdp
        assert self.local_sdp is not None
        return self.local_sdp

    def answer(
        self, body: SDPBody | str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Answer with 200 OK; without ``body`` an SDP answer to the offer is made.

        With no offer in the INVITE (late offer) ``body`` is our offer and the answer arrives
        in the ACK. After a reliable 183 with SDP whose PRACK has not come yet, the 200 waits
        for it (RFC 3262 3) and the call is established when it goes.
        """
        self._check_not_answering()
        if body is None:
            body = self._media_sdp()
        sdp = body if isinstance(body, SDPBody) else SDPBody.parse(body)
        # (The slots themselves: no property call for what is known here.)
        if self._offered is not None:
            self._answer = sdp
        self._local = sdp
        first, self._first_choice = self._first_choice, None
        try:
            if first is not None and self._running_timer() is None:
                choice = first[0]  # made when the INVITE came, from the same INVITE
            else:
                choice = self._session_choice(self.invite)
        except ParseError:  # refused before the call was offered to the user (422/400)
            choice = None
        if choice is not None and choice.status != 200:
            choice = None
        ours = choice.headers if choice is not None else {}
        fields: dict[str, str] | None = None
        checked: Sequence[tuple[str, str, str]] = ()
        if headers or self._uas.info_packages:
            fields = {**ours, **(headers or {})}
            fields.setdefault("Allow", self._uas.allow_header())
            if self._uas.info_packages:  # RFC 6086 5.2.2: the Info Packages we take
                fields.setdefault("Recv-Info", ", ".join(self._uas.info_packages))
        else:  # only fields sipx made (the session timer's, Allow): added as they are
            checked = _checked_fields(ours, self._uas.allow_header())
        try:
            response = self._respond(200, body=sdp, headers=fields, send=False, extra=checked)
            if self._reliable is not None and self._reliable.hold_2xx(
                lambda: self._send_answer(response, sdp, choice)
            ):
                return response  # RFC 3262 3: it goes with the PRACK of our 1xx with SDP
            now = self._engine.now()  # one clock read: the 200 sent, resent, the timer
            self._transmit(response, now)
        except BaseException:
            self._media.close()
            raise
        # Without the user's fields our 200's To tag is the call's (make_response's).
        self._answered(response, sdp, choice, None if headers else self.local_tag, now)
        return response

    def _check_not_answering(self) -> None:
        if self._reliable is not None and self._reliable.holding:
            raise ProtocolError("the call is answered: its 200 waits for the PRACK of our 1xx")

    def _send_answer(self, response: Response, sdp: SDPBody, choice: UASChoice | None) -> None:
        """The held 200 goes: the PRACK of our reliable 1xx with SDP arrived."""
        self._transmit(response)
        self._answered(response, sdp, choice)

    def _answered(
        self,
        response: Response,
        sdp: SDPBody,
        choice: UASChoice | None,
        tag: str | None = None,
        now: float | None = None,
    ) -> None:
        """Our 200 went out: the dialog is confirmed on our side, resent until the ACK; the
        session timer starts as our 200 says (RFC 4028 9). ``tag``: the 200's To tag, when
        known without reading its To (then its other fields are sipx's too: its CSeq is
        the INVITE's); ``now``: when it was sent."""
        self._final = response
        invite = self.invite
        self.dialog = self._uas.dialog_from_incoming(
            invite, response, self, self._early_dialog, tag
        )
        self.state = CallState.ESTABLISHED
        seq = None if tag is None else invite.cseq.seq  # parsed already, as the 200's is not
        self._uas.retransmit_2xx(self, response, seq, now)
        self._media.negotiated(sdp, self.offer, we_offered=False)
        self._peer_allows_update = (
            invite.headers.first_of_key("allow") is not None and "UPDATE" in invite.allow
        )
        if choice is not None and choice.session is not None:
            self._session_refreshed(
                choice.session.delta, choice.session.refresher == UAS, until_idle=True, now=now
            )

    def reject(
        self,
        status_code: int = 486,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Refuse the call (486 Busy Here by default)."""
        if status_code < 300:
            raise ValueError("reject() needs a status code of 300 or more")
        response = self._respond(status_code, reason, headers=headers)
        self.final_response = response
        self._end("local")
        return response

    def respond(
        self,
        status_code: int,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: SDPBody | str | bytes | None = None,
    ) -> Response:
        """Send any response to the INVITE (prefer ring/answer/reject)."""
        return self._respond(status_code, reason, headers=headers, body=body)

    def _respond(
        self,
        status_code: int,
        reason: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        body: SDPBody | str | bytes | None = None,
        send: bool = True,
        extra: Iterable[tuple[str, str, str]] = (),
    ) -> Response:
        """``extra``: fields sipx made, checked already (``(key, name, value)``), added
        after our Contact and the Record-Route copies, before ``headers``."""
        if self.direction != "incoming":
            raise ProtocolError("only an incoming call is answered")
        if self._final is not None:
            final = self.final_response
            assert final is not None
            raise ProtocolError(f"the call was already answered with {final.status_code}")
        invite = self.invite
        if self.transaction is None:
            raise ProtocolError("only an incoming call is answered")
        # Our Contact and the INVITE's Record-Route (RFC 3261 12.1.1) go in as checked
        # fields with the copied ones: no header index made and dropped for each.
        fields: list[tuple[str, str, str]] = []
        if 100 < status_code < 300:
            fields.append(("contact", "Contact", self._our_contact()))
            if invite.headers.first_of_key("record-route") is not None:
                for route in invite.headers.get_list("Record-Route"):
                    fields.append(("record-route", "Record-Route", route))
        fields.extend(extra)
        content = b"" if body is None else body_bytes(body)
        typed = False  # the body's Content-Type is among the fields given to make_response
        if content and not headers:  # no field of the user's: our Content-Type goes last
            for key, _, _ in fields:
                if key == "content-type":
                    break
            else:
                fields.append(("content-type", "Content-Type", "application/sdp"))
            typed = True
        response = make_response(
            invite,
            status_code,
            reason,
            to_tag=self.local_tag if status_code > 100 else None,
            extra=fields,
        )
        if headers:
            for name, value in headers.items():
                response.headers[name] = value
        if body is not None:
            response.content = content
            if content and not typed:
                for key, _, _ in response.headers.entries:
                    if key == "content-type":
                        break
                else:
                    response.headers.add("Content-Type", "application/sdp")
        if send:
            self._transmit(response)
        return response

    def _our_contact(self) -> str:
        """Our Contact in this call's dialog (the one our 200 carried, once answered);
        checked as a header value when made."""
        if self._contact is None:
            contact = self._uas.contact_for(self.invite)
            if "\r" in contact or "\n" in contact:
                raise ValueError(f"header value must not contain CR or LF: {contact!r}")
            self._contact = contact.strip(" \t")
        return self._contact

    def _transmit(self, response: Response, now: float | None = None) -> None:
        assert self.transaction is not None
        if not self._engine.respond(self.transaction, response, now):
            raise ProtocolError(f"the transaction no longer takes a {response.status_code}")
        if response.status_code >= 200 and self._reliable is not None:
            self._reliable.final_sent()

    def _reliable_sender(self) -> ReliableSender:
        if self._reliable is None:
            assert self.transaction is not None
            self._reliable = ReliableSender(self._engine, self.transaction, self._no_prack)
        return self._reliable

    def _no_prack(self) -> None:
        """64·T1 without the PRACK of our reliable 1xx: reject the INVITE with a 5xx
        (RFC 3262 3) and end the call."""
        if self._final is not None or self.ended or self.transaction is None:
            return
        response = make_response(self.invite, 500, "No PRACK Received", to_tag=self.local_tag)
        self._end("timeout")
        self.final_response = response
        self._engine.respond(self.transaction, response)

    def _on_prack(self, request: Request, respond: Callable[[int], object]) -> None:
        if self._reliable is None:
            respond(481)
        else:
            self._reliable.prack(request, respond)

    # -- in-dialog requests (both directions) -----------------------------------------------------
    def _require_dialog(self) -> Dialog:
        if self.dialog is None or self.dialog.state is DialogState.TERMINATED:
            raise ProtocolError("the call has no active dialog")
        return self.dialog

    async def reinvite(
        self,
        body: SDPBody | str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send a re-INVITE with a new offer (our last SDP by default) and ACK its 2xx.

        A 491 (both sides re-INVITEd at once, RFC 3261 14.1) is retried after the random
        wait the RFC gives each side, up to three times.
        """
        dialog = self._require_dialog()
        sdp = body if body is not None else self.local_sdp
        return await self._offer("INVITE", dialog, sdp, headers, timeout)

    async def update(
        self,
        body: SDPBody | str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send UPDATE (RFC 3311) with a new offer, our last SDP by default; no ACK.

        Works in the confirmed dialog and, for an incoming call, in the early dialog once
        ``ring()`` has sent a provisional response (after ``ring(183)``: its SDP was the
        answer, so a new offer may follow). The 2xx carries the answer; the media follow
        it. A 491 (crossing offers) is retried as :meth:`reinvite` does.
        """
        dialog = self._update_dialog()
        sdp = body if body is not None else self.local_sdp
        if sdp is None:
            raise ProtocolError("the call has no SDP to offer in an UPDATE")
        return await self._offer("UPDATE", dialog, sdp, headers, timeout)

    def _update_dialog(self) -> Dialog:
        if self.dialog is not None and self.dialog.state is not DialogState.TERMINATED:
            return self.dialog
        early = self._early_dialog
        if early is not None and early.state is DialogState.EARLY and not self.ended:
            return early
        raise ProtocolError("the call has no dialog for an UPDATE (ring() or answer first)")

    async def _offer(
        self,
        method: str,
        dialog: Dialog,
        sdp: SDPBody | str | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> Response:
        """A re-INVITE or UPDATE within ``dialog``, with ``sdp`` as the offer (None: none),
        retried after a 491; its 2xx updates the SDP, the media and the session timer."""
        content = sdp.to_bytes() if isinstance(sdp, SDPBody) else (sdp.encode() if sdp else None)
        fields = self._session_request_headers()
        fields.update(headers or {})
        if content:
            fields.setdefault("Content-Type", "application/sdp")
        fields.setdefault("Contact", self._our_contact())
        for _ in range(4):
            request = dialog.create_request(method, headers=fields, content=content)
            self._reinviting = method == "INVITE" or content is not None
            try:
                response = await self._uac.send_in_dialog(dialog, request, timeout=timeout)
            finally:
                self._reinviting = False
            if response.status_code != 491:
                break
            await trio.sleep(self._glare_wait())
        if response.is_success:
            if isinstance(sdp, SDPBody):
                self.local_sdp = sdp
            elif sdp:
                self.local_sdp = SDPBody.parse(sdp)
            remote = _sdp(response)
            if remote is not None:
                self.remote_sdp = remote
            if method == "INVITE":
                await self._uac.ack(dialog, response)
            if method == "INVITE" or content is not None:
                self._media.negotiated(self.local_sdp, remote, we_offered=True)
            self._session_answered(response)
        return response

    def _sdps_settled(self) -> None:
        """An exchange of SDPs sipx made (a session refresh, a peer's re-INVITE or UPDATE)
        is over: an idle call's SDPs go back to bytes. (One the user handed to reinvite()
        or update() stays the object given.)"""
        if self.direction == "outgoing" or not isinstance(self._invite, Request):
            self._keep_sdps_as_bytes()

    def _glare_wait(self) -> float:
        """RFC 3261 14.1: 2.1-4 s when we own the Call-ID (we sent the first INVITE), else
        0-2 s, in units of 10 ms."""
        token = int(self._engine.ids.token(2), 16)
        if self.direction == "outgoing":
            return 2.1 + (token % 191) / 100
        return (token % 201) / 100

    async def hold(self) -> Response:
        """Put the call on hold: re-INVITE with our SDP set to sendonly."""
        return await self._redirect("sendonly")

    async def unhold(self) -> Response:
        """Take the call off hold: re-INVITE with our SDP set to sendrecv."""
        return await self._redirect("sendrecv")

    async def _redirect(self, direction: str) -> Response:
        if self.local_sdp is None:
            raise ProtocolError("the call has no local SDP to change")
        return await self.reinvite(self.local_sdp.with_direction(direction))

    async def refer(self, refer_to: str) -> Response:
        """Send a bare REFER (RFC 3515) and return its response; ``transfer()`` also
        follows the outcome."""
        return await self.client.refer(refer_to=refer_to, dialog_id=self._require_dialog().id)

    async def transfer(self, target: str | Call, *, timeout: float | None = None) -> TransferResult:
        """Transfer the peer (RFC 3515, RFC 5589): a URI for a blind transfer, another
        established Call for an attended one (its peer is asked to take over that call:
        REFER with Replaces, RFC 3891). Waits until the peer's NOTIFYs report the new call's
        final status (at most ``timeout`` seconds, by default 212 s) and returns it as a
        :class:`~sipx.TransferResult`. When it succeeded this call is ended with BYE
        (RFC 5589); a failed transfer leaves it up (take the peer back with ``unhold()``)."""
        return await self._uas.transfers.transfer(self, target, timeout)

    async def info(
        self,
        body: str | bytes,
        content_type: str = "application/dtmf-relay",
        *,
        info_package: str | None = None,
    ) -> Response:
        """Send INFO within the call (RFC 6086; DTMF relay by default); ``info_package``
        names its Info-Package (legacy INFO without one when None)."""
        headers = {"Info-Package": info_package} if info_package else None
        return await self.client.info(
            body=body,
            content_type=content_type,
            dialog_id=self._require_dialog().id,
            headers=headers,
        )

    def on_info(self, handler: InfoHandler | None) -> None:
        """Handle the INFO requests of this call (RFC 6086): ``handler`` (plain or async)
        gets each :class:`~sipx.IncomingRequest` and may answer it; a handler that does not
        gets 200 sent for it. ``None`` removes it. It takes precedence over
        ``client.on_request("INFO", ...)`` for this call."""
        self._info_handler = handler

    def info_requests(self) -> AsyncIterator[IncomingRequest]:
        """The INFO requests the peer sends in this call, from now until it ends, each
        already answered (by the ``on_info`` handler, or 200)."""
        channel: tuple[
            trio.MemorySendChannel[IncomingRequest], trio.MemoryReceiveChannel[IncomingRequest]
        ] = trio.open_memory_channel(math.inf)
        send, receive = channel
        if self.ended:
            send.close()
        else:
            if self._info_listeners is None:
                self._info_listeners = []
            self._info_listeners.append(send)
        return self._infos(send, receive)

    async def _infos(
        self,
        send: trio.MemorySendChannel[IncomingRequest],
        receive: trio.MemoryReceiveChannel[IncomingRequest],
    ) -> AsyncIterator[IncomingRequest]:
        try:
            async with receive:
                async for incoming in receive:
                    yield incoming
        finally:
            if self._info_listeners is not None and send in self._info_listeners:
                self._info_listeners.remove(send)

    async def bye(self) -> Response:
        """Hang up: BYE within the dialog. A placed call not answered yet (returned early,
        at early media) is CANCELled instead (RFC 3261 15): this returns the INVITE's final
        response (487), or BYEs the call when a 2xx crossed the CANCEL."""
        placing = self._placing
        if placing is not None and self.final_response is None and not self.ended:
            await self.cancel()
            final = await self.wait_answered()
            if not self.established:
                return final
        return await self._uac.bye(self._require_dialog())

    hangup = bye

    async def cancel(self) -> Response:
        """CANCEL our INVITE of a call placed with ``early_media=True`` and not answered
        yet; returns the CANCEL's response. The INVITE then ends with 487 and the call
        with it (``ended_by`` "local"); see :meth:`wait_answered`."""
        pending = self._uac.pending_invites.get(self.call_id)
        if self._placing is None or pending is None or self.final_response is not None:
            raise ProtocolError("no INVITE of this call is pending")
        self._placing.hung_up = True
        return await self._uac.cancel(pending)

    async def wait_answered(self) -> Response:
        """The INVITE's final response, once it arrived: a call placed with
        ``early_media=True`` returns at early media, and this waits for the answer (2xx:
        ``established``) or the refusal (the call ended, ``ended_by`` "rejected"). When
        the INVITE failed meanwhile this raises why (:class:`TimeoutError`,
        :class:`TransportError`, :class:`ClientClosedError`)."""
        placing = self._placing
        if placing is not None:
            await placing.done.wait()
            if placing.error is not None:
                raise placing.error
        final = self.final_response
        if final is None:
            raise ProtocolError("the call has no final response yet (an incoming call?)")
        return final

    async def wait_ended(self) -> str | None:
        """Wait until the call ends (either side); returns who ended it."""
        if self.state is not CallState.ENDED:
            if self._ended_event is None:
                self._ended_event = Moment()
            await self._ended_event.wait()
        return self.ended_by

    async def wait_acked(self) -> None:
        """Wait for the ACK of our 2xx (incoming calls)."""
        if not self._acked:
            if self._acked_event is None:
                self._acked_event = Moment()
            await self._acked_event.wait()
            self._acked_event = None  # came for good: an idle call keeps no Moment

    # -- media ---------------------------------------------------------------------------------
    async def play(self, source: AudioSource) -> None:
        """Send audio to the peer and return once its last packet is sent (cancellable).

        ``source``: a WAV file's path (other rates and stereo are converted to 8 kHz mono),
        16-bit 8 kHz mono PCM bytes, or an iterable of 20 ms frames (320 bytes each).
        """
        await self._media.play(source)

    async def send_audio(self, frames: Iterable[bytes] | AsyncIterable[bytes]) -> None:
        """Send 20 ms frames (320 bytes of 16-bit 8 kHz PCM each) as they come."""
        await self._media.send_audio(frames)

    def audio_frames(self) -> AsyncIterator[bytes]:
        """Decoded 20 ms frames of what the peer sends, from now until the call ends."""
        return self._media.audio_frames()

    def recording(self, path: str | os.PathLike[str]) -> AbstractAsyncContextManager[None]:
        """``async with call.recording("in.wav"):`` writes what the peer sends, decoded, to
        a WAV file (8 kHz mono 16-bit) when the block ends."""
        return self._media.recording(path)

    async def send_dtmf(
        self, digits: str, *, method: str = "auto", duration: float = 0.1, gap: float = 0.05
    ) -> None:
        """Send DTMF digits (0-9, *, #, A-D): ``method="rfc4733"`` (RTP telephone-events),
        ``"info"`` (SIP INFO, application/dtmf-relay) or ``"auto"`` (RFC 4733 when
        negotiated, else INFO). ``duration`` and ``gap`` are seconds per digit and between."""
        for digit in digits:
            digit_to_event(digit)  # ValueError now, before anything is sent
        if method not in ("auto", "rfc4733", "info"):
            raise ValueError(f"method is 'auto', 'rfc4733' or 'info', not {method!r}")
        if method == "rfc4733" or (method == "auto" and self._media.rfc4733):
            await self._media.send_rfc4733(digits, duration, gap)
            return
        for digit in digits:
            body = f"Signal={digit.upper()}\r\nDuration={round(duration * 1000)}\r\n"
            await self.info(body, "application/dtmf-relay")
            await trio.sleep(gap)

    async def collect_dtmf(self, count: int, timeout: float | None = None) -> str:
        """Wait for ``count`` digits (RFC 4733 or INFO); fewer if ``timeout`` passes first."""
        return await self._media.collect_dtmf(count, timeout)

    def dtmf(self) -> AsyncIterator[str]:
        """The digits the peer sends (RFC 4733 or INFO), as they arrive."""
        return self._media.dtmf()

    @property
    def media_stats(self) -> MediaStats | None:
        """Packets and bytes sent and received, loss, jitter, codec, addresses (None when
        the call carries no sipx media)."""
        return self._media.stats

    # -- session timer (RFC 4028) ----------------------------------------------------------------
    def _session_choice(self, request: Request) -> UASChoice | None:
        """Our answer, as UAS, about the session interval of ``request`` (None: timers off).

        ParseError for a malformed Session-Expires or Min-SE."""
        interval = self._uas.session_expires
        if interval is None:
            return None
        keep = None
        timer = self._running_timer()
        if timer is not None:  # a refresh: the interval and the refresher stay as they are
            interval = timer.interval
            keep = UAS if timer.we_refresh else UAC
        return choose_as_uas(request, interval=interval, min_se=self._uas.min_se, keep=keep)

    def _refuse_session(self) -> bool:
        """A new INVITE whose session interval we cannot take: 422 (or 400), at once."""
        try:
            choice = self._session_choice(self.invite)
        except ParseError:
            self.reject(400, "Bad Session-Expires or Min-SE")
            return True
        if choice is not None and choice.status == 422:
            self.reject(422, headers=choice.headers)
            return True
        self._first_choice = (choice,)
        return False

    def _running_timer(self) -> SessionTimer | None:
        if self._session_timer is None:  # (the usual: no timer yet, no call to learn it)
            return None
        task = self._timer_task()
        return None if task is None or task.stopped else task.timer

    def _timer_task(self) -> SessionTimerTask | None:
        """The session timer's task, made now from what our 200 noted (answer()) if it
        was not made yet; not started (in the heap) by this."""
        task = self._session_timer
        if type(task) is not tuple:  # (a type test, not an isinstance call: every read)
            return task  # type: ignore[return-value]
        interval, we_refresh, started = task
        made = self._session_timer = SessionTimerTask(
            self._uas.session_timers,
            SessionTimer(interval, we_refresh, started),
            self._refresh_session,
            self._session_expired,
        )
        return made

    def _stop_session_timer(self) -> None:
        """No session timer from now on: its task leaves the heap (one only noted by our
        200 is in none: dropped)."""
        task = self._session_timer
        if task is not None:
            if type(task) is not tuple:
                task.stop()  # type: ignore[union-attr]
            self._session_timer = None

    def _session_request_headers(self) -> dict[str, str]:
        """Session-Expires and the rest for our re-INVITE or UPDATE (RFC 4028 7.4)."""
        timer = self._running_timer()
        if timer is None:
            return {}
        min_se = min(self._uas.min_se, timer.interval)
        return request_headers(timer.interval, min_se, UAC if timer.we_refresh else UAS)

    def _session_refreshed(
        self,
        interval: int,
        we_refresh: bool,
        *,
        until_idle: bool = False,
        now: float | None = None,
    ) -> None:
        """A 2xx (sent or received) settled the session interval: (re)start the timer.

        ``until_idle`` (our 200 to a new INVITE): the timer runs from now, but its first
        deadline goes into the client's heap only when the call is made idle
        (:meth:`_keep_less`, at most ``IDLE_AFTER + BATCH`` after the ACK), when the
        deadline comes later than that can be (the call ends 64·T1 after the 200 without
        an ACK): a call hung up right after its ACK never touches the heap, nor makes the
        timer's task (only ``(interval, we_refresh, started)`` is noted until then)."""
        if self.ended or not self._engine.running:
            return
        task = None if self._session_timer is None else self._timer_task()
        if task is not None and not task.stopped:
            task.refreshed(interval, we_refresh)
            return
        if now is None:
            now = self._engine.now()
        # The first deadline is half the interval away at the soonest (the refresh; the
        # expiry comes later): a call made idle before it only notes when the timer
        # started, and its task is made then (_keep_less) or when the timer is read.
        if until_idle and interval / 2 > _latest_idle(self._engine.timers.t1):
            self._session_timer = (interval, we_refresh, now)
            return
        timer = SessionTimer(interval, we_refresh, now)
        task = SessionTimerTask(
            self._uas.session_timers,
            timer,
            self._refresh_session,
            self._session_expired,
        )
        self._session_timer = task
        task.start()

    def _session_answered(self, response: Response) -> None:
        """The 2xx to our INVITE, re-INVITE or UPDATE (RFC 4028 7.2): its Session-Expires
        rules. Without one the session no longer expires, for the side that does not
        refresh; the refresher goes on with the interval it had (a peer that does not
        support timers answers refreshes without it, and refreshing costs nothing)."""
        if self._uas.session_expires is None or self.state is not CallState.ESTABLISHED:
            return
        session = negotiated(response)
        timer = self._running_timer()
        if session is not None:
            self._session_refreshed(session.delta, session.refresher == UAC)
        elif timer is not None and timer.we_refresh:
            self._session_refreshed(timer.interval, True)
        else:
            self._stop_session_timer()

    async def _refresh_session(self) -> Response | None:
        """The refresher's refresh (RFC 4028 10): UPDATE without a body when the peer
        allows UPDATE, else a re-INVITE with our SDP unchanged. None: put off, because an
        offer of ours is on its way (its 2xx refreshes the session)."""
        dialog = self.dialog
        if self._reinviting or dialog is None or dialog.state is DialogState.TERMINATED:
            return None
        if self._peer_allows_update:
            return await self._offer("UPDATE", dialog, None, None, None)
        try:
            return await self._offer("INVITE", dialog, self.local_sdp, None, None)
        finally:
            self._sdps_settled()

    def _session_expired(self, why: str) -> None:
        """No refresh in time, or a refresh failed: BYE (RFC 4028 10)."""
        log.info("call %s: %s; ending it with BYE", self.call_id, why)
        dialog = self.dialog
        self._end("session-expired")  # first: the BYE would record the end as "local"
        if dialog is not None and self._engine.running:
            self._engine.start_soon(self._quiet_bye, dialog)

    async def _quiet_bye(self, dialog: Dialog) -> None:
        try:
            await self._uac.bye(dialog)
        except SIPError as exc:
            log.info("BYE after the session expired failed: %s", exc)

    @property
    def session_expires(self) -> int | None:
        """The session interval in force (RFC 4028), in seconds; None when the call has no
        session timer."""
        timer = self._running_timer()
        return None if timer is None else timer.interval

    @property
    def session_refresher(self) -> str | None:
        """Who refreshes the session: ``"local"`` (sipx sends the refreshes) or
        ``"remote"``; None when the call has no session timer."""
        timer = self._running_timer()
        if timer is None:
            return None
        return "local" if timer.we_refresh else "remote"

    # -- called by the client -----------------------------------------------------------------
    def _on_target_refresh(self, incoming: IncomingRequest) -> Response:
        """A re-INVITE or UPDATE from the peer, answered here: 491 while an offer of ours
        is pending (RFC 3261 14.2, RFC 3311 5.2); 500 for an UPDATE offer before we
        answered the INVITE's (RFC 3311 5.2); 488 for a body that is no SDP offer in an
        UPDATE; 422 for a session interval too small; else 200 with our answer to its
        offer (none for an UPDATE without one) and the session interval."""
        request = incoming.request
        is_invite = request.method == "INVITE"
        offer = _sdp(request)
        if (is_invite or request.content) and self._reinviting:
            return incoming.respond(491)
        if not is_invite and request.content:
            if offer is None:
                return incoming.respond(488)
            if self._final is None and self._offered is not None and self._answer is None:
                wait = int(self._engine.ids.token(1), 16) % 11
                return incoming.respond(500, headers={"Retry-After": str(wait)})
        established = self.state is CallState.ESTABLISHED
        try:
            choice = self._session_choice(request) if established else None
        except ParseError:
            return incoming.respond(400, "Bad Session-Expires or Min-SE")
        if choice is not None and choice.status == 422:
            return incoming.respond(422, headers=choice.headers)
        answer = self._on_reinvite(request) if is_invite or offer is not None else None
        fields = {"Contact": self._our_contact()}
        if choice is not None:
            fields.update(choice.headers)
        response = incoming.respond(200, body=answer, headers=fields)
        if choice is not None and choice.session is not None:
            self._session_refreshed(choice.session.delta, choice.session.refresher == UAS)
        if answer is not None:
            self._sdps_settled()
        return response

    def _on_ack(self, ack: Request) -> None:
        if self._answer is None and ack.content:
            remote = _sdp(ack)
            if remote is not None:
                self.remote_sdp = remote
                self.answer_sdp = remote
                self._media.negotiated(self.local_sdp, remote, we_offered=True)  # late offer
        if self.dialog is not None and self.dialog.state is DialogState.EARLY:
            self.dialog.state = DialogState.CONFIRMED
        self._set_acked()
        if self.state is CallState.ESTABLISHED:
            if self._engine.running:  # a little later, unless it ends first (_idle_calls.py)
                self._uas.idle_calls.add(self)
            else:
                self._keep_less()

    def _keep_sdps_as_bytes(self, sent: Mapping[int, bytes] | None = None) -> dict[int, PackedHead]:
        """Offer, answer, ours and the peer's as bytes, deflated against a sample SDP (one
        packed value per SDP, however many of the four name it); read again, each is parsed
        once more. ``sent``: by ``id()`` of an SDP, the body that carried it on the wire
        (the INVITE's offer, our 200's answer), kept as it is rather than written out
        again: that body is the SDP the two ends have. Returns the packed values by
        ``id()`` of those bodies."""
        packed: dict[int, PackedHead] = {}
        by_body: dict[int, PackedHead] = {}
        for slot in ("_offered", "_answer", "_local", "_remote"):
            sdp = getattr(self, slot)
            if isinstance(sdp, SDPBody):
                value = packed.get(id(sdp))
                if value is None:
                    data = sent.get(id(sdp)) if sent else None
                    if data is None:
                        data = sdp.to_bytes()
                    value = packed[id(sdp)] = _BODIES.pack(data)
                    by_body[id(data)] = value
                setattr(self, slot, value)
        return by_body

    def _set_acked(self) -> None:
        self._acked = True
        if self._acked_event is not None:
            self._acked_event.came()

    def _keep_less(self) -> None:
        """The ACK of our 200 arrived: the call is idle. Keep the INVITE, our 200 and the
        SDPs as bytes (parsed again when read), drop the server transaction and the reliable
        1xx state; the dialog forgets its INVITE."""
        invite = self._invite
        final = self._final
        if not isinstance(invite, Request) or final is None or self.direction != "incoming":
            return
        if self._session_timer is not None and self._engine.running:
            task = self._timer_task()  # its first deadline waited for this (answer())
            assert task is not None
            task.start()
        self._our_contact()
        self._remote_uri = str(invite.from_.uri)
        # The bodies of the INVITE and of our 200 are the offer and the answer: one bytes
        # object each, shared by the message and the SDP slots.
        sent = {id(self._offered): invite.content}
        if isinstance(final, Response):
            sent[id(self._local)] = final.content
        bodies = self._keep_sdps_as_bytes(sent)
        self._invite = _kept(invite, bodies)
        if isinstance(final, Response):
            self._final = _kept(final, bodies)
        self.transaction = None
        for dialog in (self.dialog, self._early_dialog):
            if dialog is not None and dialog.invite is invite:
                dialog.forget_invite()
        if self._early_dialog is self.dialog:
            self._early_dialog = None

    def _on_reinvite(self, request: Request) -> SDPBody | None:
        """A re-INVITE from the peer: take its offer, return our answer."""
        offer = _sdp(request)
        if offer is None:
            return self.local_sdp
        self.remote_sdp = offer
        stream = self._media.stream
        answer = self._uas.default_sdp(offer, port=None if stream is None else stream.local_port)
        previous = self.local_sdp
        if previous is not None:
            # RFC 3264 8: our origin stays; its version goes up when the SDP changes.
            answer.origin = previous.origin
            if answer.to_bytes() != previous.to_bytes():
                answer.origin = previous.origin.bumped()
        self.local_sdp = answer
        self._media.negotiated(answer, offer, we_offered=False)
        return answer

    def _end(self, by: str) -> None:
        """The call is over: record who ended it and let the engine forget it."""
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.ended_by = by
        self._media.close()
        if self._reliable is not None:
            self._reliable.close()
        self._stop_session_timer()
        engine = self._engine
        dialog = self.dialog or self._early_dialog
        if dialog is not None:
            dialog.terminate()
            dialog_id = dialog.id
            if engine.calls.get(dialog_id) is self:
                del engine.calls[dialog_id]
            if engine.dialogs.get(dialog_id) is dialog:
                del engine.dialogs[dialog_id]
            engine.cancel_retransmits(dialog_id)
        if engine.pending_calls.get(self.call_id) is self:
            del engine.pending_calls[self.call_id]
        # (An incoming call's To tag is its own: the UAS's tag map does not keep it.)
        if self.direction != "incoming" and self.dialog is not None:
            self._uac.forget(self.dialog, self.invite)
        for listener in self._info_listeners or ():
            listener.close()
        self._info_listeners = None
        self._set_acked()
        if self._ended_event is not None:
            self._ended_event.came()


# -- for the user agent (sipx._uac, sipx._uas, sipx._async_client): a call's state changes --------
def begin_placing(call: Call, placing: Placing) -> None:
    """``call`` is ours, its INVITE going on after ``call()`` returns (early media)."""
    call._placing = placing


def early_dialog_found(call: Call, dialog: Dialog) -> None:
    """Our INVITE of ``call`` has an early dialog: UPDATEs in it reach the call (and
    ``update()`` may offer in it) until the 2xx confirms a dialog."""
    call._early_dialog = dialog


def end_call(call: Call, by: str) -> None:
    """The call is over (``by``: "local", "remote", "cancel", "timeout" or "rejected")."""
    call._end(by)


def ack_received(call: Call, ack: Request) -> None:
    """The ACK of our 2xx arrived (it may carry the SDP answer to a late offer)."""
    call._on_ack(ack)


def keep_less(call: Call) -> None:
    """An ACKed call still established a little later: keep its INVITE, our 200 and its
    SDPs as bytes from now on (see ``Call``)."""
    if call.state is CallState.ESTABLISHED:
        call._keep_less()


def target_refresh_received(call: Call, incoming: IncomingRequest) -> Response:
    """The peer sent a re-INVITE or UPDATE: answer it (offer, glare, session timer)."""
    return call._on_target_refresh(incoming)


def info_handler_of(call: Call) -> InfoHandler | None:
    """The handler ``call.on_info()`` set, if any."""
    return call._info_handler


def info_received(call: Call, incoming: IncomingRequest) -> None:
    """An INFO of the call was answered: hand it to the ``info_requests()`` iterators."""
    for listener in call._info_listeners or ():
        listener.send_nowait(incoming)


def prack_received(call: Call, request: Request, respond: Callable[[int], object]) -> None:
    """A PRACK for the call: ``respond(200)`` if it acknowledges our unacknowledged
    reliable 1xx (RFC 3262 3), then the response that waited for it goes; else
    ``respond(481)``."""
    call._on_prack(request, respond)


def session_refused(call: Call) -> bool:
    """A new incoming call whose session interval is refused (422 or 400 sent)."""
    return call._refuse_session()


def session_established(call: Call, response: Response) -> None:
    """A placed call got its 2xx (and its media were set up): note what the callee allows
    and start its session timer as the 2xx says (RFC 4028 7.2); its SDPs are kept as
    bytes from now on."""
    call._peer_allows_update = "UPDATE" in response.allow
    call._session_answered(response)
    call._keep_sdps_as_bytes()


def final_sent(call: Call) -> bool:
    """The INVITE has its final response (cheaper than reading ``final_response``)."""
    return call._final is not None


def media_of(call: Call) -> CallMedia:
    """The call's media side (for the UA: INFO digits, the stream made with the offer)."""
    return call._media


def sdp_of(message: Request | Response) -> SDPBody | None:
    """The SDP body of ``message``, or None (no body, another type, or a broken SDP)."""
    return _sdp(message)


def _latest_idle(t1: float) -> float:
    """The latest a call is made idle after its 200: an ACK comes within 64·T1 (else the
    call ends), and the call waits ``IDLE_AFTER`` (plus ``BATCH``) after it."""
    return 64 * t1 + IDLE_AFTER + BATCH


_CHECKED: dict[tuple[int, str], tuple[Mapping[str, str], tuple[tuple[str, str, str], ...]]] = {}
"""The 200's session-timer fields and Allow as checked fields, by identity of the choice's
fields (a request silent about timers shares one choice) and Allow."""


def _checked_fields(ours: Mapping[str, str], allow: str) -> tuple[tuple[str, str, str], ...]:
    """``ours`` and Allow as ``(key, name, value)`` fields, made once per shared choice."""
    key = (id(ours), allow)
    known = _CHECKED.get(key)
    if known is not None and known[0] is ours:
        return known[1]
    checked = (*((header_key(name), name, value) for name, value in ours.items()),)
    checked += (("allow", "Allow", allow),)
    if len(_CHECKED) >= 16:
        _CHECKED.clear()
    _CHECKED[key] = (ours, checked)
    return checked


def _kept(message: Request | Response, bodies: Mapping[int, PackedHead]) -> _Bytes:
    """A message as the call keeps it once idle: its head deflated against a sample head
    of its kind (sipx/_core/kept_head.py) and its body packed (``bodies``: the packed
    value the SDP slots keep, by ``id()`` of the body, shared)."""
    data = message.to_bytes()
    body = message.content
    if body and data.endswith(body):
        head = data[: len(data) - len(body)]
        packed_body = bodies.get(id(body)) or _BODIES.pack(body)
    else:
        head, packed_body = data, None
    sample, packed = _PACKER.pack(head)
    return sample, packed, packed_body


def _parse_kept(data: _Bytes, kind: type[_Kept]) -> _Kept:
    """A message the call kept (it wrote the bytes itself), parsed again."""
    sample, packed, body = data
    head = unpack((sample, packed))
    message = parse_message(head if body is None else head + unpack(body))
    assert isinstance(message, kind)
    return message


def _sdp(message: Request | Response) -> SDPBody | None:
    if not message.content:
        return None
    content_type = message.headers.get_first("Content-Type") or ""
    if not content_type.lower().startswith("application/sdp"):
        return None
    try:
        return SDPBody.parse(message.content)
    except ParseError:  # a broken SDP is not a reason to drop the call
        return None
