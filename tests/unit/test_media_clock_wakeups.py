"""The client's media clock (sipx._media_stream.MediaClock) is not woken once more per call:
a stream added while the clock sleeps less than a packet time waits for that wake-up (and
keeps the other streams' pace); a stream closed is dropped at the next tick. A clock that
runs until idle (``MediaStream.run``) still ends as soon as its stream closes."""

from __future__ import annotations

import socket
from typing import ClassVar

import trio
import trio.testing

from sipx._core.media_params import MediaParams
from sipx._media_stream import MediaClock, MediaStream, bind_rtp_pair

_PORTS = (40000, 50000)


def _params(remote: tuple[str, int]) -> MediaParams:
    return MediaParams(
        codec="PCMU",
        send_payload=0,
        receive_payload=0,
        event_send_payload=101,
        event_receive_payload=101,
        ptime=20,
        remote=remote,
        direction="sendrecv",
        rtcp_mux=False,
    )


class _Ticked(MediaStream):
    """Records when the clock ticks it (MediaStream has __slots__: a subclass records)."""

    ticks: ClassVar[dict[int, list[float]]] = {}

    def tick(self, now: float) -> float:
        _Ticked.ticks.setdefault(id(self), []).append(now)
        return super().tick(now)


def _peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def test_a_stream_added_to_a_busy_clock_waits_for_its_next_wake_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = _peer()
    first, second = (_Ticked(*bind_rtp_pair("127.0.0.1", _PORTS)) for _ in range(2))
    for stream in (first, second):
        stream.configure(_params(peer.getsockname()))
    clock = MediaClock()
    clock.add(first)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock.run)
            await trio.sleep(0.005)
            started = _Ticked.ticks[id(first)][0]
            clock.add(second)  # 5 ms after the first stream's tick: the clock sleeps 15 more
            await trio.sleep(0.001)
            assert id(second) not in _Ticked.ticks  # not woken for it
            await trio.sleep(0.1)
            # Its first tick is the first stream's second one: the two share wake-ups.
            assert _Ticked.ticks[id(second)][0] == _Ticked.ticks[id(first)][1]
            assert _Ticked.ticks[id(first)][1] == started + 0.02
            assert len(_Ticked.ticks[id(second)]) >= 5  # and it is paced from then on
            assert set(_Ticked.ticks[id(second)]) <= set(_Ticked.ticks[id(first)])
            nursery.cancel_scope.cancel()
    finally:
        first.close()
        second.close()
        peer.close()


async def test_a_stream_added_to_a_clock_asleep_for_long_is_ticked_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = MediaClock()
    stream = _Ticked(*bind_rtp_pair("127.0.0.1", _PORTS))
    peer = _peer()
    stream.configure(_params(peer.getsockname()))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock.run)
            await trio.sleep(1)  # no stream: the clock sleeps until woken
            clock.add(stream)
            await trio.testing.wait_all_tasks_blocked()
            assert _Ticked.ticks[id(stream)] == [trio.current_time()]
            nursery.cancel_scope.cancel()
    finally:
        stream.close()
        peer.close()


async def test_a_closed_stream_is_dropped_at_the_next_tick_without_a_wake_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = _peer()
    streams = [_Ticked(*bind_rtp_pair("127.0.0.1", _PORTS)) for _ in range(2)]
    for stream in streams:
        stream.configure(_params(peer.getsockname()))
    clock = MediaClock()
    for stream in streams:
        clock.add(stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock.run)
            await trio.sleep(0.005)
            streams[0].close()
            await trio.testing.wait_all_tasks_blocked()
            assert streams[0] in clock.streams  # the clock was not woken for it
            await trio.sleep(0.02)
            assert clock.streams == [streams[1]]  # dropped at the next tick
            nursery.cancel_scope.cancel()
    finally:
        for stream in streams:
            stream.close()
        peer.close()


async def test_a_stream_running_its_own_clock_still_ends_when_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = _peer()
    stream = MediaStream(*bind_rtp_pair("127.0.0.1", _PORTS))
    stream.configure(_params(peer.getsockname()))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            await trio.sleep(0.005)
            closed_at = trio.current_time()
            stream.close()
        assert trio.current_time() == closed_at  # run() returned at once
    finally:
        peer.close()
