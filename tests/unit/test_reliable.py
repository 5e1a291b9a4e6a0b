"""The sans-I/O side of RFC 3262 (sipx._core.reliable) and option tags
(sipx._core.option_tags): headers, the UAC's RSeq tracking, the UAS's numbering, queue,
PRACK matching and retransmission schedule."""

from __future__ import annotations

import pytest

import sipx
from sipx._core.option_tags import SUPPORTED, add_option_tag, option_tags, unsupported
from sipx._core.reliable import (
    FIRST_RSEQ_MAX,
    ProvisionalSequence,
    RAck,
    ReliableProvisionals,
    Verdict,
    first_rseq,
    give_up_after,
    is_reliable,
    rack_of,
    retransmission_offsets,
    rseq_of,
    send_reliably,
)
from sipx._core.transaction import make_response


def invite(*headers: tuple[str, str], cseq: int = 7) -> sipx.Request:
    request = sipx.Request("INVITE", "sip:bob@example.com")
    fields = request.headers
    fields.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx")
    fields.add("From", "<sip:alice@example.com>;tag=a")
    fields.add("To", "<sip:bob@example.com>")
    fields.add("Call-ID", "c1")
    fields.add("CSeq", f"{cseq} INVITE")
    for name, value in headers:
        fields.add(name, value)
    return request


def provisional(status: int = 180, body: bytes = b"", cseq: int = 7) -> sipx.Response:
    response = make_response(invite(cseq=cseq), status, to_tag="b")
    if body:
        response.headers["Content-Type"] = "application/sdp"
        response.content = body
    return response


# -- headers ------------------------------------------------------------------------------
def test_rack_round_trip_and_errors() -> None:
    rack = RAck.parse("776656 1 INVITE")
    assert rack == RAck(776656, 1, "INVITE") and str(rack) == "776656 1 INVITE"
    assert RAck.parse("  5\t 2  INVITE ") == RAck(5, 2, "INVITE")
    for bad in (
        "",
        "1 INVITE",
        "x 1 INVITE",
        "0 1 INVITE",
        "1 y INVITE",
        "1 2 IN VITE",
        f"{2**32} 1 INVITE",
        f"1 {2**31} INVITE",
        "1 2 INV@TE x",
    ):
        with pytest.raises(sipx.ParseError):
            RAck.parse(bad)


def test_rseq_and_reliability_of_a_response() -> None:
    response = provisional()
    assert rseq_of(response) is None and not is_reliable(response)
    response.headers["RSeq"] = "42"
    assert rseq_of(response) == 42
    assert not is_reliable(response)  # RSeq without Require: 100rel
    response.headers["Require"] = "timer, 100REL"
    assert is_reliable(response)
    assert RAck.of(response) == RAck(42, 7, "INVITE")
    response.headers["RSeq"] = "4294967296"
    with pytest.raises(sipx.ParseError):
        rseq_of(response)
    final = make_response(invite(("Require", "100rel")), 200, to_tag="b")
    final.headers["RSeq"] = "1"
    final.headers["Require"] = "100rel"
    assert not is_reliable(final)  # only 101-199


def test_rack_of_a_prack() -> None:
    prack = sipx.Request("PRACK", "sip:bob@example.com")
    with pytest.raises(sipx.ParseError, match="without RAck"):
        rack_of(prack)
    prack.headers["RAck"] = "9 1 INVITE"
    assert rack_of(prack) == RAck(9, 1, "INVITE")


# -- option tags ---------------------------------------------------------------------------
def test_option_tags_are_read_from_every_header_and_appended_to() -> None:
    request = invite(("Supported", "timer, replaces"), ("k", "path"), ("Require", "foo,100rel"))
    assert option_tags(request, "Supported") == ["timer", "replaces", "path"]
    assert unsupported(request, SUPPORTED) == ["foo"]
    assert unsupported(invite(("Require", "100REL")), SUPPORTED) == []
    assert unsupported(invite(("Require", "100rel")), ["replaces"]) == ["100rel"]
    add_option_tag(request, "Supported", "100rel")
    assert request.headers.get_list("Supported") == ["timer", "replaces", "path", "100rel"]
    add_option_tag(request, "Supported", "100rel")  # listed already: unchanged
    assert request.headers.get_list("Supported") == ["timer", "replaces", "path", "100rel"]
    fresh = invite()
    add_option_tag(fresh, "Supported", "100rel")
    assert fresh.headers["Supported"] == "100rel"
    assert "100rel" in SUPPORTED


