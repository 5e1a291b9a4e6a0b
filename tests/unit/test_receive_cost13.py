"""Issue 14, thirteenth pass: what a Timer J record keeps, what its expiry costs, and the
objects every request received leaves in it (the method, the source address).

RFC 3261 17.2.2 (a retransmission within Timer J gets the same response again) and
8.2.2.2 (merged requests) are checked to hold as before.
"""

from __future__ import annotations

import gc
import socket
from typing import NoReturn

import pytest
import trio

import sipx
from sipx._core.header_types import NameAddr
from sipx._core.message import Message, Request, Response
from sipx._core.parser import parse_message
from sipx._core.received import stamp_received
from sipx._core.transaction import (
    RequestReceived,
    Resend,
    Send,
    TransactionLayer,
    TransactionTerminated,
    final_response_bytes,
)
from sipx._trio.transport import Address, Transport
from sipx._trio.udp import UDPTransport
from sipx._uas import UserAgentServer

SOURCE = ("192.0.2.7", 5999)


def options(n: int, *, branch: str | None = None, cseq: int = 1) -> bytes:
    """SIPp's OPTIONS (uac_options.xml), the n-th: its own Call-ID and From tag."""
    return (
        "OPTIONS sip:uas@192.0.2.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5999;branch={branch or f'z9hG4bK-{n}'};rport\r\n"
        f"From: sipp <sip:sipp@192.0.2.7:5999>;tag=ft{n}\r\n"
        "To: sut <sip:uas@192.0.2.1:5060>\r\n"
        f"Call-ID: {n}-cost13@192.0.2.7\r\n"
        f"CSeq: {cseq} OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def received(data: bytes) -> Request:
    """``data`` as the engine's receive path hands it to the layer."""
    request = parse_message(data)
    assert isinstance(request, Request)
    request.check_essentials()
    stamp_received(request, SOURCE)
    return request


def answer(layer: TransactionLayer, data: bytes, now: float) -> bytes | None:
    """Receive ``data``; answer it 200 as bytes, as the UAS does, if it reached the TU.
    The response's bytes, or None (absorbed, merged or resent by the layer)."""
    request = received(data)
    layer.receive_request(request, now, False, SOURCE, "UDP")
    for event in layer.pop_events():
        if isinstance(event, RequestReceived):
            ok = final_response_bytes(event.request, 200, to_tag="uas1")
            assert ok is not None
            assert event.transaction.respond_serialised(200, ok, now)
            events = layer.pop_events()
            assert [type(e) for e in events] == [Resend, TransactionTerminated]
            return ok
    return None


def events_of(layer: TransactionLayer, data: bytes, now: float) -> list[object]:
    layer.receive_request(received(data), now, False, SOURCE, "UDP")
    return list(layer.pop_events())


def _reachable_strings(root: object) -> set[str]:
    """Every str reachable from ``root`` through tuples, dicts, deques and lists."""
    seen: set[int] = set()
    found: set[str] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, tuple | list) or type(item).__name__ == "deque":
            stack.extend(item)  # type: ignore[arg-type]
    return found


def test_a_record_keeps_no_merge_key_once_the_record_of_recent_requests_forgets_it() -> None:
    """A Timer J record keeps what a retransmission needs (the response's bytes, where to
    send them), not the request's Call-ID and From tag (its merge key, 8.2.2.2): once the
    bounded record of recent requests has forgotten a request, neither is kept."""
    layer = TransactionLayer(merge_records=16)
    for n in range(200):
        assert answer(layer, options(n), 0.0) is not None
    assert len(layer._records) == 200 and len(layer._recent) == 16
    kept = _reachable_strings((layer._records, layer._record_deadlines))
    forgotten = range(0, 200 - 16)
    assert not {f"{n}-cost13@192.0.2.7" for n in forgotten} & kept
    assert not {f"ft{n}" for n in forgotten} & kept
    # The newest 16 still merge: a copy on another branch gets 482, the TU not told.
    events = events_of(layer, options(199, branch="z9hG4bK-other"), 1.0)
    assert not any(isinstance(e, RequestReceived) for e in events)
    assert any(isinstance(e, Send) and e.to_bytes().startswith(b"SIP/2.0 482 ") for e in events)
    # and a forgotten one does not (as before: the bound is the rule's)
    assert any(
        isinstance(e, RequestReceived) for e in events_of(layer, options(0, branch="z9hG4bK-o"), 1)
    )


