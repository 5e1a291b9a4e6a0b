"""What one out-of-dialog request costs the client, pinned by behaviour (issue 14, sixth pass).

* A request answered with anything but a challenge leaves nothing behind for
  ``retry_with_auth()``: only a 401/407's request has its destination remembered, and the
  retry still goes there.
* A next hop named by an IP address and a port is sent to without the (coroutine) look-up.
* ``send()`` makes no closure per request: the digest flow's are made for a challenge only.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import sipx
from sipx import Auth
from sipx._next_hop import NextHop
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


def test_send_makes_no_closure_per_request() -> None:
    code = UserAgentClient.send.__code__
    assert code.co_cellvars == () and code.co_freevars == ()
    assert not any(hasattr(const, "co_code") for const in code.co_consts)
