"""RFC 3261 18.2.1 received and RFC 3581 rport, stamped by the receiver."""

from __future__ import annotations

import pytest

import sipx
from sipx._core.received import stamp_received

BASE = (
    "OPTIONS sip:b@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {via};branch=z9hG4bK1{rport}\r\n"
    "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK0\r\n"
    "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
    "Call-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _request(via: str, rport: str) -> sipx.Request:
    message = sipx.parse_message(BASE.format(via=via, rport=rport).encode())
    assert isinstance(message, sipx.Request)
    return message


@pytest.mark.parametrize(
    ("via", "rport", "force", "received", "port"),
    [
        ("10.0.0.5:5060", ";rport", False, "192.0.2.9", "40000"),  # NAT: both filled in
        ("192.0.2.9:5060", ";rport", False, None, "40000"),  # same host: rport only
        ("192.0.2.9:5060", "", False, None, None),  # nothing asked, nothing changed
        ("10.0.0.5:5060", "", False, "192.0.2.9", None),  # received without rport
        ("192.0.2.9:5060", "", True, None, "40000"),  # a proxy forcing rport
        ("[2001:db8::1]:5060", ";rport", False, None, "40000"),  # IPv6 sent-by, same host
    ],
)
def test_stamp_received(
    via: str, rport: str, force: bool, received: str | None, port: str | None
) -> None:
    source = ("2001:db8::1", 40000) if via.startswith("[") else ("192.0.2.9", 40000)
    request = _request(via, rport)
    stamp_received(request, source, force_rport=force)
    top = request.top_via
    assert top.received == received
    assert top.params.get("rport") == port
    assert len(request.via) == 2 and request.via[1].host == "proxy.example.com"
    # The stamped Via survives serialisation.
    again = sipx.parse_message(request.to_bytes())
    assert again.top_via.params == top.params


def test_stamping_keeps_the_views_already_parsed() -> None:
    """Only the top Via changes: From, To and CSeq read before are not parsed again, and
    the Via list read afterwards has the stamped entry on top."""
    request = _request("10.0.0.5:5060", ";rport")
    from_, to, cseq = request.from_, request.to, request.cseq
    assert len(request.via) == 2  # the list view, made stale by the stamp
    stamp_received(request, ("192.0.2.9", 40000))
    assert request.from_ is from_ and request.to is to and request.cseq is cseq
    assert request.top_via.received == "192.0.2.9"
    assert [via.received for via in request.via] == ["192.0.2.9", None]
    assert request.headers.get_list("Via")[0].endswith("received=192.0.2.9")