def test_a_record_is_untracked_and_holds_no_more_than_a_retransmission_needs() -> None:
    layer = TransactionLayer()
    ok = answer(layer, options(1), 0.0)
    for _ in range(3):
        gc.collect()
    record = layer._records[("3261", "z9hG4bK-1", "192.0.2.7", 5999)]
    assert isinstance(record, tuple) and not gc.is_tracked(record)
    assert record[:4] == ("OPTIONS", ok, SOURCE, "UDP") and record[4] == 64 * 0.5
    assert layer._recent[("ft1", "1-cost13@192.0.2.7", 1, "OPTIONS")] is record


def test_expiring_a_record_alone_under_its_key_reads_no_tuple_of_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usual record is the only one under its key: Timer J ends it with one dict
    look-up and one deletion (no tuple of the records under the key rebuilt)."""
    layer = TransactionLayer()
    oks = [answer(layer, options(n), n * 0.001) for n in range(50)]
    # 17.2.2: a retransmission within Timer J gets the same bytes again.
    assert events_of(layer, options(7), 31.0) == [Resend(oks[7], SOURCE, "UDP")]  # type: ignore[arg-type]

    def no_tuple(self: TransactionLayer, key: object) -> object:
        raise AssertionError("_records_at called on expiry")

    monkeypatch.setattr(TransactionLayer, "_records_at", no_tuple)
    layer.handle_timers(32.0 + 0.0245)  # Timer J of the first 25
    assert len(layer) == 25 and len(layer._records) == 25
    layer.handle_timers(100.0)
    assert len(layer) == 0 and layer._records == {} and not layer._recent
    monkeypatch.undo()
    # After Timer J the same request is a new one (the TU is told again).
    assert answer(layer, options(7), 100.0) == oks[7]


def test_an_expired_record_behind_a_kept_one_merges_nothing() -> None:
    """An entry of the record of recent requests whose record has expired, left behind an
    older request's record that is still kept, no longer merges (8.2.2.2 applies to
    transactions in progress only), and leaves once that one has expired too."""
    layer = TransactionLayer()
    slow = received(options(1))
    layer.receive_request(slow, 0.0, False, SOURCE, "UDP")
    (slow_received,) = layer.pop_events()
    assert isinstance(slow_received, RequestReceived)
    assert answer(layer, options(2), 1.0) is not None  # Timer J at 33
    ok = final_response_bytes(slow, 200, to_tag="uas1")
    assert ok is not None and slow_received.transaction.respond_serialised(200, ok, 5.0)
    layer.pop_events()  # Timer J of the first at 37
    layer.handle_timers(34.0)
    assert len(layer) == 1
    copy = options(2, branch="z9hG4bK-copy")
    events = events_of(layer, copy, 34.0)
    assert [type(e) for e in events] == [RequestReceived]  # served, not 482
    # the first one still merges until its Timer J
    events = events_of(layer, options(1, branch="z9hG4bK-copy1"), 36.0)
    assert any(isinstance(e, Send) and e.to_bytes().startswith(b"SIP/2.0 482 ") for e in events)
    layer.handle_timers(37.0)
    assert not any(type(value) is tuple for value in layer._recent.values())


def test_a_cancel_record_and_its_targets_expire_one_by_one() -> None:
    """A CANCEL's record shares its target's key (a tuple of records then): each leaves at
    its own Timer J, the other still answering retransmissions."""
    layer = TransactionLayer()
    ok = answer(layer, options(3), 0.0)
    cancel = options(3).replace(b"OPTIONS sip", b"CANCEL sip").replace(b"1 OPTIONS", b"1 CANCEL")
    cancel_ok = answer(layer, cancel, 1.0)
    assert cancel_ok is not None and len(layer) == 2
    layer.handle_timers(32.0)
    assert events_of(layer, cancel, 32.5) == [Resend(cancel_ok, SOURCE, "UDP")]  # type: ignore[arg-type]
    # The OPTIONS's record has expired: the same request again is a new one.
    assert [type(e) for e in events_of(layer, options(3), 32.5)] == [RequestReceived]
    layer.handle_timers(33.0)
    assert len(layer) == 1 and layer._records == {} and ok is not None


def test_the_usual_request_method_is_one_str_for_every_request() -> None:
    """The method a Timer J record and the merge key keep is the parser's one str, not a
    copy per request."""
    first, second = parse_message(options(1)), parse_message(options(2))
    assert isinstance(first, Request) and isinstance(second, Request)
    assert first.method == "OPTIONS" and first.method is second.method
    other = parse_message(options(3).replace(b"OPTIONS", b"FOO"))
    assert isinstance(other, Request) and other.method == "FOO"


async def test_udp_hands_on_one_address_tuple_for_datagrams_from_the_same_peer() -> None:
    """What each transaction and Timer J record keeps as its destination: one tuple per
    peer while its datagrams come in a row, not one of recvfrom's per datagram."""
    seen: list[tuple[bytes, Address]] = []

    def on_message(data: bytes, source: Address, transport: Transport) -> None:
        seen.append((data, source))

    transport = UDPTransport(on_message)
    async with trio.open_nursery() as nursery:
        address: Address = await nursery.start(transport.serve, "127.0.0.1", 0)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two,
        ):
            one.bind(("127.0.0.1", 0))
            two.bind(("127.0.0.1", 0))
            for sender, payload in ((one, b"a"), (one, b"b"), (two, b"c"), (two, b"d")):
                sender.sendto(payload, address)
            with trio.fail_after(5):
                while len(seen) < 4:
                    await trio.sleep(0.01)
            assert [data for data, _ in seen] == [b"a", b"b", b"c", b"d"]
            assert [source for _, source in seen] == [one.getsockname()] * 2 + [
                two.getsockname()
            ] * 2
            assert seen[0][1] is seen[1][1] and seen[2][1] is seen[3][1]
        nursery.cancel_scope.cancel()


