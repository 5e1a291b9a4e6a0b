"""Reliable provisional responses (RFC 3262, 100rel and PRACK), both sides of a call.

As caller, against a ScriptedUAS or a second AsyncClient: ``Supported: 100rel`` in the
INVITE, one PRACK per reliable 1xx (RAck, CSeq in the early dialog), retransmissions and
out-of-order RSeqs dropped, early media from a reliable 183. As callee, against a raw peer
that plays the caller byte by byte: RSeq and Require, retransmission at T1 doubling until
the PRACK, 500 after 64·T1, the second reliable 1xx and a 200 after a 183 with SDP waiting
for the PRACK, unreliable 1xx for callers that did not ask, 420 for unknown extensions,
481 for a PRACK that matches nothing. Everything on trio's autojump clock but the early
media test (real RTP sockets, like tests/unit/test_call_media.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
from test_uas import (
    OFFER,
    PEER,
    T1,
    UAS,
    Address,
    address_of,
    client_on,
    method_is,
    nothing_received,
    raw_request,
    receive_response,
    uri_of,
)

import sipx
from sipx import CallState, Events, event_handler
from sipx.media import tone
from sipx.testing import MemoryNetwork, MemorySocket, Reply, ScriptedUAS

REL = {"Require": "100rel"}


def reliable(rseq: int, **extra: str) -> dict[str, str]:
    return {**REL, "RSeq": str(rseq), **extra}


class Seen(Events):
    """Counts the responses the "response" event hook is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: list[str] = []

    @event_handler("response")
    def response(self, response: sipx.Response, context: sipx.RequestContext) -> None:
        self.codes.append(f"{response.status_code} {response.cseq.method}")


# -- the caller ------------------------------------------------------------------------------------
async def test_the_caller_pracks_each_reliable_1xx_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    script = [
        Reply(100),
        Reply(180, reliable(7)),
        Reply(180, reliable(7), delay=0.2),  # a retransmission: not PRACKed, not shown again
        Reply(183, reliable(9), delay=0.2),  # RSeq skips 8: dropped (RFC 3262 4)
        Reply(183, reliable(8), delay=0.2),  # the next in order: PRACKed
        Reply(200, delay=1),
    ]
    seen = Seen()
    async with (
        ScriptedUAS(network, UAS, {"INVITE": script}) as uas,
        client_on(network, events=seen) as client,
    ):
        call = await client.call(uas.uri, headers={"Supported": "timer"})
        assert call.established
        [invite] = uas.requests_for("INVITE")
        assert invite.headers.get_list("Supported") == ["timer", "100rel"]  # appended
        pracks = uas.requests_for("PRACK")
        assert [p.headers["RAck"] for p in pracks] == ["7 1 INVITE", "8 1 INVITE"]
        assert [str(p.cseq) for p in pracks] == ["2 PRACK", "3 PRACK"]
        for prack in pracks:  # in the early dialog, to the Contact of the 1xx
            assert prack.to.tag == call.final_response.to.tag  # type: ignore[union-attr]
            assert prack.from_.tag == invite.from_.tag and prack.call_id == invite.call_id
            assert str(prack.uri) == f"sip:uas@{UAS[0]}:{UAS[1]}"
        history = call.final_response.history  # type: ignore[union-attr]
        assert [(r.status_code, r.headers.get_first("RSeq")) for r in history] == [
            (100, None),
            (180, "7"),
            (183, "8"),
        ]
        invite_codes = [code for code in seen.codes if code.endswith("INVITE")]
        assert invite_codes == ["100 INVITE", "180 INVITE", "183 INVITE", "200 INVITE"]
        assert seen.codes.count("200 PRACK") == 2
        await call.bye()
        [bye] = uas.requests_for("BYE")
        assert str(bye.cseq) == "4 BYE"  # above the PRACKs sent in the early dialog
    # Each PRACK went once (no retransmission of the 1xx made another).
    assert len(network.requests("PRACK")) == 2


