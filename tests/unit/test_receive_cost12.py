"""Twelfth pass, the receive path: the usual ``;rport`` Via stamped by a string edit (no
parameters rendered again), the Call-ID checked without the property: the same bytes."""

from __future__ import annotations

import pytest

import sipx._core.received as received
from sipx import ParseError
from sipx._core.message import Message
from sipx._core.parser import parse_message
from sipx._core.received import stamp_received


def _request(via: str, call_id: str | None = "c1") -> bytes:
    call = "" if call_id is None else f"Call-ID: {call_id}\r\n"
    return (
        f"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:b@x>;tag=1\r\n"
        f"To: <sip:a@y>\r\n{call}CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _stamped(via: str, source: tuple[str, int], force: bool = False) -> bytes:
    request = parse_message(_request(via))
    request.check_essentials()
    stamp_received(request, source, force_rport=force)
    return request.to_bytes()


def _no_render(params: object) -> str:
    raise AssertionError("render_params called")


@pytest.mark.parametrize(
    ("via", "source", "stamped"),
    [
        (
            "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
            ("127.0.0.1", 5999),
            "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
        ),
        (
            "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
            ("10.0.0.9", 40000),
            "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
        ),
        (
            "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport",
            ("::1", 5999),
            "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport=5999",
        ),
        (
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
            ("::1", 5999),
            "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=5999;received=::1",
        ),
    ],
)
def test_the_usual_rport_via_is_stamped_without_rendering_its_parameters(
    monkeypatch: pytest.MonkeyPatch, via: str, source: tuple[str, int], stamped: str
) -> None:
    monkeypatch.setattr(received, "render_params", _no_render)
    request = parse_message(_request(via))
    request.check_essentials()
    stamp_received(request, source)
    assert request.to_bytes() == parse_message(_request(stamped)).to_bytes()
    assert request.to_bytes().split(b"\r\n")[1] == f"Via: {stamped}".encode()
    # The parsed view agrees with the text, and is the one kept (not parsed again).
    top = request.headers.typed["top_via"]
    assert request.top_via is top
    assert str(top) == stamped
    assert top.params["rport"] == str(source[1])
    assert ("received" in top.params) == (stamped.endswith(f"received={source[0]}"))
    assert request.via[0] == top
    assert [str(via) for via in request.via] == [stamped]


# Every other shape takes the general way; the bytes are those of the parent tree
# (7917450), recorded for each Via, source and force_rport.
_CASES = [
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=5999;received=127.0.0.1",
    ),
    (
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=5999;received=127.0.0.1",
    ),
    (
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport=5999;received=127.0.0.1",
    ),
    (
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport=5999;received=127.0.0.1",
    ),
    (
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/TCP [::1]:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/udp 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/udp 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/udp 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/udp 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/udp 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/udp 127.0.0.1:5999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:05999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:05999;branch=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:05999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:05999;branch=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:05999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:05999;branch=z9hG4bK-1;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999 ; branch=z9hG4bK-1 ;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999 ; branch=z9hG4bK-1 ;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999 ; branch=z9hG4bK-1 ;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999 ; branch=z9hG4bK-1 ;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999 ; branch=z9hG4bK-1 ;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999 ; branch=z9hG4bK-1 ;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;BRANCH=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;BRANCH=z9hG4bK-1;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;BRANCH=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;BRANCH=z9hG4bK-1;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;BRANCH=z9hG4bK-1;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;BRANCH=z9hG4bK-1;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-1",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;rport=5999;branch=z9hG4bK-1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-1",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;rport=5999;branch=z9hG4bK-1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-1",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;rport=40000;branch=z9hG4bK-1;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-1",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;rport=40000;branch=z9hG4bK-1;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-1",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;rport=5999;branch=z9hG4bK-1;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bK-1",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;rport=5999;branch=z9hG4bK-1;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=1234",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;received=10.0.0.9;rport=40000",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;received=::1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;lr;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;RPORT",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;RPORT",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;RPORT",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;RPORT",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;RPORT",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;RPORT",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2",
        ("127.0.0.1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2",
        ("127.0.0.1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2",
        ("10.0.0.9", 40000),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2",
        ("10.0.0.9", 40000),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=40000;received=10.0.0.9",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2",
        ("::1", 5999),
        False,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
    (
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2",
        ("::1", 5999),
        True,
        "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1;rport=5999;received=::1",
    ),
]


@pytest.mark.parametrize(("via", "source", "force", "stamped"), _CASES)
def test_every_via_is_stamped_as_before(
    via: str, source: tuple[str, int], force: bool, stamped: str
) -> None:
    data = _stamped(via, source, force)
    assert data.split(b"\r\n")[1] == f"Via: {stamped}".encode()
    request = parse_message(_request(via))
    request.check_essentials()
    stamp_received(request, source, force_rport=force)
    assert str(request.top_via) == stamped.split(",")[0]
    assert str(request.via[0]) == stamped.split(",")[0]


def test_check_essentials_reads_the_call_id_without_the_property(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_property(self: Message) -> str:
        raise AssertionError("Message.call_id called")

    request = parse_message(_request("SIP/2.0/UDP h;branch=z9hG4bK-1"))
    monkeypatch.setattr(Message, "call_id", property(no_property))
    request.check_essentials()
    monkeypatch.undo()
    assert request.call_id == "c1"


@pytest.mark.parametrize(
    ("call_id", "error"),
    [
        (None, "message has no Call-ID header"),
        ("a b", "bad Call-ID 'a b'"),
        ("a\tb", "bad Call-ID 'a\\tb'"),
    ],
)
def test_check_essentials_still_refuses_a_missing_or_bad_call_id(
    call_id: str | None, error: str
) -> None:
    request = parse_message(_request("SIP/2.0/UDP h;branch=z9hG4bK-1", call_id))
    with pytest.raises(ParseError, match="^" + error.replace("\\", "\\\\") + "$"):
        request.check_essentials()
