"""One call's audio on trio: RTP and RTCP sockets, paced and read by one clock per client.

A :class:`MediaStream` is made when a call's SDP is written (its socket's port goes into the
SDP) and has no task of its own: from when the offer/answer is complete until the call
ends, the client's one :class:`MediaClock` task (in the engine's nursery) calls every
stream's :meth:`MediaStream.tick` and sleeps until the earliest next deadline. Each tick
drains the stream's sockets (non-blocking ``recvfrom`` until EAGAIN), latches onto the
address the peer really sends from (symmetric RTP, RFC 4961), puts audio in sequence order
(RFC 3550 A.1) and hands decoded frames and received digits to whoever listens; then, at
the absolute deadline ``start + n·ptime`` (``ptime`` 20 ms by default; no drift), it sends
the next frame the call plays, a telephone-event packet, or silence, and an RTCP report
every 5 s on average. Received audio waits up to one packet time in the socket.
:meth:`MediaStream.run` runs a lone stream on a clock of its own. Bad packets are counted,
never raised.
"""

from __future__ import annotations

import errno
import logging
import math
import random
import socket as stdlib_socket
import sys
import time
from _socket import socket as RawSocket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import trio

from ._core import g711
from ._core.dtmf import DtmfReceiver, DtmfSender, event_to_digit
from ._core.media_params import MediaParams
from ._core.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_from_unix,
    parse_compound,
)
from ._core.rtp import RtpPacket
from ._core.rtp_receiver import RtpReceiver
from ._core.rtp_sender import RtpSender
from ._errors import ParseError, TransportError
from ._trio.transport import family_for

log = logging.getLogger("sipx.media")

REPORT_INTERVAL = 5.0  # seconds between RTCP reports, on average
POLL_INTERVAL = 0.02  # how often a stream not negotiated yet reads its sockets
# Set to a list by bench/bench_media.py: how late each packet left after its deadline (s).
PACING: list[float] | None = None
FRAME_BYTES = 320  # 20 ms of 16-bit PCM at 8 kHz
SILENCE = bytes(FRAME_BYTES)
_ENCODERS = {"PCMU": g711.ulaw_encode, "PCMA": g711.alaw_encode}
_DECODERS = {"PCMU": g711.ulaw_decode, "PCMA": g711.alaw_decode}
# The ``dropped`` of a stream's stats until it drops a packet or its stats are read: one
# shared empty dict, never written (an idle call keeps no dict of its own).
_NO_DROPS: dict[str, int] = {}
_S = TypeVar("_S", bound=RawSocket)  # a socket type: the C one or socket.socket


@dataclass(slots=True)
class MediaStats:
    """What a call's audio stream did (``call.media_stats``)."""

    codec: str | None = None
    local_address: tuple[str, int] | None = None
    remote_address: tuple[str, int] | None = None  # latched (where the peer sends from)
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    packets_lost: int = 0
    duplicates: int = 0
    jitter: float = 0.0  # seconds (RFC 3550 A.8)
    dropped: dict[str, int] = field(default_factory=dict)  # malformed, unknown payload, ...
    digits_received: int = 0
    rtcp_sent: int = 0
    rtcp_received: int = 0
    peer_said_bye: bool = False  # an RTCP BYE arrived

    def drop(self, reason: str) -> None:
        if self.dropped is _NO_DROPS:
            self.dropped = {}
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class DigitReceiver(Protocol):
    """What a stream hands the digits it receives (RFC 4733 telephone-events) to."""

    def digit_received(self, digit: str) -> None: ...


def bind_rtp_socket(host: str, ports: tuple[int, int]) -> stdlib_socket.socket:
    """A non-blocking UDP socket on an even port of ``ports`` (low, high), tried from a
    random start."""
    return _bind_even(host, ports, stdlib_socket.socket)


