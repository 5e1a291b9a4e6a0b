"""The user agent client side: sending requests and carrying them to a final response.

:class:`UserAgentClient` sends a request to its next hop (with RFC 3263 failover), runs one
client transaction per attempt through the engine, answers digest challenges (the flow of
:mod:`sipx._auth_flow`), keeps the INVITE bookkeeping (early dialogs, the dialog a 2xx
creates, the ACK for each 2xx and its retransmissions, RFC 3261 13.2.2.4) and CANCELs an
INVITE its caller gave up on, or that was still pending when the client closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

import trio

from . import _validate
from ._auth import Auth
from ._auth_flow import FLOW_STATUSES, AuthFlow, DigestAuth, resume_flow, run_flow
from ._call import end_call, media_of
from ._core.builder import body_bytes, build_ack_for_2xx, build_cancel
from ._core.dialog import Dialog, DialogId, dialog_id_of
from ._core.message import Request, Response
from ._core.option_tags import RELIABLE_PROVISIONAL, add_option_tag
from ._core.reliable import ProvisionalSequence, RAck, Verdict, is_reliable, rseq_of
from ._core.sdp import SDPBody
from ._core.session_timer import interval_retry_flow
from ._core.transaction import ClientTransaction, TransactionState
from ._engine import Engine, Responses
from ._errors import ParseError, ProtocolError, SIPError, TimeoutError, TransportError
from ._events import Events, RequestContext, dispatch
from ._next_hop import NextHop
from ._trio.transport import Address

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._call import Call

log = logging.getLogger("sipx")

# An INVITE with no timeout= (per call or per client) gives up after this long: a phone that
# rings for ever must not hang the caller (compare Timer C, RFC 3261 16.6).
INVITE_TIMEOUT = 180.0


_NO_DEADLINE = nullcontext()


def fail_after(seconds: float | None) -> AbstractContextManager[object]:
    """``trio.fail_after(seconds)``; no scope at all for None (nothing would cancel it)."""
    return trio.fail_after(seconds) if seconds is not None else _NO_DEADLINE


def request_key(request: Request) -> tuple[str, str | None, str]:
    """What tells a request we sent from another: Call-ID, CSeq (as written) and method."""
    return (request.call_id, request.headers.get_first("CSeq"), request.method)


class UserAgentClient:
    """Sends requests for one user agent and waits for their final responses."""

    def __init__(
        self,
        engine: Engine,
        next_hop: NextHop,
        auth: DigestAuth,
        *,
        events: Events | None,
        context_client: AsyncClient,
        timeout: float | None,
        credentials: Auth.Digest | None,
    ) -> None:
        self.engine = engine
        self.credentials = credentials  # the client's own auth=
        self.next_hop = next_hop
        self.auth = auth
        self.events = events
        self.timeout = timeout
        self._context_client = context_client  # the public client, for RequestContext
        self.early_dialogs: dict[DialogId, Dialog] = {}
        self.pending_invites: dict[str, ClientTransaction] = {}
        # Call-ID -> what to do with a 1xx carrying SDP (start a placed call's media early).
        self.early_media: dict[str, Callable[[Response], None]] = {}
        # Call-ID of a pending INVITE of ours -> the incoming call whose Replaces named its
        # early dialog (RFC 3891 3): its final response ends our call as "replaced".
        self.replacements: dict[str, Call] = {}
        # After each REGISTER's final response (to the request that got it, sent where).
        self.on_register: Callable[[Request, Response, Address], None] = lambda q, r, a: None
        # RFC 3262: announce 100rel in our INVITEs (AsyncClient(reliable_provisional=...)).
        self.reliable_provisional = True
        # The RSeq space of each reliable 1xx sender: (early dialog id, INVITE CSeq) -> ...
        self._provisionals: dict[tuple[DialogId, int], ProvisionalSequence] = {}
        # The last ACK sent in each dialog, by (Call-ID, To tag): (CSeq, bytes, address,
        # transport), resent when its 2xx is retransmitted; forgotten when the call ends.
        self._acks: dict[tuple[str, str], tuple[int, bytes, Address, str]] = {}
        self._sent_invites: dict[tuple[str, int], Request] = {}
        # Where recent requests answered with a challenge (401/407) went, so that
        # retry_with_auth() sends the retry there too.
        self._destinations: dict[tuple[str, str | None, str], Address] = {}
        # INVITEs given up on whose CANCEL still runs, each with the scope that bounds it.
        self._aborts: dict[ClientTransaction, trio.CancelScope] = {}
        self._aborts_idle = trio.Event()
        self._aborts_idle.set()
        engine.on_stray_response = self._on_stray_response
        engine.add_wind_down(self._wind_down)

    # -- out of dialog ---------------------------------------------------------------------------
    async def send(
        self,
        request: Request,
        *,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        auth: Auth.Digest | None = None,
    ) -> Response:
        """Send ``request`` out of dialog; answer challenges; return the final response."""
        if host is not None or port is not None or timeout is not None or auth is not None:
            _validate.text("host", host, optional=True)
            _validate.port("port", port, optional=True)
            timeout = _validate.timeout("timeout", timeout)
            _validate.credentials("auth", auth)
        self.engine.require_transport()
        if request.method == "INVITE":  # (the usual request: no call to find that out)
            self._announce_extensions(request)
        next_hop = self.next_hop
        if next_hop.outbound_proxy is not None:
            next_hop.add_outbound_route(request, host)
        # An IP address and a port as the next hop: its address without a coroutine.
        # ...and the transport toward it, found once (the Via's stamp takes it).
        literal, hop_transport = (
            next_hop.literal_hop(next_hop.target(request), port) if host is None else (None, None)
        )
        destinations = literal or await next_hop.candidates(request, host, port)
        seconds = timeout if timeout is not None else self.timeout
        if seconds is None and request.method == "INVITE":
            seconds = INVITE_TIMEOUT
        credentials = auth or self.credentials
        try:
            if seconds is None and credentials is None and len(destinations) == 1:
                # The usual request: no deadline (no scope to enter), nothing to prepare,
                # nothing to fail over to.
                destination = destinations[0]
                response = await self.transact(request, destination, transport_name=hop_transport)
                if response.status_code in FLOW_STATUSES:
                    response = await self._follow_flow(request, response, None, destination)
            else:
                with trio.fail_after(seconds) if seconds is not None else _NO_DEADLINE:
                    if credentials is not None:
                        await self.auth.sources.prepare([credentials])
                    # The flow sends ``request`` itself first; it is made only for a
                    # response it acts on (most responses end it at once).
                    if len(destinations) == 1:  # nothing to fail over to
                        destination = destinations[0]
                        response = await self.transact(
                            request, destination, transport_name=hop_transport
                        )
                    else:
                        response, destination = await self._transact_with_failover(
                            request, destinations
                        )
                    if response.status_code in FLOW_STATUSES:
                        response = await self._follow_flow(
                            request, response, credentials, destination
                        )
        except trio.TooSlowError:
            why = next(filter(None, map(self.engine.malformed_from, destinations)), None)
            raise TimeoutError(request.method, str(request.uri), seconds or 0.0, why) from None
        if request.method == "REGISTER":
            self.on_register(response.request or request, response, destination)
        return response

    async def _follow_flow(
        self,
        request: Request,
        response: Response,
        credentials: Auth.Digest | None,
        destination: Address,
    ) -> Response:
        """Go on with the retries ``response`` to ``request`` (sent to ``destination``)
        asks for (see :meth:`_flow`), each sent to ``destination`` too. Made only for such
        a response: the usual request makes neither the flow nor its closures."""

        async def retry(again: Request) -> Response:
            return await self.transact(again, destination, attempt=2)

        flow = self._flow(request, credentials, lambda: destination)
        if next(flow) is not request:
            raise AssertionError("a request flow starts with the request itself")
        return await resume_flow(flow, response, retry)

    def _flow(
        self,
        request: Request,
        credentials: Auth.Digest | None,
        sent_to: Callable[[], Address | None],
    ) -> AuthFlow:
        """The retries a request may need: digest challenges (answered with ``credentials``
        when they came from where the request was ``sent_to``, or a host the credentials
        list), and a 422 asking for a longer session interval (RFC 4028 7.3)."""
        return interval_retry_flow(
            request, lambda again: self.auth.flow(again, credentials, sent_to)
        )

    async def retry_with_auth(self, response: Response, credentials: Auth.Digest) -> Response:
        """Answer a 401/407 challenge with a new transaction (new branch, CSeq + 1)."""
        request = response.request
        if request is None:
            raise ValueError("the response does not carry the request it answers")
        destination = self._destinations.get(request_key(request))
        await self.auth.sources.prepare([credentials])
        retry = self.auth.authorize(
            request, response, credentials, strict_realm=True, sent_to=destination
        )
        assert retry is not None
        try:
            with fail_after(self.timeout):
                final = await self.transact(retry, destination, attempt=2)
        except trio.TooSlowError:
            raise TimeoutError(retry.method, str(retry.uri), self.timeout or 0.0) from None
        final.history[:0] = [*response.history, response]
        return final

    async def _transact_with_failover(
        self, request: Request, destinations: list[Address]
    ) -> tuple[Response, Address]:
        """The first transaction of a request: on a transport failure or a transaction
        timeout, the same request (new branch) goes to the next address (RFC 3263 4.3)."""
        for destination in destinations[:-1]:
            stamped = "Via" not in request.headers
            try:
                return await self.transact(request, destination), destination
            except (TransportError, TimeoutError) as exc:
                log.info(
                    "%s to %s:%s failed (%s); trying the next server",
                    request.method,
                    *destination,
                    exc,
                )
                if stamped:
                    del request.headers["Via"]
        return await self.transact(request, destinations[-1]), destinations[-1]

    # -- within a dialog -------------------------------------------------------------------------
    async def send_in_dialog(
        self, dialog: Dialog, request: Request, *, timeout: float | None
    ) -> Response:
        timeout = _validate.timeout("timeout", timeout)
        self._announce_extensions(request)
        address = await self.next_hop.address(dialog.next_hop())
        seconds = timeout if timeout is not None else self.timeout

        async def retry(again: Request) -> Response:
            dialog.local_seq += 1  # the retry took the next CSeq
            return await self.transact(again, address)

        try:
            with fail_after(seconds):
                await self.auth.sources.prepare([self.credentials])
                response = await run_flow(
                    self._flow(request, self.credentials, lambda: address),
                    lambda first: self.transact(first, address),
                    retry,
                )
        except trio.TooSlowError:
            raise TimeoutError(request.method, str(request.uri), seconds or 0.0) from None
        dialog.receive_response(response)
        return response

    async def ack(
        self, dialog: Dialog, response: Response, body: str | bytes | SDPBody | None = None
    ) -> Request:
        """ACK a 2xx to INVITE (a request of its own within the dialog, RFC 3261 13.2.2.4)."""
        assert response.request is not None
        ack = build_ack_for_2xx(response.request, dialog, body_bytes(body))
        address = await self.next_hop.address(dialog.next_hop())
        stamped, _ = self.next_hop.stamp(ack, address)
        if self.events is None:  # the ACK as stamped: its Via names the stamp's transport
            transport = stamped.name
        else:
            ack = await self._run_request_hooks(ack, address)
            transport = ack.top_via.transport
        data = ack.to_bytes()
        self._acks[(dialog.call_id, dialog.remote_tag)] = (
            response.request.cseq.seq,
            data,
            address,
            transport,
        )
        while len(self._acks) > 1024:
            self._acks.pop(next(iter(self._acks)))
        self.engine.send_bytes(data, address, transport)
        return ack

    def ack_sent(self, dialog: Dialog, response: Response) -> bool:
        """Did the ACK of ``response`` (a 2xx to an INVITE of ``dialog``) go out?"""
        sent = self._acks.get((dialog.call_id, dialog.remote_tag))
        return sent is not None and sent[0] == response.cseq.seq

    async def bye(
        self,
        dialog: Dialog,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """End ``dialog`` with BYE; its call (if any) ends as ended by us."""
        request = dialog.create_request("BYE", headers=headers or {})
        dialog.terminate()
        call = self.engine.calls.get(dialog.id)
        if call is not None:
            media_of(call).close()  # RTCP BYE first: we leave the session (RFC 3550 6.6)
        try:
            return await self.send_in_dialog(dialog, request, timeout=timeout)
        finally:
            self.engine.dialogs.pop(dialog.id, None)
            if call is not None:
                end_call(call, "local")

    def forget(self, dialog: Dialog, invite: Request) -> None:
        """A call has ended: drop what was kept to ACK its 2xx retransmissions."""
        self._acks.pop((dialog.call_id, dialog.remote_tag), None)
        self._sent_invites.pop((invite.call_id, invite.cseq.seq), None)

    def dialog_for(self, response: Response) -> Dialog:
        dialog_id = dialog_id_of(response)
        dialog = self.engine.dialogs.get(dialog_id) if dialog_id else None
        if dialog is None:
            raise ProtocolError("no dialog for this response (was it a 2xx to an INVITE?)")
        return dialog

    # -- one transaction ---------------------------------------------------------------------------
    async def _run_request_hooks(self, request: Request, destination: Address) -> Request:
        if self.events is None:
            return request
        context = RequestContext(
            request,
            client=self._context_client,
            destination=destination,
            transport=request.top_via.transport,
        )
        result: Request = await dispatch(self.events, "request", request, context)
        return result

    async def transact(
        self,
        request: Request,
        destination: Address | None,
        *,
        attempt: int = 1,
        transport_name: str | None = None,
    ) -> Response:
        """One client transaction: send, wait for the final response, run the hooks.
        ``transport_name``: the transport toward ``request``'s next hop, when the caller
        found it already (else :meth:`NextHop.stamp` finds it)."""
        if destination is None:
            destination = (await self.next_hop.candidates(request))[0]
        transport = branch = None  # what stamp() wrote in the Via (open_transaction's)
        if "via" not in request.headers.lookup():
            transport, branch = self.next_hop.stamp(request, destination, transport_name)
        else:
            self.engine.require_transport()
        context = None  # what the event hooks are told, when there are hooks
        if self.events is not None:
            transport = branch = None  # a hook may give another request: its own top Via
            context = RequestContext(
                request,
                client=self._context_client,
                destination=destination,
                transport=self.engine.require_transport(request.top_via.transport).name,
                attempt=attempt,
            )
            request = await dispatch(self.events, "request", request, context)
            context.request = request
        transaction, responses = self.engine.open_transaction(
            request, destination, transport, branch
        )
        is_invite = request.method == "INVITE"
        if is_invite:
            self.pending_invites[request.call_id] = transaction
        handed_off = ended = False
        history: list[Response] | None = None  # the 1xx before the final (made for a 1xx)
        try:
            async for item in responses:
                if isinstance(item, Exception):
                    ended = True  # the transaction (or the client) ended it: no CANCEL
                    raise item
                response = item
                response.request = request
                reliable = is_invite and self._reliable_verdict(request, response)
                if reliable is None:
                    continue  # a retransmitted or out-of-order reliable 1xx (RFC 3262 4)
                if context is not None and self.events is not None:
                    context.response = response
                    response = await dispatch(self.events, "response", response, context)
                    if response.status_code in (401, 407):
                        response = await dispatch(self.events, "auth_challenge", response, context)
                    response.request = request
                if response.status_code < 200:
                    if is_invite:
                        self._on_provisional(request, response, reliable=reliable)
                    if history is None:
                        history = []
                    history.append(response)
                    continue
                if history is not None:
                    response.history = history
                elif response.history:
                    response.history = []
                if response.status_code in (401, 407):
                    self._remember_destination(request, destination)  # see retry_with_auth()
                if is_invite and response.is_success:
                    self.on_invite_success(request, response)
                ended = True
                return response
            raise TransportError("transaction ended without a response")
        except BaseException:
            # Cancelled, Ctrl-C, a failing event hook: the caller gives up on a pending
            # INVITE. CANCEL it in the engine's nursery, so that the caller's deadline is
            # kept even while the CANCEL still waits for a provisional response.
            if is_invite and not ended and self.engine.running:
                handed_off = True
                self._hand_off(transaction, responses)
            raise
        finally:
            if not handed_off:
                self.engine.release(transaction, responses)
            if is_invite:
                self._invite_ended(request, transaction)

    def _invite_ended(self, request: Request, transaction: ClientTransaction) -> None:
        """An INVITE's transaction ended (or its caller gave up on it): it is no longer
        pending, and a final response (or giving up) ends its early dialogs. Apart from
        :meth:`transact`, whose frame its comprehensions would give a cell per request."""
        if self.pending_invites.get(request.call_id) is transaction:
            del self.pending_invites[request.call_id]
        for early in [d for d in self.early_dialogs.values() if d.invite is request]:
            del self.early_dialogs[early.id]
        for key in [k for k in self._provisionals if k[0].call_id == request.call_id]:
            if key[1] == request.cseq.seq:
                del self._provisionals[key]

    def _announce_extensions(self, request: Request) -> None:
        """``Supported: 100rel`` in an INVITE with an offer (appended to any Supported
        already there). An INVITE without one does not say it: a reliable 1xx could then
        carry the offer, and its answer would have to go in the PRACK (RFC 3262 5), which
        sipx does not write; the offer comes in the 2xx, answered in the ACK."""
        if request.method == "INVITE" and self.reliable_provisional and request.content:
            add_option_tag(request, "Supported", RELIABLE_PROVISIONAL)

    def _remember_destination(self, request: Request, destination: Address) -> None:
        destinations = self._destinations
        destinations[request_key(request)] = destination
        if len(destinations) > 256:
            del destinations[next(iter(destinations))]  # the oldest

    # -- INVITE bookkeeping ------------------------------------------------------------------------
    def _reliable_verdict(self, request: Request, response: Response) -> bool | None:
        """Is ``response`` a new reliable 1xx (True: PRACK it), an unreliable response
        (False), or one to drop (None): a retransmission, which is neither acknowledged nor
        shown again, or one whose RSeq skips a number (RFC 3262 4)?"""
        try:
            if not is_reliable(response):
                return False
            rseq = rseq_of(response)
            dialog_id = dialog_id_of(response)
        except ParseError as exc:
            log.info("a reliable %s with a bad RSeq is taken as unreliable: %s", response, exc)
            return False
        if rseq is None or dialog_id is None:
            return False  # without a To tag there is no dialog to send a PRACK in
        key = (dialog_id, request.cseq.seq)
        sequence = self._provisionals.get(key)
        if sequence is None:
            sequence = self._provisionals[key] = ProvisionalSequence()
        verdict = sequence.receive(rseq)
        if verdict is Verdict.NEW:
            return True
        log.debug("%s RSeq %s in %s: %s, dropped", response, rseq, request.call_id, verdict.value)
        return None

    def _on_provisional(self, request: Request, response: Response, *, reliable: bool) -> None:
        """A 101-199 with a To tag creates an early dialog; forks make several (12.1.2).
        A reliable one gets its PRACK in that dialog (RFC 3262 4)."""
        if not response.to.tag or response.status_code == 100:
            return
        if request.to.tag:  # a re-INVITE: its dialog exists
            dialog_id = dialog_id_of(response)
            confirmed = self.engine.dialogs.get(dialog_id) if dialog_id else None
            if reliable and confirmed is not None:
                self._prack(confirmed, response)
            return
        dialog: Dialog | None = None  # none (no PRACK) without a usable Contact...
        try:
            made = Dialog.from_uac_response(request, response)
        except (ProtocolError, ParseError):
            pass  # ... but its early media plays all the same
        else:
            dialog = self.early_dialogs.setdefault(made.id, made)
        early_media = self.early_media.get(request.call_id)
        if early_media is not None and response.content:
            early_media(response)  # the early dialog exists by now: UPDATEs may come in it
        if reliable and dialog is not None:
            self._prack(dialog, response)

    def _prack(self, dialog: Dialog, response: Response) -> None:
        """Acknowledge a reliable 1xx: PRACK in its dialog, the CSeq taken now (in order),
        sent from the engine's nursery so that the INVITE's responses keep flowing."""
        if not self.engine.running:
            return
        prack = dialog.create_request("PRACK", headers={"RAck": str(RAck.of(response))})
        self.engine.start_soon(self._send_prack, dialog, prack)

    async def _send_prack(self, dialog: Dialog, prack: Request) -> None:
        try:
            response = await self.send_in_dialog(dialog, prack, timeout=None)
        except SIPError as exc:
            log.info("PRACK %s failed: %s", prack.headers.get_first("RAck"), exc)
            return
        if not response.is_success:
            log.info("PRACK %s got %s", prack.headers.get_first("RAck"), response.status_code)

    def on_invite_success(self, request: Request, response: Response) -> None:
        if request.to.tag:
            return  # a re-INVITE: the dialog exists and absorbs the response itself
        self._sent_invites[(request.call_id, request.cseq.seq)] = request
        while len(self._sent_invites) > 256:
            self._sent_invites.pop(next(iter(self._sent_invites)))
        try:
            dialog = Dialog.from_uac_response(request, response)
        except (ProtocolError, ParseError) as exc:
            log.warning("2xx to INVITE does not create a dialog: %s", exc)
            return
        early = self.early_dialogs.get(dialog.id)
        if early is not None:
            # Requests may have gone within the early dialog (PRACK, UPDATE): the confirmed one
            # goes on from its CSeqs (RFC 3261 12.1.2: the early dialog becomes it).
            dialog.local_seq = max(dialog.local_seq, early.local_seq)
            dialog.remote_seq = early.remote_seq
        self.engine.dialogs[dialog.id] = dialog
        for early in [d for d in self.early_dialogs.values() if d.call_id == dialog.call_id]:
            del self.early_dialogs[early.id]

    def _on_stray_response(self, response: Response) -> None:
        """A 2xx after the INVITE completed: ACK a retransmission again; a 2xx from another
        fork (new To tag) is ACKed and ended with BYE (RFC 3261 13.2.2.4)."""
        try:
            if not (response.is_success and response.cseq.method == "INVITE"):
                return
            key = (response.call_id, response.cseq.seq)
            sent = self._acks.get((response.call_id, response.to.tag or ""))
            if sent is not None and sent[0] == response.cseq.seq:
                self.engine.send_bytes(sent[1], sent[2], sent[3])
                return
            if dialog_id_of(response) in self.engine.dialogs:
                return  # the caller has not ACKed this dialog's 2xx yet
            invite = self._sent_invites.get(key)
        except ParseError:
            return
        if invite is not None and response.to.tag and self.engine.running:
            response.request = invite
            self.engine.start_soon(self._end_unwanted_call, response)

    # -- CANCEL ------------------------------------------------------------------------------------
    async def cancel(self, transaction: ClientTransaction) -> Response:
        cancel = build_cancel(transaction.request)
        destination = transaction.destination
        assert isinstance(destination, tuple)
        return await self.transact(cancel, destination)

    def _hand_off(self, transaction: ClientTransaction, responses: Responses) -> None:
        scope = trio.CancelScope(shield=True)
        self._aborts[transaction] = scope
        self._aborts_idle = trio.Event()
        self.engine.start_soon(self._cancel_on_abort, transaction, responses, scope)

    async def _wind_down(self) -> None:
        """The client is closing: CANCEL every INVITE still pending (its caller gets
        ClientClosedError), then wait for the CANCELs already running."""
        for transaction in list(self.pending_invites.values()):
            request = transaction.request
            responses = self.engine.take_over(transaction)
            self._hand_off(transaction, responses)
            log.debug("closing: cancelling the pending INVITE to %s", request.uri)
        # An INVITE with no provisional response cannot be CANCELled yet (RFC 3261 9.1): do
        # not hold the close waiting for one. Should the callee answer later, it ends the
        # dialog itself when no ACK comes (13.3.1.4).
        for transaction, scope in self._aborts.items():
            if transaction.state is TransactionState.CALLING:
                log.debug(
                    "closing: abandoning the unanswered INVITE to %s", transaction.request.uri
                )
                scope.cancel()
        await self._aborts_idle.wait()

    async def _cancel_on_abort(
        self, transaction: ClientTransaction, responses: Responses, scope: trio.CancelScope
    ) -> None:
        """The caller gave up on an INVITE: CANCEL it, bounded in time (RFC 3261 9.1).

        CANCEL waits for a provisional response; a 2xx that wins the race is ACKed and
        ended with BYE so that the callee is not left in a half-open call.
        """
        try:
            with scope:
                scope.deadline = trio.current_time() + self.engine.timers.t1 * 16
                async with trio.open_nursery() as nursery:
                    cancelled = False
                    if transaction.state is not TransactionState.CALLING:
                        nursery.start_soon(self.cancel_quietly, transaction)
                        cancelled = True
                    async for item in responses:
                        if isinstance(item, Exception):
                            break
                        if item.status_code < 200:
                            if not cancelled:
                                nursery.start_soon(self.cancel_quietly, transaction)
                                cancelled = True
                            continue
                        if item.is_success:
                            item.request = transaction.request
                            await self._end_unwanted_call(item)
                        break
                    nursery.cancel_scope.deadline = min(
                        nursery.cancel_scope.deadline,
                        trio.current_time() + self.engine.timers.t1 * 8,
                    )
        finally:
            self.engine.release(transaction, responses)
            del self._aborts[transaction]
            if not self._aborts:
                self._aborts_idle.set()

    async def cancel_quietly(self, transaction: ClientTransaction) -> None:
        """:meth:`cancel`, its failure only logged (for a task of the engine's nursery)."""
        try:
            await self.cancel(transaction)
        except SIPError as exc:
            log.debug("CANCEL of %s failed: %s", transaction.request.uri, exc)

    async def _end_unwanted_call(self, response: Response) -> None:
        """ACK and BYE a 2xx to an INVITE the caller no longer wants."""
        assert response.request is not None
        self.on_invite_success(response.request, response)
        await self.end_answered(response)

    async def end_answered(self, response: Response, dialog: Dialog | None = None) -> None:
        """End the dialog a 2xx to our INVITE made (``dialog``, else found from it) when
        nobody holds its call: ACK the 2xx unless that was done, then BYE; a failure is
        only logged (for a task of the engine's nursery)."""
        try:
            if dialog is None:
                dialog = self.dialog_for(response)
            if not self.ack_sent(dialog, response):
                await self.ack(dialog, response)
            await self.bye(dialog)
        except SIPError as exc:
            log.debug("ending an unwanted call failed: %s", exc)

    @property
    def aborts(self) -> int:
        """INVITEs given up on whose CANCEL still runs."""
        return len(self._aborts)


__all__ = ["INVITE_TIMEOUT", "UserAgentClient", "fail_after"]
