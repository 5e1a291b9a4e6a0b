"""An idle call keeps the heads of its INVITE and of our 200, and its SDPs, deflated
against sample heads and SDPs shared by the calls (issue 14, sixth pass): what it keeps of
them is about what differs from call to call, and ``call.invite``,
``call.final_response`` and the SDPs read as before."""

from __future__ import annotations

import hashlib

import trio
import trio.testing
from test_call_answer_cost import _ack, _answered
from test_uas_call_path import PEER

import sipx
from sipx._core.kept_head import HeadPacker, unpack
from sipx._idle_calls import BATCH, IDLE_AFTER
from sipx.testing import MemoryNetwork


def _head(i: int, extra: str = "") -> bytes:
    return (
        "SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{i:08x}a7;received=192.0.2.7\r\n"
        f"From: <sip:alice@example.com>;tag={i * 7919:x}\r\n"
        f"To: <sip:bob@example.com>;tag=b{i * 104729:x}\r\n"
        f"Call-ID: {i:x}c0ffee@192.0.2.7\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:bob@192.0.2.1:5060>\r\nAllow: INVITE, ACK, CANCEL, BYE, UPDATE\r\n"
        f"Supported: timer, replaces{extra}\r\nContent-Type: application/sdp\r\n"
        "Content-Length: 120\r\n\r\n"
    ).encode()


def test_heads_of_one_kind_are_deflated_against_one_shared_sample() -> None:
    """The first head of a kind is the sample; the next ones keep a few dozen bytes and
    read back exactly; a head far from the sample becomes the next heads' sample and the
    heads packed before it still read back."""
    packer = HeadPacker()
    packed = [packer.pack(_head(i)) for i in range(1, 6)]
    assert all(sample is packed[0][0] for sample, _ in packed)
    assert [unpack(p) for p in packed] == [_head(i) for i in range(1, 6)]
    assert max(len(data) for _, data in packed[1:]) < len(_head(1)) // 4
    request = b"INVITE sip:bob@example.com SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"
    assert packer.pack(request)[0] is not packed[0][0]  # another kind, another sample
    noise = ", " + ", ".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(20))
    odd_sample, _ = packer.pack(_head(9, noise))
    assert odd_sample is packed[0][0]
    later = packer.pack(_head(10, noise))
    assert later[0] == _head(9, noise) and unpack(later) == _head(10, noise)
    assert [unpack(p) for p in packed] == [_head(i) for i in range(1, 6)]


async def test_idle_calls_keep_a_few_dozen_bytes_of_their_heads_and_read_as_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Five calls made idle: each keeps its INVITE and 200 heads and its SDPs as (shared
    sample, deflated bytes); the bytes of its own are under 250 (the heads alone are over
    800); the INVITE, the 200 and the SDPs read back as they were."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        calls = []
        for i in range(1, 6):
            call, ok = await _answered(client, peer, address, i)
            _ack(peer, address, i, ok)
            await call.wait_acked()
            calls.append((call, call.invite.to_bytes(), ok.to_bytes()))
        await trio.sleep(IDLE_AFTER + BATCH + 0.01)
        shared: dict[int, int] = {}
        for call, _, _ in calls:
            for data in [b for slot in (call._invite, call._final) for b in _bytes_in(slot)]:
                shared[id(data)] = shared.get(id(data), 0) + 1
        for call, invite, final in calls:
            assert call.transaction is None
            assert call.invite.to_bytes() == invite
            assert call.final_response is not None
            assert call.final_response.to_bytes() == final
            assert call.remote_sdp == call.offer == sipx.SDPBody.parse(call.invite.content)
            assert call.local_sdp == call.answer_sdp
            assert call.local_sdp == sipx.SDPBody.parse(call.final_response.content)
        heads = len(calls[1][1]) - len(calls[1][0].invite.content)
        heads += len(calls[1][2]) - len(calls[1][0].final_response.content)
        assert heads > 800
        # Beside the bodies, what a call keeps alone (the samples are shared by the calls).
        for call, _, _ in calls[1:]:
            alone = sum(
                len(b)
                for slot in (call._invite, call._final)
                for b in _bytes_in(slot)
                if shared[id(b)] == 1
            )
            assert alone < 250, alone


def _bytes_in(slot: object) -> list[bytes]:
    if isinstance(slot, bytes):
        return [slot]
    if isinstance(slot, tuple):
        return [b for item in slot for b in _bytes_in(item)]
    return []
