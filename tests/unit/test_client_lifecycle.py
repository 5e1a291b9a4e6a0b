"""Nothing outlives the client that started it: leaving a client ends its calls and its
pending requests, safely in any nesting (sipx._engine's wind-down)."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx import CallState
from sipx.testing import MemoryNetwork, ScriptedUAS

UAS = ("127.0.0.1", 5080)
SILENT = ("127.0.0.1", 5099)  # nothing is bound here on the memory network: no answer
T1 = 0.5


@asynccontextmanager
async def client_on(network: MemoryNetwork, **kwargs: Any) -> AsyncIterator[sipx.AsyncClient]:
    async with sipx.AsyncClient("127.0.0.1", 0, network=network, **kwargs) as client:
        yield client


def answer_calls(client: sipx.AsyncClient) -> list[sipx.Call]:
    """Answer every incoming call of ``client``; the calls, as they arrive."""
    answered: list[sipx.Call] = []

    def answer(call: sipx.Call) -> None:
        answered.append(call)
        call.answer()

    client.on_request("INVITE", answer)
    return answered


def uri_of(client: sipx.AsyncClient, user: str = "bob") -> str:
    return f"sip:{user}@127.0.0.1:{client.local_address.port}"


async def test_leaving_ends_established_calls_with_bye(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee:
        answered = answer_calls(callee)
        async with client_on(network) as caller:
            outgoing = await caller.call(uri_of(callee))
            assert outgoing.established
            await trio.sleep(1)
            leaving = trio.current_time()
        # The caller's call ended on leaving, by us, with a BYE the callee answered.
        assert outgoing.state is CallState.ENDED and outgoing.ended_by == "local"
        [bye] = network.requests("BYE")
        assert bye.time == pytest.approx(leaving)
        assert network.responses(200, method="BYE")
        [incoming] = answered
        assert incoming.ended and incoming.ended_by == "remote"
        assert caller.dialogs == [] and callee.dialogs == []


async def test_leaving_ends_answered_incoming_calls_with_bye(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as caller:
        async with client_on(network) as callee:
            answered = answer_calls(callee)
            outgoing = await caller.call(uri_of(callee))
            await trio.sleep(1)
        [incoming] = answered
        assert incoming.ended_by == "local" and incoming.state is CallState.ENDED
        assert outgoing.ended_by == "remote"
        assert [c.message.method for c in network.requests("BYE")] == ["BYE"]


async def test_leaving_rejects_unanswered_incoming_calls_with_480(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    ringing: list[sipx.Call] = []

    async def ring_for_ever(call: sipx.Call) -> None:
        ringing.append(call)
        call.ring()
        await trio.sleep_forever()

    results: list[sipx.Call] = []
    async with client_on(network) as caller:
        async with trio.open_nursery() as nursery:
            async with client_on(network) as callee:
                callee.on_request("INVITE", ring_for_ever)

                async def place() -> None:
                    results.append(await caller.call(uri_of(callee)))

                nursery.start_soon(place)
                await trio.sleep(2)
                leaving = trio.current_time()
            left = trio.current_time()
        [incoming] = ringing
        assert incoming.ended_by == "local"
        assert incoming.final_response is not None
        assert incoming.final_response.status_code == 480
        [call] = results
        assert call.final_response is not None and call.final_response.status_code == 480
        assert left - leaving < 16 * T1


async def test_leaving_cancels_a_ringing_invite_from_another_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ring=300) as uas:
        outcome: list[BaseException] = []
        async with trio.open_nursery() as outside:
            async with client_on(network) as client:

                async def ring() -> None:
                    try:
                        await client.invite(uas.uri)
                    except sipx.SIPError as exc:
                        outcome.append(exc)

                outside.start_soon(ring)  # a task the client does not own
                await uas.wait_for("INVITE")
                await trio.sleep(2)
                leaving = trio.current_time()
            left = trio.current_time()
        [error] = outcome
        assert isinstance(error, sipx.ClientClosedError)
        assert "closed" in str(error)
        # The callee stopped ringing: CANCEL, then 487 (ACKed) before the client was gone.
        assert len(uas.requests_for("CANCEL")) == 1
        assert [r.status_code for r in uas.responses if r.cseq.method == "INVITE"][-1] == 487
        assert left - leaving <= 16 * T1


async def test_pending_requests_fail_with_client_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Before: the timer task was gone, Timer F never fired and options() never returned."""
    network = MemoryNetwork()
    failed_at: list[tuple[float, BaseException]] = []
    with trio.fail_after(100):  # the old code hung here
        async with trio.open_nursery() as outside, client_on(network) as client:

            async def ask() -> None:
                try:
                    await client.options(f"sip:nobody@{SILENT[0]}:{SILENT[1]}")
                except sipx.SIPError as exc:
                    failed_at.append((trio.current_time(), exc))

            outside.start_soon(ask)
            await trio.sleep(3)
            leaving = trio.current_time()
    [(when, error)] = failed_at
    assert isinstance(error, sipx.ClientClosedError)
    assert isinstance(error, sipx.SIPError)
    assert when == pytest.approx(leaving)
    with pytest.raises(sipx.ClientClosedError):
        await client.options(f"sip:nobody@{SILENT[0]}:{SILENT[1]}")


