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