async def test_an_invite_without_an_offer_does_not_announce_100rel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A late offer: a reliable 1xx could carry the offer, answered only in a PRACK."""
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, {"INVITE": [Reply(180), Reply(200, delay=0.1)]}) as uas,
        client_on(network) as client,
    ):
        response = await client.invite(uas.uri)
        assert response.status_code == 200
        await client.invite(uas.uri, body=OFFER)
    late, offered = [r.message for r in network.requests("INVITE")]
    assert "100rel" not in late.headers.get_list("Supported")
    assert "100rel" in offered.headers.get_list("Supported")


async def test_a_reliable_1xx_with_a_bad_rseq_is_taken_as_unreliable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    script = [Reply(180, reliable(0)), Reply(180, {"RSeq": "5"}), Reply(200, delay=1)]
    async with (
        ScriptedUAS(network, UAS, {"INVITE": script}) as uas,
        client_on(network) as client,
    ):
        call = await client.call(uas.uri)
        assert call.established
        history = call.final_response.history  # type: ignore[union-attr]
        assert [r.status_code for r in history] == [180, 180]
        assert uas.requests_for("PRACK") == []


async def test_a_caller_without_100rel_announces_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    rung: list[sipx.Response] = []

    def ring_and_answer(call: sipx.Call) -> None:
        rung.append(call.ring(180, reliable=True))  # falls back: the caller did not ask
        call.answer()

    async with (
        client_on(network) as callee,
        client_on(network, reliable_provisional=False) as caller,
    ):
        callee.on_request("INVITE", ring_and_answer)
        call = await caller.call(uri_of(callee))
        assert call.established
    [invite] = network.requests("INVITE")
    assert "100rel" not in invite.message.headers.get_list("Supported")
    [ringing] = network.responses(180)
    assert "RSeq" not in ringing.message.headers and "Require" not in ringing.message.headers
    assert "RSeq" not in rung[0].headers
    assert network.requests("PRACK") == []


async def test_early_media_from_a_reliable_183_flows_before_the_200() -> None:
    """Two sipx clients on loopback, real RTP: the callee sends a reliable 183 with its SDP,
    plays an announcement and only then answers; the caller PRACKs the 183 and its media
    flows both ways before any 200."""
    wire: list[tuple[str, sipx.Request | sipx.Response]] = []
    incoming: list[sipx.Call] = []
    played = trio.Event()
    answer_now = trio.Event()

    def trace(direction: str, data: bytes, address: Address, transport: str) -> None:
        if data.strip():
            wire.append((direction, sipx.parse_message(data)))

    async def announce(call: sipx.Call) -> None:
        incoming.append(call)
        call.ring(183, reliable=True)
        await call.play(tone(700, 1.0))
        played.set()
        await answer_now.wait()
        call.answer()

    async with (
        sipx.AsyncClient("127.0.0.1", 0, rtp_ports=(40000, 50000)) as callee,
        sipx.AsyncClient("127.0.0.1", 0, rtp_ports=(40000, 50000), trace=trace) as caller,
    ):
        callee.on_request("INVITE", announce)
        placed: list[sipx.Call] = []
        with trio.fail_after(8):
            async with trio.open_nursery() as nursery:

                async def place() -> None:
                    uri = f"sip:ivr@127.0.0.1:{callee.local_address.port}"
                    placed.append(await caller.call(uri))

                nursery.start_soon(place)
                await played.wait()
                assert placed == []  # no 200 yet
                before_200 = incoming[0].media_stats
                assert before_200 is not None
                # The caller's RTP reached the callee: its media started with the 183.
                assert before_200.packets_received >= 40
                assert before_200.packets_sent >= 45
                answer_now.set()
        [call] = placed
        assert call.established
        stats = call.media_stats
        assert stats is not None and stats.packets_received >= 45  # the announcement
        await call.bye()
    sent = [m for d, m in wire if d == "out"]
    received = [m for d, m in wire if d == "in"]
    [progress] = [m for m in received if isinstance(m, sipx.Response) and m.status_code == 183]
    assert progress.headers.get_list("Require") == ["100rel"]
    assert progress.headers["Content-Type"] == "application/sdp"
    [prack] = [m for m in sent if isinstance(m, sipx.Request) and m.method == "PRACK"]
    assert prack.headers["RAck"] == f"{progress.headers['RSeq']} 1 INVITE"
    order = [
        m.method if isinstance(m, sipx.Request) else f"{m.status_code} {m.cseq.method}"
        for _, m in wire
    ]
    assert order.index("PRACK") < order.index("200 PRACK") < order.index("200 INVITE")
    assert order.index("183 INVITE") < order.index("PRACK")


# -- the callee ----------------------------------------------------------------------------------
def prack_for(
    ringing: sipx.Response,
    target: Address,
    *,
    cseq: int = 2,
    branch: str = "z9hG4bKprack1",
    rack: str | None = None,
) -> sipx.Request:
    return raw_request(
        "PRACK",
        target,
        branch=branch,
        cseq=cseq,
        to_tag=ringing.to.tag,
        headers=[("RAck", rack or f"{ringing.headers['RSeq']} 1 INVITE")],
    )


async def ringing_call(
    network: MemoryNetwork,
    callee: sipx.AsyncClient,
    peer: MemorySocket,
    headers: Sequence[tuple[str, str]] = (("Supported", "100rel"),),
) -> sipx.Call:
    """The peer INVITEs the callee (with ``headers``) and has its 100 (200 ms later: the
    call is not answered, RFC 3261 17.2.1); the call waits."""
    calls: list[sipx.Call] = []
    callee.on_request("INVITE", calls.append)
    target = address_of(callee)
    peer.send(raw_request("INVITE", target, headers=headers, body=OFFER).to_bytes(), target)
    trying = await receive_response(peer)
    assert trying.status_code == 100
    [call] = calls
    return call


async def test_ring_reliably_resends_at_t1_doubling_until_the_prack(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        target = address_of(callee)
        call = await ringing_call(network, callee, peer)
        start = trio.current_time()
        sent = call.ring(180, reliable=True)
        assert sent.headers.get_list("Require") == ["100rel"]
        rseq = int(sent.headers["RSeq"])
        assert 1 <= rseq <= 2**31 - 1
        times, copies = [], []
        for _ in range(4):
            copies.append(await receive_response(peer))
            times.append(trio.current_time() - start)
        # no T2 cap: 4·T1 is the fourth interval
        assert times == pytest.approx([0, T1, 3 * T1, 7 * T1])
        assert {r.to_bytes() for r in copies} == {sent.to_bytes()}
        assert call.state is CallState.EARLY

        peer.send(prack_for(sent, target).to_bytes(), target)
        ok = await receive_response(peer)
        assert (ok.status_code, str(ok.cseq)) == (200, "2 PRACK")
        assert ok.to.tag == sent.to.tag
        await trio.sleep(60)
        assert nothing_received(peer)  # resending stopped, and nothing gave up

        call.answer()
        answered = await receive_response(peer)
        assert (answered.status_code, str(answered.cseq)) == (200, "1 INVITE")
        assert "RSeq" not in answered.headers
        ack = raw_request("ACK", target, branch="z9hG4bKack1", to_tag=sent.to.tag)
        peer.send(ack.to_bytes(), target)
        with trio.fail_after(1):
            await call.wait_acked()
        # The BYE from the caller: its CSeq is above the PRACK's.
        bye = raw_request("BYE", target, branch="z9hG4bKbye1", cseq=3, to_tag=sent.to.tag)
        peer.send(bye.to_bytes(), target)
        assert (await receive_response(peer)).status_code == 200
        assert call.ended_by == "remote"


async def test_no_prack_rejects_the_invite_with_500_after_64_t1(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        target = address_of(callee)
        call = await ringing_call(network, callee, peer, headers=[("Require", "100rel")])
        start = trio.current_time()
        sent = call.ring()  # the caller requires 100rel: reliable by default
        assert "RSeq" in sent.headers
        times = []
        while True:
            response = await receive_response(peer)
            times.append(trio.current_time() - start)
            if response.status_code != 180:
                break
        assert times == pytest.approx([0, T1, 3 * T1, 7 * T1, 15 * T1, 31 * T1, 63 * T1, 64 * T1])
        assert (response.status_code, response.to.tag) == (500, sent.to.tag)
        assert call.state is CallState.ENDED and call.ended_by == "timeout"
        assert call.final_response is not None and call.final_response.status_code == 500
        with pytest.raises(sipx.ProtocolError):
            call.answer()
        ack = raw_request("ACK", target, to_tag=sent.to.tag)  # the INVITE's branch
        peer.send(ack.to_bytes(), target)
        await trio.sleep(60)
        assert nothing_received(peer)
        # A PRACK now matches nothing.
        peer.send(prack_for(sent, target).to_bytes(), target)
        assert (await receive_response(peer)).status_code == 481


async def test_a_second_reliable_1xx_and_the_200_wait_for_the_prack(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        target = address_of(callee)
        call = await ringing_call(network, callee, peer)
        ringing = call.ring(180, reliable=True)
        progress = call.ring(183, reliable=True)  # with our SDP: early media
        assert int(progress.headers["RSeq"]) == int(ringing.headers["RSeq"]) + 1
        assert (await receive_response(peer)).status_code == 180
        await trio.sleep(T1 / 2)
        assert nothing_received(peer)  # the 183 waits for the PRACK of the 180

        # A PRACK for the 183 (not yet sent) or with another CSeq matches nothing.
        peer.send(prack_for(progress, target, branch="z9hG4bKp0").to_bytes(), target)
        wrong = [await receive_response(peer)]
        rack = f"{ringing.headers['RSeq']} 5 INVITE"
        peer.send(
            prack_for(ringing, target, cseq=3, branch="z9hG4bKp1", rack=rack).to_bytes(), target
        )
        wrong.append(await receive_response(peer))
        assert [r.status_code for r in wrong] == [481, 481]

        peer.send(prack_for(ringing, target, cseq=4, branch="z9hG4bKp2").to_bytes(), target)
        first = [await receive_response(peer), await receive_response(peer)]
        assert sorted(r.status_code for r in first) == [183, 200]
        [sent_183] = [r for r in first if r.status_code == 183]
        assert sent_183.to_bytes() == progress.to_bytes()
        assert sent_183.headers["Content-Type"] == "application/sdp"

        # RFC 3262 3: no 200 while the 183 with SDP is unacknowledged: answer() holds it.
        answer = call.answer()
        assert call.state is CallState.EARLY and not call.established
        with pytest.raises(sipx.ProtocolError, match="waits for the PRACK"):
            call.ring(180)
        again = await receive_response(peer)
        assert again.status_code == 183  # still resent, T1 after it went
        peer.send(prack_for(progress, target, cseq=5, branch="z9hG4bKp3").to_bytes(), target)
        after = [await receive_response(peer), await receive_response(peer)]
        assert [(r.status_code, r.cseq.method) for r in after] == [(200, "PRACK"), (200, "INVITE")]
        assert after[1].to_bytes() == answer.to_bytes()
        assert call.established and sipx.SDPBody.parse(after[1].content).to_bytes() == (
            sipx.SDPBody.parse(progress.content).to_bytes()
        )
        # The same PRACK again (a new transaction) matches nothing any more.
        peer.send(prack_for(progress, target, cseq=6, branch="z9hG4bKp4").to_bytes(), target)
        late = [await receive_response(peer) for _ in range(2)]
        assert 481 in [r.status_code for r in late]  # (and a 2xx retransmission, unACKed)


async def test_answering_stops_the_resending_of_a_1xx_without_sdp(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        target = address_of(callee)
        call = await ringing_call(network, callee, peer)
        ringing = call.ring(180, reliable=True)
        assert (await receive_response(peer)).status_code == 180
        call.answer()  # allowed: the 180 carried no SDP (RFC 3262 3)
        ok = await receive_response(peer)
        assert (ok.status_code, ok.cseq.method) == (200, "INVITE")
        peer.send(
            raw_request("ACK", target, branch="z9hG4bKack", to_tag=ok.to.tag).to_bytes(), target
        )
        await trio.sleep(60)
        assert nothing_received(peer)  # neither the 180 nor the 200 again
        # A late PRACK for the 180 is still answered 200 (it was never acknowledged).
        peer.send(prack_for(ringing, target).to_bytes(), target)
        assert (await receive_response(peer)).status_code == 200
        assert call.established


async def test_a_caller_that_did_not_ask_gets_unreliable_1xx(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        call = await ringing_call(network, callee, peer, headers=())
        sent = call.ring(180, reliable=True)
        assert "RSeq" not in sent.headers and "Require" not in sent.headers
        assert "RSeq" not in (await receive_response(peer)).headers
        await trio.sleep(10)
        assert nothing_received(peer)  # not resent
        call.reject(486)
    async with client_on(network) as callee, network.socket(PEER) as peer:
        call = await ringing_call(network, callee, peer)  # supports 100rel, requires nothing
        assert "RSeq" not in call.ring().headers  # default: reliable only when required
        assert "RSeq" in call.ring(reliable=True).headers
        call.reject(486)
    async with client_on(network) as callee, network.socket(PEER) as peer:
        call = await ringing_call(network, callee, peer, headers=[("Require", "100rel")])
        with pytest.raises(ValueError, match="requires 100rel"):
            call.ring(reliable=False)
        with pytest.raises(TypeError):
            call.ring(reliable="yes")  # type: ignore[arg-type]
        call.reject(486)


async def test_a_require_we_do_not_support_gets_420(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    calls: list[sipx.Call] = []
    async with client_on(network) as callee, network.socket(PEER) as peer:
        callee.on_request("INVITE", calls.append)
        target = address_of(callee)
        invite = raw_request("INVITE", target, headers=[("Require", "100rel, foo, bar")])
        peer.send(invite.to_bytes(), target)
        response = await receive_response(peer)
        if response.status_code == 100:
            response = await receive_response(peer)
        assert response.status_code == 420
        assert response.headers.get_list("Unsupported") == ["foo", "bar"]
        assert calls == []  # the application never saw it
        peer.send(raw_request("ACK", target, to_tag=response.to.tag).to_bytes(), target)
        options = raw_request(
            "OPTIONS", target, branch="z9hG4bKo1", call_id="o1", headers=[("Require", "foo")]
        )
        peer.send(options.to_bytes(), target)
        refused = await receive_response(peer)
        assert (refused.status_code, refused.headers["Unsupported"]) == (420, "foo")
    # A client without 100rel refuses a caller that requires it.
    async with (
        client_on(network, reliable_provisional=False) as callee,
        network.socket(PEER) as peer,
    ):
        callee.on_request("INVITE", calls.append)
        target = address_of(callee)
        invite = raw_request("INVITE", target, call_id="c2", headers=[("Require", "100rel")])
        peer.send(invite.to_bytes(), target)
        # Refused at once (RFC 3261 17.2.1): no 100 Trying, the 420 and its Timer G copy.
        codes = [(await receive_response(peer)).status_code for _ in range(2)]
        assert codes == [420, 420] and calls == []


async def test_a_stray_prack_gets_481(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        target = address_of(callee)
        out_of_dialog = raw_request("PRACK", target, headers=[("RAck", "1 1 INVITE")])
        peer.send(out_of_dialog.to_bytes(), target)
        assert (await receive_response(peer)).status_code == 481
        unknown = raw_request(
            "PRACK", target, branch="z9hG4bKp2", to_tag="nobody", headers=[("RAck", "1 1 INVITE")]
        )
        peer.send(unknown.to_bytes(), target)
        assert (await receive_response(peer)).status_code == 481
        # A call rung unreliably has nothing to acknowledge; a bad RAck matches nothing.
        call = await ringing_call(network, callee, peer)
        ringing = call.ring()
        assert (await receive_response(peer)).status_code == 180
        for cseq, branch, rack in ((2, "z9hG4bKp3", "1 1 INVITE"), (3, "z9hG4bKp4", "junk")):
            prack = prack_for(ringing, target, cseq=cseq, branch=branch, rack=rack)
            peer.send(prack.to_bytes(), target)
            assert (await receive_response(peer)).status_code == 481
        call.reject(486)


async def test_options_advertise_100rel_and_prack(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS) as uas,
        client_on(network) as client,
        client_on(network, reliable_provisional=False) as plain,
    ):
        response = await uas.request("OPTIONS", uri_of(client), to=address_of(client))
        other = await uas.request("OPTIONS", uri_of(plain), to=address_of(plain))
    assert "100rel" in response.headers.get_list("Supported")
    assert "PRACK" in response.headers.get_list("Allow")
    assert "100rel" not in other.headers.get_list("Supported")


async def test_sipx_to_sipx_with_a_lost_prack(autojump_clock: trio.testing.MockClock) -> None:
    """The caller's first PRACK is lost: its transaction resends it (same branch) and the
    callee resends its 183; the caller does not make a second PRACK of the retransmitted
    183; the callee's 200, held for the PRACK, goes once it arrives."""
    network = MemoryNetwork()
    network.drop_next(1, where=method_is("PRACK"))

    def ring_and_answer(call: sipx.Call) -> None:
        call.ring(183, reliable=True)
        call.answer()

    async with client_on(network) as callee, client_on(network) as caller:
        callee.on_request("INVITE", ring_and_answer)
        call = await caller.call(uri_of(callee))
        assert call.established
        history = call.final_response.history  # type: ignore[union-attr]
        assert [r.status_code for r in history] == [183]  # answered at once: no 100
        await call.bye()
    pracks = network.requests("PRACK")
    assert [p.fate for p in pracks] == ["lost", "delivered"]
    assert len({p.message.top_via.branch for p in pracks}) == 1  # one PRACK, resent
    delivered = pracks[1].time
    assert len(network.responses(183)) >= 2  # the 183 was resent meanwhile
    [ok] = network.responses(200, method="INVITE")[:1]
    assert ok.time >= delivered
    assert pracks[0].time < ok.time