def _bind_even(host: str, ports: tuple[int, int], make: Callable[[int, int], _S]) -> _S:
    """:func:`bind_rtp_socket` with the socket made by ``make(family, type)``."""
    low, high = ports
    if not (0 < low <= high <= 65535):
        raise ValueError(f"rtp_ports must be (low, high) within 1-65535, not {ports!r}")
    first = low + (low % 2)  # the even ports, first to high, walked without a list of them
    count = (high - first) // 2 + 1 if first <= high else 0
    if count == 0:
        first, count = low, 1  # no even port in the range: its one (odd) port
    start = random.randrange(count)
    for step in range(count):
        port = first + 2 * ((start + step) % count)
        sock = make(family_for(host), stdlib_socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise TransportError(f"cannot bind an RTP socket on {host}:{port}: {exc}") from None
        return sock
    raise TransportError(f"no free RTP port in {low}-{high} on {host}")


def bind_rtp_pair(host: str, ports: tuple[int, int]) -> tuple[RawSocket, RawSocket]:
    """RTP on an even port of ``ports`` and RTCP on the next one (RFC 3550 11).

    Both are the C socket type itself (``_socket.socket``, what ``socket.socket`` wraps):
    the stream only binds, reads, sends and closes them, and each is 40 bytes smaller and
    not tracked by the garbage collector (an idle call keeps two)."""
    for _ in range(64):
        rtp = _bind_even(host, ports, RawSocket)
        rtcp = RawSocket(family_for(host), stdlib_socket.SOCK_DGRAM)
        rtcp.setblocking(False)
        try:
            rtcp.bind((host, rtp.getsockname()[1] + 1))
        except OSError:
            rtcp.close()
            rtp.close()
            continue
        return rtp, rtcp
    raise TransportError(f"no free RTP/RTCP port pair in {ports[0]}-{ports[1]} on {host}")


class MediaStream:
    """The audio of one call: its RTP and RTCP sockets, ticked by a :class:`MediaClock`.

    What only some calls use (queues of audio and digits to send, the DTMF receiver, the
    cancel scope of :meth:`run`) is made when first needed: an idle stream keeps little."""

    __slots__ = (
        "__weakref__",
        "_announced",
        "_cancel",
        "_clock",
        "_dtmf_in",
        "_event_packets",
        "_events",
        "_events_done",
        "_host",
        "_latched",
        "_next_report",
        "_next_send",
        "_playing",
        "_port",
        "_receiver",
        "_resync",
        "_rtcp_sent",
        "_sender",
        "_ssrc",
        "_stats",
        "close_listeners",
        "closed",
        "digit_receiver",
        "due",
        "frame_listeners",
        "params",
        "rtcp_socket",
        "socket",
    )

    def __init__(self, sock: RawSocket, rtcp: RawSocket | None = None) -> None:
        self.socket = sock
        self.rtcp_socket = rtcp
        host, port = sock.getsockname()[:2]
        self._host: str = sys.intern(host)  # every stream of a client shares its host's string
        self._port: int = port
        # The counters, made by the first thing counted or read (an idle stream keeps none).
        self._stats: MediaStats | None = None
        self._rtcp_sent = 0  # (an inactive stream reports too: counted without its stats)
        self.params: MediaParams | None = None
        # The SSRC is drawn now (RTCP reports carry it); the RTP sender, with its random
        # first sequence number and timestamp, is made by the first packet sent (or digit
        # queued): an a=inactive stream never sends RTP and keeps none.
        self._ssrc = random.getrandbits(32)
        self._sender: RtpSender | None = None
        self._receiver: RtpReceiver | None = None  # made by the first audio packet
        self._dtmf_in: DtmfReceiver | None = None  # made by the first telephone-event
        self._announced: deque[int] | None = None  # timestamps of events reported (16)
        self._event_packets = 0  # telephone-event packets (they use sequence numbers too)
        self._latched: tuple[str, int] | None = None
        # Frames to play; the last frame of each play() carries the event set once it is sent.
        self._playing: deque[tuple[bytes, trio.Event | None]] | None = None
        self._events: deque[tuple[bytes, int, bool]] | None = None  # (payload, time, marker)
        self._events_done: trio.Event | None = None
        # Listeners: an empty tuple (shared) until the first one is added, so an idle stream
        # keeps no list; digits go to one receiver (the call's media), held without a bound
        # method.
        self.frame_listeners: Sequence[Callable[[bytes], None]] = ()
        self.close_listeners: Sequence[Callable[[], None]] = ()
        self.digit_receiver: DigitReceiver | None = None
        self._cancel: trio.CancelScope | None = None  # run()'s
        self._clock: MediaClock | None = None
        self._next_send: float | None = None  # absolute deadline of the next packet
        self._next_report: float | None = None  # of the next RTCP report
        self._resync = False  # a new ptime: start the schedule again
        self.due = -math.inf  # when the clock ticks it next (what tick() returned)
        self.closed = False

    def add_frame_listener(self, listener: Callable[[bytes], None]) -> None:
        """Call ``listener`` with each decoded 20 ms frame received."""
        self.frame_listeners = [*self.frame_listeners, listener]

    def remove_frame_listener(self, listener: Callable[[bytes], None]) -> None:
        """Stop calling ``listener`` (nothing happens if it was not added)."""
        listeners = list(self.frame_listeners)
        if listener in listeners:
            listeners.remove(listener)
        self.frame_listeners = listeners or ()

    def add_close_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once the stream is closed."""
        self.close_listeners = [*self.close_listeners, listener]

    @property
    def stats(self) -> MediaStats:
        """The counters now; loss, duplicates and jitter are read from the receiver here,
        not copied on every packet."""
        stats = self._counters()
        if stats.dropped is _NO_DROPS:  # handed out: the caller's own dict
            stats.dropped = {}
        receiver = self._receiver
        if receiver is not None:
            counted = receiver.stats
            # Telephone-events take sequence numbers between audio packets: not lost.
            stats.packets_lost = max(0, counted.lost - self._event_packets)
            stats.duplicates = counted.duplicates
            stats.jitter = counted.jitter_seconds
        return stats

    def _counters(self) -> MediaStats:
        """The stream's counters, made on first use (the codec of the negotiation)."""
        stats = self._stats
        if stats is None:
            params = self.params
            stats = self._stats = MediaStats(
                codec=None if params is None else params.codec,
                local_address=(self._host, self._port),
                dropped=_NO_DROPS,
                rtcp_sent=self._rtcp_sent,
            )
        return stats

    @property
    def local_port(self) -> int:
        return self._port

    # -- configuration (offer/answer, re-INVITE) ------------------------------------------------
    def configure(self, params: MediaParams | None) -> None:
        """Apply a (new) negotiation: codec, payload numbers, ptime, peer, direction."""
        previous = self.params
        if params is None:
            if previous is not None:
                self._counters()  # they keep the codec of the negotiation before
            self.params = None
            return
        self.params = params
        stats = self._stats
        if stats is not None:
            stats.codec = params.codec
        if previous is None or previous.remote != params.remote:
            self._latched = None  # a re-INVITE that moves the peer moves the stream
        if previous is not None and previous.codec != params.codec and self._receiver:
            self._receiver = RtpReceiver()  # (the first one is made by the first packet)
        if previous is None or previous.ptime != params.ptime:
            self._resync = True
        self.due = -math.inf  # ticked at once
        if self._clock is not None:
            self._clock.wake()

    @property
    def destination(self) -> tuple[str, int] | None:
        """Where RTP goes: the address the peer sends from once seen, else its SDP's."""
        if self.params is None or not self.params.sends:
            return None
        return self._latched or self.params.remote

    # -- what the call sends ---------------------------------------------------------------------
    def queue_audio(self, pcm_frames: list[bytes]) -> trio.Event:
        """Queue 20 ms frames to send; the event is set once the last has gone out."""
        done = trio.Event()
        if not pcm_frames:
            done.set()
            return done
        last = len(pcm_frames) - 1
        if self._playing is None:
            self._playing = deque()
        self._playing.extend(
            (frame, done if index == last else None) for index, frame in enumerate(pcm_frames)
        )
        return done

    def stop_audio(self) -> None:
        """Drop what was queued (a cancelled play, the call's end)."""
        playing, self._playing = self._playing, None
        while playing:
            _, done = playing.popleft()
            if done is not None:
                done.set()

    def _rtp_sender(self) -> RtpSender:
        """The stream's RTP sender, made on first use (RFC 3550 5.1: random first numbers)."""
        sender = self._sender
        if sender is None:
            sender = self._sender = RtpSender(
                self._ssrc,
                first_sequence=random.getrandbits(16),
                first_timestamp=random.getrandbits(32),
            )
        return sender

    def queue_digit(self, digit: str, duration: float, volume: int = 10) -> trio.Event:
        """Queue one RFC 4733 event; the event is set once its last end packet has gone."""
        params = self.params
        if params is None or params.event_send_payload is None:
            raise RuntimeError("telephone-event was not negotiated")
        sender = DtmfSender(
            interval=params.samples_per_packet, duration_ms=duration * 1000, volume=volume
        )
        if self._events is None:
            self._events = deque()
        for packet in sender.packets(digit, self._rtp_sender().timestamp):
            self._events.append((packet.payload, packet.timestamp, packet.marker))
        done = trio.Event()
        self._events_done = done
        return done

    # -- the clock's work (one task for every stream of a client, see MediaClock) ---------------
    async def run(self) -> None:
        """Send and receive on a clock of this stream's own until :meth:`close`."""
        clock = MediaClock()
        clock.add(self)
        if self._cancel is None:
            self._cancel = trio.CancelScope()
        with self._cancel:
            try:
                await clock.run(until_idle=True)
            finally:
                self.close()

    def close(self) -> None:
        """Stop sending and receiving and close the sockets (the call ended)."""
        if self.closed:
            return
        for sock in (self.socket, self.rtcp_socket):  # what arrived since the last tick
            if sock is not None:
                self._drain(sock)
        self.closed = True
        if self._cancel is not None:
            self._cancel.cancel()
        self._send_rtcp(bye=True)
        for sock in (self.socket, self.rtcp_socket):
            if sock is not None:
                sock.close()
        self.stop_audio()
        self._events = None
        if self._events_done is not None:
            self._events_done.set()
        for listener in self.close_listeners:
            listener()
        if self._clock is not None:
            self._clock.stream_closed()

    def tick(self, now: float) -> float:
        """Drain the sockets, send what is due at ``now``; the time of the next thing due."""
        self._drain(self.socket)
        if self.rtcp_socket is not None:
            self._drain(self.rtcp_socket)
        params = self.params
        if params is None:
            return now + POLL_INTERVAL
        if not params.sends and not params.receives:  # inactive: RTCP only (RFC 3264 5.1)
            if self._next_report is not None and now >= self._next_report:
                self._send_rtcp()
                self._next_report = None
            if self._next_report is None:  # on whole seconds: idle streams share wake-ups
                self._next_report = math.ceil(now + REPORT_INTERVAL * (0.5 + random.random()))
            return self._next_report
        interval = params.ptime / 1000
        if self._next_send is None or self._resync:
            self._next_send, self._resync = now + interval, False
        elif now - self._next_send > 10 * interval:  # fell far behind (a stalled loop)
            self._next_send = now + interval
        elif now >= self._next_send:
            if PACING is not None:
                PACING.append(now - self._next_send)
            self._send_one(params)
            self._next_send += interval  # absolute deadlines: no drift
        if self._next_report is None:
            self._next_report = now + REPORT_INTERVAL * (0.5 + random.random())
        elif now >= self._next_report:
            self._send_rtcp()
            self._next_report = now + REPORT_INTERVAL * (0.5 + random.random())
        return min(self._next_send, self._next_report)

    def _send_one(self, params: MediaParams) -> None:
        destination = self.destination
        samples = params.samples_per_packet
        frame = self._next_frame(samples)
        rtp = self._rtp_sender()
        if destination is None:
            rtp.skip(samples)
            return
        data: bytes
        events = self._events
        if events and params.event_send_payload is not None:
            payload, timestamp, marker = events.popleft()
            data = rtp.event(payload, params.event_send_payload, timestamp, marker)
            rtp.skip(samples)
            if not events:
                self._events = None
                if self._events_done is not None:
                    self._events_done.set()
        else:
            encoded = _ENCODERS[params.codec](frame)
            data = rtp.audio(encoded, params.send_payload, samples)
        try:
            self.socket.sendto(data, destination)
        except OSError as exc:  # a full buffer, an ICMP error queued on the socket
            self._counters().drop(f"send failed: {exc.strerror or exc}")
            return
        stats = self._stats or self._counters()
        stats.packets_sent += 1
        stats.bytes_sent += len(data)

    def _next_frame(self, samples: int) -> bytes:
        """The next ``samples`` of what is played (queued frames are 20 ms; a negotiated
        ptime of 10 or 30 ms takes half a frame or one and a half), silence after it."""
        size = samples * 2
        playing = self._playing
        if not playing:
            return bytes(size)
        parts: list[bytes] = []
        wanted = size
        while wanted and playing:
            frame, done = playing[0]
            if len(frame) <= wanted:
                playing.popleft()
                parts.append(frame)
                wanted -= len(frame)
                if done is not None:
                    done.set()
            else:
                parts.append(frame[:wanted])
                playing[0] = (frame[wanted:], done)
                wanted = 0
        if not playing:
            self._playing = None  # played out: an idle stream keeps no queue
        chunk = b"".join(parts)
        return chunk if len(chunk) == size else chunk + bytes(size - len(chunk))

    def _drain(self, sock: RawSocket) -> None:
        """Read every datagram waiting on ``sock`` (RTCP apart by port or packet type)."""
        rtcp = sock is self.rtcp_socket
        for _ in range(256):
            try:
                data, source = sock.recvfrom(2048)
            except BlockingIOError:
                return
            except OSError as exc:  # ICMP port unreachable from an earlier send, ...
                self._counters().drop(f"receive error: {exc.strerror or exc}")
                continue
            if rtcp or _is_rtcp(data):  # RFC 5761 4: demultiplexed by packet type
                self._on_rtcp(data)
            else:
                self._on_datagram(data, (source[0], source[1]))

    def _on_datagram(self, data: bytes, source: tuple[str, int]) -> None:
        params = self.params
        if params is None:
            self._counters().drop("before negotiation")
            return
        try:
            packet = RtpPacket.parse(data)
        except ParseError:
            self._counters().drop("malformed")
            return
        audio = packet.payload_type in (params.receive_payload, params.send_payload)
        event = params.event_receive_payload is not None and packet.payload_type in (
            params.event_receive_payload,
            params.event_send_payload,
        )
        if not (audio or event):
            self._counters().drop(f"payload type {packet.payload_type}")
            return
        if self._latched is None:
            self._latched = source  # symmetric RTP: answer where the peer sends from
            self._counters().remote_address = source
        elif source != self._latched:
            self._counters().drop("unexpected source")
            return
        stats = self._stats or self._counters()
        stats.packets_received += 1
        stats.bytes_received += len(data)
        if event:
            self._on_event(packet)
            return
        if self._receiver is None or self._receiver.ssrc not in (None, packet.ssrc):
            self._receiver = RtpReceiver()  # a new source (the peer restarted its stream)
        ready = self._receiver.receive(packet, trio.current_time(), 8000)
        if not params.receives or not self.frame_listeners:
            return
        decode = _DECODERS[params.codec]
        for ordered in ready:
            frame = decode(ordered.payload)
            for listener in list(self.frame_listeners):
                listener(frame)

    # -- RTCP (RFC 3550 6) ----------------------------------------------------------------------
    def _rtcp_destination(self) -> tuple[tuple[str, int], RawSocket] | None:
        params, rtp = self.params, self.destination
        if params is None or params.remote is None:
            return None
        host, port = rtp or params.remote
        if params.rtcp_mux or self.rtcp_socket is None:
            return (host, port), self.socket
        return (host, port + 1), self.rtcp_socket

    def _send_rtcp(self, *, bye: bool = False) -> None:
        target = self._rtcp_destination()
        if target is None:
            return
        address, sock = target
        now = trio.current_time()
        blocks: tuple[ReportBlock, ...] = ()
        if self._receiver is not None and self._receiver.ssrc is not None:
            try:
                blocks = (self._receiver.report_block(now),)
            except ValueError:
                blocks = ()
        sender, ssrc = self._sender, self._ssrc
        report: RtcpPacket
        if sender is not None and sender.packets:
            report = SenderReport(
                ssrc=ssrc,
                ntp_timestamp=ntp_from_unix(time.time()),
                rtp_timestamp=sender.timestamp,
                packet_count=sender.packets & 0xFFFFFFFF,
                octet_count=sender.octets & 0xFFFFFFFF,
                reports=blocks,
            )
        else:
            report = ReceiverReport(ssrc=ssrc, reports=blocks)
        host = self._host
        cname = f"sipx-{ssrc:08x}@{host}"  # RFC 3550 6.5.1: unique, stable per stream
        packets: list[RtcpPacket | SourceDescription] = [
            report,
            SourceDescription(ssrc=ssrc, cname=cname),
        ]
        if bye:
            packets.append(Bye(ssrcs=(ssrc,)))
        try:
            sock.sendto(build_compound(packets), address)
        except OSError:
            return
        self._rtcp_sent += 1
        if self._stats is not None:  # counters handed out are updated in place
            self._stats.rtcp_sent += 1

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_compound(data)
        except ParseError:
            self._counters().drop("malformed RTCP")
            return
        self._counters().rtcp_received += 1
        for packet in packets:
            if isinstance(packet, SenderReport) and self._receiver is not None:
                try:
                    self._receiver.on_sender_report(packet, trio.current_time())
                except ValueError:
                    pass  # an SR about another source
            elif isinstance(packet, Bye):
                self._counters().peer_said_bye = True

    def _on_event(self, packet: RtpPacket) -> None:
        """A telephone-event packet: its digit is reported once, as soon as the event is
        seen (a key held down is a digit now, not when it is released)."""
        self._event_packets += 1
        if self._dtmf_in is None:
            self._dtmf_in = DtmfReceiver()
        for event in self._dtmf_in.feed(packet.payload, packet.timestamp, packet.marker):
            self._announce(event.event, event.timestamp)
        started = self._dtmf_in.in_progress
        if started is not None:
            self._announce(*started)

    def _announce(self, event: int, timestamp: int) -> None:
        if self._announced is None:
            self._announced = deque(maxlen=16)
        if timestamp in self._announced:
            return
        self._announced.append(timestamp)
        digit = event_to_digit(event)
        if digit is None:
            return
        self._counters().digits_received += 1
        if self.digit_receiver is not None:
            self.digit_receiver.digit_received(digit)


class MediaClock:
    """The one task that paces every media stream of a client and reads their sockets.

    Each tick it drains every stream's sockets and sends what is due, then sleeps until
    the earliest next deadline: a client with 200 calls wakes 50 times a second, not
    20 000 (a task per stream and per socket would). Received audio is read at the
    latest one packet time after it arrived.
    """

    def __init__(self) -> None:
        self.streams: list[MediaStream] = []
        self.running = False
        self._until_idle = False
        self._wakeup = trio.Event()
        # When the sleeping clock wakes next (inf: not asleep, or woken already).
        self._deadline = math.inf

    def add(self, stream: MediaStream) -> None:
        """Pace ``stream`` from now on: ticked first when the clock wakes next, at once if
        the sleeping clock would wake later than ``POLL_INTERVAL`` from now. A busy
        client's clock is not woken once more per new call, and the new stream keeps the
        others' pace (they share wake-ups)."""
        stream._clock = self
        self.streams.append(stream)
        deadline = self._deadline
        if deadline == math.inf or deadline - trio.current_time() > POLL_INTERVAL:
            self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    def stream_closed(self) -> None:
        """A stream closed: the clock drops it at its next tick. Only a clock that ends
        when idle is woken for it; the client's clock is not woken once per ended call."""
        if self._until_idle:
            self._wakeup.set()

    @trio.lowlevel.enable_ki_protection
    async def run(self, *, until_idle: bool = False) -> None:
        """Tick until cancelled (or, with ``until_idle``, until no stream is left).

        Protected from KeyboardInterrupt: Ctrl-C reaches the user's task, whose handling
        (hang up, print) then runs, instead of surfacing from this task."""
        self.running = True
        self._until_idle = until_idle
        try:
            while True:
                now = trio.current_time()
                earliest = math.inf
                for stream in list(self.streams):
                    if stream.closed:
                        self.streams.remove(stream)
                        continue
                    if stream.due <= now:  # else not due: its sockets wait (a packet time)
                        self._tick(stream, now)
                    if not stream.closed:
                        earliest = min(earliest, stream.due)
                if not self.streams and until_idle:
                    return
                self._wakeup = trio.Event()
                self._deadline = earliest
                with trio.move_on_at(earliest):
                    await self._wakeup.wait()
                self._deadline = math.inf
        finally:
            self.running = False
            self._deadline = math.inf

    @staticmethod
    def _tick(stream: MediaStream, now: float) -> None:
        """Tick one stream; a bug must not take the client or other calls down."""
        try:
            stream.due = stream.tick(now)
        except Exception:
            log.exception("media stream %s failed; closing it", stream.local_port)
            stream.close()


def _is_rtcp(data: bytes) -> bool:
    """RTCP packet types 192-223 in the second octet (RFC 5761 4)."""
    return len(data) > 1 and 192 <= data[1] <= 223


def frames_of(pcm: bytes) -> list[bytes]:
    """16-bit PCM cut into 20 ms frames (the last padded with silence)."""
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM has an even number of bytes, not {len(pcm)}")
    out = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    if out and len(out[-1]) < FRAME_BYTES:
        out[-1] += bytes(FRAME_BYTES - len(out[-1]))
    return out


__all__ = [
    "FRAME_BYTES",
    "MediaClock",
    "MediaStats",
    "MediaStream",
    "bind_rtp_pair",
    "bind_rtp_socket",
    "frames_of",
]
