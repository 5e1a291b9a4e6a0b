"""Session timers (RFC 4028) and UPDATE (RFC 3311) between two sipx clients through
Kamailio (registrar, record-routing proxy, digest auth).

1111 calls 2222 with a 3 s session interval on both sides: 2222 lets the caller refresh
(``refresher=uac``), so 1111 refreshes with UPDATE every 1.5 s, routed through Kamailio
(its Record-Route as Route); each 200 carries the interval back and the call outlives
several intervals. Then an UPDATE with a new offer from the callee moves the caller's view
of its media, and the caller hangs up. A 3 s interval keeps the test short (both clients
are told ``min_se=3``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from peers import USERS, Kamailio, query_bindings
from test_calls_kamailio import HOST, Wire, incoming_calls, next_call, proxy_hop

from sipx import AsyncClient, Auth, SDPBody
from sipx._call import Call
from sipx._core.session_timer import SessionExpires

pytestmark = pytest.mark.integration

SE = 3


@asynccontextmanager
async def registered(kamailio: Kamailio, user: str, wire: Wire) -> AsyncIterator[AsyncClient]:
    """An AsyncClient with a 3 s session interval, registered as ``user``."""
    aor = kamailio.aor(user)
    async with AsyncClient(
        HOST,
        0,
        auth=Auth.Digest(user, USERS[user]),
        trace=wire,
        timeout=5,
        session_expires=SE,
        min_se=SE,
    ) as client:
        port = client.local_address.port
        assert (await client.register(aor, expires=120)).status_code == 200
        try:
            yield client
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await client.unregister(aor)
                left = await trio.to_thread.run_sync(
                    lambda: [c for c in query_bindings(kamailio, user) if f":{port}" in c]
                )
                assert left == [], f"stale binding of {user}: {left}"


async def test_session_refreshes_and_update_through_kamailio(kamailio: Kamailio) -> None:
    wa, wb = Wire(), Wire()
    async with (
        registered(kamailio, "1111", wa) as alice,
        registered(kamailio, "2222", wb) as bob,
        incoming_calls(bob) as inbox,
    ):
        answered: list[Call] = []

        async def answer_one() -> None:
            call = await next_call(inbox)
            call.answer()
            answered.append(call)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_one)
            call_a = await alice.call(kamailio.aor("2222"))
        assert call_a.established, call_a.final_response
        [call_b] = answered
        assert (call_a.session_expires, call_a.session_refresher) == (SE, "local")
        assert (call_b.session_expires, call_b.session_refresher) == (SE, "remote")
        cid = call_a.call_id

        await trio.sleep(2.5 * SE)  # five refreshes; the callee would end it after 2 s
        assert call_a.established and call_b.established

        rr = wb.requests("in", "INVITE", cid)[0].header_all("record-route")
        updates = wa.requests("out", "UPDATE", cid)
        assert len(updates) >= 3, wa.dump()
        for update in updates:
            assert update.address == (HOST, kamailio.port)  # through the proxy
            assert update.header_all("route") == list(reversed(rr))
            assert all(proxy_hop(kamailio, value) for value in rr)
            assert SessionExpires.parse(update.header("session-expires") or "") == (
                SessionExpires(SE, "uac")
            )
            assert update.body == ""
        assert len(wb.requests("in", "UPDATE", cid)) == len(updates)
        oks = wa.responses("in", "UPDATE", 200, cid)
        assert len(oks) == len(updates)
        assert {ok.header("session-expires") for ok in oks} == {f"{SE};refresher=uac"}

        # The callee moves its media with an UPDATE: the caller takes the new offer.
        assert call_b.local_sdp is not None
        offer = SDPBody.parse(call_b.local_sdp.to_bytes()).with_direction("sendonly")
        offer.origin = call_b.local_sdp.origin.bumped()
        response = await call_b.update(offer)
        assert response.status_code == 200
        assert call_a.remote_sdp is not None and call_a.remote_sdp.direction == "sendonly"
        assert SDPBody.parse(response.content).direction == "recvonly"

        assert (await call_a.bye()).status_code == 200
        with trio.fail_after(5):
            assert await call_b.wait_ended() == "remote"
        assert call_a.ended_by == "local"
