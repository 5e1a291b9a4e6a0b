"""Parsing and serialising benchmark for the sans-I/O message layer.

Run from the repository root::

    .venv/bin/python bench/bench_parse.py

Measures, with the stdlib ``timeit`` (best of several repeats, per call):

* ``parse``: ``parse_message()`` of a typical ~900-byte INVITE with an SDP body, as a
  softphone sends it;
* ``parse + reads``: the same, then reading what a transaction layer needs first: the
  Call-ID, the CSeq, the top Via's branch and the From tag;
* ``to_bytes``: serialising the parsed request again;
* ``to_bytes`` of a 200 built by ``make_response`` (what a UAS sends back).

In the same run, for comparison, the same parse + four reads by:

* the **floor**: a plain ``split`` of the header section into a ``dict`` (lower-cased names,
  values stripped) and the four values cut out with ``partition``: no checks, no compact
  forms, no folding, nothing typed; no SIP parser can do less;
* **pyVoIP** (the fastest other Python SIP parser measured, see ``bench/README.md``), only
  if it is importable: ``pip install pyVoIP`` into the virtualenv for this benchmark only
  (it is not a dependency of sipx).

Nothing here asserts a time; the numbers go to ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipx._core.parser import parse_message
from sipx._core.transaction import make_response

_SDP = (
    b"v=0\r\n"
    b"o=alice 3724394400 3724394401 IN IP4 192.0.2.10\r\n"
    b"s=Talk\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 7078 RTP/AVP 96 0 8 18 101\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 useinbandfec=1\r\n"
    b"a=fmtp:18 annexb=yes\r\n"
    b"a=rtpmap:101 telephone-event/48000\r\n"
    b"a=rtcp-fb:* trr-int 1000\r\n"
)

INVITE = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.Hq3Zx9PiQ;rport\r\n"
    'From: "Alice Liddell" <sip:alice@example.com>;tag=P3xCg~Ujl\r\n'
    "To: <sip:bob@example.com>\r\n"
    "CSeq: 20 INVITE\r\n"
    "Call-ID: 6kUb9zQ8r1@192.0.2.10\r\n"
    "Max-Forwards: 70\r\n"
    "Supported: replaces, outbound, gruu, path\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, "
    "PRACK, UPDATE\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(_SDP)}\r\n"
    "Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600;"
    '+sip.instance="<urn:uuid:6b2a4e1c-9d3f-4c55-8f11-2a7f0e6c9b21>"\r\n'
    "User-Agent: Linphone-Desktop/5.2.6 (alice-laptop) debian/12 Qt/5.15.8 "
    "LinphoneSDK/5.3.72\r\n"
    "\r\n"
).encode() + _SDP


READS = "parse + Call-ID, CSeq, Via branch, From tag"
FLOOR = "floor: split + dict, same 4 reads"
PYVOIP = "pyVoIP 1.6 SIPMessage, same 4 reads"


def parse_and_read() -> tuple[str, int, str | None, str | None]:
    message = parse_message(INVITE)
    return message.call_id, message.cseq.seq, message.top_via.branch, message.from_.tag


def floor_parse_and_read(data: bytes = INVITE) -> tuple[str, int, str, str]:
    """The floor: split the header section into a dict and cut the four values out."""
    head, _, _body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return (
        headers["call-id"],
        int(headers["cseq"].partition(" ")[0]),
        headers["via"].partition(";branch=")[2].partition(";")[0],
        headers["from"].partition(";tag=")[2].partition(";")[0],
    )


def pyvoip_case() -> Callable[[], object] | None:
    """pyVoIP's parse + the same four reads, or None when pyVoIP is not installed."""
    try:
        import pyVoIP.VoIP  # type: ignore[import-not-found]  # noqa: F401 (import order)
        from pyVoIP.SIP import SIPMessage  # type: ignore[import-not-found]
    except ImportError:
        return None

    def parse_and_read_pyvoip() -> tuple[str, int, str, str]:
        message = SIPMessage(INVITE)
        headers = message.headers
        return (
            headers["Call-ID"],
            int(headers["CSeq"]["check"]),
            headers["Via"][0]["branch"],
            headers["From"]["tag"],
        )

    return parse_and_read_pyvoip


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    arguments.add_argument("--repeat", type=int, default=7, help="repeats (best one is kept)")
    options = arguments.parse_args()

    parsed = parse_message(INVITE)
    expected = ("6kUb9zQ8r1@192.0.2.10", 20, "z9hG4bK.Hq3Zx9PiQ", "P3xCg~Ujl")
    assert parse_and_read() == expected
    assert floor_parse_and_read() == expected
    response = make_response(parsed, 200, to_tag="a7c3f")
    cases: dict[str, Callable[[], object]] = {
        "parse": lambda: parse_message(INVITE),
        READS: parse_and_read,
        "to_bytes": parsed.to_bytes,
        "to_bytes of make_response(200)": response.to_bytes,
        FLOOR: floor_parse_and_read,
    }
    pyvoip = pyvoip_case()
    if pyvoip is not None:
        assert pyvoip() == expected
        cases[PYVOIP] = pyvoip
    print(f"INVITE with SDP: {len(INVITE)} bytes; Python {sys.version.split()[0]}")
    results: dict[str, float] = {}
    for name, function in cases.items():
        times = timeit.repeat(function, number=options.number, repeat=options.repeat)
        results[name] = min(times) / options.number * 1e6
        print(f"{name:45s} {results[name]:7.2f} µs")
    sipx_time = results[READS]
    print(f"sipx parse + reads / floor: {sipx_time / results[FLOOR]:.2f}x (target <= 2x)")
    if pyvoip is None:
        print("pyVoIP not installed: no comparison (pip install pyVoIP, for this bench only)")
    else:
        ratio = results[PYVOIP] / sipx_time
        print(f"pyVoIP / sipx parse + reads: {ratio:.2f}x faster (target >= 3x)")


if __name__ == "__main__":
    main()