# -- when to send reliably ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "wanted", "enabled", "expected"),
    [
        ((), None, True, False),
        ((), True, True, False),  # the caller did not ask: never reliably (fallback)
        ((("Supported", "100rel"),), None, True, False),  # default: only when required
        ((("Supported", "100rel"),), True, True, True),
        ((("Supported", "100rel"),), False, True, False),
        ((("Require", "100rel"),), None, True, True),
        ((("Require", "100rel"),), True, True, True),
        ((("Supported", "100rel"),), True, False, False),  # this UA does not support it
        ((("Require", "100rel"),), None, False, False),
    ],
)
def test_send_reliably(
    headers: tuple[tuple[str, str], ...], wanted: bool | None, enabled: bool, expected: bool
) -> None:
    assert send_reliably(invite(*headers), wanted, enabled=enabled) is expected


def test_reliable_false_is_refused_when_the_caller_requires_100rel() -> None:
    with pytest.raises(ValueError, match="requires 100rel"):
        send_reliably(invite(("Require", "100rel")), False, enabled=True)


# -- the UAC --------------------------------------------------------------------------------
def test_the_uac_takes_each_rseq_once_and_in_order() -> None:
    sequence = ProvisionalSequence()
    assert sequence.receive(500) is Verdict.NEW  # the first sets the space
    assert sequence.receive(500) is Verdict.RETRANSMISSION
    assert sequence.receive(502) is Verdict.OUT_OF_ORDER  # a gap: dropped
    assert sequence.receive(499) is Verdict.OUT_OF_ORDER  # an old one
    assert sequence.last == 500
    assert sequence.receive(501) is Verdict.NEW
    assert sequence.receive(502) is Verdict.NEW  # now in order
    assert sequence.receive(501) is Verdict.OUT_OF_ORDER


# -- the UAS --------------------------------------------------------------------------------
def test_first_rseq_is_within_1_and_2_to_the_31_minus_1() -> None:
    assert first_rseq(0) == 1
    assert first_rseq(FIRST_RSEQ_MAX - 1) == FIRST_RSEQ_MAX
    assert first_rseq(FIRST_RSEQ_MAX) == 1
    assert all(1 <= first_rseq(token) <= 2**31 - 1 for token in (2**32 - 1, 12345, 2**40))


def test_retransmission_schedule_doubles_without_cap_until_64_t1() -> None:
    assert retransmission_offsets(0.5) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert give_up_after(0.5) == 32.0
    assert retransmission_offsets(1.0) == [1, 3, 7, 15, 31, 63]
    assert give_up_after(1.0) == 64


def test_the_uas_numbers_queues_and_matches() -> None:
    state = ReliableProvisionals(first=100)
    ringing, progress = provisional(180), provisional(183, b"v=0\r\n")
    assert state.add(ringing) is True  # goes now: it is the unacknowledged one
    assert ringing.headers["RSeq"] == "100" and ringing.headers.get_list("Require") == ["100rel"]
    assert not state.holds_2xx  # no SDP in it
    assert state.add(progress) is False  # waits for the PRACK of the 180
    assert progress.headers["RSeq"] == "101"
    assert not state.holds_2xx  # a queued 183 was never sent
    assert state.prack(RAck(101, 7, "INVITE")) == (False, None)  # not the unacknowledged one
    assert state.prack(RAck(100, 8, "INVITE")) == (False, None)  # another CSeq
    assert state.prack(RAck(100, 7, "BYE")) == (False, None)
    assert state.prack(RAck(100, 7, "INVITE")) == (True, progress)  # the 183 goes now
    assert state.unacknowledged is progress and state.holds_2xx
    assert state.prack(RAck(100, 7, "INVITE")) == (False, None)  # acknowledged already: 481
    state.final_sent()
    assert state.prack(RAck(101, 7, "INVITE")) == (True, None)  # a late PRACK still matches
    assert not state.holds_2xx and state.unacknowledged is None


def test_a_final_response_drops_the_queue() -> None:
    state = ReliableProvisionals(first=1)
    first, second = provisional(180), provisional(182)
    assert state.add(first) and not state.add(second)
    state.final_sent()
    assert state.prack(RAck(1, 7, "INVITE")) == (True, None)  # the 182 never goes


def test_the_uas_refuses_what_is_not_a_reliable_provisional() -> None:
    with pytest.raises(ValueError):
        ReliableProvisionals(first=0)
    with pytest.raises(ValueError):
        ReliableProvisionals(first=2**31)
    state = ReliableProvisionals(first=1)
    with pytest.raises(ValueError, match="101-199"):
        state.add(provisional(100))
    another = provisional(180)
    another.headers["Require"] = "timer"
    state.add(another)
    assert another.headers.get_list("Require") == ["timer", "100rel"]