async def test_cancel_stops_the_resending_of_a_reliable_1xx(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        target = address_of(callee)
        call = await ringing_call(network, callee, peer)
        ringing = call.ring(180, reliable=True)
        assert (await receive_response(peer)).status_code == 180
        cancel = raw_request("CANCEL", target)  # the INVITE's branch and CSeq number
        cancel.headers["CSeq"] = "1 CANCEL"
        peer.send(cancel.to_bytes(), target)
        codes = sorted([(await receive_response(peer)).status_code for _ in range(2)])
        assert codes == [200, 487]
        assert call.ended_by == "cancel"
        peer.send(raw_request("ACK", target, to_tag=ringing.to.tag).to_bytes(), target)
        await trio.sleep(60)
        assert nothing_received(peer)  # no 180 again, no 500


def test_a_blocking_call_rings_reliably() -> None:
    """BlockingCall.ring(reliable=True) between two blocking Clients on loopback."""
    from concurrent.futures import ThreadPoolExecutor

    with (
        sipx.Client("127.0.0.1", 0) as alice,
        sipx.Client("127.0.0.1", 0) as bob,
        ThreadPoolExecutor(max_workers=1) as worker,
    ):
        incoming = bob.calls(timeout=5)

        def callee() -> sipx.Response:
            call = next(incoming)
            ringing = call.ring(180, reliable=True)
            call.answer()
            assert call.wait_acked(5)
            return ringing

        rung = worker.submit(callee)
        call = alice.call(f"sip:bob@127.0.0.1:{bob.local_address.port}", timeout=5)
        ringing = rung.result(10)
        assert call.established
        assert ringing.headers.get_list("Require") == ["100rel"] and "RSeq" in ringing.headers
        [received] = [r for r in call.final_response.history if r.status_code == 180]  # type: ignore[union-attr]
        assert received.headers["RSeq"] == ringing.headers["RSeq"]
        call.bye()


async def test_a_held_200_is_never_sent_when_the_prack_never_comes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee, network.socket(PEER) as peer:
        target = address_of(callee)
        call = await ringing_call(network, callee, peer)
        start = trio.current_time()
        progress = call.ring(183, reliable=True)
        call.answer()  # held: the 183 carries SDP and is not acknowledged
        seen = []
        while True:
            response = await receive_response(peer)
            seen.append((response.status_code, trio.current_time() - start))
            if response.status_code >= 200:
                break
        assert [code for code, _ in seen] == [183] * 7 + [500]
        assert seen[-1][1] == 64 * T1
        assert call.ended_by == "timeout" and not call.established
        assert call.final_response is not None and call.final_response.status_code == 500
        assert callee.dialogs == []
        peer.send(raw_request("ACK", target, to_tag=progress.to.tag).to_bytes(), target)
        await trio.sleep(60)
        assert nothing_received(peer)  # and no 200 after all
