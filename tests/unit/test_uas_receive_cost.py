"""The UAS receive and answer path of issue 14's sixth pass, pinned as behaviour.

* A request with an RFC 3261 branch (and its ACK) is matched to its server transaction
  from one read of its top Via: the RFC 2543 test (``_is_legacy``) is not run for it.
* ``check_essentials`` finds a repeated From, To, Call-ID or CSeq without building the
  header index of a request still as parsed (an ACK is read by a few names only).
* The dialog id of a request within a dialog is built without ``DialogId.__new__`` (a
  namedtuple's, a Python function): the same DialogId, by the tuple's constructor.
* ``SDPBody.create_answer`` works out the codecs of an offer seen again once: the same
  answer, fresh lists, a different offer or codec list worked out anew.

Each test counts the work removed and checks the result, so that it fails if the change
is reverted and if the behaviour changes. Nothing here times.
"""

from __future__ import annotations

from typing import Any

import pytest

import sipx._core.sdp
import sipx._core.transaction
from sipx import ParseError, SDPBody
from sipx._core.dialog import DialogId, dialog_id_of
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.transaction import (
    AckReceived,
    InviteServerTransaction,
    RequestReceived,
    TransactionLayer,
    make_response,
)

REQUEST = (
    b"%s sip:uas@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=%s;rport\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=7SIPpTag00\r\n"
    b"To: sut <sip:uas@127.0.0.1:5060>%s\r\n"
    b"Call-ID: 7-inv@127.0.0.1\r\n"
    b"CSeq: 1 %s\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5061>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OFFER = (
    "v=0\r\no=load 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)


def _request(method: bytes, branch: bytes, to_tag: bytes = b"") -> Request:
    message = parse_message(REQUEST % (method, branch, to_tag, method))
    assert isinstance(message, Request)
    return message


def test_rfc3261_requests_are_matched_without_the_rfc2543_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = TransactionLayer()
    invite = _request(b"INVITE", b"z9hG4bK-1")
    legacy = _request(b"INVITE", b"old-1")

    def no_legacy_test(request: Request) -> bool:
        raise AssertionError("_is_legacy read for a request with a z9hG4bK branch")

    monkeypatch.setattr(sipx._core.transaction, "_is_legacy", no_legacy_test)
    tx = layer.receive_request(invite, 0.0, reliable=False, destination=("127.0.0.1", 5061))
    assert isinstance(tx, InviteServerTransaction) and tx.branch == "z9hG4bK-1"
    assert RequestReceived(tx, invite) in layer.pop_events()
    # Its retransmission finds it; so does the ACK of a non-2xx (it completes it).
    assert layer.receive_request(_request(b"INVITE", b"z9hG4bK-1"), 0.5, reliable=False) is tx
    layer.pop_events()
    tx.respond(make_response(invite, 486, to_tag="t1"), 1.0)
    layer.pop_events()
    ack = _request(b"ACK", b"z9hG4bK-1", b";tag=t1")
    assert layer.receive_request(ack, 1.1, reliable=False) is tx
    assert not any(isinstance(event, AckReceived) for event in layer.pop_events())
    # An RFC 2543 request still takes the RFC 2543 rule: its retransmission (same
    # branch-less fields) finds its transaction, a new CSeq does not.
    old = layer.receive_request(legacy, 2.0, reliable=False)
    assert isinstance(old, InviteServerTransaction) and old is not tx
    assert layer.receive_request(_request(b"INVITE", b"old-1"), 2.5, reliable=False) is old
    other = parse_message((REQUEST % (b"INVITE", b"old-1", b"", b"INVITE")).replace(b"1 I", b"2 I"))
    assert isinstance(other, Request)
    assert layer.receive_request(other, 2.6, reliable=False) not in (None, old, tx)


def test_check_essentials_leaves_the_index_of_a_parsed_request_unbuilt() -> None:
    ack = _request(b"ACK", b"z9hG4bK-2", b";tag=t2")
    ack.check_essentials()
    assert ack.headers.index is None  # the parent built it for its four counts
    assert (ack.to.tag, ack.call_id, ack.cseq.seq) == ("t2", "7-inv@127.0.0.1", 1)
    # A repeated field is still refused, named, with its count.
    data = REQUEST % (b"ACK", b"z9hG4bK-3", b";tag=t3", b"ACK")
    for extra, name in (
        (b"To: <sip:other@127.0.0.1>\r\n", "To"),
        (b"Call-ID: again@127.0.0.1\r\n", "Call-ID"),
        (b"CSeq: 1 ACK\r\nCSeq: 1 ACK\r\n", "CSeq"),
    ):
        twice = parse_message(data.replace(b"Max-Forwards", extra + b"Max-Forwards"))
        assert isinstance(twice, Request)
        count = 3 if name == "CSeq" else 2
        with pytest.raises(ParseError, match=rf"^{name} appears {count} times"):
            twice.check_essentials()
    # A request built (not parsed) is checked from its index.
    built = _request(b"BYE", b"z9hG4bK-4", b";tag=t4")
    built.headers.add("From", "<sip:x@127.0.0.1>;tag=2")
    with pytest.raises(ParseError, match=r"^From appears 2 times"):
        built.check_essentials()


def test_dialog_ids_are_built_without_the_namedtuple_constructor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = DialogId("7-inv@127.0.0.1", "t5", "7SIPpTag00")
    bye = _request(b"BYE", b"z9hG4bK-5", b";tag=t5")

    def no_new(*args: Any) -> DialogId:
        raise AssertionError("DialogId.__new__ called")

    monkeypatch.setattr(DialogId, "__new__", no_new)
    found = dialog_id_of(bye)
    assert type(found) is DialogId and found == expected
    assert (found.call_id, found.local_tag, found.remote_tag) == tuple(expected)
    assert str(found) == "7-inv@127.0.0.1;local-tag=t5;remote-tag=7SIPpTag00"
    assert {expected: "call"}[found] == "call"  # the key the engine's dicts use
    assert dialog_id_of(_request(b"INVITE", b"z9hG4bK-6")) is None  # no To tag


def _answer(offer: SDPBody, **kw: Any) -> SDPBody:
    return SDPBody.create_answer(
        offer,
        origin_username="sipx",
        origin_address="127.0.0.1",
        connection_address="127.0.0.1",
        session_id=5,
        **kw,
    )


def test_the_codecs_of_an_offer_seen_again_are_worked_out_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    common = sipx._core.sdp._common_codecs

    def counted(offered: Any, supported: Any) -> Any:
        calls.append(offered.media)
        return common(offered, supported)

    monkeypatch.setattr(sipx._core.sdp, "_common_codecs", counted)
    getattr(sipx._core.sdp, "_ANSWER_CODECS", {}).clear()  # (none on the parent)
    first = _answer(SDPBody.parse(OFFER))
    second = _answer(SDPBody.parse(OFFER))
    assert len(calls) == 1  # the parent worked them out for each answer
    assert first.to_bytes() == second.to_bytes()
    media = second.media[0]
    assert media.formats == ["0", "101"]
    assert media.attributes == [
        ("rtpmap", "0 PCMU/8000"),
        ("rtpmap", "101 telephone-event/8000"),
        ("fmtp", "101 0-16"),  # our fmtp, the offer had none
        ("sendrecv", None),
    ]
    # The answer's lists are its own: changing one leaves the next answer as it was.
    media.formats.append("8")
    media.attributes.insert(0, ("rtpmap", "8 PCMA/8000"))
    third = _answer(SDPBody.parse(OFFER))
    assert third.to_bytes() == first.to_bytes() and len(calls) == 1
    # Another offer, or another list of codecs, is worked out anew.
    pcma = _answer(SDPBody.parse(OFFER.replace(" 0 101", " 8 101").replace("0 PCMU", "8 PCMA")))
    assert pcma.media[0].formats == ["8", "101"] and len(calls) == 2
    only_pcmu = [{"payload": "0", "name": "PCMU", "rate": 8000}]
    narrow = _answer(SDPBody.parse(OFFER), supported_codecs=only_pcmu)
    assert narrow.media[0].formats == ["0"] and len(calls) == 3
    assert _answer(SDPBody.parse(OFFER)).to_bytes() == first.to_bytes() and len(calls) == 3
