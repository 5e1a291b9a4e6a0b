"""Closing a client always ends its tasks: a wind-down step that fails (a bug, or an
exception that is not an Exception) must not leave the client's shielded services running,
which would hold its ``async with`` block for ever."""

from __future__ import annotations

import logging

import pytest
import trio

import sipx
from sipx.testing import MemoryNetwork


class Stop(BaseException):
    """Not an Exception (as KeyboardInterrupt): it goes through the close as it is."""


async def test_a_failing_wind_down_step_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("a bug in a wind-down step")

    async def other() -> None:
        await trio.sleep(0.01)
        ran.append("other")

    with trio.fail_after(10):  # (the parent never returned from this block)
        async with sipx.AsyncClient("127.0.0.1", 0, network=MemoryNetwork()) as client:
            client._engine.add_wind_down(broken)
            client._engine.add_wind_down(other)
    assert client.closed and ran == ["other"]
    assert any(
        "winding down" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


async def test_a_base_exception_in_the_wind_down_still_ends_the_services() -> None:
    async def interrupted() -> None:
        raise Stop

    with trio.fail_after(10), pytest.raises(Stop):
        async with sipx.AsyncClient("127.0.0.1", 0, network=MemoryNetwork()) as client:
            client._engine.add_wind_down(interrupted)
    assert client.closed


async def test_closing_right_after_a_final_response_before_its_reader_ran() -> None:
    """A non-INVITE transaction over UDP lets go of its request when it completes; a close
    that comes before the waiting task has read the final response must leave that
    response to it (the parent read the released request and raised RuntimeError inside
    the close, which then left the client's services running)."""
    network = MemoryNetwork()
    peer_address = ("127.0.0.1", 5998)
    got: list[object] = []
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(peer_address) as peer,
        trio.open_nursery() as nursery,
    ):

        async def ask() -> None:
            try:
                got.append(await client.options(f"sip:x@{peer_address[0]}:{peer_address[1]}"))
            except sipx.SIPError as exc:
                got.append(exc)

        nursery.start_soon(ask)
        data, source = await peer.receive()
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
        copied = [
            line for line in head if line[:5].lower() in (b"via: ", b"from:", b"call-", b"cseq:")
        ]
        to = [line + b";tag=peer" for line in head if line[:3].lower() == b"to:"]
        answer = b"\r\n".join([b"SIP/2.0 200 OK", *copied, *to, b"Content-Length: 0", b"", b""])
        engine = client._engine
        assert engine.transport is not None
        # Delivered and the transaction completed, its reader not run yet: then the close.
        engine._on_message(answer, source, engine.transport)
        engine._fail_all_waiters()  # (the step of Engine.close that raised)
    [response] = got
    assert isinstance(response, sipx.Response) and response.status_code == 200
