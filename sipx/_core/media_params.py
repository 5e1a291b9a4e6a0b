"""What an audio stream sends and expects, read from an SDP offer and answer (RFC 3264).

:func:`negotiate` takes our SDP and the peer's, once the answer is known, and returns the
:class:`MediaParams` of the first audio stream: the G.711 codec the answer chose, the
payload numbers each side expects to receive (RFC 3264 5.1: payload numbers in an SDP say
what its author receives), telephone-event (RFC 4733) if both sides have it, ``ptime``, the
peer's address and which way media flows (``sendrecv``, ``sendonly``, ``recvonly``,
``inactive`` from our side's point of view).
"""

from __future__ import annotations

from dataclasses import dataclass

from .sdp import Codec, MediaDescription, SDPBody

# The codecs sipx encodes and decodes (RFC 3551 static payloads).
G711 = ("PCMU", "PCMA")
DEFAULT_PTIME = 20  # ms


@dataclass(frozen=True, slots=True)
class MediaParams:
    """The negotiated audio stream, from our point of view."""

    codec: str  # "PCMU" or "PCMA"
    send_payload: int  # the codec's payload number in the peer's SDP (what it receives)
    receive_payload: int  # the codec's payload number in our SDP (what we receive)
    event_send_payload: int | None  # telephone-event in the peer's SDP, if both have it
    event_receive_payload: int | None  # telephone-event in our SDP
    ptime: int  # ms per packet
    remote: tuple[str, int] | None  # where the peer receives RTP (None: port 0 or no address)
    direction: str  # ours: sendrecv, sendonly, recvonly or inactive
    rtcp_mux: bool  # both sides offered a=rtcp-mux (RFC 5761)

    @property
    def sends(self) -> bool:
        return self.remote is not None and self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")

    @property
    def samples_per_packet(self) -> int:
        return 8 * self.ptime  # G.711 runs at 8000 Hz


def negotiate(local: SDPBody, remote: SDPBody, *, we_offered: bool) -> MediaParams | None:
    """The first audio stream both SDPs agree on, or None (no audio, rejected, no G.711)."""
    pair = _first_audio(local, remote)
    if pair is None:
        return None
    ours, theirs = pair
    # Each side's codecs, read from its rtpmap lines once.
    our_codecs, their_codecs = ours.codecs, theirs.codecs
    answer = their_codecs if we_offered else our_codecs
    chosen = next((c for c in answer if c.name.upper() in G711 and c.rate == 8000), None)
    if chosen is None:
        return None
    send = _payload_for(their_codecs, chosen)
    receive = _payload_for(our_codecs, chosen)
    if send is None or receive is None:
        return None
    event_send = _event_payload(their_codecs)
    event_receive = _event_payload(our_codecs)
    if event_send is None or event_receive is None:
        event_send = event_receive = None
    address = remote.media_address(theirs)
    peer = None if theirs.port == 0 or not address or _unset(address) else (address, theirs.port)
    return MediaParams(
        codec=G711[G711.index(chosen.name.upper())],  # the constant: no copy kept per call
        send_payload=send,
        receive_payload=receive,
        event_send_payload=event_send,
        event_receive_payload=event_receive,
        ptime=theirs.ptime or ours.ptime or DEFAULT_PTIME,
        remote=peer,
        direction=_our_direction(local.media_direction(ours), remote.media_direction(theirs)),
        rtcp_mux=ours.has_attribute("rtcp-mux") and theirs.has_attribute("rtcp-mux"),
    )


def _first_audio(
    local: SDPBody, remote: SDPBody
) -> tuple[MediaDescription, MediaDescription] | None:
    for ours, theirs in zip(local.media, remote.media, strict=False):
        if ours.media == "audio" and theirs.media == "audio" and ours.port and theirs.port:
            return ours, theirs
    return None


def _payload_for(codecs: list[Codec], codec: Codec) -> int | None:
    for candidate in codecs:
        if candidate.matches(codec) and candidate.payload.isdigit():
            return int(candidate.payload)
    return None


def _event_payload(codecs: list[Codec]) -> int | None:
    for codec in codecs:
        if codec.name.lower() == "telephone-event" and codec.rate == 8000:
            return int(codec.payload) if codec.payload.isdigit() else None
    return None


def _unset(address: str) -> bool:
    """``c=IN IP4 0.0.0.0``: the RFC 2543 way of putting a stream on hold."""
    return address in ("0.0.0.0", "::")


def _our_direction(ours: str, theirs: str) -> str:
    """Our direction, narrowed by what the peer accepts (RFC 3264 6.1)."""
    sends = ours in ("sendrecv", "sendonly") and theirs in ("sendrecv", "recvonly")
    receives = ours in ("sendrecv", "recvonly") and theirs in ("sendrecv", "sendonly")
    if sends and receives:
        return "sendrecv"
    if sends:
        return "sendonly"
    if receives:
        return "recvonly"
    return "inactive"


__all__ = ["DEFAULT_PTIME", "G711", "MediaParams", "negotiate"]
