"""The client's OPTIONS path (issue 14, thirteenth pass).

* The stamp hands the transaction the branch it wrote and makes no view of the Via (a
  copy of a Via and its parameters per request, for the branch alone).
* A response that carries the request's top Via and CSeq back unchanged (what a UAS that
  fills in neither ``received`` nor ``rport`` sends, SIPp's among them) is matched to its
  transaction by that text (:meth:`TransactionLayer.receive_own_response`): neither its Via
  nor its CSeq is parsed to match it, and nothing is learned from it (there is nothing to
  learn). Any other response takes the parsed match, as before; both find the same
  transaction, and the views stay readable.

What goes on the wire stays as it was.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio
import trio.testing

import sipx
from sipx._core import message as message_module
from sipx._core.header_types import Via, parse_via
from sipx._core.message import Request, Response
from sipx._core.parser import parse_message
from sipx._core.transaction import (
    ClientTransaction,
    ResponseReceived,
    Send,
    StrayResponse,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    make_response,
)
from sipx.testing import MemoryNetwork

PEER = ("127.0.0.1", 5999)
UAS = ("192.0.2.2", 5060)


def forbid(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    """Make ``owner.name`` (a function, a method or a property) raise when used."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{name} used")

    is_property = isinstance(owner.__dict__.get(name), property)
    monkeypatch.setattr(owner, name, property(refuse) if is_property else refuse)


def answer(request: bytes, via_suffix: bytes = b"") -> bytes:
    """A 200 copying the request's Via (``via_suffix`` appended), From, To (tagged),
    Call-ID and CSeq, as SIPp's UAS (and ``bench_client_cpu.py``) does."""
    lines = [b"SIP/2.0 200 OK"]
    for line in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        lower = line[:9].lower()
        if lower.startswith(b"via:"):
            lines.append(line + via_suffix)
        elif lower.startswith((b"from:", b"call-id:", b"cseq:")):
            lines.append(line)
        elif lower.startswith(b"to:"):
            lines.append(line + b";tag=peer")
    lines.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(lines)


def sent_options(network: MemoryNetwork) -> list[bytes]:
    return [d.data for d in network.log if d.data.startswith(b"OPTIONS ")]


