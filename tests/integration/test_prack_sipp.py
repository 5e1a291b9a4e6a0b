"""Reliable provisional responses (RFC 3262) against SIPp, both ways.

* sipx calls a SIPp UAS (``uas_prack.xml``) that checks ``Supported: 100rel`` in the INVITE,
  sends ``180`` with ``Require: 100rel`` and ``RSeq: 1`` twice (the second a
  retransmission), expects exactly one PRACK whose RAck names it, answers 200, then 200 to
  the INVITE; sipx ACKs and hangs up.
* A SIPp UAC (``uac_prack.xml``) that requires 100rel calls sipx: sipx rings with a 183
  carrying its SDP, sent reliably because the caller requires it, and answers at once; the
  200 waits for SIPp's PRACK (RFC 3262 3), SIPp ACKs and hangs up.

Both sides are checked: SIPp's exit status (its scenario fails on any unexpected or
missing message, a missing 100rel or a bad RAck) and what sipx saw on the wire.
"""

from __future__ import annotations

import pytest
import trio
from conftest import SIPpFactory
from peers import HOST, free_media_port

import sipx

pytestmark = pytest.mark.integration


class Wire:
    """The messages a client sent and received (its ``trace=`` hook), parsed."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, sipx.Request | sipx.Response]] = []

    def __call__(self, direction: str, data: bytes, address: tuple[str, int], tr: str) -> None:
        if data.strip():
            self.messages.append((direction, sipx.parse_message(data)))

    def requests(self, direction: str, method: str) -> list[sipx.Request]:
        return [
            m
            for d, m in self.messages
            if d == direction and isinstance(m, sipx.Request) and m.method == method
        ]

    def responses(self, direction: str, status: int, method: str) -> list[sipx.Response]:
        return [
            m
            for d, m in self.messages
            if d == direction
            and isinstance(m, sipx.Response)
            and m.status_code == status
            and m.cseq.method == method
        ]

    def order(self) -> list[str]:
        return [
            m.method if isinstance(m, sipx.Request) else f"{m.status_code} {m.cseq.method}"
            for _, m in self.messages
        ]


async def test_sipx_pracks_the_reliable_180_of_a_sipp_uas(sipp: SIPpFactory) -> None:
    uas = sipp("uas_prack.xml", extra=["-mp", str(free_media_port()), "-mi", HOST], timeout_s=20)
    wire = Wire()
    async with sipx.AsyncClient(HOST, 0, trace=wire) as client:
        try:
            with trio.fail_after(10):
                call = await client.call(f"sip:bob@{uas.hostport}")
        except sipx.SIPError as exc:
            raise AssertionError(f"{exc}\n{uas.describe()}") from exc
        assert call.established, call.final_response
        await trio.sleep(0.2)
        await call.bye()
    rc = await trio.to_thread.run_sync(uas.wait, 10.0)
    assert rc == 0, uas.describe()

    [invite] = wire.requests("out", "INVITE")
    assert "100rel" in invite.headers.get_list("Supported")
    ringing = wire.responses("in", 180, "INVITE")
    assert len(ringing) == 2 and all(r.headers["RSeq"] == "1" for r in ringing)
    [prack] = wire.requests("out", "PRACK")  # one PRACK: the second 180 was recognised
    assert prack.headers["RAck"] == f"1 {invite.cseq.seq} INVITE"
    assert prack.to.tag == ringing[0].to.tag and prack.call_id == invite.call_id
    assert prack.cseq.seq == invite.cseq.seq + 1
    assert [r.status_code for r in wire.responses("in", 200, "PRACK")] == [200]
    history = call.final_response.history  # type: ignore[union-attr]
    assert [r.status_code for r in history if r.status_code != 100] == [180]
    [bye] = wire.requests("out", "BYE")
    assert bye.cseq.seq > prack.cseq.seq  # the dialog's CSeq went on from the PRACK's


async def test_a_sipp_caller_requiring_100rel_is_served(sipp: SIPpFactory) -> None:
    wire = Wire()
    calls: list[sipx.Call] = []
    ended: list[str | None] = []

    async def ring_and_answer(call: sipx.Call) -> None:
        calls.append(call)
        call.ring(183)  # reliable: the caller requires 100rel
        call.answer()  # waits for the PRACK of the 183 and its SDP
        with trio.fail_after(10):
            ended.append(await call.wait_ended())

    async with sipx.AsyncClient(HOST, 0, trace=wire) as client:
        client.on_request("INVITE", ring_and_answer)
        uac = await trio.to_thread.run_sync(
            lambda: sipp(
                "uac_prack.xml",
                f"{HOST}:{client.local_address.port}",
                service="bob",
                extra=["-mp", str(free_media_port()), "-mi", HOST],
                timeout_s=15,
            )
        )
        rc = await trio.to_thread.run_sync(uac.wait, 20.0)
        assert rc == 0, uac.describe()
        with trio.fail_after(5):
            while not ended:
                await trio.sleep(0.01)
    assert ended == ["remote"]
    [invite] = wire.requests("in", "INVITE")
    assert invite.headers.get_list("Require") == ["100rel"]
    [progress] = wire.responses("out", 183, "INVITE")
    assert progress.headers.get_list("Require") == ["100rel"]
    assert progress.headers["Content-Type"] == "application/sdp"
    rseq = int(progress.headers["RSeq"])
    assert 1 <= rseq <= 2**31 - 1
    [prack] = wire.requests("in", "PRACK")
    assert prack.headers["RAck"] == f"{rseq} 1 INVITE"
    order = wire.order()
    assert order.index("183 INVITE") < order.index("PRACK") < order.index("200 PRACK")
    assert order.index("200 PRACK") < order.index("200 INVITE") < order.index("ACK")
    [call] = calls
    assert call.ended_by == "remote" and call.answer_sdp is not None
