"""A ``call()`` cancelled after the callee answered (while the ACK is being made) does not
leave the callee in a call nobody holds: sipx ACKs the 2xx and ends the call with BYE at
once, in a task of the client's nursery (before, it stayed up until the client closed)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork, Reply, ScriptedUAS


class SlowFirstAck(sipx.Events):
    """A request hook that holds the first ACK for 2 s (as a slow hook or a DNS look-up
    for the callee's Contact would): a cancellation then finds ``call()`` inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.acks = 0

    @sipx.event_handler("request")
    async def on_request(self, request: sipx.Request, context: sipx.RequestContext) -> None:
        if request.method == "ACK":
            self.acks += 1
            if self.acks == 1:
                await trio.sleep(2)


def answer_at_once(request: sipx.Request) -> list[Reply]:
    if request.method != "INVITE":
        return [Reply(200)]
    offer = sipx.SDPBody.parse(request.content)
    answer = sipx.SDPBody.create_answer(offer, "uas", "127.0.0.1", "127.0.0.1", ports=[7004])
    return [Reply(200, body=answer)]


@pytest.mark.parametrize("early_media", [False, True])
async def test_a_call_cancelled_while_acking_its_answer_is_hung_up_at_once(
    autojump_clock: trio.testing.MockClock, early_media: bool
) -> None:
    network = MemoryNetwork()
    events = SlowFirstAck()
    async with (
        ScriptedUAS(network, ("127.0.0.1", 5070), answer_at_once) as uas,
        sipx.AsyncClient("127.0.0.1", 0, network=network, events=events) as alice,
    ):
        with trio.move_on_after(1) as scope:
            await alice.call(uas.uri, early_media=early_media)
        assert scope.cancelled_caught  # call() never returned the call
        await trio.sleep(5)  # the client still open: the callee must not wait for its close
        methods = [r.method for r in uas.requests]
        assert methods == ["INVITE", "ACK", "BYE"]
        assert not alice.dialogs  # the BYE ended the dialog