async def test_ctrl_c_inside_the_client_still_ends_its_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee:
        answered = answer_calls(callee)
        with pytest.raises(KeyboardInterrupt):
            async with client_on(network) as caller:
                outgoing = await caller.call(uri_of(callee))
                await trio.sleep(1)
                raise KeyboardInterrupt
        assert outgoing.ended_by == "local"
        assert len(network.requests("BYE")) == 1
        assert answered[0].ended_by == "remote"


async def test_aclose_is_safe_in_any_nesting(autojump_clock: trio.testing.MockClock) -> None:
    """Before: open()/aclose() entered and left the nursery by hand, and aclose() in a nested
    nursery or another cancel scope corrupted trio's cancel-scope stack."""
    assert not hasattr(sipx.AsyncClient, "open")  # the split lifecycle is gone
    network = MemoryNetwork()
    for nesting in ("nursery", "cancel-scope", "direct"):
        async with client_on(network) as client:
            address = (client.local_address.host, client.local_address.port)
            if nesting == "nursery":
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.aclose)
            elif nesting == "cancel-scope":
                with trio.CancelScope():
                    await client.aclose()
            else:
                await client.aclose()
            assert client.closed
            await client.aclose()  # twice is harmless
        assert not network.is_bound(address), nesting
        with pytest.raises(sipx.ClientClosedError):
            async with client:
                pass  # pragma: no cover


async def test_outer_cancellation_still_winds_down(autojump_clock: trio.testing.MockClock) -> None:
    """A deadline around the whole block: the BYE still goes out (shielded, bounded)."""
    network = MemoryNetwork()

    async with client_on(network) as callee:
        callee.on_request("INVITE", lambda call: call.answer())
        with trio.move_on_after(5):
            async with client_on(network) as caller:
                call = await caller.call(uri_of(callee))
                await trio.sleep_forever()
        assert call.ended_by == "local"
        assert network.responses(200, method="BYE")


def _silent_udp_port() -> tuple[socket.socket, int]:
    """A bound UDP socket that never reads: requests to it get no answer and no ICMP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_blocking_close_from_another_thread_fails_the_waiting_call() -> None:
    """Before: the thread blocked in options() got trio's Cancelled (a BaseException)."""
    silent, port = _silent_udp_port()
    outcome: list[BaseException] = []
    started = threading.Event()
    with silent, sipx.Client("127.0.0.1", 0) as client:

        def ask() -> None:
            started.set()
            try:
                client.options(f"sip:nobody@127.0.0.1:{port}")
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=ask)
        thread.start()
        started.wait()
        # Wait until the OPTIONS is on the wire (the silent socket has a datagram queued).
        silent.settimeout(10)
        silent.recv(65535)
        client.close()
        thread.join(10)
    assert not thread.is_alive()
    [error] = outcome
    assert isinstance(error, sipx.ClientClosedError), repr(error)


def test_leaving_a_blocking_client_ends_its_calls() -> None:
    callee_calls: list[sipx.Call] = []
    ended = threading.Event()

    with sipx.Client("127.0.0.1", 0) as callee:

        async def answer(call: sipx.Call) -> None:
            callee_calls.append(call)
            call.answer()
            await call.wait_ended()
            ended.set()

        callee.on_request("INVITE", answer)
        with sipx.Client("127.0.0.1", 0) as caller:
            call = caller.call(f"sip:bob@127.0.0.1:{callee.local_address.port}")
            assert call.established
        assert call.state is CallState.ENDED and call.ended_by == "local"
        assert ended.wait(10)
        assert callee_calls[0].ended_by == "remote"


async def test_ctrl_c_while_an_invite_rings_sends_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, UAS, ring=300) as uas:
        with pytest.raises(KeyboardInterrupt):
            async with client_on(network) as client:

                class Interrupt(sipx.Events):
                    @sipx.event_handler("response")
                    def response(self, response: sipx.Response, context: Any) -> None:
                        if response.status_code == 180:
                            raise KeyboardInterrupt  # as Ctrl-C during the ringing

                client.events = Interrupt()
                await client.invite(uas.uri)
        assert len(uas.requests_for("CANCEL")) == 1
        assert [r.status_code for r in uas.responses if r.cseq.method == "INVITE"][-1] == 487


async def test_leaving_ends_the_dialog_of_a_bare_invite(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with client_on(network) as callee:
        answered = answer_calls(callee)
        async with client_on(network) as caller:
            response = await caller.invite(uri_of(callee))
            await caller.ack(response)
            await trio.sleep(1)
        assert len(network.requests("BYE")) == 1
        assert answered[0].ended_by == "remote"
        assert caller.dialogs == []
