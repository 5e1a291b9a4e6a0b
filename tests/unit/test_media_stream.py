"""The per-call RTP stream (sipx._media_stream): pacing by absolute deadlines on trio's
clock, symmetric latching, ordering and bad input, with real loopback sockets."""

from __future__ import annotations

import dataclasses
import itertools
import socket
import struct

import pytest
import trio
import trio.testing

import sipx._media_stream as media_stream
from sipx._core.g711 import ulaw_decode, ulaw_encode
from sipx._core.media_params import MediaParams
from sipx._core.rtp import RtpPacket
from sipx._media_stream import MediaStream, bind_rtp_pair


def params(remote: tuple[str, int], direction: str = "sendrecv") -> MediaParams:
    return MediaParams(
        codec="PCMU",
        send_payload=0,
        receive_payload=0,
        event_send_payload=101,
        event_receive_payload=101,
        ptime=20,
        remote=remote,
        direction=direction,
        rtcp_mux=False,
    )


def peer_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


async def test_two_minutes_of_packets_leave_on_their_deadlines(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Absolute deadlines: 120 s at 20 ms is exactly 6000 packets, none late, no drift."""
    lateness: list[float] = []
    monkeypatch.setattr(media_stream, "PACING", lateness)
    peer = peer_socket()
    stream = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    stream.configure(params(peer.getsockname()))
    sent: list[bytes] = []
    with peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            start = trio.current_time()
            for _ in range(120):
                await trio.sleep(1)
                sent += drain(peer)
            await trio.sleep(0.01)  # past the 6000th deadline, before the 6001st
            sent += drain(peer)
            stream.close()
        assert trio.current_time() - start == pytest.approx(120.01)
    assert len(lateness) == 6000 and max(lateness) == 0
    packets = [RtpPacket.parse(data) for data in sent]
    assert len(packets) == 6000
    assert [p.sequence for p in packets] == [
        (packets[0].sequence + i) & 0xFFFF for i in range(6000)
    ]
    assert {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)} == {
        160
    }
    assert packets[0].marker and not any(p.marker for p in packets[1:])


async def test_latching_ordering_and_bad_input(autojump_clock: trio.testing.MockClock) -> None:
    nat = peer_socket()  # the peer's RTP comes from here, not from its SDP address
    sdp_address = ("127.0.0.1", 9)  # what the SDP said (nothing there)
    stream = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    stream.configure(params(sdp_address))
    frames: list[bytes] = []
    stream.add_frame_listener(frames.append)
    target = ("127.0.0.1", stream.local_port)

    def rtp(seq: int, level: int) -> bytes:
        pcm = struct.pack("<160h", *([level] * 160))
        return RtpPacket(
            payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=7, payload=ulaw_encode(pcm)
        ).to_bytes()

    nat_address = nat.getsockname()
    with nat:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            await trio.sleep(0.1)
            assert drain(nat) == []  # nothing reaches us before we are latched
            for data in (b"\x00" * 3, b"\x80", rtp(1, 100)[:-200] + b"\x00", b"\x40" * 20):
                nat.sendto(data, target)
            # RTP 1, 3, 2 (reordered), 2 again (duplicate), PT 96 (unknown)
            for data in (rtp(1, 1000), rtp(3, 3000), rtp(2, 2000), rtp(2, 2000)):
                nat.sendto(data, target)
            nat.sendto(
                RtpPacket(payload_type=96, sequence=4, timestamp=640, ssrc=7).to_bytes(), target
            )
            await trio.sleep(0.2)
            latched = drain(nat)  # symmetric RTP: we now send to where the peer sends from
            stream.close()
    assert latched, "no RTP came back to the latched address"
    assert stream.stats.remote_address == nat_address
    levels = [struct.unpack_from("<h", frame)[0] for frame in frames]
    assert [round(level, -3) for level in levels] == [1000, 2000, 3000]  # in order, once
    assert stream.stats.duplicates == 1
    assert stream.stats.dropped.get("payload type 96") == 1
    assert stream.stats.dropped.get("malformed", 0) >= 2


async def test_a_new_remote_address_moves_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A re-INVITE that moves the peer (new c=/m= port) moves where we send, and forgets
    the address we had latched onto."""
    first, second = peer_socket(), peer_socket()
    stream = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    stream.configure(params(first.getsockname()))
    with first, second:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            await trio.sleep(0.5)
            assert len(drain(first)) >= 24 and drain(second) == []
            stream.configure(params(second.getsockname()))
            await trio.sleep(0.5)
            assert drain(first) == [] and len(drain(second)) >= 24
            stream.configure(params(second.getsockname(), "recvonly"))  # put on hold
            await trio.sleep(0.5)
            assert drain(second) == []
            stream.close()


async def test_a_negotiated_ptime_of_30_ms_carries_the_audio_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The played audio is cut at the negotiated packet size (240 samples), not at 20 ms."""
    peer = peer_socket()
    stream = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    stream.configure(dataclasses.replace(params(peer.getsockname()), ptime=30))
    ramp = b"".join(struct.pack("<h", (n * 37) % 8000 - 4000) for n in range(1600))
    with peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            done = stream.queue_audio(media_stream.frames_of(ramp))  # 10 frames of 20 ms
            await done.wait()
            await trio.sleep(0.01)
            packets = [RtpPacket.parse(data) for data in drain(peer)]
            stream.close()
    assert {len(p.payload) for p in packets} == {240}
    decoded = b"".join(ulaw_decode(p.payload) for p in packets)
    assert len(decoded) >= len(ramp)
    expected = ulaw_decode(ulaw_encode(ramp))
    start = decoded.find(expected[:480])
    assert start >= 0 and decoded[start : start + len(expected)] == expected


async def test_a_failing_stream_is_closed_and_the_others_go_on(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenStream(MediaStream):  # (MediaStream has __slots__: no per-instance patch)
        def _on_datagram(self, data: bytes, source: tuple[str, int]) -> None:
            raise RuntimeError("a bug in the receive path")

    peers = [peer_socket(), peer_socket()]
    streams = [
        kind(*bind_rtp_pair("127.0.0.1", (40000, 50000))) for kind in (BrokenStream, MediaStream)
    ]
    for stream, peer in zip(streams, peers, strict=True):
        stream.configure(params(peer.getsockname()))
    clock = media_stream.MediaClock()
    for stream in streams:
        clock.add(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        await trio.sleep(0.1)
        peers[1].sendto(b"\x80\x00\x00\x01" + bytes(8), ("127.0.0.1", streams[0].local_port))
        await trio.sleep(0.5)
        assert streams[0].closed and not streams[1].closed
        drain(peers[1])
        await trio.sleep(0.2)
        assert len(drain(peers[1])) >= 9  # the other stream still sends
        streams[1].close()
        nursery.cancel_scope.cancel()
    for peer in peers:
        peer.close()


async def test_an_inactive_stream_is_ticked_for_rtcp_only_and_the_clock_skips_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An idle (inactive) call costs the media clock a tick every few seconds, not 50 a
    second, even while an active stream keeps the clock waking every 20 ms."""
    ticks = {"inactive": 0, "sendrecv": 0}

    class Counted(MediaStream):
        def tick(self, now: float) -> float:
            assert self.params is not None
            ticks[self.params.direction] += 1
            return super().tick(now)

    peers = [peer_socket(), peer_socket()]
    streams = [Counted(*bind_rtp_pair("127.0.0.1", (40000, 50000))) for _ in peers]
    for stream, peer, direction in zip(streams, peers, ("inactive", "sendrecv"), strict=True):
        stream.configure(params(peer.getsockname(), direction))
    clock = media_stream.MediaClock()
    for stream in streams:
        clock.add(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.run)
        await trio.sleep(10)
        sent_to_inactive = drain(peers[0])
        assert all(_is_rtcp(packet) for packet in sent_to_inactive)  # no RTP
        nursery.cancel_scope.cancel()
    for stream in streams:
        stream.close()
    for peer in peers:
        peer.close()
    assert ticks["sendrecv"] >= 450  # 20 ms packets for 10 s
    assert 1 <= ticks["inactive"] <= 10  # its first tick, then an RTCP report every ~5 s


def _is_rtcp(packet: bytes) -> bool:
    return len(packet) > 1 and 192 <= packet[1] <= 223


async def test_an_idle_stream_keeps_no_listener_list_and_listeners_still_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    import gc

    from sipx._core.rtp_sender import RtpSender

    stream = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    try:
        # What an idle call keeps: no list, no bound method, no RTP sender (made by the
        # first packet sent).
        held = gc.get_referents(stream)
        assert not [o for o in held if isinstance(o, list | dict)]
        assert not [o for o in held if type(o).__name__ == "method"]
        assert not [o for o in held if isinstance(o, RtpSender)]
        frames: list[bytes] = []
        other: list[bytes] = []
        closed: list[str] = []
        stream.add_frame_listener(frames.append)
        stream.add_frame_listener(other.append)
        stream.add_close_listener(lambda: closed.append("closed"))
        stream.remove_frame_listener(other.append)
        stream.remove_frame_listener(other.append)  # not there any more: nothing happens
        assert list(stream.frame_listeners) == [frames.append]
        stream.remove_frame_listener(frames.append)
        assert not stream.frame_listeners
    finally:
        stream.close()
    assert closed == ["closed"]


async def test_an_inactive_stream_reports_rtcp_without_an_rtp_sender_or_drop_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An a=inactive stream sends RTCP receiver reports under its SSRC yet keeps no RTP
    sender and no counters (``MediaStats``) until they are read; once a re-INVITE makes it
    sendrecv, its RTP goes out under that same SSRC (RFC 3550 6.4: one SSRC per source)."""
    import gc

    from sipx._core.rtcp import ReceiverReport, SenderReport, parse_compound
    from sipx._core.rtp_sender import RtpSender

    peer, peer_rtcp = peer_socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer_rtcp.bind(("127.0.0.1", peer.getsockname()[1] + 1))
    peer_rtcp.setblocking(False)
    stream = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    other = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    stream.configure(params(peer.getsockname(), "inactive"))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.run)
            await trio.sleep(20)
            reports = [parse_compound(data)[0] for data in drain(peer_rtcp)]
            assert reports and all(isinstance(r, ReceiverReport) for r in reports)
            assert not drain(peer)  # no RTP
            held = gc.get_referents(stream)
            assert not [o for o in held if isinstance(o, RtpSender)]
            # Until read, neither stream keeps counters (the reports are counted apart).
            for s in (stream, other):
                held = gc.get_referents(s)
                assert not [o for o in held if isinstance(o, media_stream.MediaStats)]
            assert stream.stats.rtcp_sent == len(reports) and other.stats.rtcp_sent == 0
            assert stream.stats.codec == "PCMU" and other.stats.codec is None
            assert stream.stats.local_address == stream.socket.getsockname()[:2]
            # The dict handed out is the caller's: writing it touches no other stream.
            stream.stats.dropped["mine"] = 1
            assert other.stats.dropped == {}
            counters = stream.stats  # handed out: updated in place by the next reports
            await trio.sleep(10)
            assert counters.rtcp_sent == len(reports) + len(drain(peer_rtcp)) > len(reports)
            stream.configure(params(peer.getsockname(), "sendrecv"))
            await trio.sleep(1)
            rtp = [RtpPacket.parse(data) for data in drain(peer)]
            nursery.cancel_scope.cancel()
        assert len(rtp) >= 49
        assert {packet.ssrc for packet in rtp} == {reports[0].ssrc}
        assert any(isinstance(o, RtpSender) for o in gc.get_referents(stream))
        stream.close()  # its RTCP BYE: a sender report now, same SSRC
        closing = parse_compound(drain(peer_rtcp)[-1])
        assert isinstance(closing[0], SenderReport) and closing[0].ssrc == reports[0].ssrc
    finally:
        stream.close()
        other.close()
        peer.close()
        peer_rtcp.close()


async def test_digits_reach_the_receiver(autojump_clock: trio.testing.MockClock) -> None:
    class Receiver:
        def __init__(self) -> None:
            self.digits: list[str] = []

        def digit_received(self, digit: str) -> None:
            self.digits.append(digit)

    peer = peer_socket()
    stream = MediaStream(*bind_rtp_pair("127.0.0.1", (40000, 50000)))
    receiver = Receiver()
    stream.digit_receiver = receiver
    stream.configure(params(peer.getsockname()))
    target = ("127.0.0.1", stream.local_port)
    # RFC 4733: event 5, end bit set, volume 10, duration 800 (three end packets, one digit).
    event = struct.pack("!BBH", 5, 0x80 | 10, 800)
    try:
        for seq in range(3):
            packet = RtpPacket(payload_type=101, sequence=seq, timestamp=160, ssrc=9, payload=event)
            peer.sendto(packet.to_bytes(), target)
        await trio.sleep(0.1)
        stream.tick(trio.current_time())
    finally:
        stream.close()
        peer.close()
    assert receiver.digits == ["5"]
