"""An INVITE that rings for ever gives up after INVITE_TIMEOUT and CANCELs the call."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import sipx
from sipx._async_client import INVITE_TIMEOUT
from sipx.testing import MemoryNetwork, ScriptedUAS


async def test_ringing_for_ever_times_out_and_cancels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, ring=10 * INVITE_TIMEOUT) as uas,
        sipx.AsyncClient("127.0.0.1", 5062, network=network) as client,
    ):
        start = trio.current_time()
        with pytest.raises(sipx.TimeoutError) as info:
            await client.invite(f"sip:bob@{uas.address[0]}:{uas.address[1]}")
        assert trio.current_time() - start == pytest.approx(INVITE_TIMEOUT)
        assert info.value.method == "INVITE" and info.value.seconds == INVITE_TIMEOUT
        await uas.wait_for("CANCEL")
        await trio.sleep(5)
    statuses = [c.message.status_code for c in network.responses(method="INVITE")]
    assert statuses[-1] == 487
    assert [c.message.method for c in network.requests()][-2:] == ["CANCEL", "ACK"]


async def test_close_after_an_unanswered_invite_timed_out_does_not_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No provisional response: nothing can be CANCELled (RFC 3261 9.1), so leaving the client
    right after the user's timeout returns at once instead of waiting 16·T1 for a 1xx."""
    network = MemoryNetwork()
    async with ScriptedUAS(network, ignore={"INVITE"}) as uas:
        start = trio.current_time()
        async with sipx.AsyncClient("127.0.0.1", 5062, network=network) as client:
            with pytest.raises(sipx.TimeoutError):
                await client.invite(f"sip:bob@{uas.address[0]}:{uas.address[1]}", timeout=2)
        assert trio.current_time() - start == pytest.approx(2.0)
        assert [c.message.method for c in network.requests()].count("CANCEL") == 0


async def test_close_after_a_ringing_invite_timed_out_waits_only_for_the_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(delay=0.05)
    async with ScriptedUAS(network, ring=60.0) as uas:
        start = trio.current_time()
        async with sipx.AsyncClient("127.0.0.1", 5062, network=network) as client:
            with pytest.raises(sipx.TimeoutError):
                await client.invite(f"sip:bob@{uas.address[0]}:{uas.address[1]}", timeout=2)
        # the CANCEL and the 487 take one round trip each; then the close is done
        assert trio.current_time() - start < 2.5
    statuses = [c.message.status_code for c in network.responses(method="INVITE")]
    assert statuses[-1] == 487
