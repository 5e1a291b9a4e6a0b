"""Call transfer on trio: REFER and its implicit subscription (RFC 3515), Replaces (RFC 3891).

One :class:`Transfers` per client (owned by its user agent server) plays the three roles of
RFC 5589:

* **transferor** (:meth:`Transfers.transfer`, behind ``Call.transfer``): REFER in the call's
  dialog, then the NOTIFYs of the implicit subscription (``Event: refer``, message/sipfrag
  bodies) answered 200 until ``Subscription-State: terminated``; the last status reported is
  the :class:`TransferResult`. A transfer that succeeded ends the call with BYE, as the
  transferor does in RFC 5589's flows (a failed one leaves the call up, to be taken back).
* **transferee** (:meth:`Transfers.refer_received`): an in-dialog REFER the application does
  not refuse gets 202; a task in the engine's nursery NOTIFYs ``SIP/2.0 100 Trying``, places
  the new call to Refer-To (with its Replaces and the REFER's Referred-By) and NOTIFYs its
  final status with ``Subscription-State: terminated;reason=noresource``. When the new call
  was answered, the old one's ``replaced_by`` is the new call and it ends with
  ``ended_by == "transferred"``: by the transferor's BYE, or by ours when none came within
  8·T1 (so that two BYEs do not cross).
* **transfer target** (:meth:`Transfers.invite_with_replaces`): an INVITE whose Replaces
  names one of our established calls is answered at once, and the replaced call ends with
  BYE (``ended_by == "replaced"``, ``replaced_by`` = the new call); one naming the early
  dialog of a call we placed (ringing: a pick-up, RFC 3891 7.1) is answered too and our
  INVITE CANCELled; no such call: 481.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ._call import Call, CallState, end_call
from ._core.dialog import Dialog, DialogId, DialogState
from ._core.event import EventHeader, SubscriptionState
from ._core.message import Request, Response
from ._core.refer import ReferTarget, Replaces, build_refer_to, parse_refer_to
from ._core.sipfrag import SIPFRAG_TYPE, SipFrag, build_sipfrag, is_sipfrag, parse_sipfrag
from ._errors import ParseError, ProtocolError, SIPError, TimeoutError, TransportError
from ._uac import INVITE_TIMEOUT

if TYPE_CHECKING:
    from ._async_client import AsyncClient
    from ._engine import Engine
    from ._uac import UserAgentClient
    from ._uas import IncomingRequest

log = logging.getLogger("sipx")

#: how long ``Call.transfer()`` waits for the outcome when given no timeout: the new call may
#: ring for INVITE_TIMEOUT, and its final NOTIFY takes one more transaction.
TRANSFER_TIMEOUT = INVITE_TIMEOUT + 32.0
#: the lifetime the transferee gives the implicit subscription (refreshed by each NOTIFY).
SUBSCRIPTION_EXPIRES = 60
#: how long the transferee waits for the transferor's BYE after a successful transfer, in T1
BYE_GRACE_T1 = 8
Report = tuple[SipFrag, SubscriptionState]


@dataclass
class TransferResult:
    """What ``await call.transfer(...)`` learned.

    ``status_code`` and ``reason``: the final status of the transferee's new call as its
    NOTIFYs reported it (``200 OK`` for a transfer that worked, ``486 Busy Here``...); when
    the REFER itself was refused, its response's status (``603 Decline``, ``405``...); when
    the subscription or the call ended without a final status, the last provisional one
    (``100 Trying``). ``refer_response`` is the response to the REFER, ``notifications``
    every status the NOTIFYs reported, in order.
    """

    status_code: int
    reason: str
    refer_response: Response
    notifications: list[SipFrag] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """The transferee accepted the REFER (2xx, normally 202 Accepted)."""
        return self.refer_response.is_success

    @property
    def succeeded(self) -> bool:
        """The transferee's call to the target was answered (a 2xx was reported)."""
        return self.accepted and 200 <= self.status_code < 300 and bool(self.notifications)

    def __str__(self) -> str:
        return f"{self.status_code} {self.reason}".rstrip()


