"""The user part of our Contact is written escaped (RFC 3261 25.1): a From user or a
Request-URI user with a space (``x%20y``) gives ``sip:x%20y@...``, never a bare space, which
would make the Contact unparsable for the peer."""

from __future__ import annotations

import trio
import trio.testing
from test_abandoned_answered_call import answer_at_once

import sipx
from sipx.testing import MemoryNetwork, ScriptedUAS


async def test_a_request_from_an_escaped_user_has_that_user_escaped_in_its_contact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, ("127.0.0.1", 5070), answer_at_once) as uas,
        sipx.AsyncClient("127.0.0.1", 5080, network=network) as client,
    ):
        call = await client.call(uas.uri, from_uri="sip:x%20y@127.0.0.1:5080")
        await call.bye()
        invite = uas.requests[0]
        assert invite.method == "INVITE"
        contact = invite.headers.get_first("Contact")
        assert contact is not None
        assert contact.startswith("<sip:x%20y@"), contact
        assert sipx.NameAddr.parse(contact).uri.user == "x y"


async def test_an_answer_to_an_escaped_request_uri_user_has_it_escaped_in_its_contact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        sipx.AsyncClient("127.0.0.1", 5080, network=network) as callee,
        sipx.AsyncClient("127.0.0.1", 5090, network=network) as caller,
    ):

        async def answer(call: sipx.Call) -> None:
            call.answer()

        callee.on_request("INVITE", answer)
        call = await caller.call("sip:a%20b@127.0.0.1:5080")  # fails if the Contact is bad
        response = call.final_response
        assert response is not None
        text = response.headers.get_first("Contact")
        assert text is not None and text.startswith("<sip:a%20b@"), text
        await call.bye()
