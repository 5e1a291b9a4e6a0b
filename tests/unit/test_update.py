"""UPDATE (RFC 3311), both sides, on sipx.testing.MemoryNetwork under the autojump clock:
in confirmed and early dialogs, with and without an offer, glare (491), and the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import SDPBody
from sipx._call import media_of
from sipx.testing import MemoryNetwork


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: Any) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:
        yield client


def uri_of(client: sipx.AsyncClient) -> str:
    return f"sip:bob@127.0.0.1:{client.local_address.port}"


@asynccontextmanager
async def a_call(
    network: MemoryNetwork, **kwargs: Any
) -> AsyncIterator[tuple[sipx.AsyncClient, sipx.AsyncClient, sipx.Call, sipx.Call]]:
    """caller, callee, the caller's call and the callee's, established with sipx media."""
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        answered.append(call)
        call.answer()

    async with client_on(network, **kwargs) as caller, client_on(network, **kwargs) as callee:
        callee.on_request("INVITE", answer)
        call = await caller.call(uri_of(callee))
        [incoming] = answered
        with trio.fail_after(1):
            await incoming.wait_acked()
        yield caller, callee, call, incoming


def moved(sdp: SDPBody | None, port: int, direction: str) -> SDPBody:
    """``sdp`` with its audio on ``port`` and ``direction``, version one higher."""
    assert sdp is not None
    copy = SDPBody.parse(sdp.to_bytes()).with_direction(direction)
    copy.media[0].port = port
    copy.origin = sdp.origin.bumped()
    return copy


def wire(network: MemoryNetwork, method: str) -> list[sipx.Request]:
    return [captured.message for captured in network.requests(method)]


async def test_update_in_a_confirmed_call_moves_the_peers_media(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (_caller, _callee, call, incoming):
        offer = moved(call.local_sdp, 40000, "sendonly")
        response = await call.update(offer)
        assert response.status_code == 200
        answer = SDPBody.parse(response.content)
        assert answer.direction == "recvonly"
        assert "Contact" in response.headers  # a target refresh (RFC 3311 5.2)
        # The callee took the offer: its view of the peer and its RTP target moved.
        assert incoming.remote_sdp is not None
        assert incoming.remote_sdp.media[0].port == 40000
        assert incoming.local_sdp is not None and incoming.local_sdp.direction == "recvonly"
        stream = media_of(incoming).stream
        assert stream is not None and stream.params is not None
        assert stream.params.remote == ("127.0.0.1", 40000)
        assert stream.params.direction == "recvonly"
        # ... and the caller its answer.
        assert call.local_sdp is offer and call.remote_sdp is not None
        assert call.remote_sdp.direction == "recvonly"
        assert call.established and incoming.established
        await trio.sleep(5)
    [update] = wire(network, "UPDATE")
    assert str(update.cseq) == "2 UPDATE" and update.to.tag == incoming.local_tag
    assert update.headers["Content-Type"] == "application/sdp" and "Contact" in update.headers
    assert SDPBody.parse(update.content).media[0].port == 40000
    assert len(wire(network, "ACK")) == 1  # the INVITE's; UPDATE is not ACKed
    assert len(network.responses(200, method="UPDATE")) == 1  # not retransmitted either


async def test_the_callee_updates_too_and_an_update_without_offer_gets_no_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (caller, _callee, call, incoming):
        response = await incoming.update(moved(incoming.local_sdp, 41000, "sendrecv"))
        assert response.status_code == 200
        assert call.remote_sdp is not None and call.remote_sdp.media[0].port == 41000
        before = incoming.remote_sdp
        assert call.dialog is not None
        bare = await caller.update(dialog_id=call.dialog.id)  # no body: no offer
        assert bare.status_code == 200 and bare.content == b""
        assert incoming.remote_sdp is before
    first, second = wire(network, "UPDATE")
    assert str(first.cseq) == "1 UPDATE"  # the callee's own CSeq space
    assert second.content == b"" and "Content-Type" not in second.headers


async def test_allow_lists_update_in_invite_and_200(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (caller, callee, _call, _incoming):
        options = await caller.options(uri_of(callee))
    assert "UPDATE" in options.allow
    [invite] = wire(network, "INVITE")
    assert "UPDATE" in invite.allow
    [ok] = [c.message for c in network.responses(200, method="INVITE")][:1]
    assert "UPDATE" in ok.allow


@pytest.mark.parametrize(("first", "second"), [("UPDATE", "UPDATE"), ("INVITE", "UPDATE")])
async def test_crossing_offers_get_491_and_both_succeed(
    autojump_clock: trio.testing.MockClock, first: str, second: str
) -> None:
    network = MemoryNetwork(delay=0.05)  # both offers are in flight before either lands
    results: dict[str, tuple[int, float]] = {}
    async with a_call(network) as (_caller, _callee, call, incoming):

        async def offer(name: str, side: sipx.Call, method: str) -> None:
            start = trio.current_time()
            sdp = moved(side.local_sdp, 42000 if name == "caller" else 43000, "sendrecv")
            response = await (side.reinvite(sdp) if method == "INVITE" else side.update(sdp))
            results[name] = (response.status_code, trio.current_time() - start)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(offer, "caller", call, first)
            nursery.start_soon(offer, "callee", incoming, second)
        # The callee's retry came first (its shorter wait), then the caller's.
        assert incoming.remote_sdp is not None and incoming.remote_sdp.media[0].port == 42000
    refused = network.responses(491)
    assert sorted(c.message.cseq.method for c in refused) == sorted([first, second])
    assert results["caller"][0] == results["callee"][0] == 200
    # Each side waits as RFC 3261 14.1 says: the Call-ID owner 2.1-4 s, the other 0-2 s.
    assert 2.1 <= results["caller"][1] <= 4.5
    assert results["callee"][1] < results["caller"][1]


async def test_update_in_the_early_dialog_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    """The callee's early dialog exists from ring(): the caller UPDATEs it (client.update on
    one of its early_dialogs) and the callee UPDATEs back; answer() confirms the same dialog."""
    network = MemoryNetwork()
    ringing: list[sipx.Call] = []
    caller_updates: list[sipx.IncomingRequest] = []

    def on_update(incoming: sipx.IncomingRequest) -> None:
        # A bare invite() has no Call: the UPDATE goes to the handler, which answers.
        caller_updates.append(incoming)
        offer = incoming.body
        assert isinstance(offer, SDPBody)
        answer = SDPBody.create_answer(offer, "alice", "127.0.0.1", "127.0.0.1", port=44000)
        incoming.respond(200, body=answer)

    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", lambda call: ringing.append(call) or call.ring(183))
        caller.on_request("UPDATE", on_update)
        results: list[sipx.Response] = []

        async def place() -> None:
            results.append(await caller.invite(uri_of(callee), body=offer_sdp(30000)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(place)
            while not caller.early_dialogs:
                await trio.sleep(0.01)
            [incoming] = ringing
            assert incoming.state is sipx.CallState.EARLY and incoming.dialog is None
            [early] = caller.early_dialogs
            response = await caller.update(dialog_id=early.id, body=offer_sdp(31000))
            assert response.status_code == 200
            assert SDPBody.parse(response.content).media[0].port != 0
            assert incoming.remote_sdp is not None and incoming.remote_sdp.media[0].port == 31000
            stream = media_of(incoming).stream
            assert stream is not None and stream.params is not None
            assert stream.params.remote == ("127.0.0.1", 31000)

            back = await incoming.update()
            assert back.status_code == 200
            assert incoming.remote_sdp is not None and incoming.remote_sdp.media[0].port == 44000
            assert len(caller_updates) == 1
            incoming.answer()
        [final] = results
        assert final.status_code == 200
        await caller.ack(final)
        with trio.fail_after(1):
            await incoming.wait_acked()
        assert incoming.dialog is not None and incoming.dialog.id in [d.id for d in callee.dialogs]
        assert len(callee.dialogs) == 1  # the early dialog became the call's
        await caller.bye(final)
        with trio.fail_after(1):
            assert await incoming.wait_ended() == "remote"
        assert callee.dialogs == []
    caller_update, callee_update = wire(network, "UPDATE")
    assert caller_update.to.tag == callee_update.from_.tag == incoming.local_tag
    assert str(callee_update.cseq) == "1 UPDATE"


def offer_sdp(port: int) -> SDPBody:
    return SDPBody.create_offer(
        "early",
        "alice",
        "127.0.0.1",
        "127.0.0.1",
        [
            {
                "media": "audio",
                "port": port,
                "codecs": [{"payload": "0", "name": "PCMU", "rate": "8000"}],
            }
        ],
    )


async def test_update_offer_before_the_invite_was_answered_gets_500(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """RFC 3311 5.2: the callee has the INVITE's offer and has not answered it yet."""
    network = MemoryNetwork()
    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", lambda call: call.ring(180))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller.invite, uri_of(callee), None, offer_sdp(30000))
            while not caller.early_dialogs:
                await trio.sleep(0.01)
            [early] = caller.early_dialogs
            response = await caller.update(dialog_id=early.id, body=offer_sdp(31000))
            assert response.status_code == 500
            assert 0 <= int(response.headers["Retry-After"]) <= 10
            assert (await caller.update(dialog_id=early.id)).status_code == 200  # no offer
            nursery.cancel_scope.cancel()


async def test_update_with_a_body_that_is_no_sdp_gets_488(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with a_call(network) as (caller, _callee, call, incoming):
        before = incoming.remote_sdp
        assert call.dialog is not None
        response = await caller.update(dialog_id=call.dialog.id, body="hello")
        assert response.status_code == 488
        assert incoming.remote_sdp is before and incoming.established


async def test_update_needs_a_dialog(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    waiting: list[sipx.Call] = []
    async with client_on(network) as caller, client_on(network) as callee:
        callee.on_request("INVITE", waiting.append)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller.invite, uri_of(callee), None, offer_sdp(30000))
            while not waiting:
                await trio.sleep(0.01)
            with pytest.raises(sipx.ProtocolError, match="ring"):
                await waiting[0].update()  # not even a provisional response yet
            waiting[0].reject(486)
        with pytest.raises(sipx.ProtocolError):
            await waiting[0].update()
