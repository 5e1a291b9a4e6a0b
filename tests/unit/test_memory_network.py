"""sipx.testing.MemoryNetwork and ScriptedUAS on trio's autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import sipx
from sipx.testing import MemoryNetwork, MemorySocket, ScriptedUAS

A = ("127.0.0.1", 6000)
B = ("127.0.0.1", 6001)


def drain(sock: MemorySocket) -> list[tuple[bytes, tuple[str, int]]]:
    out = []
    while True:
        try:
            out.append(sock.receive_nowait())
        except trio.WouldBlock:
            return out


async def send_numbered(network: MemoryNetwork, count: int, *, gap: float = 0.0) -> list[bytes]:
    """Send ``count`` datagrams b"0", b"1"... from A to B; return what B received."""
    async with network.socket(A) as a, network.socket(B) as b:
        for i in range(count):
            a.send(str(i).encode(), B)
            if gap:
                await trio.sleep(gap)
        await trio.sleep(5)
        return [data for data, _ in drain(b)]


def fates(network: MemoryNetwork) -> list[str]:
    return [entry.fate for entry in network.log]


# -- loss, duplication, delay, reordering ---------------------------------------------------------
async def test_seeded_loss_is_reproducible(autojump_clock: trio.testing.MockClock) -> None:
    first, second, other = (MemoryNetwork(seed, loss=0.3) for seed in (7, 7, 8))
    received = [await send_numbered(network, 200) for network in (first, second, other)]
    assert fates(first) == fates(second)
    assert received[0] == received[1]
    assert fates(first) != fates(other)
    lost = fates(first).count("lost")
    assert 30 <= lost <= 90  # about 30 % of 200
    # Exactly the datagrams not lost arrive, in order (no delay, no reordering).
    expected = [str(i).encode() for i, fate in enumerate(fates(first)) if fate == "delivered"]
    assert received[0] == expected
    assert len(first.deliveries) == 200 - lost


async def test_loss_choices_do_not_depend_on_other_settings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plain = MemoryNetwork(3, loss=0.25)
    noisy = MemoryNetwork(3, loss=0.25, duplicate=0.5, jitter=0.01)
    await send_numbered(plain, 100)
    await send_numbered(noisy, 100)
    lost_plain = [i for i, fate in enumerate(fates(plain)) if fate == "lost"]
    lost_noisy = [i for i, fate in enumerate(fates(noisy)) if fate == "lost"]
    assert lost_plain == lost_noisy
    assert "duplicated" in fates(noisy)


async def test_duplicates_arrive_twice(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(1, duplicate=1.0)
    received = await send_numbered(network, 5)
    assert fates(network) == ["duplicated"] * 5
    assert sorted(received) == sorted([str(i).encode() for i in range(5)] * 2)
    assert len(network.deliveries) == 10


async def test_delay_and_jitter(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(5, delay=0.2, jitter=0.3)
    received = await send_numbered(network, 50, gap=0.01)
    sent_at = {entry.data: entry.time for entry in network.log}
    arrivals = [delivery.time for delivery in network.deliveries]
    assert arrivals == sorted(arrivals)  # delivered in order of arrival time
    for delivery in network.deliveries:
        latency = delivery.time - sent_at[delivery.data]
        assert 0.2 <= latency <= 0.5 + 1e-9
    assert sorted(received, key=int) == [str(i).encode() for i in range(50)]
    assert received != sorted(received, key=int)  # jitter of 0.3 s over 10 ms gaps reorders


async def test_fixed_delay_keeps_order(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(delay=1.5)
    async with network.socket(A) as a, network.socket(B) as b:
        start = trio.current_time()
        a.send(b"x", B)
        a.send(b"y", B)
        assert await b.receive() == (b"x", A)
        assert trio.current_time() - start == pytest.approx(1.5)
        assert await b.receive() == (b"y", A)
    assert [entry.time - start for entry in network.log] == [0.0, 0.0]


async def test_reorder_holds_a_datagram_behind_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(reorder=1.0)
    received = await send_numbered(network, 6)
    assert received == [b"1", b"0", b"3", b"2", b"5", b"4"]
    assert fates(network) == ["delivered"] * 6


async def test_reordered_datagram_with_no_successor_is_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(reorder=1.0, reorder_delay=0.25)
    async with network.socket(A) as a, network.socket(B) as b:
        start = trio.current_time()
        a.send(b"alone", B)
        assert await b.receive() == (b"alone", A)
        assert trio.current_time() - start == pytest.approx(0.25)


async def test_reliable_links_ignore_loss_and_keep_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(2, loss=1.0, duplicate=1.0, reorder=1.0, jitter=0.5)
    got: list[bytes] = []
    sender = network.transport(lambda *args: None, "tcp")
    receiver = network.transport(lambda data, source, t: got.append(data), "TCP")
    assert (sender.name, sender.reliable) == ("TCP", True)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.serve, "127.0.0.1", 0)
        await nursery.start(receiver.serve, "127.0.0.1", 7000)
        for i in range(20):
            sender.send_nowait(str(i).encode(), ("127.0.0.1", 7000))
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert got == [str(i).encode() for i in range(20)]
    assert fates(network) == ["delivered"] * 20


# -- scripted drops, the log ----------------------------------------------------------------------
async def test_drop_next_and_filter(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    network.drop_next(2, to=B)
    network.drop_next(1, to=B, where=lambda m: isinstance(m, sipx.Request))
    async with network.socket(A) as a, network.socket(B) as b:
        for i in range(4):
            a.send(str(i).encode(), B)
        a.send(b"OPTIONS sip:b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n", B)
        a.send(b"5", B)
        network.filter = lambda source, destination, data: data != b"6"
        a.send(b"6", B)
        a.send(b"7", B)
        await trio.sleep(1)
        received = [data for data, _ in drain(b)]
    assert received == [b"2", b"3", b"5", b"7"]
    assert fates(network) == [
        *("lost", "lost", "delivered", "delivered"),  # the first rule takes 0 and 1
        "lost",  # the OPTIONS: the second rule
        *("delivered", "lost", "delivered"),  # 5, then 6 by the filter, 7
    ]


async def test_unbound_destination_is_unreachable(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with network.socket(A) as a:
        a.send(b"hello?", ("127.0.0.1", 9))
        await trio.sleep(1)
    assert fates(network) == ["unreachable"]
    assert network.deliveries == []


async def test_log_records_time_addresses_and_parsed_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    options = (
        b"OPTIONS sip:b@127.0.0.1:6001 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK1\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: c1\r\n"
        b"CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    response = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK1\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: c1\r\n"
        b"CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    async with network.socket(A) as a, network.socket(B) as b:
        start = trio.current_time()
        a.send(options, B)
        await trio.sleep(2)
        a.send(b"not sip at all", B)
        b.send(response, A)
    assert [(e.time - start, e.source, e.destination, e.data, e.fate) for e in network.log] == [
        (0.0, A, B, options, "delivered"),
        (2.0, A, B, b"not sip at all", "delivered"),
        (2.0, B, A, response, "delivered"),
    ]
    assert len(network.messages()) == 2  # the garbage is not a message
    [request] = network.requests("OPTIONS")
    assert request.message.cseq.seq == 7
    assert (request.source, request.destination) == (A, B)
    [reply] = network.responses(200, method="OPTIONS")
    assert reply.destination == A
    assert network.responses(404) == []
    assert [m.call_id for m in network.sent_to(A)] == ["c1"]


# -- binding ---------------------------------------------------------------------------------------
async def test_binding_rules(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with network.socket(A) as a:
        with pytest.raises(sipx.TransportError, match=r"127\.0\.0\.1:6000"):
            async with network.socket(A):
                pass  # pragma: no cover
        with pytest.raises(sipx.TransportError, match=r"0\.0\.0\.0:6000"):
            async with network.socket(("0.0.0.0", 6000)):
                pass  # pragma: no cover
        async with network.socket(("127.0.0.1", 0)) as one, network.socket(("127.0.0.1", 0)) as two:
            assert one.address[1] != two.address[1]
            assert one.address[1] > 0
        async with network.socket(("0.0.0.0", 7000)) as wild:
            a.send(b"to any host", ("10.9.8.7", 7000))
            assert await wild.receive() == (b"to any host", A)
            wild.send(b"back", A)
            assert await a.receive() == (b"back", (network.default_host, 7000))
        assert network.is_bound(A)
    assert not network.is_bound(A)
    assert network.bound_addresses == []
    with pytest.raises(sipx.TransportError):
        a.send(b"after close", B)


async def test_a_failing_receiver_keeps_receiving(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    got: list[bytes] = []

    def on_message(data: bytes, source: object, transport: object) -> None:
        if data == b"boom":
            raise RuntimeError("boom")
        got.append(data)

    receiver = network.transport(on_message)
    async with network.socket(A) as a, trio.open_nursery() as nursery:
        await nursery.start(receiver.serve, *B)
        a.send(b"boom", B)
        a.send(b"fine", B)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert got == [b"fine"]


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="loss"):
        MemoryNetwork(loss=1.5)
    with pytest.raises(ValueError, match="delay"):
        MemoryNetwork(delay=-1)
    with pytest.raises(ValueError, match="SCTP"):
        MemoryNetwork().transport(lambda *args: None, "SCTP")


# -- ScriptedUAS on its own ------------------------------------------------------------------------
def invite_bytes(branch: str = "z9hG4bKinv1", cseq: int = 1, sdp: bool = False) -> bytes:
    body = b""
    extra = b""
    if sdp:
        body = (
            b"v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 9000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        )
        extra = b"Content-Type: application/sdp\r\n"
    return (
        b"INVITE sip:uas@127.0.0.1:5080 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:6000;branch=" + branch.encode() + b";rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=ft\r\nTo: <sip:uas@127.0.0.1:5080>\r\n"
        b"Call-ID: call-1\r\nCSeq: " + str(cseq).encode() + b" INVITE\r\n"
        b"Contact: <sip:a@127.0.0.1:6000>\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def parse(data: bytes) -> sipx.Response:
    message = sipx.parse_message(data)
    assert isinstance(message, sipx.Response)
    return message


async def test_uas_answers_invite_and_retransmits_2xx_until_ack(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, ring=2.0) as uas, network.socket(A) as a:
        start = trio.current_time()
        a.send(invite_bytes(sdp=True), uas.address)
        codes = [parse((await a.receive())[0]) for _ in range(3)]
        assert [r.status_code for r in codes] == [100, 180, 200]
        ok = codes[2]
        assert trio.current_time() - start == pytest.approx(2.0)
        assert ok.to.tag and ok.to.tag == codes[1].to.tag and codes[0].to.tag is None
        assert ok.headers["Via"] == "SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKinv1;rport=6000"
        assert (ok.call_id, str(ok.cseq), ok.from_.tag) == ("call-1", "1 INVITE", "ft")
        assert ok.contact[0].uri.port == 5080
        assert isinstance(ok.body, sipx.SDPBody)
        assert ok.body.get_codecs_summary()
        # No ACK: the 2xx comes again after T1, 2*T1, 4*T1 (13.3.1.4).
        again = [await a.receive() for _ in range(3)]
        assert all(parse(data).status_code == 200 for data, _ in again)
        times = [e.time - start for e in network.log if e.data.startswith(b"SIP/2.0 200")]
        assert times == pytest.approx([2.0, 2.5, 3.5, 5.5])
        ack = (
            b"ACK sip:uas@127.0.0.1:5080 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKack\r\nMax-Forwards: 70\r\n"
            b"From: <sip:a@127.0.0.1>;tag=ft\r\n"
            b"To: <sip:uas@127.0.0.1:5080>;tag=" + ok.to.tag.encode() + b"\r\n"
            b"Call-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
        a.send(ack, uas.address)
        await trio.sleep(60)
        assert drain(a) == []
        assert [r.method for r in uas.requests] == ["INVITE", "ACK"]
        assert uas.unacknowledged == []


async def test_uas_cancel_gives_200_and_487(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network, ring=30) as uas, network.socket(A) as a:
        a.send(invite_bytes(), uas.address)
        assert [parse((await a.receive())[0]).status_code for _ in range(2)] == [100, 180]
        cancel = (
            invite_bytes().replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL")
        )
        a.send(cancel, uas.address)
        replies = [parse((await a.receive())[0]) for _ in range(2)]
        assert sorted((r.status_code, r.cseq.method) for r in replies) == [
            (200, "CANCEL"),
            (487, "INVITE"),
        ]
        await uas.wait_for("CANCEL")
        # A retransmitted INVITE is absorbed and answered with the last response.
        a.send(invite_bytes(), uas.address)
        assert parse((await a.receive())[0]).status_code == 487
        assert [arrival.retransmission for arrival in uas.arrivals] == [False, False, True]


async def test_uas_challenges_and_verifies_digest(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        ScriptedUAS(network, users={"alice": "secret"}, max_expires=60) as uas,
        sipx.AsyncClient(
            "127.0.0.1", 0, network=network, auth=sipx.Auth.Digest("alice", "wrong")
        ) as client,
    ):
        response = await client.register("sip:alice@127.0.0.1:5080")
        assert response.status_code == 401
        assert uas.authorized == 0
        client.auth = sipx.Auth.Digest("alice", "secret")
        response = await client.register("sip:alice@127.0.0.1:5080")
        assert response.status_code == 200
        assert uas.authorized == 1
        assert response.contact[0].expires == 60
        assert list(uas.bindings["sip:alice@127.0.0.1:5080"]) == [
            f"sip:alice@127.0.0.1:{client.local_address.port}"
        ]


async def test_uas_sends_requests(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with ScriptedUAS(network) as uas, network.socket(A) as a:
        async with trio.open_nursery() as nursery:

            async def answer_late() -> None:
                data, source = await a.receive()
                await a.receive()  # let it retransmit once (after T1)
                request = sipx.parse_message(data)
                assert isinstance(request, sipx.Request)
                reply = sipx.Response(
                    202,
                    headers=[
                        (name, value)
                        for name, value in request.headers.multi_items()
                        if name in ("Via", "From", "To", "Call-ID", "CSeq")
                    ],
                )
                a.send(reply.to_bytes(), source)

            nursery.start_soon(answer_late)
            response = await uas.request("MESSAGE", "sip:a@127.0.0.1:6000", to=A, body="hi")
        assert response.status_code == 202
        assert response.request is not None and response.request.text == "hi"
        with pytest.raises(sipx.TimeoutError, match="NOTIFY"):
            await uas.request("NOTIFY", "sip:nobody@127.0.0.1:9", to=("127.0.0.1", 9))
