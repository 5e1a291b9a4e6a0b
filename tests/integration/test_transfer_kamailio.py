"""A blind transfer between three sipx clients through Kamailio (registrar, record-routing
proxy, digest auth): Alice (1111) calls Bob (2222); Bob transfers her to Carol (3333).

Every request crosses Kamailio: the REFER and its NOTIFYs follow the call's Record-Route,
Alice's new INVITE is challenged (407) and routed to Carol's binding, Bob's BYE ends his
call with Alice once her NOTIFY reported 200. Each client unregisters on the way out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from peers import HOST, USERS, Kamailio, free_port, query_bindings

import sipx
from sipx import AsyncClient, Auth

pytestmark = pytest.mark.integration


@asynccontextmanager
async def registered(kamailio: Kamailio, user: str, trace: list[str]) -> AsyncIterator[AsyncClient]:
    def record(direction: str, data: bytes, address: object, transport: str) -> None:
        start_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        if start_line.strip():
            trace.append(f"{user} {direction} {start_line}")

    client = AsyncClient(
        HOST,
        free_port(),
        auth=Auth.Digest(username=user, password=USERS[user]),
        timeout=5,
        trace=record,
    )
    async with client:
        assert (await client.register(kamailio.aor(user), expires=120)).status_code == 200
        try:
            yield client
        finally:
            with trio.move_on_after(5):
                await client.unregister(kamailio.aor(user))


async def test_blind_transfer_through_kamailio(kamailio: Kamailio) -> None:
    trace: list[str] = []
    at_bob: list[sipx.Call] = []
    at_carol: list[sipx.Call] = []
    with trio.fail_after(20):
        async with (
            registered(kamailio, "1111", trace) as alice,
            registered(kamailio, "2222", trace) as bob,
            registered(kamailio, "3333", trace) as carol,
        ):
            bob.on_request("INVITE", lambda call: (at_bob.append(call), call.answer()))
            carol.on_request("INVITE", lambda call: (at_carol.append(call), call.answer()))
            a_call = await alice.call(f"sip:2222@{HOST}:{kamailio.port}")
            assert a_call.established, "\n".join(trace)
            [b_call] = at_bob
            await b_call.wait_acked()

            result = await b_call.transfer(f"sip:3333@{HOST}:{kamailio.port}")

            assert result.succeeded, (result, "\n".join(trace))
            assert [n.status_code for n in result.notifications] == [100, 200]
            assert b_call.ended_by == "local"  # it worked: Bob hung up (RFC 5589)
            assert await a_call.wait_ended() == "transferred"
            new = a_call.replaced_by
            assert new is not None and new.established
            [c_call] = at_carol
            assert c_call.call_id == new.call_id and c_call.established
            assert str(c_call.invite.from_.uri) == f"sip:1111@{HOST}:{kamailio.port}"
            assert c_call.invite.headers["Referred-By"].startswith("<sip:2222@")
            # The new call's INVITE went through Kamailio's challenge.
            assert new.final_response is not None
            assert [r.status_code for r in new.final_response.history if r.status_code >= 200] == [
                407
            ]
            assert (await new.bye()).status_code == 200
    ladder = "\n".join(trace)
    assert "2222 out SIP/2.0 202 Accepted" not in ladder  # Alice answers the REFER, not Bob
    assert "1111 out SIP/2.0 202 Accepted" in ladder
    assert sum(line.startswith("1111 out NOTIFY ") for line in trace) == 2, ladder
    assert sum(line.startswith("2222 out SIP/2.0 200 OK") for line in trace) >= 2, ladder
    assert not [line for line in trace if " 481 " in line or " 500 " in line], ladder
    for user in ("1111", "2222", "3333"):
        assert query_bindings(kamailio, user) == [], f"{user} is still registered"