class Transfers:
    """REFER, its NOTIFYs and Replaces for one client (see the module's docstring)."""

    def __init__(self, engine: Engine, uac: UserAgentClient, client: AsyncClient) -> None:
        self.engine = engine
        self.uac = uac
        self.client = client
        # Dialog -> where the NOTIFYs of our pending REFER go (one transfer per call at a time).
        self._watchers: dict[DialogId, trio.MemorySendChannel[Report]] = {}

    # -- transferor ----------------------------------------------------------------------------
    async def transfer(
        self, call: Call, target: str | Call, timeout: float | None
    ) -> TransferResult:
        """REFER the peer of ``call`` to ``target`` (a URI: blind; a Call: attended, with
        Replaces) and wait for the outcome its NOTIFYs report."""
        dialog = _confirmed_dialog(call, "transfer")
        if isinstance(target, Call):
            if target is call:
                raise ValueError("a call cannot be transferred to itself")
            other = _confirmed_dialog(target, "be the target of a transfer")
            replaces = Replaces.for_peer_of(other.call_id, other.local_tag, other.remote_tag)
            refer_to = build_refer_to(other.remote_target, replaces)
        elif isinstance(target, str):
            try:
                refer_to = build_refer_to(target)
            except ParseError as exc:
                raise ValueError(f"bad transfer target {target!r}: {exc}") from None
        else:
            raise TypeError(f"transfer() takes a URI or a Call, not {type(target).__name__}")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise ValueError(f"timeout is a positive number of seconds, not {timeout!r}")
        if dialog.id in self._watchers:
            raise ProtocolError("a transfer is already in progress in this call")
        seconds = TRANSFER_TIMEOUT if timeout is None else float(timeout)
        send, receive = trio.open_memory_channel[Report](math.inf)
        self._watchers[dialog.id] = send  # before the REFER: a NOTIFY may overtake the 202
        refer = dialog.create_request(
            "REFER", headers={"Refer-To": refer_to, "Referred-By": f"<{dialog.local_uri.uri}>"}
        )
        try:
            with trio.fail_after(seconds):
                response = await self.uac.send_in_dialog(dialog, refer, timeout=None)
                if not response.is_success:
                    return TransferResult(response.status_code, response.reason_phrase, response)
                reports = await _reports_until_terminated(call, receive)
        except trio.TooSlowError:
            raise TimeoutError("REFER", str(refer.uri), seconds, "no final NOTIFY") from None
        finally:
            if self._watchers.get(dialog.id) is send:
                del self._watchers[dialog.id]
        result = _result(response, reports)
        if result.succeeded and not call.ended:
            await self._quiet_bye(dialog, "after the transfer")  # RFC 5589 6.1
        return result

    def notify_received(self, dialog: Dialog, incoming: IncomingRequest) -> bool:
        """A NOTIFY in ``dialog``: True when it reports on our pending REFER (it is answered
        here), False to let the usual NOTIFY handling answer it."""
        watcher = self._watchers.get(dialog.id)
        if watcher is None:
            return False
        headers = incoming.request.headers
        try:
            event = EventHeader.parse(headers.get_first("Event") or "")
        except ParseError:
            return False
        if event.package != "refer":
            return False
        try:
            state = SubscriptionState.parse(headers.get_first("Subscription-State") or "")
            if not is_sipfrag(headers.get_first("Content-Type")):
                raise ParseError("the body is not message/sipfrag")
            report = parse_sipfrag(incoming.request.content)
        except ParseError as exc:
            incoming.respond(400, f"Bad NOTIFY: {str(exc)[:50]}")
            return True
        incoming.respond(200)
        watcher.send_nowait((report, state))
        return True

    # -- transferee ------------------------------------------------------------------------------
    def check_refer(self, incoming: IncomingRequest) -> ReferTarget | None:
        """The target of an in-dialog REFER, or None once it was answered 400/416."""
        values = incoming.request.headers.get_all("Refer-To")
        if len(values) != 1:
            incoming.respond(400, "Need Exactly One Refer-To")
            return None
        try:
            target = parse_refer_to(values[0])
        except ParseError as exc:
            incoming.respond(400, f"Bad Refer-To: {str(exc)[:50]}")
            return None
        if target.uri.scheme not in ("sip", "sips"):
            incoming.respond(416)
            return None
        return target

    def refer_received(self, call: Call, incoming: IncomingRequest, target: ReferTarget) -> None:
        """The REFER was accepted (2xx sent): carry it out in the engine's nursery."""
        dialog = call.dialog
        if dialog is None or not self.engine.running:
            return
        request = incoming.request
        self.engine.start_soon(
            self._carry_out, call, dialog, target, request.cseq.seq, _referred_by(request)
        )

    async def _carry_out(
        self,
        call: Call,
        dialog: Dialog,
        target: ReferTarget,
        event_id: int,
        referred_by: str | None,
    ) -> None:
        await self._notify(dialog, event_id, 100, None, terminated=False)
        headers: dict[str, str] = {}
        if target.replaces is not None:
            headers["Replaces"] = str(target.replaces)
        if referred_by is not None:
            headers["Referred-By"] = referred_by
        new_call: Call | None = None
        try:
            new_call = await self.client.call(
                str(target.uri), from_uri=str(dialog.local_uri.uri), headers=headers
            )
            final = new_call.final_response
            assert final is not None
            status, reason = final.status_code, final.reason_phrase
        except TimeoutError:
            status, reason = 408, "Request Timeout"
        except (SIPError, ValueError) as exc:
            log.info("transfer to %s failed: %s", target.uri, exc)
            status, reason = 503, "Service Unavailable"
        if new_call is not None and new_call.established:
            call.replaced_by = new_call  # first: the transferor's BYE may follow at once
        await self._notify(dialog, event_id, status, reason, terminated=True)
        if call.replaced_by is None:
            return  # the transferor may take the call back (RFC 5589 6.1)
        with trio.move_on_after(BYE_GRACE_T1 * self.engine.timers.t1):
            await call.wait_ended()  # the transferor hangs up (ended "transferred")
        if not call.ended and dialog.state is not DialogState.TERMINATED:
            end_call(call, "transferred")
            await self._quiet_bye(dialog, "after the transfer")

    async def _notify(
        self, dialog: Dialog, event_id: int, status: int, reason: str | None, *, terminated: bool
    ) -> None:
        """One NOTIFY of the REFER's implicit subscription (RFC 3515 2.4.4, 2.4.5)."""
        if dialog.state is DialogState.TERMINATED:
            return  # the transferor hung up: nobody to tell
        state = (
            SubscriptionState("terminated", reason="noresource")
            if terminated
            else SubscriptionState("active", expires=SUBSCRIPTION_EXPIRES)
        )
        request = dialog.create_request(
            "NOTIFY",
            headers={
                "Event": str(EventHeader("refer", str(event_id))),
                "Subscription-State": str(state),
                "Content-Type": SIPFRAG_TYPE,
            },
            content=build_sipfrag(status, reason),
        )
        try:
            response = await self.uac.send_in_dialog(dialog, request, timeout=None)
        except SIPError as exc:
            log.info("NOTIFY of a transfer's progress failed: %s", exc)
            return
        if not response.is_success:
            log.info("NOTIFY of a transfer's progress got %s", response.status_code)

    # -- transfer target ------------------------------------------------------------------------
    def invite_with_replaces(self, call: Call, value: str) -> None:
        """RFC 3891 3: an INVITE (``call``) whose Replaces header is ``value``: answered
        at once when it names an established call of ours, which ends with BYE, or the
        early dialog of an INVITE we sent, which is CANCELled; else rejected (400
        malformed, 481 no such call, 486 early-only for an established one)."""
        try:
            replaces = Replaces.parse(value)
        except ParseError:
            call.reject(400, "Bad Replaces Header")
            return
        dialog_id = DialogId(replaces.call_id, replaces.to_tag, replaces.from_tag)
        old = self.engine.calls.get(dialog_id)
        if dialog_id in self.uac.early_dialogs:  # our INVITE's, ringing: a pick-up
            self._replace_early(call, dialog_id, old)
            return
        if old is None or old.dialog is None or old.state is not CallState.ESTABLISHED:
            call.reject(481)  # unknown, ended, or an early dialog we did not initiate
            return
        if replaces.early_only:
            call.reject(486)
            return
        try:
            call.answer()
        except TransportError:
            return  # no RTP port: answer() already rejected it with 503
        old.replaced_by = call
        old_dialog = old.dialog
        end_call(old, "replaced")
        self.engine.start_soon(self._quiet_bye, old_dialog, "of the replaced call")

    def _replace_early(self, call: Call, dialog_id: DialogId, old: Call | None) -> None:
        """RFC 3891 3 and 7.1: ``call``'s Replaces names the early dialog of an INVITE we
        sent (our call still ringing: call pick-up): answer it and CANCEL our INVITE. The
        placed call (returned at early media, or by ``call()`` at its final response) ends
        "replaced", its ``replaced_by`` the new call."""
        pending = self.uac.pending_invites.get(dialog_id.call_id)
        if pending is None:
            call.reject(481)  # our INVITE ended meanwhile
            return
        try:
            call.answer()
        except TransportError:
            return  # no RTP port: answer() already rejected it with 503
        replacements = self.uac.replacements
        replacements[dialog_id.call_id] = call
        while len(replacements) > 256:
            del replacements[next(iter(replacements))]
        if old is not None and not old.ended:  # an early call: its media stops now
            old.replaced_by = call
            end_call(old, "replaced")
        self.engine.start_soon(self.uac.cancel_quietly, pending)

    async def _quiet_bye(self, dialog: Dialog, when: str) -> None:
        try:
            await self.uac.bye(dialog)
        except SIPError as exc:
            log.info("BYE %s failed: %s", when, exc)


