"""Issue 14, seventh pass: the work removed from every message the UAS answers, pinned as
behaviour (what is built, read or called per message, and what goes on the wire).

Nothing here measures a time.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import sipx
import sipx._core.message
import sipx._engine
from sipx._core.headers import Headers
from sipx._core.message import Request, Response, in_conventional_order
from sipx._core.parser import parse_message
from sipx._core.received import stamp_received
from sipx._core.transaction import (
    RequestReceived,
    Send,
    TransactionLayer,
    TransactionTerminated,
    make_response,
)
from sipx.testing import MemoryNetwork

PEER = ("127.0.0.1", 5999)
OPTIONS = (
    b"OPTIONS sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5999>;tag=f1\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-bench@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Timestamp: 54\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5999>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)
CAPABILITIES = (
    ("allow", "Allow", "INVITE, ACK, OPTIONS"),
    ("accept", "Accept", "application/sdp"),
)


def _request(data: bytes = OPTIONS) -> Request:
    request = parse_message(data)
    assert isinstance(request, Request)
    return request


def test_a_response_to_a_parsed_request_leaves_its_header_index_unbuilt() -> None:
    """make_response copies Via, From, To, Call-ID and CSeq from the first values of a
    section still as parsed (stamped or not): the request's index is never built."""
    request = _request()
    stamp_received(request, ("192.0.2.7", 4000))
    response = make_response(request, 200, to_tag="t1", extra=CAPABILITIES)
    assert request.headers.index is None
    assert response.headers.multi_items() == [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=4000;received=192.0.2.7"),
        ("From", "sipp <sip:sipp@127.0.0.1:5999>;tag=f1"),
        ("To", "sut <sip:uas@127.0.0.1:5060>;tag=t1"),
        ("Call-ID", "1-bench@127.0.0.1"),
        ("CSeq", "1 OPTIONS"),
        ("Allow", "INVITE, ACK, OPTIONS"),
        ("Accept", "application/sdp"),
    ]
    assert (response.status_code, response.reason_phrase, response.content) == (200, "OK", b"")
    assert response.history == [] and response.request is None and response.source is None
    trying = make_response(request, 100)
    assert trying.headers["Timestamp"] == "54" and trying.reason_phrase == "Trying"


@pytest.mark.parametrize(
    "vias",
    [
        [b"Via: SIP/2.0/UDP p.example.com;branch=z9hG4bK-p", b"Via: SIP/2.0/UDP a.example.com"],
        [b"Via: SIP/2.0/UDP p.example.com;branch=z9hG4bK-p, SIP/2.0/UDP a.example.com"],
    ],
)
def test_every_via_is_copied_in_order(vias: list[bytes]) -> None:
    """Several Vias (two fields, or one field of two entries) are all copied, in order."""
    head, _, rest = OPTIONS.partition(b"\r\n")
    rest = rest.split(b"\r\n", 1)[1]  # without the bench's Via
    request = _request(head + b"\r\n" + b"\r\n".join(vias) + b"\r\n" + rest)
    response = make_response(request, 486, to_tag="t")
    assert response.headers.get_list("Via") == [
        "SIP/2.0/UDP p.example.com;branch=z9hG4bK-p",
        "SIP/2.0/UDP a.example.com",
    ]
    assert response.to_bytes().count(b"\r\nVia: ") == 2