async def options_answered(
    monkeypatch: pytest.MonkeyPatch | None, via_suffix: bytes = b"", count: int = 3
) -> tuple[list[Response], list[Response], MemoryNetwork, TransactionLayer]:
    """``count`` OPTIONS answered by a peer copying the request (``via_suffix`` added to
    its Via), after one first; with ``monkeypatch`` given, what it forbade is undone
    before the responses are returned. The responses and those the engine told
    ``on_response_seen`` of, the network and the client's transaction layer."""
    network = MemoryNetwork()
    seen: list[Response] = []

    async def answer_all(peer: Any) -> None:
        while True:
            data, source = await peer.receive()
            peer.send(answer(data, via_suffix), source)

    async with (
        sipx.AsyncClient("127.0.0.1", 5060, network=network) as client,
        network.socket(PEER) as peer,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(answer_all, peer)
        uri = f"sip:uas@{PEER[0]}:{PEER[1]}"
        assert (await client.options(uri)).status_code == 200
        engine = client._engine
        learn = engine.on_response_seen

        def told(response: Response, source: Any) -> None:
            seen.append(response)
            learn(response, source)

        engine.on_response_seen = told
        responses = [await client.options(uri) for _ in range(count)]
        if monkeypatch is not None:
            monkeypatch.undo()
        nursery.cancel_scope.cancel()
    return responses, seen, network, client._engine.layer


# -- through the client -------------------------------------------------------------------------
async def test_a_response_carrying_the_request_back_is_matched_by_its_text(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid(monkeypatch, TransactionLayer, "receive_response")
    forbid(monkeypatch, message_module, "parse_via")  # Message.top_via's parse
    forbid(monkeypatch, message_module, "parse_cseq")  # Message.cseq's parse
    forbid(monkeypatch, Response, "top_via")
    forbid(monkeypatch, Via, "with_branch")  # the stamp makes no view of its Via
    responses, seen, network, layer = await options_answered(monkeypatch)
    assert [r.status_code for r in responses] == [200] * 3
    assert layer._sent_vias == {}  # each transaction ended: none is matched by text now
    assert seen == []  # nothing filled in: nothing to learn, the hook not called
    sent = sent_options(network)
    assert len(sent) == 4  # once each: no retransmission, nothing stray
    for data, response in zip(sent[1:], responses, strict=True):
        request = response.request
        assert request is not None and data == request.to_bytes()
        # The views nobody parsed are still there, as parsed from the text sent.
        assert "top_via" not in request.headers.typed
        assert "top_via" not in response.headers.typed
        via_text = request.headers["Via"]
        assert response.top_via == parse_via(via_text)
        assert response.top_via.branch == request.top_via.branch
        assert response.cseq == request.cseq
        assert f"\r\nVia: {via_text}\r\n".encode() in data


async def test_a_via_filled_in_is_parsed_and_learned_from(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # (passes on the parent too: what a response with received/rport does is kept)
    responses, seen, network, _ = await options_answered(None, b"=5090;received=192.0.2.7")
    assert [r.status_code for r in responses] == [200] * 3
    assert seen == responses  # each told to the hook: the public address learned
    for response in responses:
        assert response.top_via.received == "192.0.2.7"
        assert response.top_via.rport == 5090
    sent = sent_options(network)
    # The Contact of every request after the first answer names the learned address.
    assert b"Contact: <sip:sipx@127.0.0.1:5060>" in sent[0]
    for data in sent[1:]:
        assert b"Contact: <sip:sipx@192.0.2.7:5090>" in data


# -- the layer ----------------------------------------------------------------------------------
def sent_request(method: str = "OPTIONS", cseq: str | None = None, **via: str) -> Request:
    """A request as the client's stamp leaves it: its first values built."""
    via.setdefault("rport", "")
    params = ";".join(f"{k}={v}" if v else k for k, v in via.items())
    data = (
        f"{method} sip:bob@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-13;{params}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@192.0.2.1>;tag=ft\r\n"
        "To: <sip:bob@192.0.2.2>\r\n"
        "Call-ID: c13\r\n"
        f"CSeq: {cseq or '1 ' + method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    request = parse_message(data.encode())
    assert isinstance(request, Request)
    request.headers.first_values()
    return request


def received(request: Request, code: int = 200, via_suffix: str = "") -> Response:
    """``request``'s response as parsed from the wire (its Via copied, ``via_suffix``
    appended)."""
    response = make_response(request, code, to_tag="tt" if code > 100 else None)
    if via_suffix:
        response.headers["Via"] = response.headers["Via"] + via_suffix
    parsed = parse_message(response.to_bytes())
    assert isinstance(parsed, Response)
    return parsed


def started(request: Request, reliable: bool = False) -> tuple[TransactionLayer, ClientTransaction]:
    layer = TransactionLayer()
    transaction = layer.send_request(request, 0.0, reliable=reliable, destination=UAS)
    assert layer.pop_events() == [Send(transaction, request)]
    return layer, transaction


def test_the_text_match_finds_the_transaction_and_ends_as_the_parsed_match_does() -> None:
    request = sent_request()
    layer, transaction = started(request)
    trying, ok = received(request, 100), received(request)
    assert layer.receive_own_response(trying, 0.1) is transaction
    assert layer.pop_events() == [ResponseReceived(transaction, trying)]
    assert "top_via" not in trying.headers.typed and "cseq" not in trying.headers.typed
    assert layer.receive_own_response(ok, 0.2) is transaction
    events = layer.pop_events()
    assert events == [ResponseReceived(transaction, ok), TransactionTerminated(transaction)]
    # A retransmitted 200: not matched by text any more; Timer K's record absorbs it.
    again = received(request)
    assert layer.receive_own_response(again, 0.3) is None
    assert layer.receive_response(again, 0.3) is None
    assert layer.pop_events() == []


@pytest.mark.parametrize(
    "via_suffix",
    ["=5070", ";received=192.0.2.9", ";x=1", ", SIP/2.0/UDP 192.0.2.5"],
    ids=["rport value", "received", "another parameter", "another text"],
)
def test_a_response_whose_via_changed_takes_the_parsed_match(via_suffix: str) -> None:
    request = sent_request()
    layer, transaction = started(request)
    response = received(request, via_suffix=via_suffix)
    assert layer.receive_own_response(response, 0.1) is None
    assert layer.pop_events() == []  # nothing done
    assert layer.receive_response(response, 0.1) is transaction
    assert layer.pop_events()[0] == ResponseReceived(transaction, response)


@pytest.mark.parametrize("filled", [{"received": "192.0.2.9"}, {"rport": "5070"}])
def test_a_request_sent_with_a_via_filled_in_is_not_matched_by_text(filled: dict[str, str]) -> None:
    # The parsed match tells the engine's hook, which learns from received/rport.
    request = sent_request(**filled)
    layer, transaction = started(request)
    response = received(request)
    assert layer.receive_own_response(response, 0.1) is None
    assert layer.receive_response(response, 0.1) is transaction


@pytest.mark.parametrize("cseq", ["1 INFO", "1  OPTIONS", "x1 OPTIONS", "1234567890 OPTIONS"])
def test_a_cseq_not_read_at_once_as_the_method_is_not_matched_by_text(cseq: str) -> None:
    request = sent_request(cseq=cseq)
    layer, _ = started(request)
    response = received(request)
    assert layer.receive_own_response(response, 0.1) is None
    layer.pop_events()
    try:  # what the parsed match does with it, as before
        found = layer.receive_response(response, 0.1)
    except sipx.ParseError:
        return
    if cseq == "1 INFO":
        assert found is None and layer.pop_events() == [StrayResponse(response)]


def test_an_invite_and_its_cancel_share_a_via_each_answered_to_its_own() -> None:
    invite = sent_request("INVITE")
    layer, invite_transaction = started(invite)
    cancel = sent_request("CANCEL")
    cancel_transaction = layer.send_request(cancel, 0.5, reliable=False, destination=UAS)
    layer.pop_events()
    ok = received(cancel)
    assert layer.receive_own_response(ok, 0.6) is None  # the INVITE's CSeq is not the CANCEL's
    assert layer.receive_response(ok, 0.6) is cancel_transaction
    terminated = received(invite, 487)
    assert layer.receive_own_response(terminated, 0.7) is invite_transaction
    assert ResponseReceived(invite_transaction, terminated) in layer.pop_events()


@pytest.mark.parametrize("how", ["timeout", "transport error", "reliable final"])
def test_a_transaction_that_ends_is_no_longer_matched_by_text(how: str) -> None:
    request = sent_request()
    layer, transaction = started(request, reliable=how == "reliable final")
    if how == "timeout":
        while (deadline := layer.next_deadline()) is not None and deadline <= 40:
            layer.handle_timers(deadline)
        assert TransactionTimeout(transaction) in layer.pop_events()
    elif how == "transport error":
        layer.transport_error(transaction, 0.1)
        layer.pop_events()
    else:
        assert layer.receive_own_response(received(request), 0.1) is transaction
        assert layer.pop_events()[-1] == TransactionTerminated(transaction)
    assert transaction.terminated
    late = received(request)
    assert layer.receive_own_response(late, 50.0) is None
    assert layer._sent_vias == {}
    # A new transaction with that Via (a branch used again) is matched by text again.
    again = sent_request()
    second = layer.send_request(again, 60.0, reliable=False, destination=UAS)
    assert layer.receive_own_response(received(again), 60.1) is second


# -- the first Timer E, queued off the heap -------------------------------------------------------
def kinds_at(layer: TransactionLayer, end: float) -> list[tuple[float, str, str]]:
    """Fire the layer's timers up to ``end``: (time, event kind, method) of what they sent
    or ended, in order."""
    seen: list[tuple[float, str, str]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        layer.handle_timers(deadline)
        for event in layer.pop_events():
            transaction = getattr(event, "transaction", None)
            method = transaction.method if transaction is not None else ""
            seen.append((deadline, type(event).__name__, method))
    return seen


def branch_request(method: str, branch: str) -> Request:
    request = Request(
        method,
        "sip:bob@192.0.2.2",
        [
            ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{branch}"),
            ("From", "<sip:alice@192.0.2.1>;tag=ft"),
            ("To", "<sip:bob@192.0.2.2>"),
            ("Call-ID", branch),
            ("CSeq", f"1 {method}"),
        ],
    )
    return request


def test_an_answered_options_over_udp_leaves_nothing_on_the_timer_heap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = TransactionLayer()
    request = sent_request()
    transaction = layer.send_request(request, 0.0, reliable=False, destination=UAS)
    assert layer._heap == []  # its first Timer E is queued by key: no heap entry
    assert layer.next_deadline() == 0.5
    forbid(monkeypatch, TransactionLayer, "_dropped_timers")  # no heap entry to drop
    assert layer.receive_own_response(received(request), 0.1) is transaction
    monkeypatch.undo()
    assert not [r for r in gc.get_referrers(transaction) if isinstance(r, tuple | list)]
    assert not layer._first_e  # the oldest answered: its entry left with it, not after T1
    layer.pop_events()
    # The answered transaction's entry is skipped: the next deadline is Timer K's record.
    assert layer.next_deadline() == pytest.approx(5.1)  # (5 s after the answer)
    layer.handle_timers(5.1)
    assert layer.next_deadline() is None and len(layer) == 0


def test_first_timer_e_fire_among_the_heap_timers_in_the_order_they_were_armed() -> None:
    # Equal deadlines: the order the timers were armed in, queue and heap interleaved.
    layer = TransactionLayer()
    for method, branch in [("OPTIONS", "a"), ("INVITE", "b"), ("MESSAGE", "c"), ("INVITE", "d")]:
        layer.send_request(branch_request(method, branch), 0.0, reliable=False, destination=UAS)
    layer.send_request(branch_request("INFO", "e"), 0.25, reliable=False, destination=UAS)
    layer.pop_events()
    seen = kinds_at(layer, 0.75)
    assert seen == [
        (0.5, "Send", "OPTIONS"),
        (0.5, "Send", "INVITE"),
        (0.5, "Send", "MESSAGE"),
        (0.5, "Send", "INVITE"),
        (0.75, "Send", "INFO"),
    ]
    # Then each non-INVITE every 2, 4 s... (T2 caps at 4 s), each INVITE doubling, and
    # Timer F and B at 32 s (F joined the heap at E's first firing).
    later = kinds_at(layer, 40.0)
    ends = [(at, method) for at, kind, method in later if kind == "TransactionTimeout"]
    assert ends == [
        (32.0, "OPTIONS"),
        (32.0, "INVITE"),
        (32.0, "MESSAGE"),
        (32.0, "INVITE"),
        (32.25, "INFO"),
    ]
    options_sends = [
        at for at, kind, method in seen + later if kind == "Send" and method == "OPTIONS"
    ]
    assert options_sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def test_a_first_timer_e_armed_before_the_last_one_queued_still_fires_first() -> None:
    # A clock set back (the layer takes any ``now``): that E goes on the heap.
    layer = TransactionLayer()
    layer.send_request(branch_request("OPTIONS", "late"), 1.0, reliable=False, destination=UAS)
    layer.send_request(branch_request("MESSAGE", "early"), 0.0, reliable=False, destination=UAS)
    layer.pop_events()
    assert kinds_at(layer, 1.5) == [
        (0.5, "Send", "MESSAGE"),
        (1.5, "Send", "OPTIONS"),  # armed first, at 1.0
        (1.5, "Send", "MESSAGE"),  # its second E, armed at 0.5
    ]


def test_a_transaction_ended_before_its_first_timer_e_is_not_retransmitted() -> None:
    layer = TransactionLayer()
    ended = layer.send_request(branch_request("OPTIONS", "x"), 0.0, reliable=False, destination=UAS)
    layer.send_request(branch_request("OPTIONS", "y"), 0.1, reliable=False, destination=UAS)
    layer.transport_error(ended, 0.2)
    layer.pop_events()
    assert kinds_at(layer, 0.6) == [(0.6, "Send", "OPTIONS")]  # y's only
    # A provisional response does not stop it (Proceeding retransmits every T2).
    layer = TransactionLayer()
    request = branch_request("OPTIONS", "z")
    layer.send_request(request, 0.0, reliable=False, destination=UAS)
    layer.receive_response(make_response(request, 100), 0.1)
    layer.pop_events()
    assert kinds_at(layer, 4.5) == [(0.5, "Send", "OPTIONS"), (4.5, "Send", "OPTIONS")]
