"""The client's server side (sipx._uas, sipx._call) on sipx.testing.MemoryNetwork.

Two AsyncClients talk directly, or a client talks to a ScriptedUAS or to a raw socket that
plays the peer byte by byte; everything runs on trio's autojump clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import CallState, DialogState, SDPBody
from sipx._core.transaction import TRYING_DELAY
from sipx.testing import MemoryNetwork, MemorySocket, Reply, ScriptedUAS

Address = tuple[str, int]

PEER = ("127.0.0.1", 5090)
UAS = ("127.0.0.1", 5080)
UAS2 = ("127.0.0.1", 5082)
PROXY = ("127.0.0.1", 5070)
T1 = 0.5

OFFER = SDPBody.create_offer(
    "call",
    "alice",
    "127.0.0.1",
    "127.0.0.1",
    [
        {
            "media": "audio",
            "port": 9000,
            "codecs": [
                {"payload": "0", "name": "PCMU", "rate": "8000"},
                {"payload": "18", "name": "G729", "rate": "8000"},
                {"payload": "96", "name": "opus", "rate": "48000", "channels": "2"},
                {"payload": "101", "name": "telephone-event", "rate": "8000", "fmtp": "0-16"},
            ],
        }
    ],
)


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: Any) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:
        yield client


def address_of(client: sipx.AsyncClient) -> Address:
    return (client.local_address.host, client.local_address.port)


def uri_of(client: sipx.AsyncClient, user: str = "bob") -> str:
    host, port = address_of(client)
    return f"sip:{user}@{host}:{port}"


def since(start: float, times: Sequence[float]) -> list[float]:
    return [round(t - start, 6) for t in times]


def method_is(method: str) -> Callable[[sipx.Request | sipx.Response], bool]:
    return lambda message: isinstance(message, sipx.Request) and message.method == method


def state_of(call: sipx.Call) -> CallState:
    return call.state  # (read through a call, so that mypy does not narrow it)


def codec_names(sdp: SDPBody) -> list[str]:
    return [codec.name for codec in sdp.media[0].codecs]


# -- a raw peer: hand-made requests, every response seen -------------------------------------------
def raw_request(
    method: str,
    to: Address,
    *,
    source: Address = PEER,
    branch: str = "z9hG4bKraw1",
    call_id: str = "raw-call-1",
    cseq: int = 1,
    to_tag: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: SDPBody | None = None,
) -> sipx.Request:
    uri = f"sip:bob@{to[0]}:{to[1]}"
    request = sipx.Request(method, uri)
    fields = request.headers
    fields.add("Via", f"SIP/2.0/UDP {source[0]}:{source[1]};branch={branch};rport")
    fields.add("Max-Forwards", "70")
    fields.add("From", f"<sip:alice@{source[0]}:{source[1]}>;tag=alice-tag")
    fields.add("To", f"<{uri}>" + (f";tag={to_tag}" if to_tag else ""))
    fields.add("Call-ID", call_id)
    fields.add("CSeq", f"{cseq} {method}")
    fields.add("Contact", f"<sip:alice@{source[0]}:{source[1]}>")
    for name, value in headers:
        fields.add(name, value)
    if body is not None:
        fields.add("Content-Type", "application/sdp")
        request.content = body.to_bytes()
    return request


async def receive(peer: MemorySocket, seconds: float = 60) -> sipx.Response | sipx.Request:
    with trio.fail_after(seconds):
        data, _ = await peer.receive()
    return sipx.parse_message(data)


async def receive_response(peer: MemorySocket, seconds: float = 60) -> sipx.Response:
    message = await receive(peer, seconds)
    assert isinstance(message, sipx.Response), message
    return message


def nothing_received(peer: MemorySocket) -> bool:
    try:
        peer.receive_nowait()
    except trio.WouldBlock:
        return True
    return False


# -- incoming INVITE: 100, 180, 200, 2xx retransmission, ACK -------------------------------------
async def test_incoming_invite_is_rung_and_answered(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    record_route = ["<sip:p2.example.net;lr>", "<sip:p1.example.net;lr>"]
    calls: list[sipx.Call] = []
    async with client_on(network) as callee, network.socket(PEER) as peer:
        callee.on_request("INVITE", calls.append)  # leaves the call ringing
        target = address_of(callee)
        invite = raw_request(
            "INVITE", target, headers=[("Record-Route", rr) for rr in record_route], body=OFFER
        )
        peer.send(invite.to_bytes(), target)
        start = trio.current_time()

        # The INVITE server transaction answers 100 Trying, without a To tag, 200 ms after
        # the INVITE: the handler has not answered by then (RFC 3261 17.2.1).
        trying = await receive_response(peer)
        assert trying.status_code == 100 and trying.to.tag is None
        assert trying.top_via.branch == "z9hG4bKraw1"
        assert trying.top_via.rport == PEER[1]  # RFC 3581: the source port filled in
        assert trio.current_time() - start == pytest.approx(TRYING_DELAY)
        [call] = calls
        assert call.direction == "incoming" and state_of(call) is CallState.INCOMING
        assert call.offer is not None and codec_names(call.offer)[:2] == ["PCMU", "G729"]
        assert call.remote_uri == f"sip:alice@{PEER[0]}:{PEER[1]}"

        call.ring()
        ringing = await receive_response(peer)
        assert ringing.status_code == 180
        tag = ringing.to.tag
        assert tag
        assert state_of(call) is CallState.EARLY
        assert ringing.headers.get_list("Record-Route") == record_route
        assert str(ringing.contact[0].uri) == f"sip:bob@{target[0]}:{target[1]}"

        await trio.sleep(2)
        answered = trio.current_time()
        call.answer()
        ok = await receive_response(peer)
        assert ok.status_code == 200
        assert ok.to.tag == tag  # one dialog from 180 to 200
        assert (ok.call_id, str(ok.cseq)) == ("raw-call-1", "1 INVITE")
        assert ok.headers.get_list("Record-Route") == record_route
        assert str(ok.contact[0].uri) == f"sip:bob@{target[0]}:{target[1]}"
        assert ok.headers["Content-Type"] == "application/sdp"
        answer = SDPBody.parse(ok.content)
        # RFC 3264 6.1: only offered codecs we support, in the offer's order and numbering.
        assert codec_names(answer) == ["PCMU", "telephone-event"]
        assert answer.media[0].formats == ["0", "101"]
        assert answer.media[0].direction == "sendrecv"
        assert call.state is CallState.ESTABLISHED
        assert call.answer_sdp is not None and call.local_sdp is call.answer_sdp
        assert call.dialog is not None and call.dialog.state is DialogState.EARLY

        # No ACK yet: the 2xx goes again after T1 and 2*T1 (RFC 3261 13.3.1.4).
        again = [await receive_response(peer), await receive_response(peer)]
        assert [r.to_bytes() for r in again] == [ok.to_bytes()] * 2
        assert trio.current_time() - answered == pytest.approx(3 * T1)

        ack = raw_request("ACK", target, branch="z9hG4bKack1", to_tag=tag)
        peer.send(ack.to_bytes(), target)
        with trio.fail_after(1):
            await call.wait_acked()
        await trio.sleep(60)
        assert nothing_received(peer)  # retransmissions stopped, no BYE
        assert call.state is CallState.ESTABLISHED and not call.ended
        [dialog] = callee.dialogs
        assert dialog is call.dialog and dialog.state is DialogState.CONFIRMED
        assert dialog.id == sipx.DialogId("raw-call-1", tag, "alice-tag")
        assert [str(route) for route in dialog.route_set] == record_route
        assert str(dialog.remote_target) == f"sip:alice@{PEER[0]}:{PEER[1]}"


async def test_2xx_is_retransmitted_until_the_ack_arrives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        answered.append(call)
        call.answer()

    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", answer)
        # The caller's first two ACKs are lost; it ACKs each 2xx retransmission again.
        network.drop_next(2, where=method_is("ACK"))
        call = await caller.call(uri_of(callee))
        assert call.established
        await trio.sleep(60)
        [incoming] = answered
        assert incoming.state is CallState.ESTABLISHED and call.state is CallState.ESTABLISHED
        leaving = trio.current_time()
    oks = network.responses(200, method="INVITE")
    assert since(oks[0].time, [c.time for c in oks]) == [0, T1, 3 * T1]
    acks = network.requests("ACK")
    assert [c.fate for c in acks] == ["lost", "lost", "delivered"]
    assert len({c.message.top_via.branch for c in acks}) == 1  # the same ACK, resent
    # No BYE for a missing ACK: the only one is the callee's, on leaving its client.
    assert [c.time for c in network.requests("BYE")] == [leaving]


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_no_ack_ends_the_call_with_bye(
    autojump_clock: trio.testing.MockClock, transport: str
) -> None:
    network = MemoryNetwork()
    network.filter = lambda source, destination, data: not data.startswith(b"ACK ")
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        answered.append(call)
        call.answer()

    async with (
        client_on(network, transport=transport) as caller,
        client_on(network, transport=transport) as callee,
    ):
        callee.on_request("INVITE", answer)
        callee_address = address_of(callee)
        call = await caller.call(uri_of(callee))
        assert call.established
        [incoming] = answered
        with trio.fail_after(64 * T1 + 1):
            assert await incoming.wait_ended() == "timeout"
        assert incoming.ended_by == "timeout"
        with trio.fail_after(1):
            assert await call.wait_ended() == "remote"
        await trio.sleep(1)  # the callee's BYE transaction completes
        assert callee.dialogs == [] and caller.dialogs == []
    [ok, *retransmitted] = network.responses(200, method="INVITE")
    [bye] = network.requests("BYE")
    assert bye.source == callee_address
    assert bye.time - ok.time == pytest.approx(64 * T1)
    assert network.responses(200, method="BYE")
    # RFC 3261 13.3.1.4: T1, 2*T1, 4*T1 ... capped at T2 = 4 s, whatever the transport.
    intervals = [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]
    expected = [sum(intervals[: i + 1]) for i in range(len(intervals))]
    assert since(ok.time, [c.time for c in retransmitted]) == expected


# -- request retransmissions -----------------------------------------------------------------------
async def test_duplicated_invite_makes_one_call(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(duplicate=1.0)  # every datagram arrives twice
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        answered.append(call)
        call.answer()

    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", answer)
        call = await caller.call(uri_of(callee))
        assert call.established
        await trio.sleep(60)
        assert len(answered) == 1
        assert len(callee.dialogs) == 1 and len(caller.dialogs) == 1
        assert answered[0].state is CallState.ESTABLISHED
        bye = await call.bye()
        assert bye.status_code == 200
        await trio.sleep(1)
        assert answered[0].ended_by == "remote"
    assert [c.fate for c in network.requests("INVITE")] == ["duplicated"]
    assert len(network.requests("BYE")) == 1  # the duplicate BYE was absorbed, not re-sent


async def test_resent_invite_gets_the_last_response_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    calls: list[sipx.Call] = []
    async with client_on(network) as callee, network.socket(PEER) as peer:
        callee.on_request("INVITE", calls.append)
        target = address_of(callee)
        data = raw_request("INVITE", target, body=OFFER).to_bytes()
        peer.send(data, target)
        assert (await receive_response(peer)).status_code == 100
        [call] = calls
        call.ring()
        ringing = await receive_response(peer)
        peer.send(data, target)  # a retransmission: the 180 again, no new call
        again = await receive_response(peer)
        assert again.to_bytes() == ringing.to_bytes()
        await trio.sleep(1)
        assert len(calls) == 1 and call.state is CallState.EARLY
        assert nothing_received(peer)


# -- CANCEL --------------------------------------------------------------------------------------
async def test_cancel_before_answer_ends_both_sides(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    ringing: list[sipx.Call] = []

    def ring(call: sipx.Call) -> None:
        ringing.append(call)
        call.ring()

    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", ring)
        results: list[sipx.Call] = []
        async with trio.open_nursery() as nursery:

            async def place() -> None:
                results.append(await caller.call(uri_of(callee)))

            nursery.start_soon(place)
            await trio.sleep(2)
            [incoming] = ringing
            assert incoming.state is CallState.EARLY
            assert len(caller.early_dialogs) == 1
            cancelled = await caller.cancel()
            assert cancelled.status_code == 200
            with trio.fail_after(1):
                assert await incoming.wait_ended() == "cancel"
        [call] = results
        assert call.final_response is not None and call.final_response.status_code == 487
        assert call.state is CallState.ENDED and not call.established
        assert incoming.final_response is not None
        assert incoming.final_response.status_code == 487
        await trio.sleep(60)
        assert caller.dialogs == [] and callee.dialogs == []
        assert caller.early_dialogs == []
    [cancel] = network.requests("CANCEL")
    [invite] = network.requests("INVITE")
    assert cancel.message.top_via.branch == invite.message.top_via.branch
    statuses = [c.message.status_code for c in network.responses(method="INVITE")]
    assert statuses == [180, 487]  # rung at once: no 100 Trying (RFC 3261 17.2.1)
    [ack] = network.requests("ACK")  # the 487 is ACKed once: no retransmission
    assert ack.message.top_via.branch == invite.message.top_via.branch


async def test_caller_giving_up_cancels_the_callee(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    ringing: list[sipx.Call] = []

    def ring(call: sipx.Call) -> None:
        ringing.append(call)
        call.ring()

    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", ring)
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError):
            await caller.call(uri_of(callee), timeout=3)
        assert trio.current_time() - start == pytest.approx(3)
        [incoming] = ringing
        with trio.fail_after(1):
            assert await incoming.wait_ended() == "cancel"
        # A late answer attempt is refused: the INVITE was already answered with 487.
        with pytest.raises(sipx.ProtocolError):
            incoming.answer()
        await trio.sleep(60)
        assert callee.dialogs == []
    assert [c.message.status_code for c in network.responses(method="CANCEL")] == [200]
    assert network.responses(487, method="INVITE")


async def test_cancel_after_answer_changes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    """RFC 3261 9.2: a CANCEL for an answered INVITE gets 200 and no effect."""
    network = MemoryNetwork()
    calls: list[sipx.Call] = []
    async with client_on(network) as callee, network.socket(PEER) as peer:
        callee.on_request("INVITE", calls.append)
        target = address_of(callee)
        peer.send(raw_request("INVITE", target, body=OFFER).to_bytes(), target)
        await receive_response(peer)  # 100
        [call] = calls
        call.answer()
        ok = await receive_response(peer)
        peer.send(raw_request("CANCEL", target).to_bytes(), target)
        responses = [await receive_response(peer) for _ in range(2)]
        # The CANCEL's 200; a 2xx retransmission may come in between.
        assert [r.cseq.method for r in responses if r.status_code == 200].count("CANCEL") == 1
        ack = raw_request("ACK", target, branch="z9hG4bKack1", to_tag=ok.to.tag)
        peer.send(ack.to_bytes(), target)
        await trio.sleep(10)
        assert call.state is CallState.ESTABLISHED
        unknown = raw_request("CANCEL", target, branch="z9hG4bKnothing")
        peer.send(unknown.to_bytes(), target)
        while (response := await receive_response(peer)).cseq.method != "CANCEL":
            pass
        assert response.status_code == 481


# -- out-of-dialog requests: defaults and handlers -----------------------------------------------
def allow_of(response: sipx.Response) -> set[str]:
    return {method.strip() for method in response.headers["Allow"].split(",")}


async def test_options_is_answered_with_capabilities(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await uas.request("OPTIONS", uri_of(client), to=address_of(client))
        # SUBSCRIBE is allowed once something handles it (else it gets 405).
        client.on_request("SUBSCRIBE", lambda incoming: incoming.respond(200))
        later = await uas.request("OPTIONS", uri_of(client), to=address_of(client))
    assert response.status_code == 200
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE"} <= allow_of(response)
    assert "SUBSCRIBE" not in allow_of(response)
    assert "SUBSCRIBE" in allow_of(later)
    assert "application/sdp" in response.headers["Accept"]
    assert "Supported" in response.headers
    assert response.to.tag


async def test_message_goes_to_an_async_handler(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    seen: list[sipx.IncomingRequest] = []

    async def on_message(incoming: sipx.IncomingRequest) -> None:
        await trio.sleep(1)
        seen.append(incoming)

    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        client.on_request("message", on_message)
        start = trio.current_time()
        response = await uas.request("MESSAGE", uri_of(client), to=address_of(client), body="hi")
        assert trio.current_time() - start == pytest.approx(1)
    assert response.status_code == 200
    [incoming] = seen
    assert incoming.method == "MESSAGE" and incoming.text == "hi"
    assert incoming.request.from_.uri.user == "uas"
    assert incoming.responded and incoming.response is not None
    assert incoming.response.status_code == 200


async def test_message_without_a_handler_gets_200(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        response = await uas.request("MESSAGE", uri_of(client), to=address_of(client), body="x")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "status"),
    # UPDATE is allowed, within a dialog only (RFC 3311): outside one there is none to find.
    [("FOO", 501), ("SUBSCRIBE", 405), ("PUBLISH", 405), ("REGISTER", 405), ("UPDATE", 481)],
)
async def test_unhandled_methods(
    autojump_clock: trio.testing.MockClock, method: str, status: int
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        headers = {"Event": "presence"} if method in ("SUBSCRIBE", "PUBLISH") else None
        response = await uas.request(method, uri_of(client), to=address_of(client), headers=headers)
    assert response.status_code == status
    if status == 405:  # RFC 3261 8.2.1: a 405 lists what is allowed
        assert "INVITE" in allow_of(response) and method not in allow_of(response)


async def test_invite_with_nobody_listening_gets_480(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as caller, client_on(network) as callee:
        response = await caller.invite(uri_of(callee), body=OFFER)
        assert response.status_code == 480
        call = await caller.call(uri_of(callee))
        assert call.final_response is not None and call.final_response.status_code == 480
        assert call.ended and call.ended_by == "rejected"
        await trio.sleep(60)
        assert callee.dialogs == [] and caller.dialogs == []
    assert len(network.requests("ACK")) == 2  # one per 480, by the INVITE transactions


async def test_calls_iterator_gets_incoming_calls(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as caller, client_on(network) as callee:
        received: list[sipx.Call] = []

        async def answer_two() -> None:
            async for call in callee.calls():
                received.append(call)
                call.answer()
                if len(received) == 2:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_two)
            await trio.sleep(0.1)
            first = await caller.call(uri_of(callee))
            second = await caller.call(uri_of(callee, "carol"))
        assert first.established and second.established
        assert [str(c.invite.uri.user) for c in received] == ["bob", "carol"]
        # Nobody iterates any more: back to 480.
        assert (await caller.invite(uri_of(callee), body=OFFER)).status_code == 480


async def test_notify_and_refer_go_to_handlers(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    seen: list[tuple[str, str | None]] = []

    def record(incoming: sipx.IncomingRequest) -> None:
        seen.append((incoming.method, incoming.headers.get_first("Event")))

    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        client.on_request("NOTIFY", record)
        client.on_request("REFER", record)
        target, to = uri_of(client), address_of(client)
        notify = await uas.request(
            "NOTIFY",
            target,
            to=to,
            headers={"Event": "message-summary", "Subscription-State": "active"},
            body="Messages-Waiting: yes",
        )
        refer = await uas.request(
            "REFER", target, to=to, headers={"Refer-To": "<sip:carol@127.0.0.1>"}
        )
    assert notify.status_code == 200
    assert refer.status_code == 202
    assert seen == [("NOTIFY", "message-summary"), ("REFER", None)]


async def test_refer_without_a_handler_is_not_accepted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nobody would act on it: a REFER nobody handles is not accepted with 202."""
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        refer = await uas.request(
            "REFER",
            uri_of(client),
            to=address_of(client),
            headers={"Refer-To": "<sip:carol@127.0.0.1>"},
        )
    assert refer.status_code == 405


