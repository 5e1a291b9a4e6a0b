"""What the fuzz campaigns found (tests/fuzz), each kept as a test that failed before its fix.

1. A malformed request whose header line holds a bare CR made ``answer_malformed`` raise
   ValueError (the 400 could not hold the value) instead of answering or dropping it.
2. A Via line longer than the parser's 8 192 characters was copied into the 400, which no
   parser with that limit (sipx's own included) could read.
3. A digest challenge whose realm, nonce or opaque held a control character (NUL...) or
   bytes that are not UTF-8 made the client's automatic answer raise ValueError or
   UnicodeEncodeError out of ``register()`` (and the dev server answered such credentials
   with a 400 naming the encoding error). The digest parser now refuses those values (RFC
   7616 quoted-string), so the challenge comes back to the caller like any other it
   cannot answer.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

import sipx
from sipx import Auth
from sipx._core import digest
from sipx._core.malformed import answer_malformed
from sipx._core.message import Request
from sipx._core.parser import parse_message
from sipx._core.transaction import make_response
from sipx.testing import MemoryNetwork

REQUEST = (
    b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-f1\r\n"
    b"To: sip:bob@example.com\rFrom: sip:mallory@example.net;tag=1\r\n"
    b"Call-ID: f1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_a_bare_cr_in_a_malformed_request_is_not_copied_into_the_400() -> None:
    answer = answer_malformed(REQUEST, "bare CR", to_tag="t")
    assert answer is not None
    response = parse_message(answer.to_bytes())
    assert response.status_code == 400  # type: ignore[union-attr]
    assert "To" not in response.headers  # the line with the CR is left out
    assert response.top_via.branch == "z9hG4bK-f1"


def test_a_huge_via_is_not_echoed() -> None:
    request = REQUEST.replace(b"\r\nFrom", b"\r\nX: y").replace(
        b"192.0.2.1:5060", b"192.0.2.1:5060;x=" + b"a" * 9000
    )
    assert answer_malformed(request, "line too long", to_tag="t") is None


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="\x00", nonce="n"',
        'Digest realm="r", nonce="a\x07b"',
        'Digest realm="r", nonce="n", opaque="\x7f"',
        'Digest realm="\udc80\udcff", nonce="n"',  # bytes that were not UTF-8
        'Digest username="\x00", realm="r", nonce="n", uri="sip:x", response="0"',
    ],
)
def test_digest_values_with_controls_or_broken_utf8_are_refused(value: str) -> None:
    with pytest.raises(sipx.ParseError, match="control character or non-UTF-8"):
        digest.parse_challenge(value)
    with pytest.raises(sipx.ParseError, match="control character or non-UTF-8"):
        digest.parse_credentials(value)


def test_tabs_and_utf8_text_stay_allowed() -> None:
    challenge = digest.parse_challenge('Digest realm="caf\u00e9\tbar", nonce="n"')
    assert challenge.realm == "caf\u00e9\tbar"


@pytest.mark.parametrize("realm", [b"\x00evil", b"\xff\xfe"])
async def test_a_client_given_such_a_challenge_returns_it(
    autojump_clock: trio.testing.MockClock, realm: bytes
) -> None:
    network = MemoryNetwork()
    server_address = ("127.0.0.2", 5080)
    async with (
        sipx.AsyncClient("127.0.0.1", 5060, network=network, auth=Auth.Digest("a", "pw")) as client,
        network.socket(server_address) as server,
        trio.open_nursery() as nursery,
    ):
        result: list[sipx.Response] = []

        async def register() -> None:
            result.append(await client.register("sip:a@127.0.0.2:5080", timeout=10))

        nursery.start_soon(register)
        data, source = await server.receive()
        request = parse_message(data)
        assert isinstance(request, Request)
        wire = make_response(request, 401, to_tag="x").to_bytes()
        wire = wire.replace(
            b"Content-Length",
            b'WWW-Authenticate: Digest realm="' + realm + b'", nonce="n"\r\nContent-Length',
        )
        server.send(wire, source)
    [response] = result
    assert response.status_code == 401
    assert response.challenge_unanswered is not None
    assert "no Digest challenge" in response.challenge_unanswered
