"""Reliable provisional responses (RFC 3262) between two sipx clients through Kamailio.

1111 calls 2222 through the test Kamailio (registrar, record-routing proxy); 2222 rings
with a reliable 183 carrying its SDP and answers at once. The caller's PRACK travels in
the early dialog through Kamailio (Route = the reversed Record-Route of the 183, relayed
by loose routing), the callee's 200 waits for it, and the dialog's later requests (ACK,
BYE) carry CSeq numbers above the PRACK's. Checked on both clients' wires.
"""

from __future__ import annotations

import pytest
import trio
from peers import Kamailio
from test_calls_kamailio import (
    HOST,
    Wire,
    incoming_calls,
    next_call,
    proxy_hop,
    registered,
    top_via_is_kamailio,
    transport,  # noqa: F401 - the UDP/TCP fixture
)

from sipx._call import Call

pytestmark = pytest.mark.integration


async def test_prack_through_kamailio(kamailio: Kamailio, transport: str) -> None:  # noqa: F811
    wa, wb = Wire(), Wire()
    async with (
        registered(kamailio, "1111", transport, wa) as alice,
        registered(kamailio, "2222", transport, wb) as bob,
        incoming_calls(bob) as inbox,
    ):
        answered: list[Call] = []

        async def ring_and_answer() -> None:
            call = await next_call(inbox)
            call.ring(183, reliable=True)  # alice supports 100rel: sent reliably
            call.answer()  # held until the PRACK of the 183 and its SDP
            answered.append(call)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ring_and_answer)
            call_a = await alice.call(kamailio.aor("2222"))
        assert call_a.established, call_a.final_response
        (call_b,) = answered
        with trio.fail_after(5):
            await call_b.wait_acked()
        cid = call_a.call_id

        (invite_b,) = wb.requests("in", "INVITE", cid)
        assert "100rel" in invite_b.header_all("supported")
        rr = invite_b.header_all("record-route")
        assert rr and all(proxy_hop(kamailio, v) for v in rr), rr
        (progress,) = wb.responses("out", "INVITE", 183, cid)
        assert progress.header("require") == "100rel"
        rseq = progress.header("rseq")
        assert rseq is not None

        # The caller's PRACK: to Kamailio, routed by the 183's Record-Route, to the callee.
        (prack_a,) = wa.requests("out", "PRACK", cid)
        assert prack_a.address == (HOST, kamailio.port)
        assert prack_a.header_all("route") == list(reversed(rr))
        assert prack_a.start_line.startswith("PRACK sip:2222@127.0.0.1:")  # the Contact
        invite_cseq = wa.requests("out", "INVITE", cid)[-1].cseq.split()[0]
        assert prack_a.header("rack") == f"{rseq} {invite_cseq} INVITE"
        (prack_b,) = wb.requests("in", "PRACK", cid)
        assert top_via_is_kamailio(kamailio, prack_b)
        assert [m.status for m in wb.responses("out", "PRACK", call_id=cid)] == [200]
        assert [m.status for m in wa.responses("in", "PRACK", call_id=cid)] == [200]

        # The callee's 200 went after the PRACK's (RFC 3262 3: the 183 carried SDP).
        out_b = [m for m in wb.messages if m.direction == "out" and m.call_id == cid]
        statuses = [(m.status, m.method) for m in out_b if m.is_response]
        assert statuses.index((200, "PRACK")) < statuses.index((200, "INVITE"))

        r = await call_a.bye()
        assert r.status_code == 200, r
        with trio.fail_after(5):
            assert await call_b.wait_ended() == "remote"
        (bye_a,) = wa.requests("out", "BYE", cid)
        assert int(bye_a.cseq.split()[0]) > int(prack_a.cseq.split()[0])
        assert alice.dialogs == [] and bob.dialogs == []
