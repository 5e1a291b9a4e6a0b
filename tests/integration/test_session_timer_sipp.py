"""Session timers (RFC 4028) and UPDATE (RFC 3311) against real SIPp peers.

* A SIPp UAS answers sipx's call with ``Session-Expires: 3;refresher=uac`` and expects two
  refreshes: by UPDATE when its Allow lists UPDATE, by re-INVITE when it does not. The
  scenario checks each refresh (Session-Expires with refresher=uac; no body in the UPDATE,
  an SDP offer in the re-INVITE) and fails on anything else.
* A SIPp UAS takes the refresher role (``refresher=uas``) and never refreshes: sipx ends
  the call with BYE before the session expires.
* A SIPp UAC sends UPDATE with a new offer in a confirmed call to a sipx client: sipx
  answers 200 with SDP (the scenario checks it) and moves its media to the new port.

A session interval of 3 s keeps each test to a few seconds (RFC 4028's floor of 90 s binds
the one who asks; the 2xx decides, and sipx takes what it says).
"""

from __future__ import annotations

import pytest
import trio
from conftest import SIPpFactory
from peers import HOST, free_media_port, free_port

import sipx
from sipx._call import media_of
from sipx._core.session_timer import SessionExpires

pytestmark = pytest.mark.integration

SE = 3  # seconds: the session interval the SIPp UAS dictates


def trace_of(wire: list[tuple[str, bytes]], direction: str, start: str) -> list[sipx.Message]:
    """The messages sipx sent (``"out"``) or received whose first line starts with ``start``."""
    found = []
    for way, data in wire:
        if way == direction and data.startswith(start.encode()):
            found.append(sipx.parse_message(data))
    return found


def second_refresh_done(wire: list[tuple[str, bytes]], method: str) -> bool:
    """The second refresh's transaction is over (its 200, and for a re-INVITE our ACK), so
    that the BYE comes where the scenario expects it, on a loaded machine too."""
    if method == "INVITE":
        return len(trace_of(wire, "out", "ACK ")) >= 3  # the call's ACK and two refreshes'
    answers = [m for m in trace_of(wire, "in", "SIP/2.0 200") if m.cseq.method == method]
    return len(answers) >= 2


@pytest.mark.parametrize(
    ("scenario", "method"),
    [("uas_session_timer.xml", "UPDATE"), ("uas_session_timer_reinvite.xml", "INVITE")],
)
async def test_sipx_refreshes_the_session_sipp_dictates(
    sipp: SIPpFactory, scenario: str, method: str
) -> None:
    uas = sipp(scenario, keys={"se": str(SE)}, extra=["-mp", str(free_media_port())])
    wire: list[tuple[str, bytes]] = []
    async with sipx.AsyncClient(
        HOST, 0, trace=lambda way, data, address, transport: wire.append((way, data))
    ) as client:
        with trio.fail_after(5):
            call = await client.call(f"sip:timer@{uas.hostport}")
        assert call.established
        assert (call.session_expires, call.session_refresher) == (SE, "local")
        refreshes: list[sipx.Message] = []
        with trio.fail_after(3 * SE):
            while len(refreshes) < 2 or not second_refresh_done(wire, method):
                await trio.sleep(0.05)
                refreshes = trace_of(wire, "out", f"{method} ")[1 if method == "INVITE" else 0 :]
        assert call.established  # the refreshes kept it
        await call.bye()
    assert await trio.to_thread.run_sync(uas.wait, 10.0) == 0, uas.describe()
    [invite] = trace_of(wire, "out", "INVITE ")[:1]
    assert "timer" in invite.headers["Supported"] and invite.headers["Session-Expires"] == "1800"
    for refresh in refreshes:
        assert SessionExpires.parse(refresh.headers["Session-Expires"]) == SessionExpires(SE, "uac")
    if method == "INVITE":  # RFC 3264 8: the same SDP, version unchanged
        assert all(refresh.content == invite.content for refresh in refreshes)
    assert call.ended_by == "local"


async def test_sipx_ends_the_call_when_the_refresher_never_refreshes(sipp: SIPpFactory) -> None:
    uas = sipp(
        "uas_session_expires.xml", keys={"se": str(SE)}, extra=["-mp", str(free_media_port())]
    )
    async with sipx.AsyncClient(HOST, 0) as client:
        with trio.fail_after(5):
            call = await client.call(f"sip:timer@{uas.hostport}")
        assert (call.session_expires, call.session_refresher) == (SE, "remote")
        with trio.fail_after(3 * SE):
            assert await call.wait_ended() == "session-expired"
    # The scenario ends only with the BYE it expects (and answers).
    assert await trio.to_thread.run_sync(uas.wait, 10.0) == 0, uas.describe()


async def test_an_update_from_sipp_moves_sipx_media(sipp: SIPpFactory) -> None:
    port1, port2 = free_port("udp"), free_port("udp")
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        answered.append(call)
        call.answer()

    async with sipx.AsyncClient(HOST, 0) as client:
        client.on_request("INVITE", answer)
        uac = await trio.to_thread.run_sync(
            lambda: sipp(
                "uac_update.xml",
                f"{HOST}:{client.local_address.port}",
                service="bob",
                keys={"port1": str(port1), "port2": str(port2)},
            )
        )
        with trio.fail_after(10):  # SIPp waits 300 ms after the UPDATE's 200 before BYE
            while (
                not answered
                or answered[0].remote_sdp is None
                or (answered[0].remote_sdp.media[0].port != port2)
            ):
                await trio.sleep(0.01)
        [call] = answered
        stream = media_of(call).stream
        assert stream is not None and stream.params is not None
        assert stream.params.remote == (HOST, port2)  # RTP now goes to the new port
        assert stream.params.direction == "recvonly"
        assert call.remote_sdp is not None and call.remote_sdp.direction == "sendonly"
        assert call.local_sdp is not None and call.local_sdp.direction == "recvonly"
        with trio.fail_after(10):
            assert await call.wait_ended() == "remote"
    assert await trio.to_thread.run_sync(uac.wait, 10.0) == 0, uac.describe()
