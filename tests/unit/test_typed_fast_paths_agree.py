"""The typed views' fast paths read exactly what the general paths read, on many inputs.

``parse_via``, ``parse_name_addr`` and ``parse_cseq`` try one expression (or a few string
checks) for the usual shapes and hand anything else to ``_parse_general``. For every input
here (the Via, From, To, Contact, Route and CSeq values of the RFC 4475 torture messages,
usual values, and deterministic mutations of both), the result of the public function must
equal the general path's: the same fields and parameters in the same order, or the same
ParseError. A fast path that accepts a value the general path reads differently, or
rejects one it accepts, fails here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from sipx._core import header_types
from sipx._core.header_types import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_via
from sipx._core.parser import parse_message
from sipx._errors import ParseError

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

_USUAL_VIAS = [
    "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.Hq3Zx9PiQ;rport",
    "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-1",
    "SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bK~a'b;rport",
    "SIP/2.0/WSS [2001:db8::9]:443;branch=z9hG4bKx",
    "SIP/2.0/UDP h:50601;branch=z9hG4bK1;received=192.0.2.1;rport=5060",
]
_USUAL_NAME_ADDRS = [
    '"Alice Liddell" <sip:alice@example.com>;tag=P3xCg~Ujl',
    "<sip:bob@example.com>",
    "sipp <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001",
    '"" <sips:[2001:db8::1]:5061;lr>',
    "Bob <sip:b@example.com;transport=tcp>;tag=1;x=y",
    "sip:carol@example.com;tag=3",
]
_USUAL_CSEQS = ["20 INVITE", "1 ACK", "4294967295 BYE", "101 OPTIONS"]
# Characters that change how a value splits: separators, quotes, escapes, whitespace.
_SYNTAX = [";", "=", ":", ",", '"', "\\", "<", ">", "[", "]", " ", "\t", "/", ".", "5060"]
_SYNTAX += ["UDP", ";rport", ";branch=", ";tag=", "0", "é", "\x00"]


def _torture_values(key: str) -> list[str]:
    """Every value of ``key`` in the RFC 4475 messages that parse."""
    values: list[str] = []
    for path in sorted(DATA.glob("*.dat")):
        try:
            message = parse_message(path.read_bytes())
        except ParseError:
            continue
        for value in message.headers.get_list(key):
            values.append(value)
    return values


def _mutations(seeds: list[str], count: int, seed: int) -> list[str]:
    """``count`` deterministic mutations of the seeds (deletions, insertions, swaps)."""
    rnd = random.Random(seed)
    out: list[str] = []
    for _ in range(count):
        text = list(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(text) + 1)
            kind = rnd.randrange(3)
            if kind == 0 and text:
                del text[min(at, len(text) - 1)]
            elif kind == 1:
                text.insert(at, rnd.choice(_SYNTAX))
            elif text:
                text[min(at, len(text) - 1)] = rnd.choice(_SYNTAX)
        out.append("".join(text))
    return out


def _outcome(parse: Callable[[str], object], text: str) -> object:
    try:
        return parse(text)
    except ParseError as error:
        return ("ParseError", str(error))


def _via_fields(via: object) -> object:
    if not isinstance(via, Via):
        return via
    return (via.protocol, via.transport, via.host, via.port, list(via.params.items()), str(via))


def _name_addr_fields(name_addr: object) -> object:
    if not isinstance(name_addr, NameAddr):
        return name_addr
    uri = _outcome(lambda _: str(name_addr.uri), "")
    return (
        name_addr.display_name,
        list(name_addr.params.items()),
        name_addr.is_wildcard,
        uri,
        str(name_addr),
    )


def test_the_inputs_reach_both_paths() -> None:
    # The comparisons below are worth something only if the inputs cover the fast path,
    # the general path and errors, for Via and name-addr alike.
    torture = _torture_values("Via")
    vias = _USUAL_VIAS + torture + _mutations(_USUAL_VIAS * 8 + torture, 6000, 14)
    fast = sum(header_types._VIA_COMMON_RE.fullmatch(text) is not None for text in vias)
    errors = sum(isinstance(_outcome(parse_via, text), tuple) for text in vias)
    assert 400 < fast < len(vias) - 1000
    assert 500 < errors < len(vias) - 1000
    froms = _torture_values("From")
    name_addrs = _USUAL_NAME_ADDRS + froms + _mutations(_USUAL_NAME_ADDRS * 8 + froms, 3000, 4475)
    fast = sum(header_types._NAME_ADDR_COMMON_RE.fullmatch(t) is not None for t in name_addrs)
    errors = sum(isinstance(_outcome(parse_name_addr, t), tuple) for t in name_addrs)
    assert 400 < fast < len(name_addrs) - 1000
    assert 500 < errors < len(name_addrs) - 1000
    assert len(torture) > 40 and len(froms) >= 40


def test_via_fast_path_reads_as_the_general_path() -> None:
    torture = _torture_values("Via")
    inputs = _USUAL_VIAS + torture + _mutations(_USUAL_VIAS * 8 + torture, 6000, 14)
    for text in inputs:
        fast = _via_fields(_outcome(parse_via, text))
        general = _via_fields(_outcome(Via._parse_general, text))
        assert fast == general, text


@pytest.mark.parametrize("key", ["From", "To", "Contact", "Route", "Record-Route"])
def test_name_addr_fast_path_reads_as_the_general_path(key: str) -> None:
    torture = _torture_values(key)
    inputs = _USUAL_NAME_ADDRS + torture + _mutations(_USUAL_NAME_ADDRS * 8 + torture, 3000, 4475)
    for text in inputs:
        fast = _name_addr_fields(_outcome(parse_name_addr, text))
        general = _name_addr_fields(_outcome(NameAddr._parse_general, text))
        assert fast == general, text


def test_cseq_fast_path_reads_as_the_general_path() -> None:
    torture = _torture_values("CSeq")
    inputs = _USUAL_CSEQS + torture + _mutations(_USUAL_CSEQS + torture, 4000, 3261)
    for text in inputs:
        fast = _outcome(parse_cseq, text)
        general = _outcome(CSeq._parse_general, text)
        assert fast == general, text
        if isinstance(fast, CSeq):
            assert type(fast) is CSeq and type(fast.seq) is int