def test_a_response_made_in_order_is_written_without_a_sort(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fields make_response builds are in to_bytes' order already: no sort key is
    computed for them. A response changed afterwards is sorted again, as before."""
    request = _request()
    response = make_response(request, 200, to_tag="t1", extra=CAPABILITIES)
    expected = response.to_bytes()

    def no_sort(field: tuple[str, str, str]) -> int:
        raise AssertionError("sorted")

    monkeypatch.setattr(sipx._core.message, "_rank", no_sort)
    assert response.headers.in_order
    assert response.to_bytes() == expected
    assert expected.startswith(b"SIP/2.0 200 OK\r\nVia: ") and expected.endswith(
        b"Accept: application/sdp\r\nContent-Length: 0\r\n\r\n"
    )
    monkeypatch.undo()
    response.headers.add("Record-Route", "<sip:p.example.com;lr>")
    assert not response.headers.in_order
    lines = response.to_bytes().split(b"\r\n")
    assert lines[2] == b"Record-Route: <sip:p.example.com;lr>"  # after Via, before From


def test_extras_out_of_order_are_sorted() -> None:
    """An ``extra`` that to_bytes must move (a Record-Route) marks the response unsorted."""
    request = _request()
    response = make_response(
        request, 200, to_tag="t", extra=(("record-route", "Record-Route", "<sip:p;lr>"),)
    )
    assert not response.headers.in_order
    names = [line.split(b":")[0] for line in response.to_bytes().split(b"\r\n")[1:-2]]
    assert names == [
        b"Via",
        b"Record-Route",
        b"From",
        b"To",
        b"Call-ID",
        b"CSeq",
        b"Content-Length",
    ]
    assert in_conventional_order([("via", "Via", "x"), ("cseq", "CSeq", "1 A")])
    assert not in_conventional_order([("cseq", "CSeq", "1 A"), ("from", "From", "x")])


def test_headers_lose_in_order_on_any_change_but_a_new_top_via() -> None:
    fields = [("via", "Via", "SIP/2.0/UDP a"), ("from", "From", "<sip:a>;tag=1")]
    headers = Headers.from_parsed(list(fields), in_order=True)
    headers.prepend_via("SIP/2.0/UDP b")
    assert headers.in_order
    for change in (
        lambda h: h.add("Contact", "<sip:c>"),
        lambda h: h.__setitem__("Subject", "x"),
        lambda h: h.__delitem__("From"),
        lambda h: h.prepend("Route", "<sip:r>"),
        lambda h: h.remove_first("Via"),
    ):
        headers = Headers.from_parsed(list(fields), in_order=True)
        change(headers)
        assert not headers.in_order
    assert not Headers(headers).in_order and not Headers().in_order
    # A new top Via with a Contact keeps the order too: the Contact goes at its rank.
    headers = Headers.from_parsed([*fields, ("user-agent", "User-Agent", "u")], in_order=True)
    headers.prepend_via("SIP/2.0/UDP c", "<sip:c>")
    assert headers.in_order
    assert [key for key, _, _ in headers.entries] == ["via", "via", "from", "contact", "user-agent"]


def test_pop_events_hands_over_a_list_of_its_own() -> None:
    """The events are handed over whole; later events go to a new list."""
    layer = TransactionLayer()
    assert layer.pop_events() == []
    layer.receive_request(_request(), 0.0, reliable=False, destination=PEER)
    first = layer.pop_events()
    assert [type(event).__name__ for event in first] == ["RequestReceived"]
    (event,) = first
    event.transaction.respond(make_response(event.request, 200, to_tag="t"), 0.0)
    second = layer.pop_events()
    assert [type(e).__name__ for e in second] == ["Send", "TransactionTerminated"]
    assert len(first) == 1 and layer.pop_events() == []


async def test_an_options_answered_at_once_wakes_the_timer_check_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The response is sent by a pump nested in the request's: only the outer one may ask
    whether the timer loop needs waking, and since the eleventh pass only when the layer
    armed something (a Timer J record after the first arms nothing: no call at all).
    Retransmissions are still answered from the record, and the answer arrives."""
    wakes = [0]
    original = sipx._engine.Engine._wake_timer

    def counted(self: Any) -> None:
        wakes[0] += 1
        original(self)

    monkeypatch.setattr(sipx._engine.Engine, "_wake_timer", counted)
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network),
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        peer.send(OPTIONS.replace(b"-1", b"-0").replace(b"=f1", b"=f0"), address)  # arms Timer J
        await peer.receive()
        await trio.testing.wait_all_tasks_blocked()
        before = wakes[0]
        peer.send(OPTIONS, address)
        data, _ = await peer.receive()
        assert wakes[0] - before == 0
        peer.send(OPTIONS, address)  # retransmitted: the record answers the same bytes
        again, _ = await peer.receive()
    response = parse_message(data)
    assert isinstance(response, Response) and response.status_code == 200
    assert again == data


async def test_a_keep_alive_of_whitespace_is_ignored() -> None:
    """CRLF keep-alives (RFC 5626 style) get no answer and count as nothing malformed."""
    network = MemoryNetwork(seed=1)
    async with (
        sipx.AsyncClient("127.0.0.1", 0, network=network) as client,
        network.socket(PEER) as peer,
    ):
        address = next(a for a in network.bound_addresses if a != PEER)
        for data in (b"\r\n\r\n", b"\r\n", b" \t\r\n"):
            peer.send(data, address)
        peer.send(OPTIONS, address)
        answer, _ = await peer.receive()
        await trio.testing.wait_all_tasks_blocked()
        assert client.limit_stats.malformed_messages == 0
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")


def test_layer_events_compare_and_hash_by_value() -> None:
    """The layer's events (plain slotted dataclasses now, not frozen ones: cheaper to
    build) still compare by their fields, and hash by them where the fields hash."""
    request = _request()
    layer = TransactionLayer()
    transaction = layer.receive_request(request, 0.0, reliable=False, destination=PEER)
    assert transaction is not None
    (received,) = layer.pop_events()
    assert received == RequestReceived(transaction, request)
    response = make_response(request, 200, to_tag="t")
    assert Send(transaction, response, b"x") == Send(transaction, response, b"y")
    assert Send(transaction, response) != Send(transaction, make_response(request, 486))
    ended = {TransactionTerminated(transaction), TransactionTerminated(transaction)}
    assert ended == {TransactionTerminated(transaction)}


def test_a_server_transaction_sets_every_slot_a_transaction_has() -> None:
    """ServerTransaction.__init__ does Transaction.__init__'s work inline (one call fewer
    per request): every slot of both is set, to what the base would set."""
    request = _request()
    layer = TransactionLayer()
    transaction = layer.receive_request(request, 0.0, reliable=False, destination=PEER)
    assert transaction is not None
    for cls in type(transaction).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            getattr(transaction, slot)  # AttributeError if left unset
    assert (transaction.method, transaction.branch, transaction.destination) == (
        "OPTIONS",
        "z9hG4bK-1",
        PEER,
    )
    assert transaction.request is request and transaction.last_response is None
    assert not transaction.reliable and transaction.state.value == "Trying"