def _confirmed_dialog(call: Call, action: str) -> Dialog:
    dialog = call.dialog
    if dialog is None or call.state is not CallState.ESTABLISHED:
        raise ProtocolError(f"only an established call can {action}")
    return dialog


def _referred_by(request: Request) -> str | None:
    return request.headers.get_first("Referred-By")


async def _reports_until_terminated(
    call: Call, receive: trio.MemoryReceiveChannel[Report]
) -> list[Report]:
    """The NOTIFYs' reports until one terminates the subscription (or carries a final
    status), or until the call ends."""
    reports: list[Report] = []
    async with trio.open_nursery() as nursery:

        async def call_ended() -> None:
            await call.wait_ended()
            nursery.cancel_scope.cancel()

        nursery.start_soon(call_ended)
        async for report in receive:
            reports.append(report)
            if report[1].terminated or report[0].status_code >= 200:
                break
        nursery.cancel_scope.cancel()
    while not (reports and (reports[-1][1].terminated or reports[-1][0].status_code >= 200)):
        try:  # the call ended just as the last NOTIFY came
            reports.append(receive.receive_nowait())
        except trio.WouldBlock:
            break
    return reports


def _result(response: Response, reports: list[Report]) -> TransferResult:
    frags = [frag for frag, _ in reports]
    final = next((frag for frag in reversed(frags) if frag.status_code >= 200), None)
    if final is not None:
        return TransferResult(final.status_code, final.reason, response, frags)
    last = frags[-1] if frags else SipFrag(100, "Trying")
    return TransferResult(last.status_code, last.reason, response, frags)


__all__ = ["TRANSFER_TIMEOUT", "TransferResult", "Transfers"]