# -- the usual OPTIONS through the engine: calls taken off its path ---------------------------
def _refuse(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("called on the usual path")


async def test_an_options_served_at_once_reads_the_to_view_without_its_properties(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The UAS's at-once path reads the To view parsed on receipt and its tag directly:
    no ``Message.to`` nor ``NameAddr.tag`` property call, and a request without a To tag
    gets a new one without ``call_tag`` (nothing in its map): the 200 as before, its
    retransmission answered with the same bytes (17.2.2)."""
    async with sipx.AsyncClient(local_host="127.0.0.1", local_port=0) as client:
        engine = client._engine
        transport = engine.transports["UDP"]
        sent: list[tuple[bytes, object]] = []
        monkeypatch.setattr(transport, "send_nowait", lambda data, to: sent.append((data, to)))
        monkeypatch.setattr(Message, "to", property(_refuse))
        monkeypatch.setattr(NameAddr, "tag", property(_refuse))
        monkeypatch.setattr(UserAgentServer, "call_tag", _refuse)
        for n in range(3):
            engine._on_message(options(n), SOURCE, transport)
        engine._on_message(options(1), SOURCE, transport)  # a retransmission
        monkeypatch.undo()
        assert [to for _, to in sent] == [SOURCE] * 4
        assert sent[3][0] == sent[1][0]
        for n, (data, _) in enumerate(sent[:3]):
            response = parse_message(data)
            assert isinstance(response, Response) and response.status_code == 200
            assert response.call_id == f"{n}-cost13@192.0.2.7"
            assert response.to.tag and response.from_.tag == f"ft{n}"
            assert response.headers["Via"] == (
                f"SIP/2.0/UDP 192.0.2.7:5999;branch=z9hG4bK-{n};rport=5999"
            )
            assert "Allow" in response.headers and "Supported" in response.headers
        assert len({parse_message(data).to.tag for data, _ in sent[:3]}) == 3  # type: ignore[union-attr]


def test_a_record_key_shares_the_source_address_objects() -> None:
    """A request sent from where its Via says (the usual): its server key (kept by the
    Timer J record) holds the source's host str and port int, shared by every request
    from there, not the Via's own copies. Matching is by value, as before: the
    retransmission is answered, and one from another address with the same Via too."""
    layer = TransactionLayer()
    source = ("".join(["192.0.2", ".7"]), int("5999"))  # (new objects, as recvfrom's)
    request = received(options(5))
    layer.receive_request(request, 0.0, False, source, "UDP")
    (event,) = layer.pop_events()
    assert isinstance(event, RequestReceived)
    ok = final_response_bytes(request, 200, to_tag="uas1")
    assert ok is not None and event.transaction.respond_serialised(200, ok, 0.0)
    layer.pop_events()
    (key,) = layer._records
    assert key == ("3261", "z9hG4bK-5", "192.0.2.7", 5999)
    assert key[2] is source[0] and key[3] is source[1]
    via = request.top_via
    assert via.host == source[0] and via.host is not source[0]
    layer.receive_request(received(options(5)), 1.0, False, source, "UDP")
    assert layer.pop_events() == [Resend(ok, source, "UDP")]
    elsewhere = ("198.51.100.9", 5999)  # (a NAT's other side: matched on the Via)
    layer.receive_request(received(options(5)), 1.0, False, elsewhere, "UDP")
    assert layer.pop_events() == [Resend(ok, source, "UDP")]
    # Sent from elsewhere than its Via says: the Via's sent-by is the key, as before.
    other = TransactionLayer()
    other.receive_request(received(options(6)), 0.0, False, elsewhere, "UDP")
    (created,) = other.pop_events()
    assert isinstance(created, RequestReceived)
    assert created.transaction._key == ("3261", "z9hG4bK-6", "192.0.2.7", 5999)