async def test_handler_returning_a_response(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()

    def busy(incoming: sipx.IncomingRequest) -> sipx.Response:
        return sipx.Response(486, headers={"X-Why": "in a meeting"})

    async def full(incoming: sipx.IncomingRequest) -> sipx.Response:
        return sipx.Response(200, headers=[("X-Seen", incoming.text)])

    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        client.on_request("MESSAGE", busy)
        client.on_request("NOTIFY", full)
        target, to = uri_of(client), address_of(client)
        refused = await uas.request("MESSAGE", target, to=to, body="lunch?")
        notified = await uas.request("NOTIFY", target, to=to, headers={"Event": "x"}, body="state")
    assert refused.status_code == 486 and refused.reason_phrase == "Busy Here"
    assert refused.headers["X-Why"] == "in a meeting"
    assert refused.to.tag  # completed as a response to the MESSAGE (RFC 3261 8.2.6)
    assert notified.status_code == 200 and notified.headers["X-Seen"] == "state"


async def test_handler_responding_itself(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()

    def decline(incoming: sipx.IncomingRequest) -> None:
        incoming.respond(603, "Not Now", headers={"Retry-After": "60"})

    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        client.on_request("MESSAGE", decline)
        response = await uas.request("MESSAGE", uri_of(client), to=address_of(client), body="x")
    assert (response.status_code, response.reason_phrase) == (603, "Not Now")
    assert response.headers["Retry-After"] == "60"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_failing_handler_gets_500_and_the_client_goes_on(
    autojump_clock: trio.testing.MockClock, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    network = MemoryNetwork()

    def broken(incoming: sipx.IncomingRequest) -> None:
        raise RuntimeError("handler bug")

    async def broken_async(incoming: sipx.IncomingRequest) -> None:
        await trio.sleep(0.5)
        raise RuntimeError("handler bug")

    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        client.on_request("MESSAGE", broken if kind == "sync" else broken_async)
        target, to = uri_of(client), address_of(client)
        failed = await uas.request("MESSAGE", target, to=to, body="x")
        assert failed.status_code == 500
        assert (await uas.request("OPTIONS", target, to=to)).status_code == 200
        assert (await client.options(uas.uri)).status_code == 200
        failed_again = await uas.request("MESSAGE", target, to=to, body="y")
        assert failed_again.status_code == 500
    assert "handler bug" in caplog.text


async def test_failing_invite_handler_gets_500(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()

    def broken(call: sipx.Call) -> None:
        raise RuntimeError("handler bug")

    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", broken)
        # (After its 100 Trying an unanswered INVITE would wait for ever: no Timer B.)
        with trio.fail_after(10):
            response = await caller.invite(uri_of(callee), body=OFFER)
        assert response.status_code == 500
        callee.on_request("INVITE", lambda call: call.answer())
        call = await caller.call(uri_of(callee))
        assert call.established


# -- within a call -------------------------------------------------------------------------------
@asynccontextmanager
async def a_call(
    network: MemoryNetwork,
) -> AsyncIterator[tuple[sipx.AsyncClient, sipx.AsyncClient, sipx.Call, sipx.Call]]:
    """caller, callee, the caller's call and the callee's call, established and ACKed."""
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        answered.append(call)
        call.answer()

    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", answer)
        call = await caller.call(uri_of(callee), body=OFFER)
        [incoming] = answered
        with trio.fail_after(1):
            await incoming.wait_acked()
        assert call.established and incoming.established
        yield caller, callee, call, incoming


@pytest.mark.parametrize("side", ["caller", "callee"])
async def test_bye_from_either_side_ends_the_call(
    autojump_clock: trio.testing.MockClock, side: str
) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (caller, callee, call, incoming):
        hanging_up, other = (call, incoming) if side == "caller" else (incoming, call)
        source = address_of(caller if side == "caller" else callee)
        response = await hanging_up.bye()
        assert response.status_code == 200
        assert hanging_up.ended_by == "local"
        with trio.fail_after(1):
            assert await other.wait_ended() == "remote"
        assert await hanging_up.wait_ended() == "local"
        assert call.state is incoming.state is CallState.ENDED
        assert caller.dialogs == [] and callee.dialogs == []
        with pytest.raises(sipx.ProtocolError):
            await other.bye()  # nothing left to hang up
    [bye] = network.requests("BYE")
    assert bye.source == source
    assert str(bye.message.cseq) == ("2 BYE" if side == "caller" else "1 BYE")


async def test_hold_and_unhold(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (_caller, _callee, call, incoming):
        first_answer = incoming.local_sdp
        assert first_answer is not None
        held = await call.hold()
        assert held.status_code == 200
        answer = SDPBody.parse(held.content)
        assert answer.direction == "recvonly"
        assert call.remote_sdp is not None and call.remote_sdp.direction == "recvonly"
        assert call.local_sdp is not None and call.local_sdp.direction == "sendonly"
        assert incoming.remote_sdp is not None and incoming.remote_sdp.direction == "sendonly"
        assert incoming.local_sdp is not None and incoming.local_sdp.direction == "recvonly"
        # RFC 3264 8: the answerer keeps its origin, with the version one higher.
        assert answer.origin.sess_id == first_answer.origin.sess_id
        assert int(answer.origin.sess_version) == int(first_answer.origin.sess_version) + 1
        assert codec_names(answer) == ["PCMU", "telephone-event"]

        resumed = await call.unhold()
        assert resumed.status_code == 200
        assert SDPBody.parse(resumed.content).direction == "sendrecv"
        assert incoming.remote_sdp.direction == "sendrecv"
        assert call.remote_sdp.direction == "sendrecv"
        assert call.established and incoming.established
        await trio.sleep(60)
    reinvites = [c.message for c in network.requests("INVITE")][1:]
    assert [str(r.cseq) for r in reinvites] == ["2 INVITE", "3 INVITE"]
    assert all(r.to.tag == incoming.local_tag for r in reinvites)
    # Each re-INVITE's 2xx is ACKed (in the dialog, CSeq of the INVITE).
    assert [str(c.message.cseq) for c in network.requests("ACK")] == ["1 ACK", "2 ACK", "3 ACK"]
    assert len(network.responses(200, method="INVITE")) == 3  # ACKed at once: no retransmission


async def test_callee_can_hold_too(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (_caller, _callee, call, incoming):
        held = await incoming.hold()
        assert held.status_code == 200
        assert call.remote_sdp is not None and call.remote_sdp.direction == "sendonly"
        assert incoming.remote_sdp is not None and incoming.remote_sdp.direction == "recvonly"
        [reinvite] = [c.message for c in network.requests("INVITE")][1:]
        assert str(reinvite.cseq) == "1 INVITE"  # the callee's own CSeq space
        assert reinvite.from_.tag == incoming.local_tag
        await trio.sleep(60)
    # The caller's 2xx to the re-INVITE was ACKed at once: sent once.
    assert len([c for c in network.responses(200, method="INVITE") if c.message.cseq.seq == 1]) == 2


async def test_lost_2xx_to_a_reinvite_is_recovered(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (_caller, _callee, call, incoming):
        network.drop_next(
            where=lambda m: (
                isinstance(m, sipx.Response) and m.status_code == 200 and str(m.cseq) == "2 INVITE"
            )
        )
        start = trio.current_time()
        with trio.fail_after(10):
            held = await call.hold()
        assert held.status_code == 200
        assert trio.current_time() - start == pytest.approx(T1)  # the first retransmission
        assert incoming.remote_sdp is not None and incoming.remote_sdp.direction == "sendonly"
        await trio.sleep(60)
        assert call.established and incoming.established
    oks = network.responses(200, method="INVITE")
    assert [c.fate for c in oks if c.message.cseq.seq == 2] == ["lost", "delivered"]
    assert [str(c.message.cseq) for c in network.requests("ACK")] == ["1 ACK", "2 ACK"]


async def test_info_and_refer_in_the_call(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    seen: list[sipx.IncomingRequest] = []
    async with a_call(network) as (_caller, callee, call, incoming):
        callee.on_request("INFO", seen.append)
        response = await call.info("Signal=5\r\nDuration=160\r\n")
        assert response.status_code == 200
        [info] = seen
        assert info.request.call_id == call.call_id
        assert info.request.to.tag == incoming.local_tag
        assert info.headers["Content-Type"] == "application/dtmf-relay"
        assert "Signal=5" in info.text
        # A REFER handler that answers decides (here: refuses; see test_transfer.py for
        # the transfers carried out).
        transfers: list[str] = []

        def refuse(req: sipx.IncomingRequest) -> None:
            transfers.append(req.headers["Refer-To"])
            req.respond(603)

        _caller.on_request("REFER", refuse)
        refer = await incoming.refer("sip:carol@127.0.0.1")
        assert refer.status_code == 603
        assert transfers == ["<sip:carol@127.0.0.1>"]
        assert call.established and incoming.established
    refer_requests = network.requests("REFER")
    assert len(refer_requests) == 1
    assert refer_requests[0].message.headers["Refer-To"] == "<sip:carol@127.0.0.1>"
    assert network.requests("NOTIFY") == []  # a refused REFER is not carried out


async def test_in_dialog_requests_out_of_order_or_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        ok = await client.invite(uas.uri, body=OFFER)
        await client.ack(ok)
        invite = uas.requests_for("INVITE")[0]
        address = address_of(client)
        contact = str(invite.contact[0].uri)

        def in_dialog(seq: int, **overrides: str) -> dict[str, str]:
            fields = {
                "From": str(ok.headers["To"]),
                "To": str(invite.headers["From"]),
                "Call-ID": invite.call_id,
                "CSeq": f"{seq} INFO",
            }
            fields.update(overrides)
            return fields

        assert (
            await uas.request("INFO", contact, to=address, headers=in_dialog(5))
        ).status_code == 200
        lower = await uas.request("INFO", contact, to=address, headers=in_dialog(4))
        assert lower.status_code == 500  # RFC 3261 12.2.2
        same = await uas.request("INFO", contact, to=address, headers=in_dialog(5))
        assert same.status_code == 500
        assert (
            await uas.request("INFO", contact, to=address, headers=in_dialog(6))
        ).status_code == 200
        # A BYE for a dialog the client does not know: 481 (RFC 3261 12.2.2).
        stranger = in_dialog(7, **{"Call-ID": "no-such-call", "CSeq": "7 BYE"})
        assert (await uas.request("BYE", contact, to=address, headers=stranger)).status_code == 481
        wrong_tag = in_dialog(8, To=f"<{contact}>;tag=not-ours", CSeq="8 BYE")
        assert (await uas.request("BYE", contact, to=address, headers=wrong_tag)).status_code == 481
        no_tag = await uas.request("BYE", contact, to=address)
        assert no_tag.status_code == 481
        assert len(client.dialogs) == 1  # none of these touched the call
        bye = await uas.request("BYE", contact, to=address, headers=in_dialog(9, CSeq="9 BYE"))
        assert bye.status_code == 200
        assert client.dialogs == []


async def test_bye_by_response_or_dialog_id(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS) as uas, client_on(network) as client:
        first = await client.invite(uas.uri, body=OFFER)
        await client.ack(first)
        second = await client.invite(uas.uri, body=OFFER)
        await client.ack(second)
        assert len(client.dialogs) == 2
        with pytest.raises(ValueError, match="Either response or dialog_id must be provided"):
            await client.bye()
        assert (await client.bye(response=first)).status_code == 200
        [remaining] = client.dialogs
        assert remaining.call_id == second.call_id
        assert (await client.bye(dialog_id=str(remaining.id))).status_code == 200
        assert client.dialogs == []
        with pytest.raises(sipx.ProtocolError):
            await client.bye(dialog_id=remaining.id)
    byes = uas.requests_for("BYE")
    assert [b.call_id for b in byes] == [first.call_id, second.call_id]
    assert all(str(b.cseq) == "2 BYE" for b in byes)


# -- forking -------------------------------------------------------------------------------------
def fork_to(request: sipx.Request, tag: str) -> str:
    return f"{request.headers['To']};tag={tag}"


async def test_forked_early_dialogs_and_a_late_second_2xx(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two forks ring (different To tags) and the first answers; the second answers too,
    later: that 2xx is ACKed and its dialog ended with BYE (RFC 3261 13.2.2.4)."""
    network = MemoryNetwork()

    def forked(request: sipx.Request) -> list[Reply]:
        return [
            Reply(180, {"To": fork_to(request, "fork-a")}),
            Reply(180, {"To": fork_to(request, "fork-b")}, delay=1),
            Reply(200, {"To": fork_to(request, "fork-a")}, delay=4),
        ]

    async with (
        ScriptedUAS(network, UAS, {"INVITE": forked}) as uas,
        ScriptedUAS(network, UAS2, user="fork-b") as other,
        client_on(network) as client,
        network.socket(("127.0.0.1", 5084)) as fork_b,
    ):
        results: list[sipx.Response] = []
        async with trio.open_nursery() as nursery:

            async def place() -> None:
                results.append(await client.invite(uas.uri, body=OFFER))

            nursery.start_soon(place)
            await trio.sleep(2)
            early = client.early_dialogs
            assert sorted(d.remote_tag for d in early) == ["fork-a", "fork-b"]
            assert all(d.state is DialogState.EARLY for d in early)
            assert client.dialogs == []
        [ok] = results
        assert ok.status_code == 200 and ok.to.tag == "fork-a"
        assert [r.status_code for r in ok.history] == [180, 180]
        assert client.early_dialogs == []
        [dialog] = client.dialogs
        assert dialog.remote_tag == "fork-a" and dialog.state is DialogState.CONFIRMED
        await client.ack(ok)

        # The other fork answers as well; its Contact is the second UAS.
        invite = uas.requests_for("INVITE")[0]
        late = sipx.Response(200, headers=[(n, v) for n, v in ok.headers.multi_items()])
        late.headers["To"] = fork_to(invite, "fork-b")
        late.headers["Contact"] = f"<{other.uri}>"
        late.headers.remove_first("Record-Route")
        fork_b.send(late.to_bytes(), address_of(client))
        with trio.fail_after(5):
            bye = await other.wait_for("BYE")
        [ack] = other.requests_for("ACK")
        for request in (ack, bye):
            assert request.to.tag == "fork-b" and request.call_id == ok.call_id
            assert str(request.uri) == other.uri
        assert str(ack.cseq) == f"{ok.cseq.seq} ACK"
        await trio.sleep(1)
        # The call with the first fork is untouched.
        assert [d.remote_tag for d in client.dialogs] == ["fork-a"]
        assert uas.requests_for("BYE") == []
        assert uas.requests_for("ACK")


# -- strict routing ------------------------------------------------------------------------------
async def test_strict_route_becomes_the_request_uri(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 3261 12.2.1.1: a first route without ;lr is a strict router: it becomes the
    Request-URI and the remote target goes last in Route."""
    network = MemoryNetwork()
    strict = f"<sip:{PROXY[0]}:{PROXY[1]}>"
    loose = "<sip:edge.example.net;lr>"
    async with (
        ScriptedUAS(network, PROXY, user="proxy") as proxy,
        ScriptedUAS(network, UAS, record_route=[loose, strict]) as uas,
        client_on(network) as client,
    ):
        ok = await client.invite(uas.uri, body=OFFER)
        [dialog] = client.dialogs
        assert [str(r) for r in dialog.route_set] == [strict, loose]  # reversed for the UAC
        await client.ack(ok)
        info = await client.info(body="x", response=ok)
        assert info.status_code == 200
        bye = await client.bye(ok)
        assert bye.status_code == 200
    for method in ("ACK", "INFO", "BYE"):
        [request] = proxy.requests_for(method)
        assert str(request.uri) == f"sip:{PROXY[0]}:{PROXY[1]}"
        assert request.headers.get_list("Route") == [loose, f"<{uas.uri}>"]
    assert network.requests("BYE", destination=PROXY)
    assert uas.requests_for("BYE") == []


async def test_loose_route_keeps_the_remote_target(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    route = f"<sip:{PROXY[0]}:{PROXY[1]};lr>"
    async with (
        ScriptedUAS(network, PROXY, user="proxy") as proxy,
        ScriptedUAS(network, UAS, record_route=[route]) as uas,
        client_on(network) as client,
    ):
        ok = await client.invite(uas.uri, body=OFFER)
        await client.ack(ok)
        await client.bye(ok)
    [bye] = proxy.requests_for("BYE")
    assert str(bye.uri) == uas.uri
    assert bye.headers.get_list("Route") == [route]


# -- the blocking Client -------------------------------------------------------------------------
def test_blocking_client_runs_handlers_on_its_portal_thread() -> None:
    """A Client runs trio in its own thread (no MockClock, no MemoryNetwork to share):
    two of them on loopback UDP, in real (short) time."""
    seen: list[tuple[str, threading.Thread, str]] = []

    def on_message(incoming: sipx.IncomingRequest) -> None:
        seen.append((incoming.text, threading.current_thread(), incoming.method))

    def on_info(incoming: sipx.IncomingRequest) -> sipx.Response:
        return sipx.Response(488)

    with (
        sipx.Client("127.0.0.1", 0, timeout=5) as bob,
        sipx.Client("127.0.0.1", 0, timeout=5) as alice,
    ):
        bob.on_request("MESSAGE", on_message)
        bob.on_request("INFO", on_info)
        host, port = bob.local_address
        started = time.monotonic()
        response = alice.message(f"sip:bob@{host}:{port}", "hello")
        assert response.status_code == 200
        assert alice.info(f"sip:bob@{host}:{port}", "x").status_code == 488
        assert time.monotonic() - started < 10  # answered, not left to time out
    [(text, thread, method)] = seen
    assert (text, method) == ("hello", "MESSAGE")
    assert thread.name == "sipx-portal"
    assert thread is bob._portal.thread and thread is not threading.current_thread()


def test_blocking_client_on_a_memory_network() -> None:
    """``network=`` works for a Client when both ends live in its trio run: here it sends
    to itself, and its handler answers on the portal thread."""
    network = MemoryNetwork()
    seen: list[threading.Thread] = []

    def on_message(incoming: sipx.IncomingRequest) -> sipx.Response:
        seen.append(threading.current_thread())
        return sipx.Response(202, headers={"X-Echo": incoming.text})

    with sipx.Client("127.0.0.1", 0, network=network, timeout=5) as client:
        client.on_request("MESSAGE", on_message)
        host, port = client.local_address
        response = client.message(f"sip:me@{host}:{port}", "note to self")
        options = client.options(f"sip:me@{host}:{port}")
    assert (response.status_code, response.headers["X-Echo"]) == (202, "note to self")
    assert options.status_code == 200 and "MESSAGE" in options.headers["Allow"]
    [thread] = seen
    assert thread is client._portal.thread and thread.name == "sipx-portal"
    assert [c.message.method for c in network.requests()] == ["MESSAGE", "OPTIONS"]


async def test_crossing_reinvites_get_491_and_both_succeed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(delay=0.05)  # both re-INVITEs are in flight before either lands
    results: dict[str, tuple[sipx.Response, float]] = {}
    async with a_call(network) as (_caller, _callee, call, incoming):

        async def hold(name: str, side: sipx.Call) -> None:
            start = trio.current_time()
            response = await side.hold()
            results[name] = (response, trio.current_time() - start)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold, "caller", call)
            nursery.start_soon(hold, "callee", incoming)
    statuses = [c.message.status_code for c in network.responses(method="INVITE")]
    assert statuses.count(491) == 2  # each side refused the other's crossing re-INVITE
    assert results["caller"][0].status_code == 200
    assert results["callee"][0].status_code == 200
    # The Call-ID owner (the caller) waits 2.1-4 s, the other side 0-2 s (RFC 3261 14.1).
    assert 2.1 <= results["caller"][1] <= 4.5
    assert results["callee"][1] < results["caller"][1]
    retried = [c for c in network.requests("INVITE")][1:]
    assert len(retried) == 4  # two crossing re-INVITEs, then one retry from each side


# -- merged requests (RFC 3261 8.2.2.2) ---------------------------------------------------------
@pytest.mark.parametrize("method", ["INVITE", "MESSAGE"])
async def test_a_merged_request_gets_482_and_reaches_the_application_once(
    autojump_clock: trio.testing.MockClock, method: str
) -> None:
    """The same request forked to us twice (same From tag, Call-ID, CSeq; other branch)."""
    network = MemoryNetwork()
    seen: list[str] = []

    def handler(incoming: Any) -> None:
        if isinstance(incoming, sipx.Call):
            seen.append(incoming.invite.top_via.branch)
            incoming.answer()
        else:
            seen.append(incoming.request.top_via.branch)

    async with client_on(network) as callee, network.socket(PEER) as peer:
        callee.on_request(method, handler)
        body = OFFER if method == "INVITE" else None
        first = raw_request(method, address_of(callee), branch="z9hG4bKpath1", body=body)
        second = raw_request(method, address_of(callee), branch="z9hG4bKpath2", body=body)
        peer.send(first.to_bytes(), address_of(callee))
        peer.send(second.to_bytes(), address_of(callee))
        await trio.sleep(1)
        finals: dict[str, int] = {}
        for entry in network.responses():
            if entry.message.status_code >= 200:
                finals.setdefault(entry.message.top_via.branch, entry.message.status_code)
        assert seen == ["z9hG4bKpath1"]
        assert finals == {"z9hG4bKpath1": 200, "z9hG4bKpath2": 482}
