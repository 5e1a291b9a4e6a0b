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
