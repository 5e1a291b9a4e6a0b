"""RequestContext tells handlers which attempt a request is (2 for the challenge answer)."""

from __future__ import annotations

import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork, ScriptedUAS


class Recorder(sipx.Events):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, int, bool]] = []

    @sipx.event_handler("request")
    def on_request(self, request: sipx.Request, context: sipx.RequestContext) -> sipx.Request:
        self.seen.append(
            (request.method, request.cseq.seq, context.attempt, "Authorization" in request.headers)
        )
        return request


async def test_attempt_counts_the_challenge_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    events = Recorder()
    async with (
        ScriptedUAS(network, users={"1111": "1111xxx"}) as uas,
        sipx.AsyncClient(
            "127.0.0.1",
            5062,
            auth=sipx.Auth.Digest("1111", "1111xxx"),
            events=events,
            network=network,
        ) as client,
    ):
        response = await client.register(f"sip:1111@{uas.address[0]}:{uas.address[1]}")
    assert response.status_code == 200
    assert events.seen == [("REGISTER", 1, 1, False), ("REGISTER", 2, 2, True)]
