"""What one out-of-dialog request costs the client, pinned by behaviour (issue 14, sixth pass).

* A request answered with anything but a challenge leaves nothing behind for
  ``retry_with_auth()``: only a 401/407's request has its destination remembered, and the
  retry still goes there.
* A next hop named by an IP address and a port is sent to without the (coroutine) look-up.
* ``send()`` and ``transact()`` make no closure or cell per request: the digest flow's
  are made for a challenge only.
* A client transaction's response waiter needs no queue object for one response, and the
  layer keys client transactions by a str.
"""

from __future__ import annotations

import gc
from collections import deque

import pytest
import trio
import trio.testing

import sipx
from sipx import Auth
from sipx._core.message import Request, Response
from sipx._core.transaction import TransactionLayer, TransactionState, make_response
from sipx._next_hop import NextHop
from sipx._trio.waiter import ResponseWaiter
from sipx._uac import UserAgentClient
from sipx.testing import MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)
OTHER = ("127.0.0.1", 5090)
AOR = "sip:alice@127.0.0.1:5080"


async def test_only_a_challenged_request_is_remembered_for_retry_with_auth(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS, users={"alice": "secret"}),
        ScriptedUAS(network, OTHER),
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
    ):
        for _ in range(3):
            assert (await client.options("sip:bob@127.0.0.1:5090")).status_code == 200
        assert (await client.message("sip:bob@127.0.0.1:5080", "hi")).status_code == 200
        challenge = await client.register(AOR)
        assert challenge.status_code == 401
        remembered = client._uac._destinations
        assert list(remembered.values()) == [UAS]  # the 200s' requests left nothing
        response = await client.retry_with_auth(challenge, auth=Auth.Digest("alice", "secret"))
        assert response.status_code == 200
        first, retry = network.requests("REGISTER")
        assert retry.destination == first.destination == UAS
        assert "Authorization" in retry.message.headers
        assert len(remembered) == 1  # the retry's 200 added nothing


async def test_a_literal_next_hop_is_sent_to_without_a_look_up(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[object] = []
    candidates = NextHop.candidates

    async def counting(self: NextHop, *args: object, **kwargs: object) -> object:
        looked_up.append(args)
        return await candidates(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(NextHop, "candidates", counting)
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, UAS),
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
    ):
        assert (await client.options("sip:bob@127.0.0.1:5080")).status_code == 200
        assert looked_up == []
        # host= still goes through the look-up, and a URI without a port too.
        assert (await client.options("sip:bob@h", host="127.0.0.1", port=5080)).status_code == 200
        assert len(looked_up) == 1
        with pytest.raises(sipx.SIPError):
            await client.options("sip:bob@127.0.0.1", timeout=1)
        assert len(looked_up) == 2
        with pytest.raises(sipx.ProtocolError, match="tel"):
            await client.options("tel:+15551234")  # as before: no transport reaches it
    assert [c.destination for c in network.requests("OPTIONS")][:2] == [UAS, UAS]


@pytest.mark.parametrize("name", ["send", "transact"])
def test_the_request_path_makes_no_closure_per_request(name: str) -> None:
    code = getattr(UserAgentClient, name).__code__
    assert code.co_cellvars == () and code.co_freevars == ()
    assert not any(hasattr(const, "co_code") for const in code.co_consts)


async def test_the_waiter_keeps_order_across_its_slot_and_its_queue() -> None:
    waiter = ResponseWaiter()
    items = [Response(code, "x") for code in (100, 180, 183, 200, 202)]
    waiter.send_nowait(items[0])
    # One item (the usual case: a final response) needs no queue besides the waiter.
    assert not any(isinstance(r, deque) for r in gc.get_referents(waiter))
    assert len(waiter) == 1 and await waiter.__anext__() is items[0] and len(waiter) == 0
    for item in items[1:4]:
        waiter.send_nowait(item)
    assert len(waiter) == 3
    assert await waiter.__anext__() is items[1]
    waiter.send_nowait(items[4])
    assert len(waiter) == 3
    assert [await waiter.__anext__() for _ in range(3)] == items[2:]
    assert len(waiter) == 0
    # A cancelled reader leaves nothing behind; a later item waits for the next read.
    with trio.move_on_after(0) as scope:
        await waiter.__anext__()
    assert scope.cancelled_caught
    waiter.send_nowait(items[0])
    assert await waiter.__anext__() is items[0]


def test_client_transactions_are_found_by_a_str_key() -> None:
    """The layer's key of a client transaction is one str, not a tuple the collector
    tracks for as long as the transaction lives."""
    layer = TransactionLayer()
    request = Request(
        "OPTIONS",
        "sip:bob@127.0.0.1",
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKkey"),
            ("From", "<sip:a@127.0.0.1>;tag=1"),
            ("To", "<sip:bob@127.0.0.1>"),
            ("Call-ID", "key"),
            ("CSeq", "1 OPTIONS"),
        ],
    )
    transaction = layer.send_request(request, 0.0, reliable=False)
    assert not any(isinstance(referent, tuple) for referent in gc.get_referents(layer._clients))
    answer = make_response(request, 200)
    assert layer.receive_response(answer, 0.1) is transaction
    assert transaction.state is TransactionState.TERMINATED  # Completed: its record stays
    assert layer.receive_response(answer, 0.2) is None  # the retransmission absorbed
    assert "StrayResponse" not in [type(e).__name__ for e in layer.pop_events()]
